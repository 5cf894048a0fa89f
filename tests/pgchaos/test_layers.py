"""Failover layers from synthetic journals of Patroni, PostgreSQL and HAProxy."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from chaoshelpers import CliRunner, read_json
from test_split_brain import acks, write_run

from pgchaos.events import Event
from pgchaos.layers import find_fault, parse_journal
from pgchaos.summary import summarize

A = "10.0.0.1:5432"
B = "10.0.0.2:5432"
T0 = 1000.0
P = "patroni[812]: 2026-11-29 18:09:10,001 INFO: "


def stamp(t: float, tz: str = "+00:00") -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + tz


def journal(host: str, entries: list[tuple[float, str]], tz: str = "+00:00") -> str:
    lines = ["-- Journal begins at Sun 2026-11-29 10:00:00 UTC. --"]
    lines += [f"{stamp(t, tz)} {host} {message}" for t, message in entries]
    return "\n".join(lines) + "\n"


def pg_line(text: str) -> str:
    """PostgreSQL logging through Patroni's stdout, with its own (ignored) timestamp."""
    return f"patroni[901]: 2026-11-29 18:09:10.123 UTC [901] LOG:  {text}"


def failover_run(tmp_path: Path, *, with_logs: bool = True) -> Path:
    writes = [
        *acks(A, "1", T0 + 1, T0 + 10),
        *[(T0 + 10 + 0.5 * i, 2.0, "failed", A, "") for i in range(1, 23)],
        *acks(B, "2", T0 + 21.5, T0 + 25),
    ]
    run = write_run(tmp_path / "run", writes)
    (run / "events.jsonl").write_text(
        json.dumps({"time": T0 + 5, "action": "scenario-start", "target": "cluster"})
        + "\n"
        + json.dumps({"time": T0 + 10, "action": "node", "target": "pg1"})
        + "\n"
        + json.dumps({"time": T0 + 27, "action": "recover", "target": "pg1"})
        + "\n"
    )
    if not with_logs:
        return run
    logs = run / "logs"
    for host in ("pg1", "pg2", "pg3", "lb1"):
        (logs / host).mkdir(parents=True)
    (logs / "pg1" / "journal-patroni.txt").write_text("-- No entries --\n")
    (logs / "pg2" / "journal-patroni.txt").write_text(
        journal(
            "pg2",
            [
                (T0 + 2.0, P + "Lock owner: None; I am pg2"),  # before the fault: ignored
                (T0 + 8.0, "patroni[812]: INFO: no action. I am (pg2), a secondary, and "
                           "following a leader (pg1)"),
                (T0 + 19.0, P + "Lock owner: None; I am pg2"),
                (T0 + 19.1, P + "Got response from pg3 http://10.0.0.13:8008/patroni:"
                            ' {"state": "running", "role": "replica"}'),
                (T0 + 19.2, P + "promoted self to leader by acquiring session lock"),
                (T0 + 19.3, "patroni[900]: server promoting"),
                (T0 + 19.35, pg_line("received promote request")),
                (T0 + 19.4, pg_line("selected new timeline ID: 2")),
                (T0 + 19.6, pg_line("database system is ready to accept connections")),
                (T0 + 19.61, "patroni[812]: INFO: cleared rewind state after becoming the leader"),
                (T0 + 20.5, "patroni[812]: INFO: no action. I am (pg2), the leader with the lock"),
            ],
        )
    )  # fmt: skip
    (logs / "pg3" / "journal-patroni.txt").write_text(
        journal(
            "pg3",
            [
                (T0 + 19.05, "patroni[700]: INFO: Lock owner: None; I am pg3"),
                (T0 + 19.3, "patroni[700]: INFO: following new leader after trying and failing "
                            "to obtain lock"),
                (T0 + 19.5, pg_line("database system is ready to accept connections")),
            ],
            tz="+0000",
        )
    )  # fmt: skip
    (logs / "lb1" / "journal-haproxy.txt").write_text("-- No entries --\n")
    (logs / "lb1" / "journal-haproxy-syslog.txt").write_text(
        journal(
            "lb1",
            [
                (T0 + 3.0, "haproxy[55]: Server primary/pg1 is UP, reason: Layer7 check passed"),
                (T0 + 11.0, "haproxy[55]: Server primary/pg1 is DOWN, reason: Layer4 timeout, "
                            "check duration: 2001ms. 0 active and 0 backup servers left."),
                (T0 + 19.8, "haproxy[55]: Server replicas/pg3 is UP, reason: Layer7 check passed"),
                (T0 + 21.0, "haproxy[55]: Server primary/pg2 is UP, reason: Layer7 check passed, "
                            "code: 200, check duration: 3ms. 1 active and 0 backup servers."),
            ],
        )
    )  # fmt: skip
    return run


