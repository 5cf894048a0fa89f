"""pgchaos_net_fault against fake iptables, ip and tc that keep state like the real ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pgchaos_net_fault as mod
import pytest
from modhelpers import ModuleFail, module_env, run_main

OWN = "10.79.0.11"
PEER = "10.79.0.12"


class FakeNet:
    def __init__(self) -> None:
        # A host rule that must survive everything the module does.
        self.chains: dict[str, list[str] | None] = {
            "INPUT": ["-s 192.0.2.1/32 -j ACCEPT"],
            "OUTPUT": [],
        }
        self.roots: dict[str, tuple[str, str]] = {
            "lo": ("noqueue", "0:"),
            "eth2": ("noqueue", "0:"),
        }
        self.children: dict[str, list[str]] = {}
        self.filters: dict[str, list[str]] = {}
        self.kinds = {"prio", "netem", "htb"}
        self.acted: list[str] = []
        # Dead-man timers armed with systemd-run: unit -> its command line.
        self.timers: dict[str, list[str]] = {}

    def __call__(self, argv: list[str]) -> tuple[int, str, str]:
        tool, args = Path(argv[0]).name, argv[1:]
        if tool == "iptables":
            return self.iptables([a for a in args if a != "-w"])
        if tool == "ip":
            return self.ip(args)
        if tool == "tc":
            return self.tc(args)
        if tool == "systemctl":
            if args[0] == "stop":
                for unit in args[1:]:
                    self.timers.pop(unit.removesuffix(".timer").removesuffix(".service"), None)
            return 0, "", ""
        if tool == "systemd-run":
            self.timers[args[0].removeprefix("--unit=")] = args
            return 0, "", ""
        raise AssertionError(f"unexpected command {argv}")

    @staticmethod
    def norm(rule: list[str]) -> str:
        return " ".join(rule)

    def iptables(self, args: list[str]) -> tuple[int, str, str]:
        op, chain, rest = args[0], args[1], args[2:]
        rules = self.chains.get(chain)
        if op == "-S":
            if rules is None:
                return 1, "", f"iptables: No chain/target/match by that name.\n{chain}"
            head = f"-N {chain}" if chain not in ("INPUT", "OUTPUT") else f"-P {chain} ACCEPT"
            return 0, "\n".join([head, *(f"-A {chain} {r}" for r in rules)]) + "\n", ""
        if op == "-C":
            return (0, "", "") if rules is not None and self.norm(rest) in rules else (1, "", "")
        self.acted.append(" ".join(args))
        if op in ("-N", "-F"):
            self.chains[chain] = []
        elif op == "-X":
            # Like iptables: a chain still jumped to cannot be deleted.
            assert not any(
                r.endswith(f"-j {chain}") for rs in self.chains.values() if rs for r in rs
            )
            del self.chains[chain]
        elif op == "-A":
            assert rules is not None
            rules.append(self.norm(rest))
        elif op == "-I":
            assert rules is not None
            rules.insert(int(rest[0]) - 1, self.norm(rest[1:]))
        elif op == "-D":
            assert rules is not None
            rules.remove(self.norm(rest))
        return 0, "", ""

    def ip(self, args: list[str]) -> tuple[int, str, str]:
        if args[:2] == ["-o", "-4"]:
            return (
                0,
                (
                    "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever\n"
                    f"40: eth2    inet {OWN}/24 brd 10.79.0.255 scope global eth2\\ valid_lft\n"
                ),
                "",
            )
        if args[:2] == ["route", "get"]:
            addr = args[2]
            if addr == OWN:
                return 0, f"local {OWN} dev lo table local src {OWN} uid 0\n", ""
            return 0, f"{addr} dev eth2 src {OWN} uid 0 \n    cache \n", ""
        raise AssertionError(f"unexpected ip {args}")

    def tc(self, args: list[str]) -> tuple[int, str, str]:
        if args[:2] == ["qdisc", "show"]:
            lines = []
            for dev, (kind, handle) in self.roots.items():
                lines.append(f"qdisc {kind} {handle} dev {dev} root refcnt 2")
                lines += [f"qdisc {c} dev {dev} parent 5043:4" for c in self.children.get(dev, [])]
            return 0, "\n".join(lines) + "\n", ""
        self.acted.append("tc " + " ".join(args))
        dev = args[args.index("dev") + 1]
        if args[:2] == ["qdisc", "del"]:
            self.roots[dev] = ("noqueue", "0:")
            self.children.pop(dev, None)
            self.filters.pop(dev, None)
            return 0, "", ""
        if args[:2] == ["qdisc", "add"]:
            kind = args[args.index("handle") + 2]
            if kind not in self.kinds:
                return 2, "", "Error: Specified qdisc kind is unknown.\n"
            if "root" in args:
                self.roots[dev] = (kind, args[args.index("handle") + 1])
            else:
                self.children.setdefault(dev, []).append(" ".join(args[args.index("netem") :]))
            return 0, "", ""
        if args[:2] == ["filter", "add"]:
            self.filters.setdefault(dev, []).append(args[args.index("dst") + 1])
            return 0, "", ""
        raise AssertionError(f"unexpected tc {args}")

    def iptables_s(self) -> str:
        return "\n".join(f"{c}: {r}" for c, rs in self.chains.items() if rs is not None for r in rs)


@pytest.fixture
def net(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeNet:
    monkeypatch.setattr(mod, "NETEM_STATE_FILE", str(tmp_path / "pgchaos-netem.json"))
    # The refusal to cut off Ansible's own address must not depend on how pytest was started.
    monkeypatch.delenv("SSH_CONNECTION", raising=False)
    return FakeNet()


def run(net: FakeNet, check_mode: bool = False, **args: Any) -> dict[str, Any]:
    net.acted = []
    with module_env(net):
        return run_main(mod.main, args, check_mode=check_mode)


def fail(net: FakeNet, bins: dict[str, str | None] | None = None, **args: Any) -> str:
    with module_env(net, bins=bins), pytest.raises(ModuleFail) as info:
        run_main(mod.main, args)
    return str(info.value.result["msg"])


def test_partition_cuts_both_directions_and_jumps_first(net: FakeNet) -> None:
    result = run(net, mode="partition", peers=[PEER])
    assert result["changed"] is True
    assert net.chains["PGCHAOS"] == [f"-s {PEER}/32 -j DROP", f"-d {PEER}/32 -j DROP"]
    assert net.chains["INPUT"] == ["-j PGCHAOS", "-s 192.0.2.1/32 -j ACCEPT"]
    assert net.chains["OUTPUT"] == ["-j PGCHAOS"]
    assert result["rules"] == [
        f"-A PGCHAOS -s {PEER}/32 -j DROP",
        f"-A PGCHAOS -d {PEER}/32 -j DROP",
    ]


def test_partition_twice_changes_nothing(net: FakeNet) -> None:
    run(net, mode="partition", peers=[PEER])
    result = run(net, mode="partition", peers=[PEER])
    assert result["changed"] is False
    assert net.acted == []
    assert result["commands"] == []


def test_partition_check_mode_predicts_and_adds_nothing(net: FakeNet) -> None:
    before = net.iptables_s()
    result = run(net, check_mode=True, mode="partition", peers=[PEER])
    assert result["changed"] is True
    assert net.acted == []
    assert net.iptables_s() == before
    assert "iptables -w -N PGCHAOS" in result["commands"][0]


def test_other_ports_replace_the_rules(net: FakeNet) -> None:
    run(net, mode="partition", peers=[PEER])
    result = run(net, mode="partition", peers=[PEER], ports=[8008, 5432])
    assert result["changed"] is True
    assert net.chains["PGCHAOS"] == [
        f"-s {PEER}/32 -p tcp -m multiport --ports 5432,8008 -j DROP",
        f"-d {PEER}/32 -p tcp -m multiport --ports 5432,8008 -j DROP",
    ]
    assert net.chains["INPUT"].count("-j PGCHAOS") == 1


def test_a_jump_pushed_down_is_moved_back_to_the_top(net: FakeNet) -> None:
    run(net, mode="partition", peers=[PEER])
    assert net.chains["INPUT"] is not None
    net.chains["INPUT"].insert(0, "-s 198.51.100.0/24 -j ACCEPT")
    result = run(net, mode="partition", peers=[PEER])
    assert result["changed"] is True
    assert net.chains["INPUT"][0] == "-j PGCHAOS"
    assert net.chains["INPUT"].count("-j PGCHAOS") == 1
    assert not any(a.startswith(("-F", "-A PGCHAOS")) for a in net.acted)


def test_absent_removes_exactly_what_was_added(net: FakeNet) -> None:
    before = net.iptables_s()
    run(net, mode="partition", peers=[PEER, "10.79.0.13"], ports=[2379])
    result = run(net, mode="partition", state="absent")
    assert result["changed"] is True
    assert "PGCHAOS" not in net.chains
    assert net.iptables_s() == before
    again = run(net, mode="partition", state="absent")
    assert again["changed"] is False
    assert net.acted == []


def test_absent_check_mode_keeps_the_partition(net: FakeNet) -> None:
    run(net, mode="partition", peers=[PEER])
    result = run(net, check_mode=True, mode="partition", state="absent")
    assert result["changed"] is True
    assert net.chains["PGCHAOS"]
    assert net.acted == []


def test_a_peer_holding_the_own_address_is_refused(net: FakeNet) -> None:
    msg = fail(net, mode="partition", peers=["10.79.0.0/24"])
    assert msg.startswith(f"peer 10.79.0.0/24 contains this node's own address {OWN}")
    assert "PGCHAOS" not in net.chains


def test_a_peer_holding_the_ansible_client_is_refused(
    net: FakeNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSH_CONNECTION", "10.79.0.1 40000 10.79.0.11 22")
    msg = fail(net, mode="partition", peers=[PEER, "10.79.0.0/31"])
    assert msg.startswith("peer 10.79.0.0/31 contains 10.79.0.1, the address Ansible connects from")
    assert "PGCHAOS" not in net.chains


def test_netem_on_the_interface_that_routes_to_the_peers(net: FakeNet) -> None:
    result = run(net, mode="netem", peers=[PEER, "10.79.0.13"], delay_ms=100, jitter_ms=10)
    assert result["changed"] is True
    assert result["interfaces"] == ["eth2"]
    assert net.roots["eth2"] == ("prio", "5043:")
    assert net.children["eth2"] == ["netem delay 100ms 10ms"]
    assert net.filters["eth2"] == [f"{PEER}/32", "10.79.0.13/32"]
    assert net.roots["lo"] == ("noqueue", "0:")


def test_netem_twice_changes_nothing_and_new_values_replace(net: FakeNet) -> None:
    run(net, mode="netem", peers=[PEER], delay_ms=100)
    again = run(net, mode="netem", peers=[PEER], delay_ms=100)
    assert again["changed"] is False
    assert net.acted == []
    other = run(net, mode="netem", peers=[PEER], delay_ms=100, loss_percent=5)
    assert other["changed"] is True
    assert net.children["eth2"] == ["netem delay 100ms loss 5%"]


def test_netem_reapplied_when_someone_removed_the_qdisc(net: FakeNet) -> None:
    run(net, mode="netem", peers=[PEER], delay_ms=100)
    net.roots["eth2"] = ("noqueue", "0:")
    assert run(net, mode="netem", peers=[PEER], delay_ms=100)["changed"] is True
    assert net.roots["eth2"] == ("prio", "5043:")


def test_netem_check_mode_adds_nothing(net: FakeNet) -> None:
    result = run(net, check_mode=True, mode="netem", peers=[PEER], loss_percent=1)
    assert result["changed"] is True
    assert net.acted == []
    assert net.roots["eth2"] == ("noqueue", "0:")
    assert not Path(mod.NETEM_STATE_FILE).exists()


def test_netem_absent_removes_only_our_qdisc(net: FakeNet) -> None:
    net.roots["eth3"] = ("htb", "1:")
    run(net, mode="netem", peers=[PEER], delay_ms=100)
    result = run(net, mode="netem", state="absent")
    assert result["changed"] is True
    assert net.acted == ["tc qdisc del dev eth2 root"]
    assert net.roots == {"lo": ("noqueue", "0:"), "eth2": ("noqueue", "0:"), "eth3": ("htb", "1:")}
    assert not Path(mod.NETEM_STATE_FILE).exists()
    assert run(net, mode="netem", state="absent")["changed"] is False


def test_netem_refuses_to_replace_a_configured_root_qdisc(net: FakeNet) -> None:
    net.roots["eth2"] = ("htb", "1:")
    msg = fail(net, mode="netem", peers=[PEER], delay_ms=100)
    assert "interface eth2 has a configured root qdisc (htb 1:)" in msg
    assert net.roots["eth2"] == ("htb", "1:")


def test_netem_without_kernel_support_rolls_back(net: FakeNet) -> None:
    net.kinds = {"prio"}
    msg = fail(net, mode="netem", peers=[PEER], delay_ms=100)
    assert "netem" in msg
    assert "sch_netem" in msg
    assert "Nothing was left on eth2" in msg
    assert net.roots["eth2"] == ("noqueue", "0:")


def test_netem_to_an_own_address_is_refused(net: FakeNet) -> None:
    assert f"peer {OWN}/32 is an address of this node" in fail(
        net, mode="netem", peers=[OWN], delay_ms=10
    )


LOSS_30 = "-m statistic --mode random --probability 0.3000 -j DROP"


def test_loss_drops_a_share_both_ways_beside_a_partition(net: FakeNet) -> None:
    run(net, mode="partition", peers=[PEER])
    result = run(net, mode="loss", peers=[PEER], loss_percent=30)
    assert result["changed"] is True
    assert net.chains["PGCHAOS-LOSS"] == [f"-s {PEER}/32 {LOSS_30}", f"-d {PEER}/32 {LOSS_30}"]
    assert result["rules"] == [f"-A PGCHAOS-LOSS -s {PEER}/32 {LOSS_30}",
                               f"-A PGCHAOS-LOSS -d {PEER}/32 {LOSS_30}"]  # fmt: skip
    # Both of our jumps come before the host's rule, and neither pushes the other around.
    assert net.chains["INPUT"] == ["-j PGCHAOS-LOSS", "-j PGCHAOS", "-s 192.0.2.1/32 -j ACCEPT"]
    assert run(net, mode="partition", peers=[PEER])["changed"] is False
    assert run(net, mode="loss", peers=[PEER], loss_percent=30)["changed"] is False
    assert net.acted == []


def test_another_share_replaces_the_loss_rules(net: FakeNet) -> None:
    run(net, mode="loss", peers=[PEER], loss_percent=30)
    assert run(net, mode="loss", peers=[PEER], loss_percent=60)["changed"] is True
    assert net.chains["PGCHAOS-LOSS"] == [
        f"-s {PEER}/32 -m statistic --mode random --probability 0.6000 -j DROP",
        f"-d {PEER}/32 -m statistic --mode random --probability 0.6000 -j DROP",
    ]
    assert net.chains["OUTPUT"] == ["-j PGCHAOS-LOSS"]


def test_lifting_the_loss_leaves_the_partition(net: FakeNet) -> None:
    run(net, mode="partition", peers=[PEER])
    run(net, mode="loss", peers=[PEER], loss_percent=10, dead_man_seconds=60)
    assert "pgchaos-deadman-loss" in net.timers
    assert run(net, mode="loss", state="absent")["changed"] is True
    assert "PGCHAOS-LOSS" not in net.chains
    assert net.chains["INPUT"] == ["-j PGCHAOS", "-s 192.0.2.1/32 -j ACCEPT"]
    assert net.chains["PGCHAOS"] == [f"-s {PEER}/32 -j DROP", f"-d {PEER}/32 -j DROP"]
    assert net.timers == {}
    assert run(net, mode="loss", state="absent")["changed"] is False


def test_loss_check_mode_adds_nothing(net: FakeNet) -> None:
    before = net.iptables_s()
    result = run(net, check_mode=True, mode="loss", peers=[PEER], loss_percent=30)
    assert result["changed"] is True
    assert net.acted == []
    assert net.iptables_s() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"mode": "loss", "peers": [PEER]}, "needs loss_percent above 0"),
        ({"mode": "loss", "peers": [PEER], "loss_percent": 101}, "got 101"),
        ({"mode": "loss", "peers": [PEER], "loss_percent": 5, "ports": [80]}, "ports do not"),
        ({"mode": "loss", "peers": [OWN], "loss_percent": 5}, "the loss rules would drop"),
        ({"mode": "partition"}, "needs at least one peer"),
        ({"mode": "partition", "peers": ["fe80::1"]}, "IPv6"),
        ({"mode": "partition", "peers": ["pg1"]}, "'pg1' is not an IP address"),
        (
            {"mode": "partition", "peers": [PEER], "delay_ms": 5},
            "delay_ms only apply to mode=netem",
        ),
        ({"mode": "partition", "peers": [PEER], "ports": [0]}, "port 0 is out of range"),
        ({"mode": "netem", "peers": [PEER], "ports": [80], "delay_ms": 5}, "ports only apply"),
        ({"mode": "netem", "peers": [PEER]}, "needs delay_ms or loss_percent"),
        ({"mode": "netem", "peers": [PEER], "jitter_ms": 5}, "jitter_ms=5 needs delay_ms"),
        ({"mode": "netem", "peers": [PEER], "loss_percent": 150}, "got 150"),
        ({"mode": "netem", "peers": [PEER], "delay_ms": -1}, "must be >= 0"),
    ],
)
def test_bad_arguments_are_named(net: FakeNet, args: dict[str, Any], message: str) -> None:
    assert message in fail(net, **args)
    assert net.acted == []


@pytest.mark.parametrize(
    ("mode", "tool", "package"),
    [
        ("partition", "iptables", "iptables"),
        ("partition", "ip", "iproute2"),
        ("netem", "tc", "iproute2"),
    ],
)
def test_missing_tools_name_the_package(net: FakeNet, mode: str, tool: str, package: str) -> None:
    msg = fail(
        net, bins={tool: None}, mode=mode, peers=[PEER], delay_ms=5 if mode == "netem" else 0
    )
    assert msg == f"{tool} not found: install the {package} package"


def test_a_partition_with_a_dead_man_lifts_itself(net: FakeNet) -> None:
    result = run(net, mode="partition", peers=[PEER], dead_man_seconds=120)
    assert result["dead_man"] == "pgchaos-deadman-partition"
    timer = net.timers["pgchaos-deadman-partition"]
    assert "--on-active=120s" in timer
    assert timer[-3:-1] == ["/bin/sh", "-c"]
    undo = timer[-1].split("; ")
    assert undo == [
        "/usr/sbin/iptables -w -D INPUT -j PGCHAOS",
        "/usr/sbin/iptables -w -D OUTPUT -j PGCHAOS",
        "/usr/sbin/iptables -w -F PGCHAOS",
        "/usr/sbin/iptables -w -X PGCHAOS",
    ]
    # What the timer runs puts the host back as absent would.
    before_cut = FakeNet().iptables_s()
    for command in undo:
        net(command.split())
    assert net.iptables_s() == before_cut


def test_lifting_the_partition_disarms_its_timer(net: FakeNet) -> None:
    run(net, mode="partition", peers=[PEER], dead_man_seconds=60)
    run(net, mode="partition", state="absent")
    assert net.timers == {}


def test_netem_with_a_dead_man_removes_its_qdiscs(net: FakeNet) -> None:
    result = run(net, mode="netem", peers=[PEER], delay_ms=100, dead_man_seconds=30)
    assert result["dead_man"] == "pgchaos-deadman-netem"
    undo = net.timers["pgchaos-deadman-netem"][-1]
    for dev in result["interfaces"]:
        assert f"/usr/sbin/tc qdisc del dev {dev} root" in undo
    assert undo.endswith(f"rm -f {mod.NETEM_STATE_FILE}")
    run(net, mode="netem", state="absent")
    assert net.timers == {}


def test_no_dead_man_unless_asked(net: FakeNet) -> None:
    assert run(net, mode="partition", peers=[PEER])["dead_man"] is None
    assert net.timers == {}


def test_a_host_that_did_not_opt_in_is_not_cut(net: FakeNet, chaos_target: Path) -> None:
    chaos_target.unlink()
    msg = fail(net, mode="partition", peers=[PEER])
    assert msg.startswith("refusing to add a partition fault: /etc/pgchaos/chaos-target is missing")
    assert "PGCHAOS" not in net.chains


def test_lifting_needs_no_opt_in(net: FakeNet, chaos_target: Path) -> None:
    run(net, mode="partition", peers=[PEER])
    chaos_target.unlink()
    assert run(net, mode="partition", state="absent")["changed"] is True
    assert "PGCHAOS" not in net.chains
