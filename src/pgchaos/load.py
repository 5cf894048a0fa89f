"""``pgchaos load``: wire endpoints, workers, ledger and console together for one run."""

from __future__ import annotations

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
from pgchaos.ledger import RECORDS_FILE, LedgerWriter
from pgchaos.state import StateTracker
from pgchaos.status import StatusLine
from pgchaos.workload import Probe, Watchdog, Worker, WorkloadConfig, ensure_schema


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


def _preflight(params: str, what: str, dsn: str, table: str | None) -> bool:
    """Connect once so a typo or a dead endpoint fails now, with exit 2, not after the fact."""
    try:
        with psycopg.connect(params, autocommit=True) as conn:
            return ensure_schema(conn, table) if table else True
    except psycopg.Error as exc:
        raise UsageError(f"cannot use {what} endpoint {redact(dsn)}: {first_line(exc)}") from None


def _check_options(opts: LoadOptions) -> None:
    if opts.writers < 0 or opts.readers < 0 or opts.writers + opts.readers == 0:
        raise UsageError("need at least one writer or reader (--writers/--readers)")
    if opts.rate < 0 or opts.duration < 0:
        raise UsageError("--rate and --duration must not be negative")
    if opts.connect_timeout <= 0 or opts.statement_timeout <= 0 or opts.max_backoff <= 0:
        raise UsageError("timeouts and --max-backoff must be positive")


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
            "rate_per_worker": opts.rate,
            "table": opts.table,
            "connect_timeout": opts.connect_timeout,
            "statement_timeout": opts.statement_timeout,
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
    writable = True
    if opts.writers:
        writable = _preflight(rw_params, "rw", endpoints.rw, opts.table)
    if opts.readers:
        _preflight(ro_params, "ro", endpoints.ro, None)

    pid_file = Path(opts.pid_file) if opts.pid_file else None
    if pid_file is not None:
        _write_pid_file(pid_file)
    try:
        return _run(opts, endpoints, out, rw_params, ro_params, writable)
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)


def _run(
    opts: LoadOptions,
    endpoints: Endpoints,
    out: Path,
    rw_params: str,
    ro_params: str,
    writable: bool,
) -> int:
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
    active = [name for name, n in (("rw", opts.writers), ("ro", opts.readers)) if n]
    tracker = StateTracker(active, console.line)
    config = WorkloadConfig(
        run_id=run_id,
        table=opts.table,
        rate=opts.rate,
        max_backoff=opts.max_backoff,
        statement_timeout=opts.statement_timeout,
    )
    probe = Probe()
    workers = [
        Worker(
            endpoint=endpoint,
            kind=kind,
            index=i,
            params=p,
            config=config,
            record=ledger.put,
            tracker=tracker,
            probe=probe,
            stop=stop,
        )
        for endpoint, kind, count, p in (
            ("rw", "write", opts.writers, rw_params),
            ("ro", "read", opts.readers, ro_params),
        )
        for i in range(count)
    ]
    console.line(
        f"run {run_dir}: {opts.writers} writers on {redact(endpoints.rw)}, "
        f"{opts.readers} readers on {redact(endpoints.ro)}"
    )
    if opts.writers and not writable:
        console.line(f"rw: table {opts.table} is missing and cannot be created; writes will fail")

    status = StatusLine(workers, tracker, ledger, started, opts.duration)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    interrupted = False
    try:
        for worker in workers:
            worker.start()
        watchdog = Watchdog(workers, config.op_timeout, stop)
        watchdog.start()
        console.start_status(status.render)
        deadline = started + opts.duration if opts.duration else None
        while deadline is None or time.time() < deadline:
            remaining = 0.5 if deadline is None else min(0.5, deadline - time.time())
            if remaining > 0:
                time.sleep(remaining)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # A second Ctrl-C during shutdown must not cost the records still queued.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        stop.set()
        console.stop_status()
        for worker in workers:
            worker.join(timeout=config.op_timeout + opts.connect_timeout + 2)
        ledger.close()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
        ended = time.time()
        meta.update(
            status="interrupted" if interrupted else "finished",
            ended_at=rundir.iso(ended),
            counts={
                "records": ledger.count,
                "ok": sum(w.ok for w in workers),
                "errors": sum(w.errors for w in workers),
            },
        )
        rundir.write_json(run_dir / rundir.RUN_FILE, meta)
        console.line(
            f"done: {ledger.count} records in {ended - started:.1f} s "
            f"({ledger.count / max(ended - started, 1e-9):.0f}/s), "
            f"{meta['counts']['errors']} errors -> {run_dir}"
        )
        console.close()
    if ledger.error is not None:
        raise UsageError(f"writing {run_dir / RECORDS_FILE} failed: {ledger.error}")
    return 0


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
