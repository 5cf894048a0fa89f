"""``pgchaos verify --until T``: a cut-off time after a restore to before T.

One synthetic run (times in UTC, T0 = 2026-12-07T05:00:00Z) behind everything here:

* seq 1..10: writer 0 sends at T0+k and is acknowledged 10 ms later, writer 1 sends at
  T0+k+0.5 and is acknowledged 20 ms later, both on server A (timeline 1);
* the cut-off T is T0+10.004: writer 0's seq 10 was sent before it and acknowledged after it
  (10.010), writer 1's seq 10 is acknowledged at 10.520;
* seq 11..14 fail (the outage), seq 15..20 are acknowledged on the restored server B
  (timeline 2), 10 ms (writer 0) and 20 ms (writer 1) after being sent at T0+k, T0+k+0.5.

The restored table holds seq 1..9 and 15..20 of both writers: only the two writes
acknowledged after the cut-off on A (seq 10) are missing.  The readers:

* on the write port: r1 at 9.8 saw (9, 9), fine; r2 (another reader) at 9.9 saw (8, 9),
  missing writer 0's seq 9 acknowledged at 9.010 (a violation, before the cut-off); r3 at
  14.5 on B saw (9, 9), missing both seq 10 (acknowledged after the cut-off);
* on the replica port: q1 at 5.0 saw (4, 4); q2 at 10.8 saw (10, 10) (both seq 10, later
  missing); q3 at 14.6 on B saw (9, 9), less than q2 (non-monotonic, after the cut-off).
"""

from __future__ import annotations

import csv
import json
import uuid
from itertools import count
from pathlib import Path
from typing import Any

import psycopg
import pytest
from chaoshelpers import CliRunner, assert_one_line_error, read_json

from pgchaos import reads
from pgchaos.errors import UsageError
from pgchaos.ledger import FIELDS
from pgchaos.localpg import LocalPostgres
from pgchaos.report import until_sentence
from pgchaos.verify import parse_until
from pgchaos.workload import PAYLOAD_KIND, ensure_schema

T0 = 1_796_619_600.0  # 2026-12-07T05:00:00Z
UNTIL = T0 + 10.004
UNTIL_ISO = "2026-12-07T05:00:10.004+00:00"
A, B, C = "10.0.0.1:5432", "10.0.0.2:5432", "10.0.0.3:5432"
_tables = count()


def _row(**fields: object) -> list[object]:
    assert not set(fields) - set(FIELDS)
    return [fields.get(name, "") for name in FIELDS]


def _writes() -> list[dict[str, Any]]:
    writes = []
    for k in range(1, 21):
        for writer, offset, latency in ((0, 0.0, 10.0), (1, 0.5, 20.0)):
            restored = k >= 15
            failed = 11 <= k <= 14
            writes.append(
                {
                    "time": T0 + k + offset,
                    "endpoint": "rw",
                    "kind": "write",
                    "worker": writer,
                    "latency_ms": latency,
                    "outcome": "failed" if failed else "ok",
                    "error_class": "refused" if failed else "",
                    "server": "" if failed else (B if restored else A),
                    "role": "" if failed else "primary",
                    "timeline": "" if failed else ("2" if restored else "1"),
                    "id": str(uuid.uuid4()),
                    "seq": k,
                }
            )
    return writes


def _read(
    t: float, endpoint: str, seen: tuple[int, int], server: str, worker: int = 0
) -> dict[str, Any]:
    role = "primary" if endpoint == "rwr" else "replica"
    return {
        "time": t,
        "endpoint": endpoint,
        "kind": "read",
        "worker": worker,
        "latency_ms": 1.0,
        "outcome": "ok",
        "server": server,
        "role": role,
        "timeline": "2" if server == B else "1",
        "lsn": "0/1",
        "seen": f"{seen[0]} {seen[1]}",
    }


