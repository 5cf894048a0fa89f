"""Writer and reader threads: each owns one connection and records every operation.

Threads rather than asyncio: psycopg releases the GIL while it waits on the
network, so a few dozen threads keep the server busy with little Python work.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql

from pgchaos.classify import CONNECTION_LOST, READ_ONLY, TIMEOUT, classify, first_line
from pgchaos.ledger import FAILED, IN_DOUBT, OK, RW_READS, SYNC_CANCELLED, Row
from pgchaos.state import Identity, StateTracker

IDENTITY_SQL = """
select host(inet_server_addr()), inet_server_port(), pg_is_in_recovery(),
       case when pg_is_in_recovery() then null
            else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       end
"""
REPLICA_TIMELINE_SQL = (
    "select received_tli from pg_stat_wal_receiver",
    "select timeline_id from pg_control_checkpoint()",
)


@dataclass(frozen=True)
class WorkloadConfig:
    run_id: str
    table: str = "pgchaos_ledger"
    rate: float = 20.0
    max_backoff: float = 1.0
    statement_timeout: float = 5.0
    # Seconds after which a client-side query timeout sends a cancel request (None: never).
    cancel_after: float | None = None
    identity_interval: float = 1.0
    # How many writers the run has: readers look for the newest row of each.
    writers: int = 0
    # False for transaction poolers that predate prepared-statement support (PgBouncer
    # < 1.21): a named statement prepared in one transaction is gone in the next, which
    # the pooler may run on another server connection.
    prepare: bool = True

    @property
    def op_timeout(self) -> float:
        """How long the watchdog lets one operation run before cutting the connection."""
        return self.statement_timeout + 2.0


class Notice(Protocol):
    """What a notice handler is given (psycopg's Diagnostic), as far as we read it."""

    @property
    def severity(self) -> str | None: ...
    @property
    def severity_nonlocalized(self) -> str | None: ...
    @property
    def message_primary(self) -> str | None: ...
    @property
    def message_detail(self) -> str | None: ...


# PostgreSQL (syncrep.c) answers a cancelled wait for the synchronous standby with a
# WARNING and a success, not an error.  Its sqlstate is the generic 01000 (57P01 when the
# backend is being terminated), so only the text identifies it: the DETAIL is the same in
# both cases.  The text follows the server's lc_messages; a translated one goes unnoticed.
_SYNC_CANCEL_DETAIL = "has already committed locally"
_SYNC_CANCEL_PRIMARY = "wait for synchronous replication"


def sync_wait_cancelled(notice: Notice) -> bool:
    """True for the warning of a commit that did not wait for its synchronous standby."""
    severity = notice.severity_nonlocalized or notice.severity
    if severity != "WARNING":
        return False
    primary = notice.message_primary or ""
    detail = notice.message_detail or ""
    return _SYNC_CANCEL_DETAIL in detail or (
        primary.startswith("canceling") and _SYNC_CANCEL_PRIMARY in primary
    )


def payload_of(row_id: str, run_id: str, writer: int, seq: int) -> str:
    """A row's payload is the checksum of its other columns: verify recomputes it in SQL."""
    return hashlib.md5(
        f"{row_id}/{run_id}/{writer}/{seq}".encode(), usedforsecurity=False
    ).hexdigest()


# run.json's options.payload for runs whose payloads are checksums.
PAYLOAD_KIND = "md5(id/run_id/writer/seq)"
# The same checksum in SQL, over the ledger table's columns (alias l).
PAYLOAD_SQL = "md5(l.id::text || '/' || l.run_id || '/' || l.writer::text || '/' || l.seq::text)"


def connect(params: str, *, prepare: bool = True) -> psycopg.Connection[Any]:
    """An autocommit connection; with prepare False it never makes a named statement."""
    conn = psycopg.connect(params, autocommit=True)
    if not prepare:
        # psycopg prepares any query it has run prepare_threshold times on the connection.
        conn.prepare_threshold = None
    return conn


def table_ident(name: str) -> sql.Composable:
    return sql.Identifier(*name.split("."))


def index_name(table: str) -> str:
    """The (run_id, writer, seq) index, beside the table (an index lives in its table's schema)."""
    *schema, name = table.split(".")
    return ".".join([*schema, f"{name}_run_writer_seq"])


def ensure_schema(conn: psycopg.Connection[Any], table: str) -> bool:
    """Create the ledger table and its index if missing; False if the table cannot be created."""
    if not _exists(conn, table):
        try:
            _create_table(conn, table)
        except psycopg.errors.ReadOnlySqlTransaction:
            return False
    if not _exists(conn, index_name(table)):
        # Readers ask for each writer's newest row many times a second: the index makes that
        # a few page reads however long the run.  Without it (someone else's table, a
        # read-only server) reads are only slower.
        refused = (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege)
        with contextlib.suppress(*refused):
            conn.execute(
                sql.SQL("create index if not exists {} on {} (run_id, writer, seq)").format(
                    sql.Identifier(index_name(table).split(".")[-1]), table_ident(table)
                )
            )
    return True


def _exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("select to_regclass(%s) is not null", (name,)).fetchone()
    return bool(row is not None and row[0])


def _create_table(conn: psycopg.Connection[Any], table: str) -> None:
    conn.execute(
        sql.SQL(
            "create table if not exists {} ("
            " id uuid primary key,"
            " run_id text not null,"
            " writer int not null,"
            " seq bigint not null,"
            " written_at timestamptz not null default now(),"
            " payload text)"
        ).format(table_ident(table))
    )


def _ms_since(started: float) -> float:
    """Milliseconds since ``started``, on the clock ``started`` was read from.

    One clock for the start and the end: with a second one (perf_counter) read a statement
    later, a thread switch in between made the recorded end up to one switch interval early,
    and a read that began after it could look as if it missed an acknowledged write.
    """
    return (time.time() - started) * 1000.0


class Worker(threading.Thread):
    def __init__(
        self,
        *,
        endpoint: str,
        kind: str,
        index: int,
        params: str,
        config: WorkloadConfig,
        record: Callable[[Row], None],
        tracker: StateTracker,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"{endpoint}-{kind}-{index}", daemon=True)
        self.endpoint = endpoint
        self.kind = kind
        self.index = index
        self.params = params
        self.config = config
        self.record = record
        self.tracker = tracker
        self.stop = stop
        self.conn: psycopg.Connection[Any] | None = None
        self.cursor: psycopg.Cursor[Any] | None = None
        self.identity = Identity()
        self.identity_at = 0.0
        self.backoff = 0.0
        self.seq = 0
        self.ok = 0
        self.errors = 0
        # monotonic start of the server interaction in progress (0: none); read by the watchdog
        self.busy_since = 0.0
        self.aborted = False
        # busy_since of the operation the watchdog last asked the server to cancel.
        self.cancelled_since = 0.0
        # Held while a cancel request is checked and sent, and taken before the next
        # operation starts: PostgreSQL cancels whatever the backend is running when the
        # request arrives, so a request overtaken by the end of its operation must reach
        # the backend while it is idle (where it is ignored), not during the next one.
        self.cancel_lock = threading.Lock()
        # Set by the notice handler while a write runs: its commit skipped the standby.
        self.sync_cancelled = False
        # Rendered to plain strings once: psycopg caches the parsing of string
        # queries, while a Composed object would be rendered again on every call.
        table = table_ident(config.table).as_string(None)
        self.insert_sql = (
            f"insert into {table} (id, run_id, writer, seq, payload) values (%s, %s, %s, %s, %s)"
        )
        # One statement, so one snapshot: is the server a replica, its WAL position, and the
        # newest row of each writer it can see.  A writer commits one row after the other,
        # so on any one history seeing its row n means seeing all its acknowledged rows < n.
        self.read_sql = (
            "select pg_is_in_recovery(), (case when pg_is_in_recovery()"
            " then pg_last_wal_replay_lsn() else pg_current_wal_lsn() end)::text,"
            " array(select coalesce((select max(seq) from "
            f"{table} where run_id = %s and writer = w), 0)"
            " from generate_series(0, %s::int - 1) w order by w)"
        )

    # -- connection handling ------------------------------------------------

    def _connect(self) -> bool:
        if self.backoff:
            jitter = self.backoff * random.uniform(0.8, 1.2)
            if self.stop.wait(jitter):
                return False
        started = time.time()
        t0 = time.perf_counter()
        try:
            conn = connect(self.params, prepare=self.config.prepare)
        except Exception as exc:
            self._connect_failed(started, t0, exc)
            return False
        self.conn = conn
        self.cursor = conn.cursor()
        self.aborted = False
        conn.add_notice_handler(self._on_notice)
        try:
            self._refresh_identity()
        except Exception as exc:
            self._drop()
            self._connect_failed(started, t0, exc)
            return False
        latency = (time.perf_counter() - t0) * 1000.0
        self._put(started, "connect", latency, OK, "", "", "", "", "", "")
        return True

    def _connect_failed(self, started: float, t0: float, exc: BaseException) -> None:
        latency = (time.perf_counter() - t0) * 1000.0
        error_class = classify(exc, connecting=True)
        message = first_line(exc)
        self.errors += 1
        self.identity = Identity()
        self._put(started, "connect", latency, FAILED, error_class, "", "", "", "", message)
        self.tracker.failure(self.endpoint, error_class, message, started)
        self.backoff = min(self.config.max_backoff, max(0.05, self.backoff * 2))

    def _on_notice(self, notice: psycopg.errors.Diagnostic) -> None:
        if sync_wait_cancelled(notice):
            self.sync_cancelled = True

    def _refresh_identity(self) -> None:
        assert self.cursor is not None
        cur = self.cursor
        self._begin()
        try:
            cur.execute(IDENTITY_SQL)
            row = cur.fetchone()
            assert row is not None
            addr, port, in_recovery, timeline = row
            if in_recovery:
                timeline = self._replica_timeline()
        finally:
            self.busy_since = 0.0
        server = f"{addr}:{port}" if addr else "local"
        self.identity = Identity(
            server=server,
            role="replica" if in_recovery else "primary",
            timeline="" if timeline is None else str(timeline),
        )
        self.identity_at = time.monotonic()

    def _replica_timeline(self) -> object:
        assert self.cursor is not None
        for query in REPLICA_TIMELINE_SQL:
            try:
                self.cursor.execute(query)
                row = self.cursor.fetchone()
            except psycopg.errors.InsufficientPrivilege:
                continue
            if row is not None and row[0] is not None:
                return row[0]
        return None

    def _drop(self) -> None:
        conn, self.conn, self.cursor = self.conn, None, None
        if conn is not None:
            # The connection is being thrown away; a failure to close it changes nothing.
            with contextlib.suppress(Exception):
                conn.close()

    def abort(self) -> None:
        """Cut the connection from another thread: the only way out of a wait on a hung node."""
        conn = self.conn
        if conn is None:
            return
        self.aborted = True
        try:
            sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
        except Exception:  # noqa: S110 - the connection may already be gone; nothing to cut then
            pass

    def cancel(self, since: float) -> None:
        """Ask the server to cancel the operation begun at ``since``, as a query timeout does.

        Unlike abort() the connection survives: the server answers the statement with an
        error, or, for a commit waiting for its synchronous standby, with a warning and a
        success (the commit is already done locally).
        """
        with self.cancel_lock:
            conn = self.conn
            # The operation may have ended meanwhile: never cancel the next one.
            if conn is None or self.busy_since != since:
                return
            # A node that does not answer the cancel request: abort() deals with it later.
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=self.config.statement_timeout)

    def _begin(self) -> None:
        """Mark a server interaction as started, once no cancel request is on its way."""
        with self.cancel_lock:
            self.busy_since = time.monotonic()

    # -- the operation loop ---------------------------------------------------

    def run(self) -> None:
        interval = 1.0 / self.config.rate if self.config.rate > 0 else 0.0
        next_due = time.monotonic()
        op = self._write if self.kind == "write" else self._read
        try:
            while not self.stop.is_set():
                if self.conn is None and not self._connect():
                    continue
                if interval:
                    now = time.monotonic()
                    if next_due > now:
                        if self.stop.wait(next_due - now):
                            break
                    elif now - next_due > 1.0:
                        # Do not burst to catch up after an outage.
                        next_due = now
                    next_due += interval
                if time.monotonic() - self.identity_at > self.config.identity_interval:
                    try:
                        self._refresh_identity()
                    except Exception as exc:
                        self._failed_op(time.time(), 0.0, exc, None, kind="connect")
                        continue
                op()
        finally:
            self._drop()

    def _put(
        self,
        started: float,
        kind: str,
        latency_ms: float,
        outcome: str,
        error_class: str,
        row_id: str,
        seq: str,
        lsn: str,
        seen: str,
        error: str,
    ) -> None:
        ident = self.identity
        self.record(
            (
                f"{started:.6f}",
                self.endpoint,
                kind,
                self.index,
                f"{latency_ms:.3f}",
                outcome,
                error_class,
                ident.server,
                ident.role,
                ident.timeline,
                row_id,
                seq,
                lsn,
                seen,
                error,
            )
        )

    def _failed_op(
        self,
        started: float,
        latency_ms: float,
        exc: BaseException,
        write: tuple[str, str] | None,
        kind: str | None = None,
    ) -> None:
        conn = self.conn
        broken = conn is None or conn.broken or conn.closed
        error_class = TIMEOUT if self.aborted else classify(exc)
        if broken and error_class not in (TIMEOUT, READ_ONLY):
            error_class = CONNECTION_LOST
        message = first_line(exc)
        self.errors += 1
        if write is not None:
            # The commit may or may not have happened if the connection died under it.
            outcome = IN_DOUBT if broken else FAILED
            self._put(started, "write", latency_ms, outcome, error_class, *write, "", "", message)
        else:
            self._put(
                started, kind or self.kind, latency_ms, FAILED, error_class, "", "", "", "", message
            )
        self.tracker.failure(self.endpoint, error_class, message, started)
        if broken or error_class == READ_ONLY:
            # A read-only answer on the rw endpoint means we sit on a demoted or
            # wrong node: reconnect so routing (or target_session_attrs) can move us.
            self._drop()
            self.identity = Identity()
        self.backoff = min(self.config.max_backoff, max(0.05, self.backoff * 2))
        if not broken and error_class != READ_ONLY:
            # The connection is fine but the server said no: do not hammer it.
            self.stop.wait(self.backoff)

    def _write(self) -> None:
        assert self.cursor is not None
        self.seq += 1
        row_id = str(uuid.uuid4())
        seq = str(self.seq)
        self._begin()
        started = time.time()
        self.sync_cancelled = False
        try:
            self.cursor.execute(
                self.insert_sql,
                (
                    row_id,
                    self.config.run_id,
                    self.index,
                    self.seq,
                    payload_of(row_id, self.config.run_id, self.index, self.seq),
                ),
                prepare=self.config.prepare,
            )
        except Exception as exc:
            self.busy_since = 0.0
            self._failed_op(started, _ms_since(started), exc, (row_id, seq))
            return
        self.busy_since = 0.0
        latency = _ms_since(started)
        self.ok += 1
        self.backoff = 0.0
        # Still acknowledged: the client was told the write succeeded, which is the point.
        note = SYNC_CANCELLED if self.sync_cancelled else ""
        self._put(started, "write", latency, OK, "", row_id, seq, "", "", note)
        self.tracker.success(self.endpoint, self.identity, started)

    def _read(self) -> None:
        assert self.cursor is not None
        self._begin()
        started = time.time()
        try:
            self.cursor.execute(
                self.read_sql,
                (self.config.run_id, self.config.writers),
                prepare=self.config.prepare,
            )
            row = self.cursor.fetchone()
            assert row is not None
        except Exception as exc:
            self.busy_since = 0.0
            self._failed_op(started, _ms_since(started), exc, None)
            return
        self.busy_since = 0.0
        latency = _ms_since(started)
        in_recovery, lsn, newest = row
        role = "replica" if in_recovery else "primary"
        if role != self.identity.role:
            # Promoted or demoted under this connection: the record says what answered,
            # and the next operation looks up the new timeline.
            self.identity = Identity(server=self.identity.server, role=role)
            self.identity_at = 0.0
        seen = " ".join(str(n) for n in newest)
        if self.endpoint == RW_READS and in_recovery:
            # The write port handed us a replica: a writer here would fail, and a read
            # here says nothing about read-your-writes.  Count it as that failure.
            self._put(
                started,
                "read",
                latency,
                FAILED,
                READ_ONLY,
                "",
                "",
                lsn or "",
                seen,
                "read through the write port answered by a replica",
            )
            self.errors += 1
            self.tracker.failure(self.endpoint, READ_ONLY, "answered by a replica", started)
            self._drop()
            self.identity = Identity()
            return
        self.ok += 1
        self.backoff = 0.0
        self._put(started, "read", latency, OK, "", "", "", lsn or "", seen, "")
        self.tracker.success(self.endpoint, self.identity, started)


class Watchdog(threading.Thread):
    """Cancels operations that outlive cancel_after, cuts those outliving every timeout."""

    def __init__(
        self,
        workers: list[Worker],
        timeout: float,
        stop: threading.Event,
        cancel_after: float | None = None,
    ) -> None:
        super().__init__(name="watchdog", daemon=True)
        self.workers = workers
        self.timeout = timeout
        self.stop = stop
        self.cancel_after = cancel_after

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.check()
        # Keep watching during shutdown so a hung node cannot hold up the exit.
        for _ in range(int(self.timeout * 4) + 8):
            self.check()
            if not any(w.is_alive() for w in self.workers):
                return
            time.sleep(0.25)

    def check(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            since = worker.busy_since
            if since and now - since > self.timeout:
                worker.abort()
            elif (
                since
                and self.cancel_after is not None
                and now - since > self.cancel_after
                and worker.cancelled_since != since
            ):
                worker.cancelled_since = since
                # A cancel request opens a connection of its own, which a hung node can
                # hold up: never in the watchdog's own thread.
                threading.Thread(
                    target=worker.cancel, args=(since,), name="cancel", daemon=True
                ).start()
