"""Settings, read from the environment (12-factor).

Unset ``DATABASE_URL`` means a local SQLite file; unset ``REDIS_URL`` means Celery tasks
run inline right after the request's transaction commits and the cache is process-local.
"""

import base64
import hashlib
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY must be set when DEBUG is off. Set DEBUG=1 for local development."
        )
    SECRET_KEY = "dev-insecure-only-for-debug-" + "x" * 32

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "merchants",
    "promoters",
    "affiliate",
    "attribution",
    "payouts",
    "insights",
    "portal",
    "dashboards",
    "demo",
]

MIDDLEWARE = [
    "core.middleware.ApiBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Known /r/<code> links are answered here, without the middleware below (bench/README.md).
    "affiliate.views.TrackRedirectMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("SQLITE_PATH", str(BASE_DIR / "db.sqlite3")),
            # Connections kept per thread: opening one runs the WAL pragma and, when the last one
            # closes, SQLite checkpoints the whole log under an exclusive lock, which a
            # connection being opened meanwhile meets as an immediate "database is locked".
            "CONN_MAX_AGE": int(os.environ.get("SQLITE_CONN_MAX_AGE", "600")),
            "OPTIONS": {
                # Writers queue behind each other instead of failing with "database is locked".
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
IS_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
if IS_POSTGRES:
    # Server-side binding: parameters travel apart from the query text, and a query run
    # prepare_threshold times on a connection is prepared there, so PostgreSQL parses and
    # plans it once (crediting an event runs the same ~18 queries every time: about a third
    # less PostgreSQL CPU per event, bench/README.md). Behind PgBouncer in transaction mode
    # older than 1.21, set DB_SERVER_SIDE_BINDING=0 and drop the threshold.
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
    DATABASES["default"]["OPTIONS"]["server_side_binding"] = env_bool("DB_SERVER_SIDE_BINDING", True)

# A read replica (a PostgreSQL streaming standby) for the read-only pages: the merchant and
# insight pages and the promoter portal's figures (core/routers.py). Writes and everything
# else stay on default. Unset: the alias is the primary's settings and nothing reads from it.
# In tests the alias mirrors default, so that REPLICA_READS can be turned on there.
DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL", "")
REPLICA_READS = bool(DATABASE_REPLICA_URL)
if DATABASE_REPLICA_URL:
    DATABASES["replica"] = dj_database_url.parse(DATABASE_REPLICA_URL, conn_max_age=60, conn_health_checks=True)
    if DATABASES["replica"]["ENGINE"].endswith("postgresql"):
        DATABASES["replica"].setdefault("OPTIONS", {}).setdefault("prepare_threshold", 5)
        DATABASES["replica"]["OPTIONS"]["server_side_binding"] = env_bool("DB_SERVER_SIDE_BINDING", True)
else:
    DATABASES["replica"] = {**DATABASES["default"], "OPTIONS": dict(DATABASES["default"].get("OPTIONS", {}))}
DATABASES["replica"]["TEST"] = {"MIRROR": "default"}
DATABASE_ROUTERS = ["core.routers.ReplicaRouter"]

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis, cache and Celery ----------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 4
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "affiliate.process_event": {"queue": "events"},
    "affiliate.process_events": {"queue": "events"},
    "affiliate.drain_events": {"queue": "events"},
    "insights.*": {"queue": "insights"},
}
# A lost broker must not hold a request hostage: the event is already committed and the
# sweep re-queues it, so publishing gives up quickly.
CELERY_BROKER_CONNECTION_TIMEOUT = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"socket_connect_timeout": 1, "socket_timeout": 2}
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-events": {
        "task": "affiliate.requeue_stale_events",
        "schedule": timedelta(seconds=30),
    },
    "approve-due-commissions": {
        "task": "payouts.approve_due",
        "schedule": timedelta(minutes=5),
    },
    "close-last-month": {
        "task": "payouts.close_last_month",
        "schedule": crontab(minute=30, hour=2, day_of_month=1),
    },
    "sweep-webhooks": {
        "task": "payouts.sweep_webhooks",
        "schedule": timedelta(seconds=10),
    },
    "ensure-partitions": {
        "task": "affiliate.ensure_partitions",
        "schedule": crontab(minute=15, hour=1),
    },
    "insights-compute-value": {
        "task": "insights.compute_value",
        "schedule": crontab(minute=0, hour=3),
    },
    "insights-apply-rates": {
        "task": "insights.apply_rates",
        "schedule": crontab(minute=30, hour=3),
    },
    "insights-train-segments": {
        "task": "insights.train_segments",
        "schedule": crontab(minute=0, hour=4),
    },
    "insights-run-content": {
        "task": "insights.run_content",
        "schedule": crontab(minute=30, hour=4),
    },
}
# Events still queued after this long are handed to the workers again by the sweep.
EVENT_REQUEUE_AFTER_SECONDS = int(os.environ.get("EVENT_REQUEUE_AFTER_SECONDS", "30"))
# An event whose processing failed this many times is marked failed with its last error: the
# sweep stops sending it, the merchant's overview counts it, the admin processes it again, and
# an event.failed webhook announces it.
EVENT_MAX_ATTEMPTS = int(os.environ.get("EVENT_MAX_ATTEMPTS", "5"))
# Tasks inline (no REDIS_URL, so no beat): each web process sweeps the events left queued
# itself, every EVENT_REQUEUE_AFTER_SECONDS, in a thread of its own.
EVENT_INLINE_SWEEP = env_bool("EVENT_INLINE_SWEEP", True)
# Drainers credit queued events, at most EVENT_BATCH_SIZE per transaction; a backlog starts
# up to EVENT_DRAINERS of them. After a batch that was not full a drainer waits
# EVENT_DRAINER_POLL_SECONDS before it looks again; it lingers EVENT_DRAINER_LINGER_SECONDS
# after the queue empties before it gives its lease back; a lease not renewed for
# EVENT_DRAINER_LEASE_SECONDS (a dead drainer) lapses.
EVENT_BATCH_SIZE = int(os.environ.get("EVENT_BATCH_SIZE", "50"))
EVENT_DRAINERS = int(os.environ.get("EVENT_DRAINERS", "2"))
EVENT_DRAINER_LINGER_SECONDS = float(os.environ.get("EVENT_DRAINER_LINGER_SECONDS", "2"))
EVENT_DRAINER_POLL_SECONDS = float(os.environ.get("EVENT_DRAINER_POLL_SECONDS", "0.05"))
EVENT_DRAINER_LEASE_SECONDS = int(os.environ.get("EVENT_DRAINER_LEASE_SECONDS", "15"))
# Webhook endpoints on private, loopback or link-local addresses (a merchant's URL must not
# reach into this network): refused when saved and before every attempt, unless this is on
# (by default with DEBUG, for receivers on this machine).
WEBHOOK_ALLOW_PRIVATE_HOSTS = env_bool("WEBHOOK_ALLOW_PRIVATE_HOSTS", DEBUG)

