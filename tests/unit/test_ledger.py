"""The license ledger's arithmetic (DESIGN.md step 7): reservations raise what a license has
committed, never past its cap; the reconciler recomputes it from pods and unseen reservations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from computegate.engine.ledger import (
    MAX_RESERVATIONS,
    Ledger,
    Reservation,
    ReserveRequest,
    exact,
    expired,
    reconcile,
    reserve,
)

AT = datetime(2026, 6, 1, tzinfo=UTC)
H100 = Fraction(15832)


def request(uid: str, chips: Fraction | int = 1, tpp: Fraction = H100) -> ReserveRequest:
    return ReserveRequest(uid=uid, pod=f"ns/{uid}", tpp=tpp * chips, accelerators=Fraction(chips))


def reservation(pod: str = "ns/x", at: datetime = AT) -> Reservation:
    return Reservation(pod, H100, Fraction(1), at)


def test_reservations_are_admitted_in_order_until_the_cap_and_no_further() -> None:
    ledger, results = reserve(
        Ledger(), [request(f"p{i}") for i in range(5)], max_tpp=2 * H100, max_accelerators=None, at=AT
    )
    assert results == [True, True, False, False, False]
    assert ledger.committed_tpp == 2 * H100 and set(ledger.reservations) == {"p0", "p1"}


def test_a_smaller_request_after_a_refused_one_still_fits() -> None:
    ledger, results = reserve(
        Ledger(committed_tpp=H100),
        [request("big", 8), request("small", 1)],
        max_tpp=2 * H100,
        max_accelerators=None,
        at=AT,
    )
    assert results == [False, True]
    assert ledger.committed_tpp == 2 * H100


def test_the_accelerator_cap_holds_as_well_as_the_tpp_cap() -> None:
    _, results = reserve(
        Ledger(), [request("a", 2), request("b", 2)], max_tpp=100 * H100, max_accelerators=Fraction(3), at=AT
    )
    assert results == [True, False]


def test_a_retried_admission_of_the_same_pod_is_charged_once() -> None:
    once, _ = reserve(Ledger(), [request("p")], max_tpp=H100, max_accelerators=None, at=AT)
    twice, results = reserve(once, [request("p")], max_tpp=H100, max_accelerators=None, at=AT)
    assert results == [True] and twice == once


def test_mig_shares_add_up_exactly_to_whole_chips() -> None:
    share = exact(15832 / 7)  # a 1g slice of an H100, as the engine's float
    ledger, results = reserve(
        Ledger(),
        [request(f"s{i}", 1, tpp=share) for i in range(7)] + [request("one-more", 1, tpp=share)],
        max_tpp=H100,
        max_accelerators=None,
        at=AT,
    )
    assert results == [True] * 7 + [False]
    assert ledger.committed_tpp == H100  # not 15831.999...


def test_a_full_ledger_asks_to_retry_rather_than_grow_past_its_bound() -> None:
    full = Ledger(reservations={f"u{i}": reservation() for i in range(MAX_RESERVATIONS)})
    _, results = reserve(full, [request("late")], max_tpp=10**9 * H100, max_accelerators=None, at=AT)
    assert results == [None]


def test_the_status_round_trips_exactly() -> None:
    ledger, _ = reserve(
        Ledger(),
        [request("a", 1, tpp=exact(15832 / 7)), request("b")],
        max_tpp=3 * H100,
        max_accelerators=None,
        at=AT,
    )
    assert Ledger.from_status({"ledger": ledger.to_status()}) == ledger
    assert ledger.to_status()["committedTPP"] == "126656/7"


def test_an_unreadable_or_absent_ledger_is_none() -> None:
    assert Ledger.from_status(None) is None
    assert Ledger.from_status({"consumedTPP": 3}) is None
    assert Ledger.from_status({"ledger": {"committedTPP": "x/0"}}) is None
    assert Ledger.from_status({"ledger": {"reservations": {"u": {"tpp": 1}}}}) is None


def test_the_reconciler_counts_seen_pods_and_keeps_only_unseen_fresh_reservations() -> None:
    ledger, _ = reserve(
        Ledger(),
        [request("seen"), request("unseen"), request("old")],
        max_tpp=9 * H100,
        max_accelerators=None,
        at=AT,
    )
    aged = Ledger(
        ledger.committed_tpp,
        ledger.committed_accelerators,
        {
            **ledger.reservations,
            "old": reservation("ns/old", AT - timedelta(minutes=5)),
        },
    )
    now = AT + timedelta(seconds=10)
    new = reconcile(
        aged,
        live_tpp=H100,  # the pod "seen" and nothing else is live
        live_accelerators=Fraction(1),
        seen_uids={"seen"},
        still_pending=set(),
        at=now,
        ttl=timedelta(seconds=120),
    )
    assert set(new.reservations) == {"unseen"}
    assert new.committed_tpp == 2 * H100  # the live pod plus the unseen fresh reservation
    assert expired(aged, seen_uids={"seen"}, at=now, ttl=timedelta(seconds=120)) == [("old", "ns/old")]


def test_an_expired_reservation_whose_pod_exists_is_kept() -> None:
    old = Ledger(H100, Fraction(1), {"p": reservation()})
    new = reconcile(
        old,
        live_tpp=Fraction(0),
        live_accelerators=Fraction(0),
        seen_uids=set(),
        still_pending={"p"},
        at=AT + timedelta(hours=1),
        ttl=timedelta(seconds=120),
    )
    assert set(new.reservations) == {"p"}


@given(st.lists(st.integers(min_value=0, max_value=8), max_size=40), st.integers(min_value=0, max_value=40))
def test_no_order_of_requests_ever_commits_past_the_cap(chips: list[int], cap_chips: int) -> None:
    ledger, results = reserve(
        Ledger(),
        [request(f"p{i}", n) for i, n in enumerate(chips)],
        max_tpp=cap_chips * H100,
        max_accelerators=None,
        at=AT,
    )
    assert ledger.committed_tpp <= cap_chips * H100
    assert ledger.committed_tpp == sum(n * H100 for n, ok in zip(chips, results, strict=True) if ok)
