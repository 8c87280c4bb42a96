"""Planted signal: one keyword converts three times better than the rest and content posted
19-21 h (UTC) converts twice as well; the content job must find both.

672 pieces: every pair of 8 keywords (28) posted at each of the 24 hours, 20 clicks each.
Purchases per content: 2 (rate 0.10), x3 with "camping", x2 posted at 19, 20 or 21 h. The
hours are spread evenly over every keyword pair, so no other term or hour can ride on the
planted ones by chance; formats and weekdays go round independently.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.utils import timezone

from insights.content import content_insights_run
from insights.models import InsightRun
from tests.factories import PromoterFactory
from tests.insights.test_content_support import make_clicks, make_contents, make_links, make_purchases

KEYWORDS = ["budget", "camping", "cooking", "fitness", "gaming", "gardening", "skincare", "travel"]
FORMATS = ["article", "video", "social_post", "email"]
EVENING = (19, 20, 21)
CLICKS = 20


@pytest.mark.django_db
def test_the_planted_keyword_and_evening_window_rank_first(program):
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    promoters = [PromoterFactory(program=program) for _ in range(12)]
    plan = []  # (promoter, title, text, format, published_at, purchases)
    for n, ((a, b), hour) in enumerate(itertools.product(itertools.combinations(KEYWORDS, 2), range(24))):
        day = now.replace(hour=hour) - timedelta(days=2 + n % 25)
        purchases = 2 * (3 if "camping" in (a, b) else 1) * (2 if hour in EVENING else 1)
        plan.append((promoters[n % 12], f"{a.title()} and {b}", f"Our thoughts about {a} with {b}.",
                     FORMATS[n % 4], day, purchases))
    links = make_links([p[0] for p in plan], [f"pl{n:04d}" for n in range(len(plan))])
    make_contents([
        {"promoter": p, "link": link, "title": t, "text": x, "format": f, "published_at": at}
        for (p, t, x, f, at, _), link in zip(plan, links, strict=True)
    ])
    clicks = make_clicks(pairs=[
        (link, at + timedelta(minutes=10 + k)) for (_, _, _, _, at, _), link in zip(plan, links, strict=True)
        for k in range(CLICKS)
    ])
    sales = []
    for i, (promoter, *_rest, purchases) in enumerate(plan):
        for k in range(purchases):
            sales.append({"click": clicks[i * CLICKS + k], "amount_minor": 5000,
                          "commissions": [(promoter, "direct", 0, 500)]})
    make_purchases(sales)

    run = content_insights_run(merchant=program.merchant, days=30, now=now)

    run = InsightRun.objects.get(pk=run.pk)  # what was stored, read back as JSON
    results = run.results
    assert run.kind == "content" and run.window_days == 30
    # 672 contents x 20 clicks = 13,440. Purchases of a pair over its 24 hours: 21 x 2 + 3 x 4
    # = 54; with camping (7 of the 28 pairs) x3 = 162: 7 x 162 + 21 x 54 = 1134 + 1134 = 2268.
    assert results["totals"]["contents"] == 672
    assert results["totals"]["clicks"] == 13440
    assert results["totals"]["purchases"] == 2268
    keywords = [row["key"] for row in results["keywords"]]
    assert keywords[0] == "camping"
    # camping: 7 x 24 contents, 3360 clicks, 1134 purchases: rate 0.3375 against 2268/13440
    # = 0.16875 overall: lift 2.0 (three times the rate of the content without it).
    top = results["keywords"][0]
    assert (top["contents"], top["clicks"], top["purchases"], top["lift"]) == (168, 3360, 1134, 2.0)
    hours = [row["key"] for row in results["hours"]]
    assert hours[:3] == [19, 20, 21]
    # An evening hour: 28 contents x 20 clicks, 2 x 2 x (7 x 3 + 21) = 168 purchases.
    assert (results["hours"][0]["clicks"], results["hours"][0]["purchases"]) == (560, 168)
    assert results["hour_windows"][0]["key"] == "19-21"
    # Every purchase cost 5.00 of commission: 0.2 purchases and 10.00 of revenue per 1.00.
    assert top["purchases_per_commission"] == 0.2 and top["revenue_per_commission"] == 10.0
