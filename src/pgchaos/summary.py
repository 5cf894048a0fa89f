"""Headline figures of a run: unavailability windows, errors, latency, servers, RPO.

The definition of an unavailability window (client-observed RTO) is in the
package docstring.  :func:`summarize` is the entry point for the chaos playbooks.
"""

from __future__ import annotations

import itertools
import json
import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pgchaos import faults, layers, reads, rundir
from pgchaos.classify import ERROR_CLASSES
from pgchaos.dsn import redact
from pgchaos.errors import UsageError
from pgchaos.events import Event, read_events
from pgchaos.ledger import OK, read_records

# rwr: readers on the write port (read-your-writes), beside the writers of rw.
ENDPOINTS = ("rw", "ro", "rwr")
KINDS = ("write", "read", "connect")
OUTCOMES = ("ok", "failed", "in_doubt")
CLASSES = ("", *ERROR_CLASSES)
PERIOD_GAP_S = 1.0

# Shipped inside summary.json so a reader of the numbers needs no other document.
DEFINITIONS = {
    "unavailability_window": (
        "per endpoint, operations ordered by completion time (reads and writes; failed"
        " connection attempts count as failures): from the completion of the last"
        " successful operation before a failure to the completion of the next successful"
        " operation; from the run start if none precedes, to the run end if none follows"
        " (recovered: false)"
    ),
    "longest_unavailability_s": "client-observed RTO: the longest unavailability window",
    "faults": (
        "per fault event (kind fault), per endpoint: fault to first failure, the longest"
        " window whose first failure lies between this fault and the next, fault to the end of"
        " the last such window (back_s), and recover event to that end (back_after_recover_s);"
        " see pgchaos.faults"
    ),
    "total_error_time_s": "sum of all unavailability windows",
    "failed_ops": "reads and writes that failed with an answer (the write surely did not happen)",
    "in_doubt_ops": "writes whose connection died after the commit was sent",
    "latency_ms": "percentiles and maximum over successful reads and writes",
    "longest_stall_s": (
        "per endpoint, the longest time between two successful completions (reads and writes):"
        " what a client held without an error (a paused pooler) waited; null below two"
    ),
    "primary_periods": (
        "one per primary term, a term being a (server, timeline) pair that acknowledged writes"
        " on the rw endpoint: from its first to its last acknowledgement (completion times)"
    ),
    "primary_handovers": (
        "one per change of primary between consecutive terms: gap_s is the time from the old"
        " primary's last acknowledgement to the new one's first; negative when the old"
        " primary still acknowledged writes after the new one had begun (completion times)"
    ),
    "split_brain": (
        "true if a write acknowledged by one server certainly committed inside the term of"
        " another server: after a commit of that term had been acknowledged and before a"
        " later commit of it was sent (a commit happens between the start and the"
        " completion of its operation, so overlaps within latency are not counted)"
    ),
    "layers": (
        "the write gap after the fault broken down with the servers' logs (pgchaos logs):"
        " lease expiry / detection (fault to Patroni noticing), election + promotion (to"
        " PostgreSQL accepting connections as primary), HAProxy detection (to HAProxy marking"
        " it UP), client reconnect (to the write that closed the gap); see pgchaos.layers"
    ),
    "staleness_s": (
        "per reader endpoint: how far behind each read was, from the acknowledgement of the"
        " oldest write it did not see (among those acknowledged before it was sent) to its"
        " sending; 0 when it saw them all.  stale_reads counts reads behind by more than 0"
    ),
    "read_anomalies": (
        "non_monotonic: reads that saw less of a writer than an earlier read of the same"
        " reader had; read_your_writes (rwr, the write port): reads answered by a primary that"
        " missed a write acknowledged before they were sent; see pgchaos.reads"
    ),
    "seen_then_lost": (
        "acknowledged writes absent at verify time that a read had seen (verify.seen_then_lost)"
    ),
    "acknowledged_unreplicated": (
        "acknowledged writes whose commit's wait for the synchronous standby was cancelled:"
        " PostgreSQL warned that the transaction had committed locally only and still"
        " reported success (verify.acknowledged_unreplicated)"
    ),
    "lost_after_sync_cancel": (
        "the lost writes (verify.lost counts them too) that were acknowledged_unreplicated:"
        " acknowledged without the standby's confirmation, unlike the other lost writes"
    ),
    "until": (
        "the cut-off time verify was given (pgchaos verify --until), after a restore to before"
        " it: only writes acknowledged before it must be present, so lost counts only those;"
        " reads sent from the cut-off on are not checked for read anomalies"
    ),
    "lost_after_until": (
        "acknowledged writes absent at verify time that were acknowledged at or after the"
        " cut-off: what the restore intends, not counted in lost (present_after_until: those"
        " still present)"
    ),
    "recovered_until": (
        "the acknowledgement time of the latest acknowledged write up to which every"
        " acknowledged write is present: where the complete data ends (null: none is present);"
        " recovered_gap_s: the cut-off minus that, in seconds"
    ),
    "first_lost_at": (
        "the acknowledgement time of the earliest acknowledged write absent at verify time,"
        " before or after the cut-off (null: none is absent)"
    ),
    "split_brain_overlaps": (
        "per pair of terms on different servers with interleaved acknowledgements: the window"
        " where both terms acknowledged writes and how many acknowledgements fell inside it"
    ),
}

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass
class RunData:
    """A run's records as compact columns, so long runs fit in memory for analysis."""

    run_dir: Path
    meta: dict[str, Any]
    start: float
    end: float
    time: FloatArray
    finish: FloatArray
    latency_ms: FloatArray
    endpoint: IntArray
    kind: IntArray
    outcome: IntArray
    error_class: IntArray
    identity: IntArray
    identities: list[tuple[str, str, str]] = field(default_factory=list)

    def mask(self, endpoint: str) -> BoolArray:
        return np.asarray(self.endpoint == ENDPOINTS.index(endpoint))


