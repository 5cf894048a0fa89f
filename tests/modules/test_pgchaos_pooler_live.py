"""pgchaos_pooler on a real PgBouncer 1.18 in transaction pooling, in front of a throwaway
PostgreSQL: a held client's query waits and then runs, and a PAUSE that cannot finish is
undone.  The module talks to the console the way it does on a balancer (runuser, psql
over the Unix socket as the console user pgbouncer, no password)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pgchaos_pooler as mod
import psycopg
import pytest
from ansible.module_utils import basic
from modhelpers import ModuleExit, ModuleFail, run_main

from pgchaos.localpg import LocalPostgres, free_port

PGBOUNCER = Path("/usr/sbin/pgbouncer")


@dataclass
class Bouncer:
    port: int
    socket_dir: Path
    pg: LocalPostgres

    def dsn(self, dbname: str = "pgchaos") -> str:
        return (
            f"host=127.0.0.1 port={self.port} dbname={dbname} user={self.pg.user} "
            f"password={self.pg.password} connect_timeout=5"
        )


@pytest.fixture(scope="module")
def bouncer() -> Iterator[Bouncer]:
    if not PGBOUNCER.exists():
        raise AssertionError(f"{PGBOUNCER} is missing: scripts/setup.sh installs pgbouncer")
    with LocalPostgres() as pg:
        root = Path(tempfile.mkdtemp(prefix="pgchaos-bouncer-"))
        root.chmod(0o755)
        port = free_port()
        (root / "userlist.txt").write_text(f'"{pg.user}" "{pg.password}"\n')
        (root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"pgchaos = host=127.0.0.1 port={pg.port} dbname={pg.dbname}\n"
            f"pgchaos_replicas = host=127.0.0.1 port={pg.port} dbname={pg.dbname}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir = {root}\n"
            f"logfile = {root}/pgbouncer.log\npidfile = {root}/pgbouncer.pid\n"
            f"auth_type = scram-sha-256\nauth_file = {root}/userlist.txt\n"
            "pool_mode = transaction\nignore_startup_parameters = extra_float_digits,options\n"
        )
        postgres = pwd.getpwnam("postgres")
        for path in (root, *root.iterdir()):
            os.chown(path, postgres.pw_uid, postgres.pw_gid)
        proc = subprocess.Popen(
            ["runuser", "-u", "postgres", "--", str(PGBOUNCER), str(root / "pgbouncer.ini")]
        )
        try:
            deadline = time.monotonic() + 10
            while not (root / f".s.PGSQL.{port}").exists():
                assert time.monotonic() < deadline, "PgBouncer did not start"
                time.sleep(0.05)
            yield Bouncer(port, root, pg)
        finally:
            proc.terminate()
            proc.wait(10)
            shutil.rmtree(root, ignore_errors=True)


def _module(bouncer: Bouncer, **args: Any) -> dict[str, Any]:
    """The module for real: only exit_json and fail_json are caught."""
    full = {"port": bouncer.port, "socket_dir": str(bouncer.socket_dir), "dead_man_seconds": 0}
    full.update(args)
    with (
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setattr(basic.AnsibleModule, "exit_json", _raise(ModuleExit))
        patch.setattr(basic.AnsibleModule, "fail_json", _fail)
        try:
            return run_main(mod.main, full)
        except ModuleFail as failed:
            return failed.result


def _raise(kind: type[ModuleExit]) -> Any:
    def exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
        kwargs.setdefault("changed", False)
        raise kind(kwargs)

    return exit_json


def _fail(self: basic.AnsibleModule, msg: str, **kwargs: Any) -> None:
    raise ModuleFail({"msg": msg, "failed": True, **kwargs})


def _timed_query(dsn: str, sql: str, out: dict[str, Any]) -> None:
    t0 = time.monotonic()
    try:
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
            out["rows"] = conn.execute(sql).fetchall()
    except Exception as exc:  # the test looks at it
        out["error"] = exc
    out["seconds"] = time.monotonic() - t0


def _held_query(conn: psycopg.Connection[Any], sql: str, out: dict[str, Any]) -> None:
    t0 = time.monotonic()
    try:
        out["rows"] = conn.execute(sql).fetchall()
    except Exception as exc:  # the test looks at it
        out["error"] = exc
    out["seconds"] = time.monotonic() - t0


@pytest.mark.postgres
def test_a_paused_pooler_holds_queries_and_resume_lets_them_run(bouncer: Bouncer) -> None:
    # Connected before the pause, as an application's pool is; PgBouncer then knows the
    # server's parameters, which a login while paused needs.
    early = psycopg.connect(bouncer.dsn(), autocommit=True, prepare_threshold=None)
    _timed_query(bouncer.dsn("pgchaos_replicas"), "select 1", {})
    paused = _module(bouncer, state="paused")
    assert paused["changed"] is True, paused
    assert _module(bouncer, state="paused")["changed"] is False
    assert _module(bouncer, state="resumed", _ansible_check_mode=True)["changed"] is True

    on_early: dict[str, Any] = {}
    on_new: dict[str, Any] = {}
    clients = [
        threading.Thread(target=_held_query, args=(early, "select 42", on_early)),
        threading.Thread(
            target=_timed_query, args=(bouncer.dsn("pgchaos_replicas"), "select 43", on_new)
        ),
    ]
    for client in clients:
        client.start()
    time.sleep(1.5)
    assert all(c.is_alive() for c in clients), "a query ran while the pooler was paused"

    resumed = _module(bouncer, state="resumed")
    assert resumed["changed"] is True
    for client in clients:
        client.join(10)
    early.close()
    assert "error" not in on_early, on_early
    assert "error" not in on_new, on_new
    assert on_early["rows"] == [(42,)]
    assert on_new["rows"] == [(43,)]
    assert min(on_early["seconds"], on_new["seconds"]) >= 1.5
    assert _module(bouncer, state="resumed")["changed"] is False


@pytest.mark.postgres
def test_a_pause_that_cannot_finish_is_undone(bouncer: Bouncer) -> None:
    long: dict[str, Any] = {}
    busy = threading.Thread(target=_timed_query, args=(bouncer.dsn(), "select pg_sleep(4)", long))
    busy.start()
    time.sleep(0.5)
    failed = _module(bouncer, state="paused", timeout=1)
    assert failed.get("failed"), failed
    assert "PAUSE did not finish within 1 s" in failed["msg"]
    assert 1 <= failed["pause_seconds"] < 3.5
    # Nothing is held afterwards: a new query on either database runs at once.
    for dbname in ("pgchaos", "pgchaos_replicas"):
        quick: dict[str, Any] = {}
        _timed_query(bouncer.dsn(dbname), "select 1", quick)
        assert "error" not in quick, quick
        assert quick["seconds"] < 1
    busy.join(10)
    assert "error" not in long, long
