"""Per-endpoint availability state, turned into one console line per change."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pgchaos.classify import OTHER, describe

STARTING = "starting"
UP = "up"


@dataclass(frozen=True, slots=True)
class Identity:
    """Which server answered: cached per connection, refreshed on reconnect and periodically."""

    server: str = ""
    role: str = ""
    timeline: str = ""

    def describe(self) -> str:
        if not self.server:
            return "unknown server"
        parts = [self.role] if self.role else []
        if self.timeline:
            parts.append(f"timeline {self.timeline}")
        return f"{self.server} ({', '.join(parts)})" if parts else self.server


@dataclass
class _EndpointState:
    status: str = STARTING
    since: float = 0.0
    identity: Identity = field(default_factory=Identity)
    announced: set[str] = field(default_factory=set)


class StateTracker:
    """Called by every worker after every operation, so the no-change path takes no lock."""

    def __init__(self, endpoints: list[str], emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._lock = threading.Lock()
        self._states = {name: _EndpointState() for name in endpoints}
        # Only the write port (writers and its readers, "rwr") has a single meaningful
        # server; ro may be balanced
        # over several replicas, where a change of server is business as usual.
        self._follow_identity = {"rw", "rwr"}

    def current(self, endpoint: str) -> tuple[str, Identity]:
        state = self._states[endpoint]
        return state.status, state.identity

    def success(
        self, endpoint: str, identity: Identity, started: float, finished: float | None = None
    ) -> None:
        state = self._states[endpoint]
        if state.status == UP and (
            state.identity == identity or endpoint not in self._follow_identity
        ):
            return
        if state.status not in (UP, STARTING) and started < state.since:
            # An operation that was in flight when trouble began proves nothing.
            return
        with self._lock:
            now = time.time() if finished is None else finished
            if state.status == STARTING:
                self._emit(f"{endpoint}: up, served by {identity.describe()}")
            elif state.status != UP:
                self._emit(
                    f"{endpoint}: back, served by {identity.describe()}, "
                    f"after {now - state.since:.1f} s"
                )
            elif state.identity != identity:
                self._emit(f"{endpoint}: now served by {identity.describe()}")
            state.status = UP
            state.identity = identity
            state.announced.clear()

    def failure(self, endpoint: str, error_class: str, message: str, started: float) -> None:
        state = self._states[endpoint]
        if error_class in state.announced:
            return
        with self._lock:
            if error_class in state.announced:
                return
            if state.status in (UP, STARTING):
                # The outage began when the failed operation was sent, not when it
                # finally failed (a hung server takes seconds to give up on).
                state.since = started
            wording = describe(error_class)
            if error_class == OTHER:
                wording = f"error: {message}"
            self._emit(f"{endpoint}: {wording}")
            state.status = error_class
            state.announced.add(error_class)
