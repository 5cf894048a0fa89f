"""The scenario runner (roles/chaos/tasks/run.yml) keeps its order whatever fails.

The real run.yml is run inside a throw-away copy of the chaos role whose other steps (load,
settle, judge) are stubs that only log their name, so the test needs no cluster: it checks
the order of the steps, that the restore runs when the injection fails, and that the load is
stopped and the cluster settled when the restore itself fails.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from playbook import ansible_playbook

ROOT = Path(__file__).resolve().parents[2]
STUBS = ("start.yml", "settle.yml", "judge.yml")


def _log_task(step: str) -> str:
    return (
        "---\n"
        f"- name: Log {step}\n"
        "  ansible.builtin.lineinfile:\n"
        '    path: "{{ steps_log }}"\n'
        f"    line: {step}\n"
        "    create: true\n"
        '    mode: "0644"\n'
    )


def _failing_task(step: str) -> str:
    return _log_task(step) + (
        f"\n- name: Fail in {step}\n  ansible.builtin.fail:\n    msg: {step} broke\n"
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    tasks = tmp_path / "roles" / "chaos" / "tasks"
    tasks.mkdir(parents=True)
    shutil.copy(ROOT / "roles" / "chaos" / "tasks" / "run.yml", tasks / "run.yml")
    for stub in STUBS:
        (tasks / stub).write_text(_log_task(stub.removesuffix(".yml")))
    steps = tmp_path / "steps"
    steps.mkdir()
    for step in ("prepare", "inject", "observe", "restore", "after"):
        (steps / f"{step}.yml").write_text(_log_task(step))
        (steps / f"{step}-fails.yml").write_text(_failing_task(step))
    return tmp_path


def run_scenario(project: Path, **steps: str) -> tuple[int, list[str], str]:
    log = project / "steps.log"
    playbook = project / "scenario.yml"
    files = {k: str(project / "steps" / f"{v}.yml") for k, v in steps.items()}
    lines = [
        "- hosts: localhost",
        "  gather_facts: false",
        "  vars:",
        f"    steps_log: {log}",
        *(f"    {key}: {value}" for key, value in files.items()),
        "  tasks:",
        "    - ansible.builtin.include_role:",
        "        name: chaos",
        "        tasks_from: run.yml",
    ]
    playbook.write_text("\n".join(lines) + "\n")
    env = dict(
        os.environ,
        ANSIBLE_ROLES_PATH=str(project / "roles"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    result = ansible_playbook(str(playbook), cwd=project, env=env, timeout=120)
    done = log.read_text().split() if log.exists() else []
    return result.returncode, done, result.stdout


def test_every_step_in_order(project: Path) -> None:
    rc, done, out = run_scenario(
        project,
        chaos_prepare="prepare",
        chaos_inject="inject",
        chaos_observe="observe",
        chaos_restore="restore",
        chaos_after_load="after",
    )
    assert rc == 0, out[-3000:]
    assert done == ["prepare", "start", "inject", "observe", "restore", "settle", "after", "judge"]


def test_optional_steps_may_be_left_out(project: Path) -> None:
    rc, done, out = run_scenario(project, chaos_inject="inject", chaos_restore="restore")
    assert rc == 0, out[-3000:]
    assert done == ["start", "inject", "restore", "settle", "judge"]


def test_a_failed_injection_is_still_restored_and_settled(project: Path) -> None:
    rc, done, _ = run_scenario(
        project, chaos_inject="inject-fails", chaos_observe="observe", chaos_restore="restore"
    )
    assert rc != 0
    assert done == ["start", "inject", "restore", "settle"]


def test_a_failed_restore_still_stops_the_load(project: Path) -> None:
    rc, done, _ = run_scenario(project, chaos_inject="inject", chaos_restore="restore-fails")
    assert rc != 0
    assert done == ["start", "inject", "restore", "settle"]
