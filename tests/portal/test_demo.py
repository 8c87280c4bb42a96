"""load_demo makes a promoter login for the portal and prints it."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from promoters.models import Promoter

pytestmark = pytest.mark.django_db
DEMO_ARGS = ("--promoters", "4", "--days", "2", "--visitors-per-day", "5")


def test_load_demo_makes_one_promoter_login_that_opens_the_portal(settings):
    settings.DEBUG = True
    first, second = StringIO(), StringIO()
    call_command("load_demo", *DEMO_ARGS, stdout=first)
    call_command("load_demo", *DEMO_ARGS, stdout=second)
    user = get_user_model().objects.get(email="promoter@example.com")
    promoter = Promoter.objects.get(user=user)
    assert promoter.status == "active"
    for text in (first.getvalue(), second.getvalue()):
        assert "Promoter portal        http://127.0.0.1:8000/portal/  (email promoter@example.com, password promoter" in text
        assert f"Invite link            http://127.0.0.1:8000/join/{promoter.referral_code}" in text
    client = Client()
    response = client.post("/accounts/login/", {"login": "promoter@example.com", "password": "promoter"})
    assert (response.status_code, response["Location"]) == (302, "/portal/")
    assert f"Hello, {promoter.name}</h1>".encode() in client.get("/portal/").content
