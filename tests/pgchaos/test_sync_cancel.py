"""Writes acknowledged after their wait for the synchronous standby was cancelled.

PostgreSQL answers such a cancel with a WARNING and a success: the row is committed on
the primary only.  The writer marks these writes in the ledger and verify counts them, and
tells them apart among the lost writes.

PostgreSQL 15 keeps statement_timeout out of the commit wait (it is disabled before the
commit), so the tests cancel the waiting writers with pg_cancel_backend, as an operator,
a pooler or a client-side query timeout would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from chaoshelpers import CliRunner, read_json, records, start_cli, wait_for_records

from pgchaos.ledger import FAILED, IN_DOUBT, OK, SYNC_CANCELLED, Record
from pgchaos.localpg import LocalPostgres
from pgchaos.state import StateTracker
from pgchaos.workload import Worker, WorkloadConfig, ensure_schema, sync_wait_cancelled

ROUNDS = 3
WRITERS = 2
COMMITTED_LOCALLY = (
    "The transaction has already committed locally, but might not have been replicated to"
    " the standby."
)
WAITING_WRITERS = (
    "select pid from pg_stat_activity"
    " where application_name = 'pgchaos-rw' and wait_event = 'SyncRep'"
)


@dataclass(frozen=True)
class FakeNotice:
    severity: str | None = "WARNING"
    severity_nonlocalized: str | None = "WARNING"
    message_primary: str | None = None
    message_detail: str | None = None


# -- matching the warning, no server -------------------------------------------------


def test_the_cancel_warning_is_recognised() -> None:
    notice = FakeNotice(
        message_primary="canceling wait for synchronous replication due to user request",
        message_detail=COMMITTED_LOCALLY,
    )
    assert sync_wait_cancelled(notice)


def test_the_termination_warning_is_recognised() -> None:
    notice = FakeNotice(
        message_primary="canceling the wait for synchronous replication and terminating"
        " connection due to administrator command",
        message_detail=COMMITTED_LOCALLY,
    )
    assert sync_wait_cancelled(notice)


def test_either_message_alone_is_enough() -> None:
    assert sync_wait_cancelled(FakeNotice(message_detail=COMMITTED_LOCALLY))
    primary = "canceling wait for synchronous replication due to user request"
    assert sync_wait_cancelled(FakeNotice(message_primary=primary))


def test_the_severity_is_read_unlocalized_when_the_server_sends_it() -> None:
    translated = FakeNotice(severity="ATTENTION", message_detail=COMMITTED_LOCALLY)
    assert sync_wait_cancelled(translated)
    # Servers before 9.6 send only the (possibly translated) severity.
    old_server = FakeNotice(severity_nonlocalized=None, message_detail=COMMITTED_LOCALLY)
    assert sync_wait_cancelled(old_server)


@pytest.mark.parametrize(
    "notice",
    [
        FakeNotice(
            severity="NOTICE", severity_nonlocalized="NOTICE", message_detail=COMMITTED_LOCALLY
        ),
        FakeNotice(message_primary="there is no transaction in progress"),
        FakeNotice(message_primary="waiting for synchronous replication is slow"),
        FakeNotice(),
    ],
    ids=["a notice", "another warning", "not a cancel", "empty"],
)
def test_other_notices_are_not_taken_for_a_cancel(notice: FakeNotice) -> None:
    assert not sync_wait_cancelled(notice)


class SlowCancelConnection:
    """Stands for a psycopg connection whose cancel request takes a while to get through."""

    def __init__(self) -> None:
        self.sending = threading.Event()
        self.release = threading.Event()
        self.sent = 0

    def cancel_safe(self, timeout: float) -> None:
        self.sending.set()
        assert self.release.wait(5)
        self.sent += 1


def _idle_worker(conn: SlowCancelConnection) -> Worker:
    worker = Worker(
        endpoint="rw",
        kind="write",
        index=0,
        params="",
        config=WorkloadConfig(run_id="r"),
        record=lambda row: None,
        tracker=StateTracker(["rw"], lambda line: None),
        stop=threading.Event(),
    )
    worker.conn = conn  # type: ignore[assignment]
    return worker


def test_the_next_operation_waits_for_a_cancel_on_its_way() -> None:
    """A cancel overtaken by the end of its operation must not land in the next one."""
    conn = SlowCancelConnection()
    worker = _idle_worker(conn)
    worker._begin()
    since = worker.busy_since
    cancel = threading.Thread(target=worker.cancel, args=(since,))
    cancel.start()
    assert conn.sending.wait(5)
    worker.busy_since = 0.0  # the operation ends while the request is on its way
    nxt = threading.Thread(target=worker._begin)
    nxt.start()
    nxt.join(0.3)
    assert nxt.is_alive(), "the next operation started before the cancel request was sent"
    conn.release.set()
    nxt.join(5)
    cancel.join(5)
    assert not nxt.is_alive()
    assert conn.sent == 1
    assert worker.busy_since > since


def test_a_cancel_for_an_operation_that_has_ended_is_not_sent() -> None:
    conn = SlowCancelConnection()
    conn.release.set()
    worker = _idle_worker(conn)
    worker._begin()
    since = worker.busy_since
    worker.busy_since = 0.0
    worker.cancel(since)
    worker._begin()
    worker.cancel(since)
    assert conn.sent == 0
    worker.cancel(worker.busy_since)
    assert conn.sent == 1


def _write_record(outcome: str, error: str) -> Record:
    return Record(
        time=0.0, endpoint="rw", kind="write", worker=0, latency_ms=1.0, outcome=outcome,
        error_class="", server="", role="", timeline="", id="x", seq="1", lsn="", seen="",
        error=error,
    )  # fmt: skip


def test_only_acknowledged_writes_count_as_committed_locally_only() -> None:
    assert _write_record(OK, SYNC_CANCELLED).committed_locally_only
    assert not _write_record(OK, "").committed_locally_only
    assert not _write_record(IN_DOUBT, SYNC_CANCELLED).committed_locally_only
    assert not _write_record(FAILED, SYNC_CANCELLED).committed_locally_only


# -- a real primary whose standby never answers ----------------------------------------


@pytest.fixture(scope="module")
def sync_pg() -> Iterator[LocalPostgres]:
    """A server of its own: its commits are made to wait for a standby that never comes."""
    with LocalPostgres(settings={"fsync": "off"}) as server:
        yield server


def _require_standby(server: LocalPostgres, name: str) -> None:
    # ALTER SYSTEM and a reload write no WAL, so they never wait for the standby themselves.
    if name:
        server.superuser_sql(f"alter system set synchronous_standby_names = '{name}'")
    else:
        server.superuser_sql("alter system reset synchronous_standby_names")
    server.superuser_sql("select pg_reload_conf()")


def _cancel_waiting_writers(server: LocalPostgres, timeout: float = 10) -> None:
    """Once every writer waits for the standby, cancel their waits."""
    deadline = time.monotonic() + timeout
    while len(server.superuser_sql(WAITING_WRITERS).split()) < WRITERS:
        if time.monotonic() > deadline:
            raise AssertionError("the writers never waited for the synchronous standby")
        time.sleep(0.05)
    server.superuser_sql(f"select pg_cancel_backend(pid) from ({WAITING_WRITERS}) w")


@pytest.fixture(scope="module")
def cancelled_run(sync_pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run whose writers had their synchronous replication wait cancelled ROUNDS times."""
    with psycopg.connect(sync_pg.dsn(), autocommit=True) as conn:
        assert ensure_schema(conn, "pgchaos_ledger")
    out = tmp_path_factory.mktemp("sync-cancel") / "run"
    load = start_cli(
        out.parent, "load", "--rw", sync_pg.dsn(), "--ro", sync_pg.dsn(),
        "--writers", str(WRITERS), "--readers", "0", "--rw-readers", "0", "--rate", "20",
        "--duration", "6", "--out", str(out), "-q",
    )  # fmt: skip
    try:
        wait_for_records(out, minimum=10)
        _require_standby(sync_pg, "nobody")
        for _ in range(ROUNDS):
            _cancel_waiting_writers(sync_pg)
    finally:
        _require_standby(sync_pg, "")
        _, stderr = load.communicate(timeout=30)
    assert load.returncode == 0, stderr
    return out


