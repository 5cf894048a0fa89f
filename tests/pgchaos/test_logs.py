"""Log collection: the inventory through ansible-inventory, SSH options, host keys, commands."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko
import pytest
from chaoshelpers import CliRunner, read_json
from fake_sshd import FakeSSHD

from pgchaos import inventory, rundir
from pgchaos.errors import UsageError
from pgchaos.inventory import Endpoint, Host, hosts_from_listing, load_inventory
from pgchaos.localpg import LocalPostgres, free_port
from pgchaos.logs import collect_host, commands_for

INVENTORY = """\
all:
  vars:
    ansible_user: debian
    ansible_ssh_private_key_file: /keys/lab
    pgchaos_secrets_dir: "{{ inventory_dir }}/../.secrets"
  children:
    pg_lab:
      children:
        postgres_cluster:
          hosts:
            pg1: {ansible_host: 10.10.0.11}
            pg2: {ansible_host: 10.10.0.12, ansible_port: 2222}
        etcd_cluster:
          hosts:
            etcd1: {ansible_host: 10.10.0.21, etcd_client_port: 12379}
            pg1: {}
        balancers:
          hosts:
            lb1: {ansible_host: 10.10.0.31, ansible_user: root}
"""


def _write_inventory(tmp_path: Path, text: str = INVENTORY) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    return path


def test_inventory_through_ansible_inventory(tmp_path: Path) -> None:
    """A template in a variable pgchaos does not use (pgchaos_secrets_dir) is no obstacle."""
    by_name = {h.name: h for h in load_inventory(str(_write_inventory(tmp_path)))}
    assert sorted(by_name) == ["etcd1", "lb1", "pg1", "pg2"]
    assert by_name["pg1"].address == "10.10.0.11"
    assert by_name["pg1"].groups >= {"postgres_cluster", "etcd_cluster", "pg_lab"}
    assert by_name["pg2"].port == 2222
    assert by_name["pg2"].user == "debian"
    assert by_name["pg2"].key_file == "/keys/lab"
    assert "postgres_cluster" not in by_name["etcd1"].groups
    assert by_name["lb1"].user == "root"
    assert by_name["etcd1"].etcd_client_port == 12379
    assert by_name["pg1"].etcd_client_port == inventory.ETCD_CLIENT_PORT


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


def _listing_host(root: Path = Path("/proj"), name: str = "h", **hostvars: object) -> Host:
    [host] = hosts_from_listing({"_meta": {"hostvars": {name: hostvars}}}, root)
    return host


def test_ssh_options_from_the_inventory() -> None:
    host = _listing_host(
        ansible_host="10.0.0.5",
        ansible_ssh_private_key_file="keys/id",
        ansible_ssh_common_args="-o ConnectTimeout=5 -o ProxyJump=jumper@bastion:2200,"
        "[2001:db8::1] -o 'UserKnownHostsFile ssh/known_hosts ~/.ssh/other'"
        " -o StrictHostKeyChecking=accept-new -o ProxyCommand=ignored -o UserKnownHostsFile=x",
    )
    assert host.key_file == "/proj/keys/id"
    assert host.proxy_jump == (Endpoint("bastion", 2200, "jumper"), Endpoint("2001:db8::1"))
    assert str(host.proxy_jump[1]) == "[2001:db8::1]:22"
    assert host.proxy_command is None  # ProxyJump came first
    assert host.known_hosts == ("/proj/ssh/known_hosts", str(Path.home() / ".ssh" / "other"))
    assert host.accept_new_host_keys is True

    jump = _listing_host(ansible_ssh_extra_args="-J ssh://bastion -oStrictHostKeyChecking=yes")
    assert jump.proxy_jump == (Endpoint("bastion"),)
    assert jump.accept_new_host_keys is False
    assert jump.known_hosts == (str(Path.home() / ".ssh" / "known_hosts"),)

    proxied = _listing_host(
        ansible_host="10.0.0.6",
        ansible_port=2022,
        ansible_user="admin",
        ansible_ssh_common_args='-o ProxyCommand="ssh -W %h:%p -l %r bastion # 100%%"',
    )
    assert proxied.proxy_command == "cd /proj && exec ssh -W 10.0.0.6:2022 -l admin bastion # 100%"
    assert proxied.proxy_jump == ()
    assert _listing_host(ansible_ssh_common_args="-o ProxyJump=none").proxy_jump == ()


@pytest.mark.parametrize(
    ("hostvars", "message"),
    [
        ({"ansible_port": "22x"}, "bad ansible_port '22x'"),
        ({"etcd_client_port": 0}, "bad etcd_client_port '0'"),
        ({"ansible_ssh_common_args": "-J user@"}, "bad ProxyJump 'user@'"),
        ({"ansible_ssh_common_args": "-o 'ProxyJump=x"}, "cannot split"),
        ({"ansible_password": {"__ansible_vault": "$ANSIBLE_VAULT;1.1"}}, "not a plain value"),
    ],
)
def test_bad_connection_variables(hostvars: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match="host h: ") as caught:
        _listing_host(**hostvars)
    assert message in str(caught.value)


def test_templated_connection_variable_is_refused(tmp_path: Path) -> None:
    inv = _write_inventory(
        tmp_path,
        "all:\n  hosts:\n    pg1:\n      ansible_host: 10.0.0.1\n"
        "      ansible_ssh_private_key_file: '{{ inventory_dir }}/id'\n",
    )
    with pytest.raises(UsageError) as caught:
        load_inventory(str(inv))
    assert "host pg1: ansible_ssh_private_key_file is a Jinja template" in str(caught.value)


def test_without_ansible_inventory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inventory, "_ansible_inventory", lambda: None)
    with pytest.raises(UsageError, match=r"ansible-inventory not found"):
        load_inventory(str(_write_inventory(tmp_path)))


def test_an_inventory_ansible_cannot_parse(tmp_path: Path) -> None:
    inv = _write_inventory(tmp_path, "all:\n  hosts:\n    pg1: {ansible_host: [1\n")
    with pytest.raises(UsageError) as caught:
        load_inventory(str(inv))
    message = str(caught.value)
    assert message.startswith(f"ansible-inventory -i {inv} failed: ")
    assert "Failed to parse" in message  # stderr's first line, not the generic last one
    assert "\n" not in message


def _project(tmp_path: Path) -> Path:
    """A project as this repository lays it out: ansible.cfg at the root, inventories below."""
    root = tmp_path / "proj"
    inv = root / "inventory" / "lab"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    (root / "ansible.cfg").write_text("[defaults]\nretry_files_enabled = False\n")
    (inv / "hosts.yml").write_text(
        "all:\n  children:\n    postgres_cluster:\n      hosts:\n"
        "        pg1: {ansible_host: 10.77.0.21}\n        pg2: {ansible_host: 10.77.0.22}\n"
        "    etcd_cluster:\n      hosts:\n        etcd1: {ansible_host: 10.77.0.11}\n"
    )
    (inv / "group_vars" / "all.yml").write_text(
        "ansible_user: root\n"
        "ansible_ssh_private_key_file: .lab/ssh/id_ed25519\n"
        "ansible_ssh_common_args: -o UserKnownHostsFile=.lab/ssh/known_hosts\n"
    )
    (inv / "group_vars" / "postgres_cluster.yml").write_text("ansible_port: 2200\n")
    (inv / "host_vars" / "pg2.yml").write_text("ansible_port: 2222\n")
    return inv


def test_relative_paths_are_relative_to_the_project_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = _project(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    hosts = {h.name: h for h in load_inventory(str(inv))}
    lab = tmp_path / "proj" / ".lab" / "ssh"
    key, known = str(lab / "id_ed25519"), (str(lab / "known_hosts"),)
    assert {
        n: (h.address, h.port, h.user, h.key_file, h.known_hosts) for n, h in hosts.items()
    } == {
        "pg1": ("10.77.0.21", 2200, "root", key, known),
        "pg2": ("10.77.0.22", 2222, "root", key, known),
        "etcd1": ("10.77.0.11", 22, "root", key, known),
    }
    assert hosts["etcd1"].groups == {"etcd_cluster"}


def test_commands_for_a_postgres_and_etcd_host() -> None:
    host = Host("pg1", "10.10.0.11", user="debian", etcd_client_port=12379,
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
        "ETCDCTL_API=3 etcdctl --endpoints=http://10.10.0.11:12379 member list -w table"
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
    host = Host("dead", "127.0.0.1", user="root", port=free_port(),
                known_hosts=(str(tmp_path / "known_hosts"),))  # fmt: skip
    started = time.monotonic()
    result = collect_host(host, tmp_path / "dead", 0, 10, connect_timeout=2)
    assert time.monotonic() - started < 5
    assert result["reachable"] is False
    assert "host_key" not in result
    assert "refused" in result["error"].lower() or "unable to connect" in result["error"].lower()
    assert not (tmp_path / "dead").exists()


def _run_folder(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    now = time.time()
    (run / "run.json").write_text(json.dumps({
        "tool": "pgchaos", "started_at": rundir.iso(now - 10), "ended_at": rundir.iso(now),
    }))  # fmt: skip
    (run / "records.csv").write_text("")
    return run


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
    assert collected["refused_for_host_key"] == []
    meta = json.loads((run / "run.json").read_text())
    assert collected["since"] < meta["started_at"]


def test_logs_with_missing_inventory(cli: CliRunner, tmp_path: Path) -> None:
    run = _run_folder(tmp_path)
    result = cli("logs", "--inventory", str(tmp_path / "nope.yml"), str(run))
    assert result.returncode == 2
    assert "inventory" in result.stderr


@dataclass
class Keys:
    """The client's key file and a known_hosts file, both in the test's folder."""

    client: paramiko.PKey
    key_file: Path
    known_hosts: Path

    def know(self, *lines: str) -> None:
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a") as handle:
            handle.writelines(lines)

    def host(self, sshd: FakeSSHD, **fields: Any) -> Host:
        defaults: dict[str, Any] = {
            "user": "debian",
            "port": sshd.port,
            "key_file": str(self.key_file),
            "known_hosts": (str(self.known_hosts),),
        }
        return Host("pg1", "127.0.0.1", **{**defaults, **fields})


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    key = paramiko.ECDSAKey.generate()
    key_file = tmp_path / "id_lab"
    key.write_private_key_file(str(key_file))
    return Keys(key, key_file, tmp_path / "ssh" / "known_hosts")


def _echo(command: str) -> tuple[int, bytes, bytes]:
    if "patronictl" in command:
        return 1, b"", b"sudo: a password is required\n"
    return 0, f"output of: {command}\n".encode(), b""


@pytest.fixture
def sshd(keys: Keys) -> Iterator[FakeSSHD]:
    server = FakeSSHD(keys.client, "debian", _echo)
    yield server
    server.close()


def test_collect_over_ssh_from_a_reachable_host(tmp_path: Path, keys: Keys, sshd: FakeSSHD) -> None:
    """The real paramiko path against an in-process SSH server on 127.0.0.1."""
    keys.know(sshd.known_hosts_line())
    host = keys.host(sshd, groups=frozenset({"postgres_cluster", "etcd_cluster"}))
    result = collect_host(host, tmp_path / "logs" / "pg1", 100, 200, connect_timeout=5)
    assert result["reachable"] is True, result
    assert result["host_key"] == "known"
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


def test_rejected_key_is_reported_not_fatal(tmp_path: Path, keys: Keys) -> None:
    sshd = FakeSSHD(paramiko.ECDSAKey.generate(), "debian", lambda c: (0, b"", b""))
    keys.know(sshd.known_hosts_line())
    try:
        result = collect_host(keys.host(sshd), tmp_path / "pg1", 0, 1, connect_timeout=5)
    finally:
        sshd.close()
    assert result["reachable"] is False
    assert "host_key" not in result  # not a host key matter
    assert result["error"].startswith(("AuthenticationException", "SSHException"))
    assert sshd.commands == []


def test_a_host_key_mismatch_is_refused_before_authentication(tmp_path: Path, keys: Keys) -> None:
    impostor = FakeSSHD(keys.client, "debian", _echo, password="s3cret")
    keys.know(impostor.known_hosts_line(paramiko.ECDSAKey.generate()))
    host = keys.host(impostor, password="s3cret")
    try:
        # Even where unknown keys would be accepted.
        result = collect_host(host, tmp_path / "pg1", 0, 1, accept_new_host_keys=True)
    finally:
        impostor.close()
    assert result["reachable"] is False
    assert result["host_key"] == "mismatch"
    assert f"[127.0.0.1]:{impostor.port}" in result["error"]
    assert "does NOT match" in result["error"]
    assert impostor.auth_attempts == []  # neither our key nor the password was offered
    assert impostor.commands == []
    assert not (tmp_path / "pg1").exists()
    assert len(keys.known_hosts.read_text().splitlines()) == 1  # not overwritten


def test_an_unknown_host_key_is_refused_unless_accepted(
    tmp_path: Path, keys: Keys, sshd: FakeSSHD
) -> None:
    other = f"other.example ecdsa-sha2-nistp256 {paramiko.ECDSAKey.generate().get_base64()}"
    keys.known_hosts.parent.mkdir(parents=True)
    keys.known_hosts.write_text(f"# kept\n{other}")  # no newline at the end
    refused = collect_host(keys.host(sshd), tmp_path / "a", 0, 1)
    assert refused["reachable"] is False
    assert refused["host_key"] == "unknown"
    assert "--accept-new-host-keys" in refused["error"]
    assert sshd.auth_attempts == []
    assert sshd.commands == []

    accepted = collect_host(keys.host(sshd), tmp_path / "b", 0, 1, accept_new_host_keys=True)
    assert accepted["reachable"] is True, accepted
    assert accepted["host_key"] == "recorded"
    assert accepted["host_keys_recorded"] == [f"[127.0.0.1]:{sshd.port}"]
    lines = keys.known_hosts.read_text().splitlines()
    assert lines[:2] == ["# kept", other]
    assert lines[2:] == [sshd.known_hosts_line().strip()]

    again = collect_host(keys.host(sshd), tmp_path / "c", 0, 1)
    assert again["host_key"] == "known"


def test_a_damaged_known_hosts_file_is_an_error(tmp_path: Path, keys: Keys, sshd: FakeSSHD) -> None:
    keys.know(sshd.known_hosts_line(), "pg9 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n")
    with pytest.raises(UsageError, match=r"known_hosts .*: cannot read it"):
        collect_host(keys.host(sshd), tmp_path / "a", 0, 1)
    assert sshd.auth_attempts == []


def test_strict_host_key_checking_accept_new_in_the_inventory(
    tmp_path: Path, keys: Keys, sshd: FakeSSHD
) -> None:
    result = collect_host(keys.host(sshd, accept_new_host_keys=True), tmp_path / "a", 0, 1)
    assert result["host_key"] == "recorded"
    assert keys.known_hosts.read_text() == sshd.known_hosts_line()


def test_collect_through_a_jump_host(tmp_path: Path, keys: Keys, sshd: FakeSSHD) -> None:
    jump = FakeSSHD(keys.client, "jumper", _echo, forwarding=True)
    keys.know(sshd.known_hosts_line(), jump.known_hosts_line())
    host = _listing_host(
        tmp_path,
        "pg1",
        ansible_host="127.0.0.1",
        ansible_port=sshd.port,
        ansible_user="debian",
        ansible_ssh_private_key_file=str(keys.key_file),
        ansible_ssh_common_args=f"-o UserKnownHostsFile={keys.known_hosts}"
        f" -o ProxyJump=jumper@127.0.0.1:{jump.port}",
    )
    try:
        result = collect_host(host, tmp_path / "pg1", 0, 1)
    finally:
        jump.close()
    assert result["reachable"] is True, result
    assert result["via"] == [f"jumper@127.0.0.1:{jump.port}"]
    # The target was reached from the socket the jump host opened, and ran the commands.
    [(destination, jump_side)] = jump.forwarded
    assert destination == ("127.0.0.1", sshd.port)
    assert sshd.peers == [jump_side]
    assert len(sshd.commands) == 5
    assert jump.commands == []
    assert [a[:2] for a in jump.auth_attempts] == [("publickey", "jumper")]


def test_a_jump_host_with_a_changed_key_is_refused(
    tmp_path: Path, keys: Keys, sshd: FakeSSHD
) -> None:
    jump = FakeSSHD(keys.client, "jumper", _echo, forwarding=True)
    keys.know(sshd.known_hosts_line(), jump.known_hosts_line(paramiko.ECDSAKey.generate()))
    host = keys.host(sshd, proxy_jump=(Endpoint("127.0.0.1", jump.port, "jumper"),))
    try:
        result = collect_host(host, tmp_path / "pg1", 0, 1)
    finally:
        jump.close()
    assert result["host_key"] == "mismatch"
    assert f"[127.0.0.1]:{jump.port}" in result["error"]
    assert jump.auth_attempts == jump.forwarded == []
    assert sshd.peers == []


def test_collect_through_a_proxy_command(tmp_path: Path, keys: Keys, sshd: FakeSSHD) -> None:
    keys.know(sshd.known_hosts_line())
    relay = Path(__file__).with_name("fake_sshd.py")
    marker = tmp_path / "relay-ran"
    host = _listing_host(
        tmp_path,  # the relay's relative marker path lands here: it runs from the project root
        "pg1",
        ansible_host="127.0.0.1",
        ansible_port=sshd.port,
        ansible_user="debian",
        ansible_ssh_private_key_file=str(keys.key_file),
        ansible_ssh_common_args=f"-o UserKnownHostsFile={keys.known_hosts}"
        f" -o 'ProxyCommand={sys.executable} {relay} relay %h %p relay-ran'",
    )
    result = collect_host(host, tmp_path / "pg1", 0, 1)
    assert result["reachable"] is True, result
    assert marker.read_text() == f"127.0.0.1 {sshd.port}\n"
    assert len(sshd.commands) == 5


def _reaching_every_host(cli: CliRunner, *args: str) -> tuple[Any, bool]:
    """Run pgchaos; again (up to 3 times) when a fake server's session broke down.

    The fake servers run their SSH sessions in threads of this process: on CI's busy machine
    one of them now and then dropped a session ("No existing session", a reset connection),
    which is not what this test is about.  A host refused for its key is not retried.
    """
    retried = False
    for _ in range(3):
        result = cli(*args)
        if "unreachable" not in result.stdout and "commands failed" not in result.stdout:
            break
        retried = True
    return result, retried


def test_logs_command_end_to_end(cli: CliRunner, tmp_path: Path, keys: Keys) -> None:
    """Through a real ansible-inventory, from outside the project, relative paths and all.

    pg1 is known; pg2 answers with another key than the recorded one; etcd1 is new.
    """
    root = tmp_path / "proj"
    (root / "inventory").mkdir(parents=True)
    (root / "ansible.cfg").write_text("[defaults]\n")
    (root / ".lab").mkdir()
    keys.key_file.rename(root / ".lab" / "id")
    keys.known_hosts = root / ".lab" / "known_hosts"
    servers = {name: FakeSSHD(keys.client, "root", _echo) for name in ("pg1", "pg2", "etcd1")}
    keys.know(
        servers["pg1"].known_hosts_line(),
        servers["pg2"].known_hosts_line(paramiko.ECDSAKey.generate()),
    )
    inv = root / "inventory" / "hosts.yml"
    inv.write_text(
        "all:\n  vars:\n    ansible_user: root\n    ansible_ssh_private_key_file: .lab/id\n"
        "    ansible_ssh_common_args: -o UserKnownHostsFile=.lab/known_hosts\n"
        "  children:\n    postgres_cluster:\n      hosts:\n"
        f"        pg1: {{ansible_host: 127.0.0.1, ansible_port: {servers['pg1'].port}}}\n"
        f"        pg2: {{ansible_host: 127.0.0.1, ansible_port: {servers['pg2'].port}}}\n"
        "    etcd_cluster:\n      hosts:\n"
        f"        etcd1: {{ansible_host: 127.0.0.1, ansible_port: {servers['etcd1'].port},"
        " etcd_client_port: 12379}\n"
    )
    run = _run_folder(tmp_path)
    try:
        # The fake servers do their key exchange in Python threads: on a machine busy with
        # CI's other jobs their banner took longer than the default 5 s.
        slow = ("--connect-timeout", "30")
        first, _ = _reaching_every_host(cli, "logs", "--inventory", str(inv), str(run), *slow)
        second, retried = _reaching_every_host(
            cli, "logs", "--inventory", str(inv), str(run), "--accept-new-host-keys", *slow
        )
    finally:
        for server in servers.values():
            server.close()

    assert first.returncode == 1, first
    assert "pg1: collected 8 outputs" in first.stdout
    assert "pg2: REFUSED, host key mismatch: the host key of [127.0.0.1]:" in first.stdout
    assert "etcd1: refused, unknown host key" in first.stdout
    assert "refused for their SSH host key: etcd1, pg2" in first.stderr

    assert second.returncode == 1, second  # the mismatch stays refused
    assert "etcd1: collected 6 outputs" in second.stdout
    assert "pg2: REFUSED" in second.stdout
    collected = read_json(run / "logs" / "collect.json")
    assert collected["refused_for_host_key"] == ["pg2"]
    by_host = {h["host"]: h for h in collected["hosts"]}
    # A retried run finds etcd1's key recorded by the broken one before it.
    assert {name: h.get("host_key") for name, h in by_host.items()} == {
        "etcd1": "known" if retried and by_host["etcd1"].get("host_key") == "known" else "recorded",
        "pg1": "known", "pg2": "mismatch",
    }  # fmt: skip
    if by_host["etcd1"]["host_key"] == "recorded":
        assert by_host["etcd1"]["known_hosts"] == [str(keys.known_hosts)]
    etcdctl = {c for c in servers["etcd1"].commands if "etcdctl" in c}
    assert etcdctl == {
        "ETCDCTL_API=3 etcdctl --endpoints=http://127.0.0.1:12379 member list -w table"
    }
    assert servers["pg2"].auth_attempts == []
    assert f"[127.0.0.1]:{servers['etcd1'].port}" in keys.known_hosts.read_text()


def test_python_warnings_do_not_hide_ansibles_message() -> None:
    stderr = (
        "/venv/lib/python3.11/site-packages/ansible/_ssh.py:18: CryptographyDeprecationWarning:"
        " DSA is deprecated\n"
        "  from cryptography.hazmat.primitives.asymmetric.dsa import (\n"
        "[WARNING]: Failed to parse inventory with 'auto' plugin\n"
    )
    assert inventory._without_python_warnings(stderr) == [
        "[WARNING]: Failed to parse inventory with 'auto' plugin"
    ]
