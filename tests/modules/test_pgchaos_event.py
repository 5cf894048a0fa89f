"""pgchaos_event writes lines that pgchaos' own events reader accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pgchaos_event as mod
import pytest
from modhelpers import ModuleFail, module_env, run_main

from pgchaos.events import read_events
from pgchaos.rundir import EVENTS_FILE


def run(check_mode: bool = False, **args: Any) -> dict[str, Any]:
    with module_env():
        return run_main(mod.main, args, check_mode=check_mode)


def test_lines_are_read_back_by_the_report_tool(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "r1"
    path = run_dir / EVENTS_FILE
    first = run(
        path=str(path), action="kill", target="pg1", scenario="leader-kill", detail="SIGKILL"
    )
    run(path=str(path), action="start", target="pg1")
    assert first["changed"] is True
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0]) == first["event"]
    assert lines[0] == first["line"]
    assert json.loads(lines[1]).keys() == {"time", "kind", "action", "target"}
    events, warnings = read_events(run_dir)
    assert warnings == []
    assert [(e.action, e.target, e.scenario, e.detail) for e in events] == [
        ("kill", "pg1", "leader-kill", "SIGKILL"),
        ("start", "pg1", None, None),
    ]
    assert events[0].time <= events[1].time


def test_time_is_utc_with_microseconds(tmp_path: Path) -> None:
    result = run(path=str(tmp_path / "e.jsonl"), action="a", target="t")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", result["event"]["time"])


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.jsonl"
    result = run(check_mode=True, path=str(path), action="kill", target="pg1")
    assert result["changed"] is True
    assert not path.parent.exists()


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with module_env(), pytest.raises(ModuleFail) as info:
        run_main(mod.main, {"path": str(tmp_path), "action": "kill", "target": "pg1"})
    assert "is a directory" in info.value.result["msg"]


@pytest.mark.parametrize("field", ["action", "target"])
def test_empty_fields_are_refused(tmp_path: Path, field: str) -> None:
    args = {"path": str(tmp_path / "e.jsonl"), "action": "kill", "target": "pg1", field: "  "}
    with module_env(), pytest.raises(ModuleFail) as info:
        run_main(mod.main, args)
    assert info.value.result["msg"] == f"{field} must not be empty"


def test_kind_method_and_the_moment_it_took_effect(tmp_path: Path) -> None:
    run_dir = tmp_path / "r"
    path = run_dir / EVENTS_FILE
    run(
        path=str(path),
        kind="fault",
        action="node",
        target="pg1",
        method="docker",
        time="1764650000.25",
    )
    run(path=str(path), kind="recover", action="start", target="pg1", time="2025-12-02T04:33:20.5")
    events, warnings = read_events(run_dir)
    assert warnings == []
    assert [(e.kind, e.method, e.time) for e in events] == [
        ("fault", "docker", 1764650000.25),
        ("recover", None, 1764650000.5),
    ]


@pytest.mark.parametrize("when", ["soon", "nan", "1764650000250"])
def test_a_time_that_is_not_one_is_refused(tmp_path: Path, when: str) -> None:
    args = {"path": str(tmp_path / "e.jsonl"), "action": "kill", "target": "pg1", "time": when}
    with module_env(), pytest.raises(ModuleFail) as info:
        run_main(mod.main, args)
    assert "is not ISO-8601 or epoch seconds" in info.value.result["msg"]
    assert not (tmp_path / "e.jsonl").exists()
