#!/usr/bin/python
# Copyright: pgchaos contributors
from __future__ import annotations

import json
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.urls import open_url

DOCUMENTATION = r"""
---
module: pgchaos_cluster_facts
short_description: Read the cluster's state as Patroni and etcd report it
description:
  - Read-only. Asks Patroni's REST API (C(GET /cluster)) on each of O(patroni_urls) in turn
    until one answers, and returns the leader, the members and how many replicas stream.
  - Asks every etcd endpoint in O(etcd_endpoints) for C(GET /health), and the first that
    answers for the member list (C(POST /v3/cluster/member/list)) and the leader
    (C(POST /v3/maintenance/status)), through etcd's HTTP/JSON gateway, so it works from any
    machine that reaches the endpoints, with no etcdctl needed.
  - Endpoints that do not answer are listed in the result; they are not an error unless
    none answers and O(fail_on_unreachable) is set.
version_added: "0.1.0"
author: pgchaos contributors
options:
  patroni_urls:
    description: Patroni REST API base URLs, for example C(http://10.77.0.21:8008).
    type: list
    elements: str
    default: []
  etcd_endpoints:
    description:
      - etcd client URLs, for example C(http://10.77.0.11:2379).
      - List every member's endpoint, C(healthy_count) counts the endpoints that answer healthy.
    type: list
    elements: str
    default: []
  username:
    description: Basic-auth user for Patroni's REST API (C(GET /cluster) usually needs none).
    type: str
  password:
    description: Basic-auth password for Patroni's REST API.
    type: str
  timeout:
    description: Seconds to wait for each HTTP request.
    type: float
    default: 2.0
  validate_certs:
    description: Verify TLS certificates of https URLs.
    type: bool
    default: true
  use_proxy:
    description: Use the proxy from the environment; cluster endpoints are normally direct.
    type: bool
    default: false
  fail_on_unreachable:
    description: Fail when Patroni (or etcd) is asked and none of its endpoints answers.
    type: bool
    default: false
notes:
  - Supports check mode; it never changes anything.
  - Runs wherever it is sent; C(delegate_to=localhost) asks from the control machine.
"""

EXAMPLES = r"""
- name: Who leads, who streams, does etcd have quorum
  pgchaos_cluster_facts:
    patroni_urls: [http://10.77.0.21:8008, http://10.77.0.22:8008, http://10.77.0.23:8008]
    etcd_endpoints: [http://10.77.0.11:2379, http://10.77.0.12:2379, http://10.77.0.13:2379]
    timeout: 1
  delegate_to: localhost
  register: chaos_facts

- name: Wait for a new leader
  pgchaos_cluster_facts:
    patroni_urls: "{{ pgchaos_patroni_urls }}"
  delegate_to: localhost
  register: chaos_facts
  until: chaos_facts.patroni.leader not in [none, 'pg1']
  retries: 60
  delay: 1
"""

RETURN = r"""
patroni:
  description: Patroni's view; empty when O(patroni_urls) is empty.
  returned: always
  type: dict
  sample: {reachable: true, leader: pg1, member_count: 3, streaming_replicas: 2}
  contains:
    reachable:
      description: Whether one URL answered.
      returned: always
      type: bool
      sample: true
    url:
      description: The URL that answered, null if none.
      returned: always
      type: str
      sample: http://10.77.0.21:8008
    unreachable:
      description: URLs tried before (or instead of) the one that answered, with the error.
      returned: always
      type: list
      elements: dict
      sample: [{url: http://10.77.0.22:8008, error: "timed out"}]
    scope:
      description: Patroni's cluster name.
      returned: when reachable
      type: str
      sample: pgchaos
    leader:
      description: Name of the leader (or standby leader), null when there is none.
      returned: always
      type: str
      sample: pg1
    members:
      description: Members with name, host, role, state, timeline and lag.
      returned: always
      type: list
      elements: dict
      sample: [{name: pg1, host: 10.77.0.21, role: leader, state: running, timeline: 1, lag: null}]
    member_count:
      description: Number of members.
      returned: always
      type: int
      sample: 3
    streaming_replicas:
      description: Members that are not the leader and whose state is C(streaming).
      returned: always
      type: int
      sample: 2
    leader_role:
      description:
        - The role the leader reports itself (C(GET /patroni) on its own API), null when it
          did not answer. It can differ from the lock, since a leader that demoted itself because
          etcd was out of reach still holds the lock until it expires.
      returned: always
      type: str
      sample: primary
    leader_serving:
      description:
        - Whether the leader says it runs as a primary (C(primary), C(master) before Patroni
          4, or C(standby_leader)) and its state is C(running).
      returned: always
      type: bool
      sample: true
etcd:
  description: etcd's view; empty when O(etcd_endpoints) is empty.
  returned: always
  type: dict
  sample: {reachable: true, member_count: 3, healthy_count: 3, quorum: true, leader_name: etcd1}
  contains:
    reachable:
      description: Whether one endpoint answered.
      returned: always
      type: bool
      sample: true
    endpoints:
      description: One entry per endpoint, with C(reachable), C(healthy) and C(error).
      returned: always
      type: list
      elements: dict
      sample: [{endpoint: http://10.77.0.11:2379, reachable: true, healthy: true, error: null}]
    members:
      description: Members with id (hex, as etcdctl prints it), name, peer_urls, client_urls.
      returned: always
      type: list
      elements: dict
      sample:
        - id: 8e9e05c52164694d
          name: etcd1
          peer_urls: [http://10.77.0.11:2380]
          client_urls: [http://10.77.0.11:2379]
    member_count:
      description: Number of members in the member list (0 if none could be read).
      returned: always
      type: int
      sample: 3
    healthy_count:
      description: Endpoints that answered C(/health) with health true.
      returned: always
      type: int
      sample: 3
    quorum:
      description: healthy_count > member_count / 2.
      returned: always
      type: bool
      sample: true
    leader_id:
      description: Raft leader's member id (hex), null if unknown.
      returned: always
      type: str
      sample: 8e9e05c52164694d
    leader_name:
      description: Raft leader's name, null if unknown.
      returned: always
      type: str
      sample: etcd1
"""


