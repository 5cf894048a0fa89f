"""``pgchaos verify``: read back every recorded write and classify what happened to it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgchaos import rundir
from pgchaos.classify import first_line
from pgchaos.dsn import parse_env_file, redact, validate
from pgchaos.errors import UsageError
from pgchaos.ledger import FAILED, IN_DOUBT, OK, read_records
from pgchaos.workload import table_ident

VERIFY_FILE = "verify.json"
MAX_LISTED = 100


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
    counts: dict[tuple[str, bool], int] = {}
    listed: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    unrecorded = 0
    with conn:
        try:
            conn.execute(
                "create temp table pgchaos_verify"
                " (id uuid, outcome text, t double precision, writer int, seq bigint)"
                " on commit drop"
            )
            written = 0
            with conn.cursor().copy(
                "copy pgchaos_verify (id, outcome, t, writer, seq) from stdin"
            ) as copy:
                for rec in read_records(run_dir):
                    if rec.kind == "write" and rec.id:
                        copy.write_row((rec.id, rec.outcome, rec.time, rec.worker, rec.seq or None))
                        written += 1
            conn.execute("analyze pgchaos_verify")
            rows = conn.execute(
                sql.SQL(
                    "select v.outcome, l.id is not null, count(*)"
                    " from pgchaos_verify v left join {} l on l.id = v.id group by 1, 2"
                ).format(table_ident(table))
            ).fetchall()
            counts = {(outcome, bool(present)): n for outcome, present, n in rows}
            for key in ((OK, False), (IN_DOUBT, True), (FAILED, True)):
                # Spelled as (not) exists so the planner can use a semi/anti join.
                found = conn.execute(
                    sql.SQL(
                        "select v.id::text, v.t, v.writer, v.seq from pgchaos_verify v"
                        " where v.outcome = %s and {} (select 1 from {} l where l.id = v.id)"
                        " order by v.t limit %s"
                    ).format(sql.SQL("exists" if key[1] else "not exists"), table_ident(table)),
                    (key[0], MAX_LISTED),
                ).fetchall()
                listed[key] = [
                    {"id": i, "time": rundir.iso(t), "writer": w, "seq": s} for i, t, w, s in found
                ]
            if run_id:
                row = conn.execute(
                    sql.SQL(
                        "select count(*) from {} l where l.run_id = %s"
                        " and not exists (select 1 from pgchaos_verify v where v.id = l.id)"
                    ).format(table_ident(table)),
                    (run_id,),
                ).fetchone()
                unrecorded = int(row[0]) if row else 0
        except psycopg.errors.UndefinedTable:
            raise UsageError(f"table {table} does not exist at {shown}") from None
        except psycopg.Error as exc:
            raise UsageError(f"verify failed at {shown}: {first_line(exc)}") from None

    def n(outcome: str, present: bool) -> int:
        return counts.get((outcome, present), 0)

    result: dict[str, Any] = {
        "run_id": run_id,
        "checked_at": rundir.iso(time.time()),
        "dsn": shown,
        "table": table,
        "writes": written,
        "acknowledged": {"present": n(OK, True), "lost": n(OK, False)},
        "in_doubt": {"present": n(IN_DOUBT, True), "absent": n(IN_DOUBT, False)},
        "failed": {"present": n(FAILED, True), "absent": n(FAILED, False)},
        "lost": n(OK, False),
        "ghosts": n(IN_DOUBT, True) + n(FAILED, True),
        "in_doubt_total": n(IN_DOUBT, True) + n(IN_DOUBT, False),
        "unrecorded_rows": unrecorded,
        "lost_writes": listed.get((OK, False), []),
        "ghost_writes": listed.get((IN_DOUBT, True), []) + listed.get((FAILED, True), []),
    }
    return result


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
