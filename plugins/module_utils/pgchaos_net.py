# Copyright: pgchaos contributors
# Pure helpers for pgchaos_net_fault: peers, iptables rules, `ip` and `tc` output parsing.
# Kept free of AnsibleModule so they can be unit-tested with plain strings.
from __future__ import annotations

import ipaddress
import re

CHAIN = "PGCHAOS"
# Random packet loss has its own chain, so that it and a partition come and go independently.
LOSS_CHAIN = "PGCHAOS-LOSS"
OUR_CHAINS = (CHAIN, LOSS_CHAIN)
JUMP_FROM = ("INPUT", "OUTPUT")
# iptables' multiport match takes at most 15 ports.
MAX_PORTS = 15

# tc handles that mark our qdiscs: 0x5043 is "PC" (pgchaos) in ASCII, unlikely to be taken.
ROOT_HANDLE = "5043:"
NETEM_HANDLE = "5044:"
# A prio qdisc with a 4th band that the default priomap never uses: only our filters send
# packets there, so traffic to other hosts keeps its normal path.
PRIO_BANDS = 4
NETEM_PARENT = "5043:4"

Network = ipaddress.IPv4Network


class PeerError(ValueError):
    pass


def parse_peers(peers: list[str]) -> list[Network]:
    """IPv4 addresses or CIDRs, normalised, de-duplicated, in the given order."""
    networks: list[Network] = []
    for raw in peers:
        text = str(raw).strip()
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise PeerError(f"peer {text!r} is not an IP address or CIDR: {exc}") from exc
        if not isinstance(net, ipaddress.IPv4Network):
            raise PeerError(f"peer {text!r} is IPv6; only IPv4 (iptables, u32 ip) is supported")
        if net not in networks:
            networks.append(net)
    return networks


def ports_spec(ports: list[int]) -> str:
    """The multiport list, sorted and de-duplicated so rules compare equal across runs."""
    unique = sorted(set(ports))
    for port in unique:
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is out of range 1-65535")
    if len(unique) > MAX_PORTS:
        raise ValueError(f"at most {MAX_PORTS} ports (iptables multiport), got {len(unique)}")
    return ",".join(str(p) for p in unique)


def partition_rules(peers: list[Network], ports: list[int], protocol: str) -> list[list[str]]:
    """Rule specs for the PGCHAOS chain (without `-A PGCHAOS`).

    The chain is jumped to from INPUT and OUTPUT, so each peer gets a `-s` rule (packets
    from it, seen in INPUT) and a `-d` rule (packets to it, seen in OUTPUT). With ports,
    multiport `--ports` matches either side's port, which covers both connections the peer
    opens to those ports here and connections this node opens to them on the peer.
    """
    match: list[str] = []
    if ports:
        match = ["-p", protocol, "-m", "multiport", "--ports", ports_spec(ports)]
    rules: list[list[str]] = []
    for net in peers:
        rules.append(["-s", str(net), *match, "-j", "DROP"])
        rules.append(["-d", str(net), *match, "-j", "DROP"])
    return rules


def loss_rules(peers: list[Network], percent: float) -> list[list[str]]:
    """Rule specs for the PGCHAOS-LOSS chain: each packet from or to a peer dropped with
    probability ``percent`` / 100 (the statistic match, in every kernel, unlike netem)."""
    if not 0 < percent <= 100:
        raise ValueError(f"loss_percent must be above 0 and at most 100, got {percent:g}")
    match = ["-m", "statistic", "--mode", "random", "--probability", f"{percent / 100:.4f}"]
    rules: list[list[str]] = []
    for net in peers:
        rules.append(["-s", str(net), *match, "-j", "DROP"])
        rules.append(["-d", str(net), *match, "-j", "DROP"])
    return rules


def chain_rule_lines(iptables_s: str, chain: str) -> list[str]:
    """The `-A <chain> ...` lines of `iptables -S <chain>` output."""
    prefix = f"-A {chain} "
    return [line.strip() for line in iptables_s.splitlines() if line.startswith(prefix)]


def jump_is_first(iptables_s: str, chain: str, target: str = CHAIN) -> bool:
    """True when our jump comes once, before every rule of the host: only jumps to our
    other chains may precede it (a partition and a loss can be in place together)."""
    rules = chain_rule_lines(iptables_s, chain)
    jump = f"-A {chain} -j {target}"
    if rules.count(jump) != 1:
        return False
    ours = {f"-A {chain} -j {other}" for other in OUR_CHAINS}
    return all(rule in ours for rule in rules[: rules.index(jump)])