def load_run_data(run_dir: Path) -> RunData:
    meta = rundir.open_run(run_dir)
    cols_f: dict[str, array[float]] = {k: array("d") for k in ("time", "lat")}
    cols_i: dict[str, array[int]] = {k: array("b") for k in ("ep", "kind", "out", "cls")}
    ident_col: array[int] = array("l")
    ident_index: dict[tuple[str, str, str], int] = {}
    index = {
        "ep": {v: i for i, v in enumerate(ENDPOINTS)},
        "kind": {v: i for i, v in enumerate(KINDS)},
        "out": {v: i for i, v in enumerate(OUTCOMES)},
        "cls": {v: i for i, v in enumerate(CLASSES)},
    }
    for rec in read_records(run_dir):
        try:
            codes = (
                index["ep"][rec.endpoint],
                index["kind"][rec.kind],
                index["out"][rec.outcome],
                index["cls"].get(rec.error_class, CLASSES.index("other")),
            )
        except KeyError:
            raise UsageError(f"{run_dir}: damaged record at time {rec.time}") from None
        cols_f["time"].append(rec.time)
        cols_f["lat"].append(rec.latency_ms)
        for key, code in zip(("ep", "kind", "out", "cls"), codes, strict=True):
            cols_i[key].append(code)
        ident = (rec.server, rec.role, rec.timeline)
        ident_col.append(ident_index.setdefault(ident, len(ident_index)))
    time_ = np.frombuffer(cols_f["time"], dtype=np.float64) if cols_f["time"] else np.zeros(0)
    lat = np.frombuffer(cols_f["lat"], dtype=np.float64) if cols_f["lat"] else np.zeros(0)
    finish = time_ + lat / 1000.0

    def ints(values: array[int]) -> IntArray:
        return np.array(values, dtype=np.int64)

    start = _meta_time(meta, "started_at")
    if start is None:
        start = float(time_.min()) if len(time_) else 0.0
    end = _meta_time(meta, "ended_at")
    if end is None:
        end = float(finish.max()) if len(finish) else start
    return RunData(
        run_dir=run_dir,
        meta=meta,
        start=start,
        end=end,
        time=time_,
        finish=finish,
        latency_ms=lat,
        endpoint=ints(cols_i["ep"]),
        kind=ints(cols_i["kind"]),
        outcome=ints(cols_i["out"]),
        error_class=ints(cols_i["cls"]),
        identity=ints(ident_col),
        identities=list(ident_index),
    )


