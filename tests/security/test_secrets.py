"""Secrets: API keys, postback tokens and promoter keys are stored only as SHA-256 digests
(no table holds one in clear); the secrets that must be read back (postback HMAC secrets,
webhook signing secrets) are stored encrypted with FIELD_ENCRYPTION_KEYS (core/crypto.py),
rotated by ``manage.py rotate_secrets``, and the app refuses to start without the keys when
DEBUG is off; signatures (the postback's ``sig``, webhook signatures) are compared in constant
time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib
import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.exceptions import FieldError, ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import RunPython
from django.test import Client

from affiliate.api import postback_signature
from affiliate.models import ConversionEvent
from core import crypto
from merchants.models import Merchant
from payouts import webhooks
from payouts.models import WebhookEndpoint
from promoters.models import PromoterApiToken
from promoters.services import promoter_api_token_issue
from tests.factories import make_merchant

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
    # The postback secret, an HMAC key read back to verify with, is stored encrypted.
    assert tables_holding(cells, merchant.test_postback_secret) == set()


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


# --- Secrets at rest: encrypted with FIELD_ENCRYPTION_KEYS ------------------------------------

KEY_A = "ITDGQiReCjMi1sHKYh72iVTnC2_WT9p_a1iKyzrU0is="
KEY_B = "hu3FAAa74FC9G7tlVb_7PHMzjewVytnp3yDutApUmvc="
KEY_C = "oUeK3t2AECBqvy8yOI-e7lMbgPZ9Dl9SKHYlcYAxD_g="
ROOT = Path(__file__).resolve().parents[2]


def raw(table: str, column: str, pk: int) -> str:
    """A cell as the database holds it: raw SQL, no field conversion."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {connection.ops.quote_name(table)} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def raw_set(table: str, column: str, pk: int, value: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {connection.ops.quote_name(table)} SET {column} = %s WHERE id = %s", [value, pk])


@pytest.fixture
def endpoint(merchant):
    endpoint, secret = webhooks.webhook_endpoint_create(merchant=merchant, url="https://crm.example.com/in", events=["payout.paid"])
    endpoint.test_secret = secret
    return endpoint


def test_no_table_holds_a_postback_secret_or_a_webhook_secret_in_clear(merchant, other_merchant, endpoint):
    cells = every_value_in_the_database()

    for secret in (merchant.test_postback_secret, other_merchant.test_postback_secret, endpoint.test_secret):
        assert tables_holding(cells, secret) == set()
        assert tables_holding(cells, secret[-16:]) == set()  # not even a part of it
    for table, column, pk in (
        ("affiliate_merchant", "postback_secret", merchant.pk), ("payouts_webhookendpoint", "secret", endpoint.pk),
    ):
        assert raw(table, column, pk).startswith("enc:v1:gAAAAA")  # the mark, then a Fernet token
    # The code reads them in clear.
    assert Merchant.objects.get(pk=merchant.pk).postback_secret == merchant.test_postback_secret
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == endpoint.test_secret
    assert list(WebhookEndpoint.objects.values_list("secret", flat=True)) == [endpoint.test_secret]


def test_encrypt_and_decrypt_round_trip(settings):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    first, second = crypto.encrypt("whsec_Grüße ✓"), crypto.encrypt("whsec_Grüße ✓")

    assert first.startswith("enc:v1:") and crypto.is_encrypted(first)
    assert first != second  # a fresh IV each time
    assert "Grüße" not in first
    assert crypto.decrypt(first) == crypto.decrypt(second) == "whsec_Grüße ✓"
    assert not crypto.is_encrypted("whsec_Grüße ✓")
    assert not crypto.needs_rotation(first)


def test_empty_and_null_are_stored_as_they_are(endpoint):
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(secret="")
    assert raw("payouts_webhookendpoint", "secret", endpoint.pk) == ""
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == ""


def test_an_encrypted_column_cannot_be_searched(merchant):
    with pytest.raises(FieldError, match="Unsupported lookup 'exact' for EncryptedTextField"):
        list(Merchant.objects.filter(postback_secret=merchant.test_postback_secret))
    assert Merchant.objects.filter(postback_secret__isnull=False).count() == 1


