"""Error classes: what kind of trouble an operation ran into.

``refused``          the connection could not be established (refused, no route,
                     server starting up or shutting down, ...)
``connection_lost``  an established connection died (server crash, failover,
                     network cut, our own watchdog giving up on a hung node)
``read_only``        the server refused to write (a replica or a demoted primary)
``timeout``          connect timeout or statement timeout
``other``            anything else (authentication, missing table, ...)
"""

from __future__ import annotations

from typing import Final

import psycopg
from psycopg import errors as pg_errors

REFUSED: Final = "refused"
CONNECTION_LOST: Final = "connection_lost"
READ_ONLY: Final = "read_only"
TIMEOUT: Final = "timeout"
OTHER: Final = "other"

ERROR_CLASSES: Final = (REFUSED, CONNECTION_LOST, READ_ONLY, TIMEOUT, OTHER)

_REFUSED_TEXT = (
    "connection refused",
    "no route to host",
    "network is unreachable",
    "could not connect",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)
_LOST_TEXT = (
    "server closed the connection",
    "consuming input failed",
    "connection is closed",
    "connection lost",
    "terminating connection",
    "broken pipe",
    "connection reset",
    "ssl syscall",
    "eof detected",
    "unexpected eof",
    "lost synchronization",
    "connection to server was lost",
    "bad file descriptor",
    "socket not open",
)
_TIMEOUT_TEXT = ("timeout expired", "timed out", "connection timeout", "canceling statement")


def classify(exc: BaseException, *, connecting: bool = False) -> str:
    """Map an exception raised by psycopg to one of :data:`ERROR_CLASSES`."""
    if isinstance(exc, pg_errors.ReadOnlySqlTransaction):
        return READ_ONLY
    if isinstance(exc, pg_errors.QueryCanceled | pg_errors.ConnectionTimeout | TimeoutError):
        return TIMEOUT
    if isinstance(exc, pg_errors.CannotConnectNow):
        return REFUSED
    if isinstance(exc, pg_errors.AdminShutdown | pg_errors.CrashShutdown):
        return REFUSED if connecting else CONNECTION_LOST
    text = str(exc).lower()
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError):
        if any(t in text for t in _TIMEOUT_TEXT):
            return TIMEOUT
        if any(t in text for t in _REFUSED_TEXT):
            return REFUSED
        if any(t in text for t in _LOST_TEXT):
            return REFUSED if connecting else CONNECTION_LOST
        if getattr(exc, "sqlstate", None) is None and not connecting:
            # A libpq-level failure without a server error code on an open connection
            # means the connection itself broke.
            return CONNECTION_LOST
        if connecting and "fatal:" not in text:
            # Server-side refusals (bad password, missing database) come as FATAL
            # messages; everything else at connect time means nobody answered.
            return REFUSED
    return OTHER


def describe(error_class: str) -> str:
    """The human wording for the console."""
    return {
        REFUSED: "connection refused",
        CONNECTION_LOST: "connection lost (failover in progress?)",
        READ_ONLY: "read-only transaction (writing to a replica?)",
        TIMEOUT: "timeout",
        OTHER: "error",
    }.get(error_class, error_class)


def first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:limit]
