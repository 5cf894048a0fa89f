"""Runs the project's ansible-playbook the way a user would, and hands back what it printed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The ansible-playbook installed beside the running Python: the .venv's, not whatever is on PATH.
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))


def ansible_playbook(
    *args: str,
    cwd: Path = ROOT,
    timeout: int = 900,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`ansible-playbook *args` with the project's ansible.cfg (unless `env` names another),
    no colours, and the output captured as text; never raises on a failed run."""
    settings = {"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    if env is not None:
        settings = dict(env)
    return subprocess.run(
        [ANSIBLE_PLAYBOOK, *args],
        cwd=cwd,
        env={**os.environ, **settings},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
