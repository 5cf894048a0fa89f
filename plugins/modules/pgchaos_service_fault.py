#!/usr/bin/python
# Copyright: pgchaos contributors
from __future__ import annotations

import os
import signal
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgchaos_deadman import (
    arm_command,
    disarm_commands,
    shell,
)
from ansible.module_utils.pgchaos_deadman import (
    unit_name as dead_man_unit,
)
from ansible.module_utils.pgchaos_gate import MARKER, gate_message, opted_in
from ansible.module_utils.pgchaos_proc import (
    FROZEN_PROC_STATES,
    STARTED_STATES,
    STOPPED_STATES,
    SYSTEMD_PROPERTIES,
    is_frozen,
    is_running,
    parse_main_pid,
    parse_pid_file,
    parse_systemctl_show,
    proc_state,
    read_text,
    unit_pids,
)

DOCUMENTATION = r"""
---
module: pgchaos_service_fault
short_description: Stop, start, kill, freeze or thaw a systemd service on a node
description:
  - Injects a process-level fault into one systemd unit (for example C(patroni), C(etcd),
    C(haproxy)) on the managed node.
  - C(stop) and C(start) go through C(systemctl). C(kill) sends SIGKILL, C(freeze) SIGSTOP and
    C(thaw) SIGCONT to the processes chosen by O(scope).
  - After a C(kill) the unit's C(Restart=) policy applies, so systemd may start the service
    again (Patroni's unit has C(Restart=on-failure)); the returned C(after) state is read right
    after the killed processes are gone, before a restart delay has usually elapsed.
  - A frozen process keeps its sockets open, so peers see a hung service rather than a dead
    one. Thaw it again, or stop the unit (systemd sends SIGCONT after SIGTERM when stopping).
  - Idempotent where that means something; C(stop) of a stopped unit, C(start) of a started
    one, C(freeze) of frozen processes and C(thaw) of running ones report no change. C(kill)
    reports a change whenever there is a process to kill.
version_added: "0.1.0"
author: pgchaos contributors
options:
  service:
    description: Unit name; C(.service) is implied when no suffix is given.
    type: str
    required: true
  action:
    description: What to do to the service.
    type: str
    required: true
    choices: [stop, start, kill, freeze, thaw]
  scope:
    description:
      - Which processes C(kill), C(freeze) and C(thaw) signal.
      - C(unit) all processes in the unit's cgroup (C(systemctl kill --kill-whom=all)).
      - C(main) the unit's main PID only (C(systemctl kill --kill-whom=main)); with Patroni that
        is the Patroni daemon, PostgreSQL keeps running.
      - C(pidfile) the process whose pid is the first line of O(pid_file), for example the
        postmaster alone under Patroni.
      - Meaningless for C(stop) and C(start), which always act on the whole unit.
    type: str
    default: unit
    choices: [unit, main, pidfile]
  pid_file:
    description: File whose first line is the pid to signal; required with O(scope=pidfile).
    type: path
  dead_man_seconds:
    description:
      - With C(stop), C(kill) or C(freeze) and a value above 0, arm a dead-man timer on this
        host (a transient systemd timer, C(pgchaos-deadman-<service>)) that starts (or thaws)
        the unit after that many seconds unless C(start) or C(thaw) comes first, which
        disarms it.  A control machine that dies mid-scenario then leaves no fault behind.
      - 0 arms nothing.
    type: float
    default: 0
  wait_timeout:
    description:
      - Seconds to wait for signalled processes to reach the expected state (gone after
        C(kill), stopped after C(freeze), running after C(thaw)) before reading C(after).
      - The module does not fail when the time runs out; C(after) then shows what was seen.
    type: float
    default: 5.0
notes:
  - Runs on the node that hosts the service, as root (C(become)).
  - C(stop), C(kill) and C(freeze) are refused unless the host carries the chaos marker
    C(/etc/pgchaos/chaos-target) (the lab writes it; C(playbooks/chaos-optin.yml) elsewhere);
    C(start) and C(thaw) always work.
  - Supports check mode, which predicts C(changed) from the current state and signals
    nothing.
"""

EXAMPLES = r"""
- name: Kill Patroni's main process (PostgreSQL survives; systemd restarts Patroni)
  pgchaos_service_fault:
    service: patroni
    action: kill
    scope: main
  become: true

- name: Kill the postmaster alone, leaving Patroni to notice
  pgchaos_service_fault:
    service: patroni
    action: kill
    scope: pidfile
    pid_file: /var/lib/postgresql/15/pgchaos/postmaster.pid
  become: true

- name: Freeze etcd (hung, not dead)
  pgchaos_service_fault:
    service: etcd
    action: freeze
  become: true

- name: Thaw it
  pgchaos_service_fault:
    service: etcd
    action: thaw
  become: true
"""

