"""Helpers shared by the pgchaos tests (kept out of conftest.py so they import by a unique name)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def records(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "records.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def read_json(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    assert isinstance(data, dict)
    return data


def assert_one_line_error(stderr: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    assert lines[0].startswith("pgchaos: error: "), lines[0]
    assert "Traceback" not in stderr


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


CliRunner = Callable[..., Result]


def clean_env() -> dict[str, str]:
    # PG* variables of whoever runs the tests must not leak into the tool.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def start_cli(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pgchaos", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )


def wait_for_records(run_dir: Path, minimum: int = 5, timeout: float = 15) -> None:
    """Block until the run has written some records (the workload is really going)."""
    deadline = time.monotonic() + timeout
    path = run_dir / "records.csv"
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().count("\n") > minimum:
            return
        time.sleep(0.1)
    raise AssertionError(f"no records appeared in {path}")
