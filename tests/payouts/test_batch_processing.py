"""Events credited in batches (one transaction, bulk reads and writes) get exactly what
they get one at a time; the drainers that take batches off the event table."""

from __future__ import annotations

import logging

import pytest
from django.core.cache import cache

from affiliate import events, tasks
from affiliate.events import event_process, events_drain, events_process, events_process_next
from affiliate.models import ConversionEvent
from attribution.models import Credit, Touchpoint
from payouts.audit import audit_ledger
from payouts.models import Account, Basis, Commission, Entry, Journal
from tests.payouts.test_processing_safety import ledger_picture
from tests.payouts.world import World, at

pytestmark = pytest.mark.django_db

TERMS = {
    "attribution_model": "linear",
    "first_purchase_rate": "0.10",
    "repeat_purchase_rate": "0.05",
    "tier_rates": ["0.05", "0.03"],
    "registration_bounty": "2.00",
    "hold_days": 400,
}


def queue_six_events(w: World) -> tuple[list[int], dict]:
    """S1 sponsors P and Q; S2 sponsors R, who is paid at once (immediate plan).

    E1  c1 clicked P (day 1) and Q (day 2), buys o1 for 200.00 (day 3): linear, 100.00 each:
        P 10.00 and Q 10.00 direct (first purchase, 10%); S1 5.00 + 5.00 (level 1, 5%).
    E2  c2 clicked R (day 1), registers (day 2): R's bounty 2.00 (approved at once).
    E3  c2 buys o2 for 80.00 (day 4): R 8.00 (approved at once); S2 4.00.
    E4  c1 buys o3 for 50.00 (day 5), repeat: P 1.25, Q 1.25 (5% of 25.00); S1 1.25 + 1.25.
    E5  o1 refunded 50.00 (day 6), a quarter: P -2.50, Q -2.50, S1 -1.25, -1.25.
    E6  c3 buys o4 for 30.00 (day 7) without a click: nothing.
    All are left queued (their on-commit callbacks never run here)."""
    s1, s2 = w.promoter("S1"), w.promoter("S2")
    p, q = w.promoter("P", sponsor=s1), w.promoter("Q", sponsor=s1)
    r = w.promoter("R", sponsor=s2, payout_plan="immediate")
    c1 = w.journey((p, at(1)), (q, at(2)))
    c2 = w.journey((r, at(1)))
    sent = [
        {"type": "purchase", "customer_id": "c1", "order_id": "o1", "amount": "200.00", "click_id": c1, "occurred_at": at(3)},
        {"type": "registration", "customer_id": "c2", "click_id": c2, "occurred_at": at(2)},
        {"type": "purchase", "customer_id": "c2", "order_id": "o2", "amount": "80.00", "occurred_at": at(4)},
        {"type": "purchase", "customer_id": "c1", "order_id": "o3", "amount": "50.00", "occurred_at": at(5)},
        {"type": "refund", "customer_id": "c1", "order_id": "o1", "amount": "50.00", "occurred_at": at(6)},
        {"type": "purchase", "customer_id": "c3", "order_id": "o4", "amount": "30.00", "occurred_at": at(7)},
    ]
    ids = []
    for payload in sent:
        payload["occurred_at"] = payload["occurred_at"].isoformat()
        response = w.api.post("/api/v1/events/", payload, format="json")
        assert response.status_code == 201, response.content
        assert response.json()["status"] == "queued"
        ids.append(response.json()["id"])
    return ids, {"S1": s1, "S2": s2, "P": p, "Q": q, "R": r}


def undo_processing():
    Entry.objects.all().delete()
    Journal.objects.all().delete()
    Commission.objects.exclude(reverses=None).delete()  # reversals first: they protect their commissions
    for model in (Account, Commission, Credit, Touchpoint, Basis):
        model.objects.all().delete()
    ConversionEvent.objects.update(status="queued", processed_at=None, attempts=0)


def bodies(w: World, ids: list[int], who: dict) -> list:
    names = {p.pk: name for name, p in who.items()}
    out = []
    for event_id in ids:
        body = w.api.get(f"/api/v1/events/{event_id}/").json()
        out.append((
            body["status"],
            [(names[a["promoter"]], a["weight"], a["revenue"]) for a in body["attribution"]],
            [(names[c["promoter"]], c["kind"], c["level"], c["amount"], c["status"]) for c in body["commissions"]],
        ))
    return out


def balances(w: World, who: dict) -> dict:
    return {name: (b["pending"], b["available"]) for name, p in who.items() for b in [w.balance(p)]}