# PostgreSQL: clicks and events are partitioned by month (affiliate/partitions.py); the
# daily job keeps this month and PARTITION_MONTHS_AHEAD months after it created, waiting at
# most PARTITION_LOCK_TIMEOUT seconds for a table's lock (a busy table is tried next run).
PARTITION_MONTHS_AHEAD = int(os.environ.get("PARTITION_MONTHS_AHEAD", "3"))
PARTITION_LOCK_TIMEOUT = int(os.environ.get("PARTITION_LOCK_TIMEOUT", "5"))

# --- Auth, i18n, static ---------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",  # the admin's username login
    "allauth.account.auth_backends.AuthenticationBackend",  # promoters and merchant staff, by email
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/portal/"

# django-allauth: accounts by email, verified before the first login.
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_LOGOUT_REDIRECT_URL = "/accounts/login/"
ACCOUNT_ADAPTER = "portal.accounts.AccountAdapter"
ACCOUNT_EMAIL_SUBJECT_PREFIX = os.environ.get("EMAIL_SUBJECT_PREFIX", "[Affiliate] ")
ACCOUNT_PRESERVE_USERNAME_CASING = False
# Failed logins: at most LOGIN_FAILED_RATE_LIMIT per address and per account (allauth's
# syntax: "count/period/scope", comma-separated); then the form refuses until it passes.
ACCOUNT_RATE_LIMITS = {"login_failed": os.environ.get("LOGIN_FAILED_RATE_LIMIT", "10/m/ip,5/5m/key")}

