"""The hosts we collect logs from and how to reach them, as ``ansible-inventory --list`` has them.

Ansible itself reads the inventory: plugins, group_vars/, host_vars/ and variable
precedence stay Ansible's.  ``ansible-inventory --list`` does not render Jinja, so
a connection variable that is still a template (``{{ ... }}``) is refused with a
message naming it rather than guessed at; other variables may be templates.

Relative paths (``ansible_ssh_private_key_file``, ``UserKnownHostsFile``, files in
a ``ProxyCommand``) mean to Ansible whatever they mean in its working directory.
This project runs Ansible from the directory holding ``ansible.cfg``, so they are
taken relative to the nearest directory at or above the inventory that holds an
``ansible.cfg`` (the *project root*), else to the current directory, as Ansible
would.  That way ``pgchaos logs`` works from any directory.

Read from ``ansible_ssh_common_args`` and ``ansible_ssh_extra_args``, as the ssh
command line would take them (first value wins, like OpenSSH): ``-J`` /
``ProxyJump``, ``ProxyCommand`` (``%h %p %r %n %%`` expanded, run by ``/bin/sh``
from the project root), ``UserKnownHostsFile`` and ``StrictHostKeyChecking``.
``~/.ssh/config`` and ansible.cfg's ``ssh_args`` are not read.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgchaos.errors import UsageError

# roles/etcd/defaults/main.yml's etcd_client_port: role defaults are not in the listing,
# so a host without the variable has the role's default.
ETCD_CLIENT_PORT = 2379
SSH_PORT = 22


def default_known_hosts() -> tuple[str, ...]:
    return (os.path.expanduser("~/.ssh/known_hosts"),)


@dataclass(frozen=True)
class Endpoint:
    """A hop of a ProxyJump chain (user None: the local user, as OpenSSH)."""

    host: str
    port: int = SSH_PORT
    user: str | None = None

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{user}{host}:{self.port}"


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    user: str | None = None
    port: int = SSH_PORT
    key_file: str | None = None
    password: str | None = field(default=None, repr=False)
    groups: frozenset[str] = field(default_factory=frozenset)
    etcd_client_port: int = ETCD_CLIENT_PORT
    proxy_jump: tuple[Endpoint, ...] = ()
    # A complete /bin/sh command line, tokens expanded: see proxy_command_line().
    proxy_command: str | None = None
    # The first file is where newly accepted host keys are recorded.
    known_hosts: tuple[str, ...] = field(default_factory=default_known_hosts)
    # StrictHostKeyChecking=accept-new (or no/off) in the inventory's ssh args.
    accept_new_host_keys: bool = False


@dataclass(frozen=True)
class SshOptions:
    proxy_jump: tuple[Endpoint, ...] = ()
    proxy_command: str | None = None
    known_hosts: tuple[str, ...] = ()
    strict_host_key_checking: str | None = None


def project_root(inventory: Path) -> Path:
    """The nearest directory at or above the inventory holding ansible.cfg, else the cwd."""
    start = inventory if inventory.is_dir() else inventory.parent
    for folder in (start, *start.parents):
        if (folder / "ansible.cfg").is_file():
            return folder
    return Path.cwd()


def load_inventory(inventory: str) -> list[Host]:
    path = Path(inventory).expanduser().resolve()
    if not path.exists():
        raise UsageError(f"inventory {inventory} does not exist")
    root = project_root(path)
    return hosts_from_listing(_listing(path, root), root)


def _ansible_inventory() -> str | None:
    # The venv's own ansible-core first: the console script may run without the venv activated.
    beside = Path(sys.executable).parent / "ansible-inventory"
    if beside.exists():
        return str(beside)
    return shutil.which("ansible-inventory")


def _listing(inventory: Path, root: Path) -> dict[str, Any]:
    tool = _ansible_inventory()
    if tool is None:
        raise UsageError(
            f"ansible-inventory not found (beside {sys.executable} nor on PATH): "
            "pgchaos logs reads the inventory with it; install ansible-core"
        )
    # Without this, an inventory Ansible cannot parse is a warning and an empty listing.
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True"}
    try:
        proc = subprocess.run(
            [tool, "-i", str(inventory), "--list"],
            cwd=root,  # its ansible.cfg applies, as when the project runs Ansible
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"ansible-inventory failed: {exc}") from None
    if proc.returncode != 0:
        lines = [line for line in _without_python_warnings(proc.stderr) if line.strip()]
        reason = lines[0].strip() if lines else f"exit status {proc.returncode}"
        raise UsageError(f"ansible-inventory -i {inventory} failed: {reason}")
    try:
        listing = json.loads(proc.stdout)
    except ValueError:
        raise UsageError("ansible-inventory printed something that is not JSON") from None
    if not isinstance(listing, dict):
        raise UsageError("ansible-inventory printed something that is not an inventory")
    return listing


def hosts_from_listing(listing: dict[str, Any], root: Path | None = None) -> list[Host]:
    """Hosts from the JSON of ``ansible-inventory --list`` (groups nest through children).

    ``root`` is what relative paths are relative to (default: the current directory).
    """
    base = root or Path.cwd()
    hostvars: dict[str, dict[str, Any]] = listing.get("_meta", {}).get("hostvars", {})
    memberships: dict[str, set[str]] = {}

    def walk(group: str, ancestors: tuple[str, ...]) -> None:
        if group in ancestors:
            return
        entry = listing.get(group) or {}
        chain = (*ancestors, group)
        for host in entry.get("hosts", []):
            memberships.setdefault(host, set()).update(chain)
        for child in entry.get("children", []):
            walk(child, chain)

    for group in listing:
        if group != "_meta":
            walk(group, ())
    names = sorted(set(memberships) | set(hostvars))
    return [
        _host(name, hostvars.get(name) or {}, memberships.get(name, set()), base) for name in names
    ]


def _host(name: str, hv: dict[str, Any], groups: set[str], base: Path) -> Host:
    address = _text(name, hv, "ansible_host") or name
    port = _number(name, hv, SSH_PORT, "ansible_port", "ansible_ssh_port")
    user = _text(name, hv, "ansible_user", "ansible_ssh_user")
    common = _text(name, hv, "ansible_ssh_common_args") or ""
    extra = _text(name, hv, "ansible_ssh_extra_args") or ""
    options = ssh_options(f"{common} {extra}", base, where=f"inventory: host {name}")
    key_file = _text(name, hv, "ansible_ssh_private_key_file", "ansible_private_key_file")
    return Host(
        name=name,
        address=address,
        user=user,
        port=port,
        key_file=_path(key_file, base) if key_file else None,
        password=_text(name, hv, "ansible_password", "ansible_ssh_pass", "ansible_ssh_password"),
        groups=frozenset(groups - {"all"}),
        etcd_client_port=_number(name, hv, ETCD_CLIENT_PORT, "etcd_client_port"),
        proxy_jump=options.proxy_jump,
        proxy_command=(
            proxy_command_line(options.proxy_command, address, port, user, base)
            if options.proxy_command
            else None
        ),
        known_hosts=options.known_hosts or default_known_hosts(),
        accept_new_host_keys=options.strict_host_key_checking in ("accept-new", "no", "off"),
    )


def _text(name: str, hv: dict[str, Any], *keys: str) -> str | None:
    """The first of ``keys`` set to a plain value; a template or a structure is an error."""
    for key in keys:
        value = hv.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise UsageError(
                f"inventory: host {name}: {key} is not a plain value ({type(value).__name__};"
                " vault-encrypted?): pgchaos logs needs it as ansible-inventory --list prints it"
            )
        text = str(value)
        if "{{" in text or "{%" in text:
            raise UsageError(
                f"inventory: host {name}: {key} is a Jinja template ({text!r}), which"
                " ansible-inventory --list does not render: give it a plain value"
                " (relative paths are relative to the directory holding ansible.cfg)"
            )
        return text
    return None


def _number(name: str, hv: dict[str, Any], default: int, *keys: str) -> int:
    text = _text(name, hv, *keys)
    if text is None:
        return default
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 0 < number < 65536:
        raise UsageError(f"inventory: host {name}: bad {keys[0]} {text!r}")
    return number


def _path(value: str, base: Path) -> str:
    return os.path.normpath(base / os.path.expanduser(value))


_OPTION = re.compile(r"\s*([A-Za-z]+)\s*(?:=\s*|\s+)(.*)", re.DOTALL)


def ssh_options(args: str, base: Path, where: str = "ssh args") -> SshOptions:
    """The options we honour from an ssh command line's ``-o Key=Value`` and ``-J`` words."""
    try:
        words = shlex.split(args)
    except ValueError as exc:
        raise UsageError(f"{where}: cannot split the ssh args {args!r}: {exc}") from None
    found: dict[str, str] = {}
    items = iter(words)
    for word in items:
        if word in ("-o", "-J"):
            value = next(items, "")
        elif word.startswith(("-o", "-J")):
            value = word[2:]
        else:
            continue
        if word.startswith("-J"):
            key = "proxyjump"
        elif match := _OPTION.fullmatch(value):
            key, value = match.group(1).lower(), match.group(2).strip()
        else:
            continue
        # OpenSSH: the first value obtained wins; ProxyJump and ProxyCommand exclude each other.
        if key in ("proxyjump", "proxycommand"):
            found.setdefault("proxy", key)
        found.setdefault(key, value)
    proxy = found.get("proxy")
    jump = found.get("proxyjump", "") if proxy == "proxyjump" else ""
    command = found.get("proxycommand", "") if proxy == "proxycommand" else ""
    files = found.get("userknownhostsfile", "")
    return SshOptions(
        proxy_jump=tuple(_jump(spec, where) for spec in jump.split(",")) if _set(jump) else (),
        proxy_command=command if _set(command) else None,
        known_hosts=tuple(_path(f, base) for f in files.split()) if _set(files) else (),
        strict_host_key_checking=found.get("stricthostkeychecking", "").lower() or None,
    )