def test_a_batch_writes_exactly_what_one_event_at_a_time_writes(django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, **TERMS)
    ids, who = queue_six_events(w)

    # Given the six events processed one at a time, in the order received
    for event_id in ids:
        event_process(event_id=event_id)
    one_by_one = (ledger_picture(), bodies(w, ids, who), balances(w, who))
    assert one_by_one[1] == [
        ("processed", [("P", "0.50", "100.00"), ("Q", "0.50", "100.00")],
         [("P", "direct", 0, "10.00", "pending"), ("S1", "override", 1, "5.00", "pending"),
          ("Q", "direct", 0, "10.00", "pending"), ("S1", "override", 1, "5.00", "pending")]),
        ("processed", [("R", "1.00", "0.00")], [("R", "bounty", 0, "2.00", "approved")]),
        ("processed", [("R", "1.00", "80.00")], [("R", "direct", 0, "8.00", "approved"), ("S2", "override", 1, "4.00", "pending")]),
        ("processed", [("P", "0.50", "25.00"), ("Q", "0.50", "25.00")],
         [("P", "direct", 0, "1.25", "pending"), ("S1", "override", 1, "1.25", "pending"),
          ("Q", "direct", 0, "1.25", "pending"), ("S1", "override", 1, "1.25", "pending")]),
        ("processed", [("P", "0.50", "-25.00"), ("Q", "0.50", "-25.00")],
         [("P", "reversal", 0, "-2.50", "pending"), ("S1", "reversal", 1, "-1.25", "pending"),
          ("Q", "reversal", 0, "-2.50", "pending"), ("S1", "reversal", 1, "-1.25", "pending")]),
        ("processed", [], []),
    ]  # fmt: skip
    assert one_by_one[2] == {
        "S1": ("10.00", "0.00"), "S2": ("4.00", "0.00"), "P": ("8.75", "0.00"), "Q": ("8.75", "0.00"), "R": ("0.00", "10.00"),
    }  # fmt: skip

    # When the same six are processed again from scratch, all in one batch, the refund
    # listed before its order
    undo_processing()
    found = events_process(event_ids=[ids[4], *ids[:4], ids[5]])

    # Then every row, body and balance is the same, each event processed once
    assert sorted(found) == sorted(ids)
    assert (ledger_picture(), bodies(w, ids, who), balances(w, who)) == one_by_one
    assert list(ConversionEvent.objects.order_by("id").values_list("status", "attempts")) == [("processed", 1)] * 6
    assert audit_ledger().clean


def test_a_batch_whose_refund_comes_without_its_order_processes_the_order_first(django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, **TERMS)
    ids, who = queue_six_events(w)
    for event_id in ids:
        event_process(event_id=event_id)
    reference = (ledger_picture(), bodies(w, ids, who))
    undo_processing()

    # The refund (E5) and E2 in one batch: E5's order E1 goes first, in the same transaction
    events_process(event_ids=[ids[4], ids[1]])
    assert list(ConversionEvent.objects.order_by("id").values_list("status", flat=True)) == [
        "processed", "processed", "queued", "queued", "processed", "queued",
    ]  # fmt: skip
    events_process(event_ids=[ids[2], ids[3], ids[5]])
    # Commission ids differ, the figures do not (E5's reversals were computed before E4
    # existed as commissions: the refund takes a quarter of E1's only, as it must)
    assert (ledger_picture(), bodies(w, ids, who)) == reference
    assert audit_ledger().clean


def test_claiming_takes_queued_events_oldest_first_and_skips_the_excluded(django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, **TERMS)
    ids, _ = queue_six_events(w)
    event_process(event_id=ids[1])

    assert events_process_next(limit=2, exclude={ids[0]}) == [ids[2], ids[3]]
    assert events_process_next(limit=10) == [ids[0], ids[4], ids[5]]
    assert events_process_next(limit=10) == []
    assert list(ConversionEvent.objects.order_by("id").values_list("status", "attempts")) == [("processed", 1)] * 6
    assert audit_ledger().clean


class Sent:
    """Stands in for a Celery task's ``delay``: records the calls."""

    def __init__(self, fail: bool = False):
        self.calls: list[tuple] = []
        self.fail = fail

    def delay(self, *args):
        if self.fail:
            raise ConnectionError("broker down")
        self.calls.append(args)


