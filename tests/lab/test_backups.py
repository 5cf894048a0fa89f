"""Backups follow the primary: after a switchover the next backup and the archive still work.

On the deployed lab (with its backup1 repository host): a switchover by ops-switchover.yml,
then ops-backup.yml must take an incremental backup from the new primary, and pgBackRest's
own check (the new primary's WAL reaches the repository) must pass.  The restores run under
load in `make chaos` (chaos-disaster.yml, chaos-mistake.yml).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_dead_man import CONTAINER_PREFIX, ROOT, healthy, patroni_cluster, wait_for

pytestmark = pytest.mark.chaos

REPOSITORY = "backup1"
STANZA = "pgchaos"


def ops(playbook: str, *extra: str, log: Path) -> int:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    with log.open("w") as out:
        return subprocess.run(
            [str(Path(sys.executable).with_name("ansible-playbook")),
             f"playbooks/{playbook}", *extra],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=600, check=False,
        ).returncode  # fmt: skip


def pgbackrest(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", "exec", "--user", "postgres", CONTAINER_PREFIX + REPOSITORY,
         "pgbackrest", f"--stanza={STANZA}", *command],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


def backups() -> list[dict[str, object]]:
    info = pgbackrest("--output=json", "info")
    assert info.returncode == 0, info.stderr
    listed = json.loads(info.stdout)[0].get("backup", [])
    assert isinstance(listed, list)
    return listed


def leader() -> str:
    cluster = patroni_cluster() or {}
    names = [m["name"] for m in cluster.get("members", []) if m.get("role") == "leader"]
    assert len(names) == 1, cluster
    return str(names[0])


def test_a_backup_after_a_switchover_comes_from_the_new_primary(tmp_path: Path) -> None:
    wait_for(healthy, 120, "a healthy cluster before the test")
    before = backups()
    assert before, "the deploy takes a first full backup"
    old_leader = leader()
    assert ops("ops-switchover.yml", log=tmp_path / "switchover.log") == 0, (
        tmp_path / "switchover.log"
    ).read_text()[-3000:]
    wait_for(healthy, 120, "a healthy cluster after the switchover")
    new_leader = leader()
    assert new_leader != old_leader
    log = tmp_path / "backup.log"
    assert ops("ops-backup.yml", "-e", "pgbackrest_backup_type=incr", log=log) == 0, (
        log.read_text()[-3000:]
    )
    after = backups()
    assert len(after) == len(before) + 1
    newest = after[-1]
    assert newest["type"] == "incr"
    check = pgbackrest("check")
    assert check.returncode == 0, check.stderr
    # The check's WAL switch was archived by the new primary itself, after the switchover.
    archived = subprocess.run(
        ["docker", "exec", "--user", "postgres", CONTAINER_PREFIX + new_leader, "psql", "-Atc",
         "select coalesce(now() - last_archived_time < interval '60 s', false)"
         " from pg_stat_archiver"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert archived == "t", f"{new_leader} has not archived in the last minute"
