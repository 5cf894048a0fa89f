"""The members' archive_command (roles/patroni/files/pgchaos-pgbackrest-archive-push) against a
stand-in pgBackRest: what it passes through, and the one refusal it turns into success.

The stand-in is a script named pgbackrest first on PATH that records its arguments and
exits with the code the test asks for; the pg_wal directory is a temporary one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "roles" / "patroni" / "files" / "pgchaos-pgbackrest-archive-push"
DUPLICATE = 45  # pgBackRest: the archive holds this WAL file with another checksum


@pytest.fixture
def pg_wal(tmp_path: Path) -> Path:
    wal = tmp_path / "data" / "pg_wal"
    wal.mkdir(parents=True)
    return wal


def push(
    tmp_path: Path, wal_dir: Path, name: str, pgbackrest_rc: int
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "pgbackrest"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/calls"\nexit {pgbackrest_rc}\n')
    fake.chmod(0o755)
    (wal_dir / name).write_bytes(b"")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(
        [str(SCRIPT), "pgchaos", str(wal_dir / name)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def history(wal_dir: Path, *timelines: int) -> None:
    for tli in timelines:
        (wal_dir / f"{tli:08X}.history").write_text("")


def test_passes_the_stanza_and_path_to_archive_push(tmp_path: Path, pg_wal: Path) -> None:
    result = push(tmp_path, pg_wal, "000000010000000000000003", 0)
    assert result.returncode == 0
    calls = (tmp_path / "calls").read_text().split()
    assert calls == ["--stanza=pgchaos", "archive-push", str(pg_wal / "000000010000000000000003")]


@pytest.mark.parametrize("rc", [1, 82, 103])
def test_other_failures_are_passed_through(tmp_path: Path, pg_wal: Path, rc: int) -> None:
    history(pg_wal, 2, 3)
    assert push(tmp_path, pg_wal, "000000010000000000000003", rc).returncode == rc


@pytest.mark.parametrize(
    "name",
    ["00000011000000000000009D", "0000000C0000000000000044.partial", "000000090000000100000000"],
)
def test_a_duplicate_on_an_older_timeline_is_skipped(
    tmp_path: Path, pg_wal: Path, name: str
) -> None:
    # 0x12 > 0x11, 0x0C and 0x09: hexadecimal order, not the digits' string order alone.
    history(pg_wal, 2, 0x0A, 0x12)
    result = push(tmp_path, pg_wal, name, DUPLICATE)
    assert result.returncode == 0
    assert "not archived again" in result.stderr
    assert "older than this member's 18" in result.stderr


def test_a_duplicate_on_the_newest_timeline_still_fails(tmp_path: Path, pg_wal: Path) -> None:
    history(pg_wal, 2, 0x1A)
    result = push(tmp_path, pg_wal, "0000001A00000000000000B8", DUPLICATE)
    assert result.returncode == DUPLICATE
    assert result.stderr == ""


def test_a_duplicate_without_any_timeline_history_still_fails(tmp_path: Path, pg_wal: Path) -> None:
    assert push(tmp_path, pg_wal, "000000010000000000000005", DUPLICATE).returncode == DUPLICATE


@pytest.mark.parametrize(
    "name", ["00000003.history", "000000020000000000000004.00000028.backup", "RECOVERYXLOG"]
)
def test_a_duplicate_that_is_not_a_segment_still_fails(
    tmp_path: Path, pg_wal: Path, name: str
) -> None:
    history(pg_wal, 2, 3, 4, 5)
    assert push(tmp_path, pg_wal, name, DUPLICATE).returncode == DUPLICATE
