"""The content job's figures on tiny examples computed by hand."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from django.utils import timezone

from insights.content import content_insights_run, content_tables, wilson_lower
from insights.models import InsightRun
from tests.factories import PromoterFactory
from tests.insights.test_content_support import make_clicks, make_contents, make_links, make_purchases


def test_wilson_lower_bound_by_hand():
    # n = 20, p = 0.3, z = 1.96 (z^2 = 3.8416):
    # centre = 0.3 + 3.8416/40 = 0.39604; spread = 1.96 * sqrt(0.21/20 + 3.8416/1600)
    # = 1.96 * sqrt(0.012901) = 0.222621; (0.39604 - 0.222621) / (1 + 3.8416/20) = 0.145476.
    assert wilson_lower(6, 20) == pytest.approx(0.145476, abs=1e-6)
    assert wilson_lower(0, 0) == 0.0
    assert wilson_lower(0, 10) == 0.0
    # More purchases than clicks is capped at the clicks (a rate, not a count).
    assert wilson_lower(12, 10) == wilson_lower(10, 10)


def _frame():
    rows = [  # title, format, hour, clicks, purchases, revenue, commission (minor units)
        ("solar camping lantern", "article", 19, 10, 5, 10000, 1000),
        ("camping stove review", "video", 8, 10, 1, 2000, 200),
        ("office chair review", "article", 8, 20, 2, 4000, 400),
        ("office desk lamp", "video", 19, 20, 0, 0, 0),
    ]
    return pd.DataFrame([
        {"id": i, "kind": "content", "material_id": None, "title": t, "text": "", "format": f,
         "published_at": pd.Timestamp(f"2026-05-04 {h:02d}:30", tz="UTC"), "clicks": c, "purchases": p,
         "revenue_minor": r, "commission_minor": m}
        for i, (t, f, h, c, p, r, m) in enumerate(rows)
    ])


def test_lift_and_bound_on_a_hand_computed_example():
    tables = content_tables(_frame(), currency="USD", min_df=2)
    # Overall: 8 purchases / 60 clicks = 0.133333.
    assert tables["totals"]["clicks"] == 60 and tables["totals"]["purchases"] == 8
    # Terms in at least 2 contents: camping (1, 2), review (2, 3), office (3, 4).
    by_key = {row["key"]: row for row in tables["keywords"]}
    assert set(by_key) == {"camping", "review", "office"}
    camping = by_key["camping"]
    # camping: 20 clicks, 6 purchases: rate 0.3, lift 0.3 / 0.133333 = 2.25; bound
    # 0.145476 / 0.133333 = 1.091070; commission 10.00 + 2.00 = 12.00: 6 / 12 = 0.5
    # purchases and 120.00 / 12.00 = 10.0 of revenue per 1.00 of commission.
    assert camping["clicks"] == 20 and camping["purchases"] == 6
    assert camping["conversion_rate"] == 0.3 and camping["lift"] == 2.25
    assert camping["lift_lower"] == pytest.approx(1.09107, abs=1e-5)
    assert (camping["revenue"], camping["commission"]) == ("120.00", "12.00")
    assert (camping["purchases_per_commission"], camping["revenue_per_commission"]) == (0.5, 10.0)
    # review: 30 clicks, 3 purchases: lift 0.1 / 0.133333 = 0.75; office: 2 / 40: 0.375.
    assert (by_key["review"]["lift"], by_key["office"]["lift"]) == (0.75, 0.375)
    assert [row["key"] for row in tables["keywords"]] == ["camping", "review", "office"]
    # Formats: article 7 / 30 (lift 1.75) before video 1 / 30 (lift 0.25).
    assert [(r["key"], r["purchases"], r["lift"]) for r in tables["formats"]] == [("article", 7, 1.75), ("video", 1, 0.25)]
    # Hours: 19 h 5 / 30 (lift 1.25) before 8 h 3 / 30 (0.75); 2026-05-04 is a Monday (0).
    assert [(r["key"], r["lift"]) for r in tables["hours"]] == [(19, 1.25), (8, 0.75)]
    assert [(r["key"], r["clicks"]) for r in tables["weekdays"]] == [(0, 60)]
    assert [r["key"] for r in tables["grid"]] == [[0, 19], [0, 8]]
    # Video earned 2.00 of commission on 1 purchase (0.5 per 1.00); article 14.00 on 7 (0.5).
    assert tables["per_commission"]["formats"]["purchases"] == ["article", "video"]


@pytest.mark.django_db
def test_the_run_joins_content_to_its_links_conversions(program):
    now = timezone.now().replace(microsecond=0)
    anna = PromoterFactory(program=program)
    sponsor = PromoterFactory(program=program)
    other = PromoterFactory(program=program)
    l1, l2, l3 = make_links([anna, anna, other], ["lone", "ltwo", "lthree"])
    day = timedelta(days=1)
    make_contents([
        {"promoter": anna, "link": l1, "title": "A", "format": "article", "published_at": now - 10 * day},
        {"promoter": anna, "link": l1, "title": "B", "format": "video", "published_at": now - 5 * day},
        {"promoter": anna, "link": l2, "title": "C", "format": "email", "published_at": now - 9 * day},
        {"promoter": other, "link": l3, "title": "Old", "format": "social_post", "published_at": now - 40 * day},
    ])
    before_a = make_clicks(l1, [now - 12 * day])  # before any content on l1: counts for none
    to_a = make_clicks(l1, [now - 8 * day, now - 7 * day])
    make_clicks(l1, [now - 8 * day], is_fraud=True)  # fraud: left out
    to_b = make_clicks(l1, [now - 3 * day])
    to_c = make_clicks(l2, [now - 6 * day])
    make_clicks(l3, [now - 2 * day])  # its content is outside the 30 days
    make_purchases([
        {"click": before_a[0], "amount_minor": 9999, "commissions": [(anna, "direct", 0, 999)]},
        # A: 100.00 with 10.00 direct + 2.00 override to the sponsor = 12.00.
        {"click": to_a[0], "amount_minor": 10000, "commissions": [(anna, "direct", 0, 1000), (sponsor, "override", 1, 200)]},
        # B: 40.00, 4.00.
        {"click": to_b[0], "amount_minor": 4000, "commissions": [(anna, "direct", 0, 400)]},
        # A (weight 1/4) and C (weight 3/4) share one 80.00 purchase and its 8.00: 2.00 and 6.00.
        {"click": to_a[1], "weight": 0.25, "extra": [(to_c[0], 0.75)], "amount_minor": 8000,
         "commissions": [(anna, "direct", 0, 800)]},
    ])

    run = content_insights_run(merchant=program.merchant, days=30, now=now)

    results = InsightRun.objects.get(pk=run.pk).results
    formats = {r["key"]: (r["contents"], r["clicks"], r["purchases"], r["revenue"], r["commission"]) for r in results["formats"]}
    assert formats == {
        "article": (1, 2, 2, "120.00", "14.00"),  # A: 100.00 + 80.00 x 1/4; 12.00 + 2.00
        "video": (1, 1, 1, "40.00", "4.00"),
        "email": (1, 1, 1, "60.00", "6.00"),  # C: 80.00 x 3/4
    }
    # 4 clicks, 4 content purchases (the shared one counts for A and for C).
    assert (results["totals"]["clicks"], results["totals"]["purchases"]) == (4, 4)
    assert results["totals"]["commission"] == "24.00"
    assert results["currency"] == "USD" and results["window"]["days"] == 30


@pytest.mark.django_db
def test_a_run_without_content_stores_empty_tables(merchant):
    run = content_insights_run(merchant=merchant, days=7)
    assert run.results["totals"]["contents"] == 0
    assert run.results["keywords"] == [] and run.results["hours"] == []
