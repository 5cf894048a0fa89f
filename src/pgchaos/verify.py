"""``pgchaos verify``: read back every recorded write and classify what happened to it.

The recorded ids are COPYed into a temp table and joined with the ledger table
once; on a read-only server (checking a replica) they are looked up in batches.
Classes: acknowledged and present / lost, in doubt and present (ghost) / absent,
failed and present (ghost) / absent, plus rows of the run that nobody recorded.  Acknowledged
writes whose commit skipped the synchronous standby (a cancelled wait, marked in the ledger)
are counted apart, and so are those of them that are lost.

With a cut-off time (``--until T``, after a point-in-time or disaster restore to before T)
only the writes acknowledged before T must be present: the missing ones acknowledged at or
after T are counted apart (``lost_after_until``), not as lost.  In every run the
acknowledgement times also say up to when the data is complete (``recovered_until``) and
when the first missing acknowledged write was acknowledged (``first_lost_at``).
Then what the readers saw is checked against the writes (:mod:`pgchaos.reads`): exit
status 1 for a lost write, for a lost write that a reader had seen, and for a read through
the write port that missed an acknowledged write.
"""

from __future__ import annotations

import math
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgchaos import reads, rundir
from pgchaos.classify import first_line
from pgchaos.dsn import REQUIRE_AUTH, parse_env_file, redact, validate
from pgchaos.errors import TableMissing, UsageError
from pgchaos.ledger import FAILED, IN_DOUBT, OK, RW_READS, Record, read_records
from pgchaos.workload import PAYLOAD_KIND, PAYLOAD_SQL, table_ident

VERIFY_FILE = "verify.json"
MAX_LISTED = 100
BATCH = 20000
# How verify classes an acknowledged write acknowledged at or after the cut-off (--until):
# its absence is what a restore to before the cut-off intends, so it is not lost.
OK_AFTER_UNTIL = "ok_after_until"
ACKNOWLEDGED = (OK, OK_AFTER_UNTIL)


