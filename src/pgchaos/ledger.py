"""Streaming operation records to ``records.csv`` and reading them back.

Workers hand finished records to a queue; one thread writes them, so a slow
disk never stalls the workload and memory stays flat however long the run.
"""

from __future__ import annotations

import csv
import os
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pgchaos.errors import UsageError

RECORDS_FILE = "records.csv"

FIELDS = (
    "time",
    "endpoint",
    "kind",
    "worker",
    "latency_ms",
    "outcome",
    "error_class",
    "server",
    "role",
    "timeline",
    "id",
    "seq",
    "lsn",
    "seen",
    "error",
)
# Run folders written before reads were checked: ``lag_ms`` where ``lsn``/``seen`` are now.
LEGACY_FIELDS = (*FIELDS[:12], "lag_ms", FIELDS[-1])

# The endpoint of the readers on the write port (checked for read-your-writes).
RW_READS = "rwr"

OK = "ok"
FAILED = "failed"
IN_DOUBT = "in_doubt"

# The error column of an acknowledged write whose wait for the synchronous standby was
# cancelled: PostgreSQL still reports success, but only the primary holds the row, so a
# failover can lose it.  A marker rather than a new column keeps old ledgers readable.
SYNC_CANCELLED = "sync wait cancelled: committed locally only"

# A record as the workers produce it: a plain tuple in FIELDS order, because
# building one per operation has to be cheap.
Row = tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Record:
    time: float
    endpoint: str
    kind: str
    worker: int
    latency_ms: float
    outcome: str
    error_class: str
    server: str
    role: str
    timeline: str
    id: str
    seq: str
    # On reads: the server's WAL position (replay position on a replica), and the highest
    # seq of each writer of the run that the read could see ("" on other records).
    lsn: str
    seen: str
    error: str

    def seen_seqs(self) -> tuple[int, ...]:
        return tuple(int(v) for v in self.seen.split()) if self.seen else ()

    @property
    def end(self) -> float:
        return self.time + self.latency_ms / 1000.0

    @property
    def committed_locally_only(self) -> bool:
        return self.outcome == OK and self.error.startswith(SYNC_CANCELLED)


_STOP = object()
# What bytes that are not UTF-8 become when decoded with "surrogateescape".
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


class LedgerWriter:
    """Owns records.csv; ``put`` is safe to call from any thread."""

    def __init__(self, path: Path, flush_interval: float = 0.2) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.count = 0
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._file: IO[str] = path.open("x", encoding="utf-8", newline="", buffering=1 << 20)
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(FIELDS)
        self._file.flush()
        self._thread = threading.Thread(target=self._run, name="ledger", daemon=True)
        self.error: OSError | None = None
        # Set at the first write error: the run stops at once rather than go on unrecorded.
        self.failed = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def put(self, row: Row) -> None:
        self._queue.put(row)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        try:
            self._file.close()
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            self.error = exc
        self.failed.set()

    def _sync(self) -> None:
        # To the disk, not only to the kernel: a crash of the machine loses one interval.
        self._file.flush()
        os.fsync(self._file.fileno())

    def _run(self) -> None:
        last_flush = time.monotonic()
        get = self._queue.get
        writerow = self._csv.writerow
        stopping = False
        while not stopping:
            try:
                item = get(timeout=self.flush_interval)
            except queue.Empty:
                item = None
            batch: list[object] = [] if item is None else [item]
            # Drain what has piled up so one flush covers many records.
            while len(batch) < 5000:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if self.failed.is_set():
                # Keep draining so workers never block while the run stops; count
                # nothing more as recorded.
                stopping = stopping or any(row is _STOP for row in batch)
                continue
            try:
                for row in batch:
                    if row is _STOP:
                        stopping = True
                        continue
                    writerow(row)  # type: ignore[arg-type]
                    self.count += 1
                now = time.monotonic()
                if stopping or now - last_flush >= self.flush_interval:
                    self._sync()
                    last_flush = now
            except OSError as exc:
                self._fail(exc)


def read_records(run_dir: Path) -> Iterator[Record]:
    """Yield the records of a run; a truncated last line (a crash mid-write) is skipped."""
    path = run_dir / RECORDS_FILE
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise UsageError(f"{run_dir}: cannot read {RECORDS_FILE}: {exc.strerror or exc}") from None
    with handle:
        # Bytes that are not UTF-8 are kept as markers, so the line holding them is
        # reported like any other damaged line instead of ending the read.
        reader = csv.reader(raw.decode("utf-8", "surrogateescape") for raw in handle)
        header = next(reader, None)
        if header is None or tuple(header) not in (FIELDS, LEGACY_FIELDS):
            raise UsageError(f"{path}: not a pgchaos records file (unexpected header)")
        legacy = tuple(header) == LEGACY_FIELDS
        bad_line: int | None = None
        for lineno, row in enumerate(reader, 2):
            if bad_line is not None:
                # Only the very last line may be cut short by a crash.
                raise UsageError(f"{path}:{bad_line}: damaged record")
            try:
                if any(_NOT_UTF8.search(value) for value in row):
                    raise ValueError("not UTF-8")
                if len(row) != len(header):
                    raise ValueError("wrong number of fields")
                record = Record(
                    time=float(row[0]),
                    endpoint=row[1],
                    kind=row[2],
                    worker=int(row[3]),
                    latency_ms=float(row[4]),
                    outcome=row[5],
                    error_class=row[6],
                    server=row[7],
                    role=row[8],
                    timeline=row[9],
                    id=row[10],
                    seq=row[11],
                    lsn="" if legacy else row[12],
                    seen="" if legacy else row[13],
                    error=row[-1],
                )
                if record.seen:
                    record.seen_seqs()  # damaged if it does not parse
            except ValueError:
                bad_line = lineno
                continue
            yield record
