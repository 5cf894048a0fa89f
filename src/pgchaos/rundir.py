"""Run folders: creating a fresh one safely and opening an existing one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgchaos.errors import UsageError
from pgchaos.ledger import RECORDS_FILE

RUN_FILE = "run.json"
EVENTS_FILE = "events.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.html"


def default_out() -> Path:
    """runs/<UTC timestamp>, with a suffix when two runs start within the same second."""
    base = Path("runs") / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def check_out(path: Path) -> None:
    """Fail early (before touching any server) if ``path`` cannot become a fresh run folder."""
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"--out {path}: exists and is not a directory")
        if any(path.iterdir()):
            raise UsageError(f"--out {path}: not empty; refusing to overwrite an existing run")
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"--out {path}: not writable")
        return
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"--out {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {path}: {parent} is not writable")


def create(path: Path) -> Path:
    check_out(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        # A probe file catches read-only mounts that os.access does not see for root.
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
            pass
    except OSError as exc:
        raise UsageError(f"--out {path}: cannot create run folder: {exc.strerror or exc}") from None
    return path


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write atomically so a crash never leaves a half-written metadata file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def open_run(path: Path) -> dict[str, Any]:
    """Return run.json of an existing run folder, or raise UsageError saying what is wrong."""
    if not path.exists():
        raise UsageError(f"run folder {path} does not exist")
    if not path.is_dir():
        raise UsageError(f"{path} is not a run folder (not a directory)")
    meta_path = path / RUN_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path} is not a run folder (no {RUN_FILE})") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{meta_path}: damaged ({exc})") from None
    if not isinstance(meta, dict) or meta.get("tool") != "pgchaos" or "started_at" not in meta:
        raise UsageError(f"{meta_path}: damaged (not pgchaos run metadata)")
    if not (path / RECORDS_FILE).is_file():
        raise UsageError(f"{path}: damaged run folder (no {RECORDS_FILE})")
    return meta


# Epoch seconds beyond this (the year 5138) are milliseconds or garbage.
MAX_EPOCH = 1e11


def parse_time(value: object) -> float:
    """ISO-8601 (naive means UTC) or epoch seconds, as epoch seconds."""
    if isinstance(value, bool):
        raise ValueError("not a time")
    if isinstance(value, int | float):
        return _epoch(float(value))
    if not isinstance(value, str):
        raise ValueError("not a time")
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return _epoch(number)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _epoch(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a time: {value}")
    if value > MAX_EPOCH:
        raise ValueError(f"{value:.0f} is not in epoch seconds (milliseconds?)")
    return value


def iso(epoch: float) -> str:
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
