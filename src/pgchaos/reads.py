"""What the readers saw: staleness, non-monotonic reads, read-your-writes, seen-then-lost.

Every successful read records, for each writer of the run, the highest ``seq`` it could
see, all in one statement and so one snapshot.  A writer commits its rows one after the
other, so on any one history, seeing its row *n* means seeing every row it had
acknowledged before *n*.  From that and the writers' own records:

staleness
    of a read: from the acknowledgement of the oldest write it did not see, among the
    writes acknowledged before the read was sent, to the moment it was sent; 0 when it
    saw all of them.  A replica that replays 2 s late serves reads 2 s stale.
non-monotonic read
    a read that saw less of some writer than an earlier read of the same reader (one
    worker, across its reconnects and whatever servers answered) had seen.
read-your-writes violation
    a read through the write port, answered by a primary, that did not see a write
    acknowledged before it was sent: a lost write or two primaries.
seen-then-lost
    an acknowledged write that is absent at the end (``pgchaos verify``) although a read
    saw it: visible, so an application may have acted on it.  A read counts as having
    seen write *n* of a writer when it saw *n* or later of that writer before the writer
    sent anything to another primary term (server, timeline); after that the writer's
    later rows on the new history say nothing about *n*, so such reads are not counted.

Writes count as acknowledged before a read only when they completed more than
:data:`MARGIN_S` before it started: both times are taken by the client around its calls.

With a cut-off time (``pgchaos verify --until T``: the data was restored to its state
before T) the database may legitimately go back to T: the writes acknowledged at or after T
may be absent, and a read sent at or after T may miss them or see less than an earlier read
did.  Only the reads sent before T are then checked for read-your-writes and monotonicity,
against the writes acknowledged before T; seen-then-lost takes the lost writes verify gives
it (acknowledged before T) and every read that saw them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pgchaos import rundir
from pgchaos.ledger import OK, RECORDS_FILE, RW_READS, read_records

MARGIN_S = 0.002
MAX_EXAMPLES = 20

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass
class WriterLog:
    """One writer's acknowledged writes in seq order, and every write it sent."""

    seq: IntArray
    ack: FloatArray
    term: list[tuple[str, str]]
    sent_seq: IntArray
    sent_at: FloatArray
    sent_term: list[tuple[str, str]]
    # for each sent write, the index of the next one sent to another term (len: none)
    next_term: IntArray


@dataclass
class Reads:
    """The successful reads of one endpoint that carry what they saw, in start order."""

    start: FloatArray
    worker: IntArray
    server: list[str]
    seen: IntArray  # reads x writers


@dataclass
class ReadData:
    start: float
    records: int = 0
    writers: dict[int, WriterLog] = field(default_factory=dict)
    reads: dict[str, Reads] = field(default_factory=dict)


def load(run_dir: Path, start: float) -> ReadData:
    acked: dict[int, list[tuple[int, float, tuple[str, str]]]] = {}
    sent: dict[int, list[tuple[int, float, tuple[str, str]]]] = {}
    reads: dict[str, list[tuple[float, int, str, tuple[int, ...]]]] = {}
    count = 0
    for rec in read_records(run_dir):
        count += 1
        if rec.kind == "write" and rec.endpoint == "rw" and rec.seq:
            term = (rec.server, rec.timeline)
            sent.setdefault(rec.worker, []).append((int(rec.seq), rec.time, term))
            if rec.outcome == OK:
                acked.setdefault(rec.worker, []).append((int(rec.seq), rec.end, term))
        elif rec.kind == "read" and rec.outcome == OK and rec.seen:
            reads.setdefault(rec.endpoint, []).append(
                (rec.time, rec.worker, rec.server, rec.seen_seqs())
            )
    data = ReadData(start=start, records=count)
    for writer in sorted(set(acked) | set(sent)):
        done = sorted(acked.get(writer, []))
        tried = sorted(sent.get(writer, []))
        data.writers[writer] = WriterLog(
            seq=np.array([s for s, _, _ in done], dtype=np.int64),
            ack=np.array([t for _, t, _ in done], dtype=np.float64),
            term=[term for _, _, term in done],
            sent_seq=np.array([s for s, _, _ in tried], dtype=np.int64),
            sent_at=np.array([t for _, t, _ in tried], dtype=np.float64),
            sent_term=[term for _, _, term in tried],
            next_term=_next_term([term for _, _, term in tried]),
        )
    for endpoint, found in reads.items():
        width = max(len(r[3]) for r in found)
        # A run's reads all look at the same writers; anything else is not comparable.
        rows = sorted((r for r in found if len(r[3]) == width), key=lambda r: r[0])
        data.reads[endpoint] = Reads(
            start=np.array([r[0] for r in rows], dtype=np.float64),
            worker=np.array([r[1] for r in rows], dtype=np.int64),
            server=[r[2] for r in rows],
            seen=np.array([r[3] for r in rows], dtype=np.int64).reshape(len(rows), width),
        )
    return data


