from __future__ import annotations

import pytest

from affiliate import ratelimit


class Clock:
    """``ratelimit``'s clock, moved by hand: buckets refill only when a test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(ratelimit, "_clock", clock)
    ratelimit.reset()
    yield clock
    ratelimit.reset()


@pytest.fixture
def limits(settings, clock):
    """Low limits: two requests per minute per key and per IP on every scope (but the API's per IP),
    counted in the process (whose clock the test moves) even when the suite runs with Redis; the
    shared buckets have their own tests (test_ratelimit_shared.py)."""
    settings.REDIS_URL = ""
    settings.RATE_LIMIT_WINDOW_SECONDS = 60
    settings.RATE_LIMIT_API_PER_KEY = 2
    settings.RATE_LIMIT_API_PER_IP = 100  # its own tests lower it
    settings.RATE_LIMIT_POSTBACK_PER_IP = 2
    settings.RATE_LIMIT_REDIRECT_PER_IP = 2
    return settings


from tests.merchant.world import other, world  # noqa: E402,F401  (fixtures for the isolation tests)
