#!/usr/bin/python
# Copyright: pgchaos contributors
from __future__ import annotations

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgchaos_gate import MARKER, gate_message

DOCUMENTATION = r"""
---
module: pgchaos_node_fault
short_description: Lose a whole node of the container lab (docker kill, stop, start, pause, unpause)
description:
  - Acts on a lab container with the C(docker) CLI found on the machine the module runs on,
    normally the control machine (C(delegate_to=localhost)).
  - C(kill) is a hard loss (SIGKILL to every process, no clean shutdown), C(stop) a clean
    shutdown (systemd's stop signal, then SIGKILL after O(stop_timeout)), C(pause) freezes
    every process of the container (the cgroup freezer) so the node hangs with its sockets
    open, C(unpause) resumes it, C(start) boots a stopped node again (the lab keeps its
    address).
  - Idempotent by the container's status (C(docker inspect)); C(kill) and C(stop) of a
    container that is not running, C(start) of a running one, C(pause) of a paused one and
    C(unpause) of one that is not paused change nothing.
  - On real hosts there is no container to kill; scenarios combine M(pgchaos_service_fault)
    (kill every service of the node) and M(pgchaos_net_fault) (partition it from everybody)
    instead.
version_added: "0.1.0"
author: pgchaos contributors
options:
  container:
    description: Container name or id.
    type: str
    required: true
  action:
    description: What to do to the container.
    type: str
    required: true
    choices: [kill, stop, start, pause, unpause]
  stop_timeout:
    description: Seconds C(docker stop) waits before it kills.
    type: int
    default: 10
notes:
  - Connections to a paused container hang; give tasks that run on it a timeout, and unpause
    (or start) containers that Ansible still has to talk to.
  - Supports check mode, which predicts C(changed) from the container's status.
"""

EXAMPLES = r"""
- name: Hard loss of the leader's host
  pgchaos_node_fault:
    container: pgchaos-pg1
    action: kill
  delegate_to: localhost

- name: Bring it back
  pgchaos_node_fault:
    container: pgchaos-pg1
    action: start
  delegate_to: localhost
"""

RETURN = r"""
at:
  description:
    - When the action took effect, in seconds since the epoch - when docker was asked to
      kill, stop or pause (the node is lost during the command), when it had carried out a
      start or unpause - or when the module ran if nothing changed.
      Give it to M(pgchaos_event) as O(pgchaos_event#module:time).
  returned: always
  type: float
  sample: 1764650000.123456
container:
  description: The container acted on.
  returned: always
  type: str
  sample: pgchaos-pg1
action:
  description: The action requested.
  returned: always
  type: str
  sample: kill
before:
  description: Container status before acting (C(docker inspect) State.Status).
  returned: always
  type: str
  sample: running
after:
  description: Container status after acting; equal to RV(before) in check mode or without change.
  returned: always
  type: str
  sample: exited
cmd:
  description: The docker command run (empty when nothing had to be done).
  returned: always
  type: list
  elements: str
  sample: [/usr/bin/docker, kill, pgchaos-pg1]
"""

# Statuses from `docker inspect -f '{{.State.Status}}'` in which processes exist.
ALIVE = frozenset({"running", "paused", "restarting"})


def plan(action: str, status: str) -> tuple[bool, str | None]:
    """(changed, error) for an action on a container in a given status."""
    if action in ("kill", "stop"):
        return status in ALIVE, None
    if action == "start":
        if status == "paused":
            return False, "container is paused: use action=unpause, start cannot resume it"
        return status != "running", None
    if action == "pause":
        if status == "paused":
            return False, None
        if status != "running":
            return False, f"cannot pause a container that is {status}, not running"
        return True, None
    if action == "unpause":
        return status == "paused", None
    raise ValueError(f"unknown action {action!r}")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "container": {"type": "str", "required": True},
            "action": {
                "type": "str",
                "required": True,
                "choices": ["kill", "stop", "start", "pause", "unpause"],
            },
            "stop_timeout": {"type": "int", "default": 10},
        },
        supports_check_mode=True,
    )
    container: str = module.params["container"]
    action: str = module.params["action"]
    docker = module.get_bin_path("docker", required=True)

    def status() -> str:
        rc, out, err = module.run_command([docker, "inspect", "-f", "{{.State.Status}}", container])
        if rc != 0:
            module.fail_json(
                msg=f"cannot inspect container {container!r}: {err.strip() or out.strip()}"
            )
        return out.strip()

    before = status()
    if action in ("kill", "stop", "pause") and before == "running":
        # The container's own chaos marker, as the other fault modules check it on the host.
        rc, _, _ = module.run_command([docker, "exec", container, "test", "-f", MARKER])
        if rc != 0:
            module.fail_json(msg=gate_message(f"{MARKER} in {container}", f"{action} {container}"))
    changed, error = plan(action, before)
    if error:
        module.fail_json(msg=f"{action} {container}: {error}", before=before)
    cmd: list[str] = []
    if changed:
        cmd = [docker, action, container]
        if action == "stop":
            cmd[2:2] = ["-t", str(module.params["stop_timeout"])]
    result = {"container": container, "action": action, "before": before, "cmd": cmd}
    if not changed or module.check_mode:
        module.exit_json(changed=changed, after=before, at=time.time(), **result)
    begun = time.time()
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(
            msg=f"{' '.join(cmd)} failed (rc={rc}): {err.strip() or out.strip()}", **result
        )
    # Losing the node takes effect during the command (clients see it before docker
    # returns); it is back only once start or unpause has returned.
    at = time.time() if action in ("start", "unpause") else begun
    module.exit_json(changed=True, after=status(), at=at, **result)


if __name__ == "__main__":
    main()
