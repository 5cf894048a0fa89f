"""pgchaos_cluster_facts with open_url faked: answers shaped like Patroni's and etcd's."""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.error import HTTPError, URLError

import pgchaos_cluster_facts as mod
import pytest
from modhelpers import ModuleFail, module_env, run_main

PATRONI_CLUSTER = {
    "scope": "pgchaos",
    "members": [
        {"name": "pg1", "role": "leader", "state": "running", "api_url": "http://10.77.0.21:8008/patroni",
         "host": "10.77.0.21", "port": 5432, "timeline": 3},
        {"name": "pg2", "role": "replica", "state": "streaming", "host": "10.77.0.22", "port": 5432,
         "timeline": 3, "lag": 0},
        {"name": "pg3", "role": "sync_standby", "state": "streaming", "host": "10.77.0.23",
         "port": 5432, "timeline": 3, "lag": 0},
    ],
}  # fmt: skip
# etcd's gateway encodes uint64 as JSON strings.
MEMBERS = {
    "header": {"cluster_id": "1", "member_id": "10276657743932975437", "raft_term": "4"},
    "members": [
        {"ID": "10276657743932975437", "name": "etcd1", "peerURLs": ["http://10.77.0.11:2380"],
         "clientURLs": ["http://10.77.0.11:2379"]},
        {"ID": "2", "name": "etcd2", "peerURLs": ["http://10.77.0.12:2380"],
         "clientURLs": ["http://10.77.0.12:2379"]},
        {"ID": "3", "name": "etcd3", "peerURLs": ["http://10.77.0.13:2380"],
         "clientURLs": ["http://10.77.0.13:2379"]},
    ],
}  # fmt: skip
STATUS = {"header": {}, "version": "3.4.23", "leader": "10276657743932975437", "raftTerm": "4"}
E1, E2, E3 = (f"http://10.77.0.1{i}:2379" for i in (1, 2, 3))
P1, P2 = "http://10.77.0.21:8008", "http://10.77.0.22:8008/"


class FakeHttp:
    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.calls: list[dict[str, Any]] = []

    def __call__(self, url: str, **kwargs: Any) -> io.BytesIO:
        self.calls.append({"url": url, **kwargs})
        answer = self.answers.get(url, URLError(ConnectionRefusedError(111, "Connection refused")))
        if isinstance(answer, Exception):
            raise answer
        return io.BytesIO(answer if isinstance(answer, bytes) else json.dumps(answer).encode())


def etcd_answers(*endpoints: str, health: str = "true") -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for endpoint in endpoints:
        answers[f"{endpoint}/health"] = {"health": health}
        answers[f"{endpoint}/v3/cluster/member/list"] = MEMBERS
        answers[f"{endpoint}/v3/maintenance/status"] = STATUS
    return answers


def run(
    answers: dict[str, Any], monkeypatch: pytest.MonkeyPatch, **args: Any
) -> tuple[dict[str, Any], FakeHttp]:
    fake = FakeHttp(answers)
    monkeypatch.setattr(mod, "open_url", fake)
    with module_env():
        return run_main(mod.main, args), fake


def test_patroni_first_answer_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {f"{P2.rstrip('/')}/cluster": PATRONI_CLUSTER}
    result, fake = run(answers, monkeypatch, patroni_urls=[P1, P2, "http://10.77.0.23:8008"])
    patroni = result["patroni"]
    assert result["changed"] is False
    assert patroni["reachable"] is True
    assert patroni["url"] == P2
    assert patroni["leader"] == "pg1"
    assert patroni["member_count"] == 3
    assert patroni["streaming_replicas"] == 2
    assert patroni["members"][1] == {
        "name": "pg2", "host": "10.77.0.22", "role": "replica", "state": "streaming",
        "timeline": 3, "lag": 0,
    }  # fmt: skip
    assert [u["url"] for u in patroni["unreachable"]] == [P1]
    assert "Connection refused" in patroni["unreachable"][0]["error"]
    # The leader's own API did not answer: it is not counted as serving.
    assert [c["url"] for c in fake.calls] == [
        f"{P1}/cluster", f"{P2.rstrip('/')}/cluster", "http://10.77.0.21:8008/patroni",
    ]  # fmt: skip
    assert patroni["leader_role"] is None
    assert patroni["leader_serving"] is False
    assert all(c["timeout"] == 2.0 and c["use_proxy"] is False for c in fake.calls)
    assert result["etcd"] == {}


@pytest.mark.parametrize(
    ("status", "serving"),
    [
        ({"state": "running", "role": "master"}, True),  # Patroni 3 (Debian 12)
        ({"state": "running", "role": "primary"}, True),  # Patroni 4
        # Demoted itself because etcd was out of reach: the lock still names it.
        ({"state": "running", "role": "replica"}, False),
        ({"state": "starting", "role": "master"}, False),
        (["not", "an", "object"], False),
    ],
)
def test_leader_serving_is_what_the_leader_says(
    monkeypatch: pytest.MonkeyPatch, status: Any, serving: bool
) -> None:
    answers = {f"{P1}/cluster": PATRONI_CLUSTER, "http://10.77.0.21:8008/patroni": status}
    result, _ = run(answers, monkeypatch, patroni_urls=[P1])
    assert result["patroni"]["leader"] == "pg1"
    assert result["patroni"]["leader_serving"] is serving
    assert result["patroni"]["leader_role"] == (
        status.get("role") if isinstance(status, dict) else None
    )
    assert "leader_api_url" not in result["patroni"]


