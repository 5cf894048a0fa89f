"""A change that needs etcd and Patroni restarted, made under load, costs the clients nothing.

On the deployed lab (another lab: PGCHAOS_LAB_INVENTORY=inventory/<it>/hosts.yml): the etcd
and Patroni roles run with a harmless change to each service (an etcd setting, an
environment variable of Patroni's unit) while `pgchaos load` writes through the balancers.
Their restart handlers must take the members one at a time (polled: never two etcd members
unhealthy, never two Patroni APIs down), the Patroni leader last and still the leader, with
PostgreSQL itself never restarted, and no acknowledged or failed write.  The roles then run
again without the change, which puts back what site.yml configured.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from playbook import ansible_playbook as run_playbook

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / os.environ.get("PGCHAOS_LAB_INVENTORY", "inventory/lab/hosts.yml")
PLAYBOOK = ROOT / "tests" / "lab" / "playbooks" / "etcd-patroni.yml"
CHANGE = {
    "patroni_service_environment": {"PGCHAOS_ROLLING_TEST": "1"},
    "etcd_auto_compaction_retention": "2",
}
DATA_DIR = "/var/lib/postgresql/15/pgchaos"

# Its figure is failed writes under load: make test runs it alone, with the fault checks.
pytestmark = pytest.mark.chaos


def lab() -> tuple[dict[str, str], dict[str, str], str, Path]:
    hosts = yaml.safe_load(INVENTORY.read_text())["all"]["children"]
    group_vars = yaml.safe_load((INVENTORY.parent / "group_vars" / "all.yml").read_text())
    address = {g: {h: v["ansible_host"] for h, v in hosts[g]["hosts"].items()} for g in hosts}
    client_env = Path(
        group_vars["pgchaos_client_env_path"].replace("{{ inventory_dir }}", str(INVENTORY.parent))
    ).resolve()
    prefix = group_vars["chaos_container_prefix"]
    return address["etcd_cluster"], address["postgres_cluster"], prefix, client_env


ETCD, MEMBERS, PREFIX, CLIENT_ENV = lab()


def get_json(address: str, port: int, path: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"http://{address}:{port}/{path}", timeout=1) as answer:
            body: dict[str, object] = json.load(answer)
            return body
    except (OSError, ValueError):
        return None


def cluster() -> dict[str, object]:
    for address in MEMBERS.values():
        answer = get_json(address, 8008, "cluster")
        if answer:
            return answer
    return {}


def leader_and_healthy() -> tuple[str | None, bool]:
    members = cluster().get("members", [])
    assert isinstance(members, list)
    leaders = [m["name"] for m in members if m.get("role") == "leader"]
    streaming = [m for m in members if m.get("state") == "streaming" and m.get("lag", 1) == 0]
    return (leaders[0] if leaders else None), len(leaders) == 1 and len(streaming) == len(
        MEMBERS
    ) - 1


def in_container(host: str, *argv: str) -> str:
    return subprocess.run(
        ["docker", "exec", PREFIX + host, *argv], capture_output=True, text=True, check=True
    ).stdout.strip()


def active_since(host: str, unit: str) -> int:
    """When the unit last became active, in µs of the kernel's monotonic clock (one for all)."""
    return int(
        in_container(
            host, "systemctl", "show", "-p", "ActiveEnterTimestampMonotonic", "--value", unit
        )
    )


def postmaster_pid(host: str) -> str:
    return in_container(host, "head", "-n1", f"{DATA_DIR}/postmaster.pid")


def ansible_playbook(*args: str) -> subprocess.CompletedProcess[str]:
    return run_playbook("-i", str(INVENTORY), *args, timeout=900)


