"""What readers saw, on real servers: a primary and streaming replicas (pg_basebackup).

One replica replays with ``recovery_min_apply_delay``: its readers must be found that much
behind, and a reader balanced between it and an up-to-date replica must be found going
back in time.  A replica cut off from its primary and then promoted loses writes that
readers had seen; two primaries behind one write port break read-your-writes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from chaoshelpers import CliRunner, read_json, start_cli, wait_for_records

from pgchaos import reads
from pgchaos.localpg import LocalPostgres
from pgchaos.rundir import open_run, parse_time
from pgchaos.workload import ensure_schema

pytestmark = pytest.mark.postgres

DELAY_S = 2.0
FAST = {"fsync": "off"}


def _server(**settings: str) -> LocalPostgres:
    return LocalPostgres(settings={**FAST, **settings})


def _primary(servers: list[LocalPostgres]) -> LocalPostgres:
    """A new primary with the test role, kept in ``servers`` for the clean-up."""
    server = _server()
    servers.append(server)
    server.init()
    server.start()
    server.setup_role()
    return server


def _replica_of(primary: LocalPostgres, **settings: str) -> LocalPostgres:
    replica = _server(**settings)
    replica.init_replica_of(primary)
    replica.start()
    return replica


def _wait_for_table(server: LocalPostgres, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            row = conn.execute("select to_regclass('pgchaos_ledger_run_writer_seq')").fetchone()
            if row and row[0]:
                return
        time.sleep(0.2)
    raise AssertionError(f"the ledger table never reached the replica on port {server.port}")


def _prepare(primary: LocalPostgres, *replicas: LocalPostgres) -> None:
    with psycopg.connect(primary.dsn(), autocommit=True) as conn:
        assert ensure_schema(conn, "pgchaos_ledger")
    for replica in replicas:
        _wait_for_table(replica)


def _hosts(*servers: LocalPostgres, **extra: str) -> str:
    first = servers[0]
    params = {
        "host": ",".join("127.0.0.1" for _ in servers),
        "port": ",".join(str(s.port) for s in servers),
        "user": first.user,
        "password": first.password,
        "dbname": first.dbname,
        **extra,
    }
    return " ".join(f"{k}={v}" for k, v in params.items())


def _load(out: Path, rw: str, ro: str, seconds: float, *more: str) -> list[str]:
    return [
        "load", "--rw", rw, "--ro", ro, "--writers", "2", "--readers", "2",
        "--rw-readers", "1", "--rate", "25", "--duration", str(seconds),
        "--out", str(out), "--max-backoff", "0.3", "-q", *more,
    ]  # fmt: skip


def _kick_readers(servers: list[LocalPostgres], stop: threading.Event, every: float) -> None:
    """Cut the readers' connections now and then, so they reconnect (and maybe move)."""
    while not stop.wait(every):
        for server in servers:
            server.superuser_sql(
                "select count(pg_terminate_backend(pid)) from pg_stat_activity"
                " where application_name in ('pgchaos-ro', 'pgchaos-rwr', 'pgchaos-rw')"
            )


def _run(out: Path, args: list[str], kick: list[LocalPostgres] | None = None) -> None:
    stop = threading.Event()
    kicker = None
    proc = start_cli(out.parent, *args)
    try:
        if kick:
            wait_for_records(out)
            kicker = threading.Thread(target=_kick_readers, args=(kick, stop, 0.4))
            kicker.start()
        _, stderr = proc.communicate(timeout=60)
    finally:
        stop.set()
        if kicker:
            kicker.join()
    assert proc.returncode == 0, stderr


def _series(run: Path, endpoint: str) -> tuple[np.ndarray, np.ndarray]:
    data = reads.load(run, parse_time(open_run(run)["started_at"]))
    start = parse_time(open_run(run)["started_at"])
    return data.reads[endpoint].start - start, reads.staleness(data, endpoint)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[LocalPostgres, LocalPostgres, LocalPostgres]]:
    """A primary, an up-to-date replica and one replaying DELAY_S late."""
    servers: list[LocalPostgres] = []
    try:
        primary = _primary(servers)
        fast = _replica_of(primary)
        servers.append(fast)
        slow = _replica_of(primary, recovery_min_apply_delay=f"'{int(DELAY_S * 1000)}ms'")
        servers.append(slow)
        _prepare(primary, fast, slow)
        yield primary, fast, slow
    finally:
        for server in servers:
            server.destroy()


def test_staleness_of_a_delayed_replica(cluster: tuple, cli: CliRunner, tmp_path: Path) -> None:
    primary, _, slow = cluster
    run = tmp_path / "run"
    _run(run, _load(run, primary.dsn(), slow.dsn(), 7))
    result = cli("verify", str(run), "--dsn", primary.dsn())
    assert result.returncode == 0, result.stdout + result.stderr
    at, behind = _series(run, "ro")
    settled = behind[at > DELAY_S + 1.5]
    assert len(settled) > 50
    # Every read of the delayed replica is DELAY_S behind, within half a second.
    assert np.all(np.abs(settled - DELAY_S) <= 0.5), settled
    assert abs(float(np.median(settled)) - DELAY_S) <= 0.5
    checked = read_json(run / "verify.json")["reads"]
    assert abs(checked["staleness_s"]["ro"]["max"] - DELAY_S) <= 0.5
    # The readers stayed on one server: never back in time; the write port is never stale.
    assert checked["non_monotonic"] == {"ro": 0, "rwr": 0}
    assert checked["read_your_writes"]["count"] == 0
    assert checked["staleness_s"]["rwr"]["max"] == 0
    assert "staleness ro max" in result.stdout


