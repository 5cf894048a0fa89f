"""The roles keep what they did not make: an existing cluster's passwords, somebody's etcd data.

Each test runs one step of a role against the control machine itself, with every path it
touches under the test's temporary directory.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from playbook import ansible_playbook

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent
SECRET_FILES = [
    "postgres-superuser",
    "postgres-replication",
    "postgres-rewind",
    "patroni-restapi",
    "postgres-app",
]


def run(
    playbook: str, inventory: str, extra: dict[str, object]
) -> subprocess.CompletedProcess[str]:
    return ansible_playbook(
        "-i", inventory, str(HERE / "playbooks" / playbook), "-e", json.dumps(extra), timeout=300
    )


def secrets_run(tmp_path: Path, **extra: object) -> subprocess.CompletedProcess[str]:
    return run(
        "patroni-secrets.yml",
        str(HERE / "inventories" / "two_members.yml"),
        {
            "patroni_secrets_dir": str(tmp_path / "secrets"),
            "patroni_config_dir": str(tmp_path / "etc-patroni"),
            "patroni_data_dir": str(tmp_path / "data"),
            **extra,
        },
    )


def test_a_new_cluster_gets_generated_passwords(tmp_path: Path) -> None:
    result = secrets_run(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert sorted(p.name for p in (tmp_path / "secrets").iterdir()) == sorted(SECRET_FILES)


def test_an_existing_cluster_without_its_secrets_stops_the_run(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "PG_VERSION").write_text("15\n")
    (tmp_path / "secrets").mkdir()  # the second, empty secrets directory
    result = secrets_run(tmp_path)
    assert result.returncode != 0, result.stdout[-3000:]
    out = " ".join(result.stdout.split())
    assert "A cluster is already deployed on p1, p2" in out, out[-3000:]
    assert f"are missing from {tmp_path / 'secrets'}" in out, out[-3000:]
    assert "Copy these files (mode 0600) from the secrets directory" in out
    # Nothing generated is left behind for the next run to pick up.
    assert list((tmp_path / "secrets").iterdir()) == []


def test_an_existing_cluster_with_its_secrets_keeps_them(tmp_path: Path) -> None:
    assert secrets_run(tmp_path).returncode == 0
    before = {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()}
    (tmp_path / "etc-patroni").mkdir()
    (tmp_path / "etc-patroni" / "patroni.yml").write_text("scope: pgchaos\n")
    result = secrets_run(tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert {p.name: p.read_text() for p in (tmp_path / "secrets").iterdir()} == before


def test_passwords_from_the_inventory_need_no_files(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "PG_VERSION").write_text("15\n")
    passwords = {
        f"patroni_{name}_password": "x" * 20
        for name in ("superuser", "replication", "rewind", "restapi", "app")
    }
    result = secrets_run(tmp_path, **passwords)
    assert result.returncode == 0, result.stdout[-3000:]
    assert not (tmp_path / "secrets").exists()


@pytest.mark.parametrize(
    ("marker", "has_data", "kept"),
    [
        (False, False, True),  # somebody's etcd package: never ours to delete
        (True, False, False),  # pgchaos installed it, our cluster is new: the throwaway goes
        (True, True, True),  # our cluster existed when the run began: nothing to clean
    ],
)
def test_the_package_member_is_deleted_only_when_pgchaos_installed_it(
    tmp_path: Path, marker: bool, has_data: bool, kept: bool
) -> None:
    package_data = tmp_path / "var-lib-etcd-default"
    (package_data / "member").mkdir(parents=True)
    (package_data / "member" / "wal").write_text("somebody's data")
    if marker:
        (tmp_path / "etcd-package-installed").write_text("pgchaos installed etcd-server\n")
    result = run(
        "etcd-package-data.yml",
        "localhost,",
        {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "__etcd_package_data_dir": str(package_data),
            "__etcd_package_marker": str(tmp_path / "etcd-package-installed"),
            "__etcd_has_data": has_data,
            "etcd_data_dir": str(tmp_path / "var-lib-etcd-pgchaos"),
        },
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert package_data.exists() == kept
