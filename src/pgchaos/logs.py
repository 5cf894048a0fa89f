"""``pgchaos logs``: collect the run's server-side story from every inventory host over SSH.

Unreachable hosts are reported and skipped: logs are a best effort after the
fact and must never cost the run its other results.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from pgchaos import rundir
from pgchaos.errors import UsageError
from pgchaos.inventory import Host, load_inventory

UNITS = ("etcd", "patroni", "postgresql*", "haproxy", "keepalived")
# Debian's HAProxy logs to /dev/log: its health-check lines ("Server primary/pg2 is UP")
# carry the syslog identifier haproxy and may be missing from the unit's own journal.
SYSLOG_IDENTIFIERS = ("haproxy",)
POSTGRES_GROUP = "postgres_cluster"
ETCD_GROUP = "etcd_cluster"


@dataclass(frozen=True)
class Command:
    name: str  # file name stem under logs/<host>/
    argv: str  # shell command line run on the host


def _sudo(host: Host, command: str) -> str:
    # -n: never wait for a password prompt that nobody will answer.
    return command if host.user in (None, "root") else f"sudo -n {command}"


def commands_for(
    host: Host, since: float, until: float, patronictl_config: str | None = None
) -> list[Command]:
    window = f"--since @{int(since)} --until @{int(until) + 1}"
    cmds = [
        Command(
            f"journal-{unit.rstrip('*')}",
            _sudo(
                host,
                f"journalctl --no-pager -o short-iso-precise {window} -u {shlex.quote(unit)}",
            ),
        )
        for unit in UNITS
        # journalctl fails on a glob that matches no unit at all, so PostgreSQL
        # units are only asked for where PostgreSQL runs.
        if not unit.startswith("postgresql") or POSTGRES_GROUP in host.groups
    ]
    cmds += [
        Command(
            f"journal-{ident}-syslog",
            _sudo(
                host,
                f"journalctl --no-pager -o short-iso-precise {window} -t {shlex.quote(ident)}",
            ),
        )
        for ident in SYSLOG_IDENTIFIERS
    ]
    if POSTGRES_GROUP in host.groups:
        config = f" -c {shlex.quote(patronictl_config)}" if patronictl_config else ""
        cmds += [
            Command("patronictl-list", _sudo(host, f"patronictl{config} list")),
            Command("patronictl-history", _sudo(host, f"patronictl{config} history")),
        ]
    if ETCD_GROUP in host.groups:
        endpoint = shlex.quote(f"http://{host.address}:2379")
        cmds.append(
            Command(
                "etcdctl-member-list",
                f"ETCDCTL_API=3 etcdctl --endpoints={endpoint} member list -w table",
            )
        )
    return cmds


def _connect(host: Host, timeout: float) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    # Lab hosts are recreated all the time, so their host keys cannot be known in
    # advance and stale known_hosts entries must not block log collection.  Key
    # authentication still keeps an impostor from getting in with our identity.
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507
    client.connect(
        hostname=host.address,
        port=host.port,
        username=host.user,
        key_filename=os.path.expanduser(host.key_file) if host.key_file else None,
        password=host.password,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
        allow_agent=True,
        look_for_keys=host.key_file is None,
    )
    return client


def _run(client: paramiko.SSHClient, command: str, timeout: float) -> tuple[int, bytes, bytes]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read()
    err = stderr.read()
    return stdout.channel.recv_exit_status(), out, err


def collect_host(
    host: Host,
    target: Path,
    since: float,
    until: float,
    *,
    connect_timeout: float = 5.0,
    command_timeout: float = 60.0,
    patronictl_config: str | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"host": host.name, "address": f"{host.address}:{host.port}"}
    try:
        client = _connect(host, connect_timeout)
    except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
        result.update(reachable=False, error=f"{type(exc).__name__}: {exc}".strip())
        return result
    result["reachable"] = True
    target.mkdir(parents=True, exist_ok=True)
    outputs = []
    with client:
        for cmd in commands_for(host, since, until, patronictl_config):
            entry: dict[str, Any] = {"name": cmd.name, "command": cmd.argv}
            try:
                status, out, err = _run(client, cmd.argv, command_timeout)
                (target / f"{cmd.name}.txt").write_bytes(out)
                if err:
                    (target / f"{cmd.name}.stderr.txt").write_bytes(err)
                entry["exit_status"] = status
            except (TimeoutError, paramiko.SSHException, OSError) as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"
            outputs.append(entry)
    result["commands"] = outputs
    return result


def run_logs(
    run_dir: Path,
    *,
    inventory: str,
    pad: float,
    connect_timeout: float,
    patronictl_config: str | None,
) -> int:
    meta = rundir.open_run(run_dir)
    hosts = load_inventory(inventory)
    if not hosts:
        raise UsageError(f"inventory {inventory} has no hosts")
    since = rundir.parse_time(meta["started_at"]) - pad
    ended = meta.get("ended_at")
    until = (rundir.parse_time(ended) if ended else time.time()) + pad
    logs_dir = run_dir / "logs"
    try:
        logs_dir.mkdir(exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {logs_dir}: {exc.strerror or exc}") from None
    results = []
    for host in hosts:
        result = collect_host(
            host,
            logs_dir / host.name,
            since,
            until,
            connect_timeout=connect_timeout,
            patronictl_config=patronictl_config,
        )
        results.append(result)
        if result["reachable"]:
            failed = [c["name"] for c in result["commands"] if c.get("exit_status") != 0]
            note = f" ({len(failed)} commands failed: {', '.join(failed)})" if failed else ""
            print(f"{host.name}: collected {len(result['commands'])} outputs{note}")
        else:
            print(f"{host.name}: unreachable, skipped ({result['error']})")
    rundir.write_json(
        logs_dir / "collect.json",
        {
            "inventory": str(Path(inventory).resolve()),
            "since": rundir.iso(since),
            "until": rundir.iso(until),
            "hosts": results,
        },
    )
    print(f"-> {logs_dir} ({sum(r['reachable'] for r in results)}/{len(results)} hosts reached)")
    return 0
