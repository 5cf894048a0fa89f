"""Bad input: one line on stderr, exit status 2, no traceback, nothing recorded is harmed."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from chaoshelpers import CliRunner, assert_one_line_error

from pgchaos.localpg import LocalPostgres, free_port

pytestmark = pytest.mark.postgres


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small_run(pg: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pgchaos.cli import main

    out = tmp_path_factory.mktemp("small") / "run"
    code = main(
        ["load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--writers", "1", "--readers", "1",
         "--duration", "0.5", "--out", str(out), "-q"]
    )  # fmt: skip
    assert code == 0
    return out


@pytest.mark.parametrize(
    ("dsn", "needle"),
    [
        ("host=127.0.0.1 port", "invalid --rw DSN"),
        ("postgresql://user@[::1", "invalid --rw DSN"),
        ("host='unterminated", "invalid --rw DSN"),
    ],
)
def test_unparsable_dsn(cli: CliRunner, tmp_path: Path, dsn: str, needle: str) -> None:
    result = cli("load", "--rw", dsn, "--ro", dsn, "--duration", "1", "--out", "run")
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert needle in result.stderr
    assert not (tmp_path / "run").exists()


def test_unreachable_endpoint_at_start(cli: CliRunner, tmp_path: Path) -> None:
    dead = f"host=127.0.0.1 port={free_port()} user=x password=secret-pw dbname=x"
    result = cli("load", "--rw", dead, "--ro", dead, "--duration", "1", "--out", "run")
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert "cannot use rw endpoint" in result.stderr
    assert "secret-pw" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_unreachable_ro_endpoint_at_start(cli: CliRunner, pg: LocalPostgres) -> None:
    dead = f"host=127.0.0.1 port={free_port()} user=x dbname=x"
    result = cli("load", "--rw", pg.dsn(), "--ro", dead, "--duration", "1", "--out", "run")
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert "cannot use ro endpoint" in result.stderr


def test_missing_env_file(cli: CliRunner) -> None:
    result = cli("load", "--env-file", "nowhere.env", "--duration", "1")
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert "nowhere.env" in result.stderr


def test_no_endpoints_at_all(cli: CliRunner) -> None:
    result = cli("load", "--duration", "1")
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert ".lab/client.env" in result.stderr


def test_env_file_endpoints(cli: CliRunner, pg: LocalPostgres, tmp_path: Path) -> None:
    lab = tmp_path / ".lab"
    lab.mkdir()
    (lab / "client.env").write_text(
        f"# written by the lab\nexport PGHOST=127.0.0.1\nexport PGPORT={pg.port}\n"
        f"export PGUSER={pg.user}\nexport PGPASSWORD='{pg.password}'\n"
        f"export PGDATABASE={pg.dbname}\nexport PGPORT_REPLICA={pg.port}\n"
    )
    result = cli("load", "--duration", "0.5", "--writers", "1", "--readers", "1", "--out", "r")
    assert result.returncode == 0, result.stderr
    meta = json.loads((tmp_path / "r" / "run.json").read_text())
    assert meta["env_file"] == str((lab / "client.env").resolve())
    assert f"port={pg.port}" in meta["endpoints"]["rw"]
    assert pg.password not in (tmp_path / "r" / "run.json").read_text()
    # verify finds the password again through the recorded env file
    result = cli("verify", "r")
    assert result.returncode == 0, result.stderr


def test_refuses_non_empty_out(cli: CliRunner, pg: LocalPostgres, small_run: Path) -> None:
    before = _snapshot(small_run)
    result = cli("load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--duration", "1",
                 "--out", str(small_run))  # fmt: skip
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert "not empty" in result.stderr
    assert _snapshot(small_run) == before


@pytest.mark.parametrize("kind", ["file", "under-file"])
def test_unwritable_out(cli: CliRunner, pg: LocalPostgres, tmp_path: Path, kind: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    out = blocker if kind == "file" else blocker / "run"
    result = cli("load", "--rw", pg.dsn(), "--ro", pg.dsn(), "--duration", "1", "--out", str(out))
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert blocker.read_text() == "not a directory"


def test_out_on_read_only_filesystem(cli: CliRunner, pg: LocalPostgres) -> None:
    result = cli("load", "--rw", pg.dsn(), "--duration", "1", "--out", "/proc/pgchaos-run")
    assert result.returncode == 2
    assert_one_line_error(result.stderr)


@pytest.mark.parametrize("command", ["verify", "report", "logs"])
def test_missing_run_folder(cli: CliRunner, tmp_path: Path, command: str) -> None:
    extra = ["--inventory", str(tmp_path / "inv.yml")] if command == "logs" else []
    result = cli(command, str(tmp_path / "no-such-run"), *extra)
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert "does not exist" in result.stderr


DAMAGE: dict[str, Callable[[Path], object]] = {
    "run.json garbage": lambda run: (run / "run.json").write_text("{not json"),
    "run.json missing": lambda run: (run / "run.json").unlink(),
    "run.json foreign": lambda run: (run / "run.json").write_text('{"hello": 1}'),
    "records missing": lambda run: (run / "records.csv").unlink(),
    "records header": lambda run: (run / "records.csv").write_text("a,b,c\n1,2,3\n"),
    "records middle": lambda run: _break_middle_line(run / "records.csv"),
    "records bad bytes": lambda run: _bad_bytes_in_middle(run / "records.csv"),
}


def _bad_bytes_in_middle(path: Path) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[len(lines) // 2] = lines[len(lines) // 2].replace(b",", b",\xff\xfe", 1)
    path.write_bytes(b"".join(lines))


def test_verify_refuses_a_ledger_shorter_than_its_run(
    cli: CliRunner, pg: LocalPostgres, small_run: Path, tmp_path: Path
) -> None:
    """records.csv cut back to its header must not verify as "0 writes, nothing lost"."""
    run = tmp_path / "emptied"
    shutil.copytree(small_run, run)
    path = run / "records.csv"
    path.write_text(path.read_text().splitlines(keepends=True)[0])
    result = cli("verify", str(run), "--dsn", pg.dsn())
    assert result.returncode == 2, result.stdout
    assert_one_line_error(result.stderr)
    assert "holds 0 records, run.json counts" in result.stderr


def _break_middle_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines[len(lines) // 2] = "garbage,in,the,middle\n"
    path.write_text("".join(lines))


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("command", ["verify", "report"])
def test_damaged_run_folder(
    cli: CliRunner, pg: LocalPostgres, small_run: Path, tmp_path: Path, damage: str, command: str
) -> None:
    run = tmp_path / "damaged"
    shutil.copytree(small_run, run)
    DAMAGE[damage](run)
    before = _snapshot(run)
    extra = ["--dsn", pg.dsn()] if command == "verify" else []
    result = cli(command, str(run), *extra)
    assert result.returncode == 2, result.stdout
    assert_one_line_error(result.stderr)
    assert _snapshot(run) == before


def test_truncated_last_record_is_tolerated(
    cli: CliRunner, pg: LocalPostgres, small_run: Path, tmp_path: Path
) -> None:
    """A crash mid-write cuts the last line; everything before it is still good data."""
    run = tmp_path / "crashed"
    shutil.copytree(small_run, run)
    path = run / "records.csv"
    text = path.read_text()
    path.write_text(text[: text.rstrip("\n").rfind(",")])
    # A crashed run never wrote its final counts.
    meta = json.loads((run / "run.json").read_text())
    meta.update(status="running", ended_at=None)
    del meta["counts"]
    (run / "run.json").write_text(json.dumps(meta))
    assert cli("report", str(run), "-q").returncode == 0
    # A crashed run is verified only when asked to, and then the rest is good data.
    assert cli("verify", str(run), "--dsn", pg.dsn()).returncode == 2
    assert cli("verify", str(run), "--dsn", pg.dsn(), "--allow-incomplete").returncode == 0


def test_verify_with_unreachable_server(cli: CliRunner, small_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(small_run, run)
    result = cli("verify", str(run), "--dsn", f"host=127.0.0.1 port={free_port()} user=x")
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert not (run / "verify.json").exists()


def test_bad_duration_is_a_usage_error(cli: CliRunner) -> None:
    result = cli("load", "--duration", "soon")
    assert result.returncode == 2
    assert "not a duration" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--rate", "nan"),
        ("--rate", "inf"),
        ("--rate", "-1"),
        ("--connect-timeout", "nan"),
        ("--connect-timeout", "0"),
        ("--statement-timeout", "inf"),
        ("--max-backoff", "-0.5"),
        ("--duration", "99999h"),
    ],
)
def test_numbers_out_of_range_are_usage_errors(cli: CliRunner, option: str, value: str) -> None:
    result = cli("load", option, value, "--out", "run")
    assert result.returncode == 2
    assert f"argument {option}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr


@pytest.mark.parametrize(
    "line",
    [
        b'{"time": "NaN", "action": "kill", "target": "pg1"}',
        b'{"time": 1e400, "action": "kill", "target": "pg1"}',
        b'{"time": 1796170000000, "action": "kill", "target": "pg1"}',
        b'{"time": "2026-12-02T00:00:00Z", "action": "kill", "target": "pg\xff1"}',
    ],
)
def test_bad_event_lines_are_reported_and_skipped(
    cli: CliRunner, small_run: Path, tmp_path: Path, line: bytes
) -> None:
    run = tmp_path / "events"
    shutil.copytree(small_run, run)
    good = (
        b'{"time": "%s", "action": "stop", "target": "pg2"}'
        % json.loads((run / "run.json").read_text())["started_at"].encode()
    )
    (run / "events.jsonl").write_bytes(line + b"\n" + good + b"\n")
    result = cli("report", str(run))
    assert result.returncode == 0, result.stderr
    assert "warning: events.jsonl:1: ignored" in result.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert [e["target"] for e in summary["events"]] == ["pg2"]


@pytest.fixture(scope="module")
def cleartext_pg() -> Iterator[LocalPostgres]:
    """A server that asks for the password in clear text (pg_hba "password")."""
    server = LocalPostgres(settings={"fsync": "off"}, host_auth="password")
    try:
        server.init()
        server.start()
        server.setup_role()
        yield server
    finally:
        server.destroy()


def test_password_is_not_sent_in_clear_text(
    cli: CliRunner, cleartext_pg: LocalPostgres, small_run: Path, tmp_path: Path
) -> None:
    dsn = cleartext_pg.dsn()
    result = cli("load", "--rw", dsn, "--ro", dsn, "--duration", "1", "--out", "run")
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert "password" in result.stderr
    assert cleartext_pg.password not in result.stderr
    assert not (tmp_path / "run").exists()
    run = tmp_path / "copy"
    shutil.copytree(small_run, run)
    result = cli("verify", str(run), "--dsn", dsn)
    assert result.returncode == 2
    assert_one_line_error(result.stderr)


def test_the_user_may_allow_clear_text_passwords(
    cli: CliRunner, cleartext_pg: LocalPostgres
) -> None:
    dsn = cleartext_pg.dsn(require_auth="password")
    result = cli("load", "--rw", dsn, "--ro", dsn, "--duration", "0.5", "--out", "run", "-q")
    assert result.returncode == 0, result.stderr
