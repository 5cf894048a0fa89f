"""Argument parsing only: each command lives in its own module, imported on demand."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from pgchaos import __version__
from pgchaos.errors import UsageError

EXIT_USAGE = 2


def _duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30, 30s, 5m, 1h)")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match.group(2)]
    value = float(match.group(1)) * scale
    if value > MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"longer than 30 days: {text!r}")
    return value


# Longest --duration or --pad accepted: a typo of a unit should not mean a century.
MAX_SECONDS = 30 * 24 * 3600.0


def _number(text: str) -> float:
    """A finite float: argparse's float() takes 'nan' and 'inf', which no option means."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _rate(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _seconds(text: str) -> float:
    value = _number(text)
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {MAX_SECONDS:.0f} s: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgchaos",
        description="Client-side workload, verification and reporting for PostgreSQL HA chaos.",
    )
    parser.add_argument("--version", action="version", version=f"pgchaos {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    load = sub.add_parser("load", help="run the workload and record every operation")
    load.add_argument("--rw", metavar="DSN", help="read-write endpoint (libpq DSN or URI)")
    load.add_argument("--ro", metavar="DSN", help="read-only endpoint (libpq DSN or URI)")
    load.add_argument(
        "--env-file",
        metavar="PATH",
        help="shell-style PG* variables for missing endpoints (default: .lab/client.env); "
        "writes go to PGPORT, reads to PGPORT_REPLICA (default 5001)",
    )
    load.add_argument(
        "--duration",
        type=_duration,
        default=0.0,
        help="how long to run (30, 30s, 5m, 1h); default: until Ctrl-C",
    )
    load.add_argument("--writers", type=int, default=4, help="writer threads (default 4)")
    load.add_argument("--readers", type=int, default=2, help="reader threads (default 2)")
    load.add_argument(
        "--rw-readers",
        type=int,
        default=1,
        help="reader threads on the write port, checked for read-your-writes (default 1)",
    )
    load.add_argument(
        "--rate",
        type=_rate,
        default=20.0,
        help="operations per second PER WORKER (default 20); 0 = as fast as possible",
    )
    load.add_argument("--out", metavar="DIR", help="run folder (default runs/<UTC timestamp>)")
    load.add_argument(
        "--table", default="pgchaos_ledger", help="ledger table (default %(default)s)"
    )
    load.add_argument("--connect-timeout", type=_seconds, default=3.0, metavar="SEC")
    load.add_argument("--statement-timeout", type=_seconds, default=5.0, metavar="SEC")
    load.add_argument(
        "--cancel-after",
        type=_seconds,
        default=None,
        metavar="SEC",
        help="send a cancel request for an operation still running after SEC seconds, as an "
        "application's query timeout does (default: never); a commit waiting for its "
        "synchronous standby is then acknowledged though committed on the primary only",
    )
    load.add_argument(
        "--no-prepare",
        dest="prepare",
        action="store_false",
        help="never use server-side prepared statements, for a transaction pooler that does "
        "not support them (PgBouncer before 1.21, e.g. Debian 12's 1.18, with "
        "pool_mode=transaction)",
    )
    load.add_argument(
        "--max-backoff",
        type=_seconds,
        default=1.0,
        metavar="SEC",
        help="upper bound of the exponential reconnect backoff (default 1.0)",
    )
    load.add_argument(
        "--pid-file",
        metavar="PATH",
        help="write the process id here at the start and remove it at the end "
        "(stop a background run with: kill -INT $(cat PATH))",
    )
    load.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")

    verify = sub.add_parser("verify", help="check that every acknowledged write survived")
    verify.add_argument("run", type=Path, metavar="RUN")
    verify.add_argument("--dsn", help="where to read back (default: the run's rw endpoint)")
    verify.add_argument(
        "--env-file", metavar="PATH", help="take PGPASSWORD from here (default: the run's)"
    )
    verify.add_argument("--connect-timeout", type=_seconds, default=5.0, metavar="SEC")
    verify.add_argument(
        "--allow-incomplete",
        action="store_true",
        help="verify a run that did not end cleanly (killed, disk full) and count the"
        " writes the server has that its ledger does not",
    )
    verify.add_argument(
        "--until",
        metavar="T",
        help="cut-off time, after a restore to before T (point-in-time recovery, or a disaster"
        " restore where only writes acknowledged some time before the loss are guaranteed):"
        " only writes acknowledged before T must be present; the missing ones acknowledged at"
        " or after T are counted apart, not as lost, and reads sent at or after T are not"
        " checked for read anomalies.  ISO-8601 with an offset"
        " (2026-12-07T05:01:02.345+00:00) or unix seconds (1796619662.345)",
    )

    report = sub.add_parser("report", help="write summary.json, PNG plots and report.html")
    report.add_argument("run", type=Path, metavar="RUN")
    report.add_argument("-q", "--quiet", action="store_true")

    combine = sub.add_parser(
        "combine", help="one index.html and results.json over many runs (pass/fail per scenario)"
    )
    combine.add_argument("out", type=Path, metavar="OUT", help="folder for index.html/results.json")
    combine.add_argument("runs", type=Path, nargs="*", metavar="RUN")
    combine.add_argument(
        "--runs-dir", type=Path, metavar="DIR", help="take every run folder directly under DIR"
    )

    matrix = sub.add_parser(
        "matrix-report",
        help="re-aggregate a resilience matrix (DIR/<profile>/<run folders>, see scripts/matrix.py)"
        " into DIR/results.json, DIR/index.html and DIR/matrix.md",
    )
    matrix.add_argument("dir", type=Path, metavar="DIR", help="the matrix folder")
    matrix.add_argument(
        "--commit", help="the commit to stamp the results with (default: DIR/matrix.json's)"
    )

    logs = sub.add_parser("logs", help="collect server logs of the run's time window over SSH")
    logs.add_argument("run", type=Path, metavar="RUN")
    logs.add_argument("--inventory", "-i", required=True, metavar="INV")
    logs.add_argument(
        "--pad", type=_duration, default=60.0, help="widen the time window (default 60 s)"
    )
    logs.add_argument("--connect-timeout", type=_seconds, default=5.0, metavar="SEC")
    logs.add_argument("--patronictl-config", metavar="PATH", help="patronictl -c PATH on hosts")
    logs.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        help="accept the SSH host key of a host not yet in known_hosts and record it there"
        " (like OpenSSH's accept-new); a key that differs from the recorded one is always"
        " refused, and a refused host makes the exit status 1",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UsageError as exc:
        print(f"pgchaos: error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print("pgchaos: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # Files and sockets outside our control (permissions, full disk, ...).
        print(f"pgchaos: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if os.environ.get("PGCHAOS_DEBUG"):
            raise
        print(
            f"pgchaos: internal error: {type(exc).__name__}: {exc} "
            "(set PGCHAOS_DEBUG=1 for the traceback)",
            file=sys.stderr,
        )
        return 1


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "load":
        from pgchaos.load import LoadOptions, run_load

        return run_load(
            LoadOptions(
                rw=args.rw,
                ro=args.ro,
                env_file=args.env_file,
                out=args.out,
                duration=args.duration,
                writers=args.writers,
                readers=args.readers,
                rw_readers=args.rw_readers,
                rate=args.rate,
                table=args.table,
                connect_timeout=args.connect_timeout,
                statement_timeout=args.statement_timeout,
                cancel_after=args.cancel_after,
                prepare=args.prepare,
                max_backoff=args.max_backoff,
                quiet=args.quiet,
                pid_file=args.pid_file,
            )
        )
    if args.command == "verify":
        from pgchaos.verify import parse_until, run_verify

        return run_verify(
            args.run,
            dsn=args.dsn,
            env_file=args.env_file,
            connect_timeout=args.connect_timeout,
            allow_incomplete=args.allow_incomplete,
            until=None if args.until is None else parse_until(args.until),
        )
    if args.command == "report":
        from pgchaos.report import run_report

        return run_report(args.run, quiet=args.quiet)
    if args.command == "combine":
        from pgchaos.combine import run_combine

        return run_combine(args.out, args.runs, args.runs_dir)
    if args.command == "matrix-report":
        from pgchaos.matrix import run_matrix_report

        return run_matrix_report(args.dir, commit=args.commit)
    from pgchaos.logs import run_logs

    return run_logs(
        args.run,
        inventory=args.inventory,
        pad=args.pad,
        connect_timeout=args.connect_timeout,
        patronictl_config=args.patronictl_config,
        accept_new_host_keys=args.accept_new_host_keys,
    )
