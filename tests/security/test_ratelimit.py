"""Rate limits (affiliate/ratelimit.py): per API key and per IP on the API, per IP on the
postback and the redirect; beyond them a 429 with Retry-After and the contract's error body, nothing
written; the WSGI fast paths answer the very 429 Django answers and count a request once."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from affiliate import ratelimit
from affiliate.models import Click, ConversionEvent
from promoters.services import promoter_api_token_issue
from tests.factories import PromoterFactory

THROTTLED_30 = {"error": {"code": "throttled", "message": "Too many requests; retry in 30 seconds.", "fields": {}}}


def assert_throttled(response, seconds: int = 30) -> None:
    assert response.status_code == 429, response.content[:300]
    assert response["Retry-After"] == str(seconds)
    assert response["Content-Type"] == "application/json"
    plural = "s" if seconds != 1 else ""
    assert response.json() == {
        "error": {"code": "throttled", "message": f"Too many requests; retry in {seconds} second{plural}.", "fields": {}}
    }


# --- The counter ------------------------------------------------------------------------


def test_a_bucket_lets_a_windows_worth_through_then_refills_continuously(clock):
    buckets = ratelimit.Buckets(3, 60)  # one request every 20 s, three at once

    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == 20.0
    assert buckets.take("b") == 0.0  # another key has its own bucket
    clock.now += 5
    assert buckets.take("a") == 15.0  # a refused request takes nothing
    clock.now += 15
    assert buckets.take("a") == 0.0
    assert buckets.take("a") == 20.0
    clock.now += 3600
    assert [buckets.take("a") for _ in range(4)] == [0.0, 0.0, 0.0, 20.0]  # never more than the limit at once


def test_full_buckets_are_dropped_when_there_are_too_many(clock, monkeypatch):
    monkeypatch.setattr(ratelimit, "MAX_BUCKETS", 3)
    buckets = ratelimit.Buckets(2, 60)
    buckets.take("busy")
    buckets.take("busy")
    buckets.take("idle-1")
    buckets.take("idle-2")
    clock.now += 30  # the idle ones are full again, "busy" is not
    buckets.take("fresh")  # the fourth: the full ones go

    assert sorted(buckets._buckets) == ["busy", "fresh"]
    assert buckets.take("busy") == 0.0
    assert buckets.take("busy") == 30.0  # its count was kept


def test_retry_after_is_whole_seconds_and_at_least_one():
    assert [ratelimit.retry_after(w) for w in (0.01, 1.0, 1.2, 29.99, 30.0)] == [1, 1, 2, 30, 30]


# --- Django's answers ---------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_is_limited_per_key(limits, merchant, other_merchant, program):
    ours = APIClient(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")
    theirs = APIClient(HTTP_AUTHORIZATION=f"Bearer {other_merchant.test_api_key}")

    assert [ours.get("/api/v1/merchant/").status_code for _ in range(2)] == [200, 200]
    throttled = ours.post(
        "/api/v1/events/", {"type": "registration", "customer_id": "c-1"}, format="json"
    )

    assert_throttled(throttled)
    assert ConversionEvent.objects.count() == 0
    assert theirs.get("/api/v1/merchant/").status_code == 200  # another key, another count
    assert APIClient().get("/api/v1/merchant/").status_code == 401  # no key: not counted, not refused
    assert APIClient(HTTP_AUTHORIZATION="Bearer wrong").get("/api/v1/merchant/").status_code == 401
    # The whole 429 as Django sends it: the error body and SecurityMiddleware's headers.
    assert list(throttled.items()) == [
        ("Content-Type", "application/json"),
        ("Retry-After", "30"),
        ("Content-Length", str(len(json.dumps(THROTTLED_30)))),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]


def test_the_api_is_limited_per_ip_whatever_the_keys(limits, merchant, program):
    """One address trying key after key: each wrong key has a fresh count of its own, the
    address has one; past it even a valid key is refused from there, and nothing is written."""
    limits.RATE_LIMIT_API_PER_IP = 3
    guesses = [APIClient(HTTP_AUTHORIZATION=f"Bearer guess-{n}").get("/api/v1/merchant/").status_code for n in range(2)]
    no_key = APIClient().get("/api/v1/merchant/").status_code
    valid = APIClient(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")
    refused = valid.post("/api/v1/events/", {"type": "registration", "customer_id": "c-1"}, format="json")

    assert (guesses, no_key) == ([401, 401], 401)
    assert_throttled(refused, seconds=20)  # a third of a minute: the next of 3 per 60 s
    assert ConversionEvent.objects.count() == 0
    # Another address has its own count; the merchant's key still has room in its own
    elsewhere = APIClient(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}", REMOTE_ADDR="198.51.100.9")
    assert elsewhere.get("/api/v1/merchant/").status_code == 200


@pytest.mark.django_db
def test_a_promoter_key_is_limited_on_its_own(limits, merchant, promoter):
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {promoter_api_token_issue(promoter=promoter)}")
    other = APIClient(HTTP_AUTHORIZATION=f"Bearer {promoter_api_token_issue(promoter=PromoterFactory(program=promoter.program))}")

    assert [client.get("/api/v1/me/").status_code for _ in range(2)] == [200, 200]
    assert_throttled(client.get("/api/v1/me/content/"))
    assert other.get("/api/v1/me/").status_code == 200


@pytest.mark.django_db
def test_after_retry_after_the_key_may_call_again(limits, clock, merchant):
    client = APIClient(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")
    client.get("/api/v1/merchant/")
    client.get("/api/v1/merchant/")
    assert_throttled(client.get("/api/v1/merchant/"))

    clock.now += 29.5  # half a request refilled: half a second to go, rounded up
    assert_throttled(client.get("/api/v1/merchant/"), seconds=1)
    clock.now += 1
    assert client.get("/api/v1/merchant/").status_code == 200
    assert_throttled(client.get("/api/v1/merchant/"))  # 29.5 s to go


@pytest.mark.django_db
def test_the_postback_is_limited_per_ip_and_a_refused_one_writes_nothing(limits, merchant, program):
    client = Client()

    def postback(customer: str, ip: str = "203.0.113.5"):
        return client.get(f"/postback/{merchant.test_postback_token}?type=registration&customer_id={customer}", REMOTE_ADDR=ip)

    assert [postback("c-1").status_code, postback("c-2").status_code] == [201, 201]
    assert_throttled(postback("c-3"))
    assert_throttled(client.get(f"/postback/{merchant.test_postback_token}/?type=registration&customer_id=c-3", REMOTE_ADDR="203.0.113.5"))
    assert sorted(ConversionEvent.objects.values_list("customer__external_id", flat=True)) == ["c-1", "c-2"]
    assert postback("c-4", ip="198.51.100.7").status_code == 201  # another IP


@pytest.mark.django_db
def test_the_redirect_is_limited_per_ip_and_a_refused_one_records_no_click(limits, link):
    client = Client()

    assert [client.get("/r/annablog", REMOTE_ADDR="203.0.113.5").status_code for _ in range(2)] == [302, 302]
    throttled = client.get("/r/annablog", REMOTE_ADDR="203.0.113.5")

    assert_throttled(throttled)
    assert "Set-Cookie" not in throttled and "Location" not in throttled
    assert Click.objects.count() == 2
    assert client.get("/r/annablog", REMOTE_ADDR="198.51.100.7").status_code == 302
    assert Click.objects.count() == 3


@pytest.mark.django_db
def test_behind_a_proxy_the_client_ip_is_counted(limits, settings, link):
    settings.TRUSTED_PROXY_COUNT = 1
    client = Client(REMOTE_ADDR="10.0.0.1")  # the proxy

    assert client.get("/r/annablog", HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 302
    assert client.get("/r/annablog", HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 302
    assert_throttled(client.get("/r/annablog", HTTP_X_FORWARDED_FOR="203.0.113.5"))
    assert client.get("/r/annablog", HTTP_X_FORWARDED_FOR="203.0.113.6").status_code == 302


@pytest.mark.django_db
def test_a_limit_of_zero_is_off(limits, settings, link):
    settings.RATE_LIMIT_REDIRECT_PER_IP = 0

    assert {Client().get("/r/annablog").status_code for _ in range(5)} == {302}


@pytest.mark.django_db
def test_other_paths_are_not_counted(limits, client):
    assert {client.get("/healthz").status_code for _ in range(5)} == {200}
    assert {client.get("/api/v1/schema/").status_code for _ in range(3)} == {200}  # no key


def test_the_defaults_let_the_benchmarks_through():
    """The credit bench: 700 events/s from one key for 20 s and 100/s for 60 s; the redirect
    bench: up to ~3,000 clicks/s from 127.0.0.1 for 10 s per kind of traffic, 4 workers."""
    from django.conf import settings

    assert settings.RATE_LIMIT_WINDOW_SECONDS == 60
    assert settings.RATE_LIMIT_API_PER_KEY == 100_000
    assert settings.RATE_LIMIT_API_PER_IP == 200_000
    assert settings.RATE_LIMIT_POSTBACK_PER_IP == 100_000
    assert settings.RATE_LIMIT_REDIRECT_PER_IP == 300_000
    assert settings.MIDDLEWARE.index("affiliate.ratelimit.RateLimitMiddleware") == (
        settings.MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1
    )
    assert settings.MIDDLEWARE.index("affiliate.ratelimit.RateLimitMiddleware") < settings.MIDDLEWARE.index(
        "affiliate.views.TrackRedirectMiddleware"
    )


def test_every_operation_of_the_schema_documents_the_429():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = {
        f"{method.upper()} {path}": operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }

    assert len(operations) > 30
    assert sorted(label for label, op in operations.items() if "429" not in op["responses"]) == []
    assert operations["GET /postback/{token}"]["responses"]["429"] == {
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        "description": "Throttled",
    }
