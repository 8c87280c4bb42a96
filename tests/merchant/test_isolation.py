"""A merchant sees only their own programs: every object URL of the merchant pages answers
404 to another merchant's staff, a login on no merchant's staff (a promoter's) gets 403 on
every page, and nobody logged out gets past the login page."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client

from dashboards import urls as merchant_urls
from merchants.models import Program
from promoters import services as promoter_services
from promoters.models import Promoter
from tests.conftest import client_for
from tests.merchant.world import staff_login
from tests.portal.conftest import client_logged_in, make_login

pytestmark = pytest.mark.django_db


@pytest.fixture
def theirs(other):
    """The other merchant's program, a conversion and a promoter awaiting approval, and a login
    on their staff."""
    merchant, program = other
    program.join_requires_approval = True
    program.save()
    sponsor = promoter_services.promoter_create(merchant=merchant, program=program, email="s@other.example.net", name="Their sponsor")
    pending = promoter_services.promoter_join(sponsor=sponsor, user=make_login("p@other.example.net"), name="Their pending")
    response = client_for(merchant).post("/api/v1/events/", {"type": "registration", "customer_id": "their-c1"}, format="json")
    assert response.status_code == 201, response.content
    return {
        "merchant": merchant, "program": program, "pending": pending, "event_id": response.json()["id"],
        "client": client_logged_in(staff_login("staff@other.example.net", merchant)),
    }


def test_every_object_url_of_the_merchant_pages_is_covered():
    with_ids = {p.name for p in merchant_urls.urlpatterns if p.pattern.converters}
    assert with_ids == {"conversion", "program-settings", "approval-decide", "review-decide"}


def object_urls(world, theirs) -> dict[str, str]:
    """Each object URL of our merchant and of the other, by name."""
    ours_pending = promoter_services.promoter_join(sponsor=world.pia, user=make_login("ann@example.com"), name="Ann")
    return {
        "ours": {
            "conversion": f"/merchant/conversions/{world.o1['id']}/",
            "program-settings": f"/merchant/programs/{world.program.pk}/settings/",
            "approval-decide": f"/merchant/approvals/{ours_pending.pk}/",
            "review-decide": f"/merchant/review/{world.o1['id']}/",
        },
        "theirs": {
            "conversion": f"/merchant/conversions/{theirs['event_id']}/",
            "program-settings": f"/merchant/programs/{theirs['program'].pk}/settings/",
            "approval-decide": f"/merchant/approvals/{theirs['pending'].pk}/",
            "review-decide": f"/merchant/review/{theirs['event_id']}/",
        },
    }


def test_another_merchants_objects_are_404_and_nothing_changes(world, theirs):
    world.program.join_requires_approval = True
    world.program.save()
    urls = object_urls(world, theirs)
    program_before = Program.objects.values().get(pk=theirs["program"].pk)
    for name, url in urls["theirs"].items():
        if name not in ("approval-decide", "review-decide"):
            assert theirs["client"].get(url).status_code == 200, name  # their own staff opens them
            assert world.client.get(url).status_code == 404, name
    assert b"Not processed yet" in theirs["client"].get(urls["theirs"]["conversion"]).content  # queued: no worker ran
    settings = urls["theirs"]["program-settings"]
    assert world.client.post(settings, {"name": "Hijacked", "currency": "EUR"}).status_code == 404
    for action in ("approve", "reject"):
        assert world.client.post(urls["theirs"]["approval-decide"], {"action": action}).status_code == 404
    for action in ("clear", "reject"):
        assert world.client.post(urls["theirs"]["review-decide"], {"action": action}).status_code == 404
    assert Program.objects.values().get(pk=theirs["program"].pk) == program_before
    assert Promoter.objects.get(pk=theirs["pending"].pk).status == "pending"
    # And the other way round: their staff cannot reach ours.
    for name, url in urls["ours"].items():
        if name in ("approval-decide", "review-decide"):
            assert theirs["client"].post(url, {"action": "approve" if name == "approval-decide" else "clear"}).status_code == 404
        else:
            assert theirs["client"].get(url).status_code == 404, name
    assert Promoter.objects.get(name="Ann").status == "pending"
    assert not LogEntry.objects.exists()


def test_another_merchants_program_as_a_filter_is_404(world, theirs):
    other_program = theirs["program"].pk
    for path in ("/merchant/", "/merchant/promoters/", "/merchant/channels/", "/merchant/conversions/"):
        assert world.client.get(path, {"program": other_program}).status_code == 404, path
        assert world.client.get(path, {"program": world.program.pk}).status_code == 200, path


def test_lists_show_only_the_merchants_own_rows(world, theirs):
    conversions = world.client.get("/merchant/conversions/").content.decode()
    assert "their-c1" not in conversions and "c1" in conversions
    assert "their-c1" not in world.client.get("/merchant/conversions/", {"q": str(theirs["event_id"])}).content.decode()
    assert "Their pending" not in world.client.get("/merchant/approvals/").content.decode()
    assert "Their pending" in theirs["client"].get("/merchant/approvals/").content.decode()
    programs = world.client.get("/merchant/programs/").content.decode()
    assert "Theirs" not in programs and "Default" in programs
    # The other merchant has no traffic: their overview shows zeros, not ours.
    overview = theirs["client"].get("/merchant/").content.decode()
    assert 'data-kpi="clicks">0</span>' in overview and 'data-kpi="revenue">0.00</span>' in overview


def every_page(world) -> list[tuple[str, str]]:
    return [
        ("get", "/merchant/"), ("get", "/merchant/promoters/"), ("get", "/merchant/channels/"),
        ("get", "/merchant/conversions/"), ("get", f"/merchant/conversions/{world.o1['id']}/"),
        ("get", "/merchant/programs/"), ("get", f"/merchant/programs/{world.program.pk}/settings/"),
        ("post", f"/merchant/programs/{world.program.pk}/settings/"), ("get", "/merchant/approvals/"),
        ("post", f"/merchant/approvals/{world.pia.pk}/"), ("post", "/merchant/switch/"),
        ("get", "/merchant/review/"), ("post", f"/merchant/review/{world.o1['id']}/"),
        ("get", "/merchant/insights/"), ("get", "/merchant/insights/segments/"), ("get", "/merchant/insights/content/"),
    ]


def test_every_page_is_listed():
    assert len(merchant_urls.urlpatterns) == 15  # every_page covers each, settings with GET and POST


def test_a_promoters_login_gets_403_on_every_merchant_page(world):
    promoter_client = client_logged_in(make_login("pia@example.com", promoter=world.pia))
    before = Program.objects.values().get(pk=world.program.pk)
    for method, path in every_page(world):
        response = getattr(promoter_client, method)(path, {"action": "reject", "name": "x"} if method == "post" else {})
        assert response.status_code == 403, path
    assert b"Not a merchant's staff" in promoter_client.get("/merchant/").content
    assert Program.objects.values().get(pk=world.program.pk) == before
    assert Promoter.objects.get(pk=world.pia.pk).status == "active"


def test_logged_out_every_page_asks_for_the_login(world):
    anonymous = Client()
    for method, path in every_page(world):
        response = getattr(anonymous, method)(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/login/?next=/merchant/"), path


def test_a_member_of_two_merchants_switches_between_them_and_not_to_a_third(world, theirs):
    both = staff_login("both@example.com", world.merchant, role="owner")
    from merchants.models import MerchantMember

    MerchantMember.objects.create(user=both, merchant=theirs["merchant"])
    client = client_logged_in(both)
    assert 'data-kpi="clicks">7</span>' in client.get("/merchant/").content.decode()
    assert client.post("/merchant/switch/", {"merchant": theirs["merchant"].pk}).status_code == 302
    page = client.get("/merchant/").content.decode()
    assert 'data-kpi="clicks">0</span>' in page and "Other Shop" in page
    assert client.get(f"/merchant/conversions/{theirs['event_id']}/").status_code == 200
    assert client.get(f"/merchant/conversions/{world.o1['id']}/").status_code == 404
    # A merchant the login is not a member of cannot be switched to.
    assert world.client.post("/merchant/switch/", {"merchant": theirs["merchant"].pk}).status_code == 404
    assert world.client.post("/merchant/switch/", {"merchant": "x"}).status_code == 404
    assert 'data-kpi="clicks">7</span>' in world.client.get("/merchant/").content.decode()
