"""``pgchaos load``: wire endpoints, workers, ledger and console together for one run."""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

from pgchaos import __version__, rundir
from pgchaos.classify import first_line
from pgchaos.console import Console
from pgchaos.dsn import Endpoints, hardened, redact, resolve_endpoints
from pgchaos.errors import UsageError
from pgchaos.ledger import RECORDS_FILE, RW_READS, LedgerWriter
from pgchaos.state import StateTracker
from pgchaos.status import StatusLine
from pgchaos.workload import PAYLOAD_KIND, Watchdog, Worker, WorkloadConfig, connect, ensure_schema


@dataclass(frozen=True)
class LoadOptions:
    rw: str | None
    ro: str | None
    env_file: str | None
    out: str | None
    duration: float
    writers: int
    readers: int
    rate: float
    table: str
    connect_timeout: float
    statement_timeout: float
    max_backoff: float
    quiet: bool
    pid_file: str | None = None
    # Readers on the write port: what they read is checked for read-your-writes.
    rw_readers: int = 1
    # A client-side query timeout: a cancel request after this many seconds (None: never).
    cancel_after: float | None = None
    # False through a transaction pooler without prepared statements (WorkloadConfig.prepare).
    prepare: bool = True


def _preflight(params: str, what: str, dsn: str, table: str | None, *, prepare: bool) -> bool:
    """Connect once so a typo or a dead endpoint fails now, with exit 2, not after the fact."""
    try:
        # Through the same pooler as the workers: the same rule on prepared statements.
        with connect(params, prepare=prepare) as conn:
            return ensure_schema(conn, table) if table else True
    except psycopg.Error as exc:
        raise UsageError(f"cannot use {what} endpoint {redact(dsn)}: {first_line(exc)}") from None


def _check_options(opts: LoadOptions) -> None:
    if opts.writers < 0 or opts.readers < 0 or opts.rw_readers < 0:
        raise UsageError("--writers, --readers and --rw-readers must not be negative")
    if opts.writers + opts.readers + opts.rw_readers == 0:
        raise UsageError("need at least one writer or reader (--writers/--readers/--rw-readers)")
    if opts.rate < 0 or opts.duration < 0:
        raise UsageError("--rate and --duration must not be negative")
    if opts.connect_timeout <= 0 or opts.statement_timeout <= 0 or opts.max_backoff <= 0:
        raise UsageError("timeouts and --max-backoff must be positive")
    if opts.cancel_after is not None and opts.cancel_after <= 0:
        raise UsageError("--cancel-after must be positive")


def _metadata(
    opts: LoadOptions, endpoints: Endpoints, run_id: str, started: float
) -> dict[str, Any]:
    """run.json at the start of a run; passwords never leave the process."""
    return {
        "tool": "pgchaos",
        "version": __version__,
        "run_id": run_id,
        "status": "running",
        "started_at": rundir.iso(started),
        "ended_at": None,
        "endpoints": {"rw": redact(endpoints.rw), "ro": redact(endpoints.ro)},
        "env_file": endpoints.env_file,
        "options": {
            "duration": opts.duration,
            "writers": opts.writers,
            "readers": opts.readers,
            "rw_readers": opts.rw_readers,
            "rate_per_worker": opts.rate,
            "table": opts.table,
            "payload": PAYLOAD_KIND,
            "connect_timeout": opts.connect_timeout,
            "statement_timeout": opts.statement_timeout,
            "cancel_after": opts.cancel_after,
            "prepare": opts.prepare,
            "max_backoff": opts.max_backoff,
        },
        "records": RECORDS_FILE,
    }


def run_load(opts: LoadOptions) -> int:
    _check_options(opts)
    endpoints: Endpoints = resolve_endpoints(opts.rw, opts.ro, opts.env_file)
    out = Path(opts.out) if opts.out else rundir.default_out()
    rundir.check_out(out)

    def params(dsn: str, name: str) -> str:
        return hardened(
            dsn,
            connect_timeout=opts.connect_timeout,
            statement_timeout=opts.statement_timeout,
            application_name=f"pgchaos-{name}",
        )

    rw_params = params(endpoints.rw, "rw")
    ro_params = params(endpoints.ro, "ro")
    rwr_params = params(endpoints.rw, RW_READS)
    writable = True
    if opts.writers:
        writable = _preflight(rw_params, "rw", endpoints.rw, opts.table, prepare=opts.prepare)
    elif opts.rw_readers:
        _preflight(rw_params, "rw", endpoints.rw, None, prepare=opts.prepare)
    if opts.readers:
        _preflight(ro_params, "ro", endpoints.ro, None, prepare=opts.prepare)

    pid_file = Path(opts.pid_file) if opts.pid_file else None
    if pid_file is not None:
        _write_pid_file(pid_file)
    try:
        return _run(opts, endpoints, out, (rw_params, ro_params, rwr_params), writable)
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)


