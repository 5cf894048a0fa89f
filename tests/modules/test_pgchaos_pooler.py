"""pgchaos_pooler against a fake console: the commands it sends, in order, and its bounds."""

from __future__ import annotations

from typing import Any

import pgchaos_pooler as mod
import pytest
from modhelpers import ModuleFail, module_env, run_main

HEADER = "name\thost\tport\tdatabase\tpool_mode\tpaused\tdisabled"


class FakeBouncer:
    """Answers the console commands the module sends through runuser, timeout(1) and psql."""

    def __init__(self, paused: bool = False, pause_rc: int = 0) -> None:
        self.paused = {"app": paused, "app_replicas": paused}
        self.pause_rc = pause_rc
        self.sent: list[str] = []
        self.reconnected: list[str] = []

    def show(self) -> str:
        rows = [HEADER]
        for name, paused in self.paused.items():
            port = 5001 if name.endswith("_replicas") else 5000
            rows.append(f"{name}\t127.0.0.1\t{port}\tapp\ttransaction\t{int(paused)}\t0")
        rows.append("pgbouncer\t\t6432\tpgbouncer\tstatement\t0\t0")
        return "\n".join(rows)

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        name = argv[0].rsplit("/", 1)[-1]
        if name != "runuser":
            return 0, "", ""  # systemctl, systemd-run
        out = []
        errors = 0
        for arg in argv:
            if not arg.startswith("--command="):
                continue
            command = arg.removeprefix("--command=")
            self.sent.append(command)
            verb, _, db = command.partition(" ")
            if command == "SHOW DATABASES":
                out.append(self.show())
            elif verb == "PAUSE":
                # A PAUSE that does not finish has still begun: the database is pausing.
                self.paused[db] = True
                if self.pause_rc:
                    return self.pause_rc, "", ""
            elif verb == "RECONNECT":
                self.reconnected.append(db)
            elif verb == "RESUME":
                if not self.paused[db]:
                    # psql goes on without ON_ERROR_STOP, and still exits with 1.
                    errors += 1
                    if "--set=ON_ERROR_STOP=1" in argv:
                        break
                    continue
                self.paused[db] = False
            else:
                raise AssertionError(f"unexpected console command {command}")
        if errors:
            return 1, "", "ERROR:  database is not paused"
        return 0, "\n".join(out), ""


def run(
    bouncer: FakeBouncer, check_mode: bool = False, **args: Any
) -> tuple[dict[str, Any], list[list[str]]]:
    with module_env(bouncer) as commands:
        result = run_main(mod.main, args, check_mode=check_mode)
    return result, commands.calls


def fail(bouncer: FakeBouncer, **args: Any) -> dict[str, Any]:
    with module_env(bouncer), pytest.raises(ModuleFail) as info:
        run_main(mod.main, args)
    return info.value.result


def _names(calls: list[list[str]]) -> list[str]:
    return [c[0].rsplit("/", 1)[-1] for c in calls]


def test_pause_arms_the_dead_man_first_then_pauses() -> None:
    bouncer = FakeBouncer()
    result, calls = run(bouncer, state="paused", dead_man_seconds=30)
    assert result["changed"] is True
    assert result["paused"] is True
    assert result["dead_man"] == "pgchaos-deadman-pooler-6432"
    assert bouncer.sent == ["SHOW DATABASES", "PAUSE app", "PAUSE app_replicas"]
    names = _names(calls)
    assert names.index("systemd-run") < next(
        i for i, c in enumerate(calls) if "--command=PAUSE app" in c
    )
    armed = next(c for c in calls if c[0].endswith("systemd-run"))
    assert "--on-active=30s" in armed
    # The timer resumes every database through the same local console, without a password,
    # and goes on after a failed RESUME.
    assert armed[-2:] == ["--command=RESUME app", "--command=RESUME app_replicas"]
    assert "--set=ON_ERROR_STOP=0" in armed
    assert "--username=pgbouncer" in armed
    assert "--host=/var/run/postgresql" in armed


def test_pause_is_bounded_by_timeout_1() -> None:
    bouncer = FakeBouncer()
    _, calls = run(bouncer, state="paused", timeout=2.5)
    pause = next(c for c in calls if "--command=PAUSE app" in c)
    # timeout(1) next to psql, inside runuser: a signal to runuser would not reach psql.
    assert pause[:7] == [
        "/usr/sbin/runuser", "-u", "postgres", "--", "/usr/sbin/timeout", "--kill-after=2", "2.5"
    ]  # fmt: skip


def test_a_paused_pooler_is_left_as_it_is() -> None:
    bouncer = FakeBouncer(paused=True)
    result, calls = run(bouncer, state="paused")
    assert result["changed"] is False
    assert bouncer.sent == ["SHOW DATABASES"]
    assert "systemd-run" not in _names(calls)


