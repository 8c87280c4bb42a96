"""The merchant's insight pages: what the insight jobs found, for the merchant's own programs
only, in a bounded number of queries."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from insights.content import content_insights_run
from insights.models import (
    Content,
    InsightRun,
    Material,
    MaterialAssignment,
    PromoterSegment,
    RateChange,
    SegmentModel,
    SegmentPlan,
)
from insights.value import value_run
from tests.merchant.world import staff_login
from tests.portal.conftest import client_logged_in

pytestmark = pytest.mark.django_db


def test_before_any_run_the_pages_say_so(world):
    for path, words in [
        ("/merchant/insights/", "No LTV/CAC figures yet"),
        ("/merchant/insights/segments/", "No segment model is live yet"),
        ("/merchant/insights/content/", "No content insights yet"),
    ]:
        response = world.client.get(path)
        assert response.status_code == 200, path
        assert words in response.content.decode(), path


def test_value_page_shows_the_latest_run_and_the_rate_log(world):
    run = value_run(merchant=world.merchant, window_days=30)
    RateChange.objects.create(
        program=world.program, promoter=world.pia, kind="raise", old_rate=None, new_rate=Decimal("0.11"),
        metrics={"ltv_cac": "4.0"}, rule={}, reason="LTV/CAC 4.00 at or above 3.00",
    )
    page = world.client.get("/merchant/insights/").content.decode()

    # Every channel row of the run is on the page with its figures, as the run has them
    channels = {row["channel"]: row for row in run.results["channels"]}
    assert set(channels) == {"blog", "youtube"}  # c1 came by Pia's blog link, c2 by Olly's youtube link
    for name, row in channels.items():
        assert f'<tr data-channel="{name}"><th scope="row">{name}</th><td class="num">{row["customers"]}</td><td class="num">{row["revenue"]}</td>' in page
    # By hand. c1 (first purchase o1, 100.00, refunded 30.00) came all by Pia's blog link:
    # 70.00 of net revenue for 10.00 + 5.00 - 3.00 - 1.50 = 10.50 of commissions: 6.6667.
    # c2 (o2, 200.00) came by Olly's youtube link (0.6) and Pia's youtube link (0.4; her blog
    # click in between weighs 0): youtube has the whole customer, 200.00 for 12.00 + 8.00 +
    # 4.00 = 24.00: 8.3333.
    assert [channels["blog"][k] for k in ("customers", "revenue", "cost", "ltv_cac")] == ["1.0000", "70.00", "10.50", "6.6667"]
    assert [channels["youtube"][k] for k in ("customers", "revenue", "cost", "ltv_cac")] == ["1.0000", "200.00", "24.00", "8.3333"]
    # Pia: all of c1 and 0.4 of c2: 1.4 customers, 70.00 + 80.00 = 150.00 for 10.50 + 9.60 =
    # 20.10, so an LTV of 107.14, a CAC of 14.36 and 7.4627.
    assert (
        f'<tr data-promoter="{world.pia.pk}"><th scope="row">Pia</th><td class="num">1.4000</td><td class="num">150.00</td>'
        '<td class="num">20.10</td><td class="num">107.14</td><td class="num">14.36</td><td class="num">7.4627</td>'
    ) in page
    # The rate log
    assert "LTV/CAC 4.00 at or above 3.00" in page and '<td class="num">0.110000</td>' in page
    assert 'id="value-data"' in page and "insights.js" in page


def test_segments_page_shows_the_live_model_its_plans_and_versions(world):
    failed = SegmentModel.objects.create(merchant=world.merchant, version=2, status="failed", error="too few promoters (3)")
    live = SegmentModel.objects.create(
        merchant=world.merchant, version=1, status="live", clusters=2, silhouette=0.71234,
        metrics={"trained_on": 2, "untrained": 1}, names={"0": "stars", "1": "steady"},
    )
    PromoterSegment.objects.bulk_create([
        PromoterSegment(model=live, promoter=world.pia, segment="stars", features={"conversion_rate": 0.5, "avg_order_value": 90.0}),
        PromoterSegment(model=live, promoter=world.olly, segment="steady", features={"conversion_rate": 0.25, "avg_order_value": 200.0}),
        PromoterSegment(model=live, promoter=world.sam, segment="novices", features={"conversion_rate": 0.0, "avg_order_value": 0.0}),
    ])
    SegmentPlan.objects.create(merchant=world.merchant, segment="stars", payout_plan="immediate")
    page = world.client.get("/merchant/insights/segments/").content.decode()

    assert "Model version 1," in page and "silhouette (0.712)" in page
    assert '<tr data-segment="stars"><th scope="row">stars</th><td class="num">1</td><td>immediate</td></tr>' in page
    assert '<tr data-segment="steady"><th scope="row">steady</th><td class="num">1</td><td>(left as it is)</td></tr>' in page
    assert '<tr data-version="2"><td class="num">2</td>' in page and "too few promoters (3)" in page
    assert '"name": "stars", "points": [{"x": 0.5, "y": 90.0}]' in page
    assert failed.status == "failed"


def test_content_page_shows_keywords_formats_the_grid_and_materials(world):
    twelve_days_ago = timezone.now() - timedelta(days=12)
    Content.objects.create(merchant=world.merchant, promoter=world.pia, link=world.pia_blog, title="Trail shoes review",
                           text="trail shoes", format="article", published_at=twelve_days_ago)
    Content.objects.create(merchant=world.merchant, promoter=world.olly, link=world.olly_yt, title="Trail shoes unboxing",
                           text="trail shoes", format="video", published_at=twelve_days_ago)
    run = content_insights_run(merchant=world.merchant, days=30)
    material = Material.objects.create(merchant=world.merchant, run=run, headline="Run further", body="...", format="article", topics=["trail"])
    MaterialAssignment.objects.create(material=material, promoter=world.pia)
    page = world.client.get("/merchant/insights/content/").content.decode()

    formats = {row["key"]: row for row in run.results["formats"]}
    # Pia's blog link had three clicks after the article (10.5, 8.3 and 1 days ago), Olly's
    # youtube link three after the video (8.5, 3 and 2 days ago)
    assert (formats["article"]["clicks"], formats["video"]["clicks"]) == (3, 3)
    assert '<tr data-format="article"><th scope="row">article</th><td class="num">1</td><td class="num">3</td>' in page
    assert '<tr data-format="video"><th scope="row">video</th><td class="num">1</td><td class="num">3</td>' in page
    weekday, hour = twelve_days_ago.weekday(), twelve_days_ago.hour
    assert "table class=\"heatmap\"" in page and f"{['Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'][weekday]} {hour}h:" in page
    assert f'<tr data-material="{material.pk}"><th scope="row">Run further</th><td>article</td><td>trail</td><td class="num">1</td>' in page


def test_another_merchants_staff_sees_none_of_it(world, other):
    value_run(merchant=world.merchant, window_days=30)
    SegmentModel.objects.create(merchant=world.merchant, version=1, status="live", clusters=2, silhouette=0.5)
    RateChange.objects.create(program=world.program, promoter=world.pia, kind="raise", new_rate=Decimal("0.11"), reason="ours")
    merchant, _ = other
    theirs = client_logged_in(staff_login("staff@other.example.net", merchant))
    for path, words in [
        ("/merchant/insights/", "No LTV/CAC figures yet"),
        ("/merchant/insights/segments/", "No segment model is live yet"),
        ("/merchant/insights/content/", "No content insights yet"),
    ]:
        page = theirs.get(path).content.decode()
        assert words in page and "Pia" not in page and "ours" not in page, path
    # Our program as their filter: 404
    assert theirs.get(f"/merchant/insights/?program={world.program.pk}").status_code == 404
    assert InsightRun.objects.filter(merchant=merchant).count() == 0


def test_insight_pages_run_a_fixed_number_of_queries(world):
    value_run(merchant=world.merchant, window_days=30)
    content_insights_run(merchant=world.merchant, days=30)
    for path in ("/merchant/insights/", "/merchant/insights/segments/", "/merchant/insights/content/"):
        with CaptureQueriesContext(connection) as queries:
            assert world.client.get(path).status_code == 200
        assert len(queries) <= 10, (path, [q["sql"] for q in queries])