def _set(value: str) -> bool:
    return bool(value) and value.lower() != "none"


_JUMP = re.compile(
    r"(?:ssh://)?(?:(?P<user>[^@/]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@/\[\]]+))"
    r"(?::(?P<port>\d+))?/?"
)


def _jump(spec: str, where: str) -> Endpoint:
    match = _JUMP.fullmatch(spec.strip())
    port = int(match.group("port") or SSH_PORT) if match else 0
    if match is None or not 0 < port < 65536:
        raise UsageError(f"{where}: bad ProxyJump {spec!r} (expected [user@]host[:port])")
    return Endpoint(match.group("v6") or match.group("host"), port, match.group("user"))


def proxy_command_line(command: str, host: str, port: int, user: str | None, base: Path) -> str:
    """A ProxyCommand as OpenSSH runs it: tokens expanded, by the shell, here from ``base``."""
    tokens = {"h": host, "n": host, "p": str(port), "r": user or getpass.getuser(), "%": "%"}
    expanded = re.sub(r"%(.)", lambda m: tokens.get(m.group(1), m.group(0)), command)
    return f"cd {shlex.quote(str(base))} && exec {expanded}"


_PYTHON_WARNING = re.compile(r"^\S+\.py:\d+: \w+Warning: ")


def _without_python_warnings(stderr: str) -> list[str]:
    """stderr's lines less the warnings Python printed (a library's deprecation, with its source
    line below it), which come before Ansible's own message and would hide it."""
    kept: list[str] = []
    skip_source = False
    for line in stderr.splitlines():
        if _PYTHON_WARNING.match(line):
            skip_source = True
            continue
        if skip_source and line.startswith("  "):
            skip_source = False
            continue
        skip_source = False
        kept.append(line)
    return kept