@pytest.fixture
def with_workers(settings, monkeypatch):
    """Tasks not inline (as with a broker); drainers that do not linger; tasks recorded."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.EVENT_DRAINER_LINGER_SECONDS = 0
    settings.EVENT_DRAINER_POLL_SECONDS = 0
    sent = Sent()
    monkeypatch.setattr(tasks.drain_events, "delay", sent.delay)  # as found by its name
    cache.clear()
    return sent


def test_committed_events_start_one_drainer(django_capture_on_commit_callbacks, with_workers):
    w = World(django_capture_on_commit_callbacks, **TERMS)
    p = w.promoter("P")
    click = w.journey((p, at(1)))

    # Three purchases committed one after the other start one drainer, in slot 0
    for n in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            r = w.api.post(
                "/api/v1/events/",
                {"type": "purchase", "customer_id": "c1", "order_id": f"o{n}", "amount": "10.00", "click_id": click,
                 "occurred_at": at(2 + n).isoformat()},
                format="json",
            )
        assert (r.status_code, r.json()["status"]) == (201, "queued")
    assert with_workers.calls == [(0,)]
    assert cache.get("events:drainer:0") is not None

    # The drainer credits all three in one batch, then gives its lease back
    assert events_drain(slot=0) == 3
    assert cache.get("events:drainer:0") is None
    assert list(ConversionEvent.objects.order_by("id").values_list("stage", "status")) == [
        ("first_purchase", "processed"), ("repeat_purchase", "processed"), ("repeat_purchase", "processed"),
    ]  # fmt: skip
    assert list(Commission.objects.order_by("id").values_list("amount_minor", flat=True)) == [100, 50, 50]
    assert audit_ledger().clean


def test_a_broker_that_is_down_leaves_the_lease_free(django_capture_on_commit_callbacks, with_workers, monkeypatch, caplog):
    monkeypatch.setattr(tasks.drain_events, "delay", Sent(fail=True).delay)
    w = World(django_capture_on_commit_callbacks, **TERMS)
    with caplog.at_level(logging.WARNING, logger="affiliate.events"), django_capture_on_commit_callbacks(execute=True):
        r = w.api.post("/api/v1/events/", {"type": "registration", "customer_id": "c1"}, format="json")
    assert (r.status_code, r.json()["status"]) == (201, "queued")
    assert cache.get("events:drainer:0") is None
    assert "could not start a drainer" in caplog.text
    assert ConversionEvent.objects.get().status == "queued"


def test_a_backlog_starts_the_next_drainer_and_a_bad_event_holds_up_no_other(
    django_capture_on_commit_callbacks, with_workers, settings, monkeypatch
):
    settings.EVENT_BATCH_SIZE = 2
    settings.EVENT_DRAINERS = 2
    w = World(django_capture_on_commit_callbacks, **TERMS)
    ids, who = queue_six_events(w)
    bad = ids[3]  # E4

    def refuse(batch):
        if any(e.pk == bad for e in batch):
            raise RuntimeError("a bad event")

    monkeypatch.setattr(events, "PROCESSORS", [refuse, *events.PROCESSORS])
    assert cache.add("events:drainer:0", "held")

    # The drainer of slot 0 drains all but the bad event, and rings slot 1 on a full batch
    assert events_drain(slot=0) == 5
    assert with_workers.calls == [(1,)]
    assert cache.get("events:drainer:0") is None
    assert [(e.pk == bad, e.status) for e in ConversionEvent.objects.order_by("id")] == [
        (False, "processed"), (False, "processed"), (False, "processed"), (True, "queued"), (False, "processed"), (False, "processed"),
    ]  # fmt: skip
    # E4 wrote nothing: P and Q have E1's commissions less the refund's quarter only
    assert Commission.objects.filter(event_id=bad).count() == 0
    assert (w.balance(who["P"])["pending"], w.balance(who["S1"])["pending"]) == ("7.50", "7.50")
    assert audit_ledger().clean


def test_a_drainer_whose_cache_goes_away_stops_cleanly(django_capture_on_commit_callbacks, with_workers, monkeypatch, caplog):
    w = World(django_capture_on_commit_callbacks, **TERMS)
    ids, _ = queue_six_events(w)

    def gone(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(cache, "touch", gone)
    # The lease cannot be renewed: the drainer stops before claiming anything, without an
    # error, and the events wait queued for the next drainer or the sweep
    with caplog.at_level(logging.WARNING, logger="affiliate.events"):
        assert events_drain(slot=0) == 0
    assert "the drainer lease could not be renewed" in caplog.text
    assert list(ConversionEvent.objects.order_by("id").values_list("status", flat=True)) == ["queued"] * 6
    assert Commission.objects.count() == 0
