"""chaos-reset.yml puts right what an interrupted scenario left behind.

On the deployed lab: one etcd member's data is taken away (as chaos-etcd-wipe.yml does,
with no dead-man timer and nobody to rebuild it).  chaos-reset.yml must rebuild that member
(remove, add, start as existing) instead of starting it empty, and drop the copy set aside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_dead_man import ETCD, ETCD_MEMBER, etcd_healthy, has_member_data

ROOT = Path(__file__).resolve().parents[2]
VICTIM = "etcd3"

pytestmark = pytest.mark.chaos


def ansible(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [str(Path(sys.executable).with_name(argv[0])), *argv[1:]],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def member_ids() -> dict[str, str]:
    listed = subprocess.run(
        ["docker", "exec", "pgchaos-etcd1", "etcdctl", "member", "list", "-w", "json"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return {m.get("name", ""): f"{m['ID']:x}" for m in json.loads(listed)["members"]}


def test_reset_rebuilds_an_etcd_member_left_without_data() -> None:
    before = member_ids()
    lost = ansible(
        "ansible", VICTIM, "-m", "pgchaos_data_fault",
        "-a", f"path={ETCD_MEMBER} state=lost service=etcd",
    )  # fmt: skip
    assert lost.returncode == 0, lost.stdout[-2000:]
    assert not has_member_data(VICTIM)

    reset = ansible("ansible-playbook", "playbooks/chaos-reset.yml")
    assert reset.returncode == 0, reset.stdout[-3000:]

    assert has_member_data(VICTIM)
    aside = ["docker", "exec", f"pgchaos-{VICTIM}", "test", "-e", ETCD_MEMBER + ".pgchaos-lost"]
    assert subprocess.run(aside, check=False).returncode == 1, "the copy set aside was dropped"
    after = member_ids()
    assert sorted(after) == sorted(before)
    assert after[VICTIM] != before[VICTIM], "rebuilt as a new member"
    assert all(etcd_healthy(address) for address in ETCD.values())
