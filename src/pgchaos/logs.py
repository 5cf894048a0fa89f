"""``pgchaos logs``: collect the run's server-side story from every inventory host over SSH.

Hosts and how to reach them come from the inventory through ``ansible-inventory``
(:mod:`pgchaos.inventory`: ports, users, keys, passwords, ProxyJump/ProxyCommand).
Unreachable hosts are reported and skipped: logs are a best effort after the
fact and must never cost the run its other results.

Host keys (jump hosts' too) are checked against the inventory's
``UserKnownHostsFile``, else ``~/.ssh/known_hosts``.  An unknown key is refused
unless ``--accept-new-host-keys`` is given or the inventory's ssh args say
``StrictHostKeyChecking=accept-new`` (or ``no``), and is then appended to the
first known_hosts file; a key that differs from the recorded one is always
refused.  A refused host is reported in the output and in ``logs/collect.json``
and makes the exit status 1.
"""

from __future__ import annotations

import itertools
import os
import shlex
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from pgchaos import rundir
from pgchaos.errors import UsageError
from pgchaos.inventory import SSH_PORT, Endpoint, Host, default_known_hosts, load_inventory

UNITS = ("etcd", "patroni", "postgresql*", "haproxy", "keepalived")
# Debian's HAProxy logs to /dev/log: its health-check lines ("Server primary/pg2 is UP")
# carry the syslog identifier haproxy and may be missing from the unit's own journal.
SYSLOG_IDENTIFIERS = ("haproxy",)
POSTGRES_GROUP = "postgres_cluster"
ETCD_GROUP = "etcd_cluster"
MAX_PARALLEL_HOSTS = 8


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
        endpoint = shlex.quote(f"http://{host.address}:{host.etcd_client_port}")
        cmds.append(
            Command(
                "etcdctl-member-list",
                f"ETCDCTL_API=3 etcdctl --endpoints={endpoint} member list -w table",
            )
        )
    return cmds


class HostKeyRefused(Exception):
    """The server's host key is not the recorded one, or is unknown and not to be accepted."""

    def __init__(self, endpoint: str, status: str, known_hosts: tuple[str, ...], key: Any) -> None:
        self.endpoint = endpoint  # as known_hosts names it: host, or [host]:port
        self.status = status  # "unknown" or "mismatch"
        self.known_hosts = known_hosts
        self.fingerprint = f"{key.get_name()} {key.fingerprint}"
        super().__init__(str(self))

    def __str__(self) -> str:
        files = ", ".join(self.known_hosts)
        if self.status == "mismatch":
            forget = shlex.join(["ssh-keygen", "-f", self.known_hosts[0], "-R", self.endpoint])
            return (
                f"the host key of {self.endpoint} ({self.fingerprint}) does NOT match the one"
                f" recorded in {files}: another machine may be answering at that address; if the"
                f" host was rebuilt, remove the old key: {forget}"
            )
        return (
            f"{self.endpoint} ({self.fingerprint}) is not in {files}"
            " (pass --accept-new-host-keys to record it)"
        )


