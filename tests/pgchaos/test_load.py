"""The workload against a real server: healthy, read-only, killed connections, restarts."""

from __future__ import annotations

import csv
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from chaoshelpers import (
    CliRunner,
    clean_env,
    read_json,
    records,
    start_cli,
    wait_for_records,
)

from pgchaos.localpg import PG_BIN, LocalPostgres, free_port
from pgchaos.workload import ensure_schema

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def healthy_run(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("healthy") / "run"
    proc = start_cli(
        out.parent,
        "load",
        "--rw", pg.dsn(),
        "--ro", pg.dsn(),
        "--writers", "3",
        "--readers", "2",
        "--rate", "50",
        "--duration", "3",
        "--out", str(out),
    )  # fmt: skip
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    (out / "stdout.txt").write_text(stdout)
    return out


def test_healthy_run_records_operations(healthy_run: Path, pg: LocalPostgres) -> None:
    rows = records(healthy_run)
    writes = [r for r in rows if r["kind"] == "write"]
    reads = [r for r in rows if r["kind"] == "read" and r["endpoint"] == "ro"]
    rw_reads = [r for r in rows if r["kind"] == "read" and r["endpoint"] == "rwr"]
    # 3 writers and 2 readers at 50/s for 3 s, give or take start-up.
    assert 250 <= len(writes) <= 460
    assert 150 <= len(reads) <= 310
    # one reader on the write port by default
    assert 75 <= len(rw_reads) <= 155
    assert {r["role"] for r in rw_reads} == {"primary"}
    assert all(r["outcome"] == "ok" and r["error_class"] == "" for r in writes + reads)
    assert {r["server"] for r in writes} == {f"127.0.0.1:{pg.port}"}
    assert {r["role"] for r in writes} == {"primary"}
    assert {r["timeline"] for r in writes} == {"1"}
    assert len({r["id"] for r in writes}) == len(writes)
    assert all(len(r["seen"].split()) == 3 for r in reads), "a read did not say what it saw"
    assert all(r["lsn"] for r in reads)
    meta = read_json(healthy_run / "run.json")
    assert meta["status"] == "finished"
    assert meta["counts"]["records"] == len(rows)
    assert pg.password not in (healthy_run / "run.json").read_text()
    stdout = (healthy_run / "stdout.txt").read_text()
    assert f"rw: up, served by 127.0.0.1:{pg.port} (primary, timeline 1)" in stdout


def test_verify_finds_every_acknowledged_write(healthy_run: Path, cli: CliRunner) -> None:
    result = cli("verify", str(healthy_run), "--dsn", _dsn_of(healthy_run))
    assert result.returncode == 0, result.stderr
    verified = read_json(healthy_run / "verify.json")
    acked = sum(1 for r in records(healthy_run) if r["kind"] == "write" and r["outcome"] == "ok")
    assert verified["acknowledged"] == {"present": acked, "lost": 0}
    assert verified["writes"] == acked
    assert verified["ghosts"] == 0
    assert verified["unrecorded_rows"] == 0


def test_verify_without_dsn_uses_run_endpoint_and_pgpassword(
    healthy_run: Path, cli: CliRunner, pg: LocalPostgres
) -> None:
    result = cli("verify", str(healthy_run), env={"PGPASSWORD": pg.password})
    assert result.returncode == 0, result.stderr
    assert "0 LOST" in result.stdout


def _dsn_of(run_dir: Path) -> str:
    # The tests' server always uses the same password; run.json never stores it.
    endpoint = read_json(run_dir / "run.json")["endpoints"]["rw"]
    assert isinstance(endpoint, str)
    return f"{endpoint} password=pgchaos-secret"


def test_deleted_rows_are_reported_lost(pg: LocalPostgres, cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = cli(
        "load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "2", "--readers", "0",
        "--rate", "100", "--duration", "1.5", "--out", str(out), "-q",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    acked = [r["id"] for r in records(out) if r["kind"] == "write" and r["outcome"] == "ok"]
    victims = sorted(acked[10:17])
    ids = ", ".join(f"'{v}'" for v in victims)
    assert pg.superuser_sql(f"delete from pgchaos_ledger where id in ({ids})") == ""
    result = cli("verify", str(out), "--dsn", pg.dsn())
    assert result.returncode == 1
    assert "7 LOST" in result.stdout
    verified = read_json(out / "verify.json")
    assert verified["lost"] == 7
    assert verified["acknowledged"]["present"] == len(acked) - 7
    assert sorted(w["id"] for w in verified["lost_writes"]) == victims
    assert verified["method"] == "copy+join"
    # On a read-only server (a replica) no temp table can be made: same answer, batched.
    read_only = pg.dsn(options="-c default_transaction_read_only=on")
    result = cli("verify", str(out), "--dsn", read_only)
    assert result.returncode == 1
    again = read_json(out / "verify.json")
    assert again["method"] == "batched lookup (read-only server)"
    for key in ("writes", "acknowledged", "in_doubt", "failed", "lost", "unrecorded_rows"):
        assert again[key] == verified[key], key
    assert sorted(w["id"] for w in again["lost_writes"]) == victims


def test_altered_and_duplicated_rows_are_reported(
    pg: LocalPostgres, cli: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = cli(
        "load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "2", "--readers", "0",
        "--rw-readers", "0", "--rate", "100", "--duration", "1", "--out", str(out), "-q",
        "--table", "pgchaos_altered",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert cli("verify", str(out), "--dsn", pg.dsn()).returncode == 0
    acked = [r for r in records(out) if r["kind"] == "write" and r["outcome"] == "ok"]
    changed, copied = acked[5]["id"], acked[9]["id"]
    pg.superuser_sql(f"update pgchaos_altered set payload = 'tampered' where id = '{changed}'")
    pg.superuser_sql(
        "insert into pgchaos_altered (id, run_id, writer, seq, payload)"
        " select gen_random_uuid(), run_id, writer, seq, payload from pgchaos_altered"
        f" where id = '{copied}'"
    )
    for dsn, method in (
        (pg.dsn(), "copy+join"),
        (pg.dsn(options="-c default_transaction_read_only=on"), "batched lookup"),
    ):
        result = cli("verify", str(out), "--dsn", dsn)
        assert result.returncode == 1, result.stdout
        assert "1 rows ALTERED since they were written, 1 DUPLICATED rows" in result.stdout
        verified = read_json(out / "verify.json")
        assert verified["method"].startswith(method)
        assert (verified["lost"], verified["altered"], verified["duplicated"]) == (0, 1, 1)
        assert verified["altered_ids"] == [changed]
        assert verified["unrecorded_rows"] == 1


def test_a_dropped_table_has_its_own_exit_status(
    pg: LocalPostgres, cli: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = cli(
        "load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "1", "--readers", "0",
        "--rw-readers", "0", "--duration", "0.5", "--out", str(out), "-q",
        "--table", "pgchaos_dropped",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pg.superuser_sql("drop table pgchaos_dropped")
    result = cli("verify", str(out), "--dsn", pg.dsn())
    assert result.returncode == 3
    assert "table pgchaos_dropped does not exist" in result.stderr
    assert "every write of the run is gone" in result.stderr


def test_read_only_rw_endpoint_is_classified(
    pg: LocalPostgres, cli: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        assert ensure_schema(conn, "pgchaos_ledger")
    read_only = pg.dsn(options="-c default_transaction_read_only=on")
    result = cli(
        "load", "--rw", read_only, "--ro", pg.dsn(), "--writers", "2", "--readers", "1",
        "--rate", "20", "--duration", "2", "--out", str(out), "--max-backoff", "0.2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    writes = [r for r in records(out) if r["kind"] == "write"]
    assert len(writes) >= 10
    assert {r["error_class"] for r in writes} == {"read_only"}
    # The server answered, so the write surely did not happen: failed, not in doubt.
    assert {r["outcome"] for r in writes} == {"failed"}
    assert "rw: read-only transaction" in result.stdout
    reads = [r for r in records(out) if r["kind"] == "read"]
    assert reads
    assert all(r["outcome"] == "ok" for r in reads)


@pytest.mark.slow
def test_killed_connections_make_writes_in_doubt(
    pg: LocalPostgres, cli: CliRunner, tmp_path: Path
) -> None:
    """Writes blocked on a lock whose backend is terminated: sent, never answered."""
    out = tmp_path / "run"
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        assert ensure_schema(conn, "pgchaos_ledger")
    locker = subprocess.Popen(
        [
            "runuser", "-u", "postgres", "--", str(PG_BIN / "psql"), "-X", "-q",
            "-h", str(pg.socket_dir), "-p", str(pg.port), "-U", "postgres",
            "-d", f"dbname={pg.dbname} application_name=pgchaos-locker",
            "-c", "begin; lock table pgchaos_ledger in access exclusive mode;"
            " select pg_sleep(60); commit;",
        ],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for_sql(
            pg,
            "select count(*) from pg_stat_activity"
            " where application_name = 'pgchaos-locker' and wait_event = 'PgSleep'",
            1,
        )
        load = start_cli(
            tmp_path, "load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "3",
            "--readers", "0", "--rate", "20", "--duration", "3", "--out", str(out),
            "--max-backoff", "0.2",
        )  # fmt: skip
        _wait_for_sql(
            pg,
            "select count(*) from pg_stat_activity where application_name ="
            " 'pgchaos-rw' and wait_event_type = 'Lock'",
            3,
        )
        # One statement kills the blocked writers and the lock holder together, so
        # no writer can reconnect and block again in between.
        pg.superuser_sql(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where (application_name = 'pgchaos-rw' and wait_event_type = 'Lock')"
            " or application_name = 'pgchaos-locker'"
        )
        stdout, stderr = load.communicate(timeout=30)
    finally:
        locker.kill()
        locker.wait()
    assert load.returncode == 0, stderr
    writes = [r for r in records(out) if r["kind"] == "write"]
    doubtful = [r for r in writes if r["outcome"] == "in_doubt"]
    assert len(doubtful) == 3, doubtful
    assert {r["error_class"] for r in doubtful} == {"connection_lost"}
    assert "rw: connection lost" in stdout
    assert "rw: back" in stdout
    result = cli("verify", str(out), "--dsn", pg.dsn())
    assert result.returncode == 0, result.stdout + result.stderr
    verified = read_json(out / "verify.json")
    assert verified["in_doubt"] == {"present": 0, "absent": 3}
    assert verified["lost"] == 0


def _wait_for_sql(pg: LocalPostgres, query: str, expected: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(pg.superuser_sql(query).strip() or 0) >= expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {query!r} to reach {expected}")


@pytest.mark.slow
def test_server_stop_is_survived_and_measured(
    running_pg: LocalPostgres, cli: CliRunner, tmp_path: Path
) -> None:
    pg = running_pg
    out = tmp_path / "run"
    proc = start_cli(
        tmp_path,
        "load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "3", "--readers", "2",
        "--rate", "50", "--duration", "9", "--out", str(out), "--max-backoff", "0.5",
    )  # fmt: skip
    wait_for_records(out, minimum=50)
    time.sleep(1.5)
    stopped_at = time.time()
    pg.stop(mode="immediate")
    time.sleep(3)
    pg.start()
    started_at = time.time()
    stdout, stderr = proc.communicate(timeout=40)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "rw: connection lost" in stdout or "rw: connection refused" in stdout
    assert "rw: back, served by" in stdout

    result = cli("report", str(out))
    assert result.returncode == 0, result.stderr
    summary = read_json(out / "summary.json")
    for endpoint in ("rw", "ro"):
        figures = summary["per_endpoint"][endpoint]
        windows = figures["unavailability_windows"]
        longest = max(windows, key=lambda w: w["duration_s"])
        run_start = summary["started_at"]
        assert run_start
        begin = _epoch(longest["start"])
        end = _epoch(longest["end"])
        assert abs(begin - stopped_at) < 1.0, (endpoint, longest, stopped_at)
        assert abs(end - started_at) < 1.0, (endpoint, longest, started_at)
        assert longest["recovered"]
        assert figures["longest_unavailability_s"] == longest["duration_s"]
        assert abs(longest["duration_s"] - (started_at - stopped_at)) < 1.0
        assert figures["failed_ops"] + figures["in_doubt_ops"] + figures["failed_connects"] > 0
    result = cli("verify", str(out), "--dsn", pg.dsn())
    assert result.returncode == 0, result.stdout
    assert read_json(out / "verify.json")["lost"] == 0
    (tmp_path.parent / "stop-test-run.txt").write_text(str(out))


def _epoch(text: str) -> float:
    from pgchaos.rundir import parse_time

    return parse_time(text)


def test_ctrl_c_ends_the_run_cleanly(pg: LocalPostgres, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = start_cli(
        tmp_path, "load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "2",
        "--readers", "1", "--out", str(out),
    )  # fmt: skip
    wait_for_records(out, minimum=20)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    meta = read_json(out / "run.json")
    assert meta["status"] == "interrupted"
    assert meta["ended_at"]
    assert meta["counts"]["records"] == len(records(out)) > 20
    assert "done:" in stdout


def _postgres_pids(pg: LocalPostgres) -> list[int]:
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            pids.append(int(stat.parent.name))
    return pids


@pytest.mark.slow
def test_hung_server_does_not_freeze_the_tool(running_pg: LocalPostgres, tmp_path: Path) -> None:
    """SIGSTOP every server process: the kernel still accepts connections, nobody answers."""
    pg = running_pg
    out = tmp_path / "run"
    proc = start_cli(
        tmp_path, "load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "2",
        "--readers", "1", "--rate", "20", "--duration", "9", "--out", str(out),
        "--statement-timeout", "1", "--connect-timeout", "2", "--max-backoff", "0.3",
    )  # fmt: skip
    wait_for_records(out, minimum=20)
    pids = _postgres_pids(pg)
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        time.sleep(4.5)
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    writes = [r for r in records(out) if r["kind"] == "write"]
    hung = [r for r in writes if r["error_class"] == "timeout"]
    # Each writer's blocked insert was cut by the watchdog after statement timeout + 2 s.
    assert len(hung) >= 2, writes
    assert {r["outcome"] for r in hung} == {"in_doubt"}
    assert all(2900 <= float(r["latency_ms"]) <= 4500 for r in hung), hung
    assert "rw: timeout" in stdout
    assert "rw: back" in stdout
    ok_after = [
        r for r in writes if r["outcome"] == "ok" and float(r["time"]) > float(hung[-1]["time"])
    ]
    assert ok_after, "writes never recovered after the server was resumed"


def test_ghost_commits_are_found(healthy_run: Path, cli: CliRunner, tmp_path: Path) -> None:
    """Writes recorded as failed or in doubt that are in the table anyway: ghosts."""
    run = tmp_path / "run"
    shutil.copytree(healthy_run, run)
    for name in ("verify.json", "summary.json"):
        (run / name).unlink(missing_ok=True)
    path = run / "records.csv"
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    outcome, kind, row_id = header.index("outcome"), header.index("kind"), header.index("id")
    writes = [r for r in rows[1:] if r[kind] == "write"]
    for r in writes[:2]:
        r[outcome] = "failed"
    writes[2][outcome] = "in_doubt"
    with path.open("w", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerows(rows)
    result = cli("verify", str(run), "--dsn", _dsn_of(run))
    assert result.returncode == 0, result.stdout + result.stderr
    verified = read_json(run / "verify.json")
    assert verified["ghosts"] == 3
    assert verified["failed"] == {"present": 2, "absent": 0}
    assert verified["in_doubt"] == {"present": 1, "absent": 0}
    assert verified["lost"] == 0
    assert {g["id"] for g in verified["ghost_writes"]} == {r[row_id] for r in writes[:3]}
    assert cli("report", str(run), "-q").returncode == 0
    assert read_json(run / "summary.json")["verify"]["ghosts"] == 3


def test_pid_file_lets_a_playbook_stop_a_background_run(pg: LocalPostgres, tmp_path: Path) -> None:
    out = tmp_path / "run"
    pid_file = tmp_path / "pids" / "load.pid"
    pid_file.parent.mkdir()
    proc = start_cli(
        tmp_path, "load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "1",
        "--readers", "1", "--out", str(out), "--pid-file", str(pid_file), "-q",
    )  # fmt: skip
    wait_for_records(out, minimum=10)
    assert pid_file.read_text() == f"{proc.pid}\n"
    os.kill(int(pid_file.read_text()), signal.SIGINT)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert not pid_file.exists()
    assert list(pid_file.parent.iterdir()) == []
    meta = read_json(out / "run.json")
    assert meta["status"] == "interrupted"
    assert meta["counts"]["records"] == len(records(out)) > 10


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_run_started_in_the_background_of_a_script_ends_cleanly_on_a_signal(
    pg: LocalPostgres, tmp_path: Path, sig: signal.Signals
) -> None:
    """`pgchaos load ... &` in a script starts with SIGINT ignored; every stop signal works."""
    out = tmp_path / "run"
    pid_file = tmp_path / "load.pid"
    load = [
        sys.executable, "-m", "pgchaos", "load", "--rw", pg.dsn(), "--ro", pg.dsn(),
        "--writers", "1", "--readers", "1", "--out", str(out), "--pid-file", str(pid_file), "-q",
    ]  # fmt: skip
    script = " ".join(shlex.quote(a) for a in load) + " & wait $!"
    shell = subprocess.Popen(["sh", "-c", script], cwd=tmp_path, env=clean_env())
    wait_for_records(out, minimum=10)
    os.kill(int(pid_file.read_text()), sig)
    assert shell.wait(timeout=20) == 0
    assert not pid_file.exists()
    meta = read_json(out / "run.json")
    assert meta["status"] == "interrupted"
    assert meta["counts"]["records"] == len(records(out)) > 10


def test_unwritable_pid_file_is_a_usage_error(
    cli: CliRunner, pg: LocalPostgres, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    result = cli("load", "--rw", pg.dsn(), "--readers", "0", "--duration", "1",
                 "--out", str(out), "--pid-file", str(tmp_path / "missing" / "x.pid"))  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("pgchaos: error: --pid-file")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_libpq_host_list_skips_a_dead_host(pg: LocalPostgres, tmp_path: Path) -> None:
    """The client alternative to a VIP: every entry listed, libpq takes the first that fits."""
    dead = free_port()
    env = tmp_path / "client.env"
    env.write_text(
        f"export PGHOST=127.0.0.1\nexport PGPORT={pg.port}\nexport PGUSER={pg.user}\n"
        f"export PGPASSWORD='{pg.password}'\nexport PGDATABASE={pg.dbname}\n"
    )
    hosts = f"host=127.0.0.1,127.0.0.1 port={dead},{pg.port}"
    out = tmp_path / "run"
    proc = start_cli(
        tmp_path,
        "load",
        "--rw", f"{hosts} target_session_attrs=read-write",
        "--ro", f"{hosts} target_session_attrs=prefer-standby",
        "--env-file", str(env),
        "--writers", "2",
        "--readers", "1",
        "--rate", "20",
        "--duration", "2",
        "--out", str(out),
    )  # fmt: skip
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    rows = records(out)
    assert rows
    assert all(r["outcome"] == "ok" for r in rows)
    assert {r["server"] for r in rows} == {f"127.0.0.1:{pg.port}"}
    meta = read_json(out / "run.json")
    assert "target_session_attrs=read-write" in meta["endpoints"]["rw"]
    assert pg.password not in (out / "run.json").read_text()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 384 KiB tmpfs: a run at full speed fills it within a second or two."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=384k", "pgchaos-test-full", str(mount)], check=True
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_stops_the_run_at_once(
    pg: LocalPostgres, cli: CliRunner, small_disk: Path
) -> None:
    out = small_disk / "run"
    began = time.monotonic()
    result = cli(
        "load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "4", "--readers", "1",
        "--rate", "0", "--duration", "60", "--out", str(out), "-q",
    )  # fmt: skip
    assert time.monotonic() - began < 30, "the run went on with a full disk"
    assert result.returncode == 2
    assert "disk full" in result.stderr
    # run.json could not even be rewritten: it still says running, so verify refuses ...
    refused = cli("verify", str(out), "--dsn", pg.dsn())
    assert refused.returncode == 2
    assert "--allow-incomplete" in refused.stderr
    # ... unless told (once there is room again for verify.json), and then it counts
    # what the server has that the ledger does not.
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    checked = cli("verify", str(out), "--dsn", pg.dsn(), "--allow-incomplete")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "incomplete run (running)" in checked.stdout
    verified = read_json(out / "verify.json")
    assert verified["incomplete"] is True
    assert verified["lost"] == 0
    assert verified["writes"] > 100


def test_kill_9_loses_at_most_the_last_moments(
    pg: LocalPostgres, cli: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    proc = start_cli(
        tmp_path, "load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "4",
        "--readers", "0", "--rw-readers", "0", "--rate", "0", "--out", str(out), "-q",
    )  # fmt: skip
    wait_for_records(out, minimum=2000)
    time.sleep(1.0)
    proc.kill()
    proc.wait(timeout=10)
    assert cli("verify", str(out), "--dsn", pg.dsn()).returncode == 2
    result = cli("verify", str(out), "--dsn", pg.dsn(), "--allow-incomplete")
    assert result.returncode == 0, result.stdout + result.stderr
    verified = read_json(out / "verify.json")
    assert verified["incomplete"] is True
    assert verified["lost"] == 0
    rows = records(out)
    span = float(rows[-1]["time"]) - float(rows[1]["time"])
    per_second = len(rows) / max(span, 0.1)
    # The ledger is synced every 0.2 s: what the server has beyond it is at most about that.
    assert verified["unrecorded_rows"] <= per_second * 0.5 + 50, (verified, per_second)