def _next_term(terms: list[tuple[str, str]]) -> IntArray:
    result = np.full(len(terms), len(terms), dtype=np.int64)
    for i in range(len(terms) - 2, -1, -1):
        result[i] = i + 1 if terms[i + 1] != terms[i] else result[i + 1]
    return result


def _oldest_missed(data: ReadData, reads: Reads) -> tuple[FloatArray, IntArray, IntArray]:
    """Per read: acknowledgement time of the oldest write it missed (NaN: none), writer, seq."""
    n = len(reads.start)
    oldest = np.full(n, np.nan)
    writer_of = np.full(n, -1, dtype=np.int64)
    seq_of = np.zeros(n, dtype=np.int64)
    for writer, log in data.writers.items():
        if writer >= reads.seen.shape[1] or not len(log.seq):
            continue
        # The first acknowledged write above what the read saw is the oldest it missed.
        nxt = np.searchsorted(log.seq, reads.seen[:, writer], side="right")
        has = nxt < len(log.seq)
        ack = np.full(n, np.nan)
        ack[has] = log.ack[nxt[has]]
        missed = has & (ack < reads.start - MARGIN_S)
        older = missed & ~(oldest <= ack)  # NaN-safe: take it when nothing older is known
        oldest[older] = ack[older]
        writer_of[older] = writer
        seq_of[older] = log.seq[nxt[older]]
    return oldest, writer_of, seq_of


def staleness(data: ReadData, endpoint: str) -> FloatArray:
    """Seconds each read of the endpoint was behind (see the module docstring)."""
    reads = data.reads.get(endpoint)
    if reads is None:
        return np.zeros(0)
    oldest, _, _ = _oldest_missed(data, reads)
    return np.where(np.isnan(oldest), 0.0, reads.start - oldest)


def _percentiles(values: FloatArray) -> dict[str, Any]:
    if not len(values):
        return {"reads": 0, "p50": None, "p99": None, "max": None, "stale_reads": 0}
    return {
        "reads": len(values),
        "p50": round(float(np.percentile(values, 50)), 3),
        "p99": round(float(np.percentile(values, 99)), 3),
        "max": round(float(values.max()), 3),
        "stale_reads": int((values > 0).sum()),
    }


def non_monotonic(data: ReadData, endpoint: str) -> dict[str, Any]:
    reads = data.reads.get(endpoint)
    found: dict[str, Any] = {"count": 0, "readers": 0, "examples": []}
    if reads is None:
        return found
    for worker in np.unique(reads.worker):
        rows = np.flatnonzero(reads.worker == worker)
        seen = reads.seen[rows]
        best = np.maximum.accumulate(seen, axis=0)
        back = np.zeros(len(rows), dtype=bool)
        back[1:] = (seen[1:] < best[:-1]).any(axis=1)
        if not back.any():
            continue
        found["count"] += int(back.sum())
        found["readers"] += 1
        for i in np.flatnonzero(back):
            if len(found["examples"]) >= MAX_EXAMPLES:
                break
            writer = int(np.argmax(best[i - 1] - seen[i]))
            earlier = rows[int(np.argmax(seen[:i, writer]))]
            later = rows[i]
            found["examples"].append(
                {
                    "reader": f"{endpoint}-{int(worker)}",
                    "writer": writer,
                    "saw_seq": int(best[i - 1, writer]),
                    "on": reads.server[earlier],
                    "at": rundir.iso(float(reads.start[earlier])),
                    "later_saw_seq": int(seen[i, writer]),
                    "later_on": reads.server[later],
                    "later_at": rundir.iso(float(reads.start[later])),
                    "later_at_s": round(float(reads.start[later]) - data.start, 3),
                }
            )
    return found


def _without(data: ReadData, lost: Iterable[tuple[int, int]]) -> ReadData:
    """The same run with the given writes (writer, seq) taken out of the acknowledged ones."""
    gone: dict[int, list[int]] = {}
    for writer, seq in lost:
        gone.setdefault(writer, []).append(seq)
    writers = {}
    for writer, log in data.writers.items():
        keep = ~np.isin(log.seq, gone.get(writer, []))
        writers[writer] = replace(log, seq=log.seq[keep], ack=log.ack[keep])
    return replace(data, writers=writers)


def read_your_writes(data: ReadData, lost: Iterable[tuple[int, int]] = ()) -> dict[str, Any]:
    """Reads through the write port that missed an acknowledged write (must be none).

    ``of_lost_writes`` counts those whose missed write (writer, seq) is among ``lost``: a
    symptom of that loss, judged with it, rather than a primary serving an old state.
    """
    reads = data.reads.get(RW_READS)
    found: dict[str, Any] = {"count": 0, "of_lost_writes": 0, "examples": []}
    if reads is None:
        return found
    oldest, writer_of, seq_of = _oldest_missed(data, reads)
    bad = np.flatnonzero(~np.isnan(oldest))
    found["count"] = len(bad)
    # A read excused by a lost write must miss nothing else: asked again as if the lost
    # writes had never been acknowledged, it must come out clean.
    still, _, _ = _oldest_missed(_without(data, lost), reads)
    found["of_lost_writes"] = int(len(bad) - np.count_nonzero(~np.isnan(still)))
    for i in bad[:MAX_EXAMPLES]:
        found["examples"].append(
            {
                "at": rundir.iso(float(reads.start[i])),
                "at_s": round(float(reads.start[i]) - data.start, 3),
                "server": reads.server[i],
                "writer": int(writer_of[i]),
                "missed_seq": int(seq_of[i]),
                "acknowledged_s_before": round(float(reads.start[i] - oldest[i]), 3),
            }
        )
    return found


