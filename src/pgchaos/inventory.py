"""Reading an Ansible inventory into the hosts we collect logs from."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgchaos.errors import UsageError


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    user: str | None = None
    port: int = 22
    key_file: str | None = None
    password: str | None = None
    groups: frozenset[str] = field(default_factory=frozenset)


def _ansible_inventory() -> str | None:
    beside = Path(sys.executable).parent / "ansible-inventory"
    if beside.exists():
        return str(beside)
    return shutil.which("ansible-inventory")


_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render(value: Any, context: dict[str, Any]) -> Any:
    """Resolve ``{{ name }}`` references to plain variables, as Ansible would.

    ``ansible-inventory --list`` leaves Jinja templates such as
    ``{{ inventory_dir }}/../.lab/ssh/id_ed25519`` unrendered; only simple names
    are resolved here, anything fancier is left as it is.
    """
    if not isinstance(value, str):
        return value
    for _ in range(5):  # variables may refer to variables, a few levels deep
        rendered = _TEMPLATE.sub(
            lambda m: (
                str(context[m.group(1)])
                if isinstance(context.get(m.group(1)), str | int)
                else m.group(0)
            ),
            value,
        )
        if rendered == value:
            break
        value = rendered
    return value


def hosts_from_listing(listing: dict[str, Any], inventory: str | None = None) -> list[Host]:
    """Hosts from the JSON of ``ansible-inventory --list`` (groups nest through children)."""
    hostvars: dict[str, dict[str, Any]] = listing.get("_meta", {}).get("hostvars", {})
    if inventory is not None:
        path = Path(inventory).resolve()
        magic = {
            "inventory_dir": str(path if path.is_dir() else path.parent),
            "inventory_file": str(path),
        }
        hostvars = {
            name: {k: render(v, {**magic, **hv}) for k, v in hv.items()}
            for name, hv in hostvars.items()
        }
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
    return [_host(name, hostvars.get(name, {}), memberships.get(name, set())) for name in names]


def _host(name: str, hv: dict[str, Any], groups: set[str]) -> Host:
    port = hv.get("ansible_port") or hv.get("ansible_ssh_port") or 22
    try:
        port_number = int(port)
    except (TypeError, ValueError):
        raise UsageError(f"inventory: host {name}: bad ansible_port {port!r}") from None
    return Host(
        name=name,
        address=str(hv.get("ansible_host") or name),
        user=hv.get("ansible_user") or hv.get("ansible_ssh_user"),
        port=port_number,
        key_file=_path(
            hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file")
        ),
        password=hv.get("ansible_password") or hv.get("ansible_ssh_pass"),
        groups=frozenset(groups - {"all"}),
    )


def _path(value: Any) -> str | None:
    if not value:
        return None
    return os.path.normpath(os.path.expanduser(str(value)))


def _load_yaml(path: Path) -> Any:
    import yaml  # noqa: PLC0415 - only needed without ansible

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"inventory {path}: cannot parse: {exc}") from None


def _yaml_listing(path: Path) -> dict[str, Any]:
    """Turn a static YAML inventory (file or directory) into ``ansible-inventory --list`` shape.

    A simplified stand-in for when ansible is not installed: group_vars/ and
    host_vars/ beside the inventory are applied (host > group > all), inline
    vars of parent groups are inherited.
    """
    sources = (
        sorted(p for p in path.iterdir() if p.suffix in (".yml", ".yaml") and p.is_file())
        if path.is_dir()
        else [path]
    )
    listing: dict[str, Any] = {"_meta": {"hostvars": {}}}
    hostvars: dict[str, dict[str, Any]] = listing["_meta"]["hostvars"]
    groups_of: dict[str, list[str]] = {}

    def add(name: str, body: Any, inherited: dict[str, Any], chain: list[str]) -> None:
        body = body or {}
        group_vars = {**inherited, **(body.get("vars") or {})}
        entry = listing.setdefault(name, {"hosts": [], "children": []})
        for host, hv in (body.get("hosts") or {}).items():
            entry["hosts"].append(host)
            hostvars.setdefault(host, {}).update({**group_vars, **(hv or {})})
            groups_of.setdefault(host, []).extend([*chain, name])
        for child, child_body in (body.get("children") or {}).items():
            entry["children"].append(child)
            add(child, child_body, group_vars, [*chain, name])

    for source in sources:
        doc = _load_yaml(source)
        if not isinstance(doc, dict):
            raise UsageError(f"inventory {source}: not a YAML inventory")
        for name, body in doc.items():
            add(name, body, {}, [])

    base = path if path.is_dir() else path.parent

    def vars_file(folder: str, name: str) -> dict[str, Any]:
        for ext in (".yml", ".yaml"):
            candidate = base / folder / f"{name}{ext}"
            if candidate.is_file():
                loaded = _load_yaml(candidate)
                return loaded if isinstance(loaded, dict) else {}
        return {}

    for host, hv in hostvars.items():
        from_files: dict[str, Any] = dict(vars_file("group_vars", "all"))
        for group in groups_of.get(host, []):
            if group != "all":
                from_files.update(vars_file("group_vars", group))
        from_files.update(vars_file("host_vars", host))
        # Inline host and group vars of the inventory win over group_vars/ files,
        # host_vars/ files win over everything.
        hostvars[host] = {**from_files, **hv, **vars_file("host_vars", host)}
    return listing


def load_inventory(inventory: str) -> list[Host]:
    path = Path(inventory)
    if not path.exists():
        raise UsageError(f"inventory {inventory} does not exist")
    tool = _ansible_inventory()
    if tool is None:
        return hosts_from_listing(_yaml_listing(path), inventory)
    try:
        proc = subprocess.run(
            [tool, "-i", inventory, "--list"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"ansible-inventory failed: {exc}") from None
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise UsageError(f"ansible-inventory -i {inventory} failed: {reason}")
    try:
        listing = json.loads(proc.stdout)
    except ValueError:
        raise UsageError("ansible-inventory printed something that is not JSON") from None
    return hosts_from_listing(listing, inventory)