RETURN = r"""
dead_man:
  description: The dead-man timer's unit when one was armed by this run, else null.
  returned: always
  type: str
  sample: pgchaos-deadman-patroni
at:
  description:
    - When the action took effect, in seconds since the epoch on this host's clock - when a
      stop began, when a start had completed, when the signal was sent - or when the module
      ran if nothing changed.  Give it to M(pgchaos_event) as O(pgchaos_event#module:time).
  returned: always
  type: float
  sample: 1764650000.123456
unit:
  description: The unit acted on.
  returned: always
  type: str
  sample: patroni.service
action:
  description: The action requested.
  returned: always
  type: str
  sample: kill
scope:
  description: The scope used for signals.
  returned: always
  type: str
  sample: main
signalled_pids:
  description: Pids that were (or in check mode would be) signalled; empty for stop/start.
  returned: always
  type: list
  elements: int
  sample: [1234]
before:
  description: State before acting.
  returned: always
  type: dict
  contains:
    active_state:
      description: systemd ActiveState.
      returned: always
      type: str
      sample: active
    sub_state:
      description: systemd SubState.
      returned: always
      type: str
      sample: running
    main_pid:
      description: systemd MainPID, 0 when none.
      returned: always
      type: int
      sample: 1234
    pids:
      description: Live pids selected by O(scope).
      returned: always
      type: list
      elements: int
      sample: [1234, 1240]
    frozen:
      description: True when every pid in RV(before.pids) is stopped (C(T) in /proc/<pid>/stat).
      returned: always
      type: bool
      sample: false
  sample: {active_state: active, sub_state: running, main_pid: 1234, pids: [1234], frozen: false}
after:
  description: State after acting, same keys as RV(before); equal to it in check mode.
  returned: always
  type: dict
  sample: {active_state: activating, sub_state: auto-restart, main_pid: 0, pids: [], frozen: false}
"""

SIGNALS = {"kill": signal.SIGKILL, "freeze": signal.SIGSTOP, "thaw": signal.SIGCONT}


def unit_name(service: str) -> str:
    """systemd's own default suffix, made explicit so results name the real unit."""
    known = (".service", ".socket", ".target", ".scope", ".slice", ".timer", ".mount")
    return service if service.endswith(known) else service + ".service"


def kill_whom(scope: str) -> str:
    return "all" if scope == "unit" else "main"


def predict_changed(action: str, active_state: str, pids: list[int], frozen: list[int]) -> bool:
    """Whether the action would change anything, from the state read before acting."""
    if action == "stop":
        return active_state not in STOPPED_STATES
    if action == "start":
        return active_state not in STARTED_STATES
    if action == "kill":
        return bool(pids)
    if action == "freeze":
        return any(pid not in frozen for pid in pids)
    if action == "thaw":
        return bool(frozen)
    raise ValueError(f"unknown action {action!r}")