def test_a_pause_that_times_out_is_resumed_and_fails_with_the_reason() -> None:
    bouncer = FakeBouncer(pause_rc=124)
    bouncer_after = fail(bouncer, state="paused", timeout=3)
    assert "PAUSE did not finish within 3 s" in bouncer_after["msg"]
    assert "the pooler was resumed" in bouncer_after["msg"]
    # app was pausing when time ran out, app_replicas never got its PAUSE: both resumed.
    assert bouncer.sent[-2:] == ["RESUME app", "RESUME app_replicas"]
    assert bouncer.paused == {"app": False, "app_replicas": False}


def test_a_refused_pause_says_what_the_console_said() -> None:
    bouncer = FakeBouncer(pause_rc=1)
    result = fail(bouncer, state="paused")
    assert result["msg"].startswith("PAUSE failed (rc=1)")


def test_resume_sends_resume_and_disarms() -> None:
    bouncer = FakeBouncer(paused=True)
    result, calls = run(bouncer, state="resumed")
    assert result["changed"] is True
    assert result["paused"] is False
    assert bouncer.sent == ["SHOW DATABASES", "RESUME app", "RESUME app_replicas"]
    stops = [c for c in calls if c[0].endswith("systemctl") and c[1] == "stop"]
    assert stops == [["/usr/sbin/systemctl", "stop", "pgchaos-deadman-pooler-6432.timer",
                      "pgchaos-deadman-pooler-6432.service"]]  # fmt: skip


def test_resume_of_a_running_pooler_changes_nothing_but_still_disarms() -> None:
    bouncer = FakeBouncer()
    result, calls = run(bouncer, state="resumed")
    assert result["changed"] is False
    assert bouncer.sent == ["SHOW DATABASES"]
    assert any(c[0].endswith("systemctl") for c in calls)


@pytest.mark.parametrize(
    ("state", "paused", "changed"),
    [("paused", False, True), ("resumed", True, True), ("resumed", False, False)],
)
def test_check_mode_sends_nothing_but_show(state: str, paused: bool, changed: bool) -> None:
    bouncer = FakeBouncer(paused=paused)
    result, calls = run(bouncer, check_mode=True, state=state)
    assert result["changed"] is changed
    assert bouncer.sent == ["SHOW DATABASES"]
    assert set(bouncer.paused.values()) == {paused}
    assert not [c for c in calls if not c[0].endswith("runuser")]


def test_an_unreachable_console_fails_with_the_port() -> None:
    def down(argv: list[str]) -> tuple[int, str, str]:
        return (
            2,
            "",
            "psql: error: connection to server on socket .s.PGSQL.6432 failed",
        )

    result = fail(down, state="resumed")  # type: ignore[arg-type]
    assert "cannot read the pooler's state on port 6432" in result["msg"]


def test_a_timeout_of_zero_is_refused() -> None:
    result = fail(FakeBouncer(), state="paused", timeout=0)
    assert result["msg"] == "timeout must be above 0, got 0.0"


def test_parse_show_reads_psql_unaligned_output() -> None:
    rows = mod.parse_show(FakeBouncer(paused=True).show())
    assert [r["name"] for r in rows] == ["app", "app_replicas", "pgbouncer"]
    assert mod.pooled(rows) == {"app": True, "app_replicas": True}
    assert mod.pooled([]) == {}


def test_a_half_paused_pooler_pauses_the_rest() -> None:
    bouncer = FakeBouncer()
    bouncer.paused["app"] = True
    result, _ = run(bouncer, state="paused", dead_man_seconds=0)
    assert result["changed"] is True
    assert bouncer.sent == ["SHOW DATABASES", "PAUSE app_replicas"]


def test_a_database_name_the_console_cannot_take_is_refused() -> None:
    bouncer = FakeBouncer()
    bouncer.paused = {"app; SHUTDOWN": False}
    result = fail(bouncer, state="paused")
    assert "cannot take unquoted" in result["msg"]


def test_only_the_named_databases_are_paused_with_a_timer_of_their_own() -> None:
    bouncer = FakeBouncer()
    result, calls = run(bouncer, state="paused", databases=["app_replicas"])
    assert result["dead_man"] == "pgchaos-deadman-pooler-6432-app_replicas"
    assert bouncer.paused == {"app": False, "app_replicas": True}
    armed = next(c for c in calls if c[0].endswith("systemd-run"))
    assert armed[-1] == "--command=RESUME app_replicas"
    result, _ = run(bouncer, state="resumed", databases=["app_replicas"])
    assert result["changed"] is True
    assert bouncer.paused == {"app": False, "app_replicas": False}


def test_an_unknown_database_is_refused_with_the_ones_there_are() -> None:
    result = fail(FakeBouncer(), state="paused", databases=["nope"])
    assert result["msg"] == "the pooler has no database nope (it has app, app_replicas)"


