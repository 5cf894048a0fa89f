"""Preflight tells this cluster's services from somebody's, on the deployed lab.

The lab's etcd and Patroni carry the marks of the cluster they belong to (its name in their
configuration).  Told that the cluster has another name, preflight must see running
services that are not this cluster's and refuse to go on, before anything is changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / os.environ.get("PGCHAOS_LAB_INVENTORY", "inventory/lab/hosts.yml")


@pytest.mark.parametrize(
    ("variable", "service"),
    [("etcd_cluster_name", "etcd"), ("patroni_cluster_name", "patroni")],
)
def test_a_running_service_of_another_cluster_is_refused(variable: str, service: str) -> None:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i", str(INVENTORY),
            "playbooks/preflight.yml",
            "-e", f"{variable}=somebody-else",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    out = " ".join(result.stdout.split())
    assert result.returncode != 0, out[-3000:]
    assert f"already runs {service}, but not as part of this cluster" in out, out[-3000:]
