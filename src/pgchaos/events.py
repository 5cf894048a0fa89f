"""Reading the chaos events file (format documented in the package docstring)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pgchaos.rundir import EVENTS_FILE, parse_time

FAULT = "fault"
RECOVER = "recover"
NOTE = "note"
KINDS = (FAULT, RECOVER, NOTE)

# Events files written before events carried a kind: the few action words the project's
# own scenarios used.  Anything else is a note, so nothing is taken for a fault by guess.
_LEGACY_FAULTS = frozenset(
    {"kill", "stop", "node", "stop patroni", "partition", "switchover", "freeze", "fault"}
)
_LEGACY_RECOVERS = frozenset({"recover", "restore", "heal", "start", "thaw"})


def legacy_kind(action: str) -> str:
    word = action.strip().lower()
    if word in _LEGACY_RECOVERS:
        return RECOVER
    if word in _LEGACY_FAULTS or word.startswith(("stop ", "kill ", "lose ")):
        return FAULT
    return NOTE


@dataclass(frozen=True)
class Event:
    time: float
    action: str
    target: str
    scenario: str | None = None
    detail: str | None = None
    kind: str = NOTE
    method: str | None = None

    @property
    def label(self) -> str:
        return f"{self.action} {self.target}".strip()


def read_events(run_dir: Path) -> tuple[list[Event], list[str]]:
    """Return the events sorted by time, plus one warning per line that was ignored."""
    path = run_dir / EVENTS_FILE
    if not path.exists():
        return [], []
    events: list[Event] = []
    warnings: list[str] = []
    for lineno, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            warnings.append(f"{path.name}:{lineno}: ignored (not UTF-8)")
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not an object")
            action, target = obj.get("action"), obj.get("target")
            if not isinstance(action, str) or not isinstance(target, str):
                raise ValueError("action and target must be strings")
            scenario, detail = obj.get("scenario"), obj.get("detail")
            kind, method = obj.get("kind", legacy_kind(action)), obj.get("method")
            if kind not in KINDS:
                raise ValueError(f"kind must be one of {', '.join(KINDS)}")
            events.append(
                Event(
                    time=parse_time(obj.get("time")),
                    action=action,
                    target=target,
                    scenario=None if scenario is None else str(scenario),
                    detail=None if detail is None else str(detail),
                    kind=kind,
                    method=None if method is None else str(method),
                )
            )
        except ValueError as exc:
            warnings.append(f"{path.name}:{lineno}: ignored ({exc})")
    events.sort(key=lambda e: e.time)
    return events, warnings
