"""The review page (flagged conversions cleared or rejected, once) and failed events.

The world's program pays 10% on a first purchase and 5% to the first upline. Pia (under Sam)
sells 500.00 to a customer whose id is her own email: self-referral, flagged, so her 50.00
and Sam's 25.00 are held."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from affiliate import events
from affiliate.models import ConversionEvent
from payouts.audit import audit_ledger
from payouts.models import Commission, WebhookDelivery, WebhookEndpoint
from tests.merchant.world import recent

pytestmark = pytest.mark.django_db


def flagged_sale(world):
    click = world.click(world.pia_blog, 2)
    body = world.w.send(
        type="purchase", customer_id=world.pia.email, order_id="self-1", amount="500.00", click_id=click.id.hex,
        occurred_at=recent(1),
    )
    assert ConversionEvent.objects.get(pk=body["id"]).is_fraud
    return body


def test_the_review_page_lists_what_is_held_and_clears_it_once(world):
    body = flagged_sale(world)
    page = world.client.get("/merchant/review/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f"#{body['id']}" in html and "self-referral: the customer is promoter" in html
    assert "75.00 USD" in html and "(2 rows)" in html
    overview = world.client.get("/merchant/").content.decode()
    assert "1 flagged conversion waiting for review" in overview

    response = world.client.post(f"/merchant/review/{body['id']}/", {"action": "clear"})
    assert response.status_code == 302
    assert sorted(Commission.objects.filter(event_id=body["id"]).values_list("amount_minor", "status")) == [
        (2500, "pending"), (5000, "pending"),
    ]
    assert LogEntry.objects.filter(object_id=str(body["id"]), change_message__startswith="Cleared in review").count() == 1
    # A second press (another tab): nothing changes, and the page says so.
    again = world.client.post(f"/merchant/review/{body['id']}/", {"action": "reject"}, follow=True)
    assert f"Conversion {body['id']} was already decided." in again.content.decode()
    assert Commission.objects.filter(event_id=body["id"]).count() == 2
    assert "Nothing is waiting for review." in world.client.get("/merchant/review/").content.decode()
    assert audit_ledger().clean


def test_rejecting_on_the_page_reverses_the_held_commissions(world):
    body = flagged_sale(world)
    assert world.client.post(f"/merchant/review/{body['id']}/", {"action": "reject"}).status_code == 302
    assert sorted(Commission.objects.filter(event_id=body["id"]).values_list("kind", "amount_minor", "status")) == [
        ("direct", 5000, "rejected"), ("override", 2500, "rejected"),
        ("reversal", -5000, "rejected"), ("reversal", -2500, "rejected"),
    ]
    assert audit_ledger().clean


def test_another_merchants_conversion_cannot_be_decided(world, other):
    from tests.merchant.world import staff_login
    from tests.portal.conftest import client_logged_in

    body = flagged_sale(world)
    theirs = client_logged_in(staff_login("them@other.example.net", other[0]))
    assert theirs.post(f"/merchant/review/{body['id']}/", {"action": "clear"}).status_code == 404
    assert world.client.post(f"/merchant/review/{body['id']}/", {"action": "approve"}).status_code == 302
    assert set(Commission.objects.filter(event_id=body["id"]).values_list("status", flat=True)) == {"held"}


def test_an_event_that_keeps_failing_is_failed_announced_and_processed_again(
    world, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.EVENT_MAX_ATTEMPTS = 3
    endpoint = WebhookEndpoint.objects.create(
        merchant=world.merchant, url="https://hooks.example.com/a", events=["event.failed"], secret="whsec_x"
    )
    calls = []

    def broken(batch):
        calls.append([e.pk for e in batch])
        raise RuntimeError("the ledger is unreachable")

    monkeypatch.setattr(events, "PROCESSORS", [broken, *events.PROCESSORS])
    click = world.click(world.olly_yt, 2)
    with django_capture_on_commit_callbacks(execute=True):
        response = world.w.api.post("/api/v1/events/", {
            "type": "purchase", "customer_id": "c9", "order_id": "f-1", "amount": "10.00", "click_id": click.id.hex,
            "occurred_at": recent(1).isoformat(),
        }, format="json")
    assert response.status_code == 201
    body = response.json()
    event = ConversionEvent.objects.get(pk=body["id"])
    assert (event.status, event.attempts, event.last_error) == ("queued", 1, "RuntimeError: the ledger is unreachable")
    with django_capture_on_commit_callbacks(execute=True):  # the announcement follows the commit
        for _ in range(2):
            assert events.process_inline(event.pk) is False
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("failed", 3)
    delivery = WebhookDelivery.objects.get(endpoint=endpoint)
    assert delivery.event_type == "event.failed"
    assert delivery.payload["data"] == {
        "event": event.pk, "type": "purchase", "customer_id": "c9", "order_id": "f-1", "attempts": 3,
        "last_error": "RuntimeError: the ledger is unreachable", "received_at": event.received_at.isoformat(),
    }
    # The sweep no longer sends it; the overview counts it.
    ConversionEvent.objects.filter(pk=event.pk).update(received_at=recent(1))
    assert events.requeue_stale_events(older_than_seconds=0) == 0
    assert len(calls) == 3
    assert "1 event could not be processed" in world.client.get("/merchant/").content.decode()

    # The cause is fixed; finance processes it again: processed once, with its commission.
    monkeypatch.setattr(events, "PROCESSORS", [p for p in events.PROCESSORS if p is not broken])
    with django_capture_on_commit_callbacks(execute=True):
        assert events.events_retry(event_ids=[event.pk]) == [event.pk]
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("processed", 1)
    assert list(Commission.objects.filter(event=event).values_list("amount_minor", "status")) == [(100, "pending")]
    assert events.events_retry(event_ids=[event.pk]) == []
    assert audit_ledger().clean
