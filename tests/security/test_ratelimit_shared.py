"""Rate limits shared in Redis (affiliate/ratelimit.py, with ``REDIS_URL``): the ``TAKE``
script's arithmetic, the allotments, refusals and credit a process keeps between round trips,
two processes that together admit the limit and not twice it, and the fall back to counting
in the process while Redis is down or slow.

The tests that need Redis count in database ``RATELIMIT_REDIS_DB`` under keys of their own
(a random address or API key per test), so that two runs at once on one Redis do not share a
count; they delete their keys afterwards instead of flushing the database under a
concurrent run."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys

import pytest
from django.test import Client

from affiliate import ratelimit
from affiliate.models import Click
from merchants.auth import digest
from tests.realservices import (
    BASE_DIR,
    RATELIMIT_REDIS_DB,
    TcpProxy,
    needs_redis,
    redis_url,
    redis_url_with_db,
)

# Nothing listens on port 1: a connection there is refused at once, like a Redis that is down.
DEAD_REDIS = "redis://127.0.0.1:1/0"


def shared_url() -> str:
    return redis_url_with_db(redis_url(), RATELIMIT_REDIS_DB)


def new_ip() -> str:
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}"


@pytest.fixture
def redis_db():
    """The test's Redis database; the keys the test wrote there are deleted afterwards."""
    import redis

    client = redis.Redis.from_url(shared_url())
    written = []
    yield client, written
    for prefix in written:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    client.close()


@pytest.fixture
def store(redis_db):
    client, written = redis_db
    store = ratelimit.Store(shared_url(), {"socket_timeout": ratelimit.TIMEOUT, "socket_connect_timeout": ratelimit.TIMEOUT})
    yield store
    store.close()


@pytest.fixture
def redis_clock(clock, monkeypatch):
    """Redis counts in the test's clock too (milliseconds), not its own."""
    monkeypatch.setattr(ratelimit, "_redis_clock", lambda: round(clock.now * 1000))
    return clock


def shared(limit: int, window: float, store, redis_db, scope: str | None = None) -> ratelimit.SharedBuckets:
    buckets = ratelimit.SharedBuckets(limit, window, scope=scope or f"test-{secrets.token_hex(4)}", store=store)
    redis_db[1].append(buckets.prefix)
    return buckets


class Recording:
    """A store that notes each round trip's (want, owed) before handing it on."""

    def __init__(self, store):
        self.store, self.calls = store, []

    def take(self, key, args):
        self.calls.append((args[3], args[4]))
        return self.store.take(key, args)


# --- The script ------------------------------------------------------------------------


@pytest.mark.redis
@needs_redis
def test_the_script_takes_whole_tokens_and_refills_them_by_the_millisecond(store, redis_db):
    """3 per 60 s: a token is 20,000 units, one unit comes back a millisecond, 60,000 is full."""
    key = f"ratelimit:test-{secrets.token_hex(4)}:k"
    redis_db[1].append(key)

    def take(want: int, at: int, owed: int = 0):
        return store.take(key, (20_000, 1, 60_000, want, owed, at))

    t = 1_000_000_000
    assert take(2, t) == (2, 0)
    assert take(2, t) == (1, 0)  # what is left, not more
    assert take(1, t) == (0, 20_000)  # none: the next one in 20 s
    assert take(1, t + 5_000) == (0, 15_000)
    assert take(1, t + 19_999) == (0, 1)
    assert take(1, t + 20_000) == (1, 0)  # exactly one token back
    assert redis_db[0].hgetall(key) == {b"level": b"0", b"at": str(t + 20_000).encode()}
    assert 59_000 < redis_db[0].pttl(key) <= 60_000  # the key goes when the bucket would be full
    assert take(5, t + 3_600_000) == (3, 0)  # never more than full
    # Requests admitted on credit are charged, even below zero, and paid back before the next token
    assert take(0, t + 3_660_000, owed=5) == (0, 0)
    assert redis_db[0].hget(key, "level") == b"-40000"
    assert take(1, t + 3_660_000) == (0, 60_000)
    assert take(0, t + 3_660_000, owed=100) == (0, 0)
    assert redis_db[0].hget(key, "level") == b"-60000"  # at most a window's worth owed