class Http:
    def __init__(self, module: AnsibleModule) -> None:
        self.params = module.params

    def request(
        self, url: str, method: str = "GET", body: dict[str, Any] | None = None, auth: bool = False
    ) -> Any:
        """JSON from a URL; raises on any transport, HTTP or decoding error."""
        kwargs: dict[str, Any] = {}
        if auth and self.params["username"]:
            kwargs = {
                "url_username": self.params["username"],
                "url_password": self.params["password"] or "",
                "force_basic_auth": True,
            }
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if body is not None else None
        response = open_url(
            url,
            data=data,
            headers=headers,
            method=method,
            timeout=self.params["timeout"],
            validate_certs=self.params["validate_certs"],
            use_proxy=self.params["use_proxy"],
            **kwargs,
        )
        return json.loads(response.read().decode("utf-8"))


def error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"


def etcd_id(value: object) -> str | None:
    """etcd's uint64 ids (JSON strings through the gateway) in etcdctl's hex form."""
    try:
        return format(int(str(value)), "x")
    except (TypeError, ValueError):
        return None


# Roles Patroni's /cluster gives the member holding the lock.
LEADER_ROLES = ("leader", "standby_leader")


def summarise_patroni(cluster: dict[str, Any]) -> dict[str, Any]:
    members = []
    for raw in cluster.get("members") or []:
        members.append(
            {
                "name": raw.get("name"),
                "host": raw.get("host"),
                "role": raw.get("role"),
                "state": raw.get("state"),
                "timeline": raw.get("timeline"),
                "lag": raw.get("lag"),
            }
        )
    leaders = [m["name"] for m in members if m["role"] in LEADER_ROLES]
    streaming = [m for m in members if m["role"] not in LEADER_ROLES and m["state"] == "streaming"]
    return {
        "scope": cluster.get("scope"),
        "leader": leaders[0] if leaders else None,
        "members": members,
        "member_count": len(members),
        "streaming_replicas": len(streaming),
    }


# What a Patroni node says of itself when its PostgreSQL runs as the primary.
SERVING_ROLES = ("primary", "master", "standby_leader")
NOT_SERVING: dict[str, Any] = {"leader_role": None, "leader_serving": False}


def leader_self_view(http: Http, cluster: dict[str, Any]) -> dict[str, Any]:
    """The leader's own report; the lock in etcd alone lags a leader that demoted itself."""
    api_url = next(
        (m.get("api_url") for m in cluster.get("members") or [] if m.get("role") in LEADER_ROLES),
        None,
    )
    if not isinstance(api_url, str) or not api_url.startswith(("http://", "https://")):
        return dict(NOT_SERVING)
    try:
        status = http.request(api_url, auth=True)
    except Exception:  # a leader that does not answer is not serving
        return dict(NOT_SERVING)
    if not isinstance(status, dict):
        return dict(NOT_SERVING)
    role = status.get("role")
    return {
        "leader_role": role,
        "leader_serving": role in SERVING_ROLES and status.get("state") == "running",
    }


