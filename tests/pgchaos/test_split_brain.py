"""Split-brain check on synthetic records: clean failovers, failback, interleaved primaries."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from chaoshelpers import CliRunner, read_json

from pgchaos.ledger import FIELDS
from pgchaos.summary import summarize

A = "10.0.0.1:5432"
B = "10.0.0.2:5432"

# (start, latency_ms, outcome, server, timeline)
Ack = tuple[float, float, str, str, str]


def write_run(run_dir: Path, writes: list[Ack], start: float = 1000.0, end: float = 1030.0) -> Path:
    run_dir.mkdir()
    (run_dir / "run.json").write_text(
        json.dumps({"tool": "pgchaos", "run_id": "sb", "started_at": start, "ended_at": end})
    )
    with (run_dir / "records.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for n, (t, latency, outcome, server, timeline) in enumerate(sorted(writes)):
            error_class = "" if outcome == "ok" else "connection_lost"
            writer.writerow([t, "rw", "write", 0, latency, outcome, error_class, server,
                             "primary", timeline, f"id{n}", n, "", "", ""])  # fmt: skip
    return run_dir


def acks(server: str, timeline: str, first: float, last: float, step: float = 0.1) -> list[Ack]:
    return [(float(t), 5.0, "ok", server, timeline) for t in np.arange(first, last, step)]


def test_clean_failover_is_not_a_split_brain(tmp_path: Path) -> None:
    writes = [
        *acks(A, "1", 1001.0, 1010.0),
        # The old primary's last commit is sent before the new primary's first
        # acknowledgement and answered after it: within latency, not a split brain.
        (1009.95, 5200.0, "ok", A, "1"),
        (1010.0, 3000.0, "in_doubt", A, "1"),
        *acks(B, "2", 1015.0, 1020.0),
    ]
    summary = summarize(write_run(tmp_path / "run", writes))
    assert summary["split_brain"] is False
    assert summary["split_brain_overlaps"] == []
    periods = summary["primary_periods"]
    assert [(p["server"], p["timeline"], p["acks"]) for p in periods] == [
        (A, "1", 91),
        (B, "2", 50),
    ]
    assert periods[0]["from_s"] == pytest.approx(1.005)
    assert periods[0]["to_s"] == pytest.approx(15.15)  # the late acknowledgement
    # The late acknowledgement completed 0.145 s after the new primary's first: an overlap of
    # completion times, within latency (no split brain), that the handover still shows.
    assert summary["primary_handovers"] == [
        {"from": A, "to": B, "timelines": ["1", "2"], "gap_s": pytest.approx(-0.145, abs=0.001)}
    ]
    assert periods[1]["from_s"] == pytest.approx(15.005)


def test_failback_on_a_new_timeline_is_not_a_split_brain(tmp_path: Path) -> None:
    writes = [
        *acks(A, "1", 1001.0, 1005.0),
        *acks(B, "2", 1008.0, 1012.0),
        *acks(A, "3", 1015.0, 1020.0),
    ]
    summary = summarize(write_run(tmp_path / "run", writes))
    assert summary["split_brain"] is False
    assert [(p["server"], p["timeline"]) for p in summary["primary_periods"]] == [
        (A, "1"),
        (B, "2"),
        (A, "3"),
    ]
    # Acknowledgements complete 5 ms after they start, every 0.1 s: 1004.9 + 5 ms to 1008.005.
    assert [(h["from"], h["to"], h["gap_s"]) for h in summary["primary_handovers"]] == [
        (A, B, pytest.approx(3.1, abs=0.001)),
        (B, A, pytest.approx(3.1, abs=0.001)),
    ]


def test_interleaved_acknowledgements_are_a_split_brain(tmp_path: Path) -> None:
    # A keeps its term on timeline 1 while B, promoted to timeline 2, also takes
    # writes from 1010 to 1013: both answer, alternately, for three seconds.
    writes = [
        *acks(A, "1", 1001.0, 1013.0),
        *acks(B, "2", 1010.05, 1020.0),
    ]
    summary = summarize(write_run(tmp_path / "run", writes))
    assert summary["split_brain"] is True
    (overlap,) = summary["split_brain_overlaps"]
    assert overlap["servers"] == [A, B]
    assert overlap["timelines"] == ["1", "2"]
    assert overlap["start_s"] == pytest.approx(10.05, abs=0.06)
    assert overlap["end_s"] == pytest.approx(12.905)
    # A's acknowledgements inside B's term, B's inside A's term.
    assert overlap["interleaved_acks"][0] == pytest.approx(30, abs=1)
    assert overlap["interleaved_acks"][1] == pytest.approx(29, abs=1)
    assert overlap["acks_in_window"][0] == pytest.approx(30, abs=1)


def test_a_single_stray_acknowledgement_is_a_split_brain(tmp_path: Path) -> None:
    """One write acknowledged by the old primary well inside the new primary's term."""
    writes = [
        *acks(A, "1", 1001.0, 1005.0),
        *acks(B, "2", 1008.0, 1015.0),
        (1011.0, 4.0, "ok", A, "1"),
    ]
    summary = summarize(write_run(tmp_path / "run", writes))
    assert summary["split_brain"] is True
    (overlap,) = summary["split_brain_overlaps"]
    # A's term now reaches 11.004, so B's acknowledgements before that are inside it.
    assert overlap["interleaved_acks"] == [1, 30]
    assert overlap["start_s"] == pytest.approx(8.0)
    assert overlap["end_s"] == pytest.approx(11.004)


def test_report_shows_the_split_brain(tmp_path: Path, cli: CliRunner) -> None:
    run = write_run(
        tmp_path / "run", [*acks(A, "1", 1001.0, 1006.0), *acks(B, "1", 1003.0, 1008.0)]
    )
    result = cli("report", str(run))
    assert result.returncode == 0, result.stderr
    assert "split brain: YES" in result.stdout
    html = (run / "report.html").read_text()
    assert "Split brain: yes." in html
    assert read_json(run / "summary.json")["split_brain"] is True
