"""Report rendering and the window arithmetic behind the headline figures."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from chaoshelpers import CliRunner, read_json

from pgchaos.ledger import FIELDS
from pgchaos.localpg import LocalPostgres
from pgchaos.rundir import iso
from pgchaos.summary import summarize

PLOTS = ("timeline.png", "latency.png")
PG1, PG2, PG3 = "10.0.0.1:5432", "10.0.0.2:5432", "10.0.0.3:5432"


@pytest.fixture(scope="module")
def run(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pgchaos.cli import main

    out = tmp_path_factory.mktemp("report") / "run"
    code = main(
        ["load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "2", "--readers", "1",
         "--duration", "1.5", "--rate", "40", "--out", str(out), "-q"]
    )  # fmt: skip
    assert code == 0
    return out


def _assert_rendered(run_dir: Path, min_size: int = 2000) -> str:
    html = (run_dir / "report.html").read_text()
    assert html.startswith("<!doctype html>")
    assert html.count("data:image/png;base64,") == len(PLOTS)
    for name in PLOTS:
        png = run_dir / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert png.stat().st_size > min_size, name
    return html


@pytest.mark.postgres
def test_report_without_events(run: Path, cli: CliRunner, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    result = cli("report", str(copy))
    assert result.returncode == 0, result.stderr
    html = _assert_rendered(copy)
    assert "No events recorded." in html
    assert "Not verified yet" in html
    summary = read_json(copy / "summary.json")
    assert summary["events"] == []
    rw = summary["per_endpoint"]["rw"]
    assert rw["longest_unavailability_s"] == 0.0
    assert rw["unavailability_windows"] == []
    assert rw["failed_ops"] == 0
    assert 0 < rw["latency_ms"]["p50"] <= rw["latency_ms"]["p99"] <= rw["latency_ms"]["max"]
    assert 0 < rw["longest_stall_s"] < 1
    assert "rw: " in result.stdout


@pytest.mark.postgres
def test_report_with_events_and_verify(
    run: Path, cli: CliRunner, pg: LocalPostgres, tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    start = read_json(copy / "run.json")["started_at"]
    from pgchaos.rundir import parse_time

    t0 = parse_time(start)
    with (copy / "events.jsonl").open("a") as handle:
        handle.write(
            json.dumps(
                {
                    "time": iso(t0 + 0.5),
                    "action": "kill",
                    "target": "pg1",
                    "scenario": "primary-crash",
                    "detail": "kill -9",
                }
            )
            + "\n"
        )
        handle.write(json.dumps({"time": t0 + 1.0, "action": "start", "target": "pg1"}) + "\n")
        handle.write(json.dumps({"time": str(t0 + 1.2), "action": "heal", "target": "net"}) + "\n")
        handle.write("this is not json\n")
    assert cli("verify", str(copy), "--dsn", pg.dsn()).returncode == 0
    result = cli("report", str(copy))
    assert result.returncode == 0, result.stderr
    html = _assert_rendered(copy)
    summary = read_json(copy / "summary.json")
    assert [e["action"] for e in summary["events"]] == ["kill", "start", "heal"]
    assert [e["at_s"] for e in summary["events"]] == pytest.approx([0.5, 1.0, 1.2], abs=0.002)
    assert summary["events"][0]["scenario"] == "primary-crash"
    assert summary["warnings"] == [
        "events.jsonl:4: ignored (Expecting value: line 1 column 1 (char 0))"
    ]
    assert summary["verify"]["lost"] == 0
    assert summary["verify"]["writes"] > 0
    assert "primary-crash" in html
    assert "lost: 0" in html
    assert "synchronous replication" not in html
    assert "warning: events.jsonl:4" in result.stdout


def _record(**fields: object) -> list[object]:
    """One records.csv row; the fields not given are empty, whatever FIELDS holds."""
    unknown = set(fields) - set(FIELDS)
    assert not unknown, unknown
    return [fields.get(name, "") for name in FIELDS]


def _write_run(run_dir: Path, rows: list[tuple[float, str, str, float, str, str]]) -> None:
    """A synthetic run: (start, endpoint, kind, latency_ms, outcome, error_class)."""
    run_dir.mkdir()
    (run_dir / "run.json").write_text(
        json.dumps({"tool": "pgchaos", "run_id": "t", "started_at": 1000.0, "ended_at": 1020.0})
    )
    with (run_dir / "records.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for t, endpoint, kind, latency, outcome, error_class in rows:
            writer.writerow(
                _record(
                    time=t,
                    endpoint=endpoint,
                    kind=kind,
                    worker=0,
                    latency_ms=latency,
                    outcome=outcome,
                    error_class=error_class,
                    server=PG1 if t < 1010 else PG2,
                    role="primary",
                    timeline="1" if t < 1010 else "2",
                )
            )


def test_window_arithmetic(tmp_path: Path) -> None:
    rows = [
        (1001.0, "rw", "write", 10.0, "ok", ""),  # completes 1001.010
        (1002.0, "rw", "write", 10.0, "ok", ""),  # completes 1002.010: last success
        (1002.5, "rw", "write", 500.0, "in_doubt", "connection_lost"),  # completes 1003.0
        (1003.5, "rw", "connect", 1.0, "failed", "refused"),
        (1005.0, "rw", "connect", 1.0, "failed", "refused"),
        (1006.0, "rw", "connect", 5.0, "ok", ""),  # a connect proves nothing
        (1006.1, "rw", "write", 2.0, "failed", "read_only"),
        (1007.0, "rw", "write", 20.0, "ok", ""),  # completes 1007.020: back
        (1008.0, "rw", "write", 10.0, "ok", ""),
        (1012.0, "rw", "write", 10.0, "failed", "timeout"),  # a second, short window
        (1012.5, "rw", "write", 10.0, "ok", ""),
        (1015.0, "ro", "read", 1.0, "failed", "refused"),  # ro never recovers
    ]
    _write_run(tmp_path / "run", rows)
    summary = summarize(tmp_path / "run")
    rw = summary["per_endpoint"]["rw"]
    first, second = rw["unavailability_windows"]
    assert first["start_s"] == pytest.approx(2.010)
    assert first["end_s"] == pytest.approx(7.020)
    assert first["duration_s"] == pytest.approx(5.010)
    assert first["first_failure_s"] == pytest.approx(3.0)
    assert first["failures"] == 4
    assert first["error_classes"] == {"refused": 2, "connection_lost": 1, "read_only": 1}
    assert second["duration_s"] == pytest.approx(1012.51 - 1008.01)
    assert rw["longest_unavailability_s"] == pytest.approx(5.010)
    assert rw["total_error_time_s"] == pytest.approx(5.010 + 4.5)
    assert rw["failed_ops"] == 2
    assert rw["in_doubt_ops"] == 1
    assert rw["failed_connects"] == 2
    # Completions 1001.01, 1002.01, 1007.02, 1008.01, 1012.51: the outage is the longest wait.
    assert rw["longest_stall_s"] == pytest.approx(5.010)
    assert rw["latency_ms"]["max"] == 20.0
    assert [(p["server"], p["timeline"]) for p in rw["servers"]] == [
        (PG1, "1"),
        (PG1, "1"),  # split by the outage
        (PG2, "2"),
    ]
    assert rw["server_changes"] == [
        {"at_s": 12.51, "from": f"{PG1} (timeline 1)", "to": f"{PG2} (timeline 2)"}
    ]
    (ro_window,) = summary["per_endpoint"]["ro"]["unavailability_windows"]
    assert ro_window["recovered"] is False
    assert ro_window["start_s"] == 0.0
    assert ro_window["end_s"] == 20.0


def test_a_verify_json_from_before_sync_cancels_were_counted_still_reports(
    tmp_path: Path, cli: CliRunner
) -> None:
    _write_run(tmp_path / "run", [(1001.0, "rw", "write", 10.0, "ok", "")])
    old_verify = {
        "lost": 3,
        "ghosts": 0,
        "in_doubt_total": 0,
        "acknowledged": {"present": 7, "lost": 3},
        "writes": 10,
    }
    (tmp_path / "run" / "verify.json").write_text(json.dumps(old_verify))
    result = cli("report", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    verify = read_json(tmp_path / "run" / "summary.json")["verify"]
    assert verify["lost"] == 3
    assert verify["lost_after_sync_cancel"] is None
    assert verify["acknowledged_unreplicated"] is None
    html = (tmp_path / "run" / "report.html").read_text()
    assert "lost: 3</b>;" in html
    assert "synchronous" not in html
    assert "verify: 3 lost, 0 ghosts" in result.stdout


def test_report_of_a_run_without_records(tmp_path: Path, cli: CliRunner) -> None:
    """A run that ended before its first operation still gets a (empty) report."""
    _write_run(tmp_path / "run", [])
    result = cli("report", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    html = _assert_rendered(tmp_path / "run", min_size=1000)
    assert "No operations recorded." in html
    assert read_json(tmp_path / "run" / "summary.json")["records"] == 0


T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
SECRET = "hunter2"


def ten_minute_run(run_dir: Path) -> Path:
    """A synthetic 10-minute run: the primary's node is lost at 300 s, pg2 takes over.

    Two writers and two readers at 40 operations per second each; the readers go
    round the replicas (pg2 and pg3, later pg3 and pg1) as HAProxy's round robin
    does, pg2 answers the replica port as primary for two seconds after its
    promotion, and pg3 moves to the new timeline after a short outage.
    """
    run_dir.mkdir()
    dsn = f"host=10.0.0.100 user=chaos password={SECRET} dbname=chaos"
    (run_dir / "run.json").write_text(
        json.dumps(
            {
                "tool": "pgchaos",
                "run_id": "ten-minutes",
                "status": "completed",
                "started_at": iso(T0),
                "ended_at": iso(T0 + 600),
                "endpoints": {"rw": f"{dsn} port=5000", "ro": f"{dsn} port=5001"},
            }
        )
    )
    events = [
        (290.0, "scenario-start", "cluster"),
        (300.0, "node", "pg1"),
        (380.0, "recover", "pg1"),
        (590.0, "scenario-end", "cluster"),
    ]
    (run_dir / "events.jsonl").write_text(
        "".join(
            json.dumps({"time": iso(T0 + at), "action": a, "target": t, "scenario": "node-loss"})
            + "\n"
            for at, a, t in events
        )
    )
    rows: list[list[object]] = []
    # Real latencies are noisy, and noisy curves make bigger PNGs: the size check needs them.
    rng = np.random.default_rng(7)
    latency = iter(np.round(rng.lognormal(0.5, 0.6, 100_000), 3).tolist())
    jitter = iter(rng.uniform(-0.01, 0.01, 100_000).tolist())
    for worker in range(2):
        for n, rel in enumerate(np.arange(0.01 + worker * 0.0125, 600.0, 0.025)):
            t = T0 + float(rel) + next(jitter)
            common = {"time": round(t, 6), "endpoint": "rw", "kind": "write", "worker": worker}
            if rel < 300.0:
                rows.append(_record(**common, latency_ms=next(latency), outcome="ok", server=PG1,
                                    role="primary", timeline="1", id=f"w{n}", seq=n))  # fmt: skip
            elif rel < 317.6:
                rows.append(_record(**common, latency_ms=1.0, outcome="failed",
                                    error_class="refused", error="connection refused"))  # fmt: skip
            else:
                rows.append(_record(**common, latency_ms=next(latency), outcome="ok", server=PG2,
                                    role="primary", timeline="2", id=f"w{n}", seq=n))  # fmt: skip
    for worker in range(2, 4):
        for n, rel in enumerate(np.arange(0.02 + worker * 0.005, 600.0, 0.025)):
            t = T0 + float(rel) + next(jitter)
            common = {"time": round(t, 6), "endpoint": "ro", "kind": "read", "worker": worker}
            turn = n % 2  # the balancer's round robin
            if rel < 317.0:
                server, role, timeline = (PG2, PG3)[turn], "replica", "1"
            elif rel < 319.0:
                server, role, timeline = ((PG2, "primary", "2"), (PG3, "replica", "1"))[turn]
                if rel >= 318.0 and server == PG3:
                    if rel < 318.6:
                        rows.append(_record(**common, latency_ms=1.0, outcome="failed",
                                            error_class="connection_lost"))  # fmt: skip
                        continue
                    timeline = "2"
            elif rel < 400.0:
                server, role, timeline = PG3, "replica", "2"
            else:
                server, role, timeline = (PG3, PG1)[turn], "replica", "2"
            rows.append(_record(**common, latency_ms=next(latency), outcome="ok", server=server,
                                role=role, timeline=timeline))  # fmt: skip
    rows.sort(key=lambda r: float(str(r[0])))
    with (run_dir / "records.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        writer.writerows(rows)
    return run_dir


def test_ten_minute_report_is_small_and_says_what_happened(tmp_path: Path, cli: CliRunner) -> None:
    run = ten_minute_run(tmp_path / "run")
    result = cli("report", str(run))
    assert result.returncode == 0, result.stderr
    size = (run / "report.html").stat().st_size
    assert size < 300_000, size
    html = _assert_rendered(run)
    summary = read_json(run / "summary.json")
    rw, ro = summary["per_endpoint"]["rw"], summary["per_endpoint"]["ro"]

    # Only failovers are changes: the round robin between replicas is not.
    assert rw["server_changes"] == [
        {"at_s": pytest.approx(317.6, abs=0.02), "from": f"{PG1} (timeline 1)",
         "to": f"{PG2} (timeline 2)"}
    ]  # fmt: skip
    assert [(c["from"], c["to"]) for c in ro["server_changes"]] == [
        (f"{PG2} (replica, timeline 1)", f"{PG2} (primary, timeline 2)"),
        (f"{PG3} (replica, timeline 1)", f"{PG3} (replica, timeline 2)"),
    ]
    assert ro["server_changes"][0]["at_s"] == pytest.approx(317.0, abs=0.05)
    # rw periods stay per server; ro ones are per role and timeline, a handful.
    assert [(p["server"], p["timeline"]) for p in rw["servers"]] == [(PG1, "1"), (PG2, "2")]
    assert [(p["role"], p["timeline"]) for p in ro["servers"]] == [
        ("replica", "1"),
        ("primary", "2"),
        ("replica", "2"),
    ]
    assert ro["servers"][0]["server"] in (f"{PG2}, {PG3}", f"{PG3}, {PG2}")
    share = {(s["server"], s["role"]): s for s in ro["server_share"]}
    assert set(share) == {(PG1, "replica"), (PG2, "replica"), (PG2, "primary"), (PG3, "replica")}
    assert sum(s["share_pct"] for s in share.values()) == pytest.approx(100.0, abs=0.2)
    assert share[(PG1, "replica")]["first_s"] == pytest.approx(400.0, abs=0.05)
    assert share[(PG3, "replica")]["timelines"] == ["1", "2"]
    # The playbooks' figures are all still there.
    assert rw["longest_unavailability_s"] == pytest.approx(17.6, abs=0.05)
    for key in ("unavailability_windows", "error_classes", "failed_ops", "in_doubt_ops"):
        assert key in rw
        assert key in ro

    # The headline comes first and tells the story in words.
    head = html[html.index('id="headline"') : html.index("</header>")]
    assert html.index('id="headline"') < html.index("data:image/png")
    assert "Writes were down 17.6 s from 22:18:19 after node pg1 was lost" in head
    assert "data loss not verified yet" in head
    assert "No split brain" in head
    # Endpoints one per line, without the password.
    assert SECRET not in html
    assert "port=5000" in head
    assert "port=5001" in head
    assert "{&quot;" not in html
    # A page of tables, not one row per round-robin hop.
    assert html.count("<tr>") < 200


def test_overlapping_layers_show_no_negative_duration(tmp_path: Path, cli: CliRunner) -> None:
    from test_layers import T0 as LAYERS_T0
    from test_layers import failover_run, journal

    run = failover_run(tmp_path)
    (run / "logs" / "lb1" / "journal-haproxy-syslog.txt").write_text(
        journal("lb1", [(LAYERS_T0 + 19.506, "haproxy[55]: Server primary/pg2 is UP")])
    )
    result = cli("report", str(run))
    assert result.returncode == 0, result.stderr
    html = (run / "report.html").read_text()
    assert "-0.094" not in html
    assert "\N{MINUS SIGN}" not in html
    assert "HAProxy saw the new leader up 0.094 s before PostgreSQL logged ready" in html


def test_staleness_and_read_anomalies_when_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract of pgchaos.reads: a staleness series per reader and figures per endpoint."""
    from pgchaos import report
    from pgchaos.summary import load_run_data

    run = ten_minute_run(tmp_path / "run")
    data = load_run_data(run)
    summary = summarize(run, data)
    times = np.arange(0.0, 600.0, 0.05)
    stale = np.where((times > 300) & (times < 320), (times - 300) / 4, 0.002)
    monkeypatch.setattr(
        report,
        "_staleness_series",
        lambda _: {"ro": (times, stale), "rwr": (times[::7], np.zeros(len(times[::7])))},
    )
    ro = summary["per_endpoint"]["ro"]
    ro["staleness_s"] = {"p50": 0.002, "p99": 4.2, "max": 5.0, "reads": len(times)}
    ro["read_anomalies"] = {
        "non_monotonic": 2,
        "read_your_writes": 0,
        "seen_then_lost": 0,
        "examples": [{"worker": 3, "at_s": 318.2, "saw": 10, "then": 8}],
    }
    rwr = json.loads(json.dumps(ro))
    rwr["staleness_s"] = {"p50": 0.0, "p99": 0.0, "max": 0.0, "reads": 1715}
    rwr["read_anomalies"] = {"non_monotonic": 0, "read_your_writes": 0, "seen_then_lost": 0}
    summary["per_endpoint"]["rwr"] = rwr
    summary["endpoints"]["rwr"] = "host=10.0.0.100 port=5000"
    plots = report.render_plots(
        data, {**summary, "per_endpoint": {"rw": summary["per_endpoint"]["rw"], "ro": ro}}, []
    )
    html = report.render_html(summary, plots)
    head = html[html.index('id="headline"') : html.index("</header>")]
    assert "staleness p99 4.2 s, max 5.0 s" in head
    assert "2 read anomalies (2 non monotonic)" in head
    assert "Reads through the write port" in head
    assert "no read anomalies" in head
    assert "<b>rw reads</b>" in head
    assert "worker=3, at_s=318.2" in html
    assert "<th>staleness p99</th>" in html
    assert "<td class=l>rw reads</td>" in html