def seen_then_lost(data: ReadData, lost: Iterable[tuple[int, int]]) -> dict[str, Any]:
    """Of the lost writes (writer, seq), those some read saw (see the module docstring)."""
    found: dict[str, Any] = {"count": 0, "examples": []}
    for writer, seq in sorted(set(lost)):
        log = data.writers.get(writer)
        if log is None:
            continue
        at = np.searchsorted(log.seq, seq)
        if at >= len(log.seq) or log.seq[at] != seq:
            continue
        term = log.term[at]
        horizon = _moved_on(log, seq, term)
        witness = _first_witness(data, writer, seq, horizon)
        if witness is None:
            continue
        found["count"] += 1
        if len(found["examples"]) < MAX_EXAMPLES:
            endpoint, start, server = witness
            found["examples"].append(
                {
                    "writer": writer,
                    "seq": seq,
                    "acknowledged_by": term[0],
                    "acknowledged_at": rundir.iso(float(log.ack[at])),
                    "seen_by": endpoint,
                    "seen_on": server,
                    "seen_at": rundir.iso(start),
                }
            )
    return found


def _moved_on(log: WriterLog, seq: int, term: tuple[str, str]) -> float:
    """When the writer first sent a later write to another term than ``term`` (inf: never)."""
    # Writes are sent in seq order, so the first such write in seq order is the earliest.
    i = int(np.searchsorted(log.sent_seq, seq, side="right"))
    if i < len(log.sent_seq) and log.sent_term[i] == term:
        i = int(log.next_term[i])
    return float(log.sent_at[i]) if i < len(log.sent_seq) else np.inf


def _first_witness(
    data: ReadData, writer: int, seq: int, horizon: float
) -> tuple[str, float, str] | None:
    best: tuple[str, float, str] | None = None
    for endpoint, reads in data.reads.items():
        if writer >= reads.seen.shape[1]:
            continue
        hits = np.flatnonzero((reads.seen[:, writer] >= seq) & (reads.start < horizon))
        if len(hits) and (best is None or reads.start[hits[0]] < best[1]):
            best = (endpoint, float(reads.start[hits[0]]), reads.server[hits[0]])
    return best


def before(data: ReadData, until: float) -> ReadData:
    """The run as far as it must hold after a restore to before ``until``: the writes
    acknowledged before it, and the reads sent before it."""
    writers = {}
    for writer, log in data.writers.items():
        keep = log.ack < until
        writers[writer] = replace(
            log,
            seq=log.seq[keep],
            ack=log.ack[keep],
            term=[t for t, k in zip(log.term, keep.tolist(), strict=True) if k],
        )
    reads = {}
    for endpoint, r in data.reads.items():
        keep = r.start < until
        reads[endpoint] = Reads(
            start=r.start[keep],
            worker=r.worker[keep],
            server=[s for s, k in zip(r.server, keep.tolist(), strict=True) if k],
            seen=r.seen[keep],
        )
    return replace(data, writers=writers, reads=reads)


def analyze(
    data: ReadData, lost: Iterable[tuple[int, int]] = (), until: float | None = None
) -> dict[str, dict[str, Any]]:
    """Per reader endpoint: staleness figures and the anomalies found from records alone.

    ``lost`` (writer, seq), when verify knows it, tells the read-your-writes violations that
    missed a lost write apart (see read_your_writes).  ``until``, a cut-off time, limits the
    anomalies to the reads sent before it (see the module docstring); staleness is measured
    over every read.
    """
    checked = data if until is None else before(data, until)
    result = {}
    for endpoint in data.reads:
        figures: dict[str, Any] = {
            "staleness_s": _percentiles(staleness(data, endpoint)),
            "read_anomalies": {"non_monotonic": non_monotonic(checked, endpoint)},
        }
        if endpoint == RW_READS:
            figures["read_anomalies"]["read_your_writes"] = read_your_writes(checked, lost)
        result[endpoint] = figures
    return result


_cache: dict[tuple[str, int, int], ReadData] = {}


def cached(run_dir: Path, start: float) -> ReadData:
    """load(), once per version of records.csv (the report asks for it more than once)."""
    stat = (run_dir / RECORDS_FILE).stat()
    key = (str(run_dir.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _cache:
        _cache.clear()
        _cache[key] = load(run_dir, start)
    return _cache[key]


def staleness_series(data: Any) -> dict[str, tuple[FloatArray, FloatArray]]:
    """For plots: per reader endpoint, (seconds since run start, staleness in seconds)."""
    reads = cached(data.run_dir, data.start)
    return {
        endpoint: (r.start - data.start, staleness(reads, endpoint))
        for endpoint, r in reads.reads.items()
    }
