"""A partition heals by itself when the control machine vanishes mid-scenario.

On the deployed lab: chaos-partition-leader.yml runs with a short dead-man timer; as soon as
the leader is cut off, ansible-playbook is killed with SIGKILL (nothing of it runs again, no
`always:`).  The timer the fault module armed on the leader must lift the partition, and the
cluster must become whole again, with nobody's help.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTAINER_PREFIX = "pgchaos-"
MEMBERS = {"pg1": "10.77.0.21", "pg2": "10.77.0.22", "pg3": "10.77.0.23"}
DEAD_MAN_S = 20

# It cuts the leader off: make test runs it alone, after the checks that break nothing.
pytestmark = pytest.mark.chaos


def patroni_cluster() -> dict[str, object] | None:
    for address in MEMBERS.values():
        try:
            with urllib.request.urlopen(f"http://{address}:8008/cluster", timeout=2) as answer:
                cluster: dict[str, object] = json.load(answer)
                return cluster
        except OSError:
            continue
    return None


def healthy() -> bool:
    cluster = patroni_cluster() or {}
    members = cluster.get("members", [])
    assert isinstance(members, list)
    roles = [m.get("role") for m in members]
    streaming = [m for m in members if m.get("state") == "streaming"]
    return roles.count("leader") == 1 and len(streaming) == len(MEMBERS) - 1


def partitioned(host: str) -> bool:
    rules = subprocess.run(
        ["docker", "exec", CONTAINER_PREFIX + host, "iptables", "-w", "-S"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return "PGCHAOS" in rules


def wait_for(condition: object, timeout: float, what: str) -> float:
    assert callable(condition)
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.5)
    pytest.fail(f"{what}: not within {timeout} s")


@pytest.fixture
def reset_afterwards() -> Iterator[dict[str, bool]]:
    """chaos-reset.yml unless the test saw the cluster whole again (it then has nothing to do)."""
    state = {"healed": False}
    yield state
    if state["healed"]:
        return
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    subprocess.run(
        [str(Path(sys.executable).with_name("ansible-playbook")), "playbooks/chaos-reset.yml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=600,
        check=False,
    )


def kill_when(playbook: str, tmp_path: Path, faulted: Callable[[], list[str]], what: str) -> str:
    """Run a scenario with a short dead-man timer; once ``faulted`` names a host, SIGKILL it.

    The control machine vanishes: every process of the playbook at once, nothing of it runs
    again (no ``always:``).  Returns the host the fault was found on.
    """
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    log = (tmp_path / "ansible.log").open("w")
    scenario = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            playbook,
            "-e", f"chaos_fault_max_seconds={DEAD_MAN_S}",
            "-e", "chaos_load=false",
            "-e", f"chaos_runs_dir={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    found: list[str] = []
    try:

        def done() -> bool:
            found[:] = faulted()
            return bool(found) or scenario.poll() is not None

        wait_for(done, 180, what)
        assert found, (tmp_path / "ansible.log").read_text()[-3000:]
    finally:
        os.killpg(scenario.pid, signal.SIGKILL)
        scenario.wait()
    return found[0]


def test_the_partition_lifts_itself_when_ansible_is_killed(
    tmp_path: Path, reset_afterwards: dict[str, bool]
) -> None:
    wait_for(healthy, 120, "a healthy cluster before the test")
    cut = kill_when(
        "playbooks/chaos-partition-leader.yml",
        tmp_path,
        lambda: [host for host in MEMBERS if partitioned(host)],
        "the leader partitioned",
    )
    killed_at = time.monotonic()
    lifted = wait_for(lambda: not partitioned(cut), DEAD_MAN_S + 20, "the partition lifted")
    wait_for(healthy, 180, "the cluster whole again")
    healed = time.monotonic() - killed_at
    reset_afterwards["healed"] = not any(partitioned(host) for host in MEMBERS)
    print(f"{cut}: partition lifted {lifted:.1f} s, cluster whole {healed:.1f} s after the kill")
    assert lifted <= DEAD_MAN_S + 20


ETCD = {"etcd1": "10.77.0.11", "etcd2": "10.77.0.12", "etcd3": "10.77.0.13"}
ETCD_MEMBER = "/var/lib/etcd/pgchaos/member"


def etcd_healthy(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{address}:2379/health", timeout=2) as answer:
            return str(json.load(answer).get("health")) in ("true", "True")
    except (OSError, ValueError):
        return False


def has_member_data(host: str) -> bool:
    probe = ["docker", "exec", CONTAINER_PREFIX + host, "test", "-d", ETCD_MEMBER]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


def test_a_wiped_etcd_member_gets_its_data_back_when_ansible_is_killed(
    tmp_path: Path, reset_afterwards: dict[str, bool]
) -> None:
    wait_for(healthy, 120, "a healthy cluster before the test")
    wiped = kill_when(
        "playbooks/chaos-etcd-wipe.yml",
        tmp_path,
        lambda: [host for host in ETCD if not has_member_data(host)],
        "an etcd member's data taken away",
    )
    killed_at = time.monotonic()
    back = wait_for(lambda: has_member_data(wiped), DEAD_MAN_S + 20, "the data put back")
    wait_for(lambda: all(etcd_healthy(a) for a in ETCD.values()), 60, "every etcd member healthy")
    whole = time.monotonic() - killed_at
    wait_for(healthy, 120, "the Patroni cluster whole")
    reset_afterwards["healed"] = all(has_member_data(host) for host in ETCD)
    print(f"{wiped}: data back {back:.1f} s, etcd healthy {whole:.1f} s after the kill")
    assert back <= DEAD_MAN_S + 20
