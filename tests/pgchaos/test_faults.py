"""Per-fault windows: events in, windows out (pgchaos.faults)."""

from __future__ import annotations

import pytest

from pgchaos.events import FAULT, NOTE, RECOVER, Event, legacy_kind
from pgchaos.faults import Window, fault_windows

START = 1_000.0


def event(at: float, kind: str, action: str = "x", target: str = "pg1") -> Event:
    return Event(START + at, action, target, kind=kind)


def window(start: float, end: float, first: float | None = None, recovered: bool = True) -> Window:
    return Window(start, end, start + 0.1 if first is None else first, recovered)


def test_a_fault_owns_the_window_whose_first_failure_follows_it() -> None:
    events = [event(1, NOTE, "scenario-start"), event(10, FAULT), event(30, RECOVER)]
    # A hiccup before the fault belongs to no fault; the window opened by the fault does.
    windows = {"rw": [window(2, 3), window(9.5, 14.0, first=10.4)], "ro": []}
    [fault] = fault_windows(events, windows, START, 60)
    rw, ro = fault.per_endpoint["rw"], fault.per_endpoint["ro"]
    assert (fault.at_s, fault.recover_at_s, fault.until_s) == (10, 30, 60)
    assert fault.held_s == 20
    assert rw.windows == 1
    assert rw.first_failure_s == pytest.approx(0.4)
    assert rw.longest_gap_s == pytest.approx(4.5)
    assert rw.back_s == pytest.approx(4.0)
    # Back before the recovery: the recovery itself cost nothing.
    assert rw.back_after_recover_s == 0.0
    assert (ro.windows, ro.longest_gap_s, ro.back_s, ro.back_after_recover_s) == (0, 0, 0, 0)
    assert ro.first_failure_s is None


def test_down_until_the_restore_is_measured_from_the_restore() -> None:
    # etcd's quorum lost: writes stop and come back only after the restore took effect.
    events = [event(10, FAULT, "stop", "etcd1,etcd2"), event(40, RECOVER, "start")]
    [fault] = fault_windows(events, {"rw": [window(12, 43.5)]}, START, 80)
    rw = fault.per_endpoint["rw"]
    assert rw.back_s == pytest.approx(33.5)
    assert rw.back_after_recover_s == pytest.approx(3.5)


def test_recover_recorded_before_the_restore_took_effect_is_not_taken_for_it() -> None:
    # The old scenarios wrote "recover" before restoring.  With the restore's own time the
    # recovery moves to when the services were back, and the cost after it shrinks to what
    # the clients really waited for.
    written_early = [event(10, FAULT), event(20, RECOVER)]
    took_effect = [event(10, FAULT), event(26, RECOVER)]
    windows = {"rw": [window(11, 28)]}
    early = fault_windows(written_early, windows, START, 60)[0].per_endpoint["rw"]
    right = fault_windows(took_effect, windows, START, 60)[0].per_endpoint["rw"]
    assert early.back_after_recover_s == pytest.approx(8)
    assert right.back_after_recover_s == pytest.approx(2)
    assert early.back_s == right.back_s == pytest.approx(18)


def test_each_fault_gets_its_own_stretch_and_the_shared_recovery() -> None:
    # Leader after leader (chaos-patroni-all): three faults, one recovery at the end.
    events = [
        event(10, FAULT, "stop patroni", "pg1"),
        event(25, FAULT, "stop patroni", "pg2"),
        event(40, FAULT, "stop patroni", "pg3"),
        event(55, RECOVER, "start patroni", "pg1,pg2,pg3"),
    ]
    windows = {"rw": [window(10, 16), window(25, 33), window(40.2, 61, first=40.5)]}
    found = fault_windows(events, windows, START, 90)
    assert [f.until_s for f in found] == [25, 40, 90]
    assert [f.recover_at_s for f in found] == [55, 55, 55]
    assert [f.held_s for f in found] == [45, 30, 15]
    assert [f.per_endpoint["rw"].longest_gap_s for f in found] == pytest.approx([6, 8, 20.8])
    assert found[2].per_endpoint["rw"].back_after_recover_s == pytest.approx(6)
    assert found[0].per_endpoint["rw"].back_after_recover_s == 0.0


def test_never_back_is_null_not_a_number() -> None:
    events = [event(10, FAULT), event(30, RECOVER)]
    [fault] = fault_windows(events, {"rw": [window(11, 60, recovered=False)]}, START, 60)
    rw = fault.per_endpoint["rw"]
    assert rw.back_s is None
    assert rw.back_after_recover_s is None
    assert rw.longest_gap_s == pytest.approx(49)


def test_without_a_recover_event_the_recovery_cost_is_unknown() -> None:
    [fault] = fault_windows([event(5, FAULT)], {"rw": [window(6, 7)]}, START, 20)
    assert fault.per_endpoint["rw"].back_after_recover_s is None
    assert fault.recover_at_s is None
    assert fault.held_s is None


def test_as_dict_is_plain_json() -> None:
    [fault] = fault_windows([event(5, FAULT), event(9, RECOVER)], {"rw": [window(6, 7)]}, START, 20)
    data = fault.as_dict()
    assert data["per_endpoint"]["rw"]["back_s"] == pytest.approx(2)
    assert data["at_s"] == 5


def test_no_fault_no_entries() -> None:
    assert fault_windows([event(1, NOTE), event(2, RECOVER)], {"rw": []}, START, 10) == []


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("node", FAULT),
        ("stop patroni", FAULT),
        ("partition", FAULT),
        ("recover", RECOVER),
        ("scenario-start", NOTE),
        ("weird", NOTE),
    ],
)
def test_events_without_a_kind_are_read_as_the_old_scenarios_meant_them(
    action: str, kind: str
) -> None:
    assert legacy_kind(action) == kind


def test_a_failure_just_before_the_recorded_fault_is_the_fault_s() -> None:
    # docker kill returned 0.3 s after the container died: the clients failed first.
    [fault] = fault_windows(
        [event(12.4, FAULT)], {"rw": [window(12.0, 31.4, first=12.1)]}, START, 60
    )
    rw = fault.per_endpoint["rw"]
    assert rw.windows == 1
    assert rw.first_failure_s == pytest.approx(-0.3)
    assert rw.longest_gap_s == pytest.approx(19.4)


def test_a_hiccup_well_before_the_fault_is_not_the_fault_s() -> None:
    [fault] = fault_windows(
        [event(12.4, FAULT)], {"rw": [window(10.5, 11.0, first=10.8)]}, START, 60
    )
    assert fault.per_endpoint["rw"].windows == 0
