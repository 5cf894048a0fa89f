"""Console output: timestamped state-change lines and the live status line."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from rich.console import Console as RichConsole
from rich.live import Live
from rich.text import Text


class Console:
    """State-change lines go to stdout (unless quiet) and always to the run's console.log."""

    def __init__(self, *, quiet: bool, log_path: Path | None = None) -> None:
        self.quiet = quiet
        self._rich = RichConsole(highlight=False, soft_wrap=True)
        self._lock = threading.Lock()
        self._log: IO[str] | None = (
            log_path.open("a", encoding="utf-8", buffering=1) if log_path else None
        )
        self._live: Live | None = None

    def line(self, message: str, when: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(time.time() if when is None else when))
        text = f"[{stamp}] {message}"
        with self._lock:
            if self._log is not None:
                try:
                    self._log.write(text + "\n")
                except OSError:
                    # A full disk must not stop the run from ending cleanly; the
                    # ledger's own failure is what ends it and is reported.
                    self._log = None
            if not self.quiet:
                target = self._live.console if self._live is not None else self._rich
                target.print(Text(text))
                if self._live is None:
                    sys.stdout.flush()

    def start_status(self, render: Callable[[], str]) -> None:
        """Show a live status line, only on a terminal: in a pipe it would be noise."""
        if self.quiet or not self._rich.is_terminal:
            return

        class _Status:
            def __rich__(self) -> Text:
                return Text(render(), style="bold")

        self._live = Live(_Status(), console=self._rich, refresh_per_second=2, transient=True)
        self._live.start()

    def stop_status(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def close(self) -> None:
        self.stop_status()
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None

    def __enter__(self) -> Console:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
