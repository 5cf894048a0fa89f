"""``pgchaos load --no-prepare``: a load that a transaction pooler without prepared
statements (PgBouncer < 1.21, Debian 12's 1.18) can carry.

Such a pooler runs each transaction on whichever server connection is free, so a named
statement prepared in one transaction is missing in the next.  The real run below makes
every statement meet a server session that has forgotten its prepared statements.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from chaoshelpers import read_json, records

from pgchaos import cli
from pgchaos.ledger import OK
from pgchaos.localpg import LocalPostgres
from pgchaos.state import StateTracker
from pgchaos.workload import IDENTITY_SQL, Worker, WorkloadConfig

# psycopg's own default: a query run this many times on a connection gets prepared.
PSYCOPG_PREPARE_THRESHOLD = 5


class FakeCursor:
    """Answers the worker's queries and remembers the prepare= of each execute."""

    def __init__(self) -> None:
        self.prepare_by_query: list[tuple[str, bool | None]] = []
        self._row: tuple[Any, ...] | None = None

    def execute(
        self, query: str, params: object = None, *, prepare: bool | None = None
    ) -> FakeCursor:
        self.prepare_by_query.append((query, prepare))
        if query == IDENTITY_SQL:
            self._row = ("127.0.0.1", 5432, False, 1)
        elif query.startswith("select pg_is_in_recovery()"):
            self._row = (False, "0/1000000", [0])
        else:
            self._row = None
        return self

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._row


class FakeConnection:
    def __init__(self) -> None:
        self.prepare_threshold: int | None = PSYCOPG_PREPARE_THRESHOLD
        self.fake_cursor = FakeCursor()
        self.closed = False
        self.broken = False

    def cursor(self) -> FakeCursor:
        return self.fake_cursor

    def add_notice_handler(self, handler: Callable[[object], None]) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _worker(kind: str, prepare: bool) -> Worker:
    return Worker(
        endpoint="rw" if kind == "write" else "ro",
        kind=kind,
        index=0,
        params="",
        config=WorkloadConfig(run_id="r", writers=1, prepare=prepare),
        record=lambda row: None,
        tracker=StateTracker(["rw", "ro"], lambda line: None),
        stop=threading.Event(),
    )


@pytest.mark.parametrize("prepare", [False, True])
@pytest.mark.parametrize("kind", ["write", "read"])
def test_the_worker_prepares_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, kind: str, prepare: bool
) -> None:
    opened: list[FakeConnection] = []

    def fake_connect(params: str, **kwargs: object) -> FakeConnection:
        opened.append(FakeConnection())
        return opened[-1]

    monkeypatch.setattr(psycopg, "connect", fake_connect)
    worker = _worker(kind, prepare)
    assert worker._connect()
    (worker._write if kind == "write" else worker._read)()
    assert (worker.ok, worker.errors) == (1, 0), "the operation did not run through the fakes"

    [conn] = opened
    operation = worker.insert_sql if kind == "write" else worker.read_sql
    executed = conn.fake_cursor.prepare_by_query
    assert [p for q, p in executed if q == operation] == [prepare]
    if prepare:
        assert conn.prepare_threshold == PSYCOPG_PREPARE_THRESHOLD
    else:
        assert conn.prepare_threshold is None
        assert True not in {p for _, p in executed}


# -- a real server behind a pooler that forgets prepared statements -------------------


def _run_behind_a_forgetful_pooler(
    pg: LocalPostgres, monkeypatch: pytest.MonkeyPatch, out: Path, *options: str
) -> list[dict[str, str]]:
    """A short load in this process, each statement on a session without prepared ones."""
    execute = psycopg.Cursor.execute

    def forgetful_execute(self: psycopg.Cursor[Any], *args: Any, **kwargs: Any) -> Any:
        # Straight through libpq: psycopg would notice a DEALLOCATE of its own and
        # forget its statements too, which a pooler's switch of server does not do.
        self.connection.pgconn.exec_(b"deallocate all")
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(psycopg.Cursor, "execute", forgetful_execute)
    for name in [k for k in os.environ if k.startswith("PG")]:
        monkeypatch.delenv(name)
    status = cli.main(
        [
            "load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "1", "--readers", "1",
            "--rw-readers", "1", "--rate", "50", "--duration", "1", "--max-backoff", "0.1",
            "--out", str(out), "-q", "--table", "pgchaos_no_prepare", *options,
        ]
    )  # fmt: skip
    assert status == 0
    rows = records(out)
    # Enough operations of each kind for psycopg to have prepared them on its own.
    for kind in ("write", "read"):
        assert len([r for r in rows if r["kind"] == kind]) > PSYCOPG_PREPARE_THRESHOLD
    return rows


@pytest.mark.postgres
def test_no_prepare_runs_through_a_pooler_that_forgets_prepared_statements(
    pg: LocalPostgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    rows = _run_behind_a_forgetful_pooler(pg, monkeypatch, out, "--no-prepare")
    assert [r for r in rows if r["outcome"] != OK] == []
    assert read_json(out / "run.json")["options"]["prepare"] is False


@pytest.mark.postgres
def test_by_default_the_load_prepares_and_such_a_pooler_breaks_it(
    pg: LocalPostgres, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The other side of the test above: without --no-prepare the forgetting does bite."""
    out = tmp_path / "run"
    rows = _run_behind_a_forgetful_pooler(pg, monkeypatch, out)
    missing = [r for r in rows if "does not exist" in r["error"] and "prepared" in r["error"]]
    assert missing, "no operation missed its prepared statement"
    assert read_json(out / "run.json")["options"]["prepare"] is True
