"""The read checks on records made up for each case (records in, anomalies out)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from pgchaos import reads
from pgchaos.errors import UsageError
from pgchaos.ledger import FIELDS, LEGACY_FIELDS, read_records

A = "10.0.0.1:5432"
B = "10.0.0.2:5432"
START = 1000.0


def _row(**fields: object) -> list[object]:
    assert not set(fields) - set(FIELDS)
    return [fields.get(name, "") for name in FIELDS]


def write(t: float, writer: int, seq: int, server: str = A, tl: str = "1", ok: bool = True):
    return _row(time=t, endpoint="rw", kind="write", worker=writer, latency_ms=2.0,
                outcome="ok" if ok else "failed", server=server, role="primary", timeline=tl,
                id=f"w{writer}-{seq}", seq=seq)  # fmt: skip


def read(t: float, seen: list[int], endpoint: str = "ro", worker: int = 0, server: str = B):
    return _row(time=t, endpoint=endpoint, kind="read", worker=worker, latency_ms=1.0,
                outcome="ok", server=server, role="replica", timeline="1", lsn="0/1",
                seen=" ".join(map(str, seen)))  # fmt: skip


def run(tmp_path: Path, rows: list[list[object]]) -> reads.ReadData:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run.json").write_text(json.dumps({"tool": "pgchaos", "started_at": START}))
    with (run_dir / "records.csv").open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(FIELDS)
        out.writerows(rows)
    return reads.load(run_dir, START)


def steady_writes(writer: int = 0, n: int = 100, step: float = 0.1) -> list[list[object]]:
    """Writes 1..n, the k-th sent at START + k*step and acknowledged 2 ms later."""
    return [write(START + k * step, writer, k) for k in range(1, n + 1)]


def test_staleness_is_the_age_of_the_oldest_write_not_seen(tmp_path: Path) -> None:
    # At 1005.0 the read saw write 30 (acknowledged at 1003.002): write 31, acknowledged
    # at 1003.102, is the oldest it missed.
    data = run(tmp_path, [*steady_writes(), read(1005.0, [30]), read(1006.0, [59])])
    assert reads.staleness(data, "ro").tolist() == pytest.approx([1.898, 0.0])


def test_a_write_acknowledged_just_before_the_read_does_not_count(tmp_path: Path) -> None:
    # Write 50 is acknowledged at 1005.002; a read sent 1 ms later may not see it yet.
    data = run(tmp_path, [*steady_writes(), read(1005.003, [49])])
    assert reads.staleness(data, "ro").tolist() == [0.0]


def test_staleness_takes_the_writer_furthest_behind(tmp_path: Path) -> None:
    rows = [*steady_writes(0), *steady_writes(1), read(1005.0, [49, 20])]
    assert reads.staleness(run(tmp_path, rows), "ro").tolist() == pytest.approx([2.898])


def test_failed_writes_are_not_missed(tmp_path: Path) -> None:
    rows = [write(1001.0, 0, 1), write(1002.0, 0, 2, ok=False), read(1005.0, [1])]
    assert reads.staleness(run(tmp_path, rows), "ro").tolist() == [0.0]


def test_going_back_in_time_names_both_servers(tmp_path: Path) -> None:
    rows = [
        *steady_writes(),
        read(1005.0, [48], server=A),
        read(1005.1, [30], server=B),  # back in time
        read(1005.2, [31], server=B),  # still behind what it saw on A
        read(1005.3, [51], server=A),
        # another reader's view is its own
        read(1005.4, [10], worker=1, server=B),
    ]
    found = reads.non_monotonic(run(tmp_path, rows), "ro")
    assert found["count"] == 2
    assert found["readers"] == 1
    first = found["examples"][0]
    assert (first["on"], first["saw_seq"], first["later_on"], first["later_saw_seq"]) == (
        A, 48, B, 30,
    )  # fmt: skip
    assert first["later_at_s"] == pytest.approx(5.1)


def test_monotonic_reads_report_nothing(tmp_path: Path) -> None:
    rows = [*steady_writes(), *(read(1001.0 + k * 0.1, [k]) for k in range(50))]
    assert reads.non_monotonic(run(tmp_path, rows), "ro")["count"] == 0


def test_read_your_writes_through_the_write_port(tmp_path: Path) -> None:
    rows = [
        *steady_writes(),
        read(1005.0, [49], endpoint="rwr", server=A),  # saw everything acknowledged
        read(1005.1, [40], endpoint="rwr", server=B),  # missed 41..50
    ]
    found = reads.read_your_writes(run(tmp_path, rows))
    assert found["count"] == 1
    example = found["examples"][0]
    assert (example["server"], example["writer"], example["missed_seq"]) == (B, 0, 41)
    assert example["acknowledged_s_before"] == pytest.approx(0.998)


def test_seen_then_lost(tmp_path: Path) -> None:
    rows = [
        *steady_writes(n=50),  # on A, timeline 1; 41..50 are lost below
        read(1004.5, [44], server=A),  # saw 41..44 before the writer moved
        write(1010.0, 0, 51, server=B, tl="2"),
        read(1011.0, [51], server=B),  # B's 51 says nothing about A's 45..50
    ]
    data = run(tmp_path, rows)
    found = reads.seen_then_lost(data, [(0, s) for s in range(41, 51)])
    assert found["count"] == 4
    assert [e["seq"] for e in found["examples"]] == [41, 42, 43, 44]
    assert found["examples"][0]["seen_on"] == A
    assert found["examples"][0]["acknowledged_by"] == A


def test_nothing_seen_then_lost_when_only_later_reads_reach_that_far(tmp_path: Path) -> None:
    rows = [
        *steady_writes(n=50),
        read(1003.0, [20], server=A),
        write(1010.0, 0, 51, server=B, tl="2"),
        read(1011.0, [51], server=B),
    ]
    assert reads.seen_then_lost(run(tmp_path, rows), [(0, 45)])["count"] == 0


def test_analyze_gives_each_reader_endpoint_its_figures(tmp_path: Path) -> None:
    rows = [*steady_writes(), read(1005.0, [30]), read(1005.0, [49], endpoint="rwr")]
    figures = reads.analyze(run(tmp_path, rows))
    assert set(figures) == {"ro", "rwr"}
    assert figures["ro"]["staleness_s"]["max"] == pytest.approx(1.898)
    assert figures["ro"]["staleness_s"]["stale_reads"] == 1
    assert "read_your_writes" not in figures["ro"]["read_anomalies"]
    assert figures["rwr"]["read_anomalies"]["read_your_writes"]["count"] == 0


def test_records_of_older_runs_still_read(tmp_path: Path) -> None:
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    with (run_dir / "records.csv").open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(LEGACY_FIELDS)
        out.writerow([1001.0, "ro", "read", 0, 1.0, "ok", "", A, "replica", "1", "", "", "3.5", ""])
    (rec,) = read_records(run_dir)
    assert (rec.kind, rec.seen, rec.lsn) == ("read", "", "")


def test_a_damaged_seen_column_is_reported(tmp_path: Path) -> None:
    bad = read(1001.0, [1])
    bad[FIELDS.index("seen")] = "1 x"
    with pytest.raises(UsageError, match="damaged record"):
        run(tmp_path, [bad, read(1002.0, [1])])


def test_read_your_writes_tells_reads_that_missed_a_lost_write_apart(tmp_path: Path) -> None:
    rows = [
        *steady_writes(),
        read(1005.1, [40], endpoint="rwr", server=B),  # missed 41..50: 41 is lost
        read(1005.2, [44], endpoint="rwr", server=B),  # missed 45..50: 45 is there
    ]
    data = run(tmp_path, rows)
    found = reads.read_your_writes(data, lost=[(0, 41)])
    assert found["count"] == 2
    # The first read also missed 42..50, which are there: only a lost write excuses a read
    # that misses nothing else.
    assert found["of_lost_writes"] == 0
    every_write_after_40 = [(0, seq) for seq in range(41, 101)]
    assert reads.read_your_writes(data, lost=every_write_after_40)["of_lost_writes"] == 2