class Poller(threading.Thread):
    """Counts, every 0.3 s, the etcd members not healthy and the Patroni APIs not answering."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.polls = 0
        self.worst_etcd: list[str] = []
        self.worst_patroni: list[str] = []
        self.etcd_down_seen: set[str] = set()
        self.patroni_down_seen: set[str] = set()

    def run(self) -> None:
        while not self.stop.is_set():
            etcd_down = [
                h for h, a in ETCD.items()
                if (get_json(a, 2379, "health") or {}).get("health") != "true"
            ]  # fmt: skip
            patroni_down = [h for h, a in MEMBERS.items() if get_json(a, 8008, "patroni") is None]
            self.polls += 1
            self.etcd_down_seen.update(etcd_down)
            self.patroni_down_seen.update(patroni_down)
            if len(etcd_down) > len(self.worst_etcd):
                self.worst_etcd = etcd_down
            if len(patroni_down) > len(self.worst_patroni):
                self.worst_patroni = patroni_down
            time.sleep(0.3)


def writes(run: Path) -> tuple[int, int, float]:
    """Acknowledged writes, failed writes, and the longest time without an acknowledged write."""
    ok_times: list[float] = []
    failed = 0
    with (run / "records.csv").open() as records:
        for row in csv.DictReader(records):
            if row["kind"] != "write":
                continue
            if row["outcome"] == "ok":
                ok_times.append(float(row["time"]))
            else:
                failed += 1
    ok_times.sort()
    gap = max((b - a for a, b in itertools.pairwise(ok_times)), default=0.0)
    return len(ok_times), failed, gap


@pytest.fixture
def restore_afterwards() -> object:
    yield None
    result = ansible_playbook(str(PLAYBOOK))
    assert result.returncode == 0, result.stdout[-3000:]


def test_a_restart_under_load_is_rolling_and_costs_no_write(
    tmp_path: Path, restore_afterwards: object
) -> None:
    leader, healthy = leader_and_healthy()
    assert leader, "no leader before the test"
    assert healthy, "the cluster is not healthy before the test"
    pids = {h: postmaster_pid(h) for h in MEMBERS}
    before = {h: active_since(h, "patroni") for h in MEMBERS} | {
        h: active_since(h, "etcd") for h in ETCD
    }

    run = tmp_path / "run"
    pgchaos = str(Path(sys.executable).with_name("pgchaos"))
    load = subprocess.Popen(
        [
            pgchaos,
            "load",
            "--env-file",
            str(CLIENT_ENV),
            "--duration",
            "600",
            "--out",
            str(run),
            "-q",
        ],
        cwd=tmp_path,
    )
    poller = Poller()
    try:
        time.sleep(3)
        poller.start()
        started = time.monotonic()
        result = ansible_playbook(str(PLAYBOOK), "-e", json.dumps(CHANGE))
        took = time.monotonic() - started
        time.sleep(2)
    finally:
        poller.stop.set()
        load.send_signal(signal.SIGINT)
        load.wait(timeout=60)
    assert result.returncode == 0, result.stdout[-3000:]

    after = {h: active_since(h, "patroni") for h in MEMBERS} | {
        h: active_since(h, "etcd") for h in ETCD
    }
    restarted = sorted((after[h], h) for h in after if after[h] != before[h])
    order = [h for _, h in restarted]
    print(f"playbook {took:.0f} s, {poller.polls} polls; restarts in order: {order}")
    for (t1, h1), (t2, h2) in itertools.pairwise(restarted):
        print(f"  {h1} -> {h2}: {(t2 - t1) / 1e6:.1f} s")
    assert set(order) == set(MEMBERS) | set(ETCD), f"not every member restarted: {order}"
    # Quorum kept: at no poll were two etcd members unhealthy, nor two Patroni APIs silent.
    assert len(poller.worst_etcd) <= 1, f"etcd members unhealthy at once: {poller.worst_etcd}"
    assert len(poller.worst_patroni) <= 1, f"Patroni APIs down at once: {poller.worst_patroni}"
    patroni_order = [h for h in order if h in MEMBERS]
    assert patroni_order[-1] == leader, (
        f"the leader {leader} was not restarted last: {patroni_order}"
    )
    # The cluster was paused: Patroni restarted, PostgreSQL did not.
    assert {h: postmaster_pid(h) for h in MEMBERS} == pids, "PostgreSQL was restarted"
    new_leader, healthy = leader_and_healthy()
    assert new_leader == leader, cluster()
    assert healthy, cluster()
    assert "pause" not in (get_json(MEMBERS[leader], 8008, "config") or {}), "left paused"

    verify = subprocess.run(
        [pgchaos, "verify", "--env-file", str(CLIENT_ENV), str(run)],
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads((run / "verify.json").read_text())
    acknowledged, failed, gap = writes(run)
    print(
        f"writes: {acknowledged} acknowledged, {failed} failed, lost {report['lost']}, "
        f"in doubt {report['in_doubt_total']}; longest gap between acknowledged writes {gap:.2f} s"
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert report["lost"] == 0
    assert failed == 0
