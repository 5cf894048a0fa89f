"""pgchaos_data_fault on a real temporary directory, with systemctl faked."""

from __future__ import annotations

import subprocess
from functools import partial
from pathlib import Path

import pgchaos_data_fault as mod
import pytest
from modhelpers import fail_module, module_env, run_main, run_module


@pytest.fixture
def data(tmp_path: Path) -> Path:
    member = tmp_path / "etcd" / "member"
    (member / "wal").mkdir(parents=True)
    (member / "wal" / "0.wal").write_text("raft log\n")
    return member


run = partial(run_module, mod.main)
fail = partial(fail_module, mod.main)


def aside(path: Path) -> Path:
    return path.with_name(path.name + ".pgchaos-lost")


def test_loss_stops_the_service_then_moves_the_data_aside_with_a_marker(data: Path) -> None:
    result, calls = run(path=str(data), state="lost", service="etcd")
    assert result["changed"] is True
    assert result["before"] == "present"
    assert calls == [["systemctl", "stop", "etcd"]]
    assert not data.exists()
    assert (aside(data) / "wal" / "0.wal").read_text() == "raft log\n"
    assert (aside(data) / mod.ASIDE_MARKER).is_file()
    assert result["dead_man"] is None


def test_a_second_loss_changes_nothing(data: Path) -> None:
    run(path=str(data), state="lost")
    result, calls = run(path=str(data), state="lost", service="etcd")
    assert result["changed"] is False
    assert result["before"] == "lost"
    assert calls == []


def test_check_mode_predicts_and_moves_nothing(data: Path) -> None:
    result, calls = run(check_mode=True, path=str(data), state="lost", service="etcd")
    assert result["changed"] is True
    assert calls == []
    assert data.is_dir()
    assert not aside(data).exists()


def test_the_loss_is_refused_on_a_host_that_did_not_opt_in(data: Path, chaos_target: Path) -> None:
    chaos_target.unlink()
    assert "has not opted in" in fail(path=str(data), state="lost")
    assert data.is_dir()


def test_restore_puts_the_data_back_without_the_marker_and_starts_the_service(data: Path) -> None:
    run(path=str(data), state="lost")
    result, calls = run(path=str(data), state="restored", service="etcd")
    assert result["changed"] is True
    assert (data / "wal" / "0.wal").is_file()
    assert not (data / mod.ASIDE_MARKER).exists()
    assert not aside(data).exists()
    # The timer is disarmed first, whoever restores.
    assert calls[-1] == ["systemctl", "start", "etcd"]
    assert any("pgchaos-deadman-data-member.timer" in c for c in calls[0])


def test_restore_never_overwrites_a_rebuilt_directory(data: Path) -> None:
    run(path=str(data), state="lost")
    data.mkdir()
    assert "rebuilt since the loss" in fail(path=str(data), state="restored")
    assert aside(data).is_dir()


def test_discard_deletes_only_a_copy_pgchaos_moved_aside(data: Path) -> None:
    run(path=str(data), state="lost")
    data.mkdir()
    result, _ = run(path=str(data), state="discarded")
    assert result["changed"] is True
    assert not aside(data).exists()
    assert data.is_dir()


def test_discard_refuses_a_copy_without_the_marker(data: Path) -> None:
    aside(data).mkdir()
    (aside(data) / "precious").write_text("someone's\n")
    assert f"lacks the marker {mod.ASIDE_MARKER}" in fail(path=str(data), state="discarded")
    assert (aside(data) / "precious").is_file()


def test_discard_refuses_to_destroy_the_only_copy(data: Path) -> None:
    run(path=str(data), state="lost")
    assert "the only copy" in fail(path=str(data), state="discarded")
    assert aside(data).is_dir()


def test_nothing_to_lose(tmp_path: Path) -> None:
    assert "nothing to lose" in fail(path=str(tmp_path / "absent"), state="lost")


@pytest.mark.parametrize("seconds", [-1.0, float("nan"), float("inf")])
def test_dead_man_seconds_must_be_finite_and_not_negative(data: Path, seconds: float) -> None:
    assert "dead_man_seconds must be" in fail(
        path=str(data), state="lost", dead_man_seconds=seconds
    )


def test_the_dead_man_timer_is_armed_after_the_move(data: Path) -> None:
    result, calls = run(path=str(data), state="lost", service="etcd", dead_man_seconds=300)
    assert result["dead_man"] == "pgchaos-deadman-data-member"
    arm = next(c for c in calls if c[0] == "systemd-run")
    assert "--on-active=300s" in arm
    assert "--unit=pgchaos-deadman-data-member" in arm


def run_undo(data: Path, tmp_path: Path) -> None:
    """The dead-man's command itself, with a harmless stand-in for systemctl."""
    started = tmp_path / "started"
    fake = tmp_path / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$@" > {started}\n')
    fake.chmod(0o755)
    subprocess.run(mod.undo_command(str(fake), str(data), "etcd"), check=True)


def test_the_dead_man_puts_the_data_back_and_starts_the_service(data: Path, tmp_path: Path) -> None:
    run(path=str(data), state="lost")
    run_undo(data, tmp_path)
    assert (data / "wal" / "0.wal").is_file()
    assert not (data / mod.ASIDE_MARKER).exists()
    assert (tmp_path / "started").read_text() == "start etcd\n"


def test_the_dead_man_leaves_a_rebuilt_directory_alone(data: Path, tmp_path: Path) -> None:
    run(path=str(data), state="lost")
    data.mkdir()
    run_undo(data, tmp_path)
    assert list(data.iterdir()) == []
    assert aside(data).is_dir()
    assert (tmp_path / "started").read_text() == "start etcd\n"


def test_held_disarms_an_armed_timer_and_keeps_the_copy(data: Path) -> None:
    run(path=str(data), state="lost", dead_man_seconds=300)

    # systemctl answers 0 to everything: the timer is active, and stopping it works.
    with module_env(lambda argv: (0, "", "")) as commands:
        result = run_main(mod.main, {"path": str(data), "state": "held"})
    assert result["changed"] is True
    stops = [c for c in commands.calls if c[1] == "stop"]
    assert stops
    assert "pgchaos-deadman-data-member.timer" in stops[0]
    assert aside(data).is_dir()
    assert not data.exists()


def test_held_without_a_timer_changes_nothing(data: Path) -> None:
    run(path=str(data), state="lost")
    with module_env(lambda argv: (3, "", "")):
        result = run_main(mod.main, {"path": str(data), "state": "held"})
    assert result["changed"] is False
    assert aside(data).is_dir()
