"""A promoter sets their own payout details through a signed link the merchant sends them."""

from __future__ import annotations

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from payouts.models import PayoutMethod, PayoutMethodChange
from tests.factories import PromoterFactory

pytestmark = pytest.mark.django_db

IBAN = "DE89370400440532013000"


def link_for(api, promoter) -> str:
    response = api.post(f"/api/v1/promoters/{promoter.pk}/payout-method/link/")
    assert response.status_code == 201
    body = response.json()
    assert body["url"].startswith("http://testserver/payout-details/")
    return body["url"].removeprefix("http://testserver")


def test_the_promoter_sets_a_bank_account(api, promoter):
    path = link_for(api, promoter)
    browser = Client(enforce_csrf_checks=True)
    page = browser.get(path)
    assert page.status_code == 200
    assert "Hello Anna" in page.content.decode()
    token = page.cookies["csrftoken"].value
    saved = browser.post(path, {"kind": "bank", "account_holder": "Anna Berg", "iban": "de89 3704 0044 0532 0130 00", "bic": "", "paypal_email": "left@over.example", "csrfmiddlewaretoken": token})
    assert saved.status_code == 200
    assert "Your payout details are saved" in saved.content.decode()
    method = PayoutMethod.objects.get(promoter=promoter)
    assert (method.kind, method.account_holder, method.iban, method.paypal_email) == ("bank", "Anna Berg", IBAN, "")
    change = PayoutMethodChange.objects.get(promoter=promoter)
    assert change.changed_by == f"promoter:{promoter.pk} (link)"
    assert change.after["iban"].endswith("3000") and IBAN not in str(change.after)
    # The link is spent: the details changed since it was made.
    again = browser.get(path)
    assert again.status_code == 410
    assert "already used" in again.content.decode()


def test_bad_input_is_shown_and_nothing_is_saved(api, promoter):
    path = link_for(api, promoter)
    browser = Client()
    response = browser.post(path, {"kind": "bank", "account_holder": "Anna", "iban": "DE00 1234"})
    assert response.status_code == 400
    assert 'class="error"' in response.content.decode()
    assert not PayoutMethod.objects.filter(promoter=promoter).exists()
    assert not PayoutMethodChange.objects.exists()
    assert browser.get(path).status_code == 200  # still usable


def test_links_expire_and_cannot_be_forged(api, promoter, program):
    path = link_for(api, promoter)
    with time_machine.travel(timezone.now() + timezone.timedelta(days=8)):
        expired = Client().get(path)
    assert expired.status_code == 410
    assert "expired" in expired.content.decode()
    other = PromoterFactory(program=program)
    forged = path.replace(path.split("/")[2], path.split("/")[2][:-2] + "xx")
    assert Client().get(forged).status_code == 410
    assert not PayoutMethod.objects.filter(promoter__in=[promoter, other]).exists()


def test_only_the_merchant_of_the_promoter_gets_a_link(other_api, promoter):
    response = other_api.post(f"/api/v1/promoters/{promoter.pk}/payout-method/link/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