def test_rotate_secrets_re_encrypts_with_the_newest_key(settings, db):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    merchant = make_merchant("Acme Shop", ["shop.example.com"])
    endpoint, secret = webhooks.webhook_endpoint_create(merchant=merchant, url="https://crm.example.com/in", events=["payout.paid"])
    before = raw("affiliate_merchant", "postback_secret", merchant.pk), raw("payouts_webhookendpoint", "secret", endpoint.pk)

    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out, stderr=io.StringIO())

    assert out.getvalue().splitlines() == [
        "affiliate_merchant.postback_secret: 1 value(s) re-encrypted",
        "payouts_webhookendpoint.secret: 1 value(s) re-encrypted",
    ]
    after = raw("affiliate_merchant", "postback_secret", merchant.pk), raw("payouts_webhookendpoint", "secret", endpoint.pk)
    assert after[0] != before[0] and after[1] != before[1]
    assert all(value.startswith("enc:v1:") for value in after)
    # Key A can go: B alone opens them.
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]
    assert Merchant.objects.get(pk=merchant.pk).postback_secret == merchant.test_postback_secret
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret
    # Again: nothing left to do, nothing rewritten.
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    again = io.StringIO()
    call_command("rotate_secrets", stdout=again, stderr=io.StringIO())
    assert again.getvalue().splitlines() == [
        "affiliate_merchant.postback_secret: 0 value(s) re-encrypted",
        "payouts_webhookendpoint.secret: 0 value(s) re-encrypted",
    ]
    assert (raw("affiliate_merchant", "postback_secret", merchant.pk), raw("payouts_webhookendpoint", "secret", endpoint.pk)) == after


def test_rotate_secrets_goes_by_batches_and_shows_its_progress(settings, db):
    settings.FIELD_ENCRYPTION_KEYS = [KEY_A]
    merchants = [make_merchant(f"Shop {n}", [f"shop{n}.example.com"]) for n in range(3)]

    settings.FIELD_ENCRYPTION_KEYS = [KEY_B, KEY_A]
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_secrets", "--batch-size", "2", stdout=out, stderr=err)

    assert out.getvalue().splitlines() == [
        "affiliate_merchant.postback_secret: 3 value(s) re-encrypted",
        "payouts_webhookendpoint.secret: 0 value(s) re-encrypted",
    ]
    assert err.getvalue().splitlines() == [
        "affiliate_merchant.postback_secret: 2 rows read, 2 re-encrypted so far",
        "affiliate_merchant.postback_secret: 3 rows read, 3 re-encrypted so far",
    ]
    settings.FIELD_ENCRYPTION_KEYS = [KEY_B]
    assert [m.postback_secret for m in Merchant.objects.order_by("id")] == [m.test_postback_secret for m in merchants]


def test_a_wrong_key_is_a_clear_error_never_an_empty_secret(settings, merchant):
    Merchant.objects.filter(pk=merchant.pk).update(require_signature=True)
    settings.FIELD_ENCRYPTION_KEYS = [KEY_C]

    with pytest.raises(crypto.DecryptionError) as caught:
        Merchant.objects.get(pk=merchant.pk)
    assert str(caught.value) == (
        "affiliate_merchant.postback_secret cannot be decrypted with any key of FIELD_ENCRYPTION_KEYS: the key it was "
        "encrypted with is missing (keys are comma-separated, newest first; keep the old ones until `manage.py "
        "rotate_secrets` has run)."
    )
    # A postback signed with an empty key is not let through: the request fails, nothing is stored.
    params = {"type": "registration", "customer_id": "c-1"}
    with pytest.raises(crypto.DecryptionError):
        Client().get(f"/postback/{merchant.test_postback_token}", {**params, "sig": postback_signature("", params)})
    assert ConversionEvent.objects.count() == 0


def test_no_key_at_all_is_a_clear_error(settings, merchant):
    settings.FIELD_ENCRYPTION_KEYS = []
    with pytest.raises(ImproperlyConfigured) as caught:
        Merchant.objects.get(pk=merchant.pk)
    assert str(caught.value) == (
        "FIELD_ENCRYPTION_KEYS is empty: set one or more Fernet keys, newest first (make one with: python -c "
        '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())").'
    )