def _meta_time(meta: dict[str, Any], key: str) -> float | None:
    value = meta.get(key)
    if value is None:
        return None
    try:
        return rundir.parse_time(value)
    except ValueError:
        raise UsageError(f"run.json: damaged {key}: {value!r}") from None


def _is_success(data: RunData) -> BoolArray:
    return np.asarray((data.kind != KINDS.index("connect")) & (data.outcome == OUTCOMES.index(OK)))


def _counts_toward_availability(data: RunData) -> BoolArray:
    """Reads and writes, plus failed connection attempts (successful connects prove nothing)."""
    connect = data.kind == KINDS.index("connect")
    return np.asarray(~connect | (data.outcome != OUTCOMES.index(OK)))


def windows(data: RunData, endpoint: str) -> list[dict[str, Any]]:
    """Unavailability windows of one endpoint, as defined in the package docstring."""
    mask = data.mask(endpoint) & _counts_toward_availability(data)
    finish = data.finish[mask]
    ok = _is_success(data)[mask]
    classes = data.error_class[mask]
    order = np.argsort(finish, kind="stable")
    finish, ok, classes = finish[order], ok[order], classes[order]
    successes = np.flatnonzero(ok)
    failures = np.flatnonzero(~ok)
    if not len(failures):
        return []
    # Failures with the same number of successes before them share one window.
    group = np.searchsorted(successes, failures)
    result = []
    for g in np.unique(group):
        members = failures[group == g]
        begin = float(finish[successes[g - 1]]) if g > 0 else data.start
        recovered = g < len(successes)
        stop = float(finish[successes[g]]) if recovered else max(data.end, float(finish[-1]))
        names, counts = np.unique(classes[members], return_counts=True)
        result.append(
            {
                "start": rundir.iso(begin),
                "end": rundir.iso(stop),
                "start_s": round(begin - data.start, 3),
                "end_s": round(stop - data.start, 3),
                "duration_s": round(stop - begin, 3),
                "first_failure_s": round(float(finish[members[0]]) - data.start, 3),
                "failures": len(members),
                "recovered": bool(recovered),
                "error_classes": {
                    CLASSES[int(n)]: int(c) for n, c in zip(names, counts, strict=True)
                },
            }
        )
    return result


# Endpoints whose balancer spreads reads over several servers: a hop from one
# replica to the next is the balancer's round robin, not a failover.
ROUND_ROBIN = frozenset({"ro"})


def _successes(data: RunData, endpoint: str) -> tuple[FloatArray, IntArray]:
    """Completion times and identity codes of the endpoint's successful operations, in order."""
    mask = data.mask(endpoint) & _is_success(data)
    finish = data.finish[mask]
    ident = data.identity[mask]
    order = np.argsort(finish, kind="stable")
    return finish[order], ident[order]


def _periods(finish: FloatArray, keys: IntArray) -> list[tuple[int, int]]:
    """Index ranges [a, b) of runs of equal keys, also split by a silence (an outage)."""
    if not len(finish):
        return []
    changes = np.flatnonzero((np.diff(keys) != 0) | (np.diff(finish) > PERIOD_GAP_S)) + 1
    return list(itertools.pairwise([0, *changes.tolist(), len(finish)]))


