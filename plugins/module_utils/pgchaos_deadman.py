# Copyright: pgchaos contributors
# Dead-man timers: a fault armed on the target host undoes itself after a while, so a
# control machine that dies mid-scenario (or an interrupted playbook) cannot leave it behind.
# The timer is a transient systemd unit (systemd-run --on-active), gone at the next boot.
from __future__ import annotations

import re
import shlex
from typing import Any

UNIT_PREFIX = "pgchaos-deadman-"


def unit_name(fault: str) -> str:
    """The transient unit of one fault (``partition``, ``patroni.service`` -> ``...-patroni``).

    No dot may remain: systemd-run would read what follows it as the unit's type.
    """
    return UNIT_PREFIX + re.sub(r"[^A-Za-z0-9:_-]", "_", fault.removesuffix(".service"))


def arm_command(systemd_run: str, fault: str, seconds: float, undo: list[str]) -> list[str]:
    """systemd-run arguments that run ``undo`` once, ``seconds`` from now."""
    if not seconds > 0:
        raise ValueError(f"a dead-man timer needs seconds > 0, got {seconds}")
    return [
        systemd_run,
        f"--unit={unit_name(fault)}",
        f"--on-active={seconds:g}s",
        # Fire on time, not at systemd's default accuracy of a minute.
        "--timer-property=AccuracySec=1s",
        f"--description=pgchaos: undo {fault} if nobody does",
        *undo,
    ]


def disarm_commands(systemctl: str, fault: str) -> list[list[str]]:
    """Stop the timer (and a service it started), then forget a failed run of it."""
    unit = unit_name(fault)
    return [
        [systemctl, "stop", f"{unit}.timer", f"{unit}.service"],
        [systemctl, "reset-failed", f"{unit}.timer", f"{unit}.service"],
    ]


def shell(*commands: list[str]) -> list[str]:
    """One ``/bin/sh -c`` running every command even when one fails (undo what can be)."""
    return ["/bin/sh", "-c", "; ".join(shlex.join(c) for c in commands)]


def disarm(module: Any, systemctl: str | None, fault: str) -> None:
    """Stop a fault's timer through ``module.run_command``; one that is not there is fine."""
    if systemctl is None:
        return
    for cmd in disarm_commands(systemctl, fault):
        module.run_command(cmd)


def arm(module: Any, systemctl: str | None, fault: str, seconds: float, undo: list[str],
        state: str) -> str:  # fmt: skip
    """Arm (or re-arm) a fault's timer; ``state`` says where the fault stands if that fails."""
    systemd_run = module.get_bin_path("systemd-run", required=True)
    disarm(module, systemctl, fault)
    cmd = arm_command(systemd_run, fault, seconds, undo)
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(
            msg=f"{state}: its dead-man timer could not be armed: "
            f"{' '.join(cmd)} failed (rc={rc}): {err.strip() or out.strip()}"
        )
    return unit_name(fault)
