import pytest

from affiliate.models import ReferralLink
from tests.factories import ProgramFactory, PromoterFactory

pytestmark = pytest.mark.django_db


def test_create_link_returns_code_and_absolute_url(api, promoter):
    response = api.post("/api/v1/links/", {"promoter": promoter.pk, "destination_url": "https://shop.example.com/p/1", "channel": "YouTube Shorts"}, format="json")
    assert response.status_code == 201
    link = ReferralLink.objects.get()
    assert response.json() == {
        "id": link.pk, "promoter": promoter.pk, "program": promoter.program_id,
        "destination_url": "https://shop.example.com/p/1", "channel": "YouTube Shorts", "code": link.code,
        "url": f"http://testserver/r/{link.code}", "created_at": link.created_at.isoformat(),
    }


@pytest.mark.parametrize("url", ["https://shop.example.com/", "http://www.shop.example.com/x?y=1", "https://SHOP.example.com./a"])
def test_the_merchants_domains_and_their_subdomains_are_allowed(api, promoter, url):
    assert api.post("/api/v1/links/", {"promoter": promoter.pk, "destination_url": url}, format="json").status_code == 201


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://evil.example.org/", "The host evil.example.org is not one of the merchant's domains (shop.example.com)."),
        ("https://shop.example.com.evil.org/", "The host shop.example.com.evil.org is not one of the merchant's domains (shop.example.com)."),
        ("https://notshop.example.com/", "The host notshop.example.com is not one of the merchant's domains (shop.example.com)."),
        ("https://shop.example.com@evil.org/", "The host evil.org is not one of the merchant's domains (shop.example.com)."),
        ("ftp://shop.example.com/", "The URL must be absolute and use http or https."),
        ("javascript:alert(1)", "The URL must be absolute and use http or https."),
        ("/p/1", "The URL must be absolute and use http or https."),
        ("https://shop.example.com/a b", "The URL must not contain spaces or line breaks and must fit in 2048 characters."),
        ("", "Give an absolute http(s) URL."),
    ],
)
def test_other_destinations_are_400_on_destination_url(api, promoter, url, problem):
    response = api.post("/api/v1/links/", {"promoter": promoter.pk, "destination_url": url}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"destination_url": [problem]}
    assert ReferralLink.objects.count() == 0


def test_another_merchants_promoter_is_400(api, program, other_merchant):
    foreign = PromoterFactory(program=ProgramFactory(merchant=other_merchant))
    response = api.post("/api/v1/links/", {"promoter": foreign.pk, "destination_url": "https://shop.example.com/"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"promoter": ["No object with this id."]}
    assert ReferralLink.objects.count() == 0


def test_links_are_listed_per_merchant(api, other_api, promoter):
    api.post("/api/v1/links/", {"promoter": promoter.pk, "destination_url": "https://shop.example.com/", "channel": "blog"}, format="json")
    api.post("/api/v1/links/", {"promoter": promoter.pk, "destination_url": "https://shop.example.com/", "channel": "podcast"}, format="json")
    assert api.get("/api/v1/links/").json()["count"] == 2
    assert [r["channel"] for r in api.get("/api/v1/links/?channel=podcast").json()["results"]] == ["podcast"]
    assert other_api.get("/api/v1/links/").json()["count"] == 0
    assert other_api.get(f"/api/v1/links/{ReferralLink.objects.first().pk}/").status_code == 404


def test_tracking_base_url_setting(api, promoter, settings):
    settings.TRACKING_BASE_URL = "https://go.example.net"
    body = api.post("/api/v1/links/", {"promoter": promoter.pk, "destination_url": "https://shop.example.com/"}, format="json").json()
    assert body["url"] == f"https://go.example.net/r/{body['code']}"