def server_periods(data: RunData, endpoint: str) -> list[dict[str, Any]]:
    """Which server answered successful operations when, merged into consecutive periods.

    Periods are split where the server changes and where no operation succeeded
    for more than PERIOD_GAP_S seconds.  On a round-robin endpoint (ROUND_ROBIN)
    the server changes with nearly every read, so there a period is a stretch of
    one (role, timeline) whatever server answered, ``server`` naming all the
    servers that did; their count stays bounded by the failovers and outages.
    """
    finish, ident = _successes(data, endpoint)
    periods: list[dict[str, Any]] = []
    if endpoint not in ROUND_ROBIN:
        for a, b in _periods(finish, ident):
            server, role, timeline = data.identities[int(ident[a])]
            periods.append(_period(data, server, role, timeline, finish[a], finish[b - 1], b - a))
        return periods
    states = sorted({(role, tl) for _, role, tl in data.identities})
    state_of = np.array(
        [states.index((role, tl)) for _, role, tl in data.identities] or [0], dtype=np.int64
    )
    # Each state is followed on its own: a replica and a primary answering in turn
    # (a balancer that also sends reads to the primary) make two periods, not thousands.
    for code in np.unique(state_of[ident]):
        rows = np.flatnonzero(state_of[ident] == code)
        role, timeline = states[int(code)]
        for a, b in _periods(finish[rows], np.zeros(len(rows), dtype=np.int64)):
            members = ident[rows[a:b]]
            codes, counts = np.unique(members, return_counts=True)
            names: dict[str, int] = {}
            for c, n in zip(codes, counts, strict=True):
                name = data.identities[int(c)][0]
                names[name] = names.get(name, 0) + int(n)
            server = ", ".join(sorted(names, key=lambda k: (-names[k], k)))
            periods.append(
                _period(data, server, role, timeline, finish[rows[a]], finish[rows[b - 1]], b - a)
            )
    periods.sort(key=lambda p: (p["from_s"], p["to_s"]))
    return periods


def _period(
    data: RunData, server: str, role: str, timeline: str, first: float, last: float, ops: int
) -> dict[str, Any]:
    return {
        "server": server,
        "role": role,
        "timeline": timeline,
        "from_s": round(float(first) - data.start, 3),
        "to_s": round(float(last) - data.start, 3),
        "ops": int(ops),
    }


def server_share(data: RunData, endpoint: str) -> list[dict[str, Any]]:
    """Per (server, role): its share of the endpoint's successful operations, first/last seen."""
    finish, ident = _successes(data, endpoint)
    groups: dict[tuple[str, str], list[int]] = {}
    for code in np.unique(ident):
        server, role, _ = data.identities[int(code)]
        groups.setdefault((server, role), []).append(int(code))
    total = max(len(finish), 1)
    share: list[dict[str, Any]] = []
    for (server, role), codes in groups.items():
        rows = np.flatnonzero(np.isin(ident, codes))
        share.append(
            {
                "server": server,
                "role": role,
                "timelines": sorted({data.identities[c][2] for c in codes}),
                "ops": len(rows),
                "share_pct": round(100.0 * len(rows) / total, 1),
                "first_s": round(float(finish[rows[0]]) - data.start, 3),
                "last_s": round(float(finish[rows[-1]]) - data.start, 3),
            }
        )
    share.sort(key=lambda x: (-x["ops"], x["server"], x["role"]))
    return share


