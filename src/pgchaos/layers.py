"""Failover layers: where the write gap went, read from the logs ``pgchaos logs`` collected.

``pgchaos logs`` leaves ``RUN/logs/<host>/journal-*.txt``, journald output in
``-o short-iso-precise`` format (``2026-11-29T18:08:58.123456+00:00 pg2 patroni[812]: ...``).
Every journal file of every host is scanned for the lines below, whatever unit
it came from (PostgreSQL often logs through Patroni's stdout, HAProxy through
syslog).  The journal's own timestamp is used, never the one inside a message,
and the clocks of the client and the nodes are taken to agree.

Milestones, each the first matching line at or after the fault:

``fault``
    The first event of ``events.jsonl`` of kind ``fault`` (files written before
    events had a kind: see :func:`pgchaos.events.legacy_kind`).
``detection``
    Patroni noticed the leader is gone or a hand-over started: the first of
    :data:`DETECTION` on any host (including a lock acquisition, which
    detection cannot follow).
``lock_acquired``
    Patroni took the leader lock: :data:`LOCK_ACQUIRED`; its host is the new leader.
``promotion_done``
    PostgreSQL on the new leader (any host if the leader is unknown) said
    ``database system is ready to accept connections`` after a
    ``received promote request`` or ``selected new timeline ID`` line.
``haproxy_up``
    HAProxy marked the new leader UP (``Server <backend>/<server> is UP``),
    preferring the new leader's server name in a backend not named like a replica
    backend.
``first_ack``
    The end of the first rw unavailability window that ends after the fault (the
    acknowledged write that closed the write gap), else the first acknowledged
    write after the fault.

Layers run between consecutive milestones: lease expiry / detection (fault →
detection), election + promotion (detection → promotion_done), HAProxy detection
(promotion_done → haproxy_up) and client reconnect (haproxy_up → first_ack).  A
layer whose ends are missing has ``seconds: null`` and a ``reason``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgchaos import rundir
from pgchaos.events import FAULT, Event

LOGS_DIR = "logs"

# Patroni (ha.py run-cycle results and log messages, unchanged in wording from 3.x to 4.x).
LOCK_ACQUIRED = (
    re.compile(r"promoted self to leader by acquiring session lock"),
    re.compile(r"acquired session lock as a leader"),
    # the leader kept its lock and promotes its restarted PostgreSQL again (in place)
    re.compile(r"promoted self to leader because i had the session lock", re.I),
)
DETECTION = (
    re.compile(r"Lock owner: None; I am \S+"),  # the leader key is gone (expired or released)
    re.compile(r"Got response from \S+"),  # leader race: asking the other members
    re.compile(r"Leader key released"),  # the old leader handing over (stop, switchover)
    re.compile(r"(?:manual failover|switchover|failover): demoting myself"),
    re.compile(r"Demoting self \("),  # Demoting self (graceful|immediate|immediate-nolock)
    re.compile(r"demoted self because"),
    re.compile(r"demoting self because"),
    re.compile(r"Cleaning up failover key after acquiring leader lock"),
    # the leader's own PostgreSQL died and Patroni restarts it, keeping the lock
    re.compile(r"starting as readonly because i had the session lock", re.I),
    re.compile(r"starting primary after failure"),
    *LOCK_ACQUIRED,
)
PATRONI_PROMOTED = re.compile(r"cleared rewind state after becoming the leader")
LEADER_WITH_LOCK = re.compile(r"no action\.\s+I am \((\S+?)\),? the leader with the lock", re.I)
# PostgreSQL (startup.c / xlog.c / postmaster.c messages).
PG_PROMOTE = re.compile(r"received promote request|selected new timeline ID: \d+")
PG_READY = re.compile(r"database system is ready to accept connections")
# HAProxy health checks, through syslog ("haproxy[pid]: Server primary/pg2 is UP, reason: ...")
# or its own stderr ("[WARNING]  (12) : Server primary/pg2 is UP, ...").
HAPROXY_STATE = re.compile(r"\bServer ([^/\s]+)/(\S+?),? is (UP|DOWN)\b")

JOURNAL_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:[.,]\d+)?)(?P<tz>Z|[+-]\d\d:?\d\d)?"
    r"\s+\S+\s+(?P<ident>[^\s:\[]+)(?:\[\d+\])?:\s?(?P<msg>.*)$"
)

LAYERS = (
    ("lease expiry / detection", "fault", "detection"),
    ("election + promotion", "detection", "promotion_done"),
    ("HAProxy detection", "promotion_done", "haproxy_up"),
    ("client reconnect", "haproxy_up", "first_ack"),
)


@dataclass(frozen=True)
class LogLine:
    time: float
    host: str
    source: str  # the journal file name
    message: str


def parse_journal_time(stamp: str, tz: str | None) -> float:
    """A short-iso-precise timestamp; without an offset it is taken as UTC."""
    text = stamp.replace(",", ".")
    if tz and tz != "Z" and ":" not in tz:
        tz = f"{tz[:3]}:{tz[3:]}"
    parsed = datetime.fromisoformat(text + (tz if tz and tz != "Z" else ""))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_journal(text: str, host: str, source: str) -> list[LogLine]:
    """The lines of one journal file that carry a timestamp; the rest is skipped."""
    lines = []
    for raw in text.splitlines():
        match = JOURNAL_LINE.match(raw)
        if not match:
            continue
        try:
            when = parse_journal_time(match["ts"], match["tz"])
        except ValueError:
            continue
        lines.append(LogLine(when, host, source, f"{match['ident']}: {match['msg']}"))
    return lines


def read_logs(run_dir: Path) -> tuple[list[LogLine], list[str]]:
    """Every journal line of every host under RUN/logs, in time order, plus warnings."""
    logs = run_dir / LOGS_DIR
    lines: list[LogLine] = []
    warnings: list[str] = []
    if not logs.is_dir():
        return lines, warnings
    for host_dir in sorted(p for p in logs.iterdir() if p.is_dir()):
        for path in sorted(host_dir.glob("journal-*.txt")):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                warnings.append(f"{path}: unreadable ({exc.strerror or exc})")
                continue
            lines.extend(parse_journal(text, host_dir.name, path.name))
    lines.sort(key=lambda line: line.time)
    return lines, warnings


def find_fault(events: list[Event]) -> Event | None:
    """The first event of kind ``fault``: the failover the layers explain."""
    return next((event for event in events if event.kind == FAULT), None)


def _first(lines: Iterable[LogLine], patterns: Iterable[re.Pattern[str]]) -> LogLine | None:
    compiled = tuple(patterns)
    for line in lines:
        if any(p.search(line.message) for p in compiled):
            return line
    return None


def _milestone(line: LogLine, start: float, **extra: Any) -> dict[str, Any]:
    return {
        "time": rundir.iso(line.time),
        "at_s": round(line.time - start, 3),
        "epoch": line.time,
        "host": line.host,
        "source": line.source,
        "line": line.message[:300],
        **extra,
    }


def _promotion_done(after: list[LogLine], leader: str | None) -> LogLine | None:
    promoting: set[str] = set()
    for line in after:
        if leader is not None and line.host != leader:
            continue
        if PG_PROMOTE.search(line.message):
            promoting.add(line.host)
        elif line.host in promoting and PG_READY.search(line.message):
            return line
    return None


def _haproxy_up(after: list[LogLine], leader: str | None) -> tuple[LogLine, str, str] | None:
    best: tuple[int, LogLine, str, str] | None = None
    for line in after:
        match = HAPROXY_STATE.search(line.message)
        if not match or match[3] != "UP":
            continue
        backend, server = match[1], match[2]
        rank = (0 if server == leader else 2) + (1 if "replica" in backend.lower() else 0)
        if best is None or rank < best[0]:
            best = (rank, line, backend, server)
    return None if best is None else best[1:]


def analyze(
    run_dir: Path,
    start: float,
    events: list[Event],
    rw_windows: list[dict[str, Any]],
    ack_times: Iterable[float],
) -> dict[str, Any]:
    """Milestones and layers of the failover (see the module docstring); never raises on data."""
    warnings: list[str] = []
    milestones: dict[str, dict[str, Any] | None] = dict.fromkeys(
        ("fault", "detection", "lock_acquired", "promotion_done", "haproxy_up", "first_ack")
    )
    missing: dict[str, str] = {}
    fault = find_fault(events)
    if fault is None:
        missing["fault"] = "no event in events.jsonl"
        for key in milestones:
            missing.setdefault(key, "no fault to measure from")
    else:
        milestones["fault"] = {
            "time": rundir.iso(fault.time),
            "at_s": round(fault.time - start, 3),
            "epoch": fault.time,
            "action": fault.action,
            "target": fault.target,
        }
        lines, warnings = read_logs(run_dir)
        after = [line for line in lines if line.time >= fault.time]
        if not (run_dir / LOGS_DIR).is_dir():
            reason = "no logs collected (run pgchaos logs RUN)"
            for key in ("detection", "lock_acquired", "promotion_done", "haproxy_up"):
                missing[key] = reason
        else:
            _from_logs(after, start, milestones, missing)
        _first_ack(fault.time, start, rw_windows, ack_times, milestones, missing)
    layers = []
    # The latest milestone passed so far: a layer starts there when its own start
    # was logged later than it, so overlapping layers still add up to the gap.
    floor: tuple[str, float] | None = None
    for name, begin_key, end_key in LAYERS:
        begin, end = milestones[begin_key], milestones[end_key]
        layer: dict[str, Any] = {
            "layer": name,
            "from": begin_key,
            "to": end_key,
            "start": begin["time"] if begin else None,
            "end": end["time"] if end else None,
            "start_s": begin["at_s"] if begin else None,
            "end_s": end["at_s"] if end else None,
            "seconds": None,
            "reason": None,
            # the log line (or the write) that ended the layer
            "detail": (
                f"{end['host']}: {end['line']}"
                if end and "line" in end
                else ("acknowledged write" if end and end_key == "first_ack" else None)
            ),
        }
        if begin and (floor is None or begin["epoch"] >= floor[1]):
            floor = (begin_key, begin["epoch"])
        if begin and end and floor is not None:
            layer["seconds"], layer["reason"] = _overlap(begin_key, begin, end_key, end, floor)
            if end["epoch"] > floor[1]:
                floor = (end_key, end["epoch"])
        else:
            layer["reason"] = "; ".join(
                f"{key}: {missing.get(key, 'not found')}"
                for key, value in ((begin_key, begin), (end_key, end))
                if value is None
            )
        layers.append(layer)
    for value in milestones.values():
        if value is not None:
            value.pop("epoch", None)
    return {"layers": layers, "milestones": milestones, "missing": missing, "warnings": warnings}


# How each milestone reads in a sentence, for explaining overlapping layers.
MILESTONE_WORDS = {
    "fault": "the fault was injected",
    "detection": "Patroni noticed the leader was gone",
    "promotion_done": "PostgreSQL logged ready",
    "haproxy_up": "HAProxy saw the new leader up",
    "first_ack": "the first write was acknowledged",
}


def _overlap(
    begin_key: str,
    begin: dict[str, Any],
    end_key: str,
    end: dict[str, Any],
    floor: tuple[str, float],
) -> tuple[float, str | None]:
    """A layer's seconds, never negative, and why it is not simply end - begin.

    The milestones come from different hosts' logs and are not causally ordered:
    HAProxy may mark the new leader UP before PostgreSQL's "ready" line is written.
    Such a layer gets 0 s, and the next one is measured from the later milestone
    (``floor``), so the layers still add up to the time from the fault to the
    first acknowledged write.
    """
    floor_key, floor_at = floor
    seconds = round(max(end["epoch"] - floor_at, 0.0), 3)
    words = MILESTONE_WORDS
    if end["epoch"] < floor_at:
        ahead = round(floor_at - end["epoch"], 3)
        return 0.0, f"{words[end_key]} {ahead} s before {words[floor_key]}: the layers overlap"
    if floor_key != begin_key:
        behind = round(floor_at - begin["epoch"], 3)
        return seconds, (
            f"measured from when {words[floor_key]}, {behind} s after {words[begin_key]}"
            " (the previous layers overlap)"
        )
    return seconds, None


def _from_logs(
    after: list[LogLine],
    start: float,
    milestones: dict[str, dict[str, Any] | None],
    missing: dict[str, str],
) -> None:
    if not after:
        for key in ("detection", "lock_acquired", "promotion_done", "haproxy_up"):
            missing[key] = "no journal line at or after the fault in logs/*/journal-*.txt"
        return
    detection = _first(after, DETECTION)
    if detection:
        milestones["detection"] = _milestone(detection, start)
    else:
        missing["detection"] = "no Patroni line about the leader lock after the fault"
    acquired = _first(after, LOCK_ACQUIRED)
    leader = acquired.host if acquired else None
    if acquired:
        milestones["lock_acquired"] = _milestone(acquired, start)
    else:
        missing["lock_acquired"] = "no Patroni lock acquisition after the fault"
    promoted = _promotion_done(after, leader)
    if promoted:
        milestones["promotion_done"] = _milestone(promoted, start)
    else:
        patroni = _first((x for x in after if leader in (None, x.host)), [PATRONI_PROMOTED])
        missing["promotion_done"] = (
            "no PostgreSQL 'ready to accept connections' after a promote request"
            + (f" (Patroni logged promotion at {rundir.iso(patroni.time)})" if patroni else "")
        )
    up = _haproxy_up(after, leader)
    if up:
        line, backend, server = up
        milestones["haproxy_up"] = _milestone(line, start, backend=backend, server=server)
    else:
        missing["haproxy_up"] = "no HAProxy 'Server <backend>/<server> is UP' after the fault"


def _first_ack(
    fault: float,
    start: float,
    rw_windows: list[dict[str, Any]],
    ack_times: Iterable[float],
    milestones: dict[str, dict[str, Any] | None],
    missing: dict[str, str],
) -> None:
    for window in rw_windows:
        end = start + float(window["end_s"])
        if end <= fault:
            continue
        if not window["recovered"]:
            missing["first_ack"] = "writes never came back before the run ended"
            return
        milestones["first_ack"] = {
            "time": rundir.iso(end),
            "at_s": round(end - start, 3),
            "epoch": end,
            "write_gap_s": window["duration_s"],
        }
        return
    later = [t for t in ack_times if t >= fault]
    if later:
        first = min(later)
        milestones["first_ack"] = {
            "time": rundir.iso(first),
            "at_s": round(first - start, 3),
            "epoch": first,
            "write_gap_s": 0.0,
        }
    else:
        missing["first_ack"] = "no acknowledged write after the fault"
