"""The /proc readers on real processes of this machine (a throwaway `sleep`)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest
from ansible.module_utils.pgchaos_proc import (
    cgroup_paths,
    is_frozen,
    is_running,
    proc_state,
    read_text,
    unit_pids,
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


def test_unit_pids_finds_processes_of_our_own_cgroup(sleeper: subprocess.Popen[bytes]) -> None:
    paths = [p for p in cgroup_paths(read_text("/proc/self/cgroup") or "") if p != "/"]
    if not paths:
        pytest.skip("this process sits in the root cgroup: no unit to look for")
    found = unit_pids(paths[-1])
    assert os.getpid() in found
    assert sleeper.pid in found
