"""Conversion fraud rules (each program's own), decided when events are credited; a flagged
conversion's commissions written held, and finance clearing or rejecting them.

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
def world(django_capture_on_commit_callbacks):
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


def flagged_warning(body) -> list:
    return [w for w in body["warnings"] if w["code"] == "conversion_flagged"]


def held_as_if_clean(body, names, expected) -> None:
    """The event's commissions are the clean computation's, every one held; its credits and
    touchpoints are written as for any conversion."""
    assert rows(body, names)[1] == [(*row, "held") for row in expected]
    assert Credit.objects.filter(event_id=body["id"]).exists()
    assert Touchpoint.objects.filter(event_id=body["id"]).exists()
    event = ConversionEvent.objects.get(pk=body["id"])
    assert flagged_warning(body) == [{
        "code": "conversion_flagged",
        "message": "The conversion is flagged: its commissions are held for review and count in no balance.",
        "reason": event.flag_reason,
    }]


def test_self_referral_by_email_is_held_for_review(world):
    w = world(tier_rates=[])
    a = w.promoter("A")  # a-1@example.com
    own = w.send(type="purchase", customer_id="A-1@Example.COM", order_id="o1", amount="100.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    assert own["attribution"] == [{"promoter": a.pk, "weight": "1.00", "revenue": "100.00"}]
    assert flag_of(own) == ("processed", True, f"self-referral: the customer is promoter {a.pk} (a-1@example.com)")
    assert ConversionEvent.objects.get(pk=own["id"]).flag_code == "self_referral"
    held_as_if_clean(own, {a.pk: "A"}, [("A", "direct", 0, "10.00")])
    # The email in the payload counts too; another customer earns A the 10.00.
    by_payload = w.send(
        type="purchase", customer_id="cust-9", email="a-1@example.com", order_id="o2", amount="100.00",
        click_id=w.journey((a, at(1))), occurred_at=at(2),
    )
    assert flag_of(by_payload) == ("processed", True, f"self-referral: the customer is promoter {a.pk} (a-1@example.com)")
    fair = w.send(type="purchase", customer_id="cust-10", order_id="o3", amount="100.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    assert flag_of(fair) == ("processed", False, "")
    assert rows(fair, {a.pk: "A"})[1] == [("A", "direct", 0, "10.00", "pending")]
    assert flagged_warning(fair) == []
    assert sorted(Commission.objects.values_list("status", "amount_minor")) == [("held", 1000), ("held", 1000), ("pending", 1000)]
    # Held money is in no balance: only the fair sale is pending.
    assert w.balance(a) == {"currency": "USD", "pending": "10.00", "available": "0.00", "paid": "0.00"}
    listed = w.api.get(f"/api/v1/commissions/?status=held&promoter={a.pk}").json()
    assert (listed["count"], {c["event"] for c in listed["results"]}) == (2, {own["id"], by_payload["id"]})
    assert audit_ledger().clean


def test_rules_off_in_the_program_flag_nothing(world):
    w = world(tier_rates=[], fraud={"self_referral_email": False})
    a = w.promoter("A")
    own = w.send(type="purchase", customer_id="a-1@example.com", order_id="o1", amount="100.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    assert flag_of(own) == ("processed", False, "")
    assert rows(own, {a.pk: "A"})[1] == [("A", "direct", 0, "10.00", "pending")]


def test_an_order_above_max_order_amount_is_held(world):
    w = world(tier_rates=["0.05"], fraud={"max_order_amount": "5000.00"})
    s = w.promoter("S")
    a = w.promoter("A", sponsor=s)
    big = w.send(type="purchase", customer_id="c1", order_id="o1", amount="1000000000.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    assert flag_of(big) == ("processed", True, "order of 1000000000.00 above the program's max_order_amount of 5000.00")
    held_as_if_clean(big, {a.pk: "A", s.pk: "S"}, [("A", "direct", 0, "100000000.00"), ("S", "override", 1, "50000000.00")])
    limit = w.send(type="purchase", customer_id="c2", order_id="o2", amount="5000.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    assert flag_of(limit) == ("processed", False, "")
    assert w.balance(a) == {"currency": "USD", "pending": "500.00", "available": "0.00", "paid": "0.00"}
    assert audit_ledger().clean


def test_a_conversion_too_soon_after_its_click_is_held(world):
    w = world(tier_rates=[], fraud={"min_click_to_conversion_seconds": 30})
    a = w.promoter("A")
    fast = w.send(
        type="purchase", customer_id="c1", order_id="o1", amount="100.00",
        click_id=w.journey((a, at(1))), occurred_at=at(1) + timedelta(seconds=10),
    )
    assert flag_of(fast) == ("processed", True, "click to conversion in 10.0s, under 30s")
    held_as_if_clean(fast, {a.pk: "A"}, [("A", "direct", 0, "10.00")])
    # Exactly 30 s is plausible.
    slow = w.send(
        type="purchase", customer_id="c2", order_id="o2", amount="100.00",
        click_id=w.journey((a, at(1))), occurred_at=at(1) + timedelta(seconds=30),
    )
    assert flag_of(slow) == ("processed", False, "")
    assert rows(slow, {a.pk: "A"})[1] == [("A", "direct", 0, "10.00", "pending")]


def ip_world(world):
    w = world(tier_rates=[], fraud={"ip_max_promoters": 2})
    return w, [w.promoter(name) for name in "ABCD"]


IP_REASON = "one IP behind the conversions of 3 promoters within 86400s (more than 2)"


def test_one_ip_behind_many_promoters_conversions(world):
    # One IP converts for A, B and C (3 promoters: more than 2 only from the next one on):
    # 10.00 each. Its conversion for D is flagged; so is a second one for A. The same
    # customer journey from another IP, for D, earns.
    w, (a, b, c, d) = ip_world(world)
    bodies = [
        w.send(type="purchase", customer_id=f"c{n}", order_id=f"o{n}", amount="100.00",
               click_id=click(w, p, at(1, hours=n), ip=SHARED_IP), occurred_at=at(1, hours=n, ) + timedelta(minutes=5))
        for n, p in enumerate((a, b, c, d, a))
    ]
    assert [flag_of(body) for body in bodies] == [("processed", False, "")] * 3 + [("processed", True, IP_REASON)] * 2
    assert sorted(Commission.objects.values_list("promoter_id", "amount_minor", "status")) == sorted(
        [(a.pk, 1000, "pending"), (b.pk, 1000, "pending"), (c.pk, 1000, "pending"), (d.pk, 1000, "held"), (a.pk, 1000, "held")]
    )
    other = w.send(type="purchase", customer_id="c9", order_id="o9", amount="100.00",
                   click_id=click(w, d, at(1, hours=9), ip="198.51.100.1"), occurred_at=at(1, hours=9, ) + timedelta(minutes=5))
    assert flag_of(other) == ("processed", False, "")
    assert audit_ledger().clean


def test_the_ip_rule_in_one_batch_is_the_same_as_one_at_a_time(world):
    # The same five conversions received first and credited together by a drainer's batch.
    w, (a, b, c, d) = ip_world(world)
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
    assert sorted(Commission.objects.values_list("promoter_id", "amount_minor", "status")) == sorted(
        [(a.pk, 1000, "pending"), (b.pk, 1000, "pending"), (c.pk, 1000, "pending"), (d.pk, 1000, "held"), (a.pk, 1000, "held")]
    )


def self_referred(w):
    """A (sponsored by S) refers themself: 10.00 direct and 5.00 override, held; a refund of
    40.00 comes while held and reverses 4.00 and 2.00 there."""
    s = w.promoter("S")
    a = w.promoter("A", sponsor=s)  # a-2@example.com
    body = w.send(type="purchase", customer_id="a-2@example.com", order_id="o1", amount="100.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    assert flag_of(body)[1:] == (True, f"self-referral: the customer is promoter {a.pk} (a-2@example.com)")
    refund = w.send(type="refund", customer_id="a-2@example.com", order_id="o1", amount="40.00", occurred_at=at(3))
    assert rows(refund, {a.pk: "A", s.pk: "S"})[1] == [("A", "reversal", 0, "-4.00", "held"), ("S", "reversal", 1, "-2.00", "held")]
    for p in (a, s):
        assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "0.00", "paid": "0.00"}
    assert audit_ledger().clean
    return a, s, body


def test_clearing_a_flag_releases_its_held_commissions_once(world):
    # Cleared: the 10.00 / 5.00 and their refund's -4.00 / -2.00 move to pending (the hold
    # of 400 days from occurred_at has not ended). Pending: A 6.00, S 3.00.
    w = world(tier_rates=["0.05"])
    a, s, body = self_referred(w)
    assert fraud.conversion_clear(event_id=body["id"], by="finance-jo") is True
    event = ConversionEvent.objects.get(pk=body["id"])
    assert (event.is_fraud, event.cleared_by, event.cleared_at is not None) == (False, "finance-jo", True)
    assert event.flag_reason.startswith("self-referral")  # why it was flagged stays on record
    paid = w.api.get(f"/api/v1/events/{body['id']}/").json()
    assert rows(paid, {a.pk: "A", s.pk: "S"})[1] == [("A", "direct", 0, "10.00", "pending"), ("S", "override", 1, "5.00", "pending")]
    assert flagged_warning(paid) == []
    assert sorted(Commission.objects.values_list("promoter_id", "kind", "amount_minor", "status")) == sorted([
        (a.pk, "direct", 1000, "pending"), (s.pk, "override", 500, "pending"),
        (a.pk, "reversal", -400, "pending"), (s.pk, "reversal", -200, "pending"),
    ])
    assert w.balance(a) == {"currency": "USD", "pending": "6.00", "available": "0.00", "paid": "0.00"}
    assert w.balance(s) == {"currency": "USD", "pending": "3.00", "available": "0.00", "paid": "0.00"}
    report = audit_ledger()
    assert report.clean, report.differences

    # Cleared twice (two finance people at once, or a double click), or rejected after: once.
    assert fraud.conversion_clear(event_id=body["id"], by="finance-kim") is False
    assert fraud.conversion_reject(event_id=body["id"], by="finance-kim") is False
    assert Commission.objects.count() == 4
    assert ConversionEvent.objects.get(pk=body["id"]).cleared_by == "finance-jo"
    # Processed again by a stray task: the status guard holds.
    events.events_process(event_ids=[body["id"]])
    assert Commission.objects.count() == 4
    assert audit_ledger().clean


def test_a_cleared_conversion_whose_hold_has_ended_is_approved(world):
    w = world(tier_rates=["0.05"], hold_days=0)
    a, s, body = self_referred(w)
    assert fraud.conversion_clear(event_id=body["id"], by="fin") is True
    assert w.balance(a) == {"currency": "USD", "pending": "0.00", "available": "6.00", "paid": "0.00"}
    assert w.balance(s) == {"currency": "USD", "pending": "0.00", "available": "3.00", "paid": "0.00"}
    assert set(Commission.objects.values_list("status", flat=True)) == {"approved"}
    assert audit_ledger().clean


def test_rejecting_a_flag_reverses_what_is_left_and_pays_nothing(world):
    # Rejected: 10.00 - 4.00 = 6.00 of A's and 5.00 - 2.00 = 3.00 of S's reversed, back to the
    # merchant; every row rejected. The rest of the order refunded later reverses nothing.
    w = world(tier_rates=["0.05"])
    a, s, body = self_referred(w)
    assert fraud.conversion_reject(event_id=body["id"], by="finance-jo") is True
    assert sorted(Commission.objects.values_list("promoter_id", "kind", "amount_minor", "status")) == sorted([
        (a.pk, "direct", 1000, "rejected"), (s.pk, "override", 500, "rejected"),
        (a.pk, "reversal", -400, "rejected"), (s.pk, "reversal", -200, "rejected"),
        (a.pk, "reversal", -600, "rejected"), (s.pk, "reversal", -300, "rejected"),
    ])
    event = ConversionEvent.objects.get(pk=body["id"])
    assert (event.is_fraud, event.rejected_by, event.cleared_at) == (True, "finance-jo", None)
    assert flagged_warning(w.api.get(f"/api/v1/events/{body['id']}/").json())[0]["message"] == (
        "The conversion is flagged: its commissions are rejected in review and count in no balance."
    )
    assert fraud.conversion_reject(event_id=body["id"], by="finance-kim") is False
    assert fraud.conversion_clear(event_id=body["id"], by="finance-kim") is False
    rest = w.send(type="refund", customer_id="a-2@example.com", order_id="o1", refund_id="R-2", occurred_at=at(4))
    assert (rest["amount"], rest["commissions"]) == ("60.00", [])
    assert Commission.objects.count() == 6
    for p in (a, s):
        assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "0.00", "paid": "0.00"}
    report = audit_ledger()
    assert report.clean, report.differences


@pytest.fixture
def finance(db):
    user = get_user_model().objects.create_superuser("fin", "fin@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_lists_flags_and_clears_conversions_and_clicks(world, finance):
    w = world(tier_rates=[])
    a = w.promoter("A")
    body = w.send(type="purchase", customer_id="a-1@example.com", order_id="o1", amount="100.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    listing = finance.get("/admin/affiliate/conversionevent/?is_fraud__exact=1")
    assert listing.status_code == 200
    assert f"self-referral: the customer is promoter {a.pk} (a-1@example.com)" in listing.content.decode()
    response = finance.post("/admin/affiliate/conversionevent/", {"action": "clear_fraud", "_selected_action": [body["id"]]})
    assert response.status_code == 302
    assert list(Commission.objects.values_list("promoter_id", "kind", "amount_minor", "status")) == [(a.pk, "direct", 1000, "pending")]
    assert ConversionEvent.objects.get(pk=body["id"]).cleared_by == "fin"
    other = w.send(type="purchase", customer_id="a-1@example.com", order_id="o2", amount="50.00", click_id=w.journey((a, at(1))), occurred_at=at(2))
    response = finance.post("/admin/affiliate/conversionevent/", {"action": "reject_fraud", "_selected_action": [other["id"]]})
    assert response.status_code == 302
    assert sorted(Commission.objects.filter(event_id=other["id"]).values_list("kind", "amount_minor", "status")) == [
        ("direct", 250, "rejected"), ("reversal", -250, "rejected"),  # a repeat purchase: 5%
    ]

    bot = Click.objects.create(
        link=w.links[a.pk], merchant=w.merchant, program=w.program, promoter=a,
        visitor=Click.objects.first().visitor, is_fraud=True, flag_reason="known bot: Googlebot",
    )
    response = finance.post("/admin/affiliate/click/", {"action": "clear_fraud", "_selected_action": [bot.pk]})
    assert response.status_code == 302
    bot.refresh_from_db()
    assert (bot.is_fraud, bot.flag_reason, bot.cleared_by) == (False, "known bot: Googlebot", "fin")
    assert bot.cleared_at is not None
    assert Commission.objects.count() == 3  # a cleared click changes nothing already credited
