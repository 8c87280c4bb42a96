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

How a request is counted: a token bucket per key that holds a whole window's worth of
requests and refills continuously (no burst of twice the limit at a window's edge, as with
fixed windows); ``Retry-After`` is the time until the next request would be let through,
rounded up to whole seconds.

Without ``REDIS_URL`` (the embedded default) the bucket is in the process (``Buckets``): a
dictionary look-up and a few float operations under a lock, under 2 µs. Each process
counts on its own then, so N processes admit up to N times the limit.

With ``REDIS_URL`` the bucket is in Redis (``SharedBuckets``), one per key, and N processes
on any number of machines together admit the limit. A Redis round trip per request would
add about a tenth to the redirect's CPU (its fast path costs about 550 µs per click and
touches no network: the click goes to a local spool file; a round trip is 45 µs of client
CPU and 60 µs of wall time on the local Redis, more across a network) and would make every
click wait on Redis. So a process asks Redis only now and then, and counts locally between:

* *allotments*: a Lua script (``TAKE``) takes, atomically, up to ``want`` tokens from the
  key's bucket in Redis. The process spends them on its next requests of that key without
  asking again. ``want`` starts at 1 and doubles each time an allotment was spent within a
  tenth of its lifetime, halves when one expires unspent, and is at most a tenth of the
  limit (and ``ALLOTMENT_MAX``): a flood from one address costs a round trip per hundreds
  of requests, a trickle one per request, a small limit is shared out in small pieces.
  Every request admitted this way spends a token Redis handed out, so across all processes
  no more are admitted than the bucket allows: ``limit`` at once, ``limit / window`` a
  second after that. An allotment lives for a sixtieth of the window (1 s of the default
  60): what is left then is dropped, so tokens taken long ago are not spent on top of a
  bucket that has refilled since (they may make a span of the window admit up to a
  sixtieth of the limit more than the bucket alone would).
* *refusals*: when Redis has no token, the script answers how long until the next one, and
  the process refuses the key's requests until then without asking (with that
  ``Retry-After``). A flood past the limit costs one round trip per refill, not per request.
* *credit*: the first request of a key that a process has no entry for is admitted without
  a round trip (for limits of at least ``CREDIT_FROM`` a window) and charged to the bucket
  with the process's next take for that key; a charge may leave the bucket below zero, so it
  is paid back. Most clicks come from addresses that click once or twice, so without credit
  nearly every click would pay a round trip. The price: a key already past its limit gets
  one more request through in each process that sees it for the first time (N in all, per
  key, with N processes; again after a process drops its entries, see ``MAX_BUCKETS``).
  Below ``CREDIT_FROM`` the count is exact.

The arithmetic in Redis is exact, in integers: a bucket's level is counted in units of
``window_ms / g`` per token, refilled by ``limit / g`` units a millisecond (``g`` their
greatest common divisor; exact while ``limit * window_ms / g`` stays below 2^53, Lua's
largest exact integer), on Redis's own clock (``TIME``), so machines whose clocks differ
agree. A bucket's key expires when it would be full again. The keys name the scope, the
limit and the window (``ratelimit:redirect:300000/60000:<ip>``): a deploy that changes a
limit starts fresh buckets instead of misreading the old ones.

Redis away or slow does not take the site down: the limiter's connection uses the cache's
(``CACHES["default"]``, i.e. ``REDIS_URL`` and its options) with socket timeouts of at
most ``TIMEOUT`` and no retry but one on a broken connection; after a failure the process
counts in its own ``Buckets`` for ``RETRY_SECONDS`` before it asks Redis again, logging a
warning at most once per ``WARN_SECONDS``. Allotments and refusals it holds are still used.
While Redis is away, N processes admit up to N times the limit, as without ``REDIS_URL``.

