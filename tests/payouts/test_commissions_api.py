"""GET /api/v1/commissions/ and GET /api/v1/promoters/{id}/balance/."""

from __future__ import annotations

import pytest

from payouts.models import Commission
from tests.payouts.world import World, at

pytestmark = pytest.mark.django_db


@pytest.fixture
def traffic(django_capture_on_commit_callbacks):
    # P (sponsor S) sells 100.00 and 50.00; 20.00 of the first order is refunded.
    # P: 10.00, 2.50 (repeat 5%), −2.00; S: 5.00, 2.50, −1.00.
    w = World(django_capture_on_commit_callbacks, hold_days=400, tier_rates=["0.05"])
    s = w.promoter("S")
    p = w.promoter("P", sponsor=s)
    click = w.journey((p, at(1)))
    first = w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(2))
    second = w.send(type="purchase", customer_id="c1", order_id="o2", amount="50.00", occurred_at=at(3))
    refund = w.send(type="refund", customer_id="c1", order_id="o1", amount="20.00", occurred_at=at(4))
    return w, p, s, first, second, refund


def amounts(response):
    return [(r["kind"], r["level"], r["amount"]) for r in response.json()["results"]]


def test_list_has_the_contract_rows_and_more(traffic):
    w, p, s, first, *_ = traffic
    response = w.api.get("/api/v1/commissions/")
    assert response.status_code == 200
    body = response.json()
    assert (body["count"], body["next"], body["previous"]) == (6, None, None)
    direct = Commission.objects.get(event_id=first["id"], kind="direct")
    assert body["results"][0] == {
        "id": direct.pk, "promoter": p.pk, "kind": "direct", "level": 0, "amount": "10.00", "status": "pending",
        "event": first["id"], "currency": "USD", "source_promoter": p.pk, "base": "100.00", "rate": "0.10",
        "reverses": None, "available_at": direct.available_at.isoformat(), "created_at": direct.created_at.isoformat(),
    }


def test_filters(traffic):
    w, p, s, first, second, refund = traffic
    assert amounts(w.api.get(f"/api/v1/commissions/?promoter={s.pk}")) == [("override", 1, "5.00"), ("override", 1, "2.50"), ("reversal", 1, "-1.00")]
    assert amounts(w.api.get(f"/api/v1/commissions/?event={refund['id']}")) == [("reversal", 0, "-2.00"), ("reversal", 1, "-1.00")]
    assert amounts(w.api.get("/api/v1/commissions/?kind=direct")) == [("direct", 0, "10.00"), ("direct", 0, "2.50")]
    assert w.api.get("/api/v1/commissions/?status=approved").json()["count"] == 0
    assert w.api.get("/api/v1/commissions/?status=pending").json()["count"] == 6
    bad = w.api.get("/api/v1/commissions/?status=lost")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid"


def test_pagination(traffic):
    w = traffic[0]
    page = w.api.get("/api/v1/commissions/?page_size=4").json()
    assert (page["count"], len(page["results"]), page["previous"]) == (6, 4, None)
    second = w.api.get("/api/v1/commissions/?page_size=4&page=2").json()
    assert len(second["results"]) == 2 and second["next"] is None
    assert w.api.get("/api/v1/commissions/?page=9").status_code == 404


def test_balance(traffic):
    w, p, s, *_ = traffic
    assert w.balance(p) == {"currency": "USD", "pending": "10.50", "available": "0.00", "paid": "0.00"}
    assert w.balance(s) == {"currency": "USD", "pending": "6.50", "available": "0.00", "paid": "0.00"}


def test_a_promoter_without_commissions_has_zero_balances(traffic):
    w = traffic[0]
    newcomer = w.promoter("N")
    assert w.balance(newcomer) == {"currency": "USD", "pending": "0.00", "available": "0.00", "paid": "0.00"}


def test_other_merchants_see_nothing(traffic, other_api):
    w, p, *_ = traffic
    commission = Commission.objects.first()
    assert other_api.get("/api/v1/commissions/").json()["count"] == 0
    assert other_api.get(f"/api/v1/commissions/{commission.pk}/").status_code == 404
    response = other_api.get(f"/api/v1/promoters/{p.pk}/balance/")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}
