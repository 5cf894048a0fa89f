"""A throwaway local PostgreSQL for tests and benchmarks.

PostgreSQL refuses to run as root, so when we are root every server command runs
as the ``postgres`` OS user through ``runuser``.  The server listens on
127.0.0.1 only, on a free port, with password authentication for a test role.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from psycopg import conninfo as pg_conninfo

PG_BIN = Path(os.environ.get("PGCHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))


class LocalPostgresError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    def __init__(
        self,
        *,
        user: str = "pgchaos",
        password: str = "pgchaos-secret",  # noqa: S107 - a throwaway local server
        dbname: str = "pgchaos",
        settings: dict[str, str] | None = None,
        base_dir: Path | None = None,
        host_auth: str = "scram-sha-256",
    ) -> None:
        for tool in ("initdb", "pg_ctl", "postgres", "psql"):
            if not (PG_BIN / tool).exists():
                raise LocalPostgresError(
                    f"PostgreSQL binaries not found: {PG_BIN / tool} is missing "
                    "(install postgresql-15 or set PGCHAOS_PG_BIN)"
                )
        self.user = user
        self.password = password
        self.dbname = dbname
        self.settings = settings or {}
        self.host_auth = host_auth
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pgchaos-pg-", dir=base_dir))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.logfile = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o755)

    # -- running commands as the right user --------------------------------

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        cmd = list(args)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise LocalPostgresError(
                f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout

    def _psql(self, query: str) -> str:
        return self._run(
            str(PG_BIN / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            query,
        )

    # -- lifecycle ------------------------------------------------------------

    def init(self) -> None:
        self._run("mkdir", "-p", str(self.socket_dir))
        self._run(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth-local=trust",
            f"--auth-host={self.host_auth}",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "100",
            "logging_collector": "off",
            **self.settings,
        }
        lines = "".join(f"{k} = {v}\n" for k, v in conf.items())
        self._run("sh", "-c", f"cat >> '{self.data}/postgresql.conf' <<'EOF'\n{lines}EOF\n")

    def init_replica_of(self, primary: LocalPostgres) -> None:
        """Make this server a streaming replica of a running one (pg_basebackup -R)."""
        self._run("mkdir", "-p", str(self.socket_dir))
        self._run(
            str(PG_BIN / "pg_basebackup"),
            "-D",
            str(self.data),
            "-h",
            str(primary.socket_dir),
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-R",
            "-X",
            "stream",
            "--no-sync",
            # An immediate checkpoint: the default spread one makes a test wait minutes.
            "--checkpoint=fast",
        )
        # The copied postgresql.conf names the primary's port and socket; later lines win.
        conf = {
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            **self.settings,
        }
        lines = "".join(f"{k} = {v}\n" for k, v in conf.items())
        self._run("sh", "-c", f"cat >> '{self.data}/postgresql.conf' <<'EOF'\n{lines}EOF\n")

    def promote(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "promote")

    def start(self) -> None:
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.logfile),
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def setup_role(self) -> None:
        self._psql(f"create role {self.user} login password '{self.password}'")
        self._psql(f"create database {self.dbname} owner {self.user}")

    def __enter__(self) -> LocalPostgres:
        self.init()
        self.start()
        self.setup_role()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(
                str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", check=False
            )
        shutil.rmtree(self.root, ignore_errors=True)

    # -- connection strings ----------------------------------------------------

    def dsn(self, **extra: str) -> str:
        params = {
            "host": "127.0.0.1",
            "port": str(self.port),
            "user": self.user,
            "password": self.password,
            "dbname": self.dbname,
            **extra,
        }
        return pg_conninfo.make_conninfo("", **params)

    def superuser_sql(self, query: str) -> str:
        """Run SQL as the superuser over the local socket (for tests acting behind the tool)."""
        return self._run(
            str(PG_BIN / "psql"),
            "-X",
            "-qAt",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(self.socket_dir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            self.dbname,
            "-c",
            query,
        )
