"""Rate limits: beyond them a request is answered 429 with ``Retry-After`` and the
contract's error body (``{"error": {"code": "throttled", ...}}``).

What is limited, and by what:

* the API (``/api/...``, the events fast path included), per API key: the digest of the
  key in ``Authorization: Bearer <key>``, valid or not (a key someone does not have
  cannot be used up by them); and per client IP, every request, with a key or without
  (so that one address cannot try key after key, each with a fresh count);
* the GET postback (``/postback/<token>``), per client IP;
* the tracking redirect (``/r/<code>``, the WSGI fast path included), per client IP.

The client IP is ``views.client_ip`` (``TRUSTED_PROXY_COUNT`` hops from the end of
``X-Forwarded-For``, else ``REMOTE_ADDR``). Limits are ``RATE_LIMIT_*`` in the settings:
so many requests per ``RATE_LIMIT_WINDOW_SECONDS``; 0 switches one off.

The counter is an in-process token bucket, one per key and worker process, not a shared
counter in Redis. The redirect's fast path costs about 550 µs of CPU per click and touches
no network at all (the click goes to a local spool file); a Redis round trip per click
(redis-py's pipelined INCR+EXPIRE: 45 µs of client CPU and 60 µs of wall time, measured on
the local Redis, plus Redis's own CPU) would add about a tenth to every click, and would
make the redirect depend on Redis being up. A bucket here costs a dictionary look-up and a
few float operations under a lock (under 2 µs with the client IP, measured). The price:
each worker process counts on its own, so a deployment of N processes admits up to N times
the limit (a flood from one client is spread over the processes by the server, and refused
once it passes about N times the limit in all); the limits are set with that in mind
(``config/settings.py``). A bucket holds a whole window's worth of requests and refills
continuously, so there is no burst of twice the limit at a window's edge as with fixed
windows; ``Retry-After`` is the time until the next request would be let through, rounded
up to whole seconds.

Where the counting happens: ``RateLimitMiddleware`` right after SecurityMiddleware (above
``TrackRedirectMiddleware``, so the redirect's middleware short cut is counted too), and in
the two WSGI fast paths at the point where they are about to answer themselves
(``hit_wsgi``). A request counted by a fast path that then goes to Django carries
``COUNTED`` in its environ and is not counted again. The fast paths' 429 is built by
``throttled_response``, the middleware's, plus the headers SecurityMiddleware adds on the
way out (``tests/security/test_ratelimit_fastpaths.py`` compares the two).
"""

from __future__ import annotations

import math
import threading
import time

from django.conf import settings

from . import views
from .auth import digest
from .errors import json_error

# Set in a WSGI environ once its request has been counted (by a fast path).
COUNTED = "affiliate.ratelimit.counted"
# Buckets kept per scope before the full ones are dropped (and all, if that is not enough).
MAX_BUCKETS = 100_000

_clock = time.monotonic  # tests replace it


class Buckets:
    """Token buckets of one scope: ``limit`` requests per ``window`` seconds per key."""

    def __init__(self, limit: int, window: float):
        self.limit = float(limit)
        self.rate = limit / window
        self._buckets: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Count one request of ``key``: 0.0 when it may go on, else the seconds until it could."""
        now = _clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MAX_BUCKETS:
                    self._prune(now)
                self._buckets[key] = [self.limit - 1.0, now]
                return 0.0
            tokens = min(self.limit, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
            if tokens >= 1.0:
                bucket[0] = tokens - 1.0
                return 0.0
            bucket[0] = tokens
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Drop the buckets that have refilled (a new one starts full anyway)."""
        full = [k for k, (tokens, at) in self._buckets.items() if tokens + (now - at) * self.rate >= self.limit]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= MAX_BUCKETS:
            self._buckets.clear()


SCOPES = {
    "api": "RATE_LIMIT_API_PER_KEY",
    "api_ip": "RATE_LIMIT_API_PER_IP",
    "postback": "RATE_LIMIT_POSTBACK_PER_IP",
    "redirect": "RATE_LIMIT_REDIRECT_PER_IP",
}
_state: dict = {"settings": None, "buckets": {}}
_state_lock = threading.Lock()