READS = [
    _read(T0 + 9.8, "rwr", (9, 9), A),
    _read(T0 + 9.9, "rwr", (8, 9), A, worker=1),
    _read(T0 + 14.5, "rwr", (9, 9), B),
    _read(T0 + 5.0, "ro", (4, 4), C),
    _read(T0 + 10.8, "ro", (10, 10), C),
    _read(T0 + 14.6, "ro", (9, 9), B),
]


def _make_run(run_dir: Path, table: str, run_id: str, rows: list[dict[str, Any]]) -> None:
    run_dir.mkdir(parents=True)
    meta = {
        "tool": "pgchaos",
        "run_id": run_id,
        "started_at": T0,
        "ended_at": T0 + 21.0,
        "status": "finished",
        "options": {"table": table, "payload": PAYLOAD_KIND},
        "counts": {"records": len(rows)},
    }
    (run_dir / "run.json").write_text(json.dumps(meta))
    with (run_dir / "records.csv").open("w", newline="") as handle:
        out = csv.writer(handle, lineterminator="\n")
        out.writerow(FIELDS)
        for row in sorted(rows, key=lambda r: float(r["time"])):
            out.writerow(_row(**row))


class Drill:
    """The synthetic run and its restored ledger table."""

    def __init__(self, pg: LocalPostgres, root: Path) -> None:
        self.pg = pg
        self.table = f"pgchaos_until_{next(_tables)}"
        self.run_id = str(uuid.uuid4())
        self.writes = _writes()
        self.run = root / "run"
        _make_run(self.run, self.table, self.run_id, [*self.writes, *READS])
        restored = [
            w for w in self.writes if w["outcome"] == "ok" and not (10 <= int(w["seq"]) <= 14)
        ]
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            assert ensure_schema(conn, self.table)
            with conn.cursor() as cur:
                cur.executemany(
                    f"insert into {self.table} (id, run_id, writer, seq) values (%s, %s, %s, %s)",
                    [(w["id"], self.run_id, w["worker"], w["seq"]) for w in restored],
                )
            conn.execute(
                f"update {self.table} set payload = md5(id::text || '/' || run_id || '/'"
                " || writer::text || '/' || seq::text)"
            )

    def id_of(self, writer: int, seq: int) -> str:
        (found,) = [w["id"] for w in self.writes if (w["worker"], w["seq"]) == (writer, seq)]
        return str(found)

    def delete(self, writer: int, seq: int) -> None:
        self.pg.superuser_sql(f"delete from {self.table} where id = '{self.id_of(writer, seq)}'")


@pytest.fixture
def drill(pg: LocalPostgres, tmp_path: Path) -> Drill:
    return Drill(pg, tmp_path)


def _methods(pg: LocalPostgres) -> list[tuple[str, str]]:
    read_only = pg.dsn(options="-c default_transaction_read_only=on")
    return [(pg.dsn(), "copy+join"), (read_only, "batched lookup (read-only server)")]


