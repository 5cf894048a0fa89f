"""Pure helpers of the fault modules: parsing and rule building, table-driven."""

from __future__ import annotations

import ipaddress

import pytest
from ansible.module_utils.pgchaos_net import (
    PeerError,
    chain_rule_lines,
    jump_count,
    jump_is_first,
    local_ipv4_addresses,
    missing_qdisc_hint,
    netem_args,
    our_devices,
    parse_peers,
    partition_rules,
    peers_covering_local,
    ports_spec,
    probe_address,
    root_qdiscs,
    route_dev,
    ssh_client_address,
    tc_commands,
)
from ansible.module_utils.pgchaos_proc import (
    cgroup_paths,
    in_cgroup,
    parse_main_pid,
    parse_pid_file,
    parse_proc_stat_state,
    parse_systemctl_show,
)


def test_systemctl_show_is_parsed_whatever_the_order() -> None:
    text = (
        "MainPID=527\nLoadState=loaded\nActiveState=active\nControlGroup=/system.slice/x.service\n"
    )
    assert parse_systemctl_show(text) == {
        "MainPID": "527",
        "LoadState": "loaded",
        "ActiveState": "active",
        "ControlGroup": "/system.slice/x.service",
    }


@pytest.mark.parametrize(
    ("value", "expected"), [("527", 527), ("0", 0), ("", 0), (None, 0), ("x", 0), ("-3", 0)]
)
def test_main_pid(value: str | None, expected: int) -> None:
    assert parse_main_pid(value) == expected


@pytest.mark.parametrize(
    ("stat", "expected"),
    [
        ("527 (python3) S 1 527 527 0 -1", "S"),
        ("527 (python3) T 1 527 527 0 -1", "T"),
        ("9 (a) b) c) Z 1 2 3", "Z"),  # ')' inside the command name
        ("12 (sleep infinity) t 1", "t"),
        ("garbage", None),
        ("1 (x)", None),
    ],
)
def test_proc_stat_state(stat: str, expected: str | None) -> None:
    assert parse_proc_stat_state(stat) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4242\n/var/lib/postgresql/15/pgchaos\n1764430000\n5432\n", 4242),
        ("  77  \n", 77),
        ("", None),
        ("\n\n", None),
        ("abc\n", None),
        ("0\n", None),
        ("-5\n", None),
    ],
)
def test_pid_file(text: str, expected: int | None) -> None:
    assert parse_pid_file(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0::/system.slice/etcd.service\n", ["/system.slice/etcd.service"]),
        (  # hybrid: systemd tracks units in the unified tree, name=systemd says "/"
            "9:name=systemd:/\n8:pids:/\n0::/system.slice/ssh.service\n",
            ["/", "/system.slice/ssh.service"],
        ),
        ("1:name=systemd:/system.slice/a.service\n2:cpu,cpuacct:/x\n", ["/system.slice/a.service"]),
        ("bogus line\n", []),
    ],
)
def test_cgroup_paths(text: str, expected: list[str]) -> None:
    assert cgroup_paths(text) == expected


@pytest.mark.parametrize(
    ("paths", "group", "expected"),
    [
        (["/system.slice/x.service"], "/system.slice/x.service", True),
        (["/system.slice/x.service/sub"], "/system.slice/x.service", True),
        (["/system.slice/x.service2"], "/system.slice/x.service", False),
        (["/", "/system.slice/y.service"], "/system.slice/x.service", False),
        (["/"], "/", False),
        (["/system.slice/x.service"], "", False),
    ],
)
def test_in_cgroup(paths: list[str], group: str, expected: bool) -> None:
    assert in_cgroup(paths, group) is expected


def test_peers_are_normalised_and_deduplicated() -> None:
    peers = parse_peers(["10.0.0.1", "10.0.0.5/24", " 10.0.0.1/32 ", "10.0.0.0/24"])
    assert [str(p) for p in peers] == ["10.0.0.1/32", "10.0.0.0/24"]


@pytest.mark.parametrize(
    ("peer", "message"), [("fe80::1", "IPv6"), ("pg1", "not an IP"), ("10.0.0.300", "not an IP")]
)
def test_bad_peers_are_named(peer: str, message: str) -> None:
    with pytest.raises(PeerError, match=message) as info:
        parse_peers([peer])
    assert peer in str(info.value)


NODE2 = parse_peers(["10.79.0.12"])
MP = "-m multiport --ports"


@pytest.mark.parametrize(
    ("peers", "ports", "protocol", "expected"),
    [
        (NODE2, [], "tcp", ["-s 10.79.0.12/32 -j DROP", "-d 10.79.0.12/32 -j DROP"]),
        (
            NODE2,
            [8008, 5432, 8008],
            "tcp",
            [
                f"-s 10.79.0.12/32 -p tcp {MP} 5432,8008 -j DROP",
                f"-d 10.79.0.12/32 -p tcp {MP} 5432,8008 -j DROP",
            ],
        ),
        (
            parse_peers(["10.1.0.0/16", "10.2.0.1"]),
            [53],
            "udp",
            [
                f"-s 10.1.0.0/16 -p udp {MP} 53 -j DROP",
                f"-d 10.1.0.0/16 -p udp {MP} 53 -j DROP",
                f"-s 10.2.0.1/32 -p udp {MP} 53 -j DROP",
                f"-d 10.2.0.1/32 -p udp {MP} 53 -j DROP",
            ],
        ),
    ],
)
def test_partition_rules(
    peers: list[ipaddress.IPv4Network], ports: list[int], protocol: str, expected: list[str]
) -> None:
    assert partition_rules(peers, ports, protocol) == [rule.split() for rule in expected]


