"""The live status line of ``pgchaos load``: rates, errors, states, current primary."""

from __future__ import annotations

import time

from pgchaos.ledger import LedgerWriter
from pgchaos.state import StateTracker
from pgchaos.workload import Worker


class StatusLine:
    def __init__(
        self,
        workers: list[Worker],
        tracker: StateTracker,
        ledger: LedgerWriter,
        started: float,
        duration: float,
    ) -> None:
        self.workers = workers
        self.tracker = tracker
        self.ledger = ledger
        self.started = started
        self.duration = duration
        self._last: dict[str, tuple[float, int]] = {}
        self._rates: dict[str, float] = {}

    def render(self) -> str:
        now = time.monotonic()
        parts = []
        for endpoint in ("rw", "ro"):
            mine = [w for w in self.workers if w.endpoint == endpoint]
            if not mine:
                continue
            ok = sum(w.ok for w in mine)
            errors = sum(w.errors for w in mine)
            last_t, last_ok = self._last.get(endpoint, (now, ok))
            if now - last_t >= 1.0:
                self._rates[endpoint] = (ok - last_ok) / (now - last_t)
                self._last[endpoint] = (now, ok)
            elif endpoint not in self._last:
                self._last[endpoint] = (now, ok)
            state, _ = self.tracker.current(endpoint)
            parts.append(f"{endpoint} {self._rates.get(endpoint, 0.0):.0f}/s err {errors} {state}")
        if any(w.endpoint == "rw" for w in self.workers):
            _, ident = self.tracker.current("rw")
            if ident.server:
                timeline = f" tl {ident.timeline}" if ident.timeline else ""
                parts.append(f"primary {ident.server}{timeline}")
        elapsed = time.time() - self.started
        total = f"/{self.duration:.0f}" if self.duration else ""
        parts.append(f"{self.ledger.count} rec {elapsed:.0f}{total} s")
        return " | ".join(parts)