@pytest.mark.postgres
@pytest.mark.slow
def test_a_cancelled_sync_wait_is_acknowledged_with_the_marker(cancelled_run: Path) -> None:
    writes = [r for r in records(cancelled_run) if r["kind"] == "write"]
    marked = [r for r in writes if r["error"] == SYNC_CANCELLED]
    assert len(marked) == ROUNDS * WRITERS
    assert {(r["outcome"], r["error_class"]) for r in marked} == {(OK, "")}
    plain = [r for r in writes if r["outcome"] == OK and r["error"] == ""]
    assert len(plain) >= 10, "the writes before and after the standby was required are plain"


def _verify(cli: CliRunner, run_dir: Path, dsn: str) -> tuple[int, str, dict[str, object]]:
    result = cli("verify", str(run_dir), "--dsn", dsn)
    return result.returncode, result.stdout, read_json(run_dir / "verify.json")


@pytest.mark.postgres
@pytest.mark.slow
def test_verify_tells_lost_writes_after_a_sync_cancel_apart(
    cancelled_run: Path, sync_pg: LocalPostgres, cli: CliRunner
) -> None:
    acked = [r for r in records(cancelled_run) if r["kind"] == "write" and r["outcome"] == OK]
    marked = [r["id"] for r in acked if r["error"] == SYNC_CANCELLED]
    plain = [r["id"] for r in acked if r["error"] == ""]

    code, stdout, verified = _verify(cli, cancelled_run, sync_pg.dsn())
    assert code == 0, stdout
    assert verified["acknowledged_unreplicated"] == len(marked)
    assert (verified["lost"], verified["lost_after_sync_cancel"], verified["lost_other"]) == (
        0,
        0,
        0,
    )
    assert f"{len(marked)} acknowledged writes committed locally only" in stdout

    # The promoted standby never had the locally committed row: gone, like an ordinary loss.
    sync_pg.superuser_sql(f"delete from pgchaos_ledger where id in ('{marked[0]}', '{plain[5]}')")
    read_only = sync_pg.dsn(options="-c default_transaction_read_only=on")
    for dsn, method in ((sync_pg.dsn(), "copy+join"), (read_only, "batched lookup")):
        code, stdout, verified = _verify(cli, cancelled_run, dsn)
        assert code == 1, stdout
        assert str(verified["method"]).startswith(method)
        assert verified["lost"] == 2
        assert verified["lost_after_sync_cancel"] == 1
        assert verified["lost_other"] == 1
        assert verified["acknowledged_unreplicated"] == len(marked)
        assert "1 of them LOST; 1 other acknowledged writes LOST" in stdout

    result = cli("report", str(cancelled_run))
    assert result.returncode == 0, result.stderr
    summary = read_json(cancelled_run / "summary.json")["verify"]
    assert summary["lost"] == 2
    assert summary["lost_after_sync_cancel"] == 1
    assert summary["acknowledged_unreplicated"] == len(marked)
    html = (cancelled_run / "report.html").read_text()
    assert "(1 of them after a cancelled synchronous replication wait)" in html
    assert f"{len(marked)} writes were acknowledged after their wait" in html
    assert "verify: 2 lost (1 of them after a cancelled synchronous replication wait)" in (
        result.stdout
    )