class _KnownHosts(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]
    """OpenSSH's StrictHostKeyChecking yes, or accept-new: a changed key is never accepted.

    paramiko itself refuses a key that differs from the recorded one (BadHostKeyException)
    before authenticating, so an impostor gets neither a password nor a command.
    """

    def __init__(self, files: tuple[str, ...], accept_new: bool) -> None:
        self.files = files or default_known_hosts()
        self.accept_new = accept_new
        self.recorded: list[str] = []

    def client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        for path in self.files:
            if not os.path.isfile(path):
                continue
            try:
                client.load_host_keys(path)
            # paramiko stops at the first line it cannot decode, with whatever the key's
            # library raised: skipping the file could turn a changed key into an unknown one.
            except Exception as exc:
                raise UsageError(f"known_hosts {path}: cannot read it: {exc}") from None
        client.set_missing_host_key_policy(self)
        return client

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        if not self.accept_new:
            raise HostKeyRefused(hostname, "unknown", self.files, key)
        _append_host_key(Path(self.files[0]), hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.recorded.append(hostname)


# Hosts are collected in parallel: one writer at a time appends to a known_hosts file.
_KNOWN_HOSTS_LOCK = threading.Lock()


def _append_host_key(path: Path, hostname: str, key: Any) -> None:
    # Appended, as OpenSSH does: rewriting the file (paramiko's save_host_keys) would drop
    # the comments and the lines paramiko cannot parse.
    line = paramiko.hostkeys.HostKeyEntry([hostname], key).to_line()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _KNOWN_HOSTS_LOCK, path.open("a+b") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = "\n" + line
        handle.write(line.encode())


def _known_hosts_name(address: str, port: int) -> str:
    return address if port == SSH_PORT else f"[{address}]:{port}"


def _login(
    stack: ExitStack,
    trust: _KnownHosts,
    host: Host,
    to: Endpoint,
    timeout: float,
    sock: Any = None,
    password: str | None = None,
) -> paramiko.SSHClient:
    client = stack.enter_context(trust.client())
    try:
        client.connect(
            hostname=to.host,
            port=to.port,
            username=to.user,
            # Jump hosts too: ssh -J would take them from ~/.ssh/config, which we do not read.
            key_filename=host.key_file,
            password=password,
            sock=sock,
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            allow_agent=True,
            look_for_keys=host.key_file is None,
        )
    except paramiko.BadHostKeyException as exc:
        name = _known_hosts_name(to.host, to.port)
        raise HostKeyRefused(name, "mismatch", trust.files, exc.key) from None
    return client


def _proxy_sock(host: Host, timeout: float, trust: _KnownHosts, stack: ExitStack) -> Any:
    """What the target's SSH session runs over: None for a direct TCP connection."""
    if host.proxy_command:
        proxy = paramiko.ProxyCommand(shlex.join(["/bin/sh", "-c", host.proxy_command]))
        stack.callback(proxy.close)
        return proxy
    sock = None
    hops = [*host.proxy_jump, Endpoint(host.address, host.port, host.user)]
    for jump, after in itertools.pairwise(hops):
        transport = _login(stack, trust, host, jump, timeout, sock).get_transport()
        sock = transport.open_channel(
            "direct-tcpip", (after.host, after.port), ("127.0.0.1", 0), timeout=timeout
        )
    return sock


def _connect(
    host: Host, timeout: float, trust: _KnownHosts, stack: ExitStack
) -> paramiko.SSHClient:
    sock = _proxy_sock(host, timeout, trust, stack)
    target = Endpoint(host.address, host.port, host.user)
    # The password goes to the target only, never to a jump host.
    return _login(stack, trust, host, target, timeout, sock, password=host.password)


def _run(client: paramiko.SSHClient, command: str, timeout: float) -> tuple[int, bytes, bytes]:
    _, stdout, stderr = client.exec_command(command, timeout=timeout)
    out = stdout.read()
    err = stderr.read()
    return stdout.channel.recv_exit_status(), out, err


def _run_commands(
    client: paramiko.SSHClient,
    commands: list[Command],
    target: Path,
    timeout: float,
) -> list[dict[str, Any]]:
    target.mkdir(parents=True, exist_ok=True)
    outputs = []
    for cmd in commands:
        entry: dict[str, Any] = {"name": cmd.name, "command": cmd.argv}
        try:
            status, out, err = _run(client, cmd.argv, timeout)
            (target / f"{cmd.name}.txt").write_bytes(out)
            if err:
                (target / f"{cmd.name}.stderr.txt").write_bytes(err)
            entry["exit_status"] = status
        except (TimeoutError, paramiko.SSHException, OSError) as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
        outputs.append(entry)
    return outputs


def collect_host(
    host: Host,
    target: Path,
    since: float,
    until: float,
    *,
    connect_timeout: float = 5.0,
    command_timeout: float = 60.0,
    patronictl_config: str | None = None,
    accept_new_host_keys: bool = False,
) -> dict[str, Any]:
    """Run the commands on one host; the result says what happened, whatever happened.

    ``host_key`` in the result: ``known``, ``recorded`` (new, accepted), ``unknown``
    or ``mismatch`` (both refused); absent when the connection failed otherwise.
    """
    result: dict[str, Any] = {
        "host": host.name,
        "address": f"{host.address}:{host.port}",
        "known_hosts": list(host.known_hosts),
    }
    if host.proxy_jump:
        result["via"] = [str(jump) for jump in host.proxy_jump]
    if host.proxy_command:
        result["proxy_command"] = host.proxy_command
    trust = _KnownHosts(host.known_hosts, accept_new_host_keys or host.accept_new_host_keys)
    with ExitStack() as stack:
        try:
            client = _connect(host, connect_timeout, trust, stack)
        except HostKeyRefused as exc:
            result.update(reachable=False, host_key=exc.status, error=str(exc))
            return result
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as exc:
            result.update(reachable=False, error=f"{type(exc).__name__}: {exc}".strip())
            return result
        result.update(reachable=True, host_key="recorded" if trust.recorded else "known")
        if trust.recorded:
            result["host_keys_recorded"] = trust.recorded
        commands = commands_for(host, since, until, patronictl_config)
        result["commands"] = _run_commands(client, commands, target, command_timeout)
    return result


def _outcome(result: dict[str, Any]) -> str:
    name = result["host"]
    if result.get("host_key") == "mismatch":
        return f"{name}: REFUSED, host key mismatch: {result['error']}"
    if result.get("host_key") == "unknown":
        return f"{name}: refused, unknown host key: {result['error']}"
    if not result["reachable"]:
        return f"{name}: unreachable, skipped ({result['error']})"
    failed = [c["name"] for c in result["commands"] if c.get("exit_status") != 0]
    note = f" ({len(failed)} commands failed: {', '.join(failed)})" if failed else ""
    if result.get("host_keys_recorded"):
        recorded = ", ".join(result["host_keys_recorded"])
        note += f" (new host key of {recorded} recorded in {result['known_hosts'][0]})"
    return f"{name}: collected {len(result['commands'])} outputs{note}"


def run_logs(
    run_dir: Path,
    *,
    inventory: str,
    pad: float,
    connect_timeout: float,
    patronictl_config: str | None,
    accept_new_host_keys: bool = False,
) -> int:
    """Exit 0 even with unreachable hosts (a chaos run may have killed them); exit 1 when a
    host was refused for its host key: that wants a human, and fails the chaos judge."""
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

    def collect(host: Host) -> dict[str, Any]:
        return collect_host(
            host,
            logs_dir / host.name,
            since,
            until,
            connect_timeout=connect_timeout,
            patronictl_config=patronictl_config,
            accept_new_host_keys=accept_new_host_keys,
        )

    # One host at a time spent most of its time waiting on the network: 8 hosts took ~14 s.
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_HOSTS, len(hosts))) as pool:
        results = list(pool.map(collect, hosts))
    for result in results:
        print(_outcome(result))
    refused = [r["host"] for r in results if r.get("host_key") in ("unknown", "mismatch")]
    rundir.write_json(
        logs_dir / "collect.json",
        {
            "inventory": str(Path(inventory).resolve()),
            "since": rundir.iso(since),
            "until": rundir.iso(until),
            "accept_new_host_keys": accept_new_host_keys,
            "refused_for_host_key": refused,
            "hosts": results,
        },
    )
    print(f"-> {logs_dir} ({sum(r['reachable'] for r in results)}/{len(results)} hosts reached)")
    if refused:
        print(
            f"pgchaos: error: refused for their SSH host key: {', '.join(refused)}"
            " (see above; no logs from them)",
            file=sys.stderr,
        )
        return 1
    return 0
