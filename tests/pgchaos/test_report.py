"""Report rendering and the window arithmetic behind the headline figures."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from chaoshelpers import CliRunner, read_json

from pgchaos.ledger import FIELDS
from pgchaos.localpg import LocalPostgres
from pgchaos.rundir import iso
from pgchaos.summary import summarize

PLOTS = ("throughput.png", "errors.png", "latency.png", "servers.png")


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


def _assert_rendered(run_dir: Path, min_size: int = 5000) -> str:
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
    assert 0 < rw["latency_ms"]["p50"] <= rw["latency_ms"]["p99"]
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
    assert "warning: events.jsonl:4" in result.stdout


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
            server = "10.0.0.1:5432" if t < 1010 else "10.0.0.2:5432"
            writer.writerow([t, endpoint, kind, 0, latency, outcome, error_class, server,
                             "primary", "1" if t < 1010 else "2", "", "", "", ""])  # fmt: skip


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
    assert [(p["server"], p["timeline"]) for p in rw["servers"]] == [
        ("10.0.0.1:5432", "1"),
        ("10.0.0.1:5432", "1"),  # split by the outage
        ("10.0.0.2:5432", "2"),
    ]
    assert rw["server_changes"] == [
        {"at_s": 12.51, "from": "10.0.0.1:5432 (timeline 1)", "to": "10.0.0.2:5432 (timeline 2)"}
    ]
    (ro_window,) = summary["per_endpoint"]["ro"]["unavailability_windows"]
    assert ro_window["recovered"] is False
    assert ro_window["start_s"] == 0.0
    assert ro_window["end_s"] == 20.0


def test_report_of_a_run_without_records(tmp_path: Path, cli: CliRunner) -> None:
    """A run that ended before its first operation still gets a (empty) report."""
    _write_run(tmp_path / "run", [])
    result = cli("report", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    html = _assert_rendered(tmp_path / "run", min_size=1000)
    assert "No operations recorded." in html
    assert read_json(tmp_path / "run" / "summary.json")["records"] == 0
