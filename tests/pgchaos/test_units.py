"""Pure functions: DSNs, env files, error classes, durations, events, the state tracker."""

from __future__ import annotations

import argparse
from pathlib import Path

import psycopg
import pytest

from pgchaos import classify
from pgchaos.cli import _duration
from pgchaos.dsn import hardened, parse_env_file, redact, resolve_endpoints
from pgchaos.errors import UsageError
from pgchaos.events import read_events
from pgchaos.localpg import LocalPostgres, free_port
from pgchaos.state import Identity, StateTracker


def test_env_file_parsing(tmp_path: Path) -> None:
    env = tmp_path / "client.env"
    env.write_text(
        "# comment\nexport PGHOST=10.0.0.5\nPGPORT=5000\nexport PGUSER='app user'\n"
        'export PGPASSWORD="s3 cr#et"  # trailing comment\nexport PGDATABASE=app\n\n'
    )
    values = parse_env_file(env)
    assert values == {
        "PGHOST": "10.0.0.5",
        "PGPORT": "5000",
        "PGUSER": "app user",
        "PGPASSWORD": "s3 cr#et",
        "PGDATABASE": "app",
    }
    endpoints = resolve_endpoints(None, None, str(env))
    rw = psycopg.conninfo.conninfo_to_dict(endpoints.rw)
    ro = psycopg.conninfo.conninfo_to_dict(endpoints.ro)
    assert rw == {"host": "10.0.0.5", "port": "5000", "user": "app user",
                  "password": "s3 cr#et", "dbname": "app"}  # fmt: skip
    assert ro["port"] == "5001"
    env.write_text(env.read_text() + "export PGPORT_REPLICA=6001\n")
    assert "port=6001" in resolve_endpoints(None, None, str(env)).ro
    # an explicit --rw wins over the file, which only fills in what it lacks
    given = resolve_endpoints("host=a,b port=5000", "host=c user=other", str(env))
    assert psycopg.conninfo.conninfo_to_dict(given.rw) == {
        "host": "a,b", "port": "5000", "user": "app user", "password": "s3 cr#et", "dbname": "app"
    }  # fmt: skip
    # another user does not get this user's password
    assert psycopg.conninfo.conninfo_to_dict(given.ro) == {
        "host": "c", "user": "other", "dbname": "app"
    }  # fmt: skip


def test_only_rw_without_env_file_reads_from_rw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    endpoints = resolve_endpoints("host=a", None, None)
    assert endpoints.ro == "host=a"
    with pytest.raises(UsageError, match="no endpoints"):
        resolve_endpoints(None, "host=b", None)


def test_the_default_env_file_fills_in_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".lab").mkdir()
    (tmp_path / ".lab" / "client.env").write_text(
        "export PGHOST=h\nexport PGUSER=app\nexport PGPASSWORD=pw\nexport PGDATABASE=db\n"
    )
    endpoints = resolve_endpoints("host=a,b port=5000,5000", "host=a,b port=5001,5001", None)
    assert "password=pw" in endpoints.rw
    assert "password=pw" in endpoints.ro
    assert endpoints.env_file == str((tmp_path / ".lab" / "client.env").resolve())


def test_redact_and_harden() -> None:
    uri = "postgresql://app:pw@h1:5000,h2:5001/db?target_session_attrs=read-write"
    shown = redact(uri)
    assert "pw" not in shown
    assert "host=h1,h2" in shown
    params = psycopg.conninfo.conninfo_to_dict(
        hardened(
            "host=h options='-c default_transaction_read_only=on' connect_timeout=9",
            connect_timeout=3,
            statement_timeout=2.5,
            application_name="pgchaos-rw",
        )
    )
    assert params["connect_timeout"] == "9"  # the user's value wins
    assert params["options"] == "-c default_transaction_read_only=on -c statement_timeout=2500"
    assert params["tcp_user_timeout"] == "3000"
    assert params["keepalives"] == "1"
    assert params["application_name"] == "pgchaos-rw"


