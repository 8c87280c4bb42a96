"""A promoter sees only their own data: every object URL of the portal answers 404 with
another promoter's login, whether in the same program, the same tree or another merchant."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone

from affiliate.models import ReferralLink
from payouts import statements
from payouts.models import PayoutMethod
from portal import urls as portal_urls
from tests.factories import PromoterFactory
from tests.portal.conftest import client_logged_in, make_login

pytestmark = pytest.mark.django_db


@pytest.fixture
def objects(sold):
    """Pia's link and statement, and the logins that must not reach them."""
    sold.pia_client.post("/portal/links/", {"destination_url": "https://shop.example.com/", "channel": "blog"})
    link = ReferralLink.objects.get(promoter=sold.pia, channel="blog")
    statement, _ = statements.statement_write(promoter=sold.pia, period=timezone.now().strftime("%Y-%m"))
    return sold, link, statement


def object_paths(link, statement) -> dict[str, str]:
    return {
        "link": f"/portal/links/{link.code}/",
        "link-qr": f"/portal/links/{link.code}/qr.svg",
        "statement-pdf": f"/portal/statements/{statement.pk}.pdf",
        "statement-csv": f"/portal/statements/{statement.pk}.csv",
    }


def test_every_object_url_of_the_portal_is_covered():
    with_ids = {p.name for p in portal_urls.urlpatterns if p.pattern.converters}
    assert with_ids == {"link", "link-qr", "statement-pdf", "statement-csv"}


def outsiders(world, other_merchant):
    stranger = PromoterFactory(program__merchant=other_merchant, email="olga@example.net")
    return {
        "sponsor": world.sam_client,  # above Pia in the tree
        "recruit": client_logged_in(make_login("rita@example.com", promoter=world.w.promoter("Rita", sponsor=world.pia))),
        "other merchant": client_logged_in(make_login("olga@example.net", promoter=stranger)),
    }


def test_another_promoters_objects_are_404(objects, other_merchant):
    world, link, statement = objects
    paths = object_paths(link, statement)
    for path in paths.values():
        assert world.pia_client.get(path).status_code == 200, path
    for who, client in outsiders(world, other_merchant).items():
        for name, path in paths.items():
            assert client.get(path).status_code == 404, (who, name)


def test_switching_to_another_promoter_is_404_and_changes_nothing(objects, other_merchant):
    world, _, _ = objects
    response = world.sam_client.post("/portal/switch/", {"promoter": world.pia.pk})
    assert response.status_code == 404
    assert world.sam_client.post("/portal/switch/", {"promoter": "x"}).status_code == 404
    assert b"Hello, Sam</h1>" in world.sam_client.get("/portal/").content


def test_lists_show_only_the_promoters_own_rows(objects):
    world, link, _ = objects
    # Sam's link page lists none of Pia's links; his commissions are only his override.
    links_page = world.sam_client.get("/portal/links/").content.decode()
    assert link.code not in links_page
    export = world.sam_client.get("/portal/commissions.csv")
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert [(r[3], r[6]) for r in rows[1:]] == [("override", "5.00")]
    assert b"0 commissions" not in world.sam_client.get("/portal/commissions/").content
    assert b"1 commission, 5.00 USD in all." in world.sam_client.get("/portal/commissions/").content
    payouts_page = world.sam_client.get("/portal/payouts/").content.decode()
    assert "/portal/statements/" not in payouts_page
    # Pia does not see her sponsor on her team page, nor his money.
    team = world.pia_client.get("/portal/team/").content.decode()
    assert "Sam" not in team
    assert "Nobody has joined through your invite link yet." in team


def test_payout_details_change_only_the_logged_in_promoters_method(objects):
    world, _, _ = objects
    world.sam_client.post("/portal/payout-details/", {"kind": "paypal", "paypal_email": "sam@pay.example.com", "promoter": world.pia.pk})
    assert list(PayoutMethod.objects.values_list("promoter_id", "paypal_email")) == [(world.sam.pk, "sam@pay.example.com")]