def test_journal_lines_are_parsed_with_their_offsets() -> None:
    text = (
        "2026-11-29T18:08:58.250000+01:00 pg2 patroni[812]: INFO: Lock owner: None; I am pg2\n"
        "2026-11-29T17:08:59.500000+0000 lb1 haproxy[55]: Server primary/pg2 is UP\n"
        "-- Boot 4f0a --\n"
        "garbage\n"
        "2026-11-29T17:09:00 pg1 postgres[5]: LOG:  database system is ready to accept "
        "connections\n"
    )
    lines = parse_journal(text, "h", "journal-x.txt")
    base = datetime(2026, 11, 29, 17, 8, 58, tzinfo=UTC).timestamp()
    assert [round(x.time - base, 3) for x in lines] == [0.25, 1.5, 2.0]
    assert lines[0].message == "patroni: INFO: Lock owner: None; I am pg2"
    assert lines[1].message == "haproxy: Server primary/pg2 is UP"


def test_the_fault_is_the_first_event_of_kind_fault() -> None:
    events = [
        Event(1.0, "scenario-start", "cluster", kind="note"),
        Event(2.0, "recover", "pg1", kind="recover"),
        Event(3.0, "kill-postgres", "pg1", kind="fault"),
        Event(4.0, "node", "pg2", kind="fault"),
    ]
    assert find_fault(events) == events[2]
    # No action word is taken for a fault by guess any more.
    assert find_fault([events[0], Event(4.0, "weird", "x")]) is None
    assert find_fault(events[:2]) is None
    assert find_fault([]) is None


def test_layers_of_a_failover(tmp_path: Path) -> None:
    summary = summarize(failover_run(tmp_path))
    milestones = summary["failover_milestones"]
    assert milestones["fault"]["action"] == "node"
    assert milestones["fault"]["at_s"] == 10.0
    assert milestones["detection"]["host"] == "pg2"
    assert milestones["detection"]["at_s"] == pytest.approx(19.0)
    assert "Lock owner: None; I am pg2" in milestones["detection"]["line"]
    assert milestones["lock_acquired"]["host"] == "pg2"
    assert milestones["lock_acquired"]["at_s"] == pytest.approx(19.2)
    # pg3's restart is no promotion: only the new leader's line counts.
    assert milestones["promotion_done"]["host"] == "pg2"
    assert milestones["promotion_done"]["at_s"] == pytest.approx(19.6)
    assert milestones["haproxy_up"]["server"] == "pg2"
    assert milestones["haproxy_up"]["backend"] == "primary"
    assert milestones["haproxy_up"]["at_s"] == pytest.approx(21.0)
    assert milestones["first_ack"]["at_s"] == pytest.approx(21.505)
    layers = {x["layer"]: x for x in summary["layers"]}
    assert list(layers) == [
        "lease expiry / detection",
        "election + promotion",
        "HAProxy detection",
        "client reconnect",
    ]
    seconds = [x["seconds"] for x in summary["layers"]]
    assert seconds == pytest.approx([9.0, 0.6, 1.4, 0.505], abs=0.002)
    assert all(x["reason"] is None for x in summary["layers"])
    assert layers["HAProxy detection"]["start"] == milestones["promotion_done"]["time"]
    assert layers["HAProxy detection"]["detail"].startswith(
        "lb1: haproxy: Server primary/pg2 is UP"
    )
    assert layers["client reconnect"]["detail"] == "acknowledged write"
    # The layers add up to the time from the fault to the first write after it.
    assert sum(seconds) == pytest.approx(21.505 - 10.0, abs=0.002)


def test_missing_logs_give_reasons_not_crashes(tmp_path: Path) -> None:
    summary = summarize(failover_run(tmp_path, with_logs=False))
    layers = summary["layers"]
    assert [x["seconds"] for x in layers] == [None, None, None, None]
    assert "no logs collected" in layers[0]["reason"]
    assert layers[3]["reason"].startswith("haproxy_up: no logs collected")
    assert summary["failover_milestones"]["first_ack"]["at_s"] == pytest.approx(21.505)