class ServiceFault:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.unit = unit_name(module.params["service"])
        self.action: str = module.params["action"]
        self.scope: str = module.params["scope"]
        self.pid_file: str | None = module.params["pid_file"]
        self.systemctl = module.get_bin_path("systemctl")
        if self.systemctl is None:
            module.fail_json(msg="systemctl not found: this module needs a systemd host")

    def show(self) -> dict[str, str]:
        args = [self.systemctl, "show"]
        for prop in SYSTEMD_PROPERTIES:
            args += ["-p", prop]
        args.append(self.unit)
        rc, out, err = self.module.run_command(args)
        if rc != 0:
            self.module.fail_json(
                msg=f"systemctl show {self.unit} failed (rc={rc}): {err.strip() or out.strip()}"
            )
        return parse_systemctl_show(out)

    def target_pids(self, props: dict[str, str]) -> list[int]:
        if self.scope == "main":
            pid = parse_main_pid(props.get("MainPID"))
            return [pid] if pid and is_running(pid) else []
        if self.scope == "pidfile":
            assert self.pid_file is not None
            text = read_text(self.pid_file)
            pid = parse_pid_file(text) if text is not None else None
            return [pid] if pid and is_running(pid) else []
        return unit_pids(props.get("ControlGroup", ""))

    def state(self) -> tuple[dict[str, object], list[int], list[int]]:
        props = self.show()
        if props.get("LoadState") == "not-found":
            self.module.fail_json(
                msg=f"unit {self.unit} not found on this host (LoadState=not-found)"
            )
        pids = self.target_pids(props)
        frozen = [pid for pid in pids if proc_state(pid) in FROZEN_PROC_STATES]
        summary: dict[str, object] = {
            "active_state": props.get("ActiveState", ""),
            "sub_state": props.get("SubState", ""),
            "main_pid": parse_main_pid(props.get("MainPID")),
            "pids": pids,
            "frozen": bool(pids) and len(frozen) == len(pids),
        }
        return summary, pids, frozen

    def run_systemctl(self, *args: str) -> None:
        cmd = [self.systemctl, *args]
        rc, out, err = self.module.run_command(cmd)
        if rc != 0:
            self.module.fail_json(
                msg=f"{' '.join(cmd)} failed (rc={rc}): {err.strip() or out.strip()}",
                rc=rc,
                stdout=out,
                stderr=err,
            )

    def signal(self, pids: list[int]) -> None:
        sig = SIGNALS[self.action]
        if self.scope == "pidfile":
            # systemctl cannot address a single pid: signal it directly.
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
                except OSError as exc:
                    self.module.fail_json(msg=f"cannot send {sig.name} to pid {pid}: {exc}")
            return
        self.run_systemctl(
            "kill", f"--kill-whom={kill_whom(self.scope)}", f"--signal={sig.name}", self.unit
        )

    def settled(self, pids: list[int]) -> bool:
        if self.action == "kill":
            return not any(is_running(pid) for pid in pids)
        if self.action == "freeze":
            return all(is_frozen(pid) or not is_running(pid) for pid in pids)
        return not any(is_frozen(pid) for pid in pids)

    def wait(self, pids: list[int]) -> None:
        # Signals are delivered asynchronously; read `after` once they have taken effect.
        deadline = time.monotonic() + self.module.params["wait_timeout"]
        while not self.settled(pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    def run(self) -> None:
        before, pids, frozen = self.state()
        if self.action == "freeze" and not pids:
            self.module.fail_json(
                msg=f"nothing to freeze: {self.unit} has no running process for scope={self.scope}",
                before=before,
            )
        changed = predict_changed(self.action, str(before["active_state"]), pids, frozen)
        # systemctl kill signals every selected process, so report all of them.
        signalled: list[int] = [] if self.action in ("stop", "start") else pids
        result: dict[str, object] = {
            "unit": self.unit,
            "action": self.action,
            "scope": self.scope,
            "signalled_pids": signalled,
            "before": before,
        }
        result["dead_man"] = None
        if self.module.check_mode:
            self.module.exit_json(changed=changed, after=before, at=time.time(), **result)
        if self.action in ("start", "thaw"):
            # Whoever puts the service right disarms its timer, changed or not.
            self.disarm()
        if not changed:
            self.module.exit_json(changed=changed, after=before, at=time.time(), **result)
        # A stop takes effect when it begins (the service goes away during it); a start
        # when the unit is up; a signal when it was delivered.
        at = time.time()
        if self.action in ("stop", "start"):
            self.run_systemctl(self.action, self.unit)
            if self.action == "start":
                at = time.time()
        else:
            self.signal(signalled)
            at = time.time()
            self.wait(signalled)
        if self.action in ("stop", "kill", "freeze") and self.module.params["dead_man_seconds"] > 0:
            result["dead_man"] = self.arm(signalled)
        after, _, _ = self.state()
        self.module.exit_json(changed=True, after=after, at=at, **result)

    def disarm(self) -> None:
        # Stopping a timer that is not there fails harmlessly: nothing to check.
        for cmd in disarm_commands(self.systemctl, self.unit):
            self.module.run_command(cmd)

    def arm(self, signalled: list[int]) -> str:
        """A transient timer that undoes this fault if nobody else does in time."""
        systemd_run = self.module.get_bin_path("systemd-run", required=True)
        if self.action == "freeze":
            undo = shell(["kill", "-CONT", *(str(pid) for pid in signalled)])
        else:
            undo = [self.systemctl, "start", self.unit]
        self.disarm()
        cmd = arm_command(systemd_run, self.unit, self.module.params["dead_man_seconds"], undo)
        rc, out, err = self.module.run_command(cmd)
        if rc != 0:
            self.module.fail_json(
                msg=f"the fault is in place but its dead-man timer could not be armed: "
                f"{' '.join(cmd)} failed (rc={rc}): {err.strip() or out.strip()}"
            )
        return dead_man_unit(self.unit)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "service": {"type": "str", "required": True},
            "action": {
                "type": "str",
                "required": True,
                "choices": ["stop", "start", "kill", "freeze", "thaw"],
            },
            "scope": {"type": "str", "default": "unit", "choices": ["unit", "main", "pidfile"]},
            "pid_file": {"type": "path"},
            "wait_timeout": {"type": "float", "default": 5.0},
            "dead_man_seconds": {"type": "float", "default": 0.0},
        },
        required_if=[("scope", "pidfile", ["pid_file"])],
        supports_check_mode=True,
    )
    params = module.params
    if params["action"] in ("stop", "start") and params["scope"] != "unit":
        module.fail_json(
            msg=f"scope={params['scope']} does not apply to action={params['action']}: "
            "stop and start act on the whole unit; leave scope at its default (unit)"
        )
    dead_man = params["dead_man_seconds"]
    if not 0 <= dead_man <= 86400:  # also refuses NaN
        module.fail_json(msg=f"dead_man_seconds must be between 0 and 86400, got {dead_man}")
    if params["action"] in ("stop", "kill", "freeze") and not opted_in():
        module.fail_json(msg=gate_message(MARKER, f"{params['action']} {params['service']}"))
    if params["pid_file"] and params["scope"] != "pidfile":
        module.fail_json(
            msg=f"pid_file is only used with scope=pidfile, not scope={params['scope']}"
        )
    if not params["service"].strip():
        module.fail_json(msg="service must name a systemd unit, got an empty string")
    ServiceFault(module).run()


if __name__ == "__main__":
    main()
