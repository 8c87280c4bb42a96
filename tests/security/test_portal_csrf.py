"""The portal's forms refuse a POST without the CSRF token (403, nothing written) and take
the same POST with it; without DEBUG the session and CSRF cookies are Secure, HttpOnly and
SameSite=Lax (tests/security/test_deploy_checks.py checks the production settings)."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from affiliate.models import ReferralLink
from tests.portal.conftest import make_login

pytestmark = pytest.mark.django_db


def csrf_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
    return client


def form_token(response) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode())[1]


def test_a_portal_form_without_the_csrf_token_is_refused(promoter):
    client = csrf_client(make_login("anna@example.com", promoter=promoter))
    form = {"destination_url": "https://shop.example.com/", "channel": "blog"}

    refused = client.post("/portal/links/", form)

    assert refused.status_code == 403
    assert ReferralLink.objects.count() == 0
    page = client.get("/portal/links/")
    taken = client.post("/portal/links/", {**form, "csrfmiddlewaretoken": form_token(page)})
    assert taken.status_code == 302
    link = ReferralLink.objects.get()
    assert (link.promoter, link.channel, taken["Location"]) == (promoter, "blog", f"/portal/links/{link.code}/")


def test_a_forged_token_is_refused_too(promoter):
    client = csrf_client(make_login("anna@example.com", promoter=promoter))
    client.get("/portal/links/")

    refused = client.post("/portal/links/", {"destination_url": "https://shop.example.com/", "csrfmiddlewaretoken": "x" * 64})

    assert refused.status_code == 403
    assert ReferralLink.objects.count() == 0


def test_the_login_form_wants_the_token(promoter):
    make_login("anna@example.com", promoter=promoter)
    client = Client(enforce_csrf_checks=True)

    assert client.post("/accounts/login/", {"login": "anna@example.com", "password": "a-Long-passw0rd-for-tests"}).status_code == 403
    assert "sessionid" not in client.cookies
    page = client.get("/accounts/login/")
    response = client.post(
        "/accounts/login/",
        {"login": "anna@example.com", "password": "a-Long-passw0rd-for-tests", "csrfmiddlewaretoken": form_token(page)},
    )
    assert (response.status_code, response["Location"]) == (302, "/portal/")
    # The cookies as sent (the suite runs without DEBUG, as production does).
    session = client.cookies["sessionid"]
    assert (session["secure"], session["httponly"], session["samesite"]) == (True, True, "Lax")
    csrf = page.cookies["csrftoken"]
    assert (csrf["secure"], csrf["httponly"], csrf["samesite"]) == (True, True, "Lax")