def parse_until(text: str) -> float:
    """The cut-off time of ``--until``: ISO-8601 with a UTC offset, or unix seconds."""
    value = text.strip()
    try:
        epoch = float(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise UsageError(
                f"--until: not a time: {text!r} (ISO-8601 with an offset, such as"
                " 2026-12-07T05:01:02.345+00:00, or unix seconds)"
            ) from None
        if parsed.tzinfo is None:
            raise UsageError(
                f"--until: {text!r} has no UTC offset: add one (+00:00 or Z for UTC)"
            ) from None
        epoch = parsed.timestamp()
    if not math.isfinite(epoch) or not 0 < epoch <= rundir.MAX_EPOCH:
        raise UsageError(f"--until: not a time in unix seconds: {text!r}")
    return epoch


def _class(rec: Record, until: float | None) -> str:
    """The outcome verify files a write under: OK_AFTER_UNTIL for acknowledgements from the
    cut-off on (the moment the client received the success: Record.end)."""
    if rec.outcome == OK and until is not None and rec.end >= until:
        return OK_AFTER_UNTIL
    return rec.outcome


def _connect_params(
    meta: dict[str, Any], dsn: str | None, env_file: str | None, connect_timeout: float
) -> tuple[dict[str, str], str]:
    if dsn is not None:
        params = validate(dsn, "--dsn")
        source = dsn
    else:
        recorded = (meta.get("endpoints") or {}).get("rw")
        if not isinstance(recorded, str):
            raise UsageError("run.json has no rw endpoint; give --dsn")
        params = validate(recorded, "recorded rw")
        source = recorded
        # run.json never holds the password; take it from the env file it came from.
        password_file = env_file or meta.get("env_file")
        if "password" not in params and password_file:
            path = Path(password_file)
            if env_file is not None or path.exists():
                password = parse_env_file(path).get("PGPASSWORD")
                if password:
                    params["password"] = password
    params.setdefault("connect_timeout", str(max(1, round(connect_timeout))))
    params.setdefault("application_name", "pgchaos-verify")
    params.setdefault("require_auth", REQUIRE_AUTH)
    return params, redact(source)


@dataclass
class Findings:
    """Counts by (outcome, present), a few examples of the interesting ones, and extras."""

    method: str
    written: int = 0
    counts: Counter[tuple[str, bool]] = field(default_factory=Counter)
    listed: dict[tuple[str, bool], list[dict[str, Any]]] = field(default_factory=dict)
    unrecorded: int = 0
    # every acknowledged write that is missing (before the cut-off, if any), as (writer,
    # seq): reads may have seen it
    lost: list[tuple[int, int]] = field(default_factory=list)
    # present rows whose content is not what was written, and extra copies of a write
    altered: int = 0
    altered_ids: list[str] = field(default_factory=list)
    duplicated: int = 0
    # acknowledged writes whose commit skipped the synchronous standby, by (class, present)
    locally_only: Counter[tuple[str, bool]] = field(default_factory=Counter)
    # acknowledgement times: of the earliest missing acknowledged write, and of the latest
    # one before it (of all if none is missing), up to which every acknowledged write is there
    first_lost_at: float | None = None
    recovered_until: float | None = None
    # with a cut-off: the latest present write acknowledged before it (the load's writes on a
    # restored cluster come after the cut-off and must not hide where the restore ended)
    last_present_before_until: float | None = None
    _present_acks: array[float] = field(default_factory=lambda: array("d"))

    def note(self, outcome: str, present: bool, rec: Record) -> None:
        key = (outcome, present)
        self.counts[key] += 1
        if rec.committed_locally_only:
            self.locally_only[key] += 1
        if outcome in ACKNOWLEDGED:
            if present:
                self._present_acks.append(rec.end)
                if outcome == OK and (
                    self.last_present_before_until is None
                    or rec.end > self.last_present_before_until
                ):
                    self.last_present_before_until = rec.end
            elif self.first_lost_at is None or rec.end < self.first_lost_at:
                self.first_lost_at = rec.end
        if key == (OK, False) and rec.seq:
            self.lost.append((rec.worker, int(rec.seq)))
        if key in INTERESTING:
            examples = self.listed.setdefault(key, [])
            if len(examples) < MAX_LISTED:
                examples.append(_example(rec.id, rec.time, rec.worker, rec.seq))

    def settle(self) -> None:
        """recovered_until from what note() saw, once every write is noted."""
        first = self.first_lost_at
        self.recovered_until = max(
            (t for t in self._present_acks if first is None or t < first), default=None
        )


INTERESTING = ((OK, False), (IN_DOUBT, True), (FAILED, True))


def _example(row_id: str, t: float, writer: int, seq: object) -> dict[str, Any]:
    return {"id": row_id, "time": rundir.iso(t), "writer": writer, "seq": seq}


def _writes(run_dir: Path) -> Iterator[Record]:
    return (r for r in read_records(run_dir) if r.kind == "write" and r.id)


def _copy_row(rec: Record, until: float | None) -> tuple[object, ...]:
    """A recorded write as a row of the pgchaos_verify temp table."""
    return (
        rec.id,
        _class(rec, until),
        rec.time,
        rec.end,
        rec.worker,
        rec.seq or None,
        rec.committed_locally_only,
    )


def _join_in_temp_table(
    conn: psycopg.Connection[Any],
    run_dir: Path,
    table: str,
    run_id: str,
    checksums: bool,
    until: float | None = None,
) -> Findings:
    """COPY the recorded ids into a temp table and join once: fast for any run size."""
    found = Findings(method="copy+join")
    ledger = table_ident(table)
    conn.execute(
        "create temp table pgchaos_verify"
        " (id uuid, outcome text, t double precision, ack double precision, writer int,"
        " seq bigint, locally_only boolean) on commit drop"
    )
    with conn.cursor().copy(
        "copy pgchaos_verify (id, outcome, t, ack, writer, seq, locally_only) from stdin"
    ) as cp:
        for rec in _writes(run_dir):
            cp.write_row(_copy_row(rec, until))
            found.written += 1
    conn.execute("analyze pgchaos_verify")
    rows = conn.execute(
        sql.SQL(
            "select v.outcome, l.id is not null, v.locally_only, count(*)"
            " from pgchaos_verify v left join {} l on l.id = v.id group by 1, 2, 3"
        ).format(ledger)
    ).fetchall()
    for outcome, present, locally_only, n in rows:
        found.counts[(outcome, bool(present))] += n
        if locally_only:
            found.locally_only[(outcome, bool(present))] += n
    # The earliest missing acknowledgement, then the latest one before it: all present.
    first_lost, recovered = conn.execute(
        sql.SQL(
            "with first as (select min(v.ack) as t from pgchaos_verify v"
            " where v.outcome = any(%(acked)s)"
            " and not exists (select 1 from {} l where l.id = v.id))"
            " select first.t, (select max(v.ack) from pgchaos_verify v"
            " where v.outcome = any(%(acked)s) and (first.t is null or v.ack < first.t))"
            " from first"
        ).format(ledger),
        {"acked": list(ACKNOWLEDGED)},
    ).fetchone() or (None, None)
    found.first_lost_at = first_lost
    found.recovered_until = recovered
    row = conn.execute(
        sql.SQL(
            "select max(v.ack) from pgchaos_verify v where v.outcome = %s"
            " and exists (select 1 from {} l where l.id = v.id)"
        ).format(ledger),
        (OK,),
    ).fetchone()
    found.last_present_before_until = row[0] if row else None
    for key in INTERESTING:
        # Spelled as (not) exists so the planner can use a semi/anti join.
        examples = conn.execute(
            sql.SQL(
                "select v.id::text, v.t, v.writer, v.seq from pgchaos_verify v"
                " where v.outcome = %s and {} (select 1 from {} l where l.id = v.id)"
                " order by v.t limit %s"
            ).format(sql.SQL("exists" if key[1] else "not exists"), ledger),
            (key[0], MAX_LISTED),
        ).fetchall()
        found.listed[key] = [_example(i, t, w, s) for i, t, w, s in examples]
    if found.counts.get((OK, False)):
        found.lost = [
            (int(w), int(q))
            for w, q in conn.execute(
                sql.SQL(
                    "select v.writer, v.seq from pgchaos_verify v where v.outcome = %s"
                    " and v.seq is not null and not exists (select 1 from {} l where l.id = v.id)"
                ).format(ledger),
                (OK,),
            )
        ]
    if run_id:
        row = conn.execute(
            sql.SQL(
                "select count(*) from {} l where l.run_id = %s"
                " and not exists (select 1 from pgchaos_verify v where v.id = l.id)"
            ).format(ledger),
            (run_id,),
        ).fetchone()
        found.unrecorded = int(row[0]) if row else 0
    if checksums:
        altered = conn.execute(
            sql.SQL(
                "select l.id::text from pgchaos_verify v join {} l on l.id = v.id"
                " where l.payload is distinct from {} or l.run_id is distinct from %s"
                " or l.writer <> v.writer or l.seq <> v.seq order by v.t"
            ).format(ledger, sql.SQL(PAYLOAD_SQL)),
            (run_id,),
        ).fetchall()
        found.altered = len(altered)
        found.altered_ids = [r[0] for r in altered[:MAX_LISTED]]
    found.duplicated = _duplicated(conn, table, run_id)
    return found


def _duplicated(conn: psycopg.Connection[Any], table: str, run_id: str) -> int:
    """Rows of the run beyond the first for one (writer, seq): one write stored twice."""
    if not run_id:
        return 0
    row = conn.execute(
        sql.SQL("select count(*) - count(distinct (writer, seq)) from {} where run_id = %s").format(
            table_ident(table)
        ),
        (run_id,),
    ).fetchone()
    return int(row[0]) if row else 0


def _lookup_in_batches(
    conn: psycopg.Connection[Any],
    run_dir: Path,
    table: str,
    run_id: str,
    checksums: bool,
    until: float | None = None,
) -> Findings:
    """For read-only servers (a replica), where no temp table can be created."""
    found = Findings(method="batched lookup (read-only server)")
    query = sql.SQL(
        "select l.id::text, l.payload is not distinct from {} and l.run_id = %s,"
        " l.writer, l.seq from {} l where l.id = any(%s::uuid[])"
    ).format(sql.SQL(PAYLOAD_SQL), table_ident(table))
    batch: list[Record] = []

    def flush() -> None:
        present = {row[0]: row[1:] for row in conn.execute(query, (run_id, [r.id for r in batch]))}
        for rec in batch:
            found.note(_class(rec, until), rec.id in present, rec)
            if rec.id in present and checksums:
                intact, writer, seq = present[rec.id]
                if not intact or writer != rec.worker or str(seq) != rec.seq:
                    found.altered += 1
                    if len(found.altered_ids) < MAX_LISTED:
                        found.altered_ids.append(rec.id)
        batch.clear()

    for rec in _writes(run_dir):
        found.written += 1
        batch.append(rec)
        if len(batch) >= BATCH:
            flush()
    flush()
    found.settle()
    if run_id:
        # Every recorded id that is present belongs to this run, so the rest of the
        # run's rows are the ones nobody recorded.
        row = conn.execute(
            sql.SQL("select count(*) from {} where run_id = %s").format(table_ident(table)),
            (run_id,),
        ).fetchone()
        present_total = sum(n for (_, present), n in found.counts.items() if present)
        found.unrecorded = (int(row[0]) if row else 0) - present_total
    found.duplicated = _duplicated(conn, table, run_id)
    return found


# How a run ended when its ledger holds every record it made.
COMPLETE = ("finished", "interrupted")


def verify_run(
    run_dir: Path,
    *,
    dsn: str | None = None,
    env_file: str | None = None,
    connect_timeout: float = 5.0,
    allow_incomplete: bool = False,
    until: float | None = None,
) -> dict[str, Any]:
    """Classify every recorded write; ``until``: the cut-off time (see the module docstring)."""
    meta = rundir.open_run(run_dir)
    status = meta.get("status")
    incomplete = status not in COMPLETE
    if incomplete and not allow_incomplete:
        why = meta.get("failure") or "it never ended: killed, or still going"
        raise UsageError(
            f"{run_dir}: the run is {status} ({why}), so its ledger may miss records;"
            " --allow-incomplete verifies it anyway and counts the rows it misses"
        )
    params, shown = _connect_params(meta, dsn, env_file, connect_timeout)
    table = str((meta.get("options") or {}).get("table") or "pgchaos_ledger")
    run_id = str(meta.get("run_id", ""))
    # Runs recorded before payloads were checksums carry filler: nothing to check there.
    checksums = (meta.get("options") or {}).get("payload") == PAYLOAD_KIND
    try:
        conn = psycopg.connect(make_conninfo("", **params), autocommit=False)
    except psycopg.Error as exc:
        raise UsageError(f"cannot connect to {shown}: {first_line(exc)}") from None
    with conn:
        try:
            try:
                found = _join_in_temp_table(conn, run_dir, table, run_id, checksums, until)
            except psycopg.errors.ReadOnlySqlTransaction:
                conn.rollback()
                found = _lookup_in_batches(conn, run_dir, table, run_id, checksums, until)
        except psycopg.errors.UndefinedTable:
            raise TableMissing(
                f"table {table} does not exist at {shown}: dropped? every write of the run is gone"
            ) from None
        except psycopg.Error as exc:
            raise UsageError(f"verify failed at {shown}: {first_line(exc)}") from None

    def n(outcome: str, present: bool) -> int:
        return found.counts.get((outcome, present), 0)

    try:
        started = rundir.parse_time(meta.get("started_at"))
    except ValueError:
        started = 0.0  # only shifts the "at_s" of examples
    seen = reads.cached(run_dir, started)
    counted = (meta.get("counts") or {}).get("records")
    if isinstance(counted, int) and seen.records < counted:
        # A ledger that lost its records proves nothing: "0 writes, none lost" would lie.
        raise UsageError(
            f"{run_dir / 'records.csv'} holds {seen.records} records, run.json counts "
            f"{counted}: the ledger is damaged"
        )
    read_figures = reads.analyze(seen, found.lost, until)
    rw_reads = read_figures.get(RW_READS, {}).get("read_anomalies", {})
    lost_sync_cancel = found.locally_only[(OK, False)]

    result: dict[str, Any] = {
        "run_id": run_id,
        "checked_at": rundir.iso(time.time()),
        "dsn": shown,
        "table": table,
        "method": found.method,
        "writes": found.written,
        # present: also those acknowledged after the cut-off (present_after_until)
        "acknowledged": {
            "present": n(OK, True) + n(OK_AFTER_UNTIL, True),
            "lost": n(OK, False),
        },
        "in_doubt": {"present": n(IN_DOUBT, True), "absent": n(IN_DOUBT, False)},
        "failed": {"present": n(FAILED, True), "absent": n(FAILED, False)},
        "lost": n(OK, False),
        # acknowledged although their commit skipped the synchronous standby (ledger.py's
        # SYNC_CANCELLED), and the lost writes split into those and the others
        "acknowledged_unreplicated": sum(found.locally_only.values()),
        "lost_after_sync_cancel": lost_sync_cancel,
        "lost_other": n(OK, False) - lost_sync_cancel,
        "ghosts": n(IN_DOUBT, True) + n(FAILED, True),
        "in_doubt_total": n(IN_DOUBT, True) + n(IN_DOUBT, False),
        "unrecorded_rows": found.unrecorded,
        # a run that did not end cleanly: unrecorded_rows is the ledger's gap
        "incomplete": incomplete,
        "status": status,
        # present, but not as written (payload checksum, run, writer or seq differ)
        "altered": found.altered if checksums else None,
        "altered_ids": found.altered_ids,
        # extra rows of the run repeating a (writer, seq) that is already there
        "duplicated": found.duplicated,
        "lost_writes": found.listed.get((OK, False), []),
        "ghost_writes": found.listed.get((IN_DOUBT, True), [])
        + found.listed.get((FAILED, True), []),
        "reads": {
            "seen_then_lost": reads.seen_then_lost(seen, found.lost),
            "read_your_writes": rw_reads.get("read_your_writes"),
            "non_monotonic": {
                ep: f["read_anomalies"]["non_monotonic"]["count"] for ep, f in read_figures.items()
            },
            "staleness_s": {ep: f["staleness_s"] for ep, f in read_figures.items()},
        },
        # acknowledgement times (the client received the success): every acknowledged write
        # acknowledged up to recovered_until is present (null: none is); first_lost_at is the
        # earliest missing one, before or after any cut-off (null: none is missing)
        "recovered_until": _iso_or_none(found.recovered_until),
        "first_lost_at": _iso_or_none(found.first_lost_at),
    }
    if until is not None:
        result.update(
            {
                # the cut-off: only writes acknowledged before it must be present
                "until": rundir.iso(until),
                "until_ts": until,
                # the writes the cut-off judges (present or lost): none means "0 lost" proves
                # nothing, as when the load started after the cut-off
                "acknowledged_before_until": n(OK, True) + n(OK, False),
                # acknowledged at or after the cut-off: absent (not counted in lost), present
                "lost_after_until": n(OK_AFTER_UNTIL, False),
                "present_after_until": n(OK_AFTER_UNTIL, True),
                # how far before the cut-off the complete data ends (negative: past it): up
                # to the first missing write, and at most to the latest write acknowledged
                # before the cut-off that is there
                "recovered_gap_s": _gap(until, found),
            }
        )
    return result


def _iso_or_none(epoch: float | None) -> str | None:
    return None if epoch is None else rundir.iso(epoch)


def _sync_cancel_line(result: dict[str, Any]) -> str:
    return (
        f"{result['acknowledged_unreplicated']} acknowledged writes committed locally only"
        f" (synchronous replication wait cancelled): {result['lost_after_sync_cancel']} of them"
        f" LOST; {result['lost_other']} other acknowledged writes LOST"
    )


def _gap(until: float, found: Findings) -> float | None:
    ends = [t for t in (found.recovered_until, found.last_present_before_until) if t is not None]
    return round(until - min(ends), 3) if ends else None


def _until_line(result: dict[str, Any]) -> str:
    gap = result["recovered_gap_s"]
    if gap is None:
        complete = "no acknowledged write is present"
    elif gap >= 0:
        ends = rundir.iso(result["until_ts"] - gap)
        complete = f"complete up to {ends} ({gap} s before the cut-off)"
    else:
        ends = rundir.iso(result["until_ts"] - gap)
        complete = f"complete up to {ends} ({-gap} s past the cut-off)"
    return (
        f"cut-off {result['until']}: {result['lost']} acknowledged before it LOST;"
        f" acknowledged at or after it: {result['lost_after_until']} absent (not lost),"
        f" {result['present_after_until']} present; {complete}"
    )


def run_verify(
    run_dir: Path,
    *,
    dsn: str | None,
    env_file: str | None,
    connect_timeout: float,
    allow_incomplete: bool = False,
    until: float | None = None,
) -> int:
    result = verify_run(
        run_dir,
        dsn=dsn,
        env_file=env_file,
        connect_timeout=connect_timeout,
        allow_incomplete=allow_incomplete,
        until=until,
    )
    try:
        rundir.write_json(run_dir / VERIFY_FILE, result)
    except OSError as exc:
        raise UsageError(f"cannot write {run_dir / VERIFY_FILE}: {exc.strerror or exc}") from None
    ack = result["acknowledged"]
    print(
        f"{result['writes']} writes: acknowledged {ack['present']} present, {ack['lost']} LOST; "
        f"in doubt {result['in_doubt']['present']} present (ghost), "
        f"{result['in_doubt']['absent']} absent; "
        f"failed {result['failed']['present']} present (ghost), {result['failed']['absent']} absent"
    )
    if "until" in result:
        print(_until_line(result))
    if result["acknowledged_unreplicated"]:
        print(_sync_cancel_line(result))
    if result["altered"] or result["duplicated"]:
        print(
            f"{result['altered']} rows ALTERED since they were written, "
            f"{result['duplicated']} DUPLICATED rows"
        )
    if result["incomplete"]:
        print(
            f"incomplete run ({result['status']}): {result['unrecorded_rows']} writes of this run"
            " are on the server but not in the ledger; failed or unanswered operations of its"
            " last moments may be missing too"
        )
    elif result["unrecorded_rows"]:
        print(f"{result['unrecorded_rows']} rows of this run in the table were never recorded")
    checked = result["reads"]
    seen_lost = checked["seen_then_lost"]["count"]
    ryw = (checked["read_your_writes"] or {}).get("count", 0)
    stale = ", ".join(
        f"{ep} max {f['max']} s p99 {f['p99']} s"
        for ep, f in sorted(checked["staleness_s"].items())
    )
    print(
        f"reads: {seen_lost} seen then LOST, {ryw} read-your-writes violations on the write port, "
        f"non-monotonic {checked['non_monotonic'] or 'not checked'}; staleness {stale or '-'}"
    )
    print(f"-> {run_dir / VERIFY_FILE}")
    damaged = bool(result["altered"] or result["duplicated"])
    return 1 if result["lost"] or seen_lost or ryw or damaged else 0
