"""``pgchaos verify``: read back every recorded write and classify what happened to it.

The recorded ids are COPYed into a temp table and joined with the ledger table
once; on a read-only server (checking a replica) they are looked up in batches.
Classes: acknowledged and present / lost, in doubt and present (ghost) / absent,
failed and present (ghost) / absent, plus rows of the run that nobody recorded.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgchaos import rundir
from pgchaos.classify import first_line
from pgchaos.dsn import parse_env_file, redact, validate
from pgchaos.errors import UsageError
from pgchaos.ledger import FAILED, IN_DOUBT, OK, Record, read_records
from pgchaos.workload import table_ident

VERIFY_FILE = "verify.json"
MAX_LISTED = 100
BATCH = 20000


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
    return params, redact(source)


@dataclass
class Findings:
    """Counts by (outcome, present), a few examples of the interesting ones, and extras."""

    method: str
    written: int = 0
    counts: Counter[tuple[str, bool]] = field(default_factory=Counter)
    listed: dict[tuple[str, bool], list[dict[str, Any]]] = field(default_factory=dict)
    unrecorded: int = 0

    def note(self, outcome: str, present: bool, rec: Record) -> None:
        key = (outcome, present)
        self.counts[key] += 1
        if key in INTERESTING:
            examples = self.listed.setdefault(key, [])
            if len(examples) < MAX_LISTED:
                examples.append(_example(rec.id, rec.time, rec.worker, rec.seq))


INTERESTING = ((OK, False), (IN_DOUBT, True), (FAILED, True))


def _example(row_id: str, t: float, writer: int, seq: object) -> dict[str, Any]:
    return {"id": row_id, "time": rundir.iso(t), "writer": writer, "seq": seq}


def _writes(run_dir: Path) -> Iterator[Record]:
    return (r for r in read_records(run_dir) if r.kind == "write" and r.id)


def _join_in_temp_table(
    conn: psycopg.Connection[Any], run_dir: Path, table: str, run_id: str
) -> Findings:
    """COPY the recorded ids into a temp table and join once: fast for any run size."""
    found = Findings(method="copy+join")
    ledger = table_ident(table)
    conn.execute(
        "create temp table pgchaos_verify"
        " (id uuid, outcome text, t double precision, writer int, seq bigint)"
        " on commit drop"
    )
    with conn.cursor().copy("copy pgchaos_verify (id, outcome, t, writer, seq) from stdin") as cp:
        for rec in _writes(run_dir):
            cp.write_row((rec.id, rec.outcome, rec.time, rec.worker, rec.seq or None))
            found.written += 1
    conn.execute("analyze pgchaos_verify")
    rows = conn.execute(
        sql.SQL(
            "select v.outcome, l.id is not null, count(*)"
            " from pgchaos_verify v left join {} l on l.id = v.id group by 1, 2"
        ).format(ledger)
    ).fetchall()
    found.counts.update({(outcome, bool(present)): n for outcome, present, n in rows})
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
    if run_id:
        row = conn.execute(
            sql.SQL(
                "select count(*) from {} l where l.run_id = %s"
                " and not exists (select 1 from pgchaos_verify v where v.id = l.id)"
            ).format(ledger),
            (run_id,),
        ).fetchone()
        found.unrecorded = int(row[0]) if row else 0
    return found


def _lookup_in_batches(
    conn: psycopg.Connection[Any], run_dir: Path, table: str, run_id: str
) -> Findings:
    """For read-only servers (a replica), where no temp table can be created."""
    found = Findings(method="batched lookup (read-only server)")
    query = sql.SQL("select id::text from {} where id = any(%s::uuid[])").format(table_ident(table))
    batch: list[Record] = []

    def flush() -> None:
        present = {row[0] for row in conn.execute(query, ([r.id for r in batch],))}
        for rec in batch:
            found.note(rec.outcome, rec.id in present, rec)
        batch.clear()

    for rec in _writes(run_dir):
        found.written += 1
        batch.append(rec)
        if len(batch) >= BATCH:
            flush()
    flush()
    if run_id:
        # Every recorded id that is present belongs to this run, so the rest of the
        # run's rows are the ones nobody recorded.
        row = conn.execute(
            sql.SQL("select count(*) from {} where run_id = %s").format(table_ident(table)),
            (run_id,),
        ).fetchone()
        present_total = sum(n for (_, present), n in found.counts.items() if present)
        found.unrecorded = (int(row[0]) if row else 0) - present_total
    return found


def verify_run(
    run_dir: Path,
    *,
    dsn: str | None = None,
    env_file: str | None = None,
    connect_timeout: float = 5.0,
) -> dict[str, Any]:
    meta = rundir.open_run(run_dir)
    params, shown = _connect_params(meta, dsn, env_file, connect_timeout)
    table = str((meta.get("options") or {}).get("table") or "pgchaos_ledger")
    run_id = str(meta.get("run_id", ""))
    try:
        conn = psycopg.connect(make_conninfo("", **params), autocommit=False)
    except psycopg.Error as exc:
        raise UsageError(f"cannot connect to {shown}: {first_line(exc)}") from None
    with conn:
        try:
            try:
                found = _join_in_temp_table(conn, run_dir, table, run_id)
            except psycopg.errors.ReadOnlySqlTransaction:
                conn.rollback()
                found = _lookup_in_batches(conn, run_dir, table, run_id)
        except psycopg.errors.UndefinedTable:
            raise UsageError(f"table {table} does not exist at {shown}") from None
        except psycopg.Error as exc:
            raise UsageError(f"verify failed at {shown}: {first_line(exc)}") from None

    def n(outcome: str, present: bool) -> int:
        return found.counts.get((outcome, present), 0)

    return {
        "run_id": run_id,
        "checked_at": rundir.iso(time.time()),
        "dsn": shown,
        "table": table,
        "method": found.method,
        "writes": found.written,
        "acknowledged": {"present": n(OK, True), "lost": n(OK, False)},
        "in_doubt": {"present": n(IN_DOUBT, True), "absent": n(IN_DOUBT, False)},
        "failed": {"present": n(FAILED, True), "absent": n(FAILED, False)},
        "lost": n(OK, False),
        "ghosts": n(IN_DOUBT, True) + n(FAILED, True),
        "in_doubt_total": n(IN_DOUBT, True) + n(IN_DOUBT, False),
        "unrecorded_rows": found.unrecorded,
        "lost_writes": found.listed.get((OK, False), []),
        "ghost_writes": found.listed.get((IN_DOUBT, True), [])
        + found.listed.get((FAILED, True), []),
    }


def run_verify(
    run_dir: Path, *, dsn: str | None, env_file: str | None, connect_timeout: float
) -> int:
    result = verify_run(run_dir, dsn=dsn, env_file=env_file, connect_timeout=connect_timeout)
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
    if result["unrecorded_rows"]:
        print(f"{result['unrecorded_rows']} rows of this run in the table were never recorded")
    print(f"-> {run_dir / VERIFY_FILE}")
    return 1 if result["lost"] else 0
