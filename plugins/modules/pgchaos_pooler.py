#!/usr/bin/python
# Copyright: pgchaos contributors
from __future__ import annotations

import re
import socket
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgchaos_deadman import arm as arm_timer
from ansible.module_utils.pgchaos_deadman import disarm as disarm_timer

DOCUMENTATION = r"""
---
module: pgchaos_pooler
short_description: Pause and resume the PgBouncer of this host
description:
  - O(state=paused) sends C(PAUSE <db>) for every pooled database to the local PgBouncer's
    admin console - it waits for the running transactions to finish, closes its server
    connections and holds every new query - and returns once the pooler is paused.
    O(state=resumed) sends C(RESUME <db>) for every paused database, and the held queries go
    on, over new server connections.
  - Per database, because PgBouncer 1.18 shows the pause of a database (C(SHOW DATABASES))
    but not that of the whole pooler, so only so can a second run tell that nothing is left to
    do, and check mode what would change.
  - Bounded - a C(PAUSE) that does not finish within O(timeout) seconds (a long transaction,
    or session pooling, where a server connection is only released when its client leaves)
    is followed by C(RESUME), and the module fails with that reason.
  - A dead-man timer (O(dead_man_seconds)) resumes the pooler if nobody does in time, so a
    control machine that dies during a planned operation cannot leave the clients held.
  - The console is reached over the local Unix socket as PgBouncer's own operating-system
    user and the console user C(pgbouncer), which PgBouncer admits there without a password.
version_added: "0.4.0"
author: pgchaos contributors
options:
  state:
    description:
      - C(paused) or C(resumed); C(reconnected) sends C(RECONNECT <db>), which closes each server
        connection once it is released (at the end of its transaction in transaction pooling),
        so that the next ones are opened anew - through HAProxy, to the servers it sends them to
        now (after a server was set to drain, for example).  C(reconnected) always changes.
    type: str
    required: true
    choices: [paused, resumed, reconnected]
  port:
    description: PgBouncer's port (the number of its Unix socket).
    type: int
    default: 6432
  socket_dir:
    description: PgBouncer's C(unix_socket_dir).
    type: path
    default: /var/run/postgresql
  os_user:
    description: The operating-system user PgBouncer runs as.
    type: str
    default: postgres
  timeout:
    description: Seconds C(PAUSE) may take before the pooler is resumed and the module fails;
      with O(wait_for_server), also how long the resume waits for HAProxy.
    type: float
    default: 10
  databases:
    description:
      - The pooled databases to pause or resume (empty - all of them).  Pausing only the
        replicas' database holds the reads while a replica restarts, and the writes go on.
    type: list
    elements: str
    default: []
  dead_man_seconds:
    description:
      - With O(state=paused) and a value above 0, arm a transient systemd timer
        (C(pgchaos-deadman-pooler-<port>[-<database>...])) that resumes the paused databases
        after that many seconds.
        O(state=resumed) disarms it.  0 arms nothing.
    type: float
    default: 60
  wait_for_server:
    description:
      - With O(state=resumed), resume each database only once the HAProxy of this host routes
        around this server's change of role (polling its stats socket, at most O(timeout)
        seconds) - the new leader after a switchover - so that the pooler's new server
        connections go to the right place; see O(replicas_databases).  The pooler is resumed
        even when the wait runs out, and the module then fails with what HAProxy showed.
    type: str
    default: ""
  haproxy_backend:
    description: The HAProxy backend O(wait_for_server) looks at.
    type: str
    default: primary
  haproxy_replicas_backend:
    description: HAProxy's backend of the replicas, which O(replicas_databases) wait on.
    type: str
    default: replicas
  replicas_databases:
    description:
      - With O(wait_for_server), the pooled databases that read from HAProxy's replicas'
        backend - they are resumed once O(wait_for_server) has left it (and a replica is up
        there), the others once it is alone up in O(haproxy_backend).
    type: list
    elements: str
    default: []
  haproxy_socket:
    description: HAProxy's stats socket.
    type: path
    default: /run/haproxy/admin.sock
notes:
  - Runs on the balancer whose PgBouncer is paused, as root; needs C(psql), C(runuser) and
    C(timeout) (C(postgresql-client) and coreutils; the pgbouncer role installs them).
  - Supports check mode, which predicts C(changed) and sends nothing.
"""

