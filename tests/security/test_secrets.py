"""Secrets: API keys, postback tokens and promoter keys are stored only as SHA-256 digests
(no table holds one in clear); signatures (the postback's ``sig``, webhook signatures) are
compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from django.db import connection
from django.test import Client

from affiliate.api import postback_signature
from affiliate.models import ConversionEvent, Merchant
from payouts import webhooks
from promoters.models import PromoterApiToken
from promoters.services import promoter_api_token_issue

pytestmark = pytest.mark.django_db


def every_value_in_the_database() -> list[tuple[str, str]]:
    """(table, value) for every non-empty cell of every table, as text."""
    cells = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            for row in cursor.fetchall():
                cells.extend((table, str(value)) for value in row if value not in (None, ""))
    return cells


def tables_holding(cells, secret: str) -> set[str]:
    return {table for table, value in cells if secret in value}


def test_no_table_holds_an_api_key_a_postback_token_or_a_promoter_key_in_clear(merchant, promoter):
    promoter_key = promoter_api_token_issue(promoter=promoter)
    api_key, token = merchant.test_api_key, merchant.test_postback_token
    # The keys work (so they are the real ones)...
    assert Client(HTTP_AUTHORIZATION=f"Bearer {api_key}").get("/api/v1/merchant/").status_code == 200
    assert Client(HTTP_AUTHORIZATION=f"Bearer {promoter_key}").get("/api/v1/me/").status_code == 200

    cells = every_value_in_the_database()

    # ...and only their digests, and a short prefix to recognise them by, are stored.
    stored = Merchant.objects.get(pk=merchant.pk)
    assert stored.api_key_hash == hashlib.sha256(api_key.encode()).hexdigest()
    assert stored.postback_token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert api_key.startswith(stored.api_key_prefix) and len(stored.api_key_prefix) == 12 < len(api_key) == 51
    token_row = PromoterApiToken.objects.get(promoter=promoter)
    assert token_row.key_hash == hashlib.sha256(promoter_key.encode()).hexdigest()
    assert promoter_key.startswith(token_row.prefix) and len(token_row.prefix) == 12
    for secret, prefix in ((api_key, stored.api_key_prefix), (token, ""), (promoter_key, token_row.prefix)):
        assert tables_holding(cells, secret) == set()
        assert tables_holding(cells, secret[len(prefix):]) == set()  # not even its secret part
    # The postback secret is the exception: an HMAC key has to be kept in clear to sign with.
    assert tables_holding(cells, merchant.test_postback_secret) == {"affiliate_merchant"}


@pytest.fixture
def compare_digest_calls(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    return calls


def test_the_postback_signature_is_compared_in_constant_time(merchant, program, compare_digest_calls):
    Merchant.objects.filter(pk=merchant.pk).update(require_signature=True)
    params = {"type": "registration", "customer_id": "c-1"}
    sig = postback_signature(merchant.test_postback_secret, params)
    client = Client()

    wrong = client.get(f"/postback/{merchant.test_postback_token}", {**params, "sig": "0" * 64})
    assert wrong.status_code == 403
    assert ConversionEvent.objects.count() == 0
    assert compare_digest_calls == [(sig.encode(), b"0" * 64)]

    right = client.get(f"/postback/{merchant.test_postback_token}", {**params, "sig": sig.upper()})
    assert right.status_code == 201
    assert compare_digest_calls[1] == (sig.encode(), sig.encode())
    assert ConversionEvent.objects.count() == 1


def test_webhook_signatures_are_compared_in_constant_time(compare_digest_calls):
    body = b'{"id": "x"}'
    header = webhooks.signature_header("whsec_a", 1000, body)
    expected = webhooks.sign("whsec_a", 1000, body)

    assert webhooks.verify_signature("whsec_a", f"t=1000,v1={'f' * 64},v1={expected}", body, now=1000)
    assert compare_digest_calls == [(expected, "f" * 64), (expected, expected)]
    assert not webhooks.verify_signature("whsec_b", header, body, now=1000)
    assert compare_digest_calls[2] == (webhooks.sign("whsec_b", 1000, body), expected)
