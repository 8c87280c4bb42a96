"""LTV, CAC and LTV/CAC per promoter and per channel, on a tiny world computed by hand."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from affiliate import services as affiliate_services
from insights.models import InsightRun
from insights.value import growth_factors, projection_multiplier, value_compute, value_run
from payouts.models import Adjustment
from tests.payouts.world import World, at

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny(django_capture_on_commit_callbacks):
    """A (blog) sponsors C (video); B (blog). Linear attribution, 10% first purchases, 5%
    repeats, 2% to the first upline.

    - c0: C alone, first purchase 30.00 at day 0.5: before the window, counted nowhere.
    - c1: A alone, 100.00 (A 10.00), a repeat 50.00 (A 2.50), 20.00 of it refunded (the
      reversal: 2.50 × 20/50 = 1.00). Revenue 130.00, cost 11.50.
    - c2: A then B, 80.00 split ½ ½ (4.00 each). Revenue 80.00, cost 8.00.
    - c3: C alone, 200.00 (C 20.00, A's override 2% = 4.00). Revenue 200.00, cost 24.00.
    - B has a 5.00 top-up in the window.
    """
    w = World(
        django_capture_on_commit_callbacks, attribution_model="linear", first_purchase_rate="0.10",
        repeat_purchase_rate="0.05", tier_rates=["0.02"], hold_days=400,
    )
    a = w.promoter("A")
    b = w.promoter("B")
    c = w.promoter("C", sponsor=a)
    for promoter, channel in ((a, "blog"), (b, "blog"), (c, "video")):
        w.links[promoter.pk] = affiliate_services.link_create(
            merchant=w.merchant, promoter=promoter, destination_url="https://shop.example.com/", channel=channel
        )
    w.send(type="purchase", customer_id="c0", order_id="o0", amount="30.00", click_id=w.journey((c, at(0.2))), occurred_at=at(0.5))
    w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=w.journey((a, at(1.5))), occurred_at=at(2))
    w.send(type="purchase", customer_id="c1", order_id="o1b", amount="50.00", occurred_at=at(10))
    w.send(type="refund", customer_id="c1", order_id="o1b", refund_id="r1", amount="20.00", occurred_at=at(12))
    w.send(type="purchase", customer_id="c2", order_id="o2", amount="80.00", click_id=w.journey((a, at(3)), (b, at(4))), occurred_at=at(5))
    w.send(type="purchase", customer_id="c3", order_id="o3", amount="200.00", click_id=w.journey((c, at(6))), occurred_at=at(7))
    Adjustment.objects.create(
        merchant=w.merchant, promoter=b, kind="topup", period="2026-01", amount_minor=500, currency="USD", reason="guaranteed minimum"
    )
    # now: an hour from now; 59 days back: T0 + 1 day + 1 hour (c0 falls before, c1 after).
    return w, a, b, c, timezone.now() + timedelta(hours=1)


def _figures(frame, key_column):
    return {
        row[key_column]: (row["customers"], row["revenue"], row["cost"], row["ltv"], row["cac"], row["ltv_cac"])
        for row in frame.to_dict("records")
    }


def test_ltv_cac_per_promoter_and_channel(tiny):
    w, a, b, c, now = tiny
    tables = value_compute(program=w.program, window_days=59, now=now, horizon_months=1)
    assert _figures(tables.promoters, "promoter_id") == {
        # A: c1 whole + ½ c2 = 1.5 customers; 130 + 40 = 170.00; 11.50 + 4.00 = 15.50.
        # LTV 170/1.5 = 113.33; CAC 15.50/1.5 = 10.33; 170/15.50 = 10.9677.
        a.pk: (D("1.5"), D("170.00"), D("15.50"), D("113.33"), D("10.33"), D("10.9677")),
        # B: ½ c2: 40.00; 4.00 + the 5.00 top-up = 9.00. LTV 80.00, CAC 18.00, 40/9 = 4.4444.
        b.pk: (D("0.5"), D("40.00"), D("9.00"), D("80.00"), D("18.00"), D("4.4444")),
        # C: c3: 200.00 for 24.00 (its upline's override included): 200/24 = 8.3333.
        c.pk: (D("1"), D("200.00"), D("24.00"), D("200.00"), D("24.00"), D("8.3333")),
    }
    assert _figures(tables.channels, "channel") == {
        # blog: c1 + c2 = 2 customers, 210.00; 11.50 + 8.00 + B's 5.00 = 24.50.
        # LTV 105.00, CAC 12.25, 210/24.50 = 8.5714.
        "blog": (D("2"), D("210.00"), D("24.50"), D("105.00"), D("12.25"), D("8.5714")),
        "video": (D("1"), D("200.00"), D("24.00"), D("200.00"), D("24.00"), D("8.3333")),
    }
    # A horizon of one month projects nothing beyond what was bought.
    assert list(tables.promoters["projected_ltv"]) == list(tables.promoters["ltv"])


def test_value_run_keeps_the_tables_as_json(tiny):
    w, a, b, c, now = tiny
    run = value_run(merchant=w.merchant, window_days=59, now=now, horizon_months=1)
    assert run.kind == "value" and run.window_days == 59
    stored = InsightRun.objects.get(pk=run.pk).results
    row_of_b = next(r for r in stored["promoters"] if r["promoter_id"] == b.pk)
    assert (row_of_b["ltv"], row_of_b["cac"], row_of_b["ltv_cac"], row_of_b["adjustments"]) == ("80.00", "18.00", "4.4444", "5.00")
    assert [r["channel"] for r in stored["channels"]] == ["blog", "video"]


def test_window_includes_c0_when_wide_enough(tiny):
    w, a, b, c, now = tiny
    tables = value_compute(program=w.program, window_days=61, now=now, horizon_months=1)
    row = tables.promoters.set_index("promoter_id").loc[c.pk]
    # C: c0 (30.00, cost 3.00 + A's 0.60) and c3: 230.00 for 27.60 over 2 customers.
    assert (row["customers"], row["revenue"], row["cost"], row["ltv"], row["cac"]) == (D("2"), D("230.00"), D("27.60"), D("115.00"), D("13.80"))


def test_growth_of_older_cohorts_and_the_projection():
    # now is month 100. Cohort 96: 400 through months 0 and 1 (nothing in month 1), 600 from
    # month 2; 97: 1000, 1500, 1800; 98: 2000, 2200; 99: 500 (its month 1 is not over).
    cumulative = {96: {0: 400, 2: 600}, 97: {0: 1000, 1: 1500, 2: 1800}, 98: {0: 2000, 1: 2200}, 99: {0: 500}, 100: {}}
    factors = growth_factors(cumulative, now_month=100, horizon=4)
    # g1 = (400/400 + 1500/1000 + 2200/2000) / 3 = (1 + 1.5 + 1.1) / 3 = 1.2
    # g2 = (600/400 + 1800/1500) / 2 = (1.5 + 1.2) / 2 = 1.35 (98's month 2 is not over)
    # g3 = 600/600 = 1 (only 96's month 3 is over)
    assert factors == [D("1.2"), D("1.35"), D("1")]
    assert projection_multiplier(factors, 0) == D("1.62")  # 1.2 × 1.35 × 1
    assert projection_multiplier(factors, 1) == D("1.35")
    assert projection_multiplier(factors, 3) == D("1")
    # No cohort has a month over: no growth assumed.
    assert growth_factors({100: {0: 10}}, now_month=100, horizon=3) == [D("1"), D("1")]