# -- --until on the command line ---------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        UNTIL_ISO,
        "2026-12-07T05:00:10.004Z",
        "2026-12-07T06:00:10.004+01:00",
        "2026-12-07 05:00:10.004+00:00",
        " 1796619610.004 ",
    ],
)
def test_the_cut_off_is_iso_with_an_offset_or_unix_seconds(text: str) -> None:
    assert parse_until(text) == pytest.approx(UNTIL, abs=1e-6)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("yesterday", "not a time"),
        ("2026-13-07T05:00:10+00:00", "not a time"),
        ("", "not a time"),
        ("2026-12-07T05:00:10.004", "has no UTC offset"),
        ("nan", "not a time in unix seconds"),
        ("-5", "not a time in unix seconds"),
        ("1796619610004", "not a time in unix seconds"),  # milliseconds
    ],
)
def test_a_cut_off_that_is_no_time_is_refused(text: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        parse_until(text)


def test_the_cli_refuses_a_garbage_cut_off_as_a_usage_error(cli: CliRunner, tmp_path: Path) -> None:
    result = cli("verify", str(tmp_path / "no-such-run"), "--until", "5 past noon")
    assert result.returncode == 2, result.stdout
    assert_one_line_error(result.stderr)
    assert "--until: not a time: '5 past noon'" in result.stderr
    result = cli("verify", "--help")
    assert result.returncode == 0
    assert "--until T" in result.stdout


# -- read checks with a cut-off, records only ---------------------------------------


def _read_data(tmp_path: Path) -> reads.ReadData:
    run_dir = tmp_path / "records-only"
    _make_run(run_dir, "t", "r", [*_writes(), *READS])
    return reads.load(run_dir, T0)


def test_reads_from_the_cut_off_on_are_not_checked(tmp_path: Path) -> None:
    data = _read_data(tmp_path)
    lost_after = [(0, 10), (1, 10)]
    without = reads.analyze(data, lost_after)
    ryw = without["rwr"]["read_anomalies"]["read_your_writes"]
    # r2 missed seq 9, r3 missed both seq 10 (lost, so "of lost writes")
    assert (ryw["count"], ryw["of_lost_writes"]) == (2, 1)
    assert without["ro"]["read_anomalies"]["non_monotonic"]["count"] == 1

    cut = reads.analyze(data, [], UNTIL)
    ryw = cut["rwr"]["read_anomalies"]["read_your_writes"]
    assert (ryw["count"], ryw["of_lost_writes"]) == (1, 0)
    (example,) = ryw["examples"]
    assert (example["writer"], example["missed_seq"], example["at"]) == (
        0,
        9,
        "2026-12-07T05:00:09.900Z",
    )
    assert cut["ro"]["read_anomalies"]["non_monotonic"]["count"] == 0
    # staleness is measured over every read either way
    assert cut["ro"]["staleness_s"] == without["ro"]["staleness_s"]
    assert cut["ro"]["staleness_s"]["reads"] == 3


def test_a_cut_off_after_everything_changes_nothing(tmp_path: Path) -> None:
    data = _read_data(tmp_path)
    assert reads.analyze(data, [(0, 10)], T0 + 100) == reads.analyze(data, [(0, 10)])


# -- verify against a restored table ----------------------------------------------


@pytest.mark.postgres
def test_without_a_cut_off_the_missing_writes_are_lost(drill: Drill, cli: CliRunner) -> None:
    for dsn, method in _methods(drill.pg):
        result = cli("verify", str(drill.run), "--dsn", dsn)
        assert result.returncode == 1, result.stdout
        verified = read_json(drill.run / "verify.json")
        assert verified["method"] == method
        assert verified["acknowledged"] == {"present": 30, "lost": 2}
        assert verified["failed"] == {"present": 0, "absent": 8}
        assert verified["lost"] == 2
        assert sorted(w["id"] for w in verified["lost_writes"]) == sorted(
            [drill.id_of(0, 10), drill.id_of(1, 10)]
        )
        assert verified["first_lost_at"] == "2026-12-07T05:00:10.010Z"
        assert verified["recovered_until"] == "2026-12-07T05:00:09.520Z"
        for key in (
            "until",
            "until_ts",
            "acknowledged_before_until",
            "lost_after_until",
            "present_after_until",
        ):
            assert key not in verified, key
        assert "recovered_gap_s" not in verified
        checked = verified["reads"]
        # q2 saw both seq 10 before either writer moved on to another server
        assert checked["seen_then_lost"]["count"] == 2
        assert checked["read_your_writes"]["count"] == 2
        assert checked["non_monotonic"] == {"rwr": 0, "ro": 1}
        assert "2 LOST" in result.stdout
        assert "cut-off" not in result.stdout


@pytest.mark.postgres
def test_the_cut_off_splits_lost_from_absent_after_it(drill: Drill, cli: CliRunner) -> None:
    for dsn, method in _methods(drill.pg):
        result = cli("verify", str(drill.run), "--dsn", dsn, "--until", UNTIL_ISO)
        verified = read_json(drill.run / "verify.json")
        assert verified["method"] == method
        assert verified["until"] == "2026-12-07T05:00:10.004Z"
        assert verified["until_ts"] == pytest.approx(UNTIL, abs=1e-6)
        assert verified["lost"] == 0
        assert verified["acknowledged"] == {"present": 30, "lost": 0}
        assert verified["lost_writes"] == []
        assert (verified["lost_after_until"], verified["present_after_until"]) == (2, 12)
        assert verified["acknowledged_before_until"] == 18
        assert verified["lost_other"] == 0
        assert verified["first_lost_at"] == "2026-12-07T05:00:10.010Z"
        assert verified["recovered_until"] == "2026-12-07T05:00:09.520Z"
        assert verified["recovered_gap_s"] == 0.484
        checked = verified["reads"]
        assert checked["seen_then_lost"] == {"count": 0, "examples": []}
        # r2 (before the cut-off) still counts; r3 missed only writes after it
        assert checked["read_your_writes"]["count"] == 1
        assert checked["read_your_writes"]["of_lost_writes"] == 0
        assert checked["non_monotonic"] == {"rwr": 0, "ro": 0}
        assert result.returncode == 1, "r2 is a read-your-writes violation before the cut-off"
        assert (
            "cut-off 2026-12-07T05:00:10.004Z: 0 acknowledged before it LOST; acknowledged at"
            " or after it: 2 absent (not lost), 12 present; complete up to"
            " 2026-12-07T05:00:09.520Z (0.484 s before the cut-off)"
        ) in result.stdout

    # The same cut-off in unix seconds gives the same answer.
    result = cli("verify", str(drill.run), "--dsn", drill.pg.dsn(), "--until", "1796619610.004")
    again = read_json(drill.run / "verify.json")
    assert (again["lost"], again["lost_after_until"], again["recovered_gap_s"]) == (0, 2, 0.484)


@pytest.mark.postgres
def test_a_write_lost_before_the_cut_off_is_lost_and_was_seen(drill: Drill, cli: CliRunner) -> None:
    drill.delete(0, 4)  # acknowledged at 4.010, seen by q1 at 5.0
    for dsn, method in _methods(drill.pg):
        result = cli("verify", str(drill.run), "--dsn", dsn, "--until", UNTIL_ISO)
        assert result.returncode == 1, result.stdout
        verified = read_json(drill.run / "verify.json")
        assert verified["method"] == method
        assert verified["lost"] == 1
        assert verified["acknowledged"] == {"present": 29, "lost": 1}
        assert [w["id"] for w in verified["lost_writes"]] == [drill.id_of(0, 4)]
        assert (verified["lost_after_until"], verified["present_after_until"]) == (2, 12)
        # the lost one is judged too: 17 there and 1 lost before the cut-off
        assert verified["acknowledged_before_until"] == 18
        assert verified["first_lost_at"] == "2026-12-07T05:00:04.010Z"
        assert verified["recovered_until"] == "2026-12-07T05:00:03.520Z"
        assert verified["recovered_gap_s"] == 6.484
        seen = verified["reads"]["seen_then_lost"]
        assert seen["count"] == 1
        (example,) = seen["examples"]
        assert (example["writer"], example["seq"], example["seen_at"]) == (
            0,
            4,
            "2026-12-07T05:00:05.000Z",
        )


@pytest.mark.postgres
def test_a_restore_past_the_cut_off_and_one_that_kept_nothing(drill: Drill, cli: CliRunner) -> None:
    # Cut-off at 3.0: writes acknowledged up to 9.520 are there, but those after the cut-off
    # may as well be the load's on the restored cluster: the data ends, for the cut-off, at
    # the latest write acknowledged before it (2.520), 0.48 s before it.
    for dsn, _ in _methods(drill.pg):
        result = cli("verify", str(drill.run), "--dsn", dsn, "--until", str(T0 + 3.0))
        verified = read_json(drill.run / "verify.json")
        assert (verified["lost"], verified["lost_after_until"]) == (0, 2)
        assert verified["present_after_until"] == 26
        assert verified["recovered_gap_s"] == 0.48
        assert "(0.48 s before the cut-off)" in result.stdout
    drill.pg.superuser_sql(f"delete from {drill.table}")
    for dsn, _ in _methods(drill.pg):
        cli("verify", str(drill.run), "--dsn", dsn, "--until", str(T0 + 3.0))
        verified = read_json(drill.run / "verify.json")
        assert (verified["lost"], verified["lost_after_until"]) == (4, 28)
        assert verified["acknowledged_before_until"] == 4
        assert verified["recovered_until"] is None
        assert verified["recovered_gap_s"] is None
        assert verified["first_lost_at"] == "2026-12-07T05:00:01.010Z"


@pytest.mark.postgres
def test_the_report_says_what_the_cut_off_found(drill: Drill, cli: CliRunner) -> None:
    cli("verify", str(drill.run), "--dsn", drill.pg.dsn(), "--until", UNTIL_ISO)
    result = cli("report", str(drill.run))
    assert result.returncode == 0, result.stderr
    summary = read_json(drill.run / "summary.json")
    verify = summary["verify"]
    assert verify["until"] == "2026-12-07T05:00:10.004Z"
    assert (verify["lost"], verify["lost_after_until"], verify["present_after_until"]) == (
        0,
        2,
        12,
    )
    assert verify["acknowledged_before_until"] == 18
    assert verify["recovered_until"] == "2026-12-07T05:00:09.520Z"
    assert verify["recovered_gap_s"] == 0.484
    assert verify["first_lost_at"] == "2026-12-07T05:00:10.010Z"
    # The read anomalies of the report are judged with verify's cut-off too.
    anomalies = summary["per_endpoint"]["rwr"]["read_anomalies"]
    assert anomalies["read_your_writes"]["count"] == 1
    assert summary["per_endpoint"]["ro"]["read_anomalies"]["non_monotonic"]["count"] == 0
    sentence = (
        "Verified up to 05:00:10.004 (the cut-off): 0 acknowledged writes lost before it;"
        " 2 acknowledged after it are absent, as the restore intends; the restored data ends"
        " 0.48 s before the cut-off."
    )
    html = (drill.run / "report.html").read_text()
    assert sentence in html
    assert "Acknowledged before the cut-off and <b>lost: 0</b>" in html
    assert sentence in result.stdout
    assert "verify: 0 lost before the cut-off 05:00:10.004 (2 absent after it), 0 ghosts" in (
        result.stdout
    )


# -- the report's sentence, from summary figures alone ------------------------------


def _verify_summary(**fields: object) -> dict[str, object]:
    return {
        "lost": 0,
        "until": "2026-12-07T05:01:02.345Z",
        "lost_after_until": 1234,
        "recovered_until": "2026-12-07T05:01:02.305Z",
        "recovered_gap_s": 0.04,
        "first_lost_at": "2026-12-07T05:01:02.310Z",
        **fields,
    }


def test_the_sentence_of_a_clean_restore() -> None:
    assert until_sentence(_verify_summary()) == (
        "Verified up to 05:01:02.345 (the cut-off): 0 acknowledged writes lost before it;"
        " 1234 acknowledged after it are absent, as the restore intends; the restored data"
        " ends 0.040 s before the cut-off."
    )


def test_the_sentence_of_a_restore_that_lost_writes() -> None:
    verify = _verify_summary(
        lost=1,
        lost_after_until=0,
        first_lost_at="2026-12-07T05:00:58.001Z",
        recovered_until="2026-12-07T05:00:57.990Z",
        recovered_gap_s=4.355,
    )
    assert until_sentence(verify) == (
        "Verified up to 05:01:02.345 (the cut-off): 1 acknowledged write lost before it, the"
        " first acknowledged at 05:00:58.001; none acknowledged after it is absent; the"
        " restored data ends 4.4 s before the cut-off."
    )
    nothing = _verify_summary(recovered_until=None, recovered_gap_s=None, lost_after_until=1)
    assert until_sentence(nothing).endswith(
        "; 1 acknowledged after it is absent, as the restore intends;"
        " no acknowledged write is present."
    )
    assert until_sentence({"lost": 3, "until": None}) == ""