def test_patroni_without_leader(monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = {"members": [{"name": "pg2", "role": "replica", "state": "running"}]}
    result, _ = run({f"{P1}/cluster": cluster}, monkeypatch, patroni_urls=[P1])
    assert result["patroni"]["leader"] is None
    assert result["patroni"]["streaming_replicas"] == 0
    assert result["patroni"]["leader_serving"] is False


def test_patroni_basic_auth_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    args = {"patroni_urls": [P1], "username": "patroni", "password": "s3cret", "timeout": 0.5}
    _, fake = run({f"{P1}/cluster": PATRONI_CLUSTER}, monkeypatch, **args)
    call = fake.calls[0]
    assert (call["url_username"], call["url_password"], call["force_basic_auth"]) == (
        "patroni", "s3cret", True,
    )  # fmt: skip
    assert call["timeout"] == 0.5


def test_etcd_quorum_leader_and_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = etcd_answers(E2, E3)
    answers[f"{E3}/health"] = {"health": "false", "reason": "RAFT NO LEADER"}
    result, fake = run(answers, monkeypatch, etcd_endpoints=[E1, E2, E3])
    etcd = result["etcd"]
    assert etcd["member_count"] == 3
    assert etcd["healthy_count"] == 1
    assert etcd["quorum"] is False
    assert etcd["leader_id"] == "8e9e05c52164694d"
    assert etcd["leader_name"] == "etcd1"
    assert etcd["members"][0] == {
        "id": "8e9e05c52164694d", "name": "etcd1",
        "peer_urls": ["http://10.77.0.11:2380"], "client_urls": ["http://10.77.0.11:2379"],
    }  # fmt: skip
    assert [(e["reachable"], e["healthy"]) for e in etcd["endpoints"]] == [
        (False, False), (True, True), (True, False),
    ]  # fmt: skip
    assert "Connection refused" in etcd["endpoints"][0]["error"]
    listing = [c for c in fake.calls if c["url"].endswith("member/list")]
    assert len(listing) == 1
    assert listing[0]["method"] == "POST"
    assert json.loads(listing[0]["data"]) == {}


def test_etcd_quorum_with_a_majority(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = run(etcd_answers(E1, E2), monkeypatch, etcd_endpoints=[E1, E2, E3])
    assert (result["etcd"]["healthy_count"], result["etcd"]["quorum"]) == (2, True)


def test_etcd_without_leader(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = etcd_answers(E1)
    answers[f"{E1}/v3/maintenance/status"] = {"leader": "0"}
    result, _ = run(answers, monkeypatch, etcd_endpoints=[E1])
    assert (result["etcd"]["leader_id"], result["etcd"]["leader_name"]) == (None, None)


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("timed out"),
        HTTPError(E1, 503, "Service Unavailable", {}, None),  # type: ignore[arg-type]
        ValueError("Expecting value"),
    ],
)
def test_any_failure_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    result, _ = run({f"{E1}/health": error}, monkeypatch, etcd_endpoints=[E1])
    assert result["etcd"]["reachable"] is False
    assert result["etcd"]["quorum"] is False
    assert type(error).__name__ in result["etcd"]["endpoints"][0]["error"]


def test_garbage_json_is_unreachable(monkeypatch: pytest.MonkeyPatch) -> None:
    result, _ = run({f"{P1}/cluster": b"<html>"}, monkeypatch, patroni_urls=[P1])
    assert result["patroni"]["reachable"] is False


def test_fail_on_unreachable_names_what_did_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mod, "open_url", FakeHttp(etcd_answers(E1)))
    args = {"patroni_urls": [P1], "etcd_endpoints": [E1], "fail_on_unreachable": True}
    with module_env(), pytest.raises(ModuleFail) as info:
        run_main(mod.main, args)
    assert info.value.result["msg"] == "no endpoint answered for Patroni"
    assert info.value.result["etcd"]["reachable"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "give patroni_urls, etcd_endpoints or both"),
        ({"patroni_urls": ["10.77.0.21:8008"]}, "'10.77.0.21:8008' is not an http(s) URL"),
        ({"etcd_endpoints": [E1], "timeout": 0}, "timeout must be > 0"),
        ({"patroni_urls": [P1], "username": "u"}, "password"),
    ],
)
def test_bad_arguments(monkeypatch: pytest.MonkeyPatch, args: dict[str, Any], message: str) -> None:
    monkeypatch.setattr(mod, "open_url", FakeHttp({}))
    with module_env(), pytest.raises(ModuleFail) as info:
        run_main(mod.main, args)
    assert message in info.value.result["msg"]


def test_password_is_no_log() -> None:
    assert mod.ARGUMENT_SPEC["password"]["no_log"] is True


def test_half_the_members_is_no_quorum(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = etcd_answers(E1)
    answers[f"{E1}/v3/cluster/member/list"] = {"members": MEMBERS["members"][:2]}
    result, _ = run(answers, monkeypatch, etcd_endpoints=[E1, E2])
    assert (result["etcd"]["member_count"], result["etcd"]["healthy_count"]) == (2, 1)
    assert result["etcd"]["quorum"] is False
