"""The merchant's figures, worked out by hand on the small world (tests/merchant/world.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from dashboards import selectors
from payouts.models import Commission
from tests.merchant.world import recent

pytestmark = pytest.mark.django_db


def test_the_world_is_as_described(world):
    amounts = sorted(
        (c.promoter.name, c.kind, c.amount_minor, c.status) for c in Commission.objects.select_related("promoter")
    )
    assert amounts == [
        ("Olly", "direct", 1200, "approved"),
        ("Pia", "direct", 800, "pending"),
        ("Pia", "direct", 1000, "pending"),
        ("Pia", "reversal", -300, "pending"),
        ("Sam", "override", 400, "pending"),
        ("Sam", "override", 500, "paid"),
        ("Sam", "reversal", -150, "pending"),
    ]


def test_program_kpis_over_the_last_30_days(world):
    span = selectors.Range.last_days(30)
    kpis = selectors.program_kpis(world.merchant, span, [world.program])[world.program.pk]
    # 7 clicks; c1's registration; o1 and o2; 100 + 200 - 30 of revenue; commissions
    # 10 + 5 + 12 + 8 + 4 - 3 - 1.50 = 34.50, of which Olly's 12 approved, Sam's 5 paid.
    assert {k: kpis[k] for k in ("clicks", "registrations", "purchases", "conversion_rate")} == {
        "clicks": 7, "registrations": 1, "purchases": 2, "conversion_rate": "28.6%",
    }
    assert (kpis["revenue"], kpis["pending"], kpis["approved"], kpis["paid"], kpis["commissions"]) == (
        Decimal("270.00"), Decimal("17.50"), Decimal("12.00"), Decimal("5.00"), Decimal("34.50"),
    )


def test_a_range_counts_clicks_by_their_day_and_conversions_by_the_events(world):
    today = selectors.Range.last_days(1).until
    # Days 9 to 6 ago: o2 and its clicks (8.5, 8.3, 8.2 days ago), not o1 (10) nor the refund (5).
    span = selectors.Range(today - timedelta(days=9), today - timedelta(days=6))
    kpis = selectors.program_kpis(world.merchant, span, [world.program])[world.program.pk]
    assert (kpis["clicks"], kpis["registrations"], kpis["purchases"], kpis["revenue"], kpis["commissions"]) == (
        3, 0, 1, Decimal("200.00"), Decimal("24.00"),
    )
    assert (kpis["pending"], kpis["approved"], kpis["paid"]) == (Decimal("12.00"), Decimal("12.00"), Decimal("0.00"))


def test_the_overview_reads_the_same_figures_as_the_kpis_and_the_chart(world):
    from merchants import services

    second = services.program_create(merchant=world.merchant, name="Second", currency="EUR")
    programs = selectors.programs(world.merchant)
    today = selectors.Range.last_days(1).until
    for span in (selectors.Range.last_days(30), selectors.Range(today - timedelta(days=9), today - timedelta(days=6))):
        for chosen in (world.program, second):
            kpis, chart = selectors.overview(world.merchant, span, programs, chosen)
            assert kpis == selectors.program_kpis(world.merchant, span, programs)
            assert chart == selectors.program_days(chosen)
    kpis, chart = selectors.overview(world.merchant, selectors.Range.last_days(30), programs, world.program)
    assert (kpis[world.program.pk]["clicks"], kpis[world.program.pk]["purchases"], sum(chart["clicks"])) == (7, 2, 7)


def test_the_chart_has_30_days_that_add_up_to_the_kpis(world):
    chart = selectors.program_days(world.program)
    assert len(chart["days"]) == 30
    assert sum(chart["clicks"]) == 7
    assert sum(chart["purchases"]) == 2
    assert sum(Decimal(r) for r in chart["revenue"]) == Decimal("270.00")
    assert sorted(Decimal(r) for r in chart["revenue"] if r != "0.00") == [Decimal("-30.00"), Decimal("100.00"), Decimal("200.00")]


def test_top_promoters_by_revenue_and_by_commissions(world):
    top = selectors.top_promoters(world.program, selectors.Range.last_days(30))

    def rows(key):
        return [
            (r["name"], r["revenue"], r["commissions"], r["clicks"], r["purchases"], r["conversion_rate"]) for r in top[key]
        ]

    # Pia: 100 + 80 - 30 of revenue, 10 + 8 - 3 of commissions, 4 clicks, 2 purchases.
    # Olly: 120 and 12, 3 clicks, 1 purchase. Sam: overrides 5 + 4 - 1.50, no clicks.
    assert rows("by_revenue") == [
        ("Pia", Decimal("150.00"), Decimal("15.00"), 4, 2, "50.0%"),
        ("Olly", Decimal("120.00"), Decimal("12.00"), 3, 1, "33.3%"),
    ]
    assert rows("by_commissions") == [
        ("Pia", Decimal("150.00"), Decimal("15.00"), 4, 2, "50.0%"),
        ("Olly", Decimal("120.00"), Decimal("12.00"), 3, 1, "33.3%"),
        ("Sam", Decimal("0.00"), Decimal("7.50"), 0, 0, None),
    ]


def test_channels_compared(world):
    result = selectors.channels(world.program, selectors.Range.last_days(30))
    rows = [
        (r["channel"], r["clicks"], r["conversions"], r["conversion_rate"], r["revenue"], r["commissions"], r["cost_per_conversion"])
        for r in result["rows"]
    ]
    # youtube: o2 (Olly's and Pia's last touchpoints), 200.00, 12 + 8 + 4 of commissions.
    # blog: o1 less its refund, 70.00; 10 + 5 - 3 - 1.50 = 10.50.
    assert rows == [
        ("youtube", 4, 1, "25.0%", Decimal("200.00"), Decimal("24.00"), Decimal("24.00")),
        ("blog", 3, 1, "33.3%", Decimal("70.00"), Decimal("10.50"), Decimal("10.50")),
    ]
    assert (result["revenue_total"], result["commissions_total"], result["clicks_total"]) == (
        Decimal("270.00"), Decimal("34.50"), 7,
    )


def test_top_promoters_leave_out_who_brought_no_money(world):
    zoe = world.w.promoter("Zoe")
    click = world.click(world.link(zoe, "tiktok"), 1.5)
    world.w.send(type="registration", customer_id="c3", click_id=click.id.hex, occurred_at=recent(1))
    # Zoe is credited with a registration (no revenue, and no bounty in this program).
    top = selectors.top_promoters(world.program, selectors.Range.last_days(30))
    assert [r["name"] for r in top["by_revenue"]] == ["Pia", "Olly"]
    assert [r["name"] for r in top["by_commissions"]] == ["Pia", "Olly", "Sam"]


def test_cost_per_conversion_rounds_half_up_to_the_cent():
    assert selectors.per_unit(1000, 3, "USD") == Decimal("3.33")
    assert selectors.per_unit(1001, 2, "USD") == Decimal("5.01")  # 5.005 → 5.01
    assert selectors.per_unit(500, 0, "USD") is None
    assert selectors.per_unit(1000, 3, "JPY") == Decimal("333")
