"""What each injected fault cost each endpoint: the per-fault windows of ``summary.json``.

A run's events carry a kind (:mod:`pgchaos.events`): ``fault`` when something was broken,
``recover`` when it was put right, both timed at the moment they took effect.  Every fault
owns the stretch of the run from its own time to the next fault (or the end).  An
unavailability window (:func:`pgchaos.summary.windows`) belongs to the fault whose stretch
holds its first failure; failures before the first fault belong to none.  A stretch starts
:data:`SKEW_S` before its fault: a fault timed on the target host's clock, or at the end of a
command during which it took effect, may come a little after the first failure it caused.

Per fault and endpoint (seconds):

``first_failure_s``
    fault → the first failed operation of the endpoint in the stretch.
``longest_gap_s``
    the longest of the stretch's windows (0 when the endpoint was never down).
``back_s``
    fault → the end of the last window of the stretch: when the endpoint was back for good
    (0 when it was never down; ``null`` when it was still down at the end of the run).
``back_after_recover_s``
    the fault's recover event → the end of the last window still open at it or opened after
    it within the stretch: what the recovery itself cost (0 when the endpoint was up at the
    recovery and stayed up; ``null`` without a recover event or when it never came back).

The recover event of a fault is the first one after it, whatever its target: scenarios that
break several things restore them together.  Playbooks compare these figures with bounds;
they do no arithmetic of their own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pgchaos.events import FAULT, RECOVER, Event

SKEW_S = 0.5


@dataclass(frozen=True)
class Window:
    """An unavailability window, in seconds since the start of the run."""

    start_s: float
    end_s: float
    first_failure_s: float
    recovered: bool

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @classmethod
    def from_summary(cls, window: dict[str, Any]) -> Window:
        return cls(
            start_s=float(window["start_s"]),
            end_s=float(window["end_s"]),
            first_failure_s=float(window["first_failure_s"]),
            recovered=bool(window["recovered"]),
        )


@dataclass(frozen=True)
class EndpointCost:
    windows: int
    failures_in_stretch: bool
    first_failure_s: float | None
    longest_gap_s: float
    back_s: float | None
    back_after_recover_s: float | None


@dataclass(frozen=True)
class FaultWindows:
    at_s: float
    action: str
    target: str
    method: str | None
    recover_at_s: float | None
    held_s: float | None  # from the fault to its recovery: how long the fault was in place
    until_s: float  # the end of the fault's stretch: the next fault, or the end of the run
    per_endpoint: dict[str, EndpointCost] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        for cost in result["per_endpoint"].values():
            for key, value in cost.items():
                if isinstance(value, float):
                    cost[key] = round(value, 3)
        return result


def _cost(
    windows: list[Window], fault_at: float, until: float, recover_at: float | None
) -> EndpointCost:
    mine = [w for w in windows if fault_at - SKEW_S <= w.first_failure_s < until - SKEW_S]
    if not mine:
        return EndpointCost(0, False, None, 0.0, 0.0, None if recover_at is None else 0.0)
    last = mine[-1]
    back = last.end_s - fault_at if last.recovered else None
    after_recover: float | None = None
    if recover_at is not None:
        # Windows still open at the recovery, or opened by it: what bringing things back cost.
        touched = [w for w in mine if w.end_s > recover_at]
        if not touched:
            after_recover = 0.0
        elif touched[-1].recovered:
            after_recover = touched[-1].end_s - recover_at
    return EndpointCost(
        windows=len(mine),
        failures_in_stretch=True,
        first_failure_s=mine[0].first_failure_s - fault_at,
        longest_gap_s=max(w.duration_s for w in mine),
        back_s=back,
        back_after_recover_s=after_recover,
    )


def fault_windows(
    events: list[Event], windows: dict[str, list[Window]], start: float, end_s: float
) -> list[FaultWindows]:
    """One entry per fault event, in time order (event times are epoch seconds)."""
    ordered = sorted(events, key=lambda e: e.time)
    faults = [e for e in ordered if e.kind == FAULT]
    result = []
    for index, fault in enumerate(faults):
        at = fault.time - start
        until = faults[index + 1].time - start if index + 1 < len(faults) else max(end_s, at)
        recover = next((e for e in ordered if e.kind == RECOVER and e.time >= fault.time), None)
        recover_at = None if recover is None else recover.time - start
        result.append(
            FaultWindows(
                at_s=round(at, 3),
                action=fault.action,
                target=fault.target,
                method=fault.method,
                recover_at_s=None if recover_at is None else round(recover_at, 3),
                held_s=None if recover_at is None else round(recover_at - at, 3),
                until_s=round(until, 3),
                per_endpoint={
                    endpoint: _cost(endpoint_windows, at, until, recover_at)
                    for endpoint, endpoint_windows in windows.items()
                },
            )
        )
    return result