EXAMPLES = r"""
- name: Hold the clients' queries on every balancer
  pgchaos_pooler:
    state: paused
    timeout: 10
    dead_man_seconds: 60

- name: Let them go on
  pgchaos_pooler:
    state: resumed

- name: Let them go on once HAProxy sends the primary port to the new leader
  pgchaos_pooler:
    state: resumed
    wait_for_server: pg2

- name: Hold only the reads from the replicas
  pgchaos_pooler:
    state: paused
    databases: [app_replicas]
"""

RETURN = r"""
waited_seconds:
  description: How long the resume waited for O(wait_for_server).
  returned: when O(wait_for_server) is set and the pooler was resumed
  type: float
  sample: 0.8
at:
  description: When the pooler was paused or resumed, in seconds since the epoch on this
    host's clock, or when the module ran if nothing changed.
  returned: always
  type: float
  sample: 1764650000.123456
paused:
  description: Whether every pooled database is paused after the run (false after a resume,
    null after a reconnect).
  returned: always
  type: bool
  sample: true
pause_seconds:
  description: How long C(PAUSE) took to return (waiting for running transactions).
  returned: when this run paused the pooler
  type: float
  sample: 0.012
dead_man:
  description: The dead-man timer's unit when this run armed one, else null.
  returned: always
  type: str
  sample: pgchaos-deadman-pooler-6432
"""

CONSOLE_DB = "pgbouncer"
# The console admits this user without a password over the Unix socket, from the
# operating-system user the pooler runs as.
CONSOLE_USER = "pgbouncer"
# What the console accepts after PAUSE/RESUME without quoting.
PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*$")