def test_duration_parsing() -> None:
    assert _duration("30") == 30
    assert _duration("1.5s") == 1.5
    assert _duration("5m") == 300
    assert _duration("2h") == 7200
    assert _duration("250ms") == 0.25
    with pytest.raises(argparse.ArgumentTypeError):
        _duration("soon")


def test_classify_refused_connection() -> None:
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(f"host=127.0.0.1 port={free_port()} connect_timeout=2")
    assert classify.classify(info.value, connecting=True) == classify.REFUSED


@pytest.mark.postgres
def test_classify_server_errors(pg: LocalPostgres) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        conn.execute("set statement_timeout = 50")
        with pytest.raises(psycopg.Error) as info:
            conn.execute("select pg_sleep(1)")
        assert classify.classify(info.value) == classify.TIMEOUT
        conn.execute("set default_transaction_read_only = on")
        with pytest.raises(psycopg.Error) as info:
            conn.execute("create table pgchaos_never (x int)")
        assert classify.classify(info.value) == classify.READ_ONLY
        with pytest.raises(psycopg.Error) as info:
            conn.execute("select * from no_such_table")
        assert classify.classify(info.value) == classify.OTHER
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(pg.dsn(password="wrong"))
    assert classify.classify(info.value, connecting=True) == classify.OTHER
    conn = psycopg.connect(pg.dsn(application_name="pgchaos-victim"), autocommit=True)
    pg.superuser_sql(
        "select pg_terminate_backend(pid) from pg_stat_activity"
        " where application_name = 'pgchaos-victim'"
    )
    with pytest.raises(psycopg.OperationalError) as info:
        conn.execute("select 1")
    assert classify.classify(info.value) == classify.CONNECTION_LOST
    conn.close()


def test_events_file(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text(
        '{"time": "2026-01-01T00:00:10Z", "action": "b", "target": "x"}\n'
        '{"time": 1767225605, "action": "a", "target": "y", "scenario": "s"}\n'
        '{"time": "2026-01-01T00:00:20", "action": "c", "target": "z"}\n'
        '{"time": "yesterday", "action": "d", "target": "z"}\n'
        '{"time": 1, "action": 5, "target": "z"}\n'
        "[1, 2]\n"
    )
    events, warnings = read_events(tmp_path)
    assert [(e.action, e.time) for e in events] == [
        ("a", 1767225605.0),
        ("b", 1767225610.0),
        ("c", 1767225620.0),  # no zone: UTC
    ]
    assert events[0].scenario == "s"
    assert [w.split(":")[1] for w in warnings] == ["4", "5", "6"]


def test_state_tracker_lines() -> None:
    lines: list[str] = []
    tracker = StateTracker(["rw", "ro"], lines.append)
    a = Identity("10.0.0.1:5432", "primary", "1")
    b = Identity("10.0.0.2:5432", "primary", "2")
    tracker.success("rw", a, 1.0)
    tracker.success("rw", a, 2.0)
    tracker.failure("rw", classify.CONNECTION_LOST, "server closed the connection", 10.0)
    tracker.failure("rw", classify.CONNECTION_LOST, "again", 11.0)
    tracker.success("rw", a, 0.0)  # was in flight before the failure: not "back"
    tracker.failure("rw", classify.REFUSED, "refused", 12.0)
    tracker.success("rw", b, 23.5, 23.6)
    tracker.success("rw", b, 24.0)
    assert lines[0] == "rw: up, served by 10.0.0.1:5432 (primary, timeline 1)"
    assert lines[1] == "rw: connection lost (failover in progress?)"
    assert lines[2] == "rw: connection refused"
    assert lines[3].startswith(
        "rw: back, served by 10.0.0.2:5432 (primary, timeline 2), after 13.6 s"
    )
    assert len(lines) == 4
