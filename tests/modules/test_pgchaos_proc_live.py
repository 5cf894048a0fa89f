"""The /proc readers on real processes of this machine (a throwaway `sleep`)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from ansible.module_utils import pgchaos_proc
from ansible.module_utils.pgchaos_proc import (
    is_frozen,
    is_running,
    proc_state,
)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def wait_for(check: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_stop_and_continue_are_seen(sleeper: subprocess.Popen[bytes]) -> None:
    assert is_running(sleeper.pid)
    assert not is_frozen(sleeper.pid)
    os.kill(sleeper.pid, signal.SIGSTOP)
    assert wait_for(lambda: is_frozen(sleeper.pid))
    assert proc_state(sleeper.pid) == "T"
    os.kill(sleeper.pid, signal.SIGCONT)
    assert wait_for(lambda: not is_frozen(sleeper.pid))


def test_a_zombie_is_not_running(sleeper: subprocess.Popen[bytes]) -> None:
    os.kill(sleeper.pid, signal.SIGKILL)
    # Not reaped yet: the pid still exists in /proc, as a zombie.
    assert wait_for(lambda: proc_state(sleeper.pid) == "Z")
    assert not is_running(sleeper.pid)


def test_a_missing_pid() -> None:
    assert proc_state(2**22 + 12345) is None
    assert not is_running(2**22 + 12345)


def test_unit_pids_finds_the_live_processes_of_a_unit(
    sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test runner may sit in the root cgroup, so the two live processes are put in a
    # unit's cgroup by what /proc/<pid>/cgroup says of them; everything else is real.
    unit = "/system.slice/pgchaos-test.service"
    members = {os.getpid(), sleeper.pid}
    real_read_text = pgchaos_proc.read_text

    def fake_read_text(path: str) -> str | None:
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "proc" and parts[3] == "cgroup" and parts[2].isdigit():
            inside = int(parts[2]) in members
            return f"1:name=systemd:{unit if inside else '/user.slice'}\n"
        return real_read_text(path)

    monkeypatch.setattr(pgchaos_proc, "read_text", fake_read_text)
    assert pgchaos_proc.unit_pids(unit) == sorted(members)
    assert pgchaos_proc.unit_pids("/system.slice/other.service") == []
