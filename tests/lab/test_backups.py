"""Backups follow the primary: after a switchover the next backup and the archive still work.

On the deployed lab (with its backup1 repository host): a switchover by ops-switchover.yml,
then ops-backup.yml must take an incremental backup, pgBackRest's own check must pass, and
the new primary itself must have archived WAL since (its pg_stat_archiver).  The restores run under
load in `make chaos` (chaos-disaster.yml, chaos-mistake.yml).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
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


def active(host: str, unit: str) -> bool:
    state = subprocess.run(
        ["docker", "exec", CONTAINER_PREFIX + host, "systemctl", "is-active", unit],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    return state == "active"


def test_a_restore_without_confirmation_or_repository_changes_nothing(tmp_path: Path) -> None:
    wait_for(healthy, 120, "a healthy cluster before the test")
    before = patroni_cluster()
    log = tmp_path / "unconfirmed.log"
    assert ops("ops-restore.yml", "-e", "ops_restore_confirm=another", log=log) != 0
    assert "confirm with -e ops_restore_confirm=pgchaos" in log.read_text()
    # The same inventory without its backup group: refused before any member is touched.
    inventory = tmp_path / "no-backup"
    shutil.copytree(ROOT / "inventory" / "lab", inventory)
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())
    del hosts["all"]["children"]["backup"]
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts))
    log = tmp_path / "no-repository.log"
    code = ops(
        "ops-restore.yml", "-i", str(inventory / "hosts.yml"), "-e", "ops_restore_confirm=pgchaos",
        log=log,
    )  # fmt: skip
    assert code != 0
    assert "this inventory has none" in log.read_text()
    assert all(active(host, "patroni") for host in ("pg1", "pg2", "pg3"))
    after = patroni_cluster()
    assert before is not None
    assert after is not None
    assert sorted(m["name"] for m in after["members"]) == sorted(
        m["name"] for m in before["members"]
    )
    assert leader() == next(m["name"] for m in before["members"] if m["role"] == "leader")
