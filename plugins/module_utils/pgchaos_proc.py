# Copyright: pgchaos contributors
# Pure helpers for the pgchaos fault modules: systemd properties, /proc process state.
# Kept free of AnsibleModule so they can be unit-tested with plain strings.
from __future__ import annotations

import os

# Properties read with `systemctl show`; LoadState tells a missing unit from a stopped one.
SYSTEMD_PROPERTIES = ("LoadState", "ActiveState", "SubState", "MainPID", "ControlGroup")

# ActiveState values in which a unit counts as started: `start` has nothing to do.
STARTED_STATES = frozenset({"active", "activating", "reloading", "refreshing"})
# ActiveState values in which a unit counts as stopped: `stop` has nothing to do.
STOPPED_STATES = frozenset({"inactive", "failed", "maintenance"})

# /proc/<pid>/stat states: T is stopped by a signal (SIGSTOP), t is stopped by a tracer.
FROZEN_PROC_STATES = frozenset({"T", "t"})
# A killed process stays a zombie until its parent reaps it: it no longer runs.
GONE_PROC_STATES = frozenset({"Z", "X", "x"})


def parse_systemctl_show(text: str) -> dict[str, str]:
    """`systemctl show -p A -p B unit` output (KEY=value lines) as a dict."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            props[key.strip()] = value.strip()
    return props


def parse_main_pid(value: str | None) -> int:
    """MainPID as an int, 0 when systemd reports none or garbage."""
    try:
        pid = int(value or "0")
    except ValueError:
        return 0
    return max(pid, 0)


def parse_proc_stat_state(text: str) -> str | None:
    """The one-letter state from /proc/<pid>/stat.

    The command name (field 2) is in parentheses and may itself hold spaces and ')', so the
    state is the first field after the *last* ')'.
    """
    _, sep, rest = text.rpartition(")")
    if not sep:
        return None
    fields = rest.split()
    return fields[0] if fields else None


def parse_pid_file(text: str) -> int | None:
    """First line of a pid file (PostgreSQL's postmaster.pid has more lines) as a pid."""
    first = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not first.isdigit():
        return None
    pid = int(first)
    return pid if pid > 0 else None


def cgroup_paths(text: str) -> list[str]:
    """The cgroup paths in /proc/<pid>/cgroup that systemd uses to track units.

    Those are the unified hierarchy (`0::/path`) and the legacy named one
    (`N:name=systemd:/path`); which one carries the unit depends on the host's cgroup mode
    (pure v2, hybrid or v1), so both are returned.
    """
    paths: list[str] = []
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier_id, controllers, path = parts
        if (hier_id == "0" and controllers == "") or controllers == "name=systemd":
            paths.append(path.strip())
    return paths


def in_cgroup(paths: list[str], control_group: str) -> bool:
    """True when one of a process's cgroup paths is the unit's cgroup or below it."""
    if not control_group or control_group == "/":
        return False
    prefix = control_group.rstrip("/") + "/"
    return any(p == control_group or p.startswith(prefix) for p in paths)


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def proc_state(pid: int) -> str | None:
    """Live state letter of a pid, None when the process does not exist."""
    text = read_text(f"/proc/{pid}/stat")
    return None if text is None else parse_proc_stat_state(text)


def is_running(pid: int) -> bool:
    state = proc_state(pid)
    return state is not None and state not in GONE_PROC_STATES


def is_frozen(pid: int) -> bool:
    return proc_state(pid) in FROZEN_PROC_STATES


def unit_pids(control_group: str) -> list[int]:
    """Live pids whose cgroup is the unit's cgroup or below, found by scanning /proc.

    Scanning /proc/<pid>/cgroup works whatever the cgroup mode and mount layout (containers
    often mount the hierarchies differently), unlike reading cgroup.procs files.
    """
    pids: list[int] = []
    if not control_group:
        return pids
    try:
        entries = os.listdir("/proc")
    except OSError:
        return pids
    for entry in entries:
        if not entry.isdigit():
            continue
        text = read_text(f"/proc/{entry}/cgroup")
        if text is None or not in_cgroup(cgroup_paths(text), control_group):
            continue
        pid = int(entry)
        if is_running(pid):
            pids.append(pid)
    return sorted(pids)
