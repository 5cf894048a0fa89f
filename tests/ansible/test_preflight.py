"""Preflight stops a bad inventory before anything is changed, with a message naming the fault.

Every inventory here points at the control machine itself over the local connection:
preflight only reads, so nothing outside the test is touched.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from playbook import ansible_playbook

ROOT = Path(__file__).resolve().parents[2]
INVENTORIES = Path(__file__).parent / "inventories"
PLAYBOOK = ROOT / "playbooks" / "preflight.yml"


def run_preflight(inventory: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return ansible_playbook("-i", str(INVENTORIES / inventory), str(PLAYBOOK), *extra, timeout=300)


def test_a_sound_inventory_passes() -> None:
    result = run_preflight("good.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "failed=0" in result.stdout


@pytest.mark.parametrize(
    ("inventory", "extra", "message"),
    [
        ("even_etcd.yml", [], "etcd_cluster has 2 host(s): use an odd number"),
        (
            "single_etcd.yml",
            [],
            "A single etcd node is only accepted with etcd_allow_single_node=true",
        ),
        (
            "duplicate_address.yml",
            [],
            "These addresses stand for more than one inventory host: ['127.0.0.12']",
        ),
        (
            "missing_group.yml",
            [],
            "The inventory needs the groups etcd_cluster, postgres_cluster and balancers",
        ),
        (
            "good.yml",
            ["-e", "ansible_distribution=Ubuntu", "-e", "ansible_distribution_major_version=20"],
            "pgchaos supports Debian 12 (bookworm)",
        ),
        ("good.yml", ["-e", "etcd_client_port=abc"], "argument 'etcd_client_port' is of type str"),
        (
            "good.yml",
            ["-e", "patroni_install_method=docker"],
            "patroni_install_method must be one of: pip, package",
        ),
        ("good.yml", ["-e", "chaos_allowed=maybe"], "chaos_allowed must be true or false"),
        (
            "two_balancers.yml",
            ["-e", "keepalived_vip=10.1.2"],
            "keepalived_vip '10.1.2' is not an IPv4 address",
        ),
        (
            "good.yml",
            ["-e", "keepalived_vip=203.0.113.5"],
            "needs at least two hosts in balancers to move between (found 1)",
        ),
        (
            "two_balancers.yml",
            ["-e", "keepalived_vip=127.0.0.32"],
            "keepalived_vip 127.0.0.32 is the address of b2",
        ),
        # TEST-NET-3: outside whatever subnet the control machine's default route uses.
        (
            "two_balancers.yml",
            ["-e", "keepalived_vip=203.0.113.5"],
            "keepalived_vip 203.0.113.5 must be a free address of this balancer's cluster subnet",
        ),
        ("two_balancers.yml", ["-e", "keepalived_nopreempt=sometimes"], "keepalived_nopreempt"),
        # No tolerance at all: the round trip alone exceeds it.
        ("good.yml", ["-e", "pgchaos_max_clock_skew=-5"], "s off the control machine's"),
        ("good.yml", ["-e", "ansible_become_user=pgchaos-nobody"], "cannot become root as"),
        ("good.yml", ["--limit", "balancers"], "site.yml runs on the whole inventory, not --limit"),
    ],
)
def test_a_bad_inventory_stops_with_a_clear_message(
    inventory: str, extra: list[str], message: str
) -> None:
    result = run_preflight(inventory, *extra)
    assert result.returncode != 0, result.stdout[-3000:]
    assert message in result.stdout, result.stdout[-3000:]


def test_a_single_etcd_node_is_accepted_when_asked_for() -> None:
    result = run_preflight("single_etcd.yml", "-e", "etcd_allow_single_node=true")
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_port_taken_by_something_else_stops_preflight() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_preflight("good.yml", "-e", f"haproxy_stats_port={port}")
    assert result.returncode != 0, result.stdout[-3000:]
    assert f"port {port} is taken by" in result.stdout, result.stdout[-3000:]