Where the counting happens: ``RateLimitMiddleware`` right after SecurityMiddleware (above
``TrackRedirectMiddleware``, so the redirect's middleware short cut is counted too), and in
the two WSGI fast paths at the point where they are about to answer themselves
(``hit_wsgi``). A request counted by a fast path that then goes to Django carries
``COUNTED`` in its environ and is not counted again. The fast paths' 429 is built by
``throttled_response``, the middleware's, plus the headers SecurityMiddleware adds on the
way out (``tests/security/test_ratelimit_fastpaths.py`` compares the two).
"""

from __future__ import annotations

import logging
import math
import threading
import time

from django.conf import settings

from core.errors import json_error
from merchants.auth import digest

from . import views

log = logging.getLogger(__name__)

# Set in a WSGI environ once its request has been counted (by a fast path).
COUNTED = "affiliate.ratelimit.counted"
# Buckets (or shared buckets' entries) kept per scope and process before the idle ones are
# dropped (and all, if that is not enough).
MAX_BUCKETS = 100_000
# Shared buckets: the largest allotment a process takes at once, and an allotment's lifetime
# as a share of the window.
ALLOTMENT_MAX = 1024
ALLOTMENT_LIFETIME = 1 / 60
# Limits of at least this many requests a window admit a key's first request in a process on
# credit (no round trip); below, every request is counted in Redis first.
CREDIT_FROM = 1000
# Redis: socket timeouts at most this (seconds); after a failure, this process counts alone
# for RETRY_SECONDS, and warns at most once per WARN_SECONDS.
TIMEOUT = 0.1
RETRY_SECONDS = 5.0
WARN_SECONDS = 60.0

_clock = time.monotonic  # tests replace it
# The milliseconds the shared buckets are counted in; None: Redis's own clock. Tests set it.
_redis_clock = None


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


# Redis's side of a shared bucket: take up to ARGV[4] tokens from the bucket KEYS[1] after
# charging ARGV[5] tokens already spent; answer {tokens taken, milliseconds until the next
# token when none was}. A token is ARGV[1] units, ARGV[2] units come back a millisecond, a full
# bucket holds ARGV[3] units (all integers); ARGV[6]: the time in ms, empty for Redis's clock.
TAKE = """
local cost, rate, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local want, owed = tonumber(ARGV[4]), tonumber(ARGV[5])
local now = tonumber(ARGV[6])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local state = redis.call('HMGET', KEYS[1], 'level', 'at')
local level, at = tonumber(state[1]), tonumber(state[2])
if not level then
  level, at = cap, now
elseif now > at then
  level = math.min(cap, level + math.min(now - at, math.ceil((cap - level) / rate)) * rate)
  at = now
end
level = math.max(level - owed * cost, -cap)
local got, wait = 0, 0
if level >= cost then
  got = math.min(want, math.floor(level / cost))
  level = level - got * cost
elseif want > 0 then
  wait = math.ceil((cost - level) / rate)
end
redis.call('HSET', KEYS[1], 'level', level, 'at', at)
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((cap - level) / rate)))
return {got, wait}
"""


class Store:
    """The limiter's Redis: the ``TAKE`` script, and the way round it while Redis fails."""

    def __init__(self, url: str, options: dict):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # One retry, at once, on a broken connection (a pooled one Redis closed); none on a
        # timeout: the request is waiting.
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
        self.client = redis.Redis.from_url(url, retry=retry, **options)
        self._take = self.client.register_script(TAKE)
        self._errors = (redis.RedisError, OSError)
        self.down_until = -math.inf  # (``_clock``) Redis is not asked before then
        self.warned_at = -math.inf
        self.round_trips = 0  # times Redis was asked

    def take(self, key: str, args: tuple) -> tuple[int, int] | None:
        """The script's answer; ``None`` when Redis failed, now or within ``RETRY_SECONDS``."""
        if _clock() < self.down_until:
            return None
        self.round_trips += 1
        try:
            got, wait = self._take(keys=[key], args=args)
        except self._errors as exc:
            now = _clock()
            self.down_until = now + RETRY_SECONDS
            if now - self.warned_at >= WARN_SECONDS:
                self.warned_at = now
                log.warning(
                    "Rate limits: Redis failed (%s: %s); each process counts on its own, asking Redis again every %.0f s.",
                    type(exc).__name__, exc, RETRY_SECONDS,
                )  # fmt: skip
            return None
        return int(got), int(wait)

    def close(self) -> None:
        self.client.close()


# The fields of a process's entry for one key of a shared bucket (a list, for speed): tokens
# of its allotment left, when the allotment expires, refused until, requests admitted on
# credit not yet charged, the next allotment's size.
TOKENS, EXPIRES, UNTIL, OWED, WANT = range(5)