def jump_count(iptables_s: str, chain: str, target: str = CHAIN) -> int:
    return chain_rule_lines(iptables_s, chain).count(f"-A {chain} -j {target}")


def local_ipv4_addresses(ip_o_addr: str) -> list[ipaddress.IPv4Address]:
    """Addresses from `ip -o -4 addr show`."""
    found: list[ipaddress.IPv4Address] = []
    for match in re.finditer(r"\binet (\d+\.\d+\.\d+\.\d+)(?:/\d+)?", ip_o_addr):
        found.append(ipaddress.IPv4Address(match.group(1)))
    return found


def peers_covering_local(
    peers: list[Network], local: list[ipaddress.IPv4Address]
) -> list[tuple[Network, ipaddress.IPv4Address]]:
    """(peer, own address) pairs where a peer would also match this node's own traffic."""
    return [(net, addr) for net in peers for addr in local if addr in net]


def ssh_client_address(ssh_connection: str) -> ipaddress.IPv4Address | None:
    """The client address from SSH_CONNECTION ("client port server port"), if IPv4."""
    fields = ssh_connection.split()
    if not fields:
        return None
    try:
        addr = ipaddress.ip_address(fields[0])
    except ValueError:
        return None
    return addr if isinstance(addr, ipaddress.IPv4Address) else None


def probe_address(net: Network) -> str:
    """An address inside a peer network to ask the routing table about."""
    if net.num_addresses == 1:
        return str(net.network_address)
    return str(next(net.hosts(), net.network_address))


def route_dev(ip_route_get: str) -> tuple[str | None, bool]:
    """(device, is_local) from `ip route get <addr>` output."""
    dev = re.search(r"\bdev (\S+)", ip_route_get)
    local = ip_route_get.lstrip().startswith("local ")
    return (dev.group(1) if dev else None), local


def root_qdiscs(tc_qdisc_show: str) -> dict[str, tuple[str, str]]:
    """{device: (kind, handle)} of root qdiscs in `tc qdisc show` (all devices) output."""
    roots: dict[str, tuple[str, str]] = {}
    pattern = re.compile(r"^qdisc (\S+) (\S+) dev (\S+) root\b")
    for line in tc_qdisc_show.splitlines():
        found = pattern.match(line.strip())
        if found:
            kind, handle, dev = found.groups()
            roots[dev] = (kind, handle)
    return roots


def our_devices(roots: dict[str, tuple[str, str]]) -> list[str]:
    return sorted(
        dev for dev, (kind, handle) in roots.items() if kind == "prio" and handle == ROOT_HANDLE
    )


def is_default_root(handle: str) -> bool:
    """Kernel-assigned root qdiscs have handle 0:; deleting ours brings that default back."""
    return handle == "0:"


def netem_args(delay_ms: int, jitter_ms: int, loss_percent: float) -> list[str]:
    args: list[str] = []
    if delay_ms:
        args += ["delay", f"{delay_ms}ms"]
        if jitter_ms:
            args.append(f"{jitter_ms}ms")
    if loss_percent:
        args += ["loss", f"{loss_percent:g}%"]
    return args


def tc_commands(dev: str, peers: list[Network], netem: list[str]) -> list[list[str]]:
    """tc argument lists (without the binary) that install our delay for the peers on dev."""
    qdisc = ["qdisc", "add", "dev", dev]
    commands = [
        [*qdisc, "root", "handle", ROOT_HANDLE, "prio", "bands", str(PRIO_BANDS)],
        [*qdisc, "parent", NETEM_PARENT, "handle", NETEM_HANDLE, "netem", *netem],
    ]
    filt = ["filter", "add", "dev", dev, "parent", ROOT_HANDLE, "protocol", "ip", "prio", "1"]
    for net in peers:
        commands.append([*filt, "u32", "match", "ip", "dst", str(net), "flowid", NETEM_PARENT])
    return commands


def missing_qdisc_hint(stderr: str) -> str:
    """Explain tc's terse error when the kernel lacks a queueing discipline."""
    if "qdisc kind is unknown" in stderr or "No such file or directory" in stderr:
        return (
            " The kernel has no prio or netem queueing discipline"
            " (CONFIG_NET_SCH_PRIO / CONFIG_NET_SCH_NETEM): try `modprobe sch_prio sch_netem`"
            " on the host; inside a container the host kernel must provide them."
        )
    return ""
