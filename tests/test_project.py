"""The project as a whole: settings from the environment, deploy checks, commands, docs."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from merchants.auth import digest
from merchants.models import Merchant, Program

ROOT = Path(__file__).resolve().parent.parent


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG", "DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"}}
    clean.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)


def test_refuses_to_start_without_a_secret_when_debug_is_off():
    result = run_python("import os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; import django; django.setup()", DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_starts_with_debug_and_no_secret():
    code = "import os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'], settings.CELERY_TASK_ALWAYS_EAGER)"
    result = run_python(code, DEBUG="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["django.db.backends.sqlite3", "True"]


def test_environment_selects_postgres_and_redis():
    code = (
        "import os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; import django; django.setup(); "
        "from django.conf import settings as s; d=s.DATABASES['default']; "
        "print(d['ENGINE'], d['NAME'], d['HOST'], s.CELERY_BROKER_URL, s.CELERY_TASK_ALWAYS_EAGER, s.CACHES['default']['BACKEND'])"
    )
    result = run_python(code, DEBUG="0", SECRET_KEY="x" * 60, DATABASE_URL="postgres://u@db.internal:5432/shop", REDIS_URL="redis://cache.internal:6379/2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql", "shop", "db.internal", "redis://cache.internal:6379/2", "False",
        "django.core.cache.backends.redis.RedisCache",
    ]


def test_check_deploy_is_clean_in_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "SECURE_SSL_REDIRECT"}}, "DEBUG": "0",
             "SECRET_KEY": "k7#Qp2!vX9zL0mN4rT6yU8iO1aS3dF5gH7jK9lZ2xC4vB6nM8qW0eR2tY4uI6oP8",
             "ALLOWED_HOSTS": "affiliate.example.com", "DJANGO_SETTINGS_MODULE": "config.settings"},
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.django_db
def test_create_merchant_prints_one_json_line_and_stores_hashes():
    out = io.StringIO()
    call_command("create_merchant", "--name", "Acme", "--domain", "shop.example.com", "--domain", "Blog.Example.com", stdout=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    printed = json.loads(lines[0])
    assert set(printed) == {"merchant_id", "api_key", "postback_token", "postback_secret"}
    merchant = Merchant.objects.get(pk=printed["merchant_id"])
    assert (merchant.name, merchant.domains) == ("Acme", ["shop.example.com", "blog.example.com"])
    assert merchant.api_key_hash == digest(printed["api_key"])
    assert merchant.postback_token_hash == digest(printed["postback_token"])
    assert merchant.postback_secret == printed["postback_secret"]
    assert Program.objects.count() == 0  # no program: the first one made through the API is the default


@pytest.mark.django_db
def test_create_merchant_refuses_bad_domains_and_writes_nothing():
    with pytest.raises(CommandError, match="is not a valid host name"):
        call_command("create_merchant", "--name", "Acme", "--domain", "not a host", stdout=io.StringIO())
    assert Merchant.objects.count() == 0


@pytest.mark.django_db
def test_create_merchant_via_manage_py_prints_only_json(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}}
    env.update(DEBUG="1", SQLITE_PATH=str(tmp_path / "cli.sqlite3"))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    result = subprocess.run(
        [sys.executable, "manage.py", "create_merchant", "--name", "Acme", "--domain", "shop.example.com"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1
    assert json.loads(result.stdout)["merchant_id"] == 1


@pytest.mark.django_db
def test_openapi_schema_and_offline_docs(client):
    schema = client.get("/api/v1/schema/?format=json")
    assert schema.status_code == 200
    document = schema.json()
    paths = document["paths"]
    for path, methods in {
        "/api/v1/programs/": {"get", "post"},
        "/api/v1/programs/{id}/": {"get", "patch"},
        "/api/v1/promoters/": {"get", "post"},
        "/api/v1/promoters/{id}/": {"get", "patch"},
        "/api/v1/links/": {"get", "post"},
        "/api/v1/events/": {"get", "post"},
        "/api/v1/events/{id}/": {"get"},
        "/api/v1/merchant/": {"get", "patch"},
        "/postback/{token}": {"get"},
    }.items():
        assert methods <= set(paths[path]), path
    assert document["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    docs = client.get("/api/v1/docs/")
    assert docs.status_code == 200
    html = docs.content.decode()
    # Nothing loaded from another host (a CSRF token may well contain the letters "cdn").
    assert re.findall(r"""(?:src|href)=["'](?:https?:)?//""", html) == []
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html
