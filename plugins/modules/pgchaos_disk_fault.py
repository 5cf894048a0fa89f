#!/usr/bin/python
# Copyright: pgchaos contributors
from __future__ import annotations

import math
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgchaos_deadman import arm as arm_timer
from ansible.module_utils.pgchaos_deadman import disarm as disarm_timer
from ansible.module_utils.pgchaos_gate import MARKER, gate_message, opted_in

DOCUMENTATION = r"""
---
module: pgchaos_disk_fault
short_description: Fill the filesystem that holds a directory, and free it again
description:
  - Creates one fill file, C(pgchaos-fill), at the top of the filesystem that holds O(path)
    (its mount point), as large as the space left there minus O(leave_bytes), so that the
    next writes to O(path) fail with "No space left on device".  O(state=absent) deletes that
    file and nothing else.
  - Bounded - refused when the filesystem is bigger than O(max_fill_bytes) in all (whatever
    is free on it - a big disk, such as the host's own behind a bind mount, is not one this
    fault was meant for), and when it is the filesystem of C(/) unless O(allow_root_fs) is
    true, since filling the root filesystem starves every service of the host.
  - A dead-man timer (O(dead_man_seconds)) deletes the fill file if nobody does in time.
version_added: "0.3.0"
author: pgchaos contributors
options:
  path:
    description: A directory on the filesystem to fill (links are followed), for example
      PostgreSQL's C(pg_wal).
    type: path
    required: true
  state:
    description: C(present) fills the filesystem, C(absent) frees it again.
    type: str
    required: true
    choices: [present, absent]
  leave_bytes:
    description: Bytes left available after the fill (0 fills it completely).
    type: int
    default: 0
  max_fill_bytes:
    description: Refuse to fill a filesystem whose total size is more than this many bytes.
    type: int
    default: 8589934592
  allow_root_fs:
    description: Allow filling the filesystem that holds C(/).
    type: bool
    default: false
  dead_man_seconds:
    description:
      - With O(state=present) and a value above 0, arm a transient systemd timer
        (C(pgchaos-deadman-fill-<mount point's name>)) that deletes the fill file after that many
        seconds.  O(state=absent) disarms it.  0 arms nothing.
    type: float
    default: 0
notes:
  - Runs on the node whose filesystem is filled, as root.
  - O(state=present) is refused unless the host carries the chaos marker
    C(/etc/pgchaos/chaos-target); O(state=absent) always works.
  - Supports check mode, which predicts C(changed) and writes nothing.
"""

EXAMPLES = r"""
- name: Fill the WAL disk of the leader, dead-man timer 5 minutes
  pgchaos_disk_fault:
    path: /var/lib/postgresql/15/pgchaos/pg_wal
    state: present
    dead_man_seconds: 300
  delegate_to: pg1

- name: Free it again
  pgchaos_disk_fault:
    path: /var/lib/postgresql/15/pgchaos/pg_wal
    state: absent
  delegate_to: pg1
"""

RETURN = r"""
at:
  description: When the fill was in place or the file deleted, in seconds since the epoch
    on this host's clock, or when the module ran if nothing changed.
  returned: always
  type: float
  sample: 1764650000.123456
fill_file:
  description: The fill file.
  returned: always
  type: str
  sample: /var/lib/pgchaos-wal/pgchaos-fill
fill_bytes:
  description: Size of the fill file after the run (0 when there is none).
  returned: always
  type: int
  sample: 512000000
available_before:
  description: Bytes available to unprivileged users on the filesystem before the run.
  returned: always
  type: int
  sample: 512004096
available_after:
  description: Bytes available after the run (equal to RV(available_before) in check mode and
    when nothing changed).
  returned: always
  type: int
  sample: 0
mount_point:
  description: The mount point of the filesystem that holds O(path).
  returned: always
  type: str
  sample: /var/lib/pgchaos-wal
dead_man:
  description: The dead-man timer's unit when this run armed one, else null.
  returned: always
  type: str
  sample: pgchaos-deadman-fill-pgchaos-wal
"""

FILL_NAME = "pgchaos-fill"
CHUNK = 64 * 1024 * 1024


