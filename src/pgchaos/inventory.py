"""Reading an Ansible inventory into the hosts we collect logs from."""

from __future__ import annotations

import json
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


def hosts_from_listing(listing: dict[str, Any]) -> list[Host]:
    """Hosts from the JSON of ``ansible-inventory --list`` (groups nest through children)."""
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
        key_file=hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file"),
        password=hv.get("ansible_password") or hv.get("ansible_ssh_pass"),
        groups=frozenset(groups - {"all"}),
    )


def _yaml_listing(path: Path) -> dict[str, Any]:
    """Turn a static YAML inventory into the shape of ``ansible-inventory --list``."""
    import yaml  # noqa: PLC0415 - only needed without ansible

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"inventory {path}: cannot parse: {exc}") from None
    if not isinstance(doc, dict):
        raise UsageError(f"inventory {path}: not a YAML inventory")
    listing: dict[str, Any] = {"_meta": {"hostvars": {}}}
    hostvars = listing["_meta"]["hostvars"]

    def add(name: str, body: Any, inherited: dict[str, Any]) -> None:
        body = body or {}
        group_vars = {**inherited, **(body.get("vars") or {})}
        entry = listing.setdefault(name, {"hosts": [], "children": []})
        for host, hv in (body.get("hosts") or {}).items():
            entry["hosts"].append(host)
            hostvars.setdefault(host, {}).update({**group_vars, **(hv or {})})
        for child, child_body in (body.get("children") or {}).items():
            entry["children"].append(child)
            add(child, child_body, group_vars)

    for name, body in doc.items():
        add(name, body, {})
    return listing


def load_inventory(inventory: str) -> list[Host]:
    path = Path(inventory)
    if not path.exists():
        raise UsageError(f"inventory {inventory} does not exist")
    tool = _ansible_inventory()
    if tool is None:
        return hosts_from_listing(_yaml_listing(path))
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
    return hosts_from_listing(listing)