# Email: printed to the console unless EMAIL_HOST names an SMTP server.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", EMAIL_PORT == 587)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", EMAIL_PORT == 465)
EMAIL_TIMEOUT = int(os.environ.get("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "no-reply@localhost")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Secrets at rest (core/crypto.py) ----------------------------------------------
# Secrets the app must read back in clear (postback HMAC secrets, webhook signing secrets,
# store connector secrets) are stored encrypted with these Fernet keys: comma-separated,
# newest first; the first encrypts, every one decrypts (README.md, "Rotating the encryption
# keys"). Required when DEBUG is off.
FIELD_ENCRYPTION_KEY_HELP = 'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
FIELD_ENCRYPTION_KEYS = env_list("FIELD_ENCRYPTION_KEYS")
if not FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS must be set when DEBUG is off: one or more Fernet keys, comma-separated, newest "
            f"first. Make a key with: {FIELD_ENCRYPTION_KEY_HELP}"
        )
    # DEBUG only: a fixed development key derived from SECRET_KEY, so that a local database
    # stays readable from one run to the next. Never used with DEBUG off.
    FIELD_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(hashlib.sha256(f"field-encryption:{SECRET_KEY}".encode()).digest()).decode()]
for _number, _key in enumerate(FIELD_ENCRYPTION_KEYS, 1):
    try:
        _valid = len(base64.urlsafe_b64decode(_key.encode("ascii"))) == 32
    except ValueError:
        _valid = False
    if not _valid:
        raise ImproperlyConfigured(
            f"FIELD_ENCRYPTION_KEYS: key {_number} is not a Fernet key (32 url-safe base64-encoded bytes). "
            f"Make one with: {FIELD_ENCRYPTION_KEY_HELP}"
        )

