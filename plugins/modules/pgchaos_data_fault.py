#!/usr/bin/python
# Copyright: pgchaos contributors
from __future__ import annotations

import math
import os
import shutil
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgchaos_deadman import arm as arm_timer
from ansible.module_utils.pgchaos_deadman import disarm as disarm_timer
from ansible.module_utils.pgchaos_deadman import shell
from ansible.module_utils.pgchaos_deadman import unit_name as dead_man_unit
from ansible.module_utils.pgchaos_gate import MARKER, gate_message, opted_in

DOCUMENTATION = r"""
---
module: pgchaos_data_fault
short_description: Make a service lose its data directory, with a way back
description:
  - Simulates a lost disk for one directory of a service (for example the C(member)
    directory of etcd) - the service is stopped and the directory renamed aside, so the service
    finds nothing when it starts again.  Nothing is deleted by the loss.
  - The aside copy carries a marker file; only a copy with that marker is ever deleted
    (O(state=discarded)), so the module never deletes data it did not move aside itself.
  - A dead-man timer (O(dead_man_seconds)) puts the data back and starts the service if
    nobody restores or discards it in time; it leaves alone a directory rebuilt meanwhile.
version_added: "0.3.0"
author: pgchaos contributors
options:
  path:
    description: The directory that is lost, for example C(/var/lib/etcd/pgchaos/member).
    type: path
    required: true
  state:
    description:
      - C(lost) stops O(service) and renames O(path) aside (O(path) with the suffix
        C(.pgchaos-lost)).
      - C(restored) puts the aside copy back where O(path) is missing, then starts
        O(service).  Refused when O(path) exists again (rebuilt), whose copy is discarded instead.
      - C(held) only disarms the dead-man timer and keeps the copy aside - before the data is
        rebuilt some other way, so that the timer cannot put the old data back in the middle
        of the rebuild.
      - C(discarded) deletes the aside copy once the data has been rebuilt some other way.
      - C(restored), C(held) and C(discarded) disarm the dead-man timer.
      - C(restored) starts O(service) only when it puts data back.
    type: str
    required: true
    choices: [lost, restored, held, discarded]
  service:
    description: The systemd unit that owns the data; stopped before the loss and started
      after a restore (also by the dead-man timer).
    type: str
  dead_man_seconds:
    description:
      - With O(state=lost) and a value above 0, arm a transient systemd timer
        (C(pgchaos-deadman-data-<directory name>)) that puts the data back and starts
        O(service) after that many seconds.  0 arms nothing.
    type: float
    default: 0
notes:
  - Runs on the node that holds the data, as root.
  - C(lost) is refused unless the host carries the chaos marker C(/etc/pgchaos/chaos-target);
    C(restored) and C(discarded) always work.
  - Supports check mode, which predicts C(changed) and moves nothing.
"""

EXAMPLES = r"""
- name: etcd2 loses its member data (the member is then rebuilt with member remove/add)
  pgchaos_data_fault:
    path: /var/lib/etcd/pgchaos/member
    state: lost
    service: etcd
    dead_man_seconds: 300
  delegate_to: etcd2

- name: Before rebuilding the member, keep the timer from putting the old data back
  pgchaos_data_fault:
    path: /var/lib/etcd/pgchaos/member
    state: held
  delegate_to: etcd2

- name: Once the member has been rebuilt, drop the copy that was moved aside
  pgchaos_data_fault:
    path: /var/lib/etcd/pgchaos/member
    state: discarded
  delegate_to: etcd2
"""

RETURN = r"""
at:
  description: When the loss (or the restore) took effect, in seconds since the epoch on
    this host's clock, or when the module ran if nothing changed.
  returned: always
  type: float
  sample: 1764650000.123456
before:
  description: What was there before acting - C(present) (the directory only),
    C(lost) (the aside copy only), C(rebuilt) (both), or C(missing) (neither).
  returned: always
  type: str
  sample: present
aside:
  description: Where the lost data is kept until it is restored or discarded.
  returned: always
  type: str
  sample: /var/lib/etcd/pgchaos/member.pgchaos-lost
dead_man:
  description: The dead-man timer's unit when this run armed one, else null.
  returned: always
  type: str
  sample: pgchaos-deadman-data-member
"""

SUFFIX = ".pgchaos-lost"
# Inside the aside copy: the proof that pgchaos moved it there, required before deleting it.
ASIDE_MARKER = ".pgchaos-lost-by-pgchaos"


def aside_path(path: str) -> str:
    return path.rstrip("/") + SUFFIX


def layout(path: str) -> str:
    """What is on disk: present, lost, rebuilt or missing (see RETURN)."""
    here, aside = os.path.isdir(path), os.path.isdir(aside_path(path))
    return {(True, False): "present", (False, True): "lost", (True, True): "rebuilt"}.get(
        (here, aside), "missing"
    )


def predict_changed(state: str, before: str) -> bool:
    if state == "held":
        return False
    if state == "lost":
        return before == "present"
    if state == "restored":
        return before == "lost"
    return before in ("lost", "rebuilt")