def test_reader_balanced_over_two_replicas_goes_back_in_time(
    cluster: tuple, cli: CliRunner, tmp_path: Path
) -> None:
    primary, fast, slow = cluster
    run = tmp_path / "run"
    ro = _hosts(fast, slow, load_balance_hosts="random")
    _run(run, _load(run, primary.dsn(), ro, 8), kick=[fast, slow])
    result = cli("verify", str(run), "--dsn", primary.dsn())
    assert result.returncode == 0, result.stdout + result.stderr
    data = reads.load(run, parse_time(open_run(run)["started_at"]))
    found = reads.non_monotonic(data, "ro")
    assert found["count"] > 0
    assert found["readers"] >= 1
    servers = {(e["on"], e["later_on"]) for e in found["examples"]}
    # Back in time means from the up-to-date replica to the delayed one.
    assert (f"127.0.0.1:{fast.port}", f"127.0.0.1:{slow.port}") in servers
    summary_cli = cli("report", str(run), "-q")
    assert summary_cli.returncode == 0, summary_cli.stderr
    summary = read_json(run / "summary.json")
    assert summary["per_endpoint"]["ro"]["read_anomalies"]["non_monotonic"]["count"] > 0


def test_reconnecting_to_one_replica_stays_monotonic(
    cluster: tuple, cli: CliRunner, tmp_path: Path
) -> None:
    primary, fast, _ = cluster
    run = tmp_path / "run"
    _run(run, _load(run, primary.dsn(), _hosts(fast), 5), kick=[fast])
    result = cli("verify", str(run), "--dsn", primary.dsn())
    assert result.returncode == 0, result.stdout + result.stderr
    checked = read_json(run / "verify.json")["reads"]
    assert checked["non_monotonic"] == {"ro": 0, "rwr": 0}
    connects = (run / "records.csv").read_text().count(",ro,connect,")
    assert connects > 4, "the readers were never made to reconnect"


def test_writes_seen_then_lost_when_a_cut_off_replica_is_promoted(
    cli: CliRunner, tmp_path: Path
) -> None:
    servers: list[LocalPostgres] = []
    try:
        primary = _primary(servers)
        standby = _replica_of(primary)
        servers.append(standby)
        _prepare(primary, standby)
        run = tmp_path / "run"
        rw = _hosts(primary, standby, target_session_attrs="read-write")
        ro = _hosts(primary, standby)
        proc = start_cli(run.parent, *_load(run, rw, ro, 9))
        wait_for_records(run)
        time.sleep(1.5)
        # The standby stops receiving: from now on every write exists on the primary only.
        standby.superuser_sql("alter system set primary_conninfo = ''")
        standby.superuser_sql("select pg_reload_conf()")
        time.sleep(2.0)
        primary.stop("immediate")
        # Readers may use a standby, writers may not: for a while the readers read the
        # standby's past, then everyone moves on to the promoted standby.
        time.sleep(1.5)
        standby.promote()
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 0, stderr
        result = cli("verify", str(run), "--dsn", standby.dsn())
        assert result.returncode == 1, result.stdout + result.stderr
        verified = read_json(run / "verify.json")
        assert verified["lost"] > 10
        seen_lost = verified["reads"]["seen_then_lost"]
        assert 0 < seen_lost["count"] <= verified["lost"]
        example = seen_lost["examples"][0]
        assert example["acknowledged_by"] == f"127.0.0.1:{primary.port}"
        assert example["seen_on"] == f"127.0.0.1:{primary.port}"
        assert "seen then LOST" in result.stdout
        # The readers that moved to the promoted standby saw less than before.
        assert verified["reads"]["non_monotonic"]["ro"] > 0
    finally:
        for server in servers:
            server.destroy()


def test_two_primaries_behind_the_write_port_break_read_your_writes(
    cli: CliRunner, tmp_path: Path
) -> None:
    servers: list[LocalPostgres] = []
    try:
        one, two = _primary(servers), _primary(servers)
        _prepare(one)
        _prepare(two)
        run = tmp_path / "run"
        rw = _hosts(one, two, load_balance_hosts="random")
        _run(run, _load(run, rw, one.dsn(), 6), kick=[one, two])
        result = cli("verify", str(run), "--dsn", one.dsn())
        # Half the writes are on the other server (lost, seen from here): exit 1 anyway;
        # what matters is that the write port's readers missed acknowledged writes.
        assert result.returncode == 1
        ryw = read_json(run / "verify.json")["reads"]["read_your_writes"]
        assert ryw["count"] > 0
        assert {e["server"] for e in ryw["examples"]} <= {
            f"127.0.0.1:{one.port}",
            f"127.0.0.1:{two.port}",
        }
    finally:
        for server in servers:
            server.destroy()
