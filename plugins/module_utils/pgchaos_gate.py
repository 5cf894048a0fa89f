# Copyright: pgchaos contributors
# The chaos gate on each target host: faults are injected only where this marker exists.
# The lab writes it into every container (scripts/lab.sh); on other machines
# playbooks/chaos-optin.yml writes it, for hosts whose inventory sets chaos_allowed: true.
# Putting things right (start, thaw, lifting a partition) is never refused.
from __future__ import annotations

import os

MARKER = "/etc/pgchaos/chaos-target"


def gate_message(host_marker: str, what: str) -> str:
    return (
        f"refusing to {what}: {host_marker} is missing, so this host has not opted in to "
        "failure scenarios (the lab writes it; elsewhere run playbooks/chaos-optin.yml)"
    )


def opted_in(marker: str = MARKER) -> bool:
    return os.path.isfile(marker)
