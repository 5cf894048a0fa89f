"""pgchaos_node_fault against a fake docker CLI that keeps container states."""

from __future__ import annotations

from typing import Any

import pgchaos_node_fault as mod
import pytest
from modhelpers import ModuleFail, module_env, run_main

NEXT = {
    "kill": "exited",
    "stop": "exited",
    "start": "running",
    "pause": "paused",
    "unpause": "running",
}


class FakeDocker:
    def __init__(self, status: str = "running") -> None:
        self.status = {"flt-node2": status}
        self.acted: list[list[str]] = []
        self.marked = True  # the lab's chaos marker inside the container

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        if argv[1] == "exec":
            assert argv[3:] == ["test", "-f", "/etc/pgchaos/chaos-target"]
            return (0 if self.marked else 1), "", ""
        verb, name = argv[1], argv[-1]
        if name not in self.status:
            return 1, "", f"Error: No such object: {name}\n"
        if verb == "inspect":
            assert argv[2:4] == ["-f", "{{.State.Status}}"]
            return 0, self.status[name] + "\n", ""
        self.acted.append(argv[1:])
        self.status[name] = NEXT[verb]
        return 0, name + "\n", ""


def run(docker: FakeDocker, check_mode: bool = False, **args: Any) -> dict[str, Any]:
    with module_env(docker):
        return run_main(mod.main, {"container": "flt-node2", **args}, check_mode=check_mode)


def fail(docker: FakeDocker, **args: Any) -> str:
    with module_env(docker), pytest.raises(ModuleFail) as info:
        run_main(mod.main, {"container": "flt-node2", **args})
    return str(info.value.result["msg"])


@pytest.mark.parametrize(
    ("action", "status", "changed"),
    [
        ("kill", "running", True),
        ("kill", "paused", True),
        ("kill", "exited", False),
        ("stop", "restarting", True),
        ("stop", "created", False),
        ("start", "exited", True),
        ("start", "created", True),
        ("start", "running", False),
        ("pause", "running", True),
        ("pause", "paused", False),
        ("unpause", "paused", True),
        ("unpause", "running", False),
        ("unpause", "exited", False),
    ],
)
def test_plan(action: str, status: str, changed: bool) -> None:
    assert mod.plan(action, status) == (changed, None)


@pytest.mark.parametrize(
    ("action", "status", "error"),
    [("start", "paused", "use action=unpause"), ("pause", "exited", "that is exited, not running")],
)
def test_impossible_actions_are_errors(action: str, status: str, error: str) -> None:
    docker = FakeDocker(status)
    assert error in fail(docker, action=action)
    assert docker.acted == []


def test_kill_then_start() -> None:
    docker = FakeDocker()
    killed = run(docker, action="kill")
    assert (killed["changed"], killed["before"], killed["after"]) == (True, "running", "exited")
    assert killed["cmd"] == ["/usr/sbin/docker", "kill", "flt-node2"]
    again = run(docker, action="kill")
    assert (again["changed"], again["cmd"]) == (False, [])
    started = run(docker, action="start")
    assert (started["changed"], started["after"]) == (True, "running")
    assert docker.acted == [["kill", "flt-node2"], ["start", "flt-node2"]]


def test_stop_passes_the_timeout() -> None:
    docker = FakeDocker()
    run(docker, action="stop", stop_timeout=3)
    assert docker.acted == [["stop", "-t", "3", "flt-node2"]]


def test_check_mode_predicts_without_acting() -> None:
    docker = FakeDocker()
    result = run(docker, check_mode=True, action="pause")
    assert (result["changed"], result["after"]) == (True, "running")
    assert docker.acted == []


def test_missing_container_is_named() -> None:
    msg = fail(FakeDocker(), container="flt-gone", action="kill")
    assert msg == "cannot inspect container 'flt-gone': Error: No such object: flt-gone"


def test_missing_docker_is_named() -> None:
    with module_env(FakeDocker(), bins={"docker": None}), pytest.raises(ModuleFail) as info:
        run_main(mod.main, {"container": "flt-node2", "action": "kill"})
    assert "docker" in info.value.result["msg"]


@pytest.mark.parametrize("action", ["kill", "stop", "pause"])
def test_a_container_without_the_marker_is_not_lost(action: str) -> None:
    docker = FakeDocker()
    docker.marked = False
    msg = fail(docker, action=action)
    assert msg.startswith(f"refusing to {action} flt-node2: /etc/pgchaos/chaos-target in flt-node2")
    assert docker.acted == []


def test_starting_needs_no_marker() -> None:
    docker = FakeDocker("exited")
    docker.marked = False
    assert run(docker, action="start")["changed"] is True
