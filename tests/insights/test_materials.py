"""Material drafts from a content run's winners, assigned with tracking links of their own."""

from __future__ import annotations

import pytest
from django.utils import timezone

from affiliate.models import ReferralLink
from insights.content import content_insights_run
from insights.materials import materials_run, winners
from insights.models import Content, InsightRun, Material, MaterialAssignment, Product, PromoterSegment, SegmentModel
from tests.factories import PromoterFactory
from tests.insights.test_content_support import make_clicks, make_purchases
from tests.portal.conftest import client_logged_in, make_login

RESULTS = {
    "keywords": [{"key": "camping", "lift": 2.0}, {"key": "solar lantern", "lift": 1.5}, {"key": "office", "lift": 0.5}],
    "formats": [{"key": "video", "lift": 1.4}, {"key": "article", "lift": 0.8}],
}


@pytest.fixture
def shop(program):
    merchant = program.merchant
    people = {name: PromoterFactory(program=program, name=name) for name in ("Eve", "Anna", "Bob", "Carol", "Dave")}
    people["Dave"].status = "inactive"
    people["Dave"].save(update_fields=["status"])
    now = timezone.now()
    for name, fmt, title in [
        ("Eve", "video", "Unboxing"), ("Anna", "video", "My week"), ("Bob", "article", "A camping trip"),
        ("Carol", "article", "Office chairs"), ("Dave", "video", "Camping again"),
    ]:
        Content.objects.create(merchant=merchant, promoter=people[name], title=title, format=fmt, published_at=now)
    live = SegmentModel.objects.create(merchant=merchant, version=1, status="live")
    PromoterSegment.objects.create(model=live, promoter=people["Eve"], segment="stars")
    PromoterSegment.objects.create(model=live, promoter=people["Anna"], segment="novices")
    lantern = Product.objects.create(merchant=merchant, name="Lantern", url="https://shop.example.com/p/lantern",
                                     description="A solar lantern.")
    tent = Product.objects.create(merchant=merchant, name="Tent", url="https://elsewhere.example.org/tent")
    Product.objects.create(merchant=merchant, name="Old", url="https://shop.example.com/old", active=False)
    run = InsightRun.objects.create(merchant=merchant, kind="content", window_days=30, results=RESULTS)
    return {"run": run, "people": people, "lantern": lantern, "tent": tent}


def test_winners_are_the_topics_and_formats_with_lift():
    run = InsightRun(results=RESULTS)
    assert winners(run) == (["camping", "solar lantern"], ["video"])
    # No format at or above the overall rate: the best one all the same.
    assert winners(InsightRun(results={"formats": [{"key": "email", "lift": 0.5}]})) == ([], ["email"])


@pytest.mark.django_db
def test_drafts_and_assignments_with_their_own_links(shop):
    run = shop["run"]

    assert materials_run(run=run) == {"materials": 6, "assignments": 9}

    drafts = list(Material.objects.filter(run=run).order_by("product_id", "variant"))
    # 2 active products x 3 variants, all in the winning format, topics going round.
    assert [(m.product.name, m.variant, m.format) for m in drafts] == [
        ("Lantern", 1, "video"), ("Lantern", 2, "video"), ("Lantern", 3, "video"),
        ("Tent", 1, "video"), ("Tent", 2, "video"), ("Tent", 3, "video"),
    ]
    assert [m.headline for m in drafts[:3]] == [
        "Lantern: Camping, done right", "Why solar lantern fans are switching to Lantern", "Camping in 5 minutes with Lantern",
    ]
    assert "https://shop.example.com/p/lantern" in drafts[0].body and "A solar lantern." in drafts[0].body
    assert drafts[0].topics == ["camping", "solar lantern"]
    # Eve (stars) first, then Anna (posted video) and Bob (wrote about camping), by id; Carol
    # fits neither way and Dave is inactive. Each gets 3 drafts, the products rotated.
    got = {
        (a.promoter.name, a.material.product.name, a.material.variant): a
        for a in MaterialAssignment.objects.select_related("promoter", "material__product", "link")
    }
    assert sorted(got) == sorted([
        ("Eve", "Lantern", 1), ("Eve", "Lantern", 2), ("Eve", "Lantern", 3),
        ("Anna", "Lantern", 2), ("Anna", "Lantern", 3), ("Anna", "Tent", 1),
        ("Bob", "Lantern", 3), ("Bob", "Tent", 1), ("Bob", "Tent", 2),
    ])
    assert got[("Eve", "Lantern", 1)].reason == "segment stars/steady; posted video"
    assert got[("Bob", "Tent", 1)].reason == "wrote about camping"
    for a in got.values():  # a new link of the promoter's own, named after the draft
        assert a.link.promoter_id == a.promoter_id and a.link.channel == f"material-{a.material_id}"
    # The tent's page is off the merchant's domains: its links go to the shop's home.
    assert got[("Anna", "Tent", 1)].link.destination_url == "https://shop.example.com/"
    assert got[("Anna", "Lantern", 2)].link.destination_url == "https://shop.example.com/p/lantern"
    assert len({a.link_id for a in got.values()}) == 9


@pytest.mark.django_db
def test_running_twice_duplicates_nothing(shop):
    materials_run(run=shop["run"])
    counts = (Material.objects.count(), MaterialAssignment.objects.count(), ReferralLink.objects.count())

    assert materials_run(run=shop["run"]) == {"materials": 6, "assignments": 0}

    assert (Material.objects.count(), MaterialAssignment.objects.count(), ReferralLink.objects.count()) == counts == (6, 9, 9)


@pytest.mark.django_db
def test_the_next_run_counts_the_materials_conversions_and_the_portal_shows_them(shop):
    materials_run(run=shop["run"])
    anna = shop["people"]["Anna"]
    assignment = MaterialAssignment.objects.filter(promoter=anna).order_by("id").first()
    clicks = make_clicks(assignment.link, [timezone.now(), timezone.now()])
    make_purchases([{"click": clicks[0], "amount_minor": 3000, "commissions": [(anna, "direct", 0, 300)]}])

    run = content_insights_run(merchant=anna.merchant, days=30, now=timezone.now())

    row = next(r for r in run.results["materials"] if r["key"] == assignment.material_id)
    assert (row["clicks"], row["purchases"], row["revenue"], row["commission"]) == (2, 1, "30.00", "3.00")
    page = client_logged_in(make_login("anna@example.com", promoter=anna)).get("/portal/materials/")
    assert page.status_code == 200
    text = page.content.decode()
    assert text.count("<article") == 3 and f"/r/{assignment.link.code}" in text
    assert "<span class=\"num\">2</span> clicks, <span class=\"num\">1</span> purchase." in text