def _run(
    opts: LoadOptions,
    endpoints: Endpoints,
    out: Path,
    params: tuple[str, str, str],
    writable: bool,
) -> int:
    rw_params, ro_params, rwr_params = params
    run_dir = rundir.create(out)
    run_id = str(uuid.uuid4())
    started = time.time()
    meta = _metadata(opts, endpoints, run_id, started)
    rundir.write_json(run_dir / rundir.RUN_FILE, meta)
    (run_dir / rundir.EVENTS_FILE).touch()

    ledger = LedgerWriter(run_dir / RECORDS_FILE)
    ledger.start()
    stop = threading.Event()
    console = Console(quiet=opts.quiet, log_path=run_dir / "console.log")
    counts = (("rw", opts.writers), ("ro", opts.readers), (RW_READS, opts.rw_readers))
    active = [name for name, n in counts if n]
    tracker = StateTracker(active, console.line)
    config = WorkloadConfig(
        run_id=run_id,
        table=opts.table,
        rate=opts.rate,
        max_backoff=opts.max_backoff,
        statement_timeout=opts.statement_timeout,
        cancel_after=opts.cancel_after,
        writers=opts.writers,
        prepare=opts.prepare,
    )
    workers = [
        Worker(
            endpoint=endpoint,
            kind=kind,
            index=i,
            params=p,
            config=config,
            record=ledger.put,
            tracker=tracker,
            stop=stop,
        )
        for endpoint, kind, count, p in (
            ("rw", "write", opts.writers, rw_params),
            ("ro", "read", opts.readers, ro_params),
            (RW_READS, "read", opts.rw_readers, rwr_params),
        )
        for i in range(count)
    ]
    console.line(
        f"run {run_dir}: {opts.writers} writers on {redact(endpoints.rw)}, "
        f"{opts.readers} readers on {redact(endpoints.ro)}, "
        f"{opts.rw_readers} reading through the write port"
    )
    if opts.writers and not writable:
        console.line(f"rw: table {opts.table} is missing and cannot be created; writes will fail")

    status = StatusLine(workers, tracker, ledger, started, opts.duration)
    # SIGINT too: a shell script that starts us with & leaves SIGINT ignored, and Python
    # then installs no handler of its own.  SIGHUP: a closed terminal ends the run cleanly.
    stopping = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in stopping}
    interrupted = False
    try:
        for worker in workers:
            worker.start()
        watchdog = Watchdog(workers, config.op_timeout, stop, config.cancel_after)
        watchdog.start()
        console.start_status(status.render)
        deadline = started + opts.duration if opts.duration else None
        while deadline is None or time.time() < deadline:
            remaining = 0.5 if deadline is None else min(0.5, deadline - time.time())
            if remaining > 0 and ledger.failed.wait(remaining):
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # A second Ctrl-C during shutdown must not cost the records still queued.
        for sig in stopping:
            signal.signal(sig, signal.SIG_IGN)
        stop.set()
        console.stop_status()
        for worker in workers:
            worker.join(timeout=config.op_timeout + opts.connect_timeout + 2)
        ledger.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        ended = time.time()
        if ledger.error is not None:
            meta["failure"] = _ledger_failure(ledger.error)
        meta.update(
            status="failed" if ledger.error else "interrupted" if interrupted else "finished",
            ended_at=rundir.iso(ended),
            counts={
                "records": ledger.count,
                "ok": sum(w.ok for w in workers),
                "errors": sum(w.errors for w in workers),
            },
        )
        try:
            rundir.write_json(run_dir / rundir.RUN_FILE, meta)
        except OSError as exc:
            # run.json keeps saying "running": verify refuses it like a crashed run.
            console.line(f"cannot write {run_dir / rundir.RUN_FILE}: {exc.strerror or exc}")
        console.line(
            f"done: {ledger.count} records in {ended - started:.1f} s "
            f"({ledger.count / max(ended - started, 1e-9):.0f}/s), "
            f"{meta['counts']['errors']} errors -> {run_dir}"
        )
        console.close()
    if ledger.error is not None:
        raise UsageError(
            f"writing {run_dir / RECORDS_FILE} failed ({_ledger_failure(ledger.error)}): "
            "the run stopped at once; pgchaos verify --allow-incomplete counts the writes "
            "the server has that the ledger does not"
        )
    return 0


def _ledger_failure(exc: OSError) -> str:
    return "disk full" if exc.errno == errno.ENOSPC else str(exc.strerror or exc)


def _write_pid_file(path: Path) -> None:
    """Our pid, for playbooks that stop a background run with SIGINT (removed at the end)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(f"{os.getpid()}\n", encoding="ascii")
        tmp.replace(path)
    except OSError as exc:
        raise UsageError(f"--pid-file {path}: cannot write: {exc.strerror or exc}") from None


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
