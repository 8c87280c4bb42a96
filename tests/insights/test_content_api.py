"""Registering content: the promoter's API (/api/v1/me/content/), the merchant's list
(/api/v1/content/) and the portal page (/portal/content/)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from insights.models import Content
from promoters.services import promoter_api_token_issue
from tests.factories import LinkFactory, PromoterFactory
from tests.portal.conftest import client_logged_in, make_login


def key_client(promoter) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {promoter_api_token_issue(promoter=promoter)}")
    return client


def body(link, **fields):
    return {"title": "Ten camping tips", "text": "Pack light.", "format": "article", "channel": "blog",
            "published_at": "2026-01-10T19:30:00Z", "link": link.pk, **fields}


@pytest.mark.django_db
def test_a_promoter_registers_and_lists_their_content(promoter, link):
    client = key_client(promoter)

    response = client.post("/api/v1/me/content/", body(link), format="json")

    assert response.status_code == 201, response.content
    content = Content.objects.get()
    assert (content.promoter, content.merchant, content.link, content.format) == (promoter, promoter.merchant, link, "article")
    assert response.json() == {
        "id": content.pk, "promoter": promoter.pk, "link": link.pk, "link_code": "annablog",
        "title": "Ten camping tips", "text": "Pack light.", "format": "article", "channel": "blog",
        "published_at": "2026-01-10T19:30:00+00:00", "created_at": content.created_at.isoformat(),
    }
    listed = client.get("/api/v1/me/content/").json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == content.pk
    assert client.get(f"/api/v1/me/content/{content.pk}/").status_code == 200


@pytest.mark.django_db
def test_invalid_content_is_refused_with_field_errors_and_nothing_written(promoter, link):
    client = key_client(promoter)
    future = (timezone.now() + timedelta(hours=2)).isoformat()

    response = client.post("/api/v1/me/content/", body(link, format="podcast", published_at=future, title=""), format="json")

    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert set(fields) == {"format", "published_at", "title"}
    assert fields["published_at"] == ["Must not be in the future."]
    assert client.post("/api/v1/me/content/", {**body(link), "link": "x1", "published_at": "yesterday"}, format="json").json()["error"]["fields"] == {
        "link": ["Must be an integer id."],
        "published_at": ["An ISO 8601 date and time, e.g. 2026-05-01T19:30:00Z."],
    }
    assert client.post("/api/v1/me/content/", body(link, likes=3), format="json").json()["error"]["fields"] == {"likes": ["Unknown field."]}
    assert Content.objects.count() == 0


@pytest.mark.django_db
def test_another_promoters_link_or_content_is_not_reachable(promoter, link, program):
    bob = PromoterFactory(program=program)
    bobs_link = LinkFactory(promoter=bob)
    bobs = Content.objects.create(merchant=program.merchant, promoter=bob, link=bobs_link, title="Bob's",
                                  format="video", published_at=timezone.now())
    client = key_client(promoter)

    response = client.post("/api/v1/me/content/", body(bobs_link), format="json")

    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"link": ["None of your links has this id."]}
    assert Content.objects.count() == 1
    assert client.get(f"/api/v1/me/content/{bobs.pk}/").status_code == 404
    assert client.get("/api/v1/me/content/").json()["count"] == 0


@pytest.mark.django_db
def test_the_promoter_api_wants_a_promoter_key(api, link):
    assert APIClient().get("/api/v1/me/content/").status_code == 401
    assert api.post("/api/v1/me/content/", body(link), format="json").status_code == 401  # a merchant key
    assert Content.objects.count() == 0


@pytest.mark.django_db
def test_a_merchant_lists_their_promoters_content_only(api, other_api, promoter, link):
    content = Content.objects.create(merchant=promoter.merchant, promoter=promoter, link=link, title="Mine",
                                     format="email", published_at=timezone.now())

    listed = api.get("/api/v1/content/").json()

    assert [row["id"] for row in listed["results"]] == [content.pk]
    assert api.get("/api/v1/content/?content_format=video").json()["count"] == 0
    assert other_api.get("/api/v1/content/").json()["count"] == 0
    assert APIClient().get("/api/v1/content/").status_code == 401


@pytest.mark.django_db
def test_the_portal_page_lists_and_registers_content(promoter, link, program):
    client = client_logged_in(make_login("anna@example.com", promoter=promoter))
    bobs_link = LinkFactory(promoter=PromoterFactory(program=program))

    page = client.get("/portal/content/")
    assert page.status_code == 200
    assert b"Register a piece of content" in page.content and b"annablog" in page.content

    form = {"title": "Evening camping", "text": "", "format": "video", "channel": "youtube",
            "published_at": "2026-01-10T20:15", "link": link.pk}
    refused = client.post("/portal/content/", {**form, "link": bobs_link.pk})
    assert refused.status_code == 400 and Content.objects.count() == 0
    done = client.post("/portal/content/", form)
    assert done.status_code == 302
    content = Content.objects.get()
    assert (content.promoter, content.format, content.published_at.hour) == (promoter, "video", 20)
    assert b"Evening camping" in client.get("/portal/content/").content


@pytest.mark.django_db
def test_the_portal_pages_want_a_login():
    assert Client().get("/portal/content/").status_code == 302
    assert Client().get("/portal/materials/").status_code == 302