def refusal(state: str, before: str, path: str) -> str | None:
    """Why the requested state cannot be reached from what is on disk, if it cannot."""
    aside = aside_path(path)
    if state == "lost" and before == "rebuilt":
        return (
            f"{aside} is still there from an earlier loss and {path} has been rebuilt: "
            "discard the old copy (state=discarded) before losing the data again"
        )
    if state == "lost" and before == "missing":
        return f"nothing to lose: neither {path} nor {aside} exists"
    if state == "restored" and before == "rebuilt":
        return (
            f"{path} exists again (rebuilt since the loss): not overwriting it with the old "
            f"copy; use state=discarded to drop {aside}"
        )
    if state == "restored" and before == "missing":
        return f"nothing to restore: neither {path} nor {aside} exists"
    if state == "discarded" and before == "lost":
        return (
            f"{path} has not been rebuilt: discarding {aside} would destroy the only copy "
            "of the data (state=restored puts it back)"
        )
    return None


def dead_man_name(path: str) -> str:
    return "data-" + os.path.basename(path.rstrip("/"))


def undo_command(systemctl: str, path: str, service: str | None) -> list[str]:
    """Put the copy back unless the directory was rebuilt meanwhile, then start the service."""
    aside = aside_path(path)
    put_back = ["/bin/sh", "-c", f'[ -e "$1" ] || {{ mv "$2" "$1" && rm -f "$1/{ASIDE_MARKER}"; }}',
                "pgchaos-undo", path, aside]  # fmt: skip
    steps = [put_back] + ([[systemctl, "start", service]] if service else [])
    return shell(*steps)


class DataFault:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.path: str = module.params["path"].rstrip("/")
        self.aside = aside_path(self.path)
        self.state: str = module.params["state"]
        self.service: str | None = module.params["service"]
        self.systemctl = module.get_bin_path("systemctl")
        if self.systemctl is None and (self.service or module.params["dead_man_seconds"] > 0):
            module.fail_json(msg="systemctl not found: a service or a dead-man timer needs systemd")

    def systemctl_run(self, *args: str) -> None:
        cmd = [str(self.systemctl), *args]
        rc, out, err = self.module.run_command(cmd)
        if rc != 0:
            self.module.fail_json(
                msg=f"{' '.join(cmd)} failed (rc={rc}): {err.strip() or out.strip()}"
            )

    def armed(self) -> bool:
        if self.systemctl is None:
            return False
        unit = dead_man_unit(dead_man_name(self.path)) + ".timer"
        rc, _, _ = self.module.run_command([self.systemctl, "is-active", "--quiet", unit])
        return rc == 0

    def disarm(self) -> None:
        disarm_timer(self.module, self.systemctl, dead_man_name(self.path))

    def arm(self) -> str:
        undo = undo_command(str(self.systemctl), self.path, self.service)
        return arm_timer(self.module, self.systemctl, dead_man_name(self.path),
                            self.module.params["dead_man_seconds"], undo,
                            f"the data is aside at {self.aside}")  # fmt: skip

    def lose(self) -> None:
        if self.service:
            self.systemctl_run("stop", self.service)
        at = time.time()
        try:
            os.rename(self.path, self.aside)
            with open(os.path.join(self.aside, ASIDE_MARKER), "w", encoding="utf-8") as marker:
                marker.write(f"moved aside from {self.path} by pgchaos_data_fault at {at}\n")
        except OSError as exc:
            self.module.fail_json(msg=f"cannot move {self.path} aside to {self.aside}: {exc}")
        self.result["at"] = at
        if self.module.params["dead_man_seconds"] > 0:
            self.result["dead_man"] = self.arm()

    def restore(self) -> None:
        try:
            os.rename(self.aside, self.path)
            os.remove(os.path.join(self.path, ASIDE_MARKER))
        except FileNotFoundError:
            pass
        except OSError as exc:
            self.module.fail_json(msg=f"cannot put {self.aside} back to {self.path}: {exc}")
        if self.service:
            self.systemctl_run("start", self.service)
        self.result["at"] = time.time()

    def discard(self) -> None:
        if not os.path.isfile(os.path.join(self.aside, ASIDE_MARKER)):
            self.module.fail_json(
                msg=f"not deleting {self.aside}: it lacks the marker {ASIDE_MARKER}, so "
                "pgchaos did not move it there"
            )
        try:
            shutil.rmtree(self.aside)
        except OSError as exc:
            self.module.fail_json(msg=f"cannot delete {self.aside}: {exc}")
        self.result["at"] = time.time()

    def run(self) -> None:
        before = layout(self.path)
        self.result: dict[str, object] = {
            "before": before, "aside": self.aside, "dead_man": None, "at": time.time(),
        }  # fmt: skip
        why = refusal(self.state, before, self.path)
        if why:
            self.module.fail_json(msg=why, **self.result)
        if self.state == "lost" and not opted_in():
            self.module.fail_json(
                msg=gate_message(MARKER, f"move {self.path} aside"), **self.result
            )
        changed = predict_changed(self.state, before)
        if self.state == "held":
            changed = self.armed()
        if self.module.check_mode:
            self.module.exit_json(changed=changed, **self.result)
        if self.state != "lost":
            # Whoever puts the data right disarms its timer, changed or not.
            self.disarm()
        if changed and self.state != "held":
            {"lost": self.lose, "restored": self.restore, "discarded": self.discard}[self.state]()
        self.module.exit_json(changed=changed, **self.result)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {
                "type": "str",
                "required": True,
                "choices": ["lost", "restored", "held", "discarded"],
            },
            "service": {"type": "str"},
            "dead_man_seconds": {"type": "float", "default": 0},
        },
        supports_check_mode=True,
    )
    seconds = module.params["dead_man_seconds"]
    if not (math.isfinite(seconds) and seconds >= 0):
        module.fail_json(msg=f"dead_man_seconds must be a finite number, 0 or more, got {seconds}")
    DataFault(module).run()


if __name__ == "__main__":
    main()
