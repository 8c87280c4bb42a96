"""One error shape everywhere under /api/ and /postback/, and merchant authentication."""

import json

import pytest
from django.db import OperationalError
from rest_framework.test import APIClient

from affiliate.models import ConversionEvent
from merchants.auth import digest
from merchants.models import Merchant

pytestmark = pytest.mark.django_db


def shape(response, status, code):
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def test_missing_key_is_401(program):
    error = shape(APIClient().get("/api/v1/programs/"), 401, "not_authenticated")
    assert error["fields"] == {}


def test_wrong_key_is_401_with_bearer_challenge(program):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer mk_live_wrong")
    response = client.get("/api/v1/programs/")
    shape(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"] == "Bearer"


def test_malformed_authorization_header_is_401(merchant):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {merchant.test_api_key}")
    shape(client.get("/api/v1/programs/"), 401, "authentication_failed")


def test_keys_are_stored_hashed(merchant):
    stored = Merchant.objects.get(pk=merchant.pk)
    assert stored.api_key_hash == digest(merchant.test_api_key)
    assert merchant.test_api_key not in (stored.api_key_hash, stored.api_key_prefix)
    assert stored.postback_token_hash == digest(merchant.test_postback_token)


def test_malformed_json_is_400(api, program):
    response = api.post("/api/v1/events/", data="{not json", content_type="application/json")
    shape(response, 400, "malformed_json")
    assert ConversionEvent.objects.count() == 0


def test_a_json_array_is_400(api, program):
    response = api.post("/api/v1/events/", data="[1, 2]", content_type="application/json")
    error = shape(response, 400, "invalid")
    assert error["fields"] == {"non_field_errors": ["The body must be a JSON object."]}


def test_nan_is_refused(api, program):
    body = '{"type": "purchase", "customer_id": "c", "order_id": "o", "amount": NaN}'
    shape(api.post("/api/v1/events/", data=body, content_type="application/json"), 400, "malformed_json")


def test_oversized_body_is_413_and_nothing_written(api, program, settings):
    payload = {"type": "registration", "customer_id": "c1", "padding": "x" * (settings.API_MAX_BODY_BYTES + 1)}
    response = api.post("/api/v1/events/", data=json.dumps(payload), content_type="application/json")
    shape(response, 413, "payload_too_large")
    assert ConversionEvent.objects.count() == 0


def test_form_encoded_body_is_415(api, program):
    response = api.post("/api/v1/events/", data="type=registration", content_type="application/x-www-form-urlencoded")
    shape(response, 415, "unsupported_media_type")


def test_unknown_api_path_is_a_json_404(api):
    shape(api.get("/api/v1/nothing-here/"), 404, "not_found")
    shape(APIClient().get("/api/v2/"), 404, "not_found")


def test_unknown_object_is_a_json_404(api, program):
    shape(api.get("/api/v1/events/999999/"), 404, "not_found")
    shape(api.get("/api/v1/promoters/abc/"), 404, "not_found")


def test_wrong_method_is_405(api, program):
    shape(api.delete("/api/v1/events/"), 405, "method_not_allowed")
    shape(api.put("/api/v1/merchant/", {}, format="json"), 405, "method_not_allowed")


def test_database_down_is_503_with_retry_after(api, program, monkeypatch):
    from affiliate import events

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(events, "clean_event", lambda *a, **k: down())
    response = api.post("/api/v1/events/", {"type": "registration", "customer_id": "c1"}, format="json")
    shape(response, 503, "service_unavailable")
    assert response["Retry-After"] == "5"


def test_html_404_outside_the_api(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


def test_merchant_settings_read_and_update(api, other_api, merchant):
    assert api.get("/api/v1/merchant/").json() == {"id": merchant.pk, "name": "Acme Shop", "domains": ["shop.example.com"], "require_signature": False}
    response = api.patch("/api/v1/merchant/", {"domains": ["shop.example.com", "Blog.Example.com"], "require_signature": True}, format="json")
    assert response.json() == {"id": merchant.pk, "name": "Acme Shop", "domains": ["shop.example.com", "blog.example.com"], "require_signature": True}
    assert other_api.get("/api/v1/merchant/").json()["name"] == "Other Shop"


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"domains": []}, {"domains": ["Give at least one domain."]}),
        ({"domains": ["https://shop.example.com/"]}, {"domains": ["'https://shop.example.com/' is not a bare host name; write shop.example.com."]}),
        ({"domains": ["bad_host!"]}, {"domains": ["'bad_host!' is not a valid host name."]}),
        ({"require_signature": "yes"}, {"require_signature": ["Must be true or false."]}),
        ({"name": " "}, {"name": ["A name is required."]}),
    ],
)
def test_invalid_merchant_settings_change_nothing(api, merchant, payload, fields):
    response = api.patch("/api/v1/merchant/", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == fields
    stored = Merchant.objects.get(pk=merchant.pk)
    assert (stored.name, stored.domains, stored.require_signature) == ("Acme Shop", ["shop.example.com"], False)
