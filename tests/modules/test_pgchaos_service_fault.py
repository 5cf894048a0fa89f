"""pgchaos_service_fault with systemctl and /proc faked: what it runs and what it reports."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pgchaos_service_fault as mod
import pytest
from modhelpers import ModuleFail, module_env, run_main


class FakeHost:
    """A unit whose systemctl state and processes change the way the real ones do."""

    def __init__(self, active: str = "active", pids: tuple[int, ...] = (100, 101)) -> None:
        self.active = active
        self.pids = list(pids) if active == "active" else []
        self.frozen: set[int] = set()
        self.load = "loaded"
        self.fail_next: str | None = None

    @property
    def main_pid(self) -> int:
        # The first process started is the main one; once it dies systemd reports none.
        return min(self.pids) if self.pids and min(self.pids) % 100 == 0 else 0

    def systemctl(self, argv: list[str]) -> tuple[int, str, str]:
        verb = argv[1]
        if self.fail_next == verb:
            return 1, "", f"Failed to {verb} unit: Access denied"
        if verb == "show":
            return (
                0,
                (
                    f"MainPID={self.main_pid}\nLoadState={self.load}\nActiveState={self.active}\n"
                    f"SubState={'running' if self.active == 'active' else 'dead'}\n"
                    "ControlGroup=/system.slice/dummy.service\n"
                ),
                "",
            )
        if verb == "stop":
            self.active, self.pids, self.frozen = "inactive", [], set()
        elif verb == "start":
            self.active, self.pids = "active", [200, 201]
        elif verb == "kill":
            whom = next(a for a in argv if a.startswith("--kill-whom=")).split("=")[1]
            sig = next(a for a in argv if a.startswith("--signal=")).split("=")[1]
            targets = list(self.pids) if whom == "all" else self.pids[:1]
            self.deliver(targets, sig)
        return 0, "", ""

    def deliver(self, targets: list[int], sig: str) -> None:
        if sig == "SIGKILL":
            self.pids = [p for p in self.pids if p not in targets]
            self.frozen -= set(targets)
        elif sig == "SIGSTOP":
            self.frozen |= set(targets)
        elif sig == "SIGCONT":
            self.frozen -= set(targets)

    def proc_state(self, pid: int) -> str | None:
        if pid not in self.pids:
            return None
        return "T" if pid in self.frozen else "S"


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> FakeHost:
    fake = FakeHost()
    monkeypatch.setattr(mod, "unit_pids", lambda group: list(fake.pids))
    monkeypatch.setattr(mod, "proc_state", fake.proc_state)
    monkeypatch.setattr(mod, "is_running", lambda pid: fake.proc_state(pid) is not None)
    monkeypatch.setattr(mod, "is_frozen", lambda pid: fake.proc_state(pid) == "T")
    return fake


def run(
    host: FakeHost, check_mode: bool = False, **args: Any
) -> tuple[dict[str, Any], list[list[str]]]:
    params = {"service": "dummy", **args}
    with module_env(host.systemctl) as commands:
        result = run_main(mod.main, params, check_mode=check_mode)
    return result, [c[1:] for c in commands.calls if c[1] != "show" and not _dead_man(c)]


def _dead_man(argv: list[str]) -> bool:
    return any("pgchaos-deadman-" in a for a in argv)


def dead_man_calls(host: FakeHost, **args: Any) -> tuple[dict[str, Any], list[list[str]]]:
    with module_env(host.systemctl) as commands:
        result = run_main(mod.main, {"service": "dummy", **args})
    return result, [[c[0].rsplit("/", 1)[-1], *c[1:]] for c in commands.calls if _dead_man(c)]


def fail(host: FakeHost, **args: Any) -> str:
    with module_env(host.systemctl), pytest.raises(ModuleFail) as info:
        run_main(mod.main, {"service": "dummy", **args})
    return str(info.value.result["msg"])


def test_stop_an_active_unit(host: FakeHost) -> None:
    result, acted = run(host, action="stop")
    assert result["changed"] is True
    assert acted == [["stop", "dummy.service"]]
    assert result["before"]["active_state"] == "active"
    assert result["after"] == {
        "active_state": "inactive", "sub_state": "dead", "main_pid": 0, "pids": [], "frozen": False,
    }  # fmt: skip


def test_stop_a_stopped_unit_changes_nothing(host: FakeHost) -> None:
    host.active, host.pids = "failed", []
    result, acted = run(host, action="stop")
    assert result["changed"] is False
    assert acted == []


def test_check_mode_predicts_and_does_nothing(host: FakeHost) -> None:
    result, acted = run(host, check_mode=True, action="stop")
    assert result["changed"] is True
    assert acted == []
    assert host.active == "active"
    assert result["after"] == result["before"]


@pytest.mark.parametrize(
    ("state", "changed"), [("inactive", True), ("active", False), ("activating", False)]
)
def test_start(host: FakeHost, state: str, changed: bool) -> None:
    host.active = state
    result, acted = run(host, action="start")
    assert result["changed"] is changed
    assert acted == ([["start", "dummy.service"]] if changed else [])


@pytest.mark.parametrize(
    ("scope", "whom", "survivors"), [("unit", "all", []), ("main", "main", [101])]
)
def test_kill_through_systemctl(
    host: FakeHost, scope: str, whom: str, survivors: list[int]
) -> None:
    result, acted = run(host, action="kill", scope=scope)
    assert result["changed"] is True
    assert acted == [["kill", f"--kill-whom={whom}", "--signal=SIGKILL", "dummy.service"]]
    assert host.pids == survivors
    assert result["after"]["main_pid"] == 0
    # scope=main selects the main pid, which is gone; the child is not its business.
    assert result["after"]["pids"] == []


def test_kill_with_no_process_changes_nothing(host: FakeHost) -> None:
    host.active, host.pids = "inactive", []
    result, acted = run(host, action="kill")
    assert result["changed"] is False
    assert result["signalled_pids"] == []
    assert acted == []


def test_freeze_and_thaw_are_idempotent(host: FakeHost) -> None:
    result, acted = run(host, action="freeze")
    assert result["changed"] is True
    assert acted == [["kill", "--kill-whom=all", "--signal=SIGSTOP", "dummy.service"]]
    assert result["before"]["frozen"] is False
    assert result["after"]["frozen"] is True
    again, acted = run(host, action="freeze")
    assert (again["changed"], acted) == (False, [])
    thawed, acted = run(host, action="thaw")
    assert thawed["changed"] is True
    assert acted == [["kill", "--kill-whom=all", "--signal=SIGCONT", "dummy.service"]]
    assert thawed["after"]["frozen"] is False
    again, acted = run(host, action="thaw")
    assert (again["changed"], acted) == (False, [])


def test_freeze_half_frozen_unit_changes(host: FakeHost) -> None:
    host.frozen = {100}
    result, _ = run(host, action="freeze")
    assert result["changed"] is True
    assert result["before"]["frozen"] is False


def test_freeze_without_process_fails(host: FakeHost) -> None:
    host.active, host.pids = "inactive", []
    assert "nothing to freeze" in fail(host, action="freeze")


def test_pidfile_kill_signals_that_pid_alone(
    host: FakeHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "postmaster.pid"
    pid_file.write_text("101\n/var/lib/postgresql/15/pgchaos\n1764430000\n5432\n")
    sent: list[tuple[int, int]] = []

    def fake_kill(pid: int, sig: int) -> None:
        sent.append((pid, sig))
        host.deliver([pid], signal.Signals(sig).name)

    monkeypatch.setattr(mod.os, "kill", fake_kill)
    result, acted = run(host, action="kill", scope="pidfile", pid_file=str(pid_file))
    assert acted == []
    assert sent == [(101, signal.SIGKILL)]
    assert result["signalled_pids"] == [101]
    assert host.pids == [100]
    again, _ = run(host, action="kill", scope="pidfile", pid_file=str(pid_file))
    assert again["changed"] is False


def test_pidfile_missing_means_no_process(host: FakeHost, tmp_path: Path) -> None:
    result, _ = run(host, action="kill", scope="pidfile", pid_file=str(tmp_path / "none.pid"))
    assert result["changed"] is False


def test_missing_unit_is_named(host: FakeHost) -> None:
    host.load = "not-found"
    assert (
        fail(host, action="start")
        == "unit dummy.service not found on this host (LoadState=not-found)"
    )


def test_systemctl_failure_is_reported(host: FakeHost) -> None:
    host.fail_next = "stop"
    msg = fail(host, action="stop")
    assert "systemctl stop dummy.service failed (rc=1)" in msg
    assert "Access denied" in msg


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"action": "stop", "scope": "main"}, "scope=main does not apply to action=stop"),
        ({"action": "start", "scope": "pidfile", "pid_file": "/x"}, "scope=pidfile does not apply"),
        ({"action": "kill", "scope": "pidfile"}, "pid_file"),
        ({"action": "kill", "pid_file": "/x"}, "only used with scope=pidfile"),
        ({"action": "explode"}, "explode"),
    ],
)
def test_bad_combinations_are_named(host: FakeHost, args: dict[str, Any], message: str) -> None:
    assert message in fail(host, **args)


def test_no_systemctl(host: FakeHost) -> None:
    with module_env(host.systemctl, bins={"systemctl": None}), pytest.raises(ModuleFail) as info:
        run_main(mod.main, {"service": "dummy", "action": "stop"})
    assert "systemctl not found" in info.value.result["msg"]


@pytest.mark.parametrize(("service", "unit"), [("etcd", "etcd.service"), ("x.socket", "x.socket")])
def test_unit_name(service: str, unit: str) -> None:
    assert mod.unit_name(service) == unit


def test_a_stop_with_a_dead_man_arms_a_timer_that_starts_the_unit(host: FakeHost) -> None:
    result, calls = dead_man_calls(host, action="stop", dead_man_seconds=90)
    assert result["dead_man"] == "pgchaos-deadman-dummy"
    # Any earlier timer of the same fault is cleared first, then the new one armed.
    assert [c[:2] for c in calls] == [
        ["systemctl", "stop"],
        ["systemctl", "reset-failed"],
        ["systemd-run", "--unit=pgchaos-deadman-dummy"],
    ]
    arm = calls[-1]
    assert "--on-active=90s" in arm
    assert arm[-3:] == ["/usr/sbin/systemctl", "start", "dummy.service"]


def test_a_freeze_dead_man_thaws_exactly_the_frozen_pids(host: FakeHost) -> None:
    _, calls = dead_man_calls(host, action="freeze", dead_man_seconds=5)
    assert calls[-1][-3:] == ["/bin/sh", "-c", "kill -CONT 100 101"]


def test_start_disarms_even_when_the_unit_already_runs(host: FakeHost) -> None:
    result, calls = dead_man_calls(host, action="start")
    assert result["changed"] is False
    units = ["pgchaos-deadman-dummy.timer", "pgchaos-deadman-dummy.service"]
    assert calls == [["systemctl", "stop", *units], ["systemctl", "reset-failed", *units]]


def test_no_dead_man_unless_asked(host: FakeHost) -> None:
    result, calls = dead_man_calls(host, action="kill")
    assert result["dead_man"] is None
    assert calls == []


def test_check_mode_arms_nothing(host: FakeHost) -> None:
    with module_env(host.systemctl) as commands:
        result = run_main(
            mod.main, {"service": "dummy", "action": "stop", "dead_man_seconds": 9}, check_mode=True
        )
    assert result["dead_man"] is None
    assert not any(_dead_man(c) for c in commands.calls)


@pytest.mark.parametrize("seconds", [-1, float("nan"), 86401])
def test_a_dead_man_out_of_range_is_refused(host: FakeHost, seconds: float) -> None:
    assert "dead_man_seconds must be between 0 and 86400" in fail(
        host, action="stop", dead_man_seconds=seconds
    )


@pytest.mark.parametrize("action", ["stop", "kill", "freeze"])
def test_a_host_that_did_not_opt_in_is_refused(
    host: FakeHost, chaos_target: Path, action: str
) -> None:
    chaos_target.unlink()
    msg = fail(host, action=action)
    assert msg.startswith(f"refusing to {action} dummy: /etc/pgchaos/chaos-target is missing")
    assert host.active == "active"
    assert not host.frozen


@pytest.mark.parametrize("action", ["start", "thaw"])
def test_putting_right_needs_no_opt_in(host: FakeHost, chaos_target: Path, action: str) -> None:
    chaos_target.unlink()
    result, _ = run(host, action=action)  # fail_json would raise ModuleFail
    assert result["action"] == action
