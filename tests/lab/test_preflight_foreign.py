"""Preflight tells this cluster's services from somebody's, on the deployed lab.

The lab's etcd and Patroni carry the marks of the cluster they belong to (its name in their
configuration).  Told that the cluster has another name, preflight must see running
services that are not this cluster's and refuse to go on, before anything is changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from playbook import ansible_playbook

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / os.environ.get("PGCHAOS_LAB_INVENTORY", "inventory/lab/hosts.yml")


@pytest.mark.parametrize(
    ("variable", "service"),
    [("etcd_cluster_name", "etcd"), ("patroni_cluster_name", "patroni")],
)
def test_a_running_service_of_another_cluster_is_refused(variable: str, service: str) -> None:
    result = ansible_playbook(
        "-i", str(INVENTORY), "playbooks/preflight.yml", "-e", f"{variable}=somebody-else"
    )
    out = " ".join(result.stdout.split())
    assert result.returncode != 0, out[-3000:]
    assert f"already runs {service}, but not as part of this cluster" in out, out[-3000:]
