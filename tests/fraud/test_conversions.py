"""Conversion fraud rules, decided when events are credited, and finance clearing a flag.

Amounts by hand: a first purchase at 10% of 100.00 is a 10.00 direct commission; a sponsor's
level-1 override at 5% is 5.00."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from affiliate import events, fraud, services
from affiliate.models import Click, ConversionEvent
from attribution.models import Credit, Touchpoint
from payouts.audit import audit_ledger
from payouts.models import Commission
from tests.payouts.world import World, at, rows

pytestmark = pytest.mark.django_db

HOLD = {"hold_days": 400}
SHARED_IP = "203.0.113.50"


@pytest.fixture
def world(django_capture_on_commit_callbacks, settings):
    settings.FRAUD_MIN_CLICK_TO_CONVERSION_SECONDS = 0
    settings.FRAUD_IP_MAX_PROMOTERS = 0
    settings.FRAUD_SELF_REFERRAL_EMAIL = True

    def make(**terms):
        return World(django_capture_on_commit_callbacks, **{**HOLD, **terms})

    return make


def click(w, promoter, when, *, ip="", visitor=None) -> str:
    if promoter.pk not in w.links:
        w.links[promoter.pk] = services.link_create(merchant=w.merchant, promoter=promoter, destination_url="https://shop.example.com/")
    made = services.click_record(target=services.link_target(w.links[promoter.pk].code), visitor_id=visitor or uuid.uuid4(), ip=ip, at=when)
    return made.id.hex


def flag_of(body) -> tuple:
    event = ConversionEvent.objects.get(pk=body["id"])
    return event.status, event.is_fraud, event.flag_reason


def nothing_written_for(body) -> bool:
    return not (
        Commission.objects.filter(event_id=body["id"]).exists()
        or Credit.objects.filter(event_id=body["id"]).exists()
        or Touchpoint.objects.filter(event_id=body["id"]).exists()
    )


def test_self_referral_by_email_earns_nothing(world):
    w = world(tier_rates=[])
    a = w.promoter("A")  # a-1@example.com
    own = w.send(type="purchase", customer_id="A-1@Example.COM", order_id="o1", amount="100.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    assert (own["attribution"], own["commissions"]) == ([], [])
    assert flag_of(own) == ("processed", True, f"self-referral: the customer is promoter {a.pk} (a-1@example.com)")
    assert nothing_written_for(own)
    # The email in the payload counts too; another customer earns A the 10.00.
    by_payload = w.send(
        type="purchase", customer_id="cust-9", email="a-1@example.com", order_id="o2", amount="100.00",
        click_id=w.journey((a, at(1))), occurred_at=at(2),
    )
    assert flag_of(by_payload) == ("processed", True, f"self-referral: the customer is promoter {a.pk} (a-1@example.com)")
    fair = w.send(type="purchase", customer_id="cust-10", order_id="o3", amount="100.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    assert flag_of(fair) == ("processed", False, "")
    assert rows(fair, {a.pk: "A"})[1] == [("A", "direct", 0, "10.00", "pending")]
    assert Commission.objects.count() == 1
    assert audit_ledger().clean


def test_a_conversion_too_soon_after_its_click_earns_nothing(world, settings):
    settings.FRAUD_MIN_CLICK_TO_CONVERSION_SECONDS = 30
    w = world(tier_rates=[])
    a = w.promoter("A")
    fast = w.send(
        type="purchase", customer_id="c1", order_id="o1", amount="100.00",
        click_id=w.journey((a, at(1))), occurred_at=at(1) + timedelta(seconds=10),
    )
    assert flag_of(fast) == ("processed", True, "click to conversion in 10.0s, under 30s")
    assert nothing_written_for(fast)
    # Exactly 30 s is plausible.
    slow = w.send(
        type="purchase", customer_id="c2", order_id="o2", amount="100.00",
        click_id=w.journey((a, at(1))), occurred_at=at(1) + timedelta(seconds=30),
    )
    assert flag_of(slow) == ("processed", False, "")
    assert rows(slow, {a.pk: "A"})[1] == [("A", "direct", 0, "10.00", "pending")]


def ip_world(world, settings):
    settings.FRAUD_IP_MAX_PROMOTERS = 2
    settings.FRAUD_IP_WINDOW_SECONDS = 86400
    w = world(tier_rates=[])
    return w, [w.promoter(name) for name in "ABCD"]


IP_REASON = "one IP behind the conversions of 3 promoters within 86400s (more than 2)"


def test_one_ip_behind_many_promoters_conversions(world, settings):
    # One IP converts for A, B and C (3 promoters: more than 2 only from the next one on):
    # 10.00 each. Its conversion for D is flagged; so is a second one for A. The same
    # customer journey from another IP, for D, earns.
    w, (a, b, c, d) = ip_world(world, settings)
    bodies = [
        w.send(type="purchase", customer_id=f"c{n}", order_id=f"o{n}", amount="100.00",
               click_id=click(w, p, at(1, hours=n), ip=SHARED_IP), occurred_at=at(1, hours=n, ) + timedelta(minutes=5))
        for n, p in enumerate((a, b, c, d, a))
    ]
    assert [flag_of(body) for body in bodies] == [("processed", False, "")] * 3 + [("processed", True, IP_REASON)] * 2
    assert sorted(Commission.objects.values_list("promoter_id", "amount_minor")) == sorted([(a.pk, 1000), (b.pk, 1000), (c.pk, 1000)])
    other = w.send(type="purchase", customer_id="c9", order_id="o9", amount="100.00",
                   click_id=click(w, d, at(1, hours=9), ip="198.51.100.1"), occurred_at=at(1, hours=9, ) + timedelta(minutes=5))
    assert flag_of(other) == ("processed", False, "")
    assert audit_ledger().clean


def test_the_ip_rule_in_one_batch_is_the_same_as_one_at_a_time(world, settings):
    # The same five conversions received first and credited together by a drainer's batch.
    w, (a, b, c, d) = ip_world(world, settings)
    ids = []
    for n, p in enumerate((a, b, c, d, a)):
        response = w.api.post("/api/v1/events/", {
            "type": "purchase", "customer_id": f"c{n}", "order_id": f"o{n}", "amount": "100.00",
            "click_id": click(w, p, at(1, hours=n), ip=SHARED_IP),
            "occurred_at": (at(1, hours=n) + timedelta(minutes=5)).isoformat(),
        }, format="json")  # no on-commit run: the events stay queued
        ids.append(response.json()["id"])
    assert set(ConversionEvent.objects.values_list("status", flat=True)) == {"queued"}
    events.events_process(event_ids=ids)
    got = list(ConversionEvent.objects.order_by("pk").values_list("status", "is_fraud", "flag_reason"))
    assert got == [("processed", False, "")] * 3 + [("processed", True, IP_REASON)] * 2
    assert sorted(Commission.objects.values_list("promoter_id", "amount_minor")) == sorted([(a.pk, 1000), (b.pk, 1000), (c.pk, 1000)])


def test_clearing_a_flag_pays_it_once_through_the_ledger_with_its_refunds(world):
    # A (sponsored by S) refers themself: flagged, nothing written. A refund of 40.00 comes
    # while it is flagged: nothing to reverse. Finance clears it: A direct 10.00, S override
    # 5.00, then the refund replayed: -4.00 and -2.00. Pending: A 6.00, S 3.00.
    w = world(tier_rates=["0.05"])
    s = w.promoter("S")
    a = w.promoter("A", sponsor=s)  # a-2@example.com
    body = w.send(type="purchase", customer_id="a-2@example.com", order_id="o1", amount="100.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    assert flag_of(body)[1:] == (True, f"self-referral: the customer is promoter {a.pk} (a-2@example.com)")
    w.send(type="refund", customer_id="a-2@example.com", order_id="o1", amount="40.00", occurred_at=at(3))
    assert Commission.objects.count() == 0
    assert audit_ledger().clean

    assert fraud.conversion_clear(event_id=body["id"], by="finance-jo") is True
    event = ConversionEvent.objects.get(pk=body["id"])
    assert (event.is_fraud, event.cleared_by, event.cleared_at is not None) == (False, "finance-jo", True)
    assert event.flag_reason.startswith("self-referral")  # why it was flagged stays on record
    paid = w.api.get(f"/api/v1/events/{body['id']}/").json()
    assert rows(paid, {a.pk: "A", s.pk: "S"})[1] == [("A", "direct", 0, "10.00", "pending"), ("S", "override", 1, "5.00", "pending")]
    assert sorted(Commission.objects.values_list("promoter_id", "kind", "amount_minor")) == sorted([
        (a.pk, "direct", 1000), (s.pk, "override", 500), (a.pk, "reversal", -400), (s.pk, "reversal", -200),
    ])
    assert w.balance(a) == {"currency": "USD", "pending": "6.00", "available": "0.00", "paid": "0.00"}
    assert w.balance(s) == {"currency": "USD", "pending": "3.00", "available": "0.00", "paid": "0.00"}
    report = audit_ledger()
    assert report.clean, report.differences

    # Cleared twice (two finance people at once, or a double click): paid once.
    assert fraud.conversion_clear(event_id=body["id"], by="finance-kim") is False
    assert Commission.objects.count() == 4
    assert ConversionEvent.objects.get(pk=body["id"]).cleared_by == "finance-jo"
    # Processed again by a stray task: the status guard holds.
    events.events_process(event_ids=[body["id"]])
    assert Commission.objects.count() == 4
    assert audit_ledger().clean


@pytest.fixture
def finance(db):
    user = get_user_model().objects.create_superuser("fin", "fin@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_lists_flags_and_clears_conversions_and_clicks(world, finance, settings):
    w = world(tier_rates=[])
    a = w.promoter("A")
    body = w.send(type="purchase", customer_id="a-1@example.com", order_id="o1", amount="100.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    listing = finance.get("/admin/affiliate/conversionevent/?is_fraud__exact=1")
    assert listing.status_code == 200
    assert f"self-referral: the customer is promoter {a.pk} (a-1@example.com)" in listing.content.decode()
    response = finance.post("/admin/affiliate/conversionevent/", {"action": "clear_fraud", "_selected_action": [body["id"]]})
    assert response.status_code == 302
    assert list(Commission.objects.values_list("promoter_id", "kind", "amount_minor")) == [(a.pk, "direct", 1000)]
    assert ConversionEvent.objects.get(pk=body["id"]).cleared_by == "fin"

    bot = Click.objects.create(
        link=w.links[a.pk], merchant=w.merchant, program=w.program, promoter=a,
        visitor=Click.objects.first().visitor, is_fraud=True, flag_reason="known bot: Googlebot",
    )
    response = finance.post("/admin/affiliate/click/", {"action": "clear_fraud", "_selected_action": [bot.pk]})
    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.is_fraud is False and bot.flag_reason.startswith("cleared by fin ")
    assert bot.flag_reason.endswith("(was: known bot: Googlebot)")
    assert Commission.objects.count() == 1  # a cleared click changes nothing already credited
