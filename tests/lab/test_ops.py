"""A planned switchover that fails or is cut short leaves no pooler paused.

On the deployed lab (transaction pooling): ops-switchover.yml with a limit it cannot meet
must fail, say why, resume every pooler and leave the cluster whole; killed with SIGKILL
while the poolers hold the clients (nothing of it runs again, no ``always:``), the dead-man
timer each balancer armed must resume its pooler by itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_dead_man import CONTAINER_PREFIX, ROOT, healthy, wait_for

BALANCERS = ("lb1", "lb2")
DEAD_MAN_S = 15

# It switches the leader over: make test runs it alone, after the checks that break nothing.
pytestmark = pytest.mark.chaos


def paused(balancer: str) -> list[str]:
    """The pooled databases PgBouncer on this balancer holds (SHOW DATABASES, column paused)."""
    show = subprocess.run(
        ["docker", "exec", CONTAINER_PREFIX + balancer, "runuser", "-u", "postgres", "--",
         "psql", "--no-psqlrc", "--no-align", "--tuples-only", "--field-separator=,",
         "--host=/var/run/postgresql", "--port=6432", "--username=pgbouncer",
         "--dbname=pgbouncer", "--command=SHOW DATABASES"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [line.split(",") for line in show.splitlines() if line]
    return [row[0] for row in rows if row[0] != "pgbouncer" and row[11] == "1"]


def any_paused() -> list[str]:
    return [f"{lb}:{db}" for lb in BALANCERS for db in paused(lb)]


def ops_switchover(*extra: str, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("ansible-playbook")), "playbooks/ops-switchover.yml",
         *extra],
        cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip


def test_a_switchover_that_misses_its_limit_fails_and_resumes_the_poolers(
    tmp_path: Path,
) -> None:
    wait_for(healthy, 120, "a healthy cluster before the test")
    assert any_paused() == []
    log = tmp_path / "ansible.log"
    # No HAProxy sees a new leader within 0.1 s of the request.
    run = ops_switchover("-e", "chaos_switchover_timeout=0.1", log=log)
    assert run.wait(300) != 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "the pooler was resumed anyway" in text, text[-3000:]
    assert any_paused() == []
    wait_for(healthy, 120, "the cluster whole again")


def test_a_pooler_resumes_by_itself_when_ops_switchover_is_killed(tmp_path: Path) -> None:
    wait_for(healthy, 120, "a healthy cluster before the test")
    log = tmp_path / "ansible.log"
    run = ops_switchover("-e", f"chaos_pause_max_seconds={DEAD_MAN_S}", log=log)
    held: list[str] = []
    try:

        def caught() -> bool:
            held[:] = any_paused()
            return bool(held) or run.poll() is not None

        wait_for(caught, 180, "a pooler paused")
        assert held, log.read_text()[-3000:]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    resumed = wait_for(lambda: any_paused() == [], DEAD_MAN_S + 15, "every pooler resumed")
    wait_for(healthy, 120, "the cluster whole again")
    print(f"held {held}: resumed {resumed:.1f} s after the kill (timer {DEAD_MAN_S} s)")
    assert resumed <= DEAD_MAN_S + 15
