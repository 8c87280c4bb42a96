"""Properties of the attribution engine over any journey and any amount."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from attribution import engine

EVENT_AT = datetime(2026, 6, 1, 12, tzinfo=UTC)

shares = st.decimals(min_value=0, max_value=1, places=2)


@st.composite
def journeys(draw, min_size=1):
    n = draw(st.integers(min_value=min_size, max_value=12))
    ages = sorted(draw(st.lists(st.integers(min_value=0, max_value=40 * 86400), min_size=n, max_size=n)), reverse=True)
    promoters = draw(st.lists(st.integers(min_value=1, max_value=5), min_size=n, max_size=n))
    return [
        engine.Touchpoint(promoter_id=p, at=EVENT_AT - timedelta(seconds=age), kind="click", click_id=f"c{i}")
        for i, (p, age) in enumerate(zip(promoters, ages, strict=True))
    ]


@st.composite
def mixed_shares(draw):
    first = draw(shares)
    last = draw(st.decimals(min_value=0, max_value=1 - first, places=2))
    return first, last


amounts = st.integers(min_value=1, max_value=10**14 - 1).map(lambda cents: Decimal(cents).scaleb(-2))


@given(model=st.sampled_from(engine.MODELS), touchpoints=journeys(), split=mixed_shares())
def test_weights_sum_to_exactly_one(model, touchpoints, split):
    weights = engine.touchpoint_weights(model, touchpoints, event_at=EVENT_AT, first_share=split[0], last_share=split[1])
    assert len(weights) == len(touchpoints)
    assert all(w >= 0 for w in weights)
    assert sum(weights) == 1


@given(model=st.sampled_from(engine.MODELS), touchpoints=journeys(), split=mixed_shares(), amount=amounts)
def test_revenue_parts_add_up_to_the_amount_exactly(model, touchpoints, split, amount):
    weights = engine.touchpoint_weights(model, touchpoints, event_at=EVENT_AT, first_share=split[0], last_share=split[1])
    credits = engine.attribute(amount, "USD", touchpoints, weights)
    assert sum(c.revenue for c in credits) == amount
    assert len({c.promoter_id for c in credits}) == len(credits)  # one row per promoter
    assert all(c.weight > 0 for c in credits)  # no row of weight 0
    assert sum(c.weight for c in credits) == 1
    for credit in credits:  # every part within a cent of its exact share
        assert abs(Fraction(credit.revenue) - Fraction(amount) * credit.weight) < Fraction(1, 100)


@given(model=st.sampled_from(engine.MODELS), touchpoints=journeys(min_size=1).map(lambda j: j[:1]), amount=amounts)
def test_one_touchpoint_takes_everything(model, touchpoints, amount):
    weights = engine.touchpoint_weights(model, touchpoints, event_at=EVENT_AT)
    credits = engine.attribute(amount, "USD", touchpoints, weights)
    assert [(c.promoter_id, c.weight, c.revenue) for c in credits] == [(touchpoints[0].promoter_id, 1, amount)]


@given(touchpoints=journeys(min_size=2))
def test_first_and_last_click_give_all_to_one_end(touchpoints):
    assert engine.touchpoint_weights("first_click", touchpoints)[0] == 1
    assert engine.touchpoint_weights("last_click", touchpoints)[-1] == 1


@given(touchpoints=journeys(min_size=3), split=mixed_shares())
def test_mixed_gives_the_ends_their_shares_and_the_middle_the_rest_equally(touchpoints, split):
    first, last = split
    weights = engine.touchpoint_weights("mixed", touchpoints, first_share=first, last_share=last)
    assert (weights[0], weights[-1]) == (Fraction(first), Fraction(last))
    assert len(set(weights[1:-1])) == 1
    assert sum(weights[1:-1]) == 1 - Fraction(first) - Fraction(last)


@given(touchpoints=journeys(min_size=2))
def test_time_decay_favours_the_recent(touchpoints):
    weights = engine.touchpoint_weights("time_decay", touchpoints, event_at=EVENT_AT)
    assert all(a <= b for a, b in zip(weights, weights[1:], strict=False))  # oldest first, so non-decreasing


def test_time_decay_half_life_is_seven_days():
    touchpoints = [
        engine.Touchpoint(1, EVENT_AT - timedelta(days=7), "click"),
        engine.Touchpoint(2, EVENT_AT, "click"),
    ]
    assert engine.touchpoint_weights("time_decay", touchpoints, event_at=EVENT_AT) == [Fraction(1, 3), Fraction(2, 3)]


def test_selection_window_flags_order_and_coupon():
    clicks = [
        engine.ClickFact("b", 2, EVENT_AT - timedelta(days=2)),
        engine.ClickFact("a", 1, EVENT_AT - timedelta(days=3)),
        engine.ClickFact("old", 3, EVENT_AT - timedelta(days=30, seconds=1)),
        engine.ClickFact("edge", 4, EVENT_AT - timedelta(days=30)),
        engine.ClickFact("fraud", 5, EVENT_AT - timedelta(days=1), is_fraud=True),
        engine.ClickFact("dup", 6, EVENT_AT - timedelta(days=1), is_duplicate=True),
        engine.ClickFact("later", 7, EVENT_AT + timedelta(seconds=1)),
        engine.ClickFact("same-time", 8, EVENT_AT),
    ]
    selected = engine.select_touchpoints(clicks, event_at=EVENT_AT, lookback_days=30, coupon_promoter_id=9)
    assert [(t.promoter_id, t.kind) for t in selected] == [(4, "click"), (1, "click"), (2, "click"), (8, "click"), (9, "coupon")]
    assert selected[-1].at == EVENT_AT


def test_revenue_ties_go_to_the_earlier_touchpoint():
    # Promoter 2 touches first, promoter 1 second: equal weights, the odd cent goes to 2.
    touchpoints = [engine.Touchpoint(2, EVENT_AT - timedelta(days=2), "click"), engine.Touchpoint(1, EVENT_AT, "click")]
    credits = engine.attribute(Decimal("0.01"), "USD", touchpoints, [Fraction(1, 2), Fraction(1, 2)])
    assert [(c.promoter_id, c.revenue) for c in credits] == [(2, Decimal("0.01")), (1, Decimal("0.00"))]


def test_unknown_model_is_an_error():
    with pytest.raises(ValueError, match="unknown attribution model"):
        engine.touchpoint_weights("u_shaped", [engine.Touchpoint(1, EVENT_AT, "click")])


@pytest.mark.parametrize(("weight", "text"), [(Fraction(1), "1.00"), (Fraction(3, 5), "0.60"), (Fraction(1, 3), "0.333333"), (Fraction(5, 8), "0.625")])
def test_weight_strings(weight, text):
    assert engine.weight_string(weight) == text