# --- Request limits -------------------------------------------------------------------
# Bodies above this are refused with 413 before they are read.
API_MAX_BODY_BYTES = int(os.environ.get("API_MAX_BODY_BYTES", str(64 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# --- Security (production) ------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
# Neither cookie goes with a cross-site POST (a forged form), nor is the session readable by
# scripts; the CSRF cookie is read by no script either (forms carry the token in a field).
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    # The health check and the tracking redirect answer plain HTTP behind a proxy too.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

# Salt for hashing visitor IP addresses: derived from the secret unless set.
IP_HASH_SALT = os.environ.get("IP_HASH_SALT", SECRET_KEY)
# How many reverse proxies sit in front of the app (for X-Forwarded-For).
TRUSTED_PROXY_COUNT = int(os.environ.get("TRUSTED_PROXY_COUNT", "0"))
# Absolute base of tracking links (e.g. https://go.example.net); unset: the request's host.
TRACKING_BASE_URL = os.environ.get("TRACKING_BASE_URL", "").rstrip("/")
# The click spool (affiliate/clickspool.py): a directory on local disk where the redirect
# writes clicks for a flusher to store in batches. Unset: each click is committed before its
# 302. PostgreSQL only.
CLICK_SPOOL_DIR = os.environ.get("CLICK_SPOOL_DIR", "")
CLICK_SPOOL_FLUSH_SECONDS = float(os.environ.get("CLICK_SPOOL_FLUSH_SECONDS", "0.2"))
# How long an event waits for a click that may still be in a spool (by the click id's age).
CLICK_SPOOL_WAIT_SECONDS = float(os.environ.get("CLICK_SPOOL_WAIT_SECONDS", "5"))
if CLICK_SPOOL_DIR and not IS_POSTGRES:
    raise ImproperlyConfigured("CLICK_SPOOL_DIR needs PostgreSQL (DATABASE_URL=postgres://...).")
# A new registration or purchase on POST /api/v1/events/ accepted at the WSGI layer, in
# front of Django (affiliate/eventpath.py); it applies on PostgreSQL with Celery workers only.
EVENT_FASTPATH = env_bool("EVENT_FASTPATH", True)
# Clock skew tolerated on an event's occurred_at before it counts as "in the future".
EVENT_FUTURE_TOLERANCE_SECONDS = int(os.environ.get("EVENT_FUTURE_TOLERANCE_SECONDS", "60"))

# --- Fraud controls (affiliate/fraud.py) ------------------------------------------------
# The fraud rules are each program's own ("fraud" in the program body, CONTRACT v2), with the
# contract's defaults (merchants.models.FRAUD_DEFAULTS): no setting of the environment.

# --- Rate limits (affiliate/ratelimit.py) -----------------------------------------------
# Beyond these, requests are answered 429 with Retry-After: RATE_LIMIT_API_PER_KEY requests
# per RATE_LIMIT_WINDOW_SECONDS per API key on /api/ (the events fast path included), and
# per client IP RATE_LIMIT_API_PER_IP on /api/ (with a key or without: one address trying
# key after key is refused), RATE_LIMIT_POSTBACK_PER_IP on /postback/ and RATE_LIMIT_REDIRECT_PER_IP on
# the tracking redirect /r/ (its fast path included); 0 switches a limit off. With REDIS_URL
# the count is shared in Redis by every web process on every machine, so N processes admit
# these in all (each takes a small allotment of a key's budget at a time and spends it without
# a round trip; affiliate/ratelimit.py), through a connection like the cache's above but with
# timeouts of at most 0.1 s; while Redis fails, and without REDIS_URL, each process counts on
# its own and N processes admit up to N times these. High by default: the benchmarks send
# one key's 700 events/s and thousands of clicks/s from one IP.
RATE_LIMIT_WINDOW_SECONDS = int(os.environ.get("RATE_LIMIT_WINDOW_SECONDS", "60"))
RATE_LIMIT_API_PER_KEY = int(os.environ.get("RATE_LIMIT_API_PER_KEY", "100000"))
RATE_LIMIT_API_PER_IP = int(os.environ.get("RATE_LIMIT_API_PER_IP", "200000"))
RATE_LIMIT_POSTBACK_PER_IP = int(os.environ.get("RATE_LIMIT_POSTBACK_PER_IP", "100000"))
RATE_LIMIT_REDIRECT_PER_IP = int(os.environ.get("RATE_LIMIT_REDIRECT_PER_IP", "300000"))
# Counted right after SecurityMiddleware (which still redirects plain HTTP to HTTPS first),
# before the redirect's middleware short cut and anything that reads a session or a body.
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "affiliate.ratelimit.RateLimitMiddleware")

# --- REST framework and schema --------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["merchants.auth.MerchantKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["merchants.auth.IsMerchant"],
    "DEFAULT_PARSER_CLASSES": ["core.errors.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "core.rest.Pagination",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "core.rest.JSONWhateverAccept",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "core.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Affiliate platform: merchant integration API",
    "DESCRIPTION": (
        "Referral links, the tracking redirect, conversion events (JSON API and GET "
        "postback) and the read-back of attribution and commissions. Every call carries "
        "`Authorization: Bearer <merchant api key>`. Money is a decimal string."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "CommissionKindEnum": ["direct", "override", "bounty", "reversal"],
        "TouchpointKindEnum": ["click", "coupon"],
        "PayoutMethodKindEnum": ["paypal", "bank", "manual"],
        "WebhookEventTypeEnum": ["commission.created", "commission.approved", "commission.reversed", "payout.paid", "event.failed"],
        "WebhookDeliveryStatusEnum": ["pending", "succeeded", "failed"],
        "PromoterStatusEnum": ["active", "inactive", "pending"],
        "CommissionStatusEnum": ["held", "pending", "approved", "paid", "rejected"],
        "EventStatusEnum": ["queued", "processed", "failed"],
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
