"""Log collection: inventory parsing, command building, unreachable hosts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import paramiko
import pytest
from chaoshelpers import CliRunner, read_json

from pgchaos import inventory
from pgchaos.inventory import Host, hosts_from_listing, load_inventory
from pgchaos.localpg import LocalPostgres, free_port
from pgchaos.logs import collect_host, commands_for

INVENTORY = """\
all:
  vars:
    ansible_user: debian
    ansible_ssh_private_key_file: /keys/lab
  children:
    pg_lab:
      children:
        postgres_cluster:
          hosts:
            pg1: {ansible_host: 10.10.0.11}
            pg2: {ansible_host: 10.10.0.12, ansible_port: 2222}
        etcd_cluster:
          hosts:
            etcd1: {ansible_host: 10.10.0.21}
            pg1: {}
        balancers:
          hosts:
            lb1: {ansible_host: 10.10.0.31, ansible_user: root}
"""


def _write_inventory(tmp_path: Path, text: str = INVENTORY) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    return path


def _check_hosts(hosts: list[Host]) -> None:
    by_name = {h.name: h for h in hosts}
    assert sorted(by_name) == ["etcd1", "lb1", "pg1", "pg2"]
    assert by_name["pg1"].address == "10.10.0.11"
    assert by_name["pg1"].groups >= {"postgres_cluster", "etcd_cluster", "pg_lab"}
    assert by_name["pg2"].port == 2222
    assert by_name["pg2"].user == "debian"
    assert by_name["pg2"].key_file == "/keys/lab"
    assert "postgres_cluster" not in by_name["etcd1"].groups
    assert by_name["lb1"].user == "root"


def test_inventory_through_ansible_inventory(tmp_path: Path) -> None:
    _check_hosts(load_inventory(str(_write_inventory(tmp_path))))


def test_inventory_yaml_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory, "_ansible_inventory", lambda: None)
    _check_hosts(load_inventory(str(_write_inventory(tmp_path))))


def test_listing_with_nested_children() -> None:
    listing = {
        "_meta": {"hostvars": {"a": {"ansible_host": "192.0.2.1"}}},
        "all": {"children": ["ungrouped", "outer"]},
        "outer": {"children": ["postgres_cluster"]},
        "postgres_cluster": {"hosts": ["a"]},
        "ungrouped": {"hosts": ["b"]},
    }
    hosts = {h.name: h for h in hosts_from_listing(listing)}
    assert hosts["a"].groups == {"outer", "postgres_cluster"}
    assert hosts["b"].address == "b"
    assert hosts["b"].port == 22


def test_commands_for_a_postgres_and_etcd_host() -> None:
    host = Host("pg1", "10.10.0.11", user="debian",
                groups=frozenset({"postgres_cluster", "etcd_cluster"}))  # fmt: skip
    cmds = {c.name: c.argv for c in commands_for(host, 1000.2, 2000.7, "/etc/patroni/p.yml")}
    assert set(cmds) == {
        "journal-etcd", "journal-patroni", "journal-postgresql", "journal-haproxy",
        "journal-keepalived", "journal-haproxy-syslog", "patronictl-list", "patronictl-history",
        "etcdctl-member-list",
    }  # fmt: skip
    assert cmds["journal-postgresql"] == (
        "sudo -n journalctl --no-pager -o short-iso-precise --since @1000 --until @2001"
        " -u 'postgresql*'"
    )
    assert cmds["journal-haproxy-syslog"] == (
        "sudo -n journalctl --no-pager -o short-iso-precise --since @1000 --until @2001 -t haproxy"
    )
    assert cmds["patronictl-list"] == "sudo -n patronictl -c /etc/patroni/p.yml list"
    assert cmds["patronictl-history"] == "sudo -n patronictl -c /etc/patroni/p.yml history"
    assert cmds["etcdctl-member-list"] == (
        "ETCDCTL_API=3 etcdctl --endpoints=http://10.10.0.11:2379 member list -w table"
    )


def test_commands_for_a_root_balancer() -> None:
    host = Host("lb1", "10.10.0.31", user="root", groups=frozenset({"balancers"}))
    cmds = commands_for(host, 0, 10)
    assert [c.name for c in cmds] == [
        "journal-etcd", "journal-patroni", "journal-haproxy", "journal-keepalived",
        "journal-haproxy-syslog",
    ]  # fmt: skip
    assert not any(c.argv.startswith("sudo") for c in cmds)


def test_unreachable_host_is_reported(tmp_path: Path) -> None:
    host = Host("dead", "127.0.0.1", user="root", port=free_port())
    started = time.monotonic()
    result = collect_host(host, tmp_path / "dead", 0, 10, connect_timeout=2)
    assert time.monotonic() - started < 5
    assert result["reachable"] is False
    assert "refused" in result["error"].lower() or "unable to connect" in result["error"].lower()
    assert not (tmp_path / "dead").exists()


@pytest.mark.postgres
def test_logs_command_skips_unreachable_hosts(
    cli: CliRunner, tmp_path: Path, pg: LocalPostgres
) -> None:
    from pgchaos.cli import main

    run = tmp_path / "run"
    assert main(["load", "--rw", pg.dsn(), "--readers", "0", "--writers", "1",
                 "--duration", "0.3", "--out", str(run), "-q"]) == 0  # fmt: skip
    inv = _write_inventory(
        tmp_path,
        "all:\n  children:\n    postgres_cluster:\n      hosts:\n"
        f"        pg1: {{ansible_host: 127.0.0.1, ansible_port: {free_port()}}}\n"
        f"        pg2: {{ansible_host: 127.0.0.1, ansible_port: {free_port()}}}\n",
    )
    result = cli("logs", "--inventory", str(inv), str(run), "--connect-timeout", "2")
    assert result.returncode == 0, result.stderr
    assert "pg1: unreachable, skipped" in result.stdout
    assert "pg2: unreachable, skipped" in result.stdout
    collected = read_json(run / "logs" / "collect.json")
    assert [h["reachable"] for h in collected["hosts"]] == [False, False]
    meta = json.loads((run / "run.json").read_text())
    assert collected["since"] < meta["started_at"]


def test_logs_with_missing_inventory(cli: CliRunner, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text('{"tool": "pgchaos", "started_at": 1.0}')
    (run / "records.csv").write_text("")
    result = cli("logs", "--inventory", str(tmp_path / "nope.yml"), str(run))
    assert result.returncode == 2
    assert "inventory" in result.stderr


def test_collect_over_ssh_from_a_reachable_host(tmp_path: Path) -> None:
    """The real paramiko path against an in-process SSH server on 127.0.0.1."""
    from fake_sshd import FakeSSHD

    key = paramiko.ECDSAKey.generate()
    key_file = tmp_path / "id_lab"
    key.write_private_key_file(str(key_file))

    def respond(command: str) -> tuple[int, bytes, bytes]:
        if "patronictl" in command:
            return 1, b"", b"sudo: a password is required\n"
        return 0, f"output of: {command}\n".encode(), b""

    sshd = FakeSSHD(key, "debian", respond)
    try:
        host = Host("pg1", "127.0.0.1", user="debian", port=sshd.port, key_file=str(key_file),
                    groups=frozenset({"postgres_cluster", "etcd_cluster"}))  # fmt: skip
        result = collect_host(host, tmp_path / "logs" / "pg1", 100, 200, connect_timeout=5)
    finally:
        sshd.close()
    assert result["reachable"] is True, result
    statuses = {c["name"]: c["exit_status"] for c in result["commands"]}
    assert statuses["patronictl-list"] == 1
    assert statuses["journal-patroni"] == 0
    assert len(sshd.commands) == len(statuses) == 9
    target = tmp_path / "logs" / "pg1"
    journal = (target / "journal-patroni.txt").read_text()
    assert journal.startswith("output of: sudo -n journalctl --no-pager")
    assert "--since @100 --until @201 -u patroni" in journal
    assert (target / "patronictl-list.stderr.txt").read_text() == "sudo: a password is required\n"
    assert (target / "etcdctl-member-list.txt").read_text().startswith("output of: ETCDCTL_API=3")


def test_rejected_key_is_reported_not_fatal(tmp_path: Path) -> None:
    from fake_sshd import FakeSSHD

    wrong = paramiko.ECDSAKey.generate()
    wrong.write_private_key_file(str(tmp_path / "wrong"))
    sshd = FakeSSHD(paramiko.ECDSAKey.generate(), "debian", lambda c: (0, b"", b""))
    try:
        host = Host("pg1", "127.0.0.1", user="debian", port=sshd.port,
                    key_file=str(tmp_path / "wrong"))  # fmt: skip
        result = collect_host(host, tmp_path / "pg1", 0, 1, connect_timeout=5)
    finally:
        sshd.close()
    assert result["reachable"] is False
    assert result["error"].startswith(("AuthenticationException", "SSHException"))
    assert sshd.commands == []


def _directory_inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inventory" / "lab"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    postgres_cluster:\n      hosts:\n"
        "        pg1: {ansible_host: 10.77.0.21}\n        pg2: {ansible_host: 10.77.0.22}\n"
        "    etcd_cluster:\n      hosts:\n        etcd1: {ansible_host: 10.77.0.11}\n"
    )
    (inv / "group_vars" / "all.yml").write_text(
        "ansible_user: root\n"
        "lab_dir: '{{ inventory_dir }}/../../.lab'\n"
        "ansible_ssh_private_key_file: '{{ lab_dir }}/ssh/id_ed25519'\n"
    )
    (inv / "group_vars" / "postgres_cluster.yml").write_text("ansible_port: 2200\n")
    (inv / "host_vars" / "pg2.yml").write_text("ansible_port: 2222\n")
    return inv


@pytest.mark.parametrize("through", ["ansible-inventory", "yaml fallback"])
def test_directory_inventory_with_group_vars_and_templates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, through: str
) -> None:
    if through == "yaml fallback":
        monkeypatch.setattr(inventory, "_ansible_inventory", lambda: None)
    inv = _directory_inventory(tmp_path)
    hosts = {h.name: h for h in load_inventory(str(inv))}
    key = str(tmp_path / ".lab" / "ssh" / "id_ed25519")
    assert {name: (h.address, h.port, h.user, h.key_file) for name, h in hosts.items()} == {
        "pg1": ("10.77.0.21", 2200, "root", key),
        "pg2": ("10.77.0.22", 2222, "root", key),
        "etcd1": ("10.77.0.11", 22, "root", key),
    }
    assert hosts["etcd1"].groups == {"etcd_cluster"}