def parse_show(output: str) -> list[dict[str, str]]:
    """Rows of a SHOW command printed by psql --no-align with a tab separator."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        return []
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"), strict=False)) for line in lines[1:]]


def pooled(rows: list[dict[str, str]]) -> dict[str, bool]:
    """Each pooled database (the console's own one aside) and whether it is paused.

    Per database, because only a database's pause shows (SHOW DATABASES, column paused):
    PgBouncer 1.18 has no way to show a pause of the whole pooler.
    """
    return {
        r["name"]: r.get("paused") == "1" for r in rows if r.get("name", CONSOLE_DB) != CONSOLE_DB
    }


def servers_up(stat_csv: str, backend: str) -> list[str]:
    """Servers of a backend that HAProxy counts up, from its ``show stat`` CSV.

    "UP 1/2" (failing checks, not yet down) still counts: connections go there.
    """
    lines = stat_csv.splitlines()
    if not lines or not lines[0].startswith("# "):
        return []
    header = lines[0][2:].split(",")
    rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
    return [
        r["svname"]
        for r in rows
        if r.get("pxname") == backend
        and r.get("svname") not in ("FRONTEND", "BACKEND")
        and r.get("status", "").startswith("UP")
    ]


def haproxy_stat(path: str) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(2)
        sock.connect(path)
        sock.sendall(b"show stat\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


class Pooler:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        params = module.params
        self.runuser = module.get_bin_path("runuser", required=True)
        self.psql = module.get_bin_path("psql", required=True)
        self.timeout_bin = module.get_bin_path("timeout", required=True)
        self.systemctl = module.get_bin_path("systemctl")
        # One timer per set of databases: resuming the reads must not disarm the writes' timer.
        self.fault = "-".join([f"pooler-{params['port']}", *sorted(params["databases"])])

    def console(self, commands: list[str], seconds: float, stop_on_error: bool = True) -> list[str]:
        """psql on the local console, one --command each (the console takes one per query).

        timeout(1) runs inside runuser, next to psql: psql waits as long as PAUSE does,
        run_command has no time limit, and runuser would hold a signal meant for psql.
        """
        params = self.module.params
        return [
            self.runuser, "-u", params["os_user"], "--",
            self.timeout_bin, "--kill-after=2", f"{seconds:g}",
            self.psql, "--no-psqlrc", "--no-align", "--field-separator=\t",
            "--pset=footer=off", f"--set=ON_ERROR_STOP={int(stop_on_error)}",
            f"--host={params['socket_dir']}", f"--port={params['port']}",
            f"--username={CONSOLE_USER}", f"--dbname={CONSOLE_DB}",
            *(f"--command={c}" for c in commands),
        ]  # fmt: skip

    def send(
        self, commands: list[str], seconds: float, stop_on_error: bool = True
    ) -> tuple[int, str, str]:
        # cwd: psql, run as another user, would complain about root's home.
        return self.module.run_command(self.console(commands, seconds, stop_on_error), cwd="/")

    def databases(self) -> dict[str, bool]:
        rc, out, err = self.send(["SHOW DATABASES"], 10)
        if rc != 0:
            self.module.fail_json(
                msg=f"cannot read the pooler's state on port {self.module.params['port']} "
                f"(rc={rc}): {err.strip() or out.strip()}"
            )
        found = pooled(parse_show(out))
        wanted = self.module.params["databases"]
        if wanted:
            unknown = sorted(set(wanted) - set(found))
            if unknown:
                self.module.fail_json(
                    msg=f"the pooler has no database {', '.join(unknown)} "
                    f"(it has {', '.join(sorted(found)) or 'none'})"
                )
            found = {name: paused for name, paused in found.items() if name in wanted}
        odd = sorted(name for name in found if not PLAIN_NAME.match(name))
        if odd:
            self.module.fail_json(msg=f"database names the console cannot take unquoted: {odd}")
        return found

    def resume(self, names: list[str]) -> tuple[int, str, str]:
        # Every RESUME is tried even if one fails: no database is left held.
        if not names:
            return 0, "", ""
        return self.send([f"RESUME {n}" for n in names], 10, stop_on_error=False)

    def pause(self) -> None:
        params = self.module.params
        state = self.databases()
        if not state:
            self.module.fail_json(msg="the pooler has no database to pause")
        todo = sorted(name for name, paused in state.items() if not paused)
        if not todo:
            self.module.exit_json(changed=False, at=time.time(), paused=True, dead_man=None)
        if self.module.check_mode:
            self.module.exit_json(changed=True, at=time.time(), paused=True, dead_man=None)
        dead_man = None
        if params["dead_man_seconds"] > 0:
            # Armed before the pause: held clients always have their way back.
            undo = self.console([f"RESUME {n}" for n in sorted(state)], 10, stop_on_error=False)
            dead_man = arm_timer(self.module, self.systemctl, self.fault,
                                 params["dead_man_seconds"], undo,
                                 "not pausing the pooler")  # fmt: skip
        t0 = time.monotonic()
        rc, out, err = self.send([f"PAUSE {n}" for n in todo], params["timeout"])
        took = time.monotonic() - t0
        if rc != 0:
            # A PAUSE cut short leaves a database pausing: resume every one this run meant to
            # pause (one that never paused just answers with an error) before saying why.
            self.resume(todo)
            disarm_timer(self.module, self.systemctl, self.fault)
            why = (
                f"PAUSE did not finish within {params['timeout']:g} s (a transaction still "
                "running, or session pooling, where a server connection is only released "
                "when its client disconnects)"
                if rc in (124, 137, -9)
                else f"PAUSE failed (rc={rc}): {err.strip() or out.strip()}"
            )
            self.module.fail_json(msg=f"{why}; the pooler was resumed", pause_seconds=took)
        self.module.exit_json(
            changed=True, at=time.time(), paused=True, pause_seconds=took, dead_man=dead_man
        )

    def reconnect(self) -> None:
        names = sorted(self.databases())
        if self.module.check_mode:
            self.module.exit_json(changed=True, at=time.time(), paused=None, dead_man=None)
        rc, out, err = self.send([f"RECONNECT {n}" for n in names], 10)
        if rc != 0:
            self.module.fail_json(msg=f"RECONNECT failed (rc={rc}): {err.strip() or out.strip()}")
        self.module.exit_json(changed=True, at=time.time(), paused=None, dead_man=None)

    def stat(self) -> str | None:
        try:
            return haproxy_stat(self.module.params["haproxy_socket"])
        except OSError:
            return None

    def primary_ready(self, stat: str) -> bool:
        params = self.module.params
        return servers_up(stat, params["haproxy_backend"]) == [params["wait_for_server"]]

    def replicas_ready(self, stat: str) -> bool:
        """The new leader has left the replicas' backend, and a replica serves there."""
        params = self.module.params
        up = servers_up(stat, params["haproxy_replicas_backend"])
        return bool(up) and params["wait_for_server"] not in up

    def resume_checked(self, names: list[str]) -> None:
        rc, out, err = self.resume(names)
        # A database resumed meanwhile (by its dead-man timer, by an operator) makes RESUME
        # answer with an error: what counts is that none is left paused.
        held = self.databases() if rc else {}
        still = sorted(n for n in names if held.get(n))
        if still:
            self.module.fail_json(
                msg=f"RESUME failed (rc={rc}), {', '.join(still)} still paused: "
                f"{err.strip() or out.strip()}; the dead-man timer, if one was armed, will "
                "resume the pooler"
            )

    def resume_when_ready(self, held: list[str]) -> tuple[float, str | None]:
        """Resume each database once HAProxy routes its backend without the old leader.

        The writes' databases wait for the new leader alone in the primary backend, the
        replicas' databases (replicas_databases) for it to have left the replicas' backend:
        a read let go earlier could be handed to it there and cut when HAProxy notices.
        """
        params = self.module.params
        readers = set(params["replicas_databases"])
        pending = [
            (names, ready)
            for names, ready in (
                ([n for n in held if n not in readers], self.primary_ready),
                ([n for n in held if n in readers], self.replicas_ready),
            )
            if names
        ]
        t0 = time.monotonic()
        stat: str | None = None
        while pending:
            stat = self.stat()
            for group in list(pending):
                if stat is not None and group[1](stat):
                    self.resume_checked(group[0])
                    pending.remove(group)
            if pending and time.monotonic() - t0 > params["timeout"]:
                self.resume_checked([n for names, _ in pending for n in names])
                seen = (
                    f"no answer from {params['haproxy_socket']}"
                    if stat is None
                    else f"up in {params['haproxy_backend']}: "
                    f"{servers_up(stat, params['haproxy_backend'])}, in "
                    f"{params['haproxy_replicas_backend']}: "
                    f"{servers_up(stat, params['haproxy_replicas_backend'])}"
                )
                return time.monotonic() - t0, (
                    f"HAProxy did not route around {params['wait_for_server']}'s change of role "
                    f"within {params['timeout']:g} s ({seen})"
                )
            if pending:
                time.sleep(0.1)
        return time.monotonic() - t0, None

    def go_on(self) -> None:
        held = sorted(name for name, paused in self.databases().items() if paused)
        if self.module.check_mode:
            self.module.exit_json(changed=bool(held), at=time.time(), paused=False, dead_man=None)
        waited: float | None = None
        late = None
        if self.module.params["wait_for_server"]:
            waited, late = self.resume_when_ready(held)
        else:
            self.resume_checked(held)
        at = time.time()
        disarm_timer(self.module, self.systemctl, self.fault)
        extra = {} if waited is None else {"waited_seconds": waited}
        if late:
            self.module.fail_json(msg=f"{late}; the pooler was resumed anyway", at=at, **extra)
        self.module.exit_json(changed=bool(held), at=at, paused=False, dead_man=None, **extra)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {
                "type": "str",
                "required": True,
                "choices": ["paused", "resumed", "reconnected"],
            },
            "port": {"type": "int", "default": 6432},
            "socket_dir": {"type": "path", "default": "/var/run/postgresql"},
            "os_user": {"type": "str", "default": "postgres"},
            "timeout": {"type": "float", "default": 10.0},
            "databases": {"type": "list", "elements": "str", "default": []},
            "dead_man_seconds": {"type": "float", "default": 60.0},
            "wait_for_server": {"type": "str", "default": ""},
            "haproxy_backend": {"type": "str", "default": "primary"},
            "haproxy_replicas_backend": {"type": "str", "default": "replicas"},
            "replicas_databases": {"type": "list", "elements": "str", "default": []},
            "haproxy_socket": {"type": "path", "default": "/run/haproxy/admin.sock"},
        },
        supports_check_mode=True,
    )
    if not module.params["timeout"] > 0:
        module.fail_json(msg=f"timeout must be above 0, got {module.params['timeout']}")
    pooler = Pooler(module)
    if module.params["state"] == "paused":
        pooler.pause()
    elif module.params["state"] == "reconnected":
        pooler.reconnect()
    else:
        pooler.go_on()


if __name__ == "__main__":
    main()
