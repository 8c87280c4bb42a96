"""Concurrent repeats make one event; concurrent purchases and refunds of one customer are
serialised (PostgreSQL, real transactions, ten threads released together by a barrier)."""

from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
from django.test import Client

from affiliate import journey
from affiliate.models import ConversionEvent, Customer
from tests.realservices import needs_postgres, run_at_once

pytestmark = [pytest.mark.postgres, needs_postgres, pytest.mark.django_db(transaction=True)]

N = 10


@pytest.fixture(autouse=True)
def wide_race_window(monkeypatch):
    """Hold every request a moment between reading the customer's state (its journey stage,
    what is left of an order) and writing the event, so that requests fired together are
    all inside that window at once: only the app's own locking keeps them apart."""
    advance = journey.advance

    def slow_advance(stage, action):
        time.sleep(0.05)
        return advance(stage, action)

    monkeypatch.setattr(journey, "advance", slow_advance)


def postback_url(merchant, **params) -> str:
    return f"/postback/{merchant.test_postback_token}?{urlencode(params)}"


def post_event(merchant, payload: dict, **headers):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")
    return client.post("/api/v1/events/", payload, content_type="application/json", headers=headers)


def test_ten_identical_postbacks_at_once_make_one_event(merchant, program):
    # Given a merchant with its default program
    url = postback_url(merchant, type="purchase", customer_id="cust-1", order_id="A-1", amount="120.00")

    # When the same postback is fired ten times at once
    responses = run_at_once([lambda: Client().get(url) for _ in range(N)])

    # Then one event is recorded; one answer is 201 and nine are 200, all naming it
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 9 + [201], [r.content for r in responses]
    bodies = [r.json() for r in responses]
    event = ConversionEvent.objects.get()
    assert {b["id"] for b in bodies} == {event.pk}
    assert {(b["type"], b["stage"], b["amount"], b["order_id"], b["customer_id"]) for b in bodies} == {
        ("purchase", "first_purchase", "120.00", "A-1", "cust-1")
    }
    assert (event.type, event.stage, event.amount_minor, event.order_id, event.source) == (
        "purchase", "first_purchase", 12000, "A-1", "postback",
    )  # fmt: skip
    assert event.program_id == program.pk
    assert list(Customer.objects.values_list("external_id", "stage")) == [("cust-1", "first_purchase")]


def test_one_order_with_ten_idempotency_keys_at_once_makes_one_event(merchant, program):
    # Given one purchase, sent ten times at once, each time under another Idempotency-Key
    payload = {"type": "purchase", "customer_id": "cust-2", "order_id": "B-7", "amount": "59.90"}

    responses = run_at_once(
        [lambda key=f"key-{i}": post_event(merchant, payload, **{"Idempotency-Key": key}) for i in range(N)]
    )

    # Then the order is recorded once and every answer names that one event
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 9 + [201], [r.content for r in responses]
    event = ConversionEvent.objects.get()
    assert {r.json()["id"] for r in responses} == {event.pk}
    assert (event.type, event.stage, event.amount_minor, event.order_id) == ("purchase", "first_purchase", 5990, "B-7")
    # The key kept is the one of the request that was recorded (the 201)
    created = next(r for r in responses if r.status_code == 201)
    assert event.idempotency_key == f"key-{responses.index(created)}"


def test_ten_purchases_at_once_by_a_new_customer_have_one_first_purchase(merchant, program):
    # Given a customer never seen before, buying ten different orders at once
    calls = [
        lambda i=i: post_event(
            merchant, {"type": "purchase", "customer_id": "cust-new", "order_id": f"C-{i}", "amount": "10.00"}
        )
        for i in range(N)
    ]

    responses = run_at_once(calls)

    # Then ten events are recorded: exactly one first purchase, nine repeat purchases
    assert [r.status_code for r in responses] == [201] * N, [r.content for r in responses]
    events = list(ConversionEvent.objects.order_by("id").values_list("order_id", "stage", "amount_minor"))
    assert sorted(order for order, _, _ in events) == sorted(f"C-{i}" for i in range(N))
    stages = [stage for _, stage, _ in events]
    assert sorted(stages) == ["first_purchase"] + ["repeat_purchase"] * 9
    # the first recorded is the first purchase: the journey is decided in commit order
    assert stages[0] == "first_purchase"
    assert {amount for _, _, amount in events} == {1000}
    assert sorted(r.json()["stage"] for r in responses) == ["first_purchase"] + ["repeat_purchase"] * 9
    assert list(Customer.objects.values_list("external_id", "stage")) == [("cust-new", "repeat_purchaser")]


def test_two_refunds_at_once_that_exceed_the_order_one_is_refused(merchant, program):
    # Given an order of 100.00
    r = post_event(merchant, {"type": "purchase", "customer_id": "cust-3", "order_id": "D-1", "amount": "100.00"})
    assert r.status_code == 201, r.content
    purchase_id = r.json()["id"]

    # When two refunds of 60.00 with different refund ids arrive at once
    calls = [
        lambda rid=rid: post_event(
            merchant,
            {"type": "refund", "customer_id": "cust-3", "order_id": "D-1", "amount": "60.00", "refund_id": rid},
        )
        for rid in ("R-1", "R-2")
    ]
    responses = run_at_once(calls)

    # Then exactly one is recorded and the other is a 400 that wrote nothing
    assert sorted(r.status_code for r in responses) == [201, 400], [r.content for r in responses]
    accepted = next(r for r in responses if r.status_code == 201).json()
    refused = next(r for r in responses if r.status_code == 400).json()
    assert (accepted["type"], accepted["stage"], accepted["amount"], accepted["order_id"]) == (
        "refund", "refund", "60.00", "D-1",
    )  # fmt: skip
    assert sorted(refused) == ["error"] and sorted(refused["error"]) == ["code", "fields", "message"]
    assert refused["error"]["code"] == "invalid"
    assert refused["error"]["fields"] == {"amount": ["Only 40.00 of the order is left to refund."]}
    refunds = list(ConversionEvent.objects.filter(type="refund").values_list("id", "refund_id", "amount_minor", "purchase_id"))
    assert refunds == [(accepted["id"], accepted["refund_id"], 6000, purchase_id)]
    assert ConversionEvent.objects.count() == 2
    assert list(Customer.objects.values_list("external_id", "stage")) == [("cust-3", "first_purchase")]
