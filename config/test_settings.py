"""Settings for the test suite: the real settings, with test-only defaults filled in."""

import os

os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
# The webhook tests' receivers listen on 127.0.0.1; tests/payouts/test_webhook_ssrf.py turns it off.
os.environ.setdefault("WEBHOOK_ALLOW_PRIVATE_HOSTS", "1")
# A fixed key for the secrets at rest (core/crypto.py); tests/security/test_secrets.py sets others.
os.environ.setdefault("FIELD_ENCRYPTION_KEYS", "o_F3bbbUXQUYXLffdc2RPjVc777HaGczPGbq3htJI4Y=")

from .settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
# Tests that need a real broker opt in with their own app configuration.
CELERY_TASK_ALWAYS_EAGER = True  # noqa: F405
# No sweeping thread behind the tests' backs (tests/affiliate/test_event_failures.py runs it).
EVENT_INLINE_SWEEP = False
CELERY_BROKER_URL = "memory://localhost/"
# A process-local cache: suite workers must not flush each other's Redis.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
