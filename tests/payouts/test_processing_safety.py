"""Processing is safe to repeat, to crash half-way, and to run concurrently."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings
from django.db import connection

from affiliate.events import event_process
from affiliate.models import ConversionEvent
from attribution.models import Credit, Touchpoint
from payouts import ledger
from payouts.audit import audit_ledger
from payouts.models import Account, Basis, Commission, Entry, Journal
from tests.conftest import client_for
from tests.payouts.world import World, at


def ledger_picture():
    """Everything the processing writes, without ids: to compare two runs."""
    return (
        sorted(Commission.objects.values_list("promoter__name", "kind", "level", "amount_minor", "status"), key=repr),
        sorted(Entry.objects.values_list("account__promoter__name", "account__kind", "amount_minor"), key=repr),
        sorted(Account.objects.values_list("promoter__name", "kind", "balance_minor"), key=repr),
        sorted(Credit.objects.values_list("promoter__name", "revenue_minor"), key=repr),
        Touchpoint.objects.count(),
        Journal.objects.count(),
    )


def scenario(w: World, *, process: bool):
    s1 = w.promoter("S1")
    p = w.promoter("P", sponsor=s1)
    q = w.promoter("Q", sponsor=s1)
    click = w.journey((p, at(1)), (q, at(2)))
    payload = {"type": "purchase", "customer_id": "c1", "order_id": "o1", "amount": "250.00", "click_id": click, "occurred_at": at(3).isoformat()}
    if process:
        return w.send(**payload)["id"]
    return w.api.post("/api/v1/events/", payload, format="json").json()["id"]  # queued, not processed


@pytest.mark.django_db
def test_running_the_task_twice_changes_nothing(django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, hold_days=400)
    event_id = scenario(w, process=True)
    once = ledger_picture()
    event_process(event_id=event_id)
    event_process(event_id=event_id)
    assert ledger_picture() == once
    assert ConversionEvent.objects.get(pk=event_id).attempts == 1
    assert audit_ledger().clean


@pytest.mark.django_db
def test_dying_half_way_then_running_again_gives_the_clean_result(django_capture_on_commit_callbacks, monkeypatch):
    clean = World(django_capture_on_commit_callbacks, hold_days=400)
    scenario(clean, process=True)
    reference = ledger_picture()
    Entry.objects.all().delete()
    Journal.objects.all().delete()
    Account.objects.all().delete()
    Commission.objects.all().delete()
    Credit.objects.all().delete()
    Touchpoint.objects.all().delete()
    Basis.objects.all().delete()

    w = World(django_capture_on_commit_callbacks, hold_days=400)
    event_id = scenario(w, process=False)
    real_post = ledger.post

    def crash_after_entries(postings):
        real_post(postings)  # journals, entries and balances are written...
        raise RuntimeError("worker killed")  # ...then the worker dies before the commit

    monkeypatch.setattr(ledger, "post", crash_after_entries)
    with pytest.raises(RuntimeError, match="worker killed"):
        event_process(event_id=event_id)
    assert ConversionEvent.objects.get(pk=event_id).status == "queued"
    assert (Commission.objects.count(), Entry.objects.count(), Credit.objects.count(), Touchpoint.objects.count()) == (0, 0, 0, 0)

    monkeypatch.setattr(ledger, "post", real_post)
    event_process(event_id=event_id)
    assert ledger_picture() == reference
    assert audit_ledger().clean


needs_postgres = pytest.mark.skipif(not settings.IS_POSTGRES, reason="concurrent writers need PostgreSQL")


@needs_postgres
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_purchases_through_one_promoter_lose_no_update(django_capture_on_commit_callbacks):
    # 12 customers buy 10.00 each at once, all through P (sponsor S1), each on its own
    # thread with processing inline: P earns 12 × 1.00, S1 12 × 0.50, nothing lost.
    w = World(django_capture_on_commit_callbacks, hold_days=400)
    s1 = w.promoter("S1")
    p = w.promoter("P", sponsor=s1)
    clicks = [w.journey((p, at(1))) for _ in range(12)]
    barrier = threading.Barrier(len(clicks))
    statuses = []

    def buy(index: int, click: str):
        try:
            api = client_for(w.merchant)
            barrier.wait()
            response = api.post(
                "/api/v1/events/",
                {"type": "purchase", "customer_id": f"c{index}", "order_id": f"o{index}", "amount": "10.00", "click_id": click, "occurred_at": at(2).isoformat()},
                format="json",
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=buy, args=(i, c)) for i, c in enumerate(clicks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 12
    assert ConversionEvent.objects.filter(status="processed").count() == 12
    assert w.balance(p) == {"currency": "USD", "pending": "12.00", "available": "0.00", "paid": "0.00"}
    assert w.balance(s1) == {"currency": "USD", "pending": "6.00", "available": "0.00", "paid": "0.00"}
    assert audit_ledger().clean


@needs_postgres
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_events_of_one_customer_are_ordered(django_capture_on_commit_callbacks):
    # One customer, eight orders at once: exactly one first purchase (10%), seven repeats (5%).
    w = World(django_capture_on_commit_callbacks, hold_days=400, tier_rates=[])
    p = w.promoter("P")
    click = w.journey((p, at(1)))
    barrier = threading.Barrier(8)

    def buy(index: int):
        try:
            api = client_for(w.merchant)
            barrier.wait()
            api.post(
                "/api/v1/events/",
                {"type": "purchase", "customer_id": "c1", "order_id": f"o{index}", "amount": "20.00", "click_id": click, "occurred_at": at(2).isoformat()},
                format="json",
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=buy, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    directs = sorted(Commission.objects.filter(kind="direct").values_list("amount_minor", flat=True))
    assert directs == [100] * 7 + [200]
    assert w.balance(p)["pending"] == "9.00"  # 2.00 + 7 × 1.00
    assert audit_ledger().clean


@pytest.mark.django_db
def test_a_refund_processed_before_its_order_processes_the_order_first(django_capture_on_commit_callbacks):
    # The queue delivers the refund first: the order is computed first all the same.
    # 100.00 at 10% → 10.00; refund 40.00 → −4.00.
    w = World(django_capture_on_commit_callbacks, hold_days=400, tier_rates=[])
    p = w.promoter("P")
    click = w.journey((p, at(1)))
    base = {"customer_id": "c1", "order_id": "o1"}
    purchase = w.api.post("/api/v1/events/", {**base, "type": "purchase", "amount": "100.00", "click_id": click, "occurred_at": at(2).isoformat()}, format="json").json()
    refund = w.api.post("/api/v1/events/", {**base, "type": "refund", "amount": "40.00", "occurred_at": at(3).isoformat()}, format="json").json()
    assert (purchase["status"], refund["status"]) == ("queued", "queued")
    event_process(event_id=refund["id"])
    assert ConversionEvent.objects.get(pk=purchase["id"]).status == "processed"
    assert sorted(Commission.objects.values_list("kind", "amount_minor")) == [("direct", 1000), ("reversal", -400)]
    assert w.balance(p)["pending"] == "6.00"
    assert audit_ledger().clean


@pytest.mark.django_db
def test_refunds_processed_out_of_order_reverse_as_if_in_order(django_capture_on_commit_callbacks):
    # Order 80.00 → P 8.00. R1 30.00 (−3.00), then R2 the rest 50.00 (−5.00); the queue
    # delivers R2 first: R1 is computed first all the same, and R2 takes exactly the rest.
    w = World(django_capture_on_commit_callbacks, hold_days=400, tier_rates=[])
    p = w.promoter("P")
    click = w.journey((p, at(1)))
    base = {"customer_id": "c1", "order_id": "o1"}
    w.send(**base, type="purchase", amount="80.00", click_id=click, occurred_at=at(2))
    r1 = w.api.post("/api/v1/events/", {**base, "type": "refund", "refund_id": "R1", "amount": "30.00", "occurred_at": at(3).isoformat()}, format="json").json()
    r2 = w.api.post("/api/v1/events/", {**base, "type": "refund", "refund_id": "R2", "occurred_at": at(4).isoformat()}, format="json").json()
    event_process(event_id=r2["id"])
    assert dict(Commission.objects.filter(kind="reversal").values_list("event_id", "amount_minor")) == {r1["id"]: -300, r2["id"]: -500}
    assert audit_ledger().clean
