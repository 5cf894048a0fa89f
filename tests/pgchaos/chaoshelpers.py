from __future__ import annotations

import csv
import json
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
