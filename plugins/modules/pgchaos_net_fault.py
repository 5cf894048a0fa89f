#!/usr/bin/python
# Copyright: pgchaos contributors
from __future__ import annotations

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.pgchaos_deadman import (
    arm_command,
    disarm_commands,
    shell,
)
from ansible.module_utils.pgchaos_deadman import (
    unit_name as dead_man_unit,
)
from ansible.module_utils.pgchaos_gate import MARKER, gate_message, opted_in
from ansible.module_utils.pgchaos_net import (
    CHAIN,
    JUMP_FROM,
    LOSS_CHAIN,
    Network,
    PeerError,
    chain_rule_lines,
    is_default_root,
    jump_count,
    jump_is_first,
    local_ipv4_addresses,
    loss_rules,
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

DOCUMENTATION = r"""
---
module: pgchaos_net_fault
short_description: Partition a node from peers, drop a share of their packets, or slow them
description:
  - C(mode=partition) drops every packet between this node and O(peers), both directions,
    with iptables rules in a dedicated chain C(PGCHAOS) that INPUT and OUTPUT jump to as
    their first rule. Hosts not in O(peers) (clients, the control machine) still reach the
    node. Packets this node sends are dropped in OUTPUT, so local senders may see
    C(Operation not permitted) at once instead of a timeout.
  - C(mode=loss) drops each packet between this node and O(peers), both directions, with
    probability O(loss_percent) (the iptables C(statistic) match, which every kernel has,
    unlike netem), in its own chain C(PGCHAOS-LOSS) jumped to from INPUT and OUTPUT before
    any rule of the host; a partition and a loss can be in place together.
  - C(mode=netem) delays and/or drops a share of the packets this node B(sends) to O(peers)
    (egress only; apply it on both sides for a symmetric fault). On each interface that
    routes to a peer (found with C(ip route get), never assumed to be eth0) it installs a
    C(prio) root qdisc with handle C(5043:), a C(netem) qdisc on its 4th band and one C(u32)
    filter per peer, so traffic to other hosts is not slowed. It refuses to replace a root
    qdisc someone configured (any root handle other than the kernel default C(0:)).
  - O(state=present) makes the fault exactly what the arguments say (a second run with the
    same arguments changes nothing; other arguments replace the previous fault of that mode).
    O(state=absent) removes what this module added and nothing else; the PGCHAOS chain and
    its jumps for C(partition), the PGCHAOS-LOSS chain and its jumps for C(loss); the
    C(5043:) root qdiscs on every interface for C(netem).
  - The netem parameters in force are remembered in C(/run/pgchaos-netem.json) (tc prints
    them in a version-dependent format); the file goes with O(state=absent) and with a reboot,
    like the qdiscs themselves.
version_added: "0.1.0"
author: pgchaos contributors
options:
  state:
    description: Whether the fault should be in place.
    type: str
    default: present
    choices: [present, absent]
  mode:
    description: Which fault; O(state=absent) removes only that mode's fault.
    type: str
    required: true
    choices: [partition, loss, netem]
  peers:
    description:
      - IPv4 addresses or CIDRs of the other side. Required with O(state=present).
      - For C(partition) no peer may contain one of this node's own addresses (the rules
        would then match the node's own packets), nor the address Ansible connects from when
        the module can see it (C(SSH_CONNECTION), often hidden by C(become)); never list the
        control machine, or the partition cannot be lifted with Ansible.
    type: list
    elements: str
    default: []
  dead_man_seconds:
    description:
      - With O(state=present) and a value above 0, arm a dead-man timer on this host (a
        transient systemd timer, C(pgchaos-deadman-partition), C(pgchaos-deadman-loss) or
        C(pgchaos-deadman-netem))
        that removes this mode's fault after that many seconds unless O(state=absent) comes
        first, which disarms it.  A control machine that dies mid-scenario, or one the
        partition cuts off, then leaves no fault behind.
      - 0 arms nothing.
    type: float
    default: 0
  ports:
    description:
      - C(partition) only; cut only traffic where either end's port is one of these
        (iptables multiport, at most 15). Empty cuts all traffic with the peers.
    type: list
    elements: int
    default: []
  protocol:
    description: C(partition) with O(ports) only; the protocol the ports belong to.
    type: str
    default: tcp
    choices: [tcp, udp]
  delay_ms:
    description: C(netem) only; added one-way delay in milliseconds.
    type: int
    default: 0
  jitter_ms:
    description:
      - C(netem) only; random variation of the delay (needs O(delay_ms)).
      - Jitter reorders packets, as netem does.
    type: int
    default: 0
  loss_percent:
    description:
      - C(netem) and C(loss); share of packets dropped at random, 0 to 100 (above 0 for
        C(loss) with O(state=present)).
    type: float
    default: 0.0
notes:
  - O(state=present) is refused unless the host carries the chaos marker
    C(/etc/pgchaos/chaos-target) (the lab writes it; C(playbooks/chaos-optin.yml) elsewhere);
    O(state=absent) always works.
  - Needs root and the C(iptables) (partition) and C(iproute2) (both modes) packages; on
    Debian 12 C(iptables) is the nft backend. All iptables calls use C(-w).
  - IPv4 only.
  - In a container it needs the C(NET_ADMIN) capability, and netem needs the host kernel's
    C(sch_prio) and C(sch_netem).
  - Supports check mode, which predicts C(changed) and changes nothing.
"""

EXAMPLES = r"""
- name: Cut the leader off from the other Patroni and etcd nodes (clients still reach it)
  pgchaos_net_fault:
    mode: partition
    peers: [10.77.0.11, 10.77.0.12, 10.77.0.13, 10.77.0.22, 10.77.0.23]
  become: true

- name: Only PostgreSQL replication and the Patroni API
  pgchaos_net_fault:
    mode: partition
    peers: [10.77.0.0/24]
    ports: [5432, 8008]
  become: true

- name: Heal
  pgchaos_net_fault:
    mode: partition
    state: absent
  become: true

- name: Drop 30 % of the packets between the leader and the other members, both ways
  pgchaos_net_fault:
    mode: loss
    peers: [10.77.0.11, 10.77.0.12, 10.77.0.13, 10.77.0.22, 10.77.0.23]
    loss_percent: 30
  become: true

- name: 200 ms +- 20 ms and 1 % loss towards the etcd nodes
  pgchaos_net_fault:
    mode: netem
    peers: [10.77.0.11, 10.77.0.12, 10.77.0.13]
    delay_ms: 200
    jitter_ms: 20
    loss_percent: 1
  become: true
"""

RETURN = r"""
dead_man:
  description: The dead-man timer's unit when one was armed by this run, else null.
  returned: always
  type: str
  sample: pgchaos-deadman-partition
at:
  description:
    - When the rules or queueing disciplines were in place (or removed), in seconds since the
      epoch on this host's clock.  Give it to M(pgchaos_event) as O(pgchaos_event#module:time).
  returned: always
  type: float
  sample: 1764650000.123456
mode:
  description: The mode acted on.
  returned: always
  type: str
  sample: partition
state:
  description: The requested state.
  returned: always
  type: str
  sample: present
peers:
  description: Normalised peers (CIDR form).
  returned: always
  type: list
  elements: str
  sample: [10.77.0.12/32]
rules:
  description:
    - The mode's chain's rules after the run (in check mode, the ones predicted) -
      PGCHAOS for C(partition), PGCHAOS-LOSS for C(loss).
  returned: when mode is partition or loss
  type: list
  elements: str
  sample: ["-A PGCHAOS -s 10.77.0.12/32 -j DROP", "-A PGCHAOS -d 10.77.0.12/32 -j DROP"]
interfaces:
  description: Interfaces carrying our netem qdisc after the run (predicted in check mode).
  returned: when mode is netem
  type: list
  elements: str
  sample: [eth0]
netem:
  description: netem arguments in force after the run, per interface.
  returned: when mode is netem
  type: dict
  sample: {eth0: {peers: [10.77.0.12/32], netem: [delay, 200ms, 20ms]}}
commands:
  description: Commands run (or, in check mode, that would at least be run).
  returned: always
  type: list
  elements: str
  sample: ["iptables -w -N PGCHAOS"]
"""

NETEM_STATE_FILE = "/run/pgchaos-netem.json"

# {interface: {"peers": [cidr, ...], "netem": [tc netem args]}}
NetemSpec = dict[str, dict[str, list[str]]]


class NetFault:
    def __init__(self, module: AnsibleModule) -> None:
        self.module = module
        self.params = module.params
        self.commands: list[str] = []
        self.ip = self.need("ip", "iproute2")

    def need(self, tool: str, package: str) -> str:
        path = self.module.get_bin_path(tool, opt_dirs=["/usr/sbin", "/sbin"])
        if path is None:
            self.module.fail_json(msg=f"{tool} not found: install the {package} package")
        return path

    def run(
        self, args: list[str], act: bool = False, check_rc: bool = True
    ) -> tuple[int, str, str]:
        """Run a command; `act` marks commands that change the system (skipped in check mode)."""
        if act:
            self.commands.append(" ".join(args))
            if self.module.check_mode:
                return 0, "", ""
        rc, out, err = self.module.run_command(args)
        if check_rc and rc != 0:
            self.module.fail_json(
                msg=f"{' '.join(args)} failed (rc={rc}): {err.strip() or out.strip()}",
                rc=rc,
                stderr=err,
                commands=self.commands,
            )
        return rc, out, err

    # --- dead-man timers ---------------------------------------------------------------

    def disarm(self, fault: str) -> None:
        systemctl = self.module.get_bin_path("systemctl")
        if systemctl is None or self.module.check_mode:
            return
        # Stopping a timer that is not there fails harmlessly: nothing to check.
        for cmd in disarm_commands(systemctl, fault):
            self.module.run_command(cmd)

    def arm(self, fault: str, undo: list[list[str]]) -> str | None:
        """Re-arm the fault's timer (each present run restarts the count); None when off."""
        seconds = self.params["dead_man_seconds"]
        if not seconds or self.module.check_mode:
            return None
        systemd_run = self.need("systemd-run", "systemd")
        self.disarm(fault)
        self.run(arm_command(systemd_run, fault, seconds, shell(*undo)), act=True)
        return dead_man_unit(fault)

    # --- partition ---------------------------------------------------------------------

    def ipt(self, *args: str) -> list[str]:
        return [self.iptables, "-w", *args]

    def partition(self, peers: list[Network]) -> None:
        try:
            desired = partition_rules(peers, self.params["ports"], self.params["protocol"])
        except ValueError as exc:
            self.module.fail_json(msg=f"ports: {exc}")
        self.chain_fault("partition", CHAIN, peers, desired, "the partition rules")

    def loss(self, peers: list[Network]) -> None:
        desired = []
        if self.params["state"] == "present":
            desired = loss_rules(peers, self.params["loss_percent"])
        self.chain_fault("loss", LOSS_CHAIN, peers, desired, "the loss rules")

    def chain_fault(
        self, fault: str, chain: str, peers: list[Network], desired: list[list[str]], what: str
    ) -> None:
        """Make ``chain`` hold exactly ``desired``, jumped to early from INPUT and OUTPUT
        (state present), or remove the chain and its jumps (absent)."""
        self.iptables = self.need("iptables", "iptables")
        rc, chain_s, _ = self.run(self.ipt("-S", chain), check_rc=False)
        chain_exists = rc == 0
        current = chain_rule_lines(chain_s, chain) if chain_exists else []
        jumps = {}
        for parent in JUMP_FROM:
            _, out, _ = self.run(self.ipt("-S", parent))
            jumps[parent] = out

        if self.params["state"] == "absent":
            self.disarm(fault)
            changed = chain_exists or any(jump_count(out, p, chain) for p, out in jumps.items())
            for parent, out in jumps.items():
                for _ in range(jump_count(out, parent, chain)):
                    self.run(self.ipt("-D", parent, "-j", chain), act=True)
            if chain_exists:
                self.run(self.ipt("-F", chain), act=True)
                self.run(self.ipt("-X", chain), act=True)
            self.module.exit_json(
                changed=changed, rules=[], at=time.time(), dead_man=None, **self.result(peers)
            )

        local = local_ipv4_addresses(self.run([self.ip, "-o", "-4", "addr", "show"])[1])
        clash = peers_covering_local(peers, local)
        if clash:
            net, addr = clash[0]
            self.module.fail_json(
                msg=f"peer {net} contains this node's own address {addr}: {what}"
                " would drop the node's own traffic; list the other nodes instead"
            )
        client = ssh_client_address(os.environ.get("SSH_CONNECTION", ""))
        cut = [net for net in peers if client is not None and client in net]
        if cut:
            self.module.fail_json(
                msg=f"peer {cut[0]} contains {client}, the address Ansible connects from"
                f" (SSH_CONNECTION): {what} would cut this node off from Ansible"
            )
        rules_ok = chain_exists and len(current) == len(desired)
        if rules_ok:
            for rule in desired:
                if self.run(self.ipt("-C", chain, *rule), check_rc=False)[0] != 0:
                    rules_ok = False
                    break
        jumps_ok = all(jump_is_first(out, parent, chain) for parent, out in jumps.items())
        changed = not (rules_ok and jumps_ok)
        if not rules_ok:
            if not chain_exists:
                self.run(self.ipt("-N", chain), act=True)
            else:
                self.run(self.ipt("-F", chain), act=True)
            for rule in desired:
                self.run(self.ipt("-A", chain, *rule), act=True)
        if not jumps_ok:
            # Our jump goes first so that no ACCEPT rule of the host lets peer traffic through.
            for parent, out in jumps.items():
                if jump_is_first(out, parent, chain):
                    continue
                for _ in range(jump_count(out, parent, chain)):
                    self.run(self.ipt("-D", parent, "-j", chain), act=True)
                self.run(self.ipt("-I", parent, "1", "-j", chain), act=True)
        at = time.time()
        if self.module.check_mode:
            rules = [" ".join(["-A", chain, *rule]) for rule in desired]
        else:
            rules = chain_rule_lines(self.run(self.ipt("-S", chain))[1], chain)
        undo = [self.ipt("-D", parent, "-j", chain) for parent in JUMP_FROM]
        undo += [self.ipt("-F", chain), self.ipt("-X", chain)]
        dead_man = self.arm(fault, undo)
        self.module.exit_json(
            changed=changed, rules=rules, at=at, dead_man=dead_man, **self.result(peers)
        )

    # --- netem -------------------------------------------------------------------------

    def read_state(self) -> dict[str, object]:
        try:
            with open(NETEM_STATE_FILE, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_state(self, data: NetemSpec) -> None:
        if self.module.check_mode:
            return
        if not data:
            if os.path.exists(NETEM_STATE_FILE):
                os.unlink(NETEM_STATE_FILE)
            return
        tmp = NETEM_STATE_FILE + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, sort_keys=True)
        os.replace(tmp, NETEM_STATE_FILE)

    def desired_netem(self, peers: list[Network]) -> NetemSpec:
        args = netem_args(
            self.params["delay_ms"], self.params["jitter_ms"], self.params["loss_percent"]
        )
        by_dev: dict[str, list[str]] = {}
        for net in peers:
            addr = probe_address(net)
            _, out, _ = self.run([self.ip, "route", "get", addr])
            dev, local = route_dev(out)
            if local or dev == "lo":
                self.module.fail_json(msg=f"peer {net} is an address of this node ({addr})")
            if dev is None:
                self.module.fail_json(msg=f"no interface routes to peer {net}: {out.strip()}")
            by_dev.setdefault(dev, []).append(str(net))
        return {dev: {"peers": nets, "netem": args} for dev, nets in sorted(by_dev.items())}

    def delete_root(self, dev: str) -> None:
        self.run([self.tc, "qdisc", "del", "dev", dev, "root"], act=True)

    def netem(self, peers: list[Network]) -> None:
        self.tc = self.need("tc", "iproute2")
        roots = root_qdiscs(self.run([self.tc, "qdisc", "show"])[1])
        ours = our_devices(roots)
        recorded = self.read_state()

        if self.params["state"] == "absent":
            self.disarm("netem")
            changed = bool(ours)
            for dev in ours:
                self.delete_root(dev)
            self.write_state({})
            self.module.exit_json(
                changed=changed,
                interfaces=[],
                netem={},
                at=time.time(),
                dead_man=None,
                **self.result(peers),
            )

        desired = self.desired_netem(peers)
        for dev in desired:
            kind, handle = roots.get(dev, ("", "0:"))
            if dev not in ours and not is_default_root(handle):
                self.module.fail_json(
                    msg=f"interface {dev} has a configured root qdisc ({kind} {handle}); "
                    "pgchaos_net_fault will not replace it (absent could not restore it)"
                )
        current = {dev: recorded.get(dev) for dev in ours}
        changed = current != desired
        if changed:
            for dev in ours:
                self.delete_root(dev)
            for dev, spec in desired.items():
                for args in tc_commands(dev, parse_peers(spec["peers"]), spec["netem"]):
                    rc, _, err = self.run([self.tc, *args], act=True, check_rc=False)
                    if rc != 0:
                        self.rollback(dev, args, rc, err)
            self.write_state(desired)
        at = time.time()
        undo = [[self.tc, "qdisc", "del", "dev", dev, "root"] for dev in desired]
        undo.append(["rm", "-f", NETEM_STATE_FILE])
        dead_man = self.arm("netem", undo)
        self.module.exit_json(
            changed=changed,
            interfaces=sorted(desired),
            netem=desired,
            at=at,
            dead_man=dead_man,
            **self.result(peers),
        )

    def rollback(self, dev: str, args: list[str], rc: int, err: str) -> None:
        """Leave the interface as it was when a step fails halfway."""
        roots = root_qdiscs(self.run([self.tc, "qdisc", "show"])[1])
        if dev in our_devices(roots):
            self.run([self.tc, "qdisc", "del", "dev", dev, "root"], check_rc=False)
        reason = err.strip().rstrip(".")
        self.module.fail_json(
            msg=f"tc {' '.join(args)} failed (rc={rc}): {reason}.{missing_qdisc_hint(err)}"
            f" Nothing was left on {dev}.",
            rc=rc,
            stderr=err,
            commands=self.commands,
        )

    def result(self, peers: list[Network]) -> dict[str, object]:
        return {
            "mode": self.params["mode"],
            "state": self.params["state"],
            "peers": [str(net) for net in peers],
            "commands": self.commands,
        }


def validate(module: AnsibleModule) -> list[Network]:
    params = module.params
    try:
        peers = parse_peers(params["peers"])
    except PeerError as exc:
        module.fail_json(msg=str(exc))
    if params["state"] == "present" and not peers:
        module.fail_json(msg=f"state=present with mode={params['mode']} needs at least one peer")
    if params["mode"] == "loss":
        wrong = [k for k in ("delay_ms", "jitter_ms", "ports") if params[k]]
        if wrong:
            module.fail_json(msg=f"{', '.join(wrong)} do not apply to mode=loss")
        loss = params["loss_percent"]
        if params["state"] == "present" and not 0 < loss <= 100:
            module.fail_json(
                msg=f"mode=loss with state=present needs loss_percent above 0 and at most 100,"
                f" got {loss:g}"
            )
    elif params["mode"] == "partition":
        netem_set = [k for k in ("delay_ms", "jitter_ms", "loss_percent") if params[k]]
        if netem_set:
            module.fail_json(msg=f"{', '.join(netem_set)} only apply to mode=netem, not partition")
        if params["ports"]:
            try:
                ports_spec(params["ports"])
            except ValueError as exc:
                module.fail_json(msg=f"ports: {exc}")
    else:
        if params["ports"]:
            module.fail_json(msg="ports only apply to mode=partition; netem acts per peer address")
        delay, jitter, loss = params["delay_ms"], params["jitter_ms"], params["loss_percent"]
        if delay < 0 or jitter < 0:
            module.fail_json(msg=f"delay_ms and jitter_ms must be >= 0, got {delay} and {jitter}")
        if not 0 <= loss <= 100:
            module.fail_json(msg=f"loss_percent must be between 0 and 100, got {loss}")
        if jitter and not delay:
            module.fail_json(msg=f"jitter_ms={jitter} needs delay_ms > 0")
        if params["state"] == "present" and not (delay or loss):
            module.fail_json(msg="mode=netem with state=present needs delay_ms or loss_percent > 0")
    return peers


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "mode": {"type": "str", "required": True, "choices": ["partition", "loss", "netem"]},
            "peers": {"type": "list", "elements": "str", "default": []},
            "ports": {"type": "list", "elements": "int", "default": []},
            "protocol": {"type": "str", "default": "tcp", "choices": ["tcp", "udp"]},
            "delay_ms": {"type": "int", "default": 0},
            "jitter_ms": {"type": "int", "default": 0},
            "loss_percent": {"type": "float", "default": 0.0},
            "dead_man_seconds": {"type": "float", "default": 0.0},
        },
        supports_check_mode=True,
    )
    dead_man = module.params["dead_man_seconds"]
    if not 0 <= dead_man <= 86400:  # also refuses NaN
        module.fail_json(msg=f"dead_man_seconds must be between 0 and 86400, got {dead_man}")
    if module.params["state"] == "present" and not opted_in():
        module.fail_json(msg=gate_message(MARKER, f"add a {module.params['mode']} fault"))
    peers = validate(module)
    fault = NetFault(module)
    if module.params["mode"] == "partition":
        fault.partition(peers)
    elif module.params["mode"] == "loss":
        fault.loss(peers)
    else:
        fault.netem(peers)


if __name__ == "__main__":
    main()
