"""PostgreSQL unreachable: the API answers 503 with Retry-After and the contract's error
body, whether the database is gone before the request or vanishes in the middle of its
transaction; nothing is half-written, and once it is back the same request succeeds once.

The test process reaches PostgreSQL through a TCP proxy of its own, which it cuts."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from affiliate import journey
from affiliate.models import ConversionEvent, Customer
from payouts.models import Commission
from tests.faults.conftest import assert_processed_once
from tests.realservices import TcpProxy, database_through, needs_postgres

pytestmark = [pytest.mark.postgres, needs_postgres, pytest.mark.django_db(transaction=True)]

PURCHASE = {"type": "purchase", "customer_id": "pg-1", "order_id": "P-1", "amount": "80.00", "coupon": "ANNA10"}


def assert_unavailable(response) -> None:
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "5"
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {"code": "service_unavailable", "message": "A backing service is unavailable; retry shortly.", "fields": {}}
    }


def nothing_written() -> None:
    assert ConversionEvent.objects.count() == 0
    assert Customer.objects.count() == 0
    assert Commission.objects.count() == 0


@pytest.fixture
def proxy(db):
    from django.db import connection

    conf = connection.settings_dict
    proxy = TcpProxy(conf["HOST"] or "127.0.0.1", int(conf["PORT"] or 5432))
    proxy.start()
    with database_through("127.0.0.1", proxy.port):
        yield proxy
    proxy.close()


def test_database_down_answers_503_writes_nothing_and_the_retry_succeeds_once(merchant, anna, bob, proxy, monkeypatch):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")

    # Given PostgreSQL unreachable before the request arrives
    proxy.cut()
    # When an event is posted, or one is read, the answer is a 503 to retry
    assert_unavailable(api.post("/api/v1/events/", PURCHASE, format="json"))
    assert_unavailable(api.get("/api/v1/events/1/"))
    proxy.restore()
    nothing_written()

    # Given PostgreSQL vanishes in the middle of the request's transaction: after the
    # customer row is written and locked, before the event is
    advance = journey.advance
    cuts = []

    def advance_then_cut(stage, action):
        if not cuts:
            cuts.append(stage)
            assert Customer.objects.filter(external_id="pg-1").count() == 1  # written, not committed
            proxy.cut()
        return advance(stage, action)

    monkeypatch.setattr(journey, "advance", advance_then_cut)
    # Then the answer is a 503 to retry, and the customer written so far is gone with the transaction
    assert_unavailable(api.post("/api/v1/events/", PURCHASE, format="json"))
    assert cuts == ["visitor"]
    proxy.restore()
    nothing_written()

    # When it is back, the same request succeeds, once
    first = api.post("/api/v1/events/", PURCHASE, format="json")
    assert first.status_code == 201, first.content
    again = api.post("/api/v1/events/", PURCHASE, format="json")
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    body = first.json()
    assert (body["type"], body["stage"], body["amount"], body["status"]) == ("purchase", "first_purchase", "80.00", "processed")
    assert list(ConversionEvent.objects.values_list("pk", "order_id", "amount_minor")) == [(body["id"], "P-1", 8000)]
    assert list(Customer.objects.values_list("external_id", "stage")) == [("pg-1", "first_purchase")]
    # Credited inline (no broker here), once: Anna 10% by her coupon, Bob 5% as her sponsor
    assert list(
        Commission.objects.order_by("id").values_list("promoter__name", "kind", "level", "amount_minor")
    ) == [("Anna", "direct", 0, 800), ("Bob", "override", 1, 400)]
    assert_processed_once(1)