@pytest.mark.postgres
@pytest.mark.slow
def test_a_client_side_query_timeout_makes_the_leak_itself(
    sync_pg: LocalPostgres, tmp_path: Path
) -> None:
    """--cancel-after sends the cancel an application's query timeout would: no operator needed."""
    out = tmp_path / "run"
    load = start_cli(
        tmp_path, "load", "--rw", sync_pg.dsn(), "--ro", sync_pg.dsn(),
        "--writers", str(WRITERS), "--readers", "0", "--rw-readers", "0", "--rate", "20",
        "--duration", "5", "--cancel-after", "0.5", "--out", str(out), "-q",
    )  # fmt: skip
    try:
        wait_for_records(out, minimum=10)
        _require_standby(sync_pg, "nobody")
        time.sleep(2.5)
    finally:
        _require_standby(sync_pg, "")
        _, stderr = load.communicate(timeout=30)
    assert load.returncode == 0, stderr
    writes = [r for r in records(out) if r["kind"] == "write"]
    marked = [r for r in writes if r["error"] == SYNC_CANCELLED]
    # About one cancelled commit per writer every half second while the standby was required.
    assert len(marked) >= 2 * WRITERS
    assert all(float(r["latency_ms"]) >= 500 for r in marked)
    assert not [r for r in writes if r["outcome"] == IN_DOUBT], "a cancel keeps the connection"
    assert read_json(out / "run.json")["options"]["cancel_after"] == 0.5
