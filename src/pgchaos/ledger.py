"""Streaming operation records to ``records.csv`` and reading them back.

Workers hand finished records to a queue; one thread writes them, so a slow
disk never stalls the workload and memory stays flat however long the run.
"""

from __future__ import annotations

import csv
import queue
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
    "lag_ms",
    "error",
)

OK = "ok"
FAILED = "failed"
IN_DOUBT = "in_doubt"

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
    lag_ms: float | None
    error: str

    @property
    def end(self) -> float:
        return self.time + self.latency_ms / 1000.0


_STOP = object()


class LedgerWriter:
    """Owns records.csv; ``put`` is safe to call from any thread."""

    def __init__(self, path: Path, flush_interval: float = 0.5) -> None:
        self.path = path
        self.flush_interval = flush_interval
        self.count = 0
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._file: IO[str] = path.open("x", encoding="utf-8", newline="", buffering=1 << 20)
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(FIELDS)
        self._file.flush()
        self._thread = threading.Thread(target=self._run, name="ledger", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def put(self, row: Row) -> None:
        self._queue.put(row)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join()
        self._file.close()

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
            try:
                for row in batch:
                    if row is _STOP:
                        stopping = True
                        continue
                    writerow(row)  # type: ignore[arg-type]
                    self.count += 1
                now = time.monotonic()
                if stopping or now - last_flush >= self.flush_interval:
                    self._file.flush()
                    last_flush = now
            except OSError as exc:
                # Keep draining so workers never block, but remember the failure
                # so the run ends with a clear message instead of silently.
                self.error = exc


def _float(value: str) -> float | None:
    return float(value) if value else None


def read_records(run_dir: Path) -> Iterator[Record]:
    """Yield the records of a run; a truncated last line (a crash mid-write) is skipped."""
    path = run_dir / RECORDS_FILE
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"{run_dir}: cannot read {RECORDS_FILE}: {exc.strerror or exc}") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(header) != FIELDS:
            raise UsageError(f"{path}: not a pgchaos records file (unexpected header)")
        bad_line: int | None = None
        for lineno, row in enumerate(reader, 2):
            if bad_line is not None:
                # Only the very last line may be cut short by a crash.
                raise UsageError(f"{path}:{bad_line}: damaged record")
            try:
                if len(row) != len(FIELDS):
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
                    lag_ms=_float(row[12]),
                    error=row[13],
                )
            except ValueError:
                bad_line = lineno
                continue
            yield record
