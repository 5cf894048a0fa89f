"""Fixtures: a real throwaway PostgreSQL and a helper that runs the real CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from chaoshelpers import CliRunner, Result, clean_env

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
            env={**clean_env(), **(env or {})},
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run