def test_readers_with_a_stale_timeline_make_one_change_not_a_flap(tmp_path: Path) -> None:
    """Each connection caches its server's timeline for up to a second: two readers of one
    replica may report timelines 1 and 2 alternately for that second.  One change only."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(
        json.dumps({"tool": "pgchaos", "run_id": "t", "started_at": 1000.0, "ended_at": 1020.0})
    )
    rows = []
    for k in range(100):
        t = 1001.0 + k * 0.1
        for worker in (0, 1):
            # worker 0 learns of timeline 2 at 1005.0, worker 1 only at 1006.0
            moved = t >= (1005.0 if worker == 0 else 1006.0)
            rows.append(
                _record(time=t + worker * 0.01, endpoint="ro", kind="read", worker=worker,
                        latency_ms=1.0, outcome="ok", server="10.0.0.3:5432", role="replica",
                        timeline="2" if moved else "1")
            )  # fmt: skip
    with (run_dir / "records.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        writer.writerows(rows)
    changes = summarize(run_dir)["per_endpoint"]["ro"]["server_changes"]
    assert [(c["from"], c["to"]) for c in changes] == [
        ("10.0.0.3:5432 (replica, timeline 1)", "10.0.0.3:5432 (replica, timeline 2)")
    ]
    assert changes[0]["at_s"] == pytest.approx(5.001, abs=0.01)


def test_a_held_client_shows_as_a_stall_not_as_unavailability(tmp_path: Path) -> None:
    """A paused pooler fails nothing: the writes just complete late."""
    rows = [(1000.0 + i * 0.1, "rw", "write", 5.0, "ok", "") for i in range(50)]
    rows.append((1005.0, "rw", "write", 2500.0, "ok", ""))  # held 2.5 s, then acknowledged
    rows += [(1007.6 + i * 0.1, "rw", "write", 5.0, "ok", "") for i in range(20)]
    _write_run(tmp_path / "run", rows)
    rw = summarize(tmp_path / "run")["per_endpoint"]["rw"]
    assert rw["failed_ops"] == 0
    assert rw["unavailability_windows"] == []
    assert rw["longest_stall_s"] == pytest.approx(1007.5 - 1004.905)
    assert rw["latency_ms"]["max"] == 2500.0


def test_the_headline_says_how_long_a_held_client_waited(tmp_path: Path) -> None:
    from pgchaos import report

    rows = [(1000.0 + i * 0.1, "rw", "write", 5.0, "ok", "") for i in range(50)]
    rows.append((1005.0, "rw", "write", 2500.0, "ok", ""))
    rows += [(1007.6 + i * 0.1, "rw", "write", 5.0, "ok", "") for i in range(20)]
    rows += [(1000.05 + i * 0.1, "ro", "read", 5.0, "ok", "") for i in range(80)]
    _write_run(tmp_path / "run", rows)
    headline = report.headline(summarize(tmp_path / "run"))
    lines = {text.split(" ")[0]: text for _, text in headline}
    assert "never failed" in lines["Writes"]
    assert "waiting at most 2.6 s between two" in lines["Writes"]
    # Reads that kept their pace: nothing to say about waiting.
    assert "waiting at most" not in lines["Reads"]