class SharedBuckets:
    """One scope's buckets in Redis, shared by every process: ``limit`` requests per
    ``window`` seconds per key, taken in allotments (see the module's docstring)."""

    def __init__(self, limit: int, window: float, *, scope: str, store: Store):
        window_ms = max(1, round(window * 1000))
        unit = math.gcd(limit, window_ms)
        self.cost = window_ms // unit  # units of one token
        self.rate = limit // unit  # units back a millisecond
        self.cap = limit * self.cost  # units of a full bucket
        self.prefix = f"ratelimit:{scope}:{limit}/{window_ms}:"
        self.most = max(1, min(ALLOTMENT_MAX, limit // 10))
        self.lifetime = window * ALLOTMENT_LIFETIME
        self.credit = limit >= CREDIT_FROM
        self.store = store
        self.fallback = Buckets(limit, window)
        self._entries: dict[str, list] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Count one request of ``key``: 0.0 when it may go on, else the seconds until it could."""
        now = _clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                if len(self._entries) >= MAX_BUCKETS:
                    self._prune(now)
                entry = self._entries[key] = [0, 0.0, 0.0, 0, 1]
                if self.credit:
                    entry[OWED] = 1
                    return 0.0
            elif entry[TOKENS]:
                if now < entry[EXPIRES]:
                    entry[TOKENS] -= 1
                    return 0.0
                entry[TOKENS] = 0  # expired unspent: it was more than needed
                entry[WANT] = max(1, entry[WANT] // 2)
            elif now < entry[UNTIL]:
                return entry[UNTIL] - now
            elif now < entry[EXPIRES] - 0.9 * self.lifetime:  # spent within a tenth of its lifetime
                entry[WANT] = min(self.most, entry[WANT] * 2)
            want, owed = entry[WANT], entry[OWED]
            entry[OWED] = 0
        at = "" if _redis_clock is None else _redis_clock()
        answer = self.store.take(self.prefix + key, (self.cost, self.rate, self.cap, want, owed, at))
        if answer is None:
            with self._lock:
                entry[OWED] += owed  # charged once Redis answers again
            return self.fallback.take(key)
        got, wait_ms = answer
        now = _clock()
        with self._lock:
            if got:
                entry[TOKENS] += got - 1
                entry[EXPIRES] = now + self.lifetime
                entry[UNTIL] = 0.0
                return 0.0
            entry[UNTIL] = now + wait_ms / 1000
        return wait_ms / 1000

    def _prune(self, now: float) -> None:
        """Keep only the entries that hold something: an allotment or a refusal in force (the
        credit of the others is forgotten). All go if that is still half of the most."""
        keep = {k: e for k, e in self._entries.items() if (e[TOKENS] and now < e[EXPIRES]) or now < e[UNTIL]}
        self._entries = keep if len(keep) < MAX_BUCKETS // 2 else {}


SCOPES = {
    "api": "RATE_LIMIT_API_PER_KEY",
    "api_ip": "RATE_LIMIT_API_PER_IP",
    "postback": "RATE_LIMIT_POSTBACK_PER_IP",
    "redirect": "RATE_LIMIT_REDIRECT_PER_IP",
}
_state: dict = {"settings": None, "buckets": {}, "stores": {}}
_state_lock = threading.Lock()


def _store(url: str) -> Store:
    """The limiter's Redis at ``url``, with the default cache's options (when that is Redis)
    and timeouts of at most ``TIMEOUT``; one per process, kept across settings changes."""
    store = _state["stores"].get(url)
    if store is None:
        cache = settings.CACHES.get("default", {})
        options = dict(cache.get("OPTIONS", {})) if cache.get("BACKEND", "").endswith(".RedisCache") else {}
        for name in ("serializer", "pool_class", "parser_class"):  # Django's, not redis-py's
            options.pop(name, None)
        for name in ("socket_timeout", "socket_connect_timeout"):
            options[name] = min(options.get(name) or TIMEOUT, TIMEOUT)
        store = _state["stores"][url] = Store(url, options)
    return store


def _buckets() -> dict[str, Buckets | SharedBuckets | None]:
    """The buckets of each scope (``None``: not limited), in Redis with ``REDIS_URL``, made
    again when the settings change (a test's override)."""
    wrapped = settings._wrapped
    if _state["settings"] is not wrapped:
        with _state_lock:
            if _state["settings"] is not wrapped:
                window = float(settings.RATE_LIMIT_WINDOW_SECONDS)
                limits = {scope: int(getattr(settings, name)) for scope, name in SCOPES.items()}
                url = settings.REDIS_URL
                store = _store(url) if url else None

                def buckets(scope: str, limit: int) -> Buckets | SharedBuckets:
                    if store is None:
                        return Buckets(limit, window)
                    return SharedBuckets(limit, window, scope=scope, store=store)

                _state["buckets"] = {s: buckets(s, n) if n > 0 else None for s, n in limits.items()}
                _state["settings"] = wrapped
    return _state["buckets"]


def round_trips() -> int:
    """How many times this process has asked Redis for its rate limits (since ``reset``)."""
    return sum(store.round_trips for store in list(_state["stores"].values()))


def reset() -> None:
    """Forget every count this process holds, and its Redis connections (tests)."""
    with _state_lock:
        for store in _state["stores"].values():
            store.close()
        _state["settings"] = None
        _state["buckets"] = {}
        _state["stores"] = {}


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
