"""load_demo makes a merchant-staff login for the dashboards and prints it."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from merchants.models import MerchantMember

pytestmark = pytest.mark.django_db
DEMO_ARGS = ("--promoters", "4", "--days", "2", "--visitors-per-day", "5")


def test_load_demo_makes_one_staff_login_that_opens_the_merchant_dashboard(settings):
    settings.DEBUG = True
    first, second = StringIO(), StringIO()
    call_command("load_demo", *DEMO_ARGS, stdout=first)
    call_command("load_demo", *DEMO_ARGS, stdout=second)
    member = MerchantMember.objects.select_related("user", "merchant").get()
    assert (member.user.email, member.merchant.name, member.role) == ("merchant@example.com", "Demo Shop", "owner")
    for text in (first.getvalue(), second.getvalue()):
        assert "Merchant dashboard     http://127.0.0.1:8000/merchant/  (email merchant@example.com, password merchant" in text
    client = Client()
    response = client.post("/accounts/login/", {"login": "merchant@example.com", "password": "merchant"})
    assert response.status_code == 302
    page = client.get("/merchant/")
    assert page.status_code == 200
    assert b"Demo Shop" in page.content and b'data-kpi="clicks">' in page.content
    for path in ("/merchant/promoters/", "/merchant/channels/", "/merchant/conversions/", "/merchant/approvals/"):
        assert client.get(path).status_code == 200, path
