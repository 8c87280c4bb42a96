"""A storm of duplicate and out-of-order events, against a real worker: the same purchase
sent at once from many threads, a registration after the purchase, a refund before its
purchase, refunds beyond the order, concurrent refunds that together exceed it, repeats
of a full refund, duplicates by Idempotency-Key. Every answer is the contract's, every
event is credited once, and the ledger audits clean."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from affiliate.models import ConversionEvent, Customer
from payouts.models import Commission
from tests.faults.conftest import assert_processed_once
from tests.realservices import (
    CeleryWorker,
    RedisServer,
    celery_publishing_to,
    database_url_in_use,
    needs_postgres,
    needs_redis,
    needs_redis_server,
    run_at_once,
    wait_for,
)

pytestmark = [
    pytest.mark.postgres, pytest.mark.redis, needs_postgres, needs_redis, needs_redis_server,
    pytest.mark.xdist_group("faults"),
]  # fmt: skip

CUSTOMER = "storm-1"


def invalid(fields: dict) -> dict:
    return {"error": {"code": "invalid", "message": "The request is not valid; see fields.", "fields": fields}}


def test_a_storm_of_duplicate_and_out_of_order_events(transactional_db, merchant, anna, bob, anna_link):
    redis_server = RedisServer()
    redis_server.start()
    broker = redis_server.url()
    worker = CeleryWorker(
        database_url=database_url_in_use(), broker_url=broker,
        env={"EVENT_DRAINER_LEASE_SECONDS": "2", "EVENT_DRAINER_LINGER_SECONDS": "0.3"},
    )  # fmt: skip
    token = f"Bearer {merchant.test_api_key}"

    def client() -> APIClient:
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=token)
        return api

    api = client()

    def post(payload: dict, **headers):
        return client().post("/api/v1/events/", payload, format="json", headers=headers)

    try:
        with celery_publishing_to(broker):
            worker.start()
            worker.wait_until_ready()
            click_id = api.get("/r/annablog")["Location"].rsplit("aff_click=", 1)[1]

            # A refund before its purchase: 400, nothing written (not even the customer)
            r = post({"type": "refund", "customer_id": CUSTOMER, "order_id": "S-1", "amount": "10.00"})
            assert (r.status_code, r.json()) == (400, invalid({"order_id": ["No purchase with order_id 'S-1' is known."]}))
            assert (ConversionEvent.objects.count(), Customer.objects.count()) == (0, 0)

            # The same purchase eight times at once: one event, one 201 and seven 200s naming it
            purchase = {"type": "purchase", "customer_id": CUSTOMER, "click_id": click_id, "order_id": "S-1", "amount": "200.00"}
            answers = run_at_once([lambda: post(purchase) for _ in range(8)])
            assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.content for a in answers]
            s1 = ConversionEvent.objects.get(order_id="S-1")
            assert {(a.json()["id"], a.json()["stage"], a.json()["amount"]) for a in answers} == {(s1.pk, "first_purchase", "200.00")}

            # A registration after the purchase: recorded, the journey does not go back; a repeat is a 200
            r = post({"type": "registration", "customer_id": CUSTOMER})
            assert (r.status_code, r.json()["stage"]) == (201, "registration"), r.content
            registration = r.json()["id"]
            r = post({"type": "registration", "customer_id": CUSTOMER})
            assert (r.status_code, r.json()["id"]) == (200, registration)
            assert Customer.objects.get().stage == "first_purchase"

            # A second order, then a refund beyond it: 400, nothing written
            r = post({"type": "purchase", "customer_id": CUSTOMER, "order_id": "S-2", "amount": "80.00"})
            assert (r.status_code, r.json()["stage"]) == (201, "repeat_purchase"), r.content
            r = post({"type": "refund", "customer_id": CUSTOMER, "order_id": "S-2", "amount": "80.01"})
            assert (r.status_code, r.json()) == (400, invalid({"amount": ["Only 80.00 of the order is left to refund."]}))
            assert ConversionEvent.objects.filter(type="refund").count() == 0

            # A full refund of it, then repeats of that refund at once (amount omitted or the
            # same): all 200 with the first one's body; another amount: 409, nothing written
            r = post({"type": "refund", "customer_id": CUSTOMER, "order_id": "S-2"})
            assert (r.status_code, r.json()["stage"], r.json()["amount"]) == (201, "refund", "80.00"), r.content
            s2_refund = r.json()["id"]
            repeats = [{"type": "refund", "customer_id": CUSTOMER, "order_id": "S-2"}] * 2 + [
                {"type": "refund", "customer_id": CUSTOMER, "order_id": "S-2", "amount": "80.00"}
            ] * 2
            answers = run_at_once([lambda p=p: post(p) for p in repeats])
            assert [(a.status_code, a.json()["id"], a.json()["amount"]) for a in answers] == [(200, s2_refund, "80.00")] * 4
            r = post({"type": "refund", "customer_id": CUSTOMER, "order_id": "S-2", "amount": "10.00"})
            assert r.status_code == 409, r.content
            assert r.json()["error"]["code"] == "idempotency_conflict"
            assert ConversionEvent.objects.filter(type="refund").count() == 1

            # Duplicates by Idempotency-Key, at once: one event; the key with another body: 409
            keyed = {"type": "purchase", "customer_id": CUSTOMER, "order_id": "S-3", "amount": "50.00"}
            answers = run_at_once([lambda: post(keyed, **{"Idempotency-Key": "k-1"}) for _ in range(5)])
            assert sorted(a.status_code for a in answers) == [200] * 4 + [201], [a.content for a in answers]
            assert len({a.json()["id"] for a in answers}) == 1
            r = post({**keyed, "order_id": "S-4"}, **{"Idempotency-Key": "k-1"})
            assert (r.status_code, r.json()["error"]["code"]) == (409, "idempotency_conflict")
            assert not ConversionEvent.objects.filter(order_id="S-4").exists()

            # Partial refunds of the first order: 30.00, then four of 50.00 at once, of
            # which only three fit in the 170.00 left; the rest (20.00) by one without amount
            r = post({"type": "refund", "customer_id": CUSTOMER, "order_id": "S-1", "refund_id": "R-1", "amount": "30.00"})
            assert r.status_code == 201, r.content
            answers = run_at_once(
                [
                    lambda rid=rid: post({"type": "refund", "customer_id": CUSTOMER, "order_id": "S-1", "refund_id": rid, "amount": "50.00"})
                    for rid in ("R-a", "R-b", "R-c", "R-d")
                ]
            )
            assert sorted(a.status_code for a in answers) == [201, 201, 201, 400], [a.content for a in answers]
            refused = next(a for a in answers if a.status_code == 400)
            assert refused.json() == invalid({"amount": ["Only 20.00 of the order is left to refund."]})
            taken = list(
                ConversionEvent.objects.filter(refund_id__in=("R-a", "R-b", "R-c", "R-d")).order_by("id").values_list("refund_id", flat=True)
            )
            assert len(taken) == 3
            r = post({"type": "refund", "customer_id": CUSTOMER, "order_id": "S-1", "refund_id": "R-z"})
            assert (r.status_code, r.json()["amount"]) == (201, "20.00"), r.content
            r = post({"type": "refund", "customer_id": CUSTOMER, "order_id": "S-1", "refund_id": "R-y"})
            assert (r.status_code, r.json()) == (400, invalid({"amount": ["The order is already refunded in full."]}))

            drained = wait_for(lambda: not ConversionEvent.objects.filter(status="queued").exists(), timeout=60)
            assert drained, f"events left queued; worker log:\n{worker.log()}"

        # Ten events, each credited once. S-1 (first purchase, 200.00): Anna 10% = 20.00,
        # Bob 5% = 10.00; the registration: Anna's 3.00 bounty (her link's click); S-2 and
        # S-3 (repeat purchases): 5% each. Refunds reverse their order's commissions pro
        # rata: 30/200 and 50/200 of S-1's, the last one exactly what is left.
        assert_processed_once(10)
        expected = [
            ("S-1", "", "Anna", "direct", 2000),
            ("S-1", "", "Bob", "override", 1000),
            ("", "", "Anna", "bounty", 300),
            ("S-2", "", "Anna", "direct", 400),
            ("S-2", "", "Bob", "override", 400),
            ("S-2", "", "Anna", "reversal", -400),
            ("S-2", "", "Bob", "reversal", -400),
            ("S-3", "", "Anna", "direct", 250),
            ("S-3", "", "Bob", "override", 250),
            ("S-1", "R-1", "Anna", "reversal", -300),
            ("S-1", "R-1", "Bob", "reversal", -150),
        ]
        for rid in taken:
            expected += [("S-1", rid, "Anna", "reversal", -500), ("S-1", rid, "Bob", "reversal", -250)]
        expected += [("S-1", "R-z", "Anna", "reversal", -200), ("S-1", "R-z", "Bob", "reversal", -100)]
        assert list(
            Commission.objects.order_by("event_id", "id").values_list("event__order_id", "event__refund_id", "promoter__name", "kind", "amount_minor")
        ) == expected
        assert list(Customer.objects.values_list("external_id", "stage")) == [(CUSTOMER, "repeat_purchaser")]
    finally:
        worker.close()
        redis_server.close()