@pytest.mark.parametrize(
    ("ports", "message"),
    [([0], "out of range"), ([70000], "out of range"), (list(range(1, 17)), "at most 15")],
)
def test_bad_ports(ports: list[int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ports_spec(ports)


S_FIRST = "-P INPUT ACCEPT\n-A INPUT -j PGCHAOS\n-A INPUT -s 1.2.3.4/32 -j ACCEPT\n"
S_SECOND = "-P INPUT ACCEPT\n-A INPUT -s 1.2.3.4/32 -j ACCEPT\n-A INPUT -j PGCHAOS\n"
S_TWICE = "-P INPUT ACCEPT\n-A INPUT -j PGCHAOS\n-A INPUT -j PGCHAOS\n"
S_NONE = "-P INPUT ACCEPT\n"


@pytest.mark.parametrize(
    ("text", "first", "count"),
    [(S_FIRST, True, 1), (S_SECOND, False, 1), (S_TWICE, False, 2), (S_NONE, False, 0)],
)
def test_jump_position(text: str, first: bool, count: int) -> None:
    assert jump_is_first(text, "INPUT") is first
    assert jump_count(text, "INPUT") == count


def test_chain_rule_lines_skip_the_chain_declaration() -> None:
    text = "-N PGCHAOS\n-A PGCHAOS -s 10.0.0.2/32 -j DROP\n"
    assert chain_rule_lines(text, "PGCHAOS") == ["-A PGCHAOS -s 10.0.0.2/32 -j DROP"]


def test_local_addresses_and_overlap() -> None:
    text = (
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
        "2: eth0    inet 10.79.0.11/24 brd 10.79.0.255 scope global eth0\\ valid_lft forever\n"
    )
    local = local_ipv4_addresses(text)
    assert [str(a) for a in local] == ["127.0.0.1", "10.79.0.11"]
    assert peers_covering_local(parse_peers(["10.79.0.12"]), local) == []
    clash = peers_covering_local(parse_peers(["10.79.0.0/24"]), local)
    assert [(str(n), str(a)) for n, a in clash] == [("10.79.0.0/24", "10.79.0.11")]


@pytest.mark.parametrize(
    ("peer", "probe"),
    [("10.0.0.7", "10.0.0.7"), ("10.0.0.0/24", "10.0.0.1"), ("10.0.0.4/31", "10.0.0.4")],
)
def test_probe_address(peer: str, probe: str) -> None:
    assert probe_address(parse_peers([peer])[0]) == probe


@pytest.mark.parametrize(
    ("text", "dev", "local"),
    [
        ("10.79.0.12 dev eth2 src 10.79.0.11 uid 0 \n    cache \n", "eth2", False),
        ("10.9.9.9 via 10.79.0.1 dev ens3 src 10.79.0.11 uid 0\n", "ens3", False),
        ("local 10.79.0.11 dev lo table local src 10.79.0.11 uid 0\n", "lo", True),
        ("unreachable", None, False),
    ],
)
def test_route_dev(text: str, dev: str | None, local: bool) -> None:
    assert route_dev(text) == (dev, local)


TC_SHOW = """qdisc noqueue 0: dev lo root refcnt 2
qdisc prio 5043: dev eth2 root refcnt 2 bands 4 priomap 1 2 2 2 1 2 0 0 1 1 1 1 1 1 1 1
qdisc netem 5044: dev eth2 parent 5043:4 limit 1000 delay 100ms
qdisc htb 1: dev eth3 root refcnt 2 r2q 10 default 0x1
qdisc prio 1: dev eth4 root refcnt 2 bands 3
qdisc mq 0: dev ens5 root
qdisc fq_codel 0: dev ens5 parent :1 limit 10240p
"""


def test_root_qdiscs_and_ours() -> None:
    roots = root_qdiscs(TC_SHOW)
    assert roots == {
        "lo": ("noqueue", "0:"),
        "eth2": ("prio", "5043:"),
        "eth3": ("htb", "1:"),
        "eth4": ("prio", "1:"),
        "ens5": ("mq", "0:"),
    }
    assert our_devices(roots) == ["eth2"]


@pytest.mark.parametrize(
    ("delay", "jitter", "loss", "expected"),
    [
        (100, 0, 0.0, ["delay", "100ms"]),
        (100, 10, 0.0, ["delay", "100ms", "10ms"]),
        (0, 0, 2.5, ["loss", "2.5%"]),
        (50, 5, 1.0, ["delay", "50ms", "5ms", "loss", "1%"]),
    ],
)
def test_netem_args(delay: int, jitter: int, loss: float, expected: list[str]) -> None:
    assert netem_args(delay, jitter, loss) == expected


def test_tc_commands_filter_each_peer_into_the_netem_band() -> None:
    commands = tc_commands("eth2", parse_peers(["10.0.0.2", "10.0.1.0/24"]), ["delay", "100ms"])
    assert " ".join(commands[0]) == "qdisc add dev eth2 root handle 5043: prio bands 4"
    assert (
        " ".join(commands[1]) == "qdisc add dev eth2 parent 5043:4 handle 5044: netem delay 100ms"
    )
    assert [c[c.index("dst") + 1] for c in commands[2:]] == ["10.0.0.2/32", "10.0.1.0/24"]
    assert all(c[-2:] == ["flowid", "5043:4"] for c in commands[2:])


def test_missing_qdisc_hint() -> None:
    assert "sch_netem" in missing_qdisc_hint("Error: Specified qdisc kind is unknown.")
    assert missing_qdisc_hint("RTNETLINK answers: Operation not permitted") == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.77.0.1 51234 10.77.0.21 22", "10.77.0.1"),
        ("::1 51234 ::1 22", None),
        ("", None),
        ("garbage", None),
    ],
)
def test_ssh_client_address(value: str, expected: str | None) -> None:
    found = ssh_client_address(value)
    assert (None if found is None else str(found)) == expected
