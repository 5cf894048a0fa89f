"""Fixtures: a real throwaway PostgreSQL and a helper that runs the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgchaos.localpg import LocalPostgres, LocalPostgresError


@pytest.fixture(scope="session")
def pg() -> Iterator[LocalPostgres]:
    """One server for the whole session; tests that stop it must start it again."""
    try:
        server = LocalPostgres(settings={"fsync": "off", "max_connections": "60"})
        server.init()
        server.start()
        server.setup_role()
    except LocalPostgresError as exc:
        pytest.fail(f"cannot start the test PostgreSQL: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def running_pg(pg: LocalPostgres) -> Iterator[LocalPostgres]:
    """The server, guaranteed up again after the test even if the test stopped it."""
    yield pg
    if not (pg.data / "postmaster.pid").exists():
        pg.start()


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


CliRunner = Callable[..., Result]


def _clean_env() -> dict[str, str]:
    # PG* variables of whoever runs the tests must not leak into the tool.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


@pytest.fixture
def cli(tmp_path: Path) -> CliRunner:
    """Run ``python -m pgchaos ...`` in a scratch working directory."""

    def run(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "pgchaos", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**_clean_env(), **(env or {})},
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


def start_cli(cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pgchaos", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(),
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