def patroni_view(http: Http, urls: list[str]) -> dict[str, Any]:
    unreachable: list[dict[str, str]] = []
    for url in urls:
        base = url.rstrip("/")
        try:
            cluster = http.request(base + "/cluster", auth=True)
            if not isinstance(cluster, dict):
                raise ValueError("GET /cluster did not return a JSON object")
        except Exception as exc:  # every failure means "try the next URL"
            unreachable.append({"url": url, "error": error_text(exc)})
            continue
        return {
            "reachable": True,
            "url": url,
            "unreachable": unreachable,
            **summarise_patroni(cluster),
            **leader_self_view(http, cluster),
        }
    return {
        "reachable": False,
        "url": None,
        "unreachable": unreachable,
        "leader": None,
        "members": [],
        "member_count": 0,
        "streaming_replicas": 0,
        **NOT_SERVING,
    }


def is_healthy(health: object) -> bool:
    # etcd 3.4 answers {"health": "true"}; newer versions may send a JSON boolean.
    if not isinstance(health, dict):
        return False
    value = health.get("health")
    return value is True or str(value).lower() == "true"


def summarise_members(listing: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": etcd_id(raw.get("ID")),
            "name": raw.get("name") or "",
            "peer_urls": raw.get("peerURLs") or [],
            "client_urls": raw.get("clientURLs") or [],
        }
        for raw in listing.get("members") or []
    ]


def etcd_view(http: Http, endpoints: list[str]) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    members: list[dict[str, Any]] = []
    leader_id: str | None = None
    listed = False
    for endpoint in endpoints:
        base = endpoint.rstrip("/")
        entry: dict[str, Any] = {
            "endpoint": endpoint,
            "reachable": False,
            "healthy": False,
            "error": None,
        }
        try:
            entry["healthy"] = is_healthy(http.request(base + "/health"))
            entry["reachable"] = True
            if not listed:
                members = summarise_members(
                    http.request(base + "/v3/cluster/member/list", "POST", {})
                )
                status = http.request(base + "/v3/maintenance/status", "POST", {})
                leader_id = etcd_id(status.get("leader")) if isinstance(status, dict) else None
                listed = True
        except Exception as exc:  # a failing endpoint is reported, not fatal
            entry["error"] = error_text(exc)
        results.append(entry)
    healthy = sum(1 for entry in results if entry["healthy"])
    names = {m["id"]: m["name"] for m in members}
    # A member id of 0 means "no leader" in etcd's status.
    if leader_id == "0":
        leader_id = None
    return {
        "reachable": any(entry["reachable"] for entry in results),
        "endpoints": results,
        "members": members,
        "member_count": len(members),
        "healthy_count": healthy,
        "quorum": bool(members) and healthy > len(members) / 2,
        "leader_id": leader_id,
        "leader_name": names.get(leader_id) if leader_id else None,
    }


ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "patroni_urls": {"type": "list", "elements": "str", "default": []},
    "etcd_endpoints": {"type": "list", "elements": "str", "default": []},
    "username": {"type": "str"},
    "password": {"type": "str", "no_log": True},
    "timeout": {"type": "float", "default": 2.0},
    "validate_certs": {"type": "bool", "default": True},
    "use_proxy": {"type": "bool", "default": False},
    "fail_on_unreachable": {"type": "bool", "default": False},
}


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_together=[("username", "password")],
        supports_check_mode=True,
    )
    params = module.params
    if not params["patroni_urls"] and not params["etcd_endpoints"]:
        module.fail_json(msg="give patroni_urls, etcd_endpoints or both: there is nothing to ask")
    if params["timeout"] <= 0:
        module.fail_json(msg=f"timeout must be > 0 seconds, got {params['timeout']}")
    for url in params["patroni_urls"] + params["etcd_endpoints"]:
        if not url.startswith(("http://", "https://")):
            module.fail_json(msg=f"{url!r} is not an http(s) URL (e.g. http://10.77.0.21:8008)")
    http = Http(module)
    patroni = patroni_view(http, params["patroni_urls"]) if params["patroni_urls"] else {}
    etcd = etcd_view(http, params["etcd_endpoints"]) if params["etcd_endpoints"] else {}
    if params["fail_on_unreachable"]:
        dead = [
            name
            for name, view in (("Patroni", patroni), ("etcd", etcd))
            if view and not view["reachable"]
        ]
        if dead:
            module.fail_json(
                msg=f"no endpoint answered for {' and '.join(dead)}", patroni=patroni, etcd=etcd
            )
    module.exit_json(changed=False, patroni=patroni, etcd=etcd)


if __name__ == "__main__":
    main()
