"""Adding and retiring members refuse what would hurt, before they change anything.

On the deployed lab: ops-add-member.yml must refuse a new host that already holds a
PostgreSQL data directory (it could be another cluster's, or this one's from before it left),
and ops-remove-member.yml must refuse a host that is not a PostgreSQL member.  Both must fail
with a message that names the problem and leave the cluster as it was.  The successful paths
run under load in `make ops` (chaos-pooled-member.yml).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_dead_man import CONTAINER_PREFIX, ROOT, healthy, patroni_cluster, wait_for

SPARE = "pg4"
SPARE_DATA = "/var/lib/postgresql/15/pgchaos"

pytestmark = pytest.mark.chaos


def ops(playbook: str, *extra: str, log: Path) -> int:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    with log.open("w") as out:
        return subprocess.run(
            [str(Path(sys.executable).with_name("ansible-playbook")),
             "-i", "inventory/lab", "-i", "inventory/lab-spare", f"playbooks/{playbook}", *extra],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600, check=False,
        ).returncode  # fmt: skip


def members() -> list[str]:
    cluster = patroni_cluster() or {}
    listed = cluster.get("members", [])
    assert isinstance(listed, list)
    return sorted(str(member["name"]) for member in listed)


def read(host: str, path: str) -> str:
    return subprocess.run(
        ["docker", "exec", CONTAINER_PREFIX + host, "cat", path],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


def spare(*command: str) -> None:
    subprocess.run(["docker", "exec", CONTAINER_PREFIX + SPARE, *command], check=True)


def test_a_new_host_with_a_data_directory_is_refused(tmp_path: Path) -> None:
    wait_for(healthy, 120, "a healthy cluster before the test")
    before = members()
    assert SPARE not in before
    spare("test", "!", "-e", SPARE_DATA)
    spare("install", "-d", SPARE_DATA)
    try:
        spare("sh", "-c", f"echo 15 > {SPARE_DATA}/PG_VERSION")
        log = tmp_path / "ansible.log"
        assert ops("ops-add-member.yml", log=log) != 0, log.read_text()[-3000:]
        text = log.read_text()
        assert f"{SPARE} already has PostgreSQL data" in text, text[-3000:]
    finally:
        spare("rm", "-r", SPARE_DATA)
    # The check comes before any change: no Patroni runs on the spare, the members are the
    # same, no other host was told of it.
    assert members() == before
    spare("sh", "-c", "! systemctl is-active --quiet patroni")
    for host, path in (("lb1", "/etc/haproxy/haproxy.cfg"), ("pg1", "/etc/hosts")):
        assert SPARE not in read(host, path), f"{host}:{path} names {SPARE}"


def test_retiring_a_host_that_is_no_member_is_refused(tmp_path: Path) -> None:
    wait_for(healthy, 120, "a healthy cluster before the test")
    before = members()
    log = tmp_path / "ansible.log"
    assert ops("ops-remove-member.yml", "-e", "ops_member=etcd1", log=log) != 0
    text = log.read_text()
    assert "it must still be in postgres_cluster" in " ".join(text.split()), text[-3000:]
    assert members() == before
