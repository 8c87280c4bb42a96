"""Every money rule of the contract, with a worked example computed by hand.

Amounts in the comments are the hand computation; the assertions compare the API's
event body (attribution and commissions) and balances to them.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from payouts import services
from payouts.models import Commission
from tests.payouts.world import World, at, rows

pytestmark = pytest.mark.django_db

LONG_HOLD = {"hold_days": 400}  # keeps everything pending unless a test says otherwise


@pytest.fixture
def world(django_capture_on_commit_callbacks):
    def make(**terms):
        return World(django_capture_on_commit_callbacks, **{**LONG_HOLD, **terms})

    return make


def names(*promoters):
    return {p.pk: p.name for p in promoters}


def test_mixed_three_touchpoints(world):
    # first 0.50, last 0.30, the middle gets 1 − 0.5 − 0.3 = 0.20.
    # 100.00 → A 50.00, B 20.00, C 30.00; first purchase at 10%: 5.00, 2.00, 3.00.
    w = world(attribution_model="mixed", first_click_share="0.50", last_click_share="0.30", tier_rates=[])
    a, b, c = w.promoter("A"), w.promoter("B"), w.promoter("C")
    click = w.journey((a, at(1)), (b, at(2)), (c, at(3)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(4))
    assert rows(body, names(a, b, c)) == (
        [("A", "0.50", "50.00"), ("B", "0.20", "20.00"), ("C", "0.30", "30.00")],
        [("A", "direct", 0, "5.00", "pending"), ("B", "direct", 0, "2.00", "pending"), ("C", "direct", 0, "3.00", "pending")],
    )


def test_mixed_with_contract_defaults_leaves_the_middle_nothing(world):
    # 0.60 + 0.40 = 1: the middle touchpoint weighs 0 and gets no attribution row.
    w = world(tier_rates=[])
    a, b, c = w.promoter("A"), w.promoter("B"), w.promoter("C")
    click = w.journey((a, at(1)), (b, at(2)), (c, at(3)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="99.99", click_id=click, occurred_at=at(4))
    # 99.99 × 0.6 = 59.994 → 59.99; × 0.4 = 39.996 → 40.00 (the larger remainder takes the cent).
    # Directs: 5.999 → 6.00; 4.000 → 4.00.
    assert rows(body, names(a, b, c)) == (
        [("A", "0.60", "59.99"), ("C", "0.40", "40.00")],
        [("A", "direct", 0, "6.00", "pending"), ("C", "direct", 0, "4.00", "pending")],
    )


def test_mixed_two_touchpoints_scale_the_shares(world):
    # 0.50 and 0.30 scaled to sum 1: 0.625 and 0.375; 80.00 → 50.00 and 30.00.
    w = world(first_click_share="0.50", last_click_share="0.30", tier_rates=[])
    a, b = w.promoter("A"), w.promoter("B")
    click = w.journey((a, at(1)), (b, at(2)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="80.00", click_id=click, occurred_at=at(4))
    assert rows(body, names(a, b))[0] == [("A", "0.625", "50.00"), ("B", "0.375", "30.00")]


def test_linear_cuts_cents_by_largest_remainder_earliest_first(world):
    # 100.00 / 3 = 33.333…: each gets 33.33, the cent left goes to the earliest: A 33.34.
    # Directs at 10%: 3.334 → 3.33, 3.333 → 3.33, 3.333 → 3.33.
    w = world(attribution_model="linear", tier_rates=[])
    a, b, c = w.promoter("A"), w.promoter("B"), w.promoter("C")
    click = w.journey((a, at(1)), (b, at(2)), (c, at(3)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(4))
    assert rows(body, names(a, b, c)) == (
        [("A", "0.333333", "33.34"), ("B", "0.333333", "33.33"), ("C", "0.333333", "33.33")],
        [("A", "direct", 0, "3.33", "pending"), ("B", "direct", 0, "3.33", "pending"), ("C", "direct", 0, "3.33", "pending")],
    )


def test_one_promoters_touchpoints_add_up(world):
    # Linear over A, B, A: A 2/3, B 1/3 of 100.00 → 66.67 and 33.33; directs 6.67 and 3.33.
    w = world(attribution_model="linear", tier_rates=[])
    a, b = w.promoter("A"), w.promoter("B")
    click = w.journey((a, at(1)), (b, at(2)), (a, at(3)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(4))
    assert rows(body, names(a, b)) == (
        [("A", "0.666667", "66.67"), ("B", "0.333333", "33.33")],
        [("A", "direct", 0, "6.67", "pending"), ("B", "direct", 0, "3.33", "pending")],
    )


def test_time_decay_halves_every_seven_days_and_the_coupon_is_last(world):
    # Ages 14 d, 7 d and 0 (the coupon at the event's time): 2^-2, 2^-1, 2^0 = 1/4, 1/2, 1
    # → 1/7, 2/7, 4/7 of 70.00 = 10.00, 20.00, 40.00; directs 1.00, 2.00, 4.00.
    w = world(attribution_model="time_decay", tier_rates=[])
    a, b, c = w.promoter("A"), w.promoter("B"), w.promoter("C", coupon_code="CARLA")
    click = w.journey((a, at(1)), (b, at(8)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="70.00", click_id=click, coupon="carla", occurred_at=at(15))
    assert rows(body, names(a, b, c)) == (
        [("A", "0.142857", "10.00"), ("B", "0.285714", "20.00"), ("C", "0.571429", "40.00")],
        [("A", "direct", 0, "1.00", "pending"), ("B", "direct", 0, "2.00", "pending"), ("C", "direct", 0, "4.00", "pending")],
    )


def test_first_click_and_last_click(world):
    w = world(attribution_model="first_click", tier_rates=[])
    a, b = w.promoter("A"), w.promoter("B")
    click = w.journey((a, at(1)), (b, at(2)))
    first = w.send(type="purchase", customer_id="c1", order_id="o1", amount="50.00", click_id=click, occurred_at=at(3))
    assert rows(first, names(a, b)) == ([("A", "1.00", "50.00")], [("A", "direct", 0, "5.00", "pending")])
    w.api.patch(f"/api/v1/programs/{w.program.pk}/", {"attribution_model": "last_click"}, format="json")
    # The change applies to events received after it: the second purchase is last click.
    # It is the customer's second purchase: 5% → 2.50.
    second = w.send(type="purchase", customer_id="c1", order_id="o2", amount="50.00", occurred_at=at(3, hours=1))
    assert rows(second, names(a, b)) == ([("B", "1.00", "50.00")], [("B", "direct", 0, "2.50", "pending")])
    # What was computed stays.
    assert w.api.get(f"/api/v1/events/{first['id']}/").json()["commissions"] == first["commissions"]


def test_lookback_window_fraud_duplicates_and_later_clicks_are_left_out(world):
    # Lookback 30 days before the event at day 40: a click at day 9 is too old, the flagged
    # ones do not count, and a click after the event is no touchpoint of it. Only B at day 20.
    w = world(attribution_model="linear", tier_rates=[], lookback_days=30)
    a, b, f, d, late = (w.promoter(n) for n in ("A", "B", "F", "D", "L"))
    visitor = uuid.uuid4()
    w.click(a, at(9), visitor)
    w.click(b, at(20), visitor)
    w.click(f, at(21), visitor, is_fraud=True)
    w.click(d, at(22), visitor, is_duplicate=True)
    click = w.click(late, at(41), visitor)
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="10.00", click_id=click.id.hex, occurred_at=at(40))
    assert rows(body, names(a, b, f, d, late)) == ([("B", "1.00", "10.00")], [("B", "direct", 0, "1.00", "pending")])


def test_no_touchpoint_no_commission(world):
    w = world()
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="10.00", occurred_at=at(1))
    assert (body["attribution"], body["commissions"]) == ([], [])


def chain(w, length, **leaf_fields):
    """S_length ← … ← S1 ← P; returns [P, S1, …]."""
    top = None
    nodes = []
    for level in range(length, 0, -1):
        top = w.promoter(f"S{level}", sponsor=top)
        nodes.insert(0, top)
    leaf = w.promoter("P", sponsor=top, **leaf_fields)
    return [leaf, *nodes]


def test_overrides_up_the_tree(world):
    # R = 200.00: P 10% = 20.00; S1 5% = 10.00; S2 3% = 6.00; S3 2% = 4.00; S4 1% = 2.00;
    # S5 is above the four tier levels and gets nothing.
    w = world()
    p, *sponsors = chain(w, 5)
    click = w.journey((p, at(1)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="200.00", click_id=click, occurred_at=at(2))
    assert rows(body, names(p, *sponsors))[1] == [
        ("P", "direct", 0, "20.00", "pending"),
        ("S1", "override", 1, "10.00", "pending"),
        ("S2", "override", 2, "6.00", "pending"),
        ("S3", "override", 3, "4.00", "pending"),
        ("S4", "override", 4, "2.00", "pending"),
    ]


def test_an_inactive_sponsors_level_is_lost(world):
    # S2 inactive: level 2 (6.00) is nobody's; S3 still gets level 3's 2% = 4.00.
    w = world()
    p, s1, s2, s3, s4, s5 = chain(w, 5)
    w.api.patch(f"/api/v1/promoters/{s2.pk}/", {"status": "inactive"}, format="json")
    click = w.journey((p, at(1)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="200.00", click_id=click, occurred_at=at(2))
    assert rows(body, names(p, s1, s2, s3, s4, s5))[1] == [
        ("P", "direct", 0, "20.00", "pending"),
        ("S1", "override", 1, "10.00", "pending"),
        ("S3", "override", 3, "4.00", "pending"),
        ("S4", "override", 4, "2.00", "pending"),
    ]


def test_compression_moves_everyone_above_down_a_level(world):
    # compress_inactive: S3 takes level 2 (6.00), S4 level 3 (4.00), S5 level 4 (2.00).
    w = world(compress_inactive=True)
    p, s1, s2, s3, s4, s5 = chain(w, 5)
    w.api.patch(f"/api/v1/promoters/{s2.pk}/", {"status": "inactive"}, format="json")
    click = w.journey((p, at(1)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="200.00", click_id=click, occurred_at=at(2))
    assert rows(body, names(p, s1, s2, s3, s4, s5))[1] == [
        ("P", "direct", 0, "20.00", "pending"),
        ("S1", "override", 1, "10.00", "pending"),
        ("S3", "override", 2, "6.00", "pending"),
        ("S4", "override", 3, "4.00", "pending"),
        ("S5", "override", 4, "2.00", "pending"),
    ]


def test_ten_levels_deep(world):
    # Ten tier levels of 1% on R = 1,000.00: 10.00 each to S1..S10; S11 gets nothing.
    w = world(tier_rates=["0.01"] * 10)
    p, *sponsors = chain(w, 11)
    click = w.journey((p, at(1)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="1000.00", click_id=click, occurred_at=at(2))
    assert rows(body, names(p, *sponsors))[1] == [("P", "direct", 0, "100.00", "pending")] + [
        (f"S{k}", "override", k, "10.00", "pending") for k in range(1, 11)
    ]


def test_own_rate_and_half_up_rounding(world):
    # P's own 15% replaces the program's: 33.35 × 0.15 = 5.0025 → 5.00.
    # S1's 5% of 33.35 = 1.6675 → 1.67 (half-up), S2's 3% = 1.0005 → 1.00.
    w = world(tier_rates=["0.05", "0.03"])
    p, s1, s2 = chain(w, 2, commission_rate="0.15")
    click = w.journey((p, at(1)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="33.35", click_id=click, occurred_at=at(2))
    assert rows(body, names(p, s1, s2))[1] == [
        ("P", "direct", 0, "5.00", "pending"),
        ("S1", "override", 1, "1.67", "pending"),
        ("S2", "override", 2, "1.00", "pending"),
    ]
    # The own rate holds for repeat purchases too: 10.00 × 0.15 = 1.50.
    second = w.send(type="purchase", customer_id="c1", order_id="o2", amount="10.00", occurred_at=at(3))
    assert rows(second, names(p, s1, s2))[1][0] == ("P", "direct", 0, "1.50", "pending")


def test_repeat_purchases_earn_the_repeat_rate(world):
    # First purchase 10% of 40.00 = 4.00; the repeat 5% of 40.00 = 2.00; S1 5% both times.
    w = world(tier_rates=["0.05"])
    p, s1 = chain(w, 1)
    click = w.journey((p, at(1)))
    first = w.send(type="purchase", customer_id="c1", order_id="o1", amount="40.00", click_id=click, occurred_at=at(2))
    repeat = w.send(type="purchase", customer_id="c1", order_id="o2", amount="40.00", occurred_at=at(3))
    assert (first["stage"], repeat["stage"]) == ("first_purchase", "repeat_purchase")
    assert rows(first, names(p, s1))[1] == [("P", "direct", 0, "4.00", "pending"), ("S1", "override", 1, "2.00", "pending")]
    assert rows(repeat, names(p, s1))[1] == [("P", "direct", 0, "2.00", "pending"), ("S1", "override", 1, "2.00", "pending")]


def test_registration_bounty_to_the_last_touchpoint(world):
    w = world(registration_bounty="5.00")
    a, b = w.promoter("A"), w.promoter("B")
    click = w.journey((a, at(1)), (b, at(2)))
    body = w.send(type="registration", customer_id="c1", click_id=click, occurred_at=at(3))
    assert rows(body, names(a, b)) == ([("B", "1.00", "0.00")], [("B", "bounty", 0, "5.00", "pending")])


def test_no_bounty_when_it_is_zero(world):
    w = world()
    a = w.promoter("A")
    body = w.send(type="registration", customer_id="c1", click_id=w.journey((a, at(1))), occurred_at=at(2))
    assert body["commissions"] == []


def test_self_referral_earns_nothing_for_the_promoter_or_their_sponsors(world):
    # Linear A, B on 100.00: 50.00 each. A is the customer (customer_id c1): A and A's
    # sponsor S get nothing on A's share; B gets 10% of 50.00 = 5.00.
    w = world(attribution_model="linear")
    s = w.promoter("S")
    a = w.promoter("A", sponsor=s, customer_id="c1")
    b = w.promoter("B")
    click = w.journey((a, at(1)), (b, at(2)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(3))
    assert rows(body, names(s, a, b)) == (
        [("A", "0.50", "50.00"), ("B", "0.50", "50.00")],
        [("B", "direct", 0, "5.00", "pending")],
    )


def test_an_inactive_promoters_own_touchpoints_earn_nothing(world):
    w = world(attribution_model="linear")
    s = w.promoter("S")
    a = w.promoter("A", sponsor=s, status="inactive")
    b = w.promoter("B")
    click = w.journey((a, at(1)), (b, at(2)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(3))
    assert rows(body, names(s, a, b))[1] == [("B", "direct", 0, "5.00", "pending")]


def test_refunds_reverse_in_proportion_and_the_last_one_exactly(world):
    # Purchase 100.00: P 10.00, S1 5.00.
    # Refund 30.00: P −3.00, S1 −1.50.
    # Refund 33.33: P −10 × 0.3333 = −3.333 → −3.33; S1 −1.6665 → −1.67.
    # Refund of the rest (36.67): P −(10 − 3 − 3.33) = −3.67; S1 −(5 − 1.5 − 1.67) = −1.83.
    w = world(tier_rates=["0.05"])
    p, s1 = chain(w, 1)
    click = w.journey((p, at(1)))
    w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(2))
    n = names(p, s1)
    r1 = w.send(type="refund", customer_id="c1", order_id="o1", refund_id="R1", amount="30.00", occurred_at=at(3))
    r2 = w.send(type="refund", customer_id="c1", order_id="o1", refund_id="R2", amount="33.33", occurred_at=at(4))
    r3 = w.send(type="refund", customer_id="c1", order_id="o1", refund_id="R3", occurred_at=at(5))
    assert rows(r1, n)[1] == [("P", "reversal", 0, "-3.00", "pending"), ("S1", "reversal", 1, "-1.50", "pending")]
    assert rows(r2, n)[1] == [("P", "reversal", 0, "-3.33", "pending"), ("S1", "reversal", 1, "-1.67", "pending")]
    assert (r3["amount"], rows(r3, n)[1]) == ("36.67", [("P", "reversal", 0, "-3.67", "pending"), ("S1", "reversal", 1, "-1.83", "pending")])
    # The refunds take revenue back from the promoter in proportion, then exactly.
    assert [rows(r, n)[0] for r in (r1, r2, r3)] == [[("P", "1.00", "-30.00")], [("P", "1.00", "-33.33")], [("P", "1.00", "-36.67")]]
    for promoter in (p, s1):
        assert w.balance(promoter) == {"currency": "USD", "pending": "0.00", "available": "0.00", "paid": "0.00"}


def test_reversal_of_an_approved_commission_comes_out_of_available(world):
    # Immediate plan: approved at once. Refund 25.00 of 100.00 → −2.50 from available.
    w = world(tier_rates=[])
    p = w.promoter("P", payout_plan="immediate")
    click = w.journey((p, at(1)))
    purchase = w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(2))
    assert rows(purchase, names(p))[1] == [("P", "direct", 0, "10.00", "approved")]
    refund = w.send(type="refund", customer_id="c1", order_id="o1", amount="25.00", occurred_at=at(3))
    assert rows(refund, names(p))[1] == [("P", "reversal", 0, "-2.50", "approved")]
    assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "7.50", "paid": "0.00"}


def test_clawback_of_a_paid_commission_may_take_available_below_zero(world):
    w = world(tier_rates=[])
    p = w.promoter("P", payout_plan="immediate")
    click = w.journey((p, at(1)))
    purchase = w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(2))
    assert services.commissions_mark_paid(commission_ids=[purchase["commissions"][0]["id"]]) == 1
    assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "0.00", "paid": "10.00"}
    refund = w.send(type="refund", customer_id="c1", order_id="o1", occurred_at=at(3))
    assert rows(refund, names(p))[1] == [("P", "reversal", 0, "-10.00", "approved")]
    assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "-10.00", "paid": "10.00"}
    assert Commission.objects.get(pk=purchase["commissions"][0]["id"]).journals.filter(kind="payout").count() == 1
    assert Commission.objects.get(pk=refund["commissions"][0]["id"]).journals.get().kind == "clawback"


def test_hold_then_approval(world):
    # Standard plan, 30-day hold from occurred_at; the periodic approval moves it on.
    w = world(hold_days=30, tier_rates=["0.05"])
    p, s1 = chain(w, 1)
    occurred = (timezone.now() - timedelta(days=1)).replace(microsecond=0)
    click = w.journey((p, occurred - timedelta(hours=1)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=occurred)
    assert [c["status"] for c in body["commissions"]] == ["pending", "pending"]
    assert Commission.objects.get(pk=body["commissions"][0]["id"]).available_at == occurred + timedelta(days=30)
    assert w.balance(p) == {"currency": "USD", "pending": "10.00", "available": "0.00", "paid": "0.00"}
    assert services.approve_due(now=occurred + timedelta(days=30) - timedelta(seconds=1)) == 0
    assert services.approve_due(now=occurred + timedelta(days=30)) == 2
    assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "10.00", "paid": "0.00"}
    assert w.balance(s1) == {"currency": "USD", "pending": "0.00", "available": "5.00", "paid": "0.00"}
    assert services.approve_due(now=occurred + timedelta(days=31)) == 0


def test_a_pending_reversal_is_approved_with_its_commission(world):
    w = world(hold_days=30, tier_rates=[])
    p = w.promoter("P")
    occurred = (timezone.now() - timedelta(days=2)).replace(microsecond=0)
    click = w.journey((p, occurred - timedelta(hours=1)))
    w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=occurred)
    w.send(type="refund", customer_id="c1", order_id="o1", amount="40.00", occurred_at=occurred + timedelta(days=1))
    assert w.balance(p) == {"currency": "USD", "pending": "6.00", "available": "0.00", "paid": "0.00"}
    assert services.approve_due(now=occurred + timedelta(days=30)) == 2
    assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "6.00", "paid": "0.00"}


def test_an_event_older_than_its_hold_is_approved_at_once(world):
    w = world(hold_days=30, tier_rates=[])
    p = w.promoter("P")
    click = w.journey((p, at(1)))  # about 59 days ago
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="20.00", click_id=click, occurred_at=at(2))
    assert rows(body, names(p))[1] == [("P", "direct", 0, "2.00", "approved")]