def test_partial_and_damaged_logs(tmp_path: Path) -> None:
    run = failover_run(tmp_path)
    (run / "logs" / "lb1" / "journal-haproxy-syslog.txt").write_bytes(b"\xff\xfe garbage\n\x00\n")
    # PostgreSQL's own lines were not collected: Patroni's promotion is named instead.
    patroni = run / "logs" / "pg2" / "journal-patroni.txt"
    patroni.write_text(
        "\n".join(x for x in patroni.read_text().splitlines() if "LOG:" not in x) + "\n"
    )
    summary = summarize(run)
    layers = {x["layer"]: x for x in summary["layers"]}
    assert layers["lease expiry / detection"]["seconds"] == pytest.approx(9.0)
    assert layers["election + promotion"]["seconds"] is None
    assert "ready to accept connections" in layers["election + promotion"]["reason"]
    assert "Patroni logged promotion" in layers["election + promotion"]["reason"]
    assert "no HAProxy" in layers["client reconnect"]["reason"]


def test_no_events_means_no_layers(tmp_path: Path) -> None:
    run = failover_run(tmp_path)
    (run / "events.jsonl").unlink()
    summary = summarize(run)
    assert all(x["seconds"] is None for x in summary["layers"])
    assert summary["layers"][0]["reason"].startswith("fault: no event in events.jsonl")


def test_report_has_the_layers(tmp_path: Path, cli: CliRunner) -> None:
    run = failover_run(tmp_path)
    result = cli("report", str(run))
    assert result.returncode == 0, result.stderr
    summary = read_json(run / "summary.json")
    assert [x["seconds"] for x in summary["layers"]] == pytest.approx([9.0, 0.6, 1.4, 0.505])
    html = (run / "report.html").read_text()
    assert ">HAProxy detection</td>" in html
    assert "1.4 s" in html


def test_layers_timestamps_are_utc_iso() -> None:
    assert stamp(T0) == "1970-01-01T00:16:40.000000+00:00"
    assert datetime.fromisoformat(stamp(T0 + 0.5)) - datetime.fromtimestamp(T0, UTC) == timedelta(
        seconds=0.5
    )


def test_in_place_recovery_of_the_leader(tmp_path: Path) -> None:
    """kill-postgres: Patroni keeps the lock and brings its PostgreSQL back as primary."""
    run = failover_run(tmp_path)
    for host in ("pg2", "pg3"):
        (run / "logs" / host / "journal-patroni.txt").write_text("-- No entries --\n")
    (run / "logs" / "pg1" / "journal-patroni.txt").write_text(
        journal(
            "pg1",
            [
                (T0 + 12.0, P + "starting as readonly because i had the session lock"),
                (T0 + 14.0, P + "promoted self to leader because I had the session lock"),
                (T0 + 14.2, pg_line("selected new timeline ID: 2")),
                (T0 + 14.5, pg_line("database system is ready to accept connections")),
            ],
        )
    )
    (run / "logs" / "lb1" / "journal-haproxy-syslog.txt").write_text(
        journal("lb1", [(T0 + 16.0, "haproxy[55]: Server primary/pg1 is UP, reason: ok")])
    )
    summary = summarize(run)
    milestones = summary["failover_milestones"]
    assert milestones["detection"]["at_s"] == pytest.approx(12.0)
    assert milestones["lock_acquired"]["host"] == "pg1"
    assert milestones["promotion_done"]["at_s"] == pytest.approx(14.5)
    seconds = [x["seconds"] for x in summary["layers"]]
    assert seconds == pytest.approx([2.0, 2.5, 1.5, 5.505], abs=0.002)


def test_overlapping_layers_are_never_negative(tmp_path: Path) -> None:
    """HAProxy marked the new leader UP before PostgreSQL logged that it was ready."""
    run = failover_run(tmp_path)
    (run / "logs" / "lb1" / "journal-haproxy-syslog.txt").write_text(
        journal("lb1", [(T0 + 19.506, "haproxy[55]: Server primary/pg2 is UP, reason: ok")])
    )
    summary = summarize(run)
    layers = {x["layer"]: x for x in summary["layers"]}
    haproxy = layers["HAProxy detection"]
    assert haproxy["seconds"] == 0.0
    assert haproxy["reason"] == (
        "HAProxy saw the new leader up 0.094 s before PostgreSQL logged ready: the layers overlap"
    )
    # What was logged stays as logged; only the duration is not negative.
    assert haproxy["end_s"] < haproxy["start_s"]
    reconnect = layers["client reconnect"]
    # Measured from PostgreSQL's ready line, the later of the two, so nothing is counted twice.
    assert reconnect["seconds"] == pytest.approx(21.505 - 19.6, abs=0.002)
    assert "measured from when PostgreSQL logged ready" in reconnect["reason"]
    seconds = [x["seconds"] for x in summary["layers"]]
    assert all(s >= 0 for s in seconds)
    assert sum(seconds) == pytest.approx(21.505 - 10.0, abs=0.002)
