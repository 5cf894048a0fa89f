"""pgchaos_disk_fault on a temporary directory whose free space is made small on purpose.

The filesystem's real free space is never used: `available` is replaced by a small budget
that shrinks as the fill file grows, so a test can never fill the disk it runs on.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import pgchaos_disk_fault as mod
import pytest
from modhelpers import ModuleFail, fail_module, module_env, run_main, run_module

BUDGET = 3 * 1024 * 1024


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fill = tmp_path / mod.FILL_NAME

    def available(path: str) -> int:
        return BUDGET - (fill.stat().st_size if fill.exists() else 0)

    monkeypatch.setattr(mod, "available", available)
    monkeypatch.setattr(mod, "total_size", lambda path: BUDGET)
    monkeypatch.setattr(mod, "same_filesystem", lambda a, b: False)
    # The test's directory stands for a filesystem of its own.
    monkeypatch.setattr(mod, "mount_point", lambda path: str(tmp_path))
    return tmp_path


run = partial(run_module, mod.main)
fail = partial(fail_module, mod.main)


def test_fill_takes_all_but_what_is_left(disk: Path) -> None:
    result, _ = run(path=str(disk), state="present", leave_bytes=1024 * 1024)
    assert result["changed"] is True
    assert result["available_before"] == BUDGET
    assert result["fill_bytes"] == BUDGET - 1024 * 1024
    assert result["available_after"] == 1024 * 1024
    # Allocated, not sparse: the blocks are really taken.
    assert (disk / mod.FILL_NAME).stat().st_blocks * 512 >= BUDGET - 1024 * 1024


def test_a_second_fill_changes_nothing(disk: Path) -> None:
    run(path=str(disk), state="present")
    result, calls = run(path=str(disk), state="present")
    assert result["changed"] is False
    assert calls == []


def test_check_mode_writes_nothing(disk: Path) -> None:
    result, _ = run(check_mode=True, path=str(disk), state="present")
    assert result["changed"] is True
    assert not (disk / mod.FILL_NAME).exists()


def test_the_fill_file_goes_to_the_top_of_the_filesystem(disk: Path) -> None:
    (disk / "pg_wal").mkdir()
    result, _ = run(path=str(disk / "pg_wal"), state="present")
    assert result["fill_file"] == str(disk / mod.FILL_NAME)
    assert list((disk / "pg_wal").iterdir()) == []


def test_free_deletes_the_fill_file_only_and_disarms(disk: Path) -> None:
    (disk / "pg_wal").mkdir()
    run(path=str(disk / "pg_wal"), state="present")
    result, calls = run(path=str(disk / "pg_wal"), state="absent")
    assert result["changed"] is True
    assert not (disk / mod.FILL_NAME).exists()
    assert (disk / "pg_wal").is_dir()
    assert result["available_after"] == BUDGET
    assert any("pgchaos-deadman-fill-" in arg for arg in calls[0])


def test_free_without_a_fill_changes_nothing(disk: Path) -> None:
    result, _ = run(path=str(disk), state="absent")
    assert result["changed"] is False


def test_the_root_filesystem_is_refused(disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mod, "same_filesystem", lambda a, b: True)
    assert "refusing to fill the filesystem of /" in fail(path=str(disk), state="present")
    assert not (disk / mod.FILL_NAME).exists()


def test_a_big_filesystem_is_refused_however_little_is_free(disk: Path) -> None:
    msg = fail(path=str(disk), state="present", max_fill_bytes=1024 * 1024, leave_bytes=BUDGET)
    assert "more than max_fill_bytes" in msg
    assert not (disk / mod.FILL_NAME).exists()


def test_a_host_that_did_not_opt_in_is_refused(disk: Path, chaos_target: Path) -> None:
    chaos_target.unlink()
    assert "has not opted in" in fail(path=str(disk), state="present")


def test_the_dead_man_timer_deletes_the_fill_file(disk: Path) -> None:
    result, calls = run(path=str(disk), state="present", dead_man_seconds=120)
    assert result["dead_man"] == f"pgchaos-deadman-fill-{disk.name}"
    arm = next(c for c in calls if c[0] == "systemd-run")
    assert "--on-active=120s" in arm
    assert (disk / mod.FILL_NAME).exists()
    assert arm[-3:] == ["/bin/rm", "-f", str(disk / mod.FILL_NAME)]


@pytest.mark.parametrize("args", [{"dead_man_seconds": float("nan")}, {"leave_bytes": -1}])
def test_bad_numbers_are_refused(disk: Path, args: dict[str, Any]) -> None:
    assert "must be" in fail(path=str(disk), state="present", **args)


def test_the_mount_point_of_a_path() -> None:
    assert mod.mount_point("/proc/self") == "/proc"
    assert mod.mount_point("/") == "/"


def test_no_fill_without_its_dead_man_timer(disk: Path) -> None:
    def refuse_timer(argv: list[str]) -> tuple[int, str, str]:
        return (
            (1, "", "Failed to start transient timer") if "systemd-run" in argv[0] else (0, "", "")
        )

    with module_env(refuse_timer), pytest.raises(ModuleFail) as info:
        run_main(mod.main, {"path": str(disk), "state": "present", "dead_man_seconds": 60})
    assert "dead-man timer could not be armed" in str(info.value.result["msg"])
    assert not (disk / mod.FILL_NAME).exists()
