#!/usr/bin/python
# Copyright: pgchaos contributors
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: pgchaos_event
short_description: Record a chaos event as one JSON line in a run's events file
description:
  - Appends one JSON object with the keys C(time), C(kind), C(action), C(target) and, when
    given, C(method), C(scenario) and C(detail) as one line to O(path), creating missing
    parent directories.
  - C(time) is O(time) when given (the moment a fault or a restore took effect, as the fault
    modules return it in their C(at) value), otherwise the moment this module runs;
    ISO-8601 in UTC with microseconds.
  - This is the events file the pgchaos report tool reads to mark faults on its timelines.
  - Meant to run on the control machine (C(delegate_to=localhost)), whose clock the
    workload's timestamps also come from.
  - Every run appends a line, so it always reports a change.
version_added: "0.1.0"
author: pgchaos contributors
options:
  path:
    description: Events file, usually C(<run dir>/events.jsonl).
    type: path
    required: true
  kind:
    description:
      - C(fault) when something was broken, C(recover) when it was put right, C(note) for
        bookkeeping (the scenario's start, a phase).  Failure windows are measured from the
        C(fault) and C(recover) events.
    type: str
    choices: [fault, recover, note]
    default: note
  action:
    description: What happened, for example C(kill), C(partition), C(heal).
    type: str
    required: true
  method:
    description: How, for example C(stop), C(node), C(partition); omitted when not given.
    type: str
  time:
    description:
      - When it happened, ISO-8601 (a naive time is UTC) or seconds since the epoch.
      - Defaults to now.  Give the C(at) a fault module returned, so the event marks the
        moment the fault took effect rather than when it was recorded.
    type: str
  target:
    description: What it happened to, for example a host or C(patroni@pg1).
    type: str
    required: true
  scenario:
    description: Name of the scenario the event belongs to.
    type: str
  detail:
    description: Free text; omitted from the line when not given.
    type: str
notes:
  - Check mode writes nothing and predicts C(changed=true).
  - Each line is written with a single C(write) on a file opened in append mode, so
    concurrent writers (forks) do not interleave lines.
"""

EXAMPLES = r"""
- name: Kill Patroni on the leader
  pgchaos_service_fault:
    service: patroni
    action: kill
  register: killed

- name: Record the kill at the moment it happened
  pgchaos_event:
    path: "{{ pgchaos_run_dir }}/events.jsonl"
    kind: fault
    time: "{{ killed.at }}"
    action: kill
    target: "{{ inventory_hostname }}"
    scenario: leader-kill
    detail: SIGKILL patroni.service (all processes)
  delegate_to: localhost
"""

RETURN = r"""
event:
  description: The event as written.
  returned: always
  type: dict
  sample:
    time: "2026-11-29T17:02:03.123456Z"
    kind: fault
    action: kill
    target: pg1
    scenario: leader-kill
    detail: SIGKILL patroni.service
path:
  description: The events file.
  returned: always
  type: str
  sample: /work/main/runs/2026-11-29T17-00-00/events.jsonl
line:
  description: The JSON line (without the newline).
  returned: always
  type: str
  sample: >-
    {"time": "2026-11-29T17:02:03.123456Z", "kind": "fault", "action": "kill", "target": "pg1"}
"""


UTC = timezone.utc  # noqa: UP017 - datetime.UTC is Python >= 3.11 only


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def utc_now_iso() -> str:
    return iso(datetime.now(UTC))


def parse_when(value: str) -> str:
    """ISO-8601 or epoch seconds, as the canonical UTC ISO string; ValueError otherwise."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return iso(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    # Reject NaN/inf and millisecond epochs (the events reader refuses them too).
    if not 0 <= seconds < 1e11:
        raise ValueError(f"{text} is not a time in seconds since the epoch")
    return iso(datetime.fromtimestamp(seconds, UTC))


def build_event(
    action: str,
    target: str,
    scenario: str | None,
    detail: str | None,
    when: str,
    kind: str = "note",
    method: str | None = None,
) -> dict[str, str]:
    event = {"time": when, "kind": kind, "action": action, "target": target}
    for key, value in (("method", method), ("scenario", scenario), ("detail", detail)):
        if value is not None:
            event[key] = value
    return event


def append_line(path: str, line: str) -> None:
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    data = (line + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "kind": {"type": "str", "choices": ["fault", "recover", "note"], "default": "note"},
            "action": {"type": "str", "required": True},
            "target": {"type": "str", "required": True},
            "method": {"type": "str"},
            "time": {"type": "str"},
            "scenario": {"type": "str"},
            "detail": {"type": "str"},
        },
        supports_check_mode=True,
    )
    params = module.params
    for key in ("action", "target"):
        if not params[key].strip():
            module.fail_json(msg=f"{key} must not be empty")
    path: str = params["path"]
    if os.path.isdir(path):
        module.fail_json(
            msg=f"path {path} is a directory; give the events file, e.g. {path}/events.jsonl"
        )
    when = utc_now_iso()
    if params["time"] is not None:
        try:
            when = parse_when(params["time"])
        except ValueError as exc:
            module.fail_json(msg=f"time {params['time']!r} is not ISO-8601 or epoch seconds: {exc}")
    event = build_event(
        params["action"],
        params["target"],
        params["scenario"],
        params["detail"],
        when,
        kind=params["kind"],
        method=params["method"],
    )
    line = json.dumps(event, ensure_ascii=False)
    if not module.check_mode:
        try:
            append_line(path, line)
        except OSError as exc:
            module.fail_json(msg=f"cannot append to {path}: {exc}")
    module.exit_json(changed=True, event=event, path=path, line=line)


if __name__ == "__main__":
    main()