def _buckets() -> dict[str, Buckets | None]:
    """The buckets of each scope (``None``: not limited), made again when the settings change
    (a test's override)."""
    wrapped = settings._wrapped
    if _state["settings"] is not wrapped:
        with _state_lock:
            if _state["settings"] is not wrapped:
                window = float(settings.RATE_LIMIT_WINDOW_SECONDS)
                limits = {scope: int(getattr(settings, name)) for scope, name in SCOPES.items()}
                _state["buckets"] = {s: Buckets(n, window) if n > 0 else None for s, n in limits.items()}
                _state["settings"] = wrapped
    return _state["buckets"]


def reset() -> None:
    """Forget every count (tests)."""
    with _state_lock:
        _state["settings"] = None
        _state["buckets"] = {}


def bearer_key(meta) -> str | None:
    """The key of ``Authorization: Bearer <key>``, split as DRF's authentication does."""
    parts = meta.get("HTTP_AUTHORIZATION", "").split()
    if len(parts) != 2 or parts[0].lower() != "bearer":
        return None
    return parts[1]


class _Meta:
    """What ``views.client_ip`` reads of a request."""

    __slots__ = ("META",)

    def __init__(self, meta):
        self.META = meta


def _client_ip(meta) -> str:
    return views.client_ip(_Meta(meta))


def scopes_of(path: str, meta) -> list[tuple[str, str]]:
    """The (scope, key) pairs a request is counted under; none when it is not limited."""
    if path.startswith("/r/"):
        return [("redirect", _client_ip(meta))]
    if path.startswith("/postback/"):
        return [("postback", _client_ip(meta))]
    if path.startswith("/api/"):
        return api_scopes(meta, bearer_key(meta))
    return []


def api_scopes(meta, key: str | None, hashed: str | None = None) -> list[tuple[str, str]]:
    """An API request's: its client IP's, and its key's when it names one."""
    scopes = [("api_ip", _client_ip(meta))]
    if key is not None:
        scopes.append(("api", hashed or digest(key)))
    return scopes


def hit(scope: str, key: str) -> float:
    """Count one request: 0.0 when it may go on, else the seconds until one could."""
    buckets = _buckets().get(scope)
    return 0.0 if buckets is None else buckets.take(key)


def hit_all(scopes: list[tuple[str, str]]) -> float:
    """Count one request under each of its scopes: the longest wait of them (0.0: go on)."""
    return max((hit(scope, key) for scope, key in scopes), default=0.0)


def retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))


def throttled_response(wait: float):
    """The 429: the contract's error body, ``Retry-After`` in whole seconds."""
    seconds = retry_after(wait)
    response = json_error(
        "throttled",
        f"Too many requests; retry in {seconds} second{'s' if seconds != 1 else ''}.",
        429,
        headers={"Retry-After": str(seconds)},
    )
    response.headers["Content-Length"] = str(len(response.content))
    # Not a warning line per refused request in the log (Django's handler logs every 4xx):
    # a flood would fill it; the fast paths log none either.
    response._has_been_logged = True
    return response


class RateLimitMiddleware:
    """Count every limited request (unless a fast path has) and refuse those over the limit."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        meta = request.META
        if COUNTED not in meta:
            wait = hit_all(scopes_of(request.path_info, meta))
            if wait:
                return throttled_response(wait)
        return self.get_response(request)


# --- The fast paths (affiliate/fastpath.py, affiliate/eventpath.py) -----------------------


def hit_wsgi(environ, scopes: list[tuple[str, str]]) -> float:
    """``hit_all`` for a request a fast path is about to answer; marks it counted, so that
    Django does not count it again should the fast path hand it over after all."""
    environ[COUNTED] = True
    return hit_all(scopes)


def _security_headers(secure: bool) -> list[tuple[str, str]]:
    """What SecurityMiddleware adds to the middleware's 429 on its way out, in its order."""
    headers = []
    if settings.SECURE_HSTS_SECONDS and secure:
        sts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            sts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            sts += "; preload"
        headers.append(("Strict-Transport-Security", sts))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    policy = settings.SECURE_REFERRER_POLICY
    if policy:
        values = [v.strip() for v in policy.split(",")] if isinstance(policy, str) else policy
        headers.append(("Referrer-Policy", ",".join(values)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    return headers


def answer_wsgi(start_response, wait: float, *, secure: bool) -> list[bytes]:
    """The 429 Django sends for this request, sent by a fast path."""
    response = throttled_response(wait)
    start_response("429 Too Many Requests", [*response.items(), *_security_headers(secure)])
    return [response.content]