def _stat(*servers: tuple[str, str], replicas: tuple[str, ...] = ("pg1",)) -> str:
    rows = ["# pxname,svname,qcur,status,weight", "primary,FRONTEND,,OPEN,"]
    rows += [f"primary,{name},0,{status},1" for name, status in servers]
    rows += ["primary,BACKEND,0,UP,1", *(f"replicas,{r},0,UP,1" for r in replicas), ""]
    return "\n".join(rows)


def test_servers_up_counts_a_server_still_failing_its_way_down() -> None:
    stat = _stat(("pg1", "UP 1/2"), ("pg2", "UP"), ("pg3", "DOWN"), ("pg4", "MAINT"))
    assert mod.servers_up(stat, "primary") == ["pg1", "pg2"]
    assert mod.servers_up(stat, "replicas") == ["pg1"]
    assert mod.servers_up("", "primary") == []


def test_resume_waits_until_haproxy_has_the_new_leader_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = iter(
        [
            _stat(("pg1", "UP"), ("pg2", "DOWN")),
            _stat(("pg1", "UP 1/2"), ("pg2", "UP")),
            _stat(("pg1", "DOWN"), ("pg2", "UP")),
        ]
    )
    monkeypatch.setattr(mod, "haproxy_stat", lambda path: next(answers))
    monkeypatch.setattr(mod.time, "sleep", lambda s: None)
    bouncer = FakeBouncer(paused=True)
    result, _ = run(bouncer, state="resumed", wait_for_server="pg2")
    assert result["changed"] is True
    assert "waited_seconds" in result
    assert next(answers, None) is None, "resumed before HAProxy had pg2 alone"
    assert bouncer.paused == {"app": False, "app_replicas": False}


def test_resume_goes_on_when_haproxy_never_gets_there(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1000))
    monkeypatch.setattr(mod, "haproxy_stat", lambda path: _stat(("pg1", "UP")))
    monkeypatch.setattr(mod.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(mod.time, "sleep", lambda s: None)
    bouncer = FakeBouncer(paused=True)
    result = fail(bouncer, state="resumed", wait_for_server="pg2", timeout=5)
    assert result["msg"].startswith("HAProxy did not route around pg2's change of role within 5 s")
    assert "(up in primary: ['pg1'], in replicas: ['pg1'])" in result["msg"]
    assert result["msg"].endswith("the pooler was resumed anyway")
    assert bouncer.paused == {"app": False, "app_replicas": False}


def test_a_pooler_resumed_meanwhile_is_not_a_failure() -> None:
    """Its dead-man timer may resume it while the module waits for HAProxy."""

    class ResumedMeanwhile(FakeBouncer):
        def __call__(self, argv: list[str]) -> tuple[int, str, str]:
            if "--command=RESUME app" in argv:
                self.paused = {"app": False, "app_replicas": False}
            return super().__call__(argv)

    bouncer = ResumedMeanwhile(paused=True)
    result, _ = run(bouncer, state="resumed")
    assert result["paused"] is False
    assert bouncer.sent[-1] == "SHOW DATABASES"


def test_a_resume_that_leaves_a_database_paused_fails() -> None:
    class Stuck(FakeBouncer):
        def __call__(self, argv: list[str]) -> tuple[int, str, str]:
            if "--command=RESUME app" in argv:
                return 1, "", "ERROR:  something else"
            return super().__call__(argv)

    result = fail(Stuck(paused=True), state="resumed")
    assert result["msg"].startswith("RESUME failed (rc=1), app, app_replicas still paused")


def test_reconnect_closes_the_named_databases_server_connections() -> None:
    bouncer = FakeBouncer()
    result, _ = run(bouncer, state="reconnected", databases=["app_replicas"])
    assert result["changed"] is True
    assert bouncer.reconnected == ["app_replicas"]
    assert bouncer.paused == {"app": False, "app_replicas": False}
    checked, _ = run(FakeBouncer(), check_mode=True, state="reconnected")
    assert checked["changed"] is True


def test_reads_wait_until_the_new_leader_has_left_the_replicas_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read let go while HAProxy still counts the new leader a replica would be cut."""
    bouncer = FakeBouncer(paused=True)
    answers = iter(
        [
            _stat(("pg1", "DOWN"), ("pg2", "UP"), replicas=("pg2", "pg3")),
            _stat(("pg1", "DOWN"), ("pg2", "UP"), replicas=("pg1", "pg3")),
        ]
    )
    states = []

    def stat(path: str) -> str:
        states.append(dict(bouncer.paused))
        return next(answers)

    monkeypatch.setattr(mod, "haproxy_stat", stat)
    monkeypatch.setattr(mod.time, "sleep", lambda s: None)
    result, _ = run(
        bouncer, state="resumed", wait_for_server="pg2", replicas_databases=["app_replicas"]
    )
    assert result["changed"] is True
    # The writes went on at the first look, the reads only at the second.
    assert states == [
        {"app": True, "app_replicas": True},
        {"app": False, "app_replicas": True},
    ]
    assert bouncer.paused == {"app": False, "app_replicas": False}