def test_a_value_left_in_clear_is_an_error_not_read_as_the_secret(merchant):
    raw_set("affiliate_merchant", "postback_secret", merchant.pk, "planted-in-clear")
    with pytest.raises(crypto.DecryptionError, match=r"^affiliate_merchant.postback_secret is not encrypted"):
        Merchant.objects.get(pk=merchant.pk)


@pytest.mark.parametrize(
    "migration, table, column",
    [
        ("affiliate.migrations.0013_encrypted_secrets", "affiliate_merchant", "postback_secret"),
        ("payouts.migrations.0010_encrypted_secrets", "payouts_webhookendpoint", "secret"),
    ],
)
def test_the_migration_encrypts_the_secrets_stored_in_clear_and_back(merchant, endpoint, migration, table, column):
    pk = merchant.pk if table == "affiliate_merchant" else endpoint.pk
    clear = merchant.test_postback_secret if table == "affiliate_merchant" else endpoint.test_secret
    raw_set(table, column, pk, clear)  # as stored before the migration
    run_python = [op for op in importlib.import_module(migration).Migration.operations if isinstance(op, RunPython)]
    assert len(run_python) == 1
    forwards, backwards = run_python[0].code, run_python[0].reverse_code
    editor = SimpleNamespace(connection=connection)
    # The models as the migration sees them (the merchant was still in ``affiliate`` then).
    app_label, name = migration.split(".migrations.")
    state_apps = MigrationLoader(connection).project_state((app_label, name)).apps

    forwards(state_apps, editor)
    encrypted = raw(table, column, pk)
    assert encrypted.startswith("enc:v1:") and crypto.decrypt(encrypted) == clear
    assert tables_holding(every_value_in_the_database(), clear) == set()
    forwards(state_apps, editor)  # run again: an encrypted value is left as it is
    assert raw(table, column, pk) == encrypted

    backwards(state_apps, editor)
    assert raw(table, column, pk) == clear


def run_settings(**env) -> subprocess.CompletedProcess:
    """The settings imported in a clean environment (only PATH and what is given); prints the keys."""
    clean = {"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "config.settings", "SQLITE_PATH": "/nonexistent/x.sqlite3"}
    code = "import django; django.setup(); from django.conf import settings; print(','.join(settings.FIELD_ENCRYPTION_KEYS))"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120)


def test_the_app_refuses_to_start_without_the_keys_when_debug_is_off():
    check = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "0", "SECRET_KEY": "k" * 60},
    )  # fmt: skip

    assert check.returncode == 1
    assert check.stderr.strip().splitlines()[-1] == (
        "django.core.exceptions.ImproperlyConfigured: FIELD_ENCRYPTION_KEYS must be set when DEBUG is off: one or more "
        "Fernet keys, comma-separated, newest first. Make a key with: python -c \"from cryptography.fernet import Fernet; "
        'print(Fernet.generate_key().decode())"'
    )
    assert check.stdout == ""


def test_a_malformed_key_is_refused_at_start():
    run = run_settings(DEBUG="0", SECRET_KEY="k" * 60, FIELD_ENCRYPTION_KEYS=f"{KEY_B}, not-a-key")
    assert run.returncode == 1
    assert "FIELD_ENCRYPTION_KEYS: key 2 is not a Fernet key (32 url-safe base64-encoded bytes)." in run.stderr


def test_the_keys_are_read_newest_first_from_the_environment():
    run = run_settings(DEBUG="0", SECRET_KEY="k" * 60, FIELD_ENCRYPTION_KEYS=f" {KEY_B} ,{KEY_A},")
    assert (run.returncode, run.stdout) == (0, f"{KEY_B},{KEY_A}\n"), run.stderr


def test_with_debug_and_no_keys_a_fixed_development_key_comes_from_the_secret_key():
    run = run_settings(DEBUG="1", SECRET_KEY="a-development-secret")
    expected = base64.urlsafe_b64encode(hashlib.sha256(b"field-encryption:a-development-secret").digest()).decode()
    assert (run.returncode, run.stdout) == (0, f"{expected}\n"), run.stderr
    assert run_settings(DEBUG="1", SECRET_KEY="a-development-secret").stdout == f"{expected}\n"  # the same every run
