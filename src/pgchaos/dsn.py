"""Endpoint DSNs: reading the lab's client.env, validating, hardening and redacting."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from psycopg import conninfo as pg_conninfo
from psycopg.errors import ProgrammingError

from pgchaos.errors import UsageError

DEFAULT_ENV_FILE = Path(".lab/client.env")
DEFAULT_REPLICA_PORT = "5001"


@dataclass(frozen=True)
class Endpoints:
    rw: str
    ro: str
    env_file: str | None


def parse_env_file(path: Path) -> dict[str, str]:
    """Parse a shell-style ``export KEY=value`` file without running a shell."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read env file {path}: {exc.strerror or exc}") from None
    values: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            words = shlex.split(stripped, comments=True)
        except ValueError as exc:
            raise UsageError(f"{path}:{lineno}: cannot parse line: {exc}") from None
        if words and words[0] == "export":
            words = words[1:]
        for word in words:
            key, sep, value = word.partition("=")
            if sep and key.isidentifier():
                values[key] = value
    return values


def endpoints_from_env(values: dict[str, str], source: Path) -> tuple[str, str]:
    host = values.get("PGHOST")
    if not host:
        raise UsageError(f"{source}: PGHOST is not set")
    common = {
        "host": host,
        "user": values.get("PGUSER"),
        "password": values.get("PGPASSWORD"),
        "dbname": values.get("PGDATABASE"),
    }
    given: dict[str, str] = {k: v for k, v in common.items() if v}
    rw = pg_conninfo.make_conninfo(**given, port=values.get("PGPORT", "5000"))
    ro = pg_conninfo.make_conninfo(**given, port=values.get("PGPORT_REPLICA", DEFAULT_REPLICA_PORT))
    return rw, ro


def validate(dsn: str, what: str) -> dict[str, str]:
    try:
        params = pg_conninfo.conninfo_to_dict(dsn)
    except ProgrammingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "does not parse"
        raise UsageError(f"invalid {what} DSN: {reason}") from None
    return {k: str(v) for k, v in params.items() if v is not None}


def resolve_endpoints(rw: str | None, ro: str | None, env_file: str | None) -> Endpoints:
    """Combine --rw/--ro with the env file.

    The env file fills in missing endpoints, and the credentials a given one lacks.
    An explicitly named env file must exist.  The default one is used when it exists;
    without it, --rw is needed, and when only --rw is given the readers use it too.
    """
    if rw is not None:
        validate(rw, "--rw")
    if ro is not None:
        validate(ro, "--ro")
    path = Path(env_file) if env_file is not None else DEFAULT_ENV_FILE
    if env_file is None and not path.exists():
        if rw is not None:
            return Endpoints(rw, ro if ro is not None else rw, None)
        raise UsageError(
            f"no endpoints: give --rw/--ro or create {path} (or point --env-file at one)"
        )
    values = parse_env_file(path)
    env_rw, env_ro = endpoints_from_env(values, path)
    return Endpoints(
        with_credentials(rw, values) if rw else env_rw,
        with_credentials(ro, values) if ro else env_ro,
        str(path.resolve()),
    )


def with_credentials(dsn: str, values: dict[str, str]) -> str:
    """The DSN with the env file's user, password and database where it names none.

    So that a DSN choosing other hosts (a libpq host list, one balancer) can be given on
    the command line without its password.  The password only goes with its own user.
    """
    params = validate(dsn, "endpoint")
    for key, var in (("user", "PGUSER"), ("dbname", "PGDATABASE")):
        if key not in params and values.get(var):
            params[key] = values[var]
    same_user = params.get("user") == values.get("PGUSER")
    if "password" not in params and values.get("PGPASSWORD") and same_user:
        params["password"] = values["PGPASSWORD"]
    return pg_conninfo.make_conninfo("", **params)


def redact(dsn: str) -> str:
    """The DSN as key=value pairs without the password, safe for run.json and the console."""
    try:
        params = pg_conninfo.conninfo_to_dict(dsn)
    except ProgrammingError:
        return "<unparsable dsn>"
    params.pop("password", None)
    return pg_conninfo.make_conninfo("", **params)


# The password is never sent to a server that asks for it in clear text (or as MD5):
# a server, or an impostor, would get it for free.  A DSN's own require_auth wins.
REQUIRE_AUTH = "scram-sha-256"


def hardened(
    dsn: str,
    *,
    connect_timeout: float,
    statement_timeout: float,
    application_name: str,
) -> str:
    """The DSN with timeouts and keepalives so a hung node cannot freeze us.

    tcp_user_timeout covers data sent but never acknowledged (a partitioned node);
    keepalives cover waiting for an answer that never comes; require_auth keeps the
    password from servers that ask for it in clear.  User-given values win.
    """
    params = validate(dsn, "endpoint")
    params.setdefault("connect_timeout", str(max(1, round(connect_timeout))))
    params.setdefault("keepalives", "1")
    params.setdefault("keepalives_idle", "2")
    params.setdefault("keepalives_interval", "1")
    params.setdefault("keepalives_count", "3")
    params.setdefault("tcp_user_timeout", str(int(max(connect_timeout, statement_timeout) * 1000)))
    params.setdefault("application_name", application_name)
    params.setdefault("require_auth", REQUIRE_AUTH)
    timeout_opt = f"-c statement_timeout={int(statement_timeout * 1000)}"
    existing = params.get("options", "")
    if "statement_timeout" not in existing:
        params["options"] = f"{existing} {timeout_opt}".strip()
    return pg_conninfo.make_conninfo("", **params)