def server_changes(periods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Moments the endpoint started being answered by another server or timeline (failovers)."""
    changes = []
    for before, after in itertools.pairwise(periods):
        key_before = (before["server"], before["timeline"])
        key_after = (after["server"], after["timeline"])
        if key_before != key_after:
            changes.append(
                {
                    "at_s": after["from_s"],
                    "from": f"{before['server']} (timeline {before['timeline'] or '?'})",
                    "to": f"{after['server']} (timeline {after['timeline'] or '?'})",
                }
            )
    return changes


def role_changes(data: RunData, endpoint: str) -> list[dict[str, Any]]:
    """Moments a server of a round-robin endpoint answered with another role or timeline.

    Followed per server, so the balancer moving from one replica to the next is no
    change, while a replica that now answers as primary, or on a new timeline, is.
    """
    finish, ident = _successes(data, endpoint)
    changes: list[dict[str, Any]] = []
    servers = sorted({s for s, _, _ in data.identities})
    states = sorted({(role, tl) for _, role, tl in data.identities})
    server_of = np.array([servers.index(s) for s, _, _ in data.identities] or [0])
    state_of = np.array([states.index((r, tl)) for _, r, tl in data.identities] or [0])
    for code in np.unique(server_of[ident]):
        rows = np.flatnonzero(server_of[ident] == code)
        state = state_of[ident[rows]]
        server = servers[int(code)]
        current = states[int(state[0])]
        newest = _timeline_number(current[1])
        for k in np.flatnonzero(np.diff(state) != 0) + 1:
            role, tl = states[int(state[k])]
            number = _timeline_number(tl)
            # Each connection caches what its server is for up to a second, so two readers
            # of one server can disagree for a moment: only a step forward is a change
            # (a known, newer timeline, or a new role on the newest one).
            if number is None or (newest is not None and number < newest):
                continue
            if (role, tl) == current or (number == newest and role == current[0]):
                continue
            changes.append(
                {
                    "at_s": round(float(finish[rows[k]]) - data.start, 3),
                    "from": f"{server} ({current[0] or '?'}, timeline {current[1] or '?'})",
                    "to": f"{server} ({role or '?'}, timeline {tl})",
                }
            )
            current, newest = (role, tl), number
    changes.sort(key=lambda c: c["at_s"])
    return changes


def _timeline_number(timeline: str) -> int | None:
    return int(timeline) if timeline.isdigit() else None


def endpoint_changes(
    data: RunData, endpoint: str, periods: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Failovers as one endpoint saw them: new primary on rw, new role or timeline on ro."""
    return role_changes(data, endpoint) if endpoint in ROUND_ROBIN else server_changes(periods)


def primary_terms(data: RunData) -> list[dict[str, Any]]:
    """Primary terms seen by the client: acknowledged writes grouped by (server, timeline).

    A server that becomes primary again after a failover does so on a new timeline,
    so each (server, timeline) pair is one uninterrupted term; a term whose
    acknowledgements are interleaved with another server's is a split brain.
    """
    acked = np.flatnonzero(
        data.mask("rw") & (data.kind == KINDS.index("write")) & (data.outcome == OUTCOMES.index(OK))
    )
    terms: list[dict[str, Any]] = []
    for code in np.unique(data.identity[acked]):
        rows = acked[data.identity[acked] == code]
        server, _, timeline = data.identities[int(code)]
        if not server:
            continue
        first, last = float(data.finish[rows].min()), float(data.finish[rows].max())
        terms.append(
            {
                "server": server,
                "timeline": timeline,
                "first_ack": rundir.iso(first),
                "last_ack": rundir.iso(last),
                "from_s": round(first - data.start, 3),
                "to_s": round(last - data.start, 3),
                "acks": len(rows),
                "_rows": rows,
            }
        )
    terms.sort(key=lambda t: (t["from_s"], t["server"], t["timeline"]))
    return terms


def split_brain(data: RunData) -> dict[str, Any]:
    """Interleaved acknowledgements of two servers (definition in DEFINITIONS["split_brain"]).

    Each acknowledged write committed at some instant between the start and the
    completion of its operation.  An acknowledgement ``a`` of server A lies *inside*
    the term T of server B (A != B) when it certainly committed after some commit
    of T and before another one: ``min(finish of T) < start(a)`` and
    ``finish(a) < max(start of T)``.  Every pair of terms on different servers with
    at least one such acknowledgement (either way round) is an overlap; its window
    spans the acknowledgements found inside the other term.
    """
    terms = primary_terms(data)
    overlaps = []
    for one, two in itertools.combinations(terms, 2):
        if one["server"] == two["server"]:
            continue
        inside: dict[int, Any] = {}
        for host, guest in ((one, two), (two, one)):
            rows = host["_rows"]
            lower = float(data.finish[rows].min())
            upper = float(data.time[rows].max())
            g = guest["_rows"]
            inside[id(guest)] = g[(data.time[g] > lower) & (data.finish[g] < upper)]
        found = np.concatenate([inside[id(one)], inside[id(two)]])
        if not len(found):
            continue
        begin = float(data.time[found].min())
        stop = float(data.finish[found].max())
        overlaps.append(
            {
                "servers": [one["server"], two["server"]],
                "timelines": [one["timeline"], two["timeline"]],
                "start": rundir.iso(begin),
                "end": rundir.iso(stop),
                "start_s": round(begin - data.start, 3),
                "end_s": round(stop - data.start, 3),
                "duration_s": round(stop - begin, 3),
                # acknowledgements of each term certainly inside the other's term
                "interleaved_acks": [len(inside[id(one)]), len(inside[id(two)])],
                # every acknowledgement of each term within the window
                "acks_in_window": [
                    int(
                        ((data.finish[t["_rows"]] >= begin) & (data.time[t["_rows"]] <= stop)).sum()
                    )
                    for t in (one, two)
                ],
            }
        )
    periods = [{k: v for k, v in t.items() if k != "_rows"} for t in terms]
    return {
        "split_brain": bool(overlaps),
        "overlaps": overlaps,
        "primary_periods": periods,
        "handovers": handovers(periods),
    }


def handovers(periods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive terms (by first acknowledgement) on different servers: how long writes
    had no primary between them, or, negative, how long the old one overlapped the new."""
    return [
        {
            "from": old["server"],
            "to": new["server"],
            "timelines": [old["timeline"], new["timeline"]],
            "gap_s": round(new["from_s"] - old["to_s"], 3),
        }
        for old, new in itertools.pairwise(periods)
        if old["server"] != new["server"]
    ]


def _percentile(values: FloatArray, q: float) -> float | None:
    return round(float(np.percentile(values, q)), 3) if len(values) else None


def longest_stall(finished: FloatArray) -> float | None:
    """The longest time between two successful completions: what a held client waits.

    A pause (a pooler holding queries, a commit waiting for its standby) fails nothing, so
    no unavailability window shows it; the clients still wait that long.
    """
    if len(finished) < 2:
        return None
    return round(float(np.diff(np.sort(finished)).max()), 3)


def endpoint_summary(data: RunData, endpoint: str) -> dict[str, Any]:
    mask = data.mask(endpoint)
    ops = mask & (data.kind != KINDS.index("connect"))
    ok = ops & (data.outcome == OUTCOMES.index(OK))
    failed = ops & (data.outcome == OUTCOMES.index("failed"))
    in_doubt = ops & (data.outcome == OUTCOMES.index("in_doubt"))
    connects = mask & (data.kind == KINDS.index("connect"))
    failed_connects = connects & (data.outcome != OUTCOMES.index(OK))
    wins = windows(data, endpoint)
    periods = server_periods(data, endpoint)
    latencies = data.latency_ms[ok]
    errors = mask & (data.error_class != 0)
    names, counts = np.unique(data.error_class[errors], return_counts=True)
    duration = max(data.end - data.start, 1e-9)
    return {
        "operations": int(ops.sum()),
        "ok": int(ok.sum()),
        "failed_ops": int(failed.sum()),
        "in_doubt_ops": int(in_doubt.sum()),
        "connect_attempts": int(connects.sum()),
        "failed_connects": int(failed_connects.sum()),
        "ok_per_s": round(float(ok.sum()) / duration, 1),
        "error_classes": {CLASSES[int(n)]: int(c) for n, c in zip(names, counts, strict=True)},
        "longest_unavailability_s": max((w["duration_s"] for w in wins), default=0.0),
        "total_error_time_s": round(sum(w["duration_s"] for w in wins), 3),
        "unavailability_windows": wins,
        "latency_ms": {
            "p50": _percentile(latencies, 50),
            "p99": _percentile(latencies, 99),
            "max": round(float(latencies.max()), 3) if len(latencies) else None,
        },
        "longest_stall_s": longest_stall(data.finish[ok]),
        "servers": periods,
        "server_changes": endpoint_changes(data, endpoint, periods),
        "server_share": server_share(data, endpoint),
    }


def _failover_layers(data: RunData, events: list[Event]) -> dict[str, Any]:
    acked = data.mask("rw") & (data.kind == KINDS.index("write")) & _is_success(data)
    return layers.analyze(
        data.run_dir, data.start, events, windows(data, "rw"), data.finish[acked].tolist()
    )


def _endpoints(meta: dict[str, Any], present: set[str]) -> dict[str, str | None]:
    """The DSN of each endpoint seen, without its password.

    run.json stores them redacted already; redacting again keeps a hand-made or
    older run.json from leaking a password into the report.
    """
    stored = meta.get("endpoints") or {}
    if not isinstance(stored, dict):
        return dict.fromkeys(sorted(present))
    result: dict[str, str | None] = {}
    for ep in sorted(present):
        value = stored.get(ep)
        if value is None and ep == "rwr":  # readers through the write port use its DSN
            value = stored.get("rw")
        result[ep] = redact(value) if isinstance(value, str) else None
    return result


def _verify_until(run_dir: Path) -> float | None:
    """The cut-off time verify.json was made with (verify --until); None without one.

    A damaged verify.json is reported where summarize reads it for its figures.
    """
    try:
        value = json.loads((run_dir / "verify.json").read_text(encoding="utf-8")).get("until_ts")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def summarize(run_dir: Path | str, data: RunData | None = None) -> dict[str, Any]:
    """The run's headline figures as a plain dict (what summary.json holds)."""
    run_dir = Path(run_dir)
    if data is None:
        data = load_run_data(run_dir)
    events, warnings = read_events(run_dir)
    present = {ENDPOINTS[int(i)] for i in np.unique(data.endpoint)}
    brain = split_brain(data)
    failover = _failover_layers(data, events)
    warnings = warnings + failover["warnings"]
    per_endpoint = {ep: endpoint_summary(data, ep) for ep in ENDPOINTS if ep in present}
    # Read anomalies as verify judged them: with its cut-off, if it was given one.
    until = _verify_until(run_dir)
    for endpoint, figures in reads.analyze(reads.cached(run_dir, data.start), until=until).items():
        if endpoint in per_endpoint:
            per_endpoint[endpoint].update(figures)
    summary: dict[str, Any] = {
        "run": str(run_dir),
        "run_id": data.meta.get("run_id"),
        "started_at": rundir.iso(data.start),
        "ended_at": rundir.iso(data.end),
        "duration_s": round(data.end - data.start, 3),
        "status": data.meta.get("status"),
        "endpoints": _endpoints(data.meta, present),
        "records": len(data.time),
        "per_endpoint": per_endpoint,
        "events": [
            {
                "time": rundir.iso(e.time),
                "at_s": round(e.time - data.start, 3),
                "kind": e.kind,
                "action": e.action,
                "method": e.method,
                "target": e.target,
                "scenario": e.scenario,
                "detail": e.detail,
            }
            for e in events
        ],
        "faults": [
            f.as_dict()
            for f in faults.fault_windows(
                events,
                {
                    ep: [faults.Window.from_summary(w) for w in figures["unavailability_windows"]]
                    for ep, figures in per_endpoint.items()
                },
                data.start,
                data.end - data.start,
            )
        ],
        "split_brain": brain["split_brain"],
        "split_brain_overlaps": brain["overlaps"],
        "primary_periods": brain["primary_periods"],
        "primary_handovers": brain["handovers"],
        "layers": failover["layers"],
        "failover_milestones": failover["milestones"],
        "warnings": warnings,
        "verify": None,
        "definitions": DEFINITIONS,
    }
    verify_path = run_dir / "verify.json"
    if verify_path.exists():
        try:
            verified = json.loads(verify_path.read_text(encoding="utf-8"))
            summary["verify"] = {
                "lost": verified["lost"],
                "ghosts": verified["ghosts"],
                "in_doubt": verified["in_doubt_total"],
                "acknowledged_present": verified["acknowledged"]["present"],
                "writes": verified["writes"],
                "checked_at": verified.get("checked_at"),
                # absent from verify.json files written before reads were checked
                "seen_then_lost": (verified.get("reads") or {}).get("seen_then_lost"),
                "read_your_writes": (verified.get("reads") or {}).get("read_your_writes"),
                "altered": verified.get("altered"),
                "duplicated": verified.get("duplicated"),
                # absent from verify.json files written before sync cancels were told apart
                "acknowledged_unreplicated": verified.get("acknowledged_unreplicated"),
                "lost_after_sync_cancel": verified.get("lost_after_sync_cancel"),
                # absent from verify.json files written before cut-offs (--until) existed;
                # the until ones are absent too when verify was not given one
                "until": verified.get("until"),
                "until_ts": verified.get("until_ts"),
                "acknowledged_before_until": verified.get("acknowledged_before_until"),
                "lost_after_until": verified.get("lost_after_until"),
                "present_after_until": verified.get("present_after_until"),
                "recovered_until": verified.get("recovered_until"),
                "recovered_gap_s": verified.get("recovered_gap_s"),
                "first_lost_at": verified.get("first_lost_at"),
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            summary["warnings"].append(f"verify.json ignored: {exc}")
    return summary
