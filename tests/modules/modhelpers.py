"""Running an Ansible module's main() in-process with exit_json/fail_json captured."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

Responder = Callable[[list[str]], tuple[int, str, str]]


class ModuleExit(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result)
        self.result = result


class ModuleFail(Exception):
    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__(result.get("msg"))
        self.result = result


def _exit_json(self: basic.AnsibleModule, **kwargs: Any) -> None:
    kwargs.setdefault("changed", False)
    raise ModuleExit(kwargs)


def _fail_json(self: basic.AnsibleModule, msg: str, **kwargs: Any) -> None:
    raise ModuleFail({"msg": msg, "failed": True, **kwargs})


class Commands:
    """Records run_command calls and answers them through a responder."""

    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.calls: list[list[str]] = []

    def __call__(self, args: list[str], **_: Any) -> tuple[int, str, str]:
        argv = [str(a) for a in args]
        self.calls.append(argv)
        return self.responder(argv)


@contextmanager
def module_env(
    responder: Responder | None = None,
    bins: dict[str, str | None] | None = None,
) -> Iterator[Commands]:
    """Patch AnsibleModule so main() raises ModuleExit/ModuleFail and runs no real command."""
    commands = Commands(responder or (lambda argv: (0, "", "")))
    known = bins or {}

    def get_bin_path(self: basic.AnsibleModule, name: str, *args: Any, **kwargs: Any) -> str | None:
        path = known.get(name, f"/usr/sbin/{name}")
        if path is None and (kwargs.get("required") or (len(args) > 0 and args[0])):
            self.fail_json(msg=f"Failed to find required executable {name}")
        return path

    with (
        mock.patch.object(basic.AnsibleModule, "exit_json", _exit_json),
        mock.patch.object(basic.AnsibleModule, "fail_json", _fail_json),
        mock.patch.object(
            basic.AnsibleModule, "run_command", lambda self, a, **k: commands(a, **k)
        ),
        mock.patch.object(basic.AnsibleModule, "get_bin_path", get_bin_path),
    ):
        yield commands


def run_main(
    main: Callable[[], None], args: dict[str, Any], check_mode: bool = False
) -> dict[str, Any]:
    """Run main() with args; the result of exit_json, or ModuleFail raised from fail_json."""
    full = dict(args)
    if check_mode:
        full["_ansible_check_mode"] = True
    with patch_module_args(full):
        try:
            main()
        except ModuleExit as done:
            return done.result
    raise AssertionError("the module returned without exit_json or fail_json")


def run_module(
    main: Callable[[], None], check_mode: bool = False, **args: Any
) -> tuple[dict[str, Any], list[list[str]]]:
    """main() with args and no real command: its result, and the commands it ran (by name)."""
    with module_env() as commands:
        result = run_main(main, args, check_mode=check_mode)
    return result, [[c[0].rsplit("/", 1)[-1], *c[1:]] for c in commands.calls]


def fail_module(main: Callable[[], None], **args: Any) -> str:
    """The message main() fails with, given args."""
    with module_env(), pytest.raises(ModuleFail) as info:
        run_main(main, args)
    return str(info.value.result["msg"])