@pytest.mark.redis
@needs_redis
def test_the_script_is_exact_when_the_window_does_not_divide_by_the_limit(store, redis_db, redis_clock):
    """7 per 60 s: a token every 8,571.43 ms, counted in integers (60,000 units a token, 7 back a ms)."""
    buckets = shared(7, 60, store, redis_db)
    assert (buckets.cost, buckets.rate, buckets.cap) == (60_000, 7, 420_000)
    key = buckets.prefix + "k"
    at = round(redis_clock.now * 1000)

    assert store.take(key, (60_000, 7, 420_000, 7, 0, at)) == (7, 0)
    assert store.take(key, (60_000, 7, 420_000, 1, 0, at)) == (0, 8_572)
    assert store.take(key, (60_000, 7, 420_000, 1, 0, at + 8_571)) == (0, 1)  # 59,997 units of 60,000
    assert store.take(key, (60_000, 7, 420_000, 1, 0, at + 8_572)) == (1, 0)
    assert redis_db[0].hget(key, "level") == b"4"


@pytest.mark.redis
@needs_redis
def test_without_a_time_the_script_counts_on_redis_clock(store, redis_db):
    key = f"ratelimit:test-{secrets.token_hex(4)}:k"
    redis_db[1].append(key)
    seconds, micros = redis_db[0].time()

    assert store.take(key, (20_000, 1, 60_000, 3, 0, "")) == (3, 0)
    got, wait = store.take(key, (20_000, 1, 60_000, 1, 0, ""))
    assert got == 0 and 19_000 < wait <= 20_000
    assert int(redis_db[0].hget(key, "at")) - (seconds * 1000 + micros // 1000) in range(0, 5_000)


# --- A process's side: allotments, refusals, credit --------------------------------------


@pytest.mark.redis
@needs_redis
def test_a_process_takes_growing_allotments_and_spends_them_without_asking(store, redis_db, redis_clock):
    buckets = shared(50, 60, store, redis_db)  # at most 5 at a time: a tenth of the limit
    buckets.store = recording = Recording(store)

    admitted = [buckets.take("k") for _ in range(50)]

    assert admitted == [0.0] * 50
    # 1, then doubling while each allotment goes within a tenth of its life (0.1 s), up to 5
    assert recording.calls[:5] == [(1, 0), (2, 0), (4, 0), (5, 0), (5, 0)]
    assert len(recording.calls) == 12  # 50 requests: 1 + 2 + 4 + 5 x 8 + 3 of a 5
    assert buckets.take("k") == 1.2  # none left: a token every 1.2 s
    assert len(recording.calls) == 13


@pytest.mark.redis
@needs_redis
def test_a_refused_key_is_refused_in_the_process_until_its_next_token(store, redis_db, redis_clock):
    buckets = shared(2, 60, store, redis_db)
    buckets.store = recording = Recording(store)

    assert [buckets.take("k") for _ in range(2)] == [0.0, 0.0]
    assert buckets.take("k") == 30.0
    asked = len(recording.calls)
    redis_clock.now += 10
    assert [buckets.take("k") for _ in range(100)] == [20.0] * 100  # no round trip for these
    assert len(recording.calls) == asked
    redis_clock.now += 20
    assert buckets.take("k") == 0.0  # the next token, from Redis
    assert buckets.take("k") == 30.0
    assert buckets.take("other") == 0.0  # another key, another bucket


@pytest.mark.redis
@needs_redis
def test_an_allotment_expires_and_the_next_is_smaller(store, redis_db, redis_clock):
    buckets = shared(600, 60, store, redis_db)  # allotments live 1 s
    buckets.store = recording = Recording(store)
    for _ in range(4):  # allotments of 1, 2 (one spent from it) and 4
        buckets.take("k")
    assert buckets._entries["k"][ratelimit.TOKENS] == 3

    redis_clock.now += 0.999
    assert buckets.take("k") == 0.0  # still the allotment's
    redis_clock.now += 0.001
    assert buckets.take("k") == 0.0  # the 2 left expired: a new allotment, half as large
    assert recording.calls == [(1, 0), (2, 0), (4, 0), (2, 0)]
    assert buckets._entries["k"][ratelimit.TOKENS] == 1


@pytest.mark.redis
@needs_redis
def test_a_keys_first_request_in_a_process_is_admitted_on_credit_and_charged_with_the_next(store, redis_db, redis_clock):
    buckets = shared(1000, 60, store, redis_db)  # from 1000 a window
    buckets.store = recording = Recording(store)

    assert buckets.take("k") == 0.0
    assert recording.calls == []  # no round trip
    assert buckets.take("k") == 0.0
    assert recording.calls == [(1, 1)]  # one owed, one wanted
    assert int(redis_db[0].hget(buckets.prefix + "k", "level")) == buckets.cap - 2 * buckets.cost


@pytest.mark.redis
@needs_redis
def test_below_the_credit_limit_every_first_request_asks_redis(store, redis_db, redis_clock):
    buckets = shared(999, 60, store, redis_db)
    buckets.store = recording = Recording(store)

    assert buckets.take("k") == 0.0
    assert recording.calls == [(1, 0)]


# --- Through Django ------------------------------------------------------------------------


@pytest.mark.redis
@needs_redis
@pytest.mark.django_db
def test_with_redis_the_redirect_is_limited_in_redis_and_answers_the_same_429(settings, link, redis_db):
    settings.REDIS_URL = shared_url()
    settings.RATE_LIMIT_WINDOW_SECONDS = 60
    settings.RATE_LIMIT_REDIRECT_PER_IP = 2
    ratelimit.reset()
    ip = new_ip()
    buckets = ratelimit._buckets()["redirect"]
    redis_db[1].append(buckets.prefix)
    client = Client(REMOTE_ADDR=ip)
    try:
        assert [client.get("/r/annablog").status_code for _ in range(2)] == [302, 302]
        throttled = client.get("/r/annablog")
        assert isinstance(buckets, ratelimit.SharedBuckets)
        assert redis_db[0].exists(buckets.prefix + ip)
        # Another process (a fresh state here) shares the count
        ratelimit.reset()
        again = Client(REMOTE_ADDR=ip).get("/r/annablog")
    finally:
        ratelimit.reset()

    for response in (throttled, again):
        assert response.status_code == 429
        assert response["Retry-After"] == "30"
        assert response.json() == {
            "error": {"code": "throttled", "message": "Too many requests; retry in 30 seconds.", "fields": {}}
        }
    assert Click.objects.count() == 2


# --- Two processes, one Redis ------------------------------------------------------------


def process_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DJANGO_"))}
    env.pop("SQLITE_PATH", None)
    env.pop("DATABASE_URL", None)  # the limiter touches no database
    env.update(DJANGO_SETTINGS_MODULE="config.settings", SECRET_KEY="ratelimit-test-" + "k" * 40, DEBUG="0", **extra)
    return env


@pytest.mark.redis
@needs_redis
def test_two_processes_together_admit_the_limit_not_twice_it(redis_db):
    """Two processes with their own Django, one Redis: the redirect's 50 per IP (exact: no
    credit below 1,000) and the API's 1,000 per key (one request of credit per process at most,
    see the module). A ten-hour window, so nothing refills during the test (a token every 720 s
    and every 36 s). Each process sends more than the limit, so neither ends holding tokens."""
    ip, key = new_ip(), "test-" + secrets.token_hex(8)
    redis_db[1].extend(
        [f"ratelimit:redirect:50/36000000:{ip}", f"ratelimit:api:1000/36000000:{digest(key)}", f"ratelimit:api_ip:100000/36000000:{ip}"]
    )
    env = process_env(
        REDIS_URL=shared_url(),
        RATE_LIMIT_WINDOW_SECONDS="36000",
        RATE_LIMIT_REDIRECT_PER_IP="50",
        RATE_LIMIT_API_PER_KEY="1000",
        RATE_LIMIT_API_PER_IP="100000",
    )
    command = [sys.executable, "-m", "tests.security.shared_limit_process", ip, key, "60", "1100"]
    processes = [
        subprocess.Popen(command, cwd=BASE_DIR, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        outputs = [process.communicate(timeout=120)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [process.returncode for process in processes] == [0, 0], outputs
    counts = [json.loads(output.strip().splitlines()[-1]) for output in outputs]

    redirect = [c["redirect"] for c in counts]
    assert sum(r["admitted"] for r in redirect) == 50
    assert sum(r["refused"] for r in redirect) == 2 * 60 - 50
    assert all(r["admitted"] > 0 and r["unmarked"] == 0 for r in redirect), redirect
    assert {w for r in redirect for w in r["waits"]} <= {719, 720}  # the next token, 720 s after the first take
    api = [c["api"] for c in counts]
    assert 1000 <= sum(a["admitted"] for a in api) <= 1002, api
    assert sum(a["admitted"] + a["refused"] for a in api) == 2 * 1100
    assert {b for a in api for b in a["bodies"]} == {"throttled"}
    assert {w for a in api for w in a["waits"]} <= {35, 36}
    # Most requests did not wait on Redis
    assert sum(c["round_trips"] for c in counts) < sum(c["requests"] for c in counts) / 5, counts


# --- Redis down or slow --------------------------------------------------------------------


def test_with_redis_down_a_process_counts_on_its_own_and_warns_once_per_interval(clock, caplog):
    store = ratelimit.Store(DEAD_REDIS, {"socket_timeout": 0.1, "socket_connect_timeout": 0.1})
    attempts = []
    take = store._take
    store._take = lambda **kwargs: attempts.append(1) or take(**kwargs)
    buckets = ratelimit.SharedBuckets(2, 60, scope="redirect", store=store)
    caplog.set_level(logging.WARNING, logger="affiliate.ratelimit")

    assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 30.0]  # the in-process bucket's answers
    assert len(attempts) == 1  # Redis is not asked again for RETRY_SECONDS
    clock.now += ratelimit.RETRY_SECONDS
    assert buckets.take("k") == 25.0
    assert len(attempts) == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Redis failed (ConnectionError" in warnings[0].getMessage()
    clock.now += ratelimit.WARN_SECONDS
    buckets.take("k")
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    store.close()


def test_a_redis_that_does_not_answer_times_out_and_is_counted_around(clock, caplog):
    """A server that accepts connections and never answers: the short timeout, then the
    process's own bucket."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        store = ratelimit.Store(
            f"redis://127.0.0.1:{silent.getsockname()[1]}/0", {"socket_timeout": 0.1, "socket_connect_timeout": 0.1}
        )
        buckets = ratelimit.SharedBuckets(2, 60, scope="redirect", store=store)
        caplog.set_level(logging.WARNING, logger="affiliate.ratelimit")

        assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 30.0]
        assert "Redis failed (TimeoutError" in caplog.records[0].getMessage()
        store.close()


def test_a_settings_timeout_above_the_limiters_is_cut_to_it(settings):
    settings.REDIS_URL = DEAD_REDIS
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": DEAD_REDIS,
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1, "health_check_interval": 30},
        }
    }
    ratelimit.reset()
    try:
        buckets = ratelimit._buckets()
        kwargs = buckets["redirect"].store.client.connection_pool.connection_kwargs
    finally:
        ratelimit.reset()

    assert all(isinstance(b, ratelimit.SharedBuckets) for b in buckets.values())
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (ratelimit.TIMEOUT, ratelimit.TIMEOUT)
    assert kwargs["health_check_interval"] == 30  # the cache's other options are kept


@pytest.mark.redis
@needs_redis
def test_when_redis_comes_back_the_shared_count_goes_on(redis_db, redis_clock, caplog):
    host, port = redis_db[0].connection_pool.connection_kwargs["host"], redis_db[0].connection_pool.connection_kwargs["port"]
    proxy = TcpProxy(host, port)
    proxy.start()
    store = ratelimit.Store(f"redis://127.0.0.1:{proxy.port}/{RATELIMIT_REDIS_DB}", {"socket_timeout": 0.5, "socket_connect_timeout": 0.5})
    buckets = shared(3, 60, store, redis_db)
    caplog.set_level(logging.WARNING, logger="affiliate.ratelimit")
    try:
        assert buckets.take("k") == 0.0  # in Redis: 2 left
        proxy.cut()
        assert [buckets.take("k") for _ in range(4)] == [0.0, 0.0, 0.0, 20.0]  # this process's own 3
        proxy.restore()
        redis_clock.now += ratelimit.RETRY_SECONDS  # 5 s: a quarter of a token back in Redis
        assert [buckets.take("k") for _ in range(3)] == [0.0, 0.0, 15.0]  # Redis's 2 left, then its wait
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    finally:
        store.close()
        proxy.close()
