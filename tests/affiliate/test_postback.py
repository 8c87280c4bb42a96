"""GET /postback/<token>: the same event as the JSON API, for platforms that fire a URL."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlencode

import pytest
from django.test import Client

from affiliate.api import postback_signature
from affiliate.models import ConversionEvent, Customer

pytestmark = pytest.mark.django_db


@pytest.fixture
def get(django_capture_on_commit_callbacks):
    client = Client()

    def _get(path, **headers):
        with django_capture_on_commit_callbacks(execute=True):
            return client.get(path, **headers)

    return _get


def url(merchant, query: str, slash: bool = False) -> str:
    return f"/postback/{merchant.test_postback_token}{'/' if slash else ''}?{query}"


def test_postback_records_the_same_event_as_the_api(get, merchant, program, api):
    response = get(url(merchant, "type=purchase&customer_id=cust-42&order_id=A-1001&amount=120.00"))
    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    body = response.json()
    event = ConversionEvent.objects.get()
    assert (body["id"], body["type"], body["stage"], body["amount"], body["customer_id"]) == (
        event.pk, "purchase", "first_purchase", "120.00", "cust-42",
    )
    assert event.source == "postback"
    # The JSON API sees the very same event as a repeat.
    again = api.post("/api/v1/events/", {"type": "purchase", "customer_id": "cust-42", "order_id": "A-1001", "amount": "120.00"}, format="json")
    assert again.status_code == 200
    assert again.json()["id"] == event.pk


def test_trailing_slash_and_any_accept_header(get, merchant, program):
    first = get(url(merchant, "type=registration&customer_id=c1", slash=True), HTTP_ACCEPT="text/html")
    again = get(url(merchant, "type=registration&customer_id=c1"), HTTP_ACCEPT="image/png")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first["Content-Type"] == again["Content-Type"] == "application/json"
    assert again.json()["id"] == first.json()["id"]


def test_postback_errors_have_the_api_shape(get, merchant, program):
    response = get(url(merchant, "type=purchase&customer_id=c1&order_id=o1"))
    assert response.status_code == 400
    assert response.json() == {
        "error": {"code": "invalid", "message": "The request is not valid; see fields.", "fields": {"amount": ["This field is required for a purchase."]}}
    }
    assert ConversionEvent.objects.count() == 0
    assert Customer.objects.count() == 0


def test_unknown_token_is_a_json_404(get, program):
    response = get("/postback/not-a-token?type=registration&customer_id=c1")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Unknown postback token.", "fields": {}}}
    assert ConversionEvent.objects.count() == 0


def test_signature_is_hmac_sha256_over_sorted_decoded_params(merchant):
    # Computed by hand: sorted names, URL-decoded values, joined with &.
    message = "amount=120.00&customer_id=jo smith&order_id=A/1&type=purchase"
    expected = hmac.new(merchant.test_postback_secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    params = {"type": "purchase", "order_id": "A/1", "customer_id": "jo smith", "amount": "120.00", "sig": "ignored"}
    assert postback_signature(merchant.test_postback_secret, params) == expected


@pytest.fixture
def signing(merchant):
    merchant.require_signature = True
    merchant.save()
    return merchant


def signed_query(secret: str, params: dict, *, sig: str | None = None) -> str:
    message = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params = {**params, "sig": sig or hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()}
    return urlencode(params, quote_via=quote)


def test_signed_postback_is_accepted(get, signing, program):
    params = {"type": "purchase", "customer_id": "jo smith+1", "order_id": "A/1", "amount": "120.00"}
    response = get(url(signing, signed_query(signing.test_postback_secret, params)))
    assert response.status_code == 201
    assert response.json()["customer_id"] == "jo smith+1"


def test_uppercase_hex_signature_is_accepted(get, signing, program):
    params = {"type": "registration", "customer_id": "c1"}
    message = "customer_id=c1&type=registration"
    sig = hmac.new(signing.test_postback_secret.encode(), message.encode(), hashlib.sha256).hexdigest().upper()
    assert get(url(signing, signed_query(signing.test_postback_secret, params, sig=sig))).status_code == 201


@pytest.mark.parametrize("sig", [None, "", "00" * 32, "not-hex"])
def test_missing_or_wrong_signature_is_403_and_writes_nothing(get, signing, program, sig):
    query = "type=registration&customer_id=c1" + ("" if sig is None else f"&sig={sig}")
    response = get(url(signing, query))
    assert response.status_code == 403
    assert response.json() == {"error": {"code": "invalid_signature", "message": "The sig parameter is missing or wrong.", "fields": {}}}
    assert ConversionEvent.objects.count() == 0
    assert Customer.objects.count() == 0


def test_signature_over_other_values_is_refused(get, signing, program):
    params = {"type": "purchase", "customer_id": "c1", "order_id": "o1", "amount": "10.00"}
    query = signed_query(signing.test_postback_secret, params).replace("amount=10.00", "amount=99.00")
    assert get(url(signing, query)).status_code == 403
    assert ConversionEvent.objects.count() == 0


def test_without_require_signature_a_sig_is_not_needed(get, merchant, program):
    assert get(url(merchant, "type=registration&customer_id=c1&sig=whatever")).status_code == 201
    assert ConversionEvent.objects.get().payload == {"type": "registration", "customer_id": "c1"}


def test_postback_accepts_get_only(merchant, program):
    response = Client().post(url(merchant, "type=registration&customer_id=c1"))
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert ConversionEvent.objects.count() == 0