def available(path: str) -> int:
    """What an unprivileged writer such as PostgreSQL can still use (root's reserve excluded)."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def total_size(path: str) -> int:
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def mount_point(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def same_filesystem(a: str, b: str) -> bool:
    return os.stat(a).st_dev == os.stat(b).st_dev


def fill_size(avail: int, leave: int) -> int:
    return max(0, avail - leave)


def refusal(size: int, max_fill: int, on_root: bool, allow_root: bool) -> str | None:
    if on_root and not allow_root:
        return (
            "refusing to fill the filesystem of / (every service of the host would starve): "
            "put the directory on a filesystem of its own, or set allow_root_fs=true"
        )
    if size > max_fill:
        return (
            f"refusing to fill a filesystem of {size} bytes, more than max_fill_bytes "
            f"({max_fill}): it is bigger than the disk this fault is meant for"
        )
    return None


def dead_man_name(path: str) -> str:
    return "fill-" + (os.path.basename(path.rstrip("/")) or "root")


def write_fill(fill_file: str, size: int) -> None:
    """Really allocated blocks (a sparse file would fill nothing), in chunks."""
    fd = os.open(fill_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        done = 0
        while done < size:
            step = min(CHUNK, size - done)
            os.posix_fallocate(fd, done, step)
            done += step
    finally:
        os.close(fd)


class DiskFault:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.path: str = module.params["path"]
        self.state: str = module.params["state"]
        if not os.path.isdir(self.path):
            module.fail_json(msg=f"{self.path} is not a directory")
        self.mount = mount_point(self.path)
        self.fill_file = os.path.join(self.mount, FILL_NAME)
        self.systemctl = module.get_bin_path("systemctl")

    def disarm(self) -> None:
        disarm_timer(self.module, self.systemctl, dead_man_name(self.mount))

    def arm(self) -> str:
        undo = ["/bin/rm", "-f", self.fill_file]
        return arm_timer(self.module, self.systemctl, dead_man_name(self.mount),
                            self.module.params["dead_man_seconds"], undo,
                            "not filling the disk")  # fmt: skip

    def result(self, avail_before: int, **extra: object) -> dict[str, object]:
        return {
            "at": time.time(),
            "fill_file": self.fill_file,
            "fill_bytes": os.path.getsize(self.fill_file) if os.path.exists(self.fill_file) else 0,
            "available_before": avail_before,
            "available_after": available(self.path),
            "mount_point": self.mount,
            "dead_man": None,
            **extra,
        }

    def fill(self, avail: int) -> None:
        params = self.module.params
        on_root = same_filesystem(self.path, "/")
        why = refusal(total_size(self.path), params["max_fill_bytes"], on_root,
                      params["allow_root_fs"])  # fmt: skip
        if why:
            self.module.fail_json(msg=why, **self.result(avail))
        if not opted_in():
            self.module.fail_json(msg=gate_message(MARKER, f"fill the disk of {self.path}"))
        # A fill file already there is part of the space counted as used: nothing to add.
        changed = not os.path.exists(self.fill_file)
        if self.module.check_mode:
            self.module.exit_json(changed=changed, **self.result(avail, available_after=avail))
        # Armed before the disk fills: a fill is never left without its way back.
        dead_man = self.arm() if params["dead_man_seconds"] > 0 else None
        if not changed:
            self.module.exit_json(
                changed=False, **self.result(avail, available_after=avail, dead_man=dead_man)
            )
        try:
            write_fill(self.fill_file, fill_size(avail, params["leave_bytes"]))
        except OSError as exc:
            # ENOSPC near the end is the point; anything else is a real failure.
            if exc.errno != 28:
                os.unlink(self.fill_file)
                self.disarm()
                self.module.fail_json(msg=f"cannot write {self.fill_file}: {exc}")
        self.module.exit_json(changed=True, **self.result(avail, dead_man=dead_man))

    def free(self, avail: int) -> None:
        changed = os.path.exists(self.fill_file)
        if self.module.check_mode:
            self.module.exit_json(changed=changed, **self.result(avail, available_after=avail))
        self.disarm()
        if changed:
            try:
                os.unlink(self.fill_file)
            except OSError as exc:
                self.module.fail_json(msg=f"cannot delete {self.fill_file}: {exc}")
        self.module.exit_json(changed=changed, **self.result(avail))

    def run(self) -> None:
        avail = available(self.path)
        if self.state == "present":
            self.fill(avail)
        else:
            self.free(avail)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "required": True, "choices": ["present", "absent"]},
            "leave_bytes": {"type": "int", "default": 0},
            "max_fill_bytes": {"type": "int", "default": 8 * 1024**3},
            "allow_root_fs": {"type": "bool", "default": False},
            "dead_man_seconds": {"type": "float", "default": 0},
        },
        supports_check_mode=True,
    )
    seconds = module.params["dead_man_seconds"]
    if not (math.isfinite(seconds) and seconds >= 0):
        module.fail_json(msg=f"dead_man_seconds must be a finite number, 0 or more, got {seconds}")
    if module.params["leave_bytes"] < 0 or module.params["max_fill_bytes"] < 0:
        module.fail_json(msg="leave_bytes and max_fill_bytes must be 0 or more")
    DiskFault(module).run()


if __name__ == "__main__":
    main()
