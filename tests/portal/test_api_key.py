"""The promoter's own read-only API and the portal page that makes its key."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from promoters.models import PromoterApiToken
from promoters.services import promoter_key_digest

pytestmark = pytest.mark.django_db


def make_key(client) -> str:
    response = client.post("/portal/api-key/", {"action": "create"})
    assert response.status_code == 200
    return re.search(r'id="new-key" type="text" value="(pt_live_[^"]+)"', response.content.decode()).group(1)


def api(key: str | None) -> APIClient:
    client = APIClient()
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def test_the_key_is_shown_once_and_kept_as_a_digest(sold):
    key = make_key(sold.pia_client)
    token = PromoterApiToken.objects.get(promoter=sold.pia)
    assert (token.key_hash, token.prefix) == (promoter_key_digest(key), key[:12])
    page = sold.pia_client.get("/portal/api-key/").content.decode()
    assert key not in page
    assert f"Your key starting <code>{key[:12]}</code>" in page


def test_the_api_reads_the_promoters_own_figures(sold):
    key = make_key(sold.pia_client)
    me = api(key).get("/api/v1/me/")
    assert me.status_code == 200
    assert me.json() == {
        "id": sold.pia.pk, "name": "Pia", "email": sold.pia.email, "program": sold.pia.program_id, "status": "active",
        "referral_code": sold.pia.referral_code,
        "balance": {"currency": "USD", "pending": "10.00", "available": "0.00", "paid": "0.00"},
    }
    summary = api(key).get("/api/v1/me/summary/").json()
    assert summary["totals"] == {"clicks": 1, "registrations": 1, "purchases": 1, "conversion_rate": "100.0%", "earned": "10.00"}
    rows = api(key).get("/api/v1/me/commissions/").json()
    assert rows["count"] == 1
    assert [(r["kind"], r["level"], r["amount"], r["status"]) for r in rows["results"]] == [("direct", 0, "10.00", "pending")]
    assert api(key).get("/api/v1/me/commissions/", {"status": "approved"}).json()["count"] == 0
    assert api(key).get("/api/v1/me/commissions/", {"status": "nonsense"}).status_code == 400


def test_each_key_reads_only_its_promoter(sold):
    sam_key = make_key(sold.sam_client)
    rows = api(sam_key).get("/api/v1/me/commissions/").json()["results"]
    assert [(r["kind"], r["level"], r["amount"]) for r in rows] == [("override", 1, "5.00")]
    assert api(sam_key).get("/api/v1/me/").json()["id"] == sold.sam.pk


@pytest.mark.parametrize("header", [None, "Bearer pt_live_wrong", "Bearer", "Token x"])
def test_no_key_or_a_wrong_key_is_401(sold, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    for path in ("/api/v1/me/", "/api/v1/me/summary/", "/api/v1/me/commissions/"):
        assert client.get(path).status_code == 401, path


def test_keys_do_not_cross_between_the_merchant_api_and_the_promoter_api(sold):
    key = make_key(sold.pia_client)
    assert api(key).get("/api/v1/promoters/").status_code == 401
    assert api(sold.w.merchant.test_api_key).get("/api/v1/me/").status_code == 401


def test_the_api_is_read_only(sold):
    key = make_key(sold.pia_client)
    assert api(key).post("/api/v1/me/commissions/", {}, format="json").status_code == 405


def test_a_new_key_replaces_the_old_and_revoking_ends_it(sold):
    old = make_key(sold.pia_client)
    new = make_key(sold.pia_client)
    assert api(old).get("/api/v1/me/").status_code == 401
    assert api(new).get("/api/v1/me/").status_code == 200
    response = sold.pia_client.post("/portal/api-key/", {"action": "revoke"})
    assert (response.status_code, response["Location"]) == (302, "/portal/api-key/")
    assert api(new).get("/api/v1/me/").status_code == 401
    assert not PromoterApiToken.objects.exists()


def test_an_unknown_action_writes_nothing(sold):
    assert sold.pia_client.post("/portal/api-key/", {"action": "drop"}).status_code == 400
    assert not PromoterApiToken.objects.exists()


def test_the_commission_list_runs_a_fixed_number_of_queries(sold, django_assert_num_queries):
    key = make_key(sold.pia_client)
    client = api(key)
    with django_assert_num_queries(3):  # the key, the count, the page
        client.get("/api/v1/me/commissions/")
    for i in range(5):
        sold.sale(customer=f"q{i}", order=f"q{i}", amount="10.00")
    with django_assert_num_queries(3):
        assert client.get("/api/v1/me/commissions/").json()["count"] == 6
