"""``manage.py check --deploy`` is clean with a production environment (DEBUG off, a long
secret, ALLOWED_HOSTS, the SECURE_* defaults), and the cookies are Secure, HttpOnly and
SameSite there."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.realservices import BASE_DIR

PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DEBUG": "0",
    "SECRET_KEY": "k7#Qz!v2Lr9@xT4mWp8&Yc3NdF6hJb1sGe5uA0oRiK-tVnZqMw",
    "ALLOWED_HOSTS": "go.example.net,app.example.net",
}
# Left to their defaults: what the deployment would not set.
UNSET = ("SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "CSRF_TRUSTED_ORIGINS", "DATABASE_URL", "REDIS_URL", "CLICK_SPOOL_DIR")

SCRIPT = """
import json, django
django.setup()
from django.conf import settings
from django.core.management import call_command
call_command("check", deploy=True, fail_level="DEBUG")
names = ["DEBUG", "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE", "CSRF_COOKIE_SECURE",
         "CSRF_COOKIE_HTTPONLY", "CSRF_COOKIE_SAMESITE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS",
         "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD", "SECURE_CONTENT_TYPE_NOSNIFF", "X_FRAME_OPTIONS",
         "SECURE_PROXY_SSL_HEADER"]
print(json.dumps({name: getattr(settings, name) for name in names}))
"""


def test_check_deploy_is_clean_with_a_production_environment():
    env = {k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith("PYTEST")}
    env.update(PRODUCTION)

    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60)

    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    # Any message at all (a warning, or even DEBUG-level) would have failed the command.
    assert lines[0] == "System check identified no issues (0 silenced)."
    assert json.loads(lines[-1]) == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SECURE": True,
        "CSRF_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SAMESITE": "Lax",
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "X_FRAME_OPTIONS": "DENY",
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


def test_a_short_secret_key_is_reported():
    """The check is live: with a weak secret, it fails."""
    env = {k: v for k, v in os.environ.items() if k not in UNSET and not k.startswith("PYTEST")}
    env.update(PRODUCTION, SECRET_KEY="short")

    run = subprocess.run([sys.executable, "-c", SCRIPT], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=60)

    assert run.returncode == 1
    assert "security.W009" in run.stderr
