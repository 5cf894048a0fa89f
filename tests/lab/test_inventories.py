"""The shapes users copy, checked against the deployed lab (`make lab-checks` deploys it first).

inventory/example/ is what operators start from for their own machines: with its addresses
swapped for the lab's, preflight must pass on real hosts running a cluster; and a dry run of
site.yml on the deployed lab must predict no change at all.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from playbook import ansible_playbook

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "inventory" / "example"
LAB = ROOT / "inventory" / "lab"
RECAP = re.compile(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def recap(stdout: str) -> dict[str, tuple[int, int, int]]:
    return {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in RECAP.finditer(stdout)}


@pytest.fixture(scope="module")
def example_on_the_lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """inventory/example/ as a user would copy it, pointed at the lab's hosts."""
    lab_hosts = yaml.safe_load((LAB / "hosts.yml").read_text())
    lab_vars = lab_hosts["all"]["vars"]
    lab_address = {
        group: [h["ansible_host"] for h in spec["hosts"].values()]
        for group, spec in lab_hosts["all"]["children"].items()
    }
    inventory = yaml.safe_load((EXAMPLE / "hosts.yml").read_text())
    inventory["all"]["vars"].update(
        ansible_user="root",
        ansible_ssh_private_key_file=str(ROOT / lab_vars["ansible_ssh_private_key_file"]),
        ansible_ssh_common_args=lab_vars["ansible_ssh_common_args"].replace(
            ".lab/", f"{ROOT}/.lab/"
        ),
    )
    for group, spec in inventory["all"]["children"].items():
        for host, address in zip(spec["hosts"].values(), lab_address[group], strict=False):
            host["ansible_host"] = address
    copy = tmp_path_factory.mktemp("inventories") / "mine"
    shutil.copytree(EXAMPLE, copy)
    (copy / "hosts.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    return copy / "hosts.yml"


def test_the_example_inventory_parses() -> None:
    result = ansible_playbook("-i", str(EXAMPLE / "hosts.yml"), "site.yml", "--syntax-check")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_the_example_inventory_passes_preflight_on_real_hosts(example_on_the_lab: Path) -> None:
    result = ansible_playbook("-i", str(example_on_the_lab), "playbooks/preflight.yml")
    assert result.returncode == 0, result.stdout[-4000:]
    hosts = recap(result.stdout)
    assert len(hosts) == 8, hosts
    assert all(failed == 0 and unreachable == 0 for _, unreachable, failed in hosts.values())


def test_check_mode_on_the_deployed_lab_predicts_no_change() -> None:
    result = ansible_playbook("site.yml", "--check")
    assert result.returncode == 0, result.stdout[-4000:]
    hosts = recap(result.stdout)
    assert len(hosts) >= 8, hosts
    changed = {host: c for host, (c, _, _) in hosts.items() if c}
    assert not changed, f"--check predicts changes on {changed}"
