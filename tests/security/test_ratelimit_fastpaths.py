"""The WSGI fast paths over a rate limit: the redirect's (affiliate/fastpath.py) and the
events' (affiliate/eventpath.py) answer the very 429 Django answers, header by header and
byte for byte, without Django; a request they hand to Django is counted once."""

from __future__ import annotations

import pytest

from affiliate import clickspool, events, views
from affiliate.eventpath import EventFastPath
from affiliate.fastpath import TrackingFastPath
from affiliate.models import Click, ConversionEvent
from tests.affiliate.test_eventpath import environ as event_environ
from tests.affiliate.test_fastpath import Counting, call
from tests.affiliate.test_fastpath import environ as redirect_environ
from tests.factories import LinkFactory
from tests.realservices import needs_postgres

pytestmark = [pytest.mark.postgres, needs_postgres, pytest.mark.django_db]

BODY = b'{"error": {"code": "throttled", "message": "Too many requests; retry in 30 seconds.", "fields": {}}}'


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """As Django's test client does: a request's end must not close the connection that
    holds the test's transaction."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def spool_dir(tmp_path, settings):
    settings.CLICK_SPOOL_DIR = str(tmp_path / "spool")
    settings.CLICK_SPOOL_FLUSH_SECONDS = 3600
    settings.ALLOWED_HOSTS = ["go.example.net", "testserver"]
    clickspool.reset()
    yield tmp_path / "spool"
    clickspool.reset()


@pytest.fixture
def workers(settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.EVENT_FASTPATH = True
    queued: list[int] = []
    monkeypatch.setattr(events, "enqueue_event", queued.append)
    return queued


def https(scenario: str) -> dict:
    return {"HTTP_X_FORWARDED_PROTO": "https"} if scenario == "https behind a proxy" else {}


@pytest.mark.parametrize("scenario", ["plain http", "https behind a proxy"])
def test_the_redirect_fast_path_answers_djangos_429(scenario, limits, spool_dir, settings, promoter):
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = False
    settings.SECURE_HSTS_PRELOAD = False
    link = LinkFactory(promoter=promoter, destination_url="https://shop.example.com/p/3")
    inner = Counting()
    fast = TrackingFastPath(inner)

    first = call(inner.django, redirect_environ(f"/r/{link.code}", **https(scenario)))  # counted; caches the link
    second = call(fast, redirect_environ(f"/r/{link.code}", **https(scenario)))
    third = call(fast, redirect_environ(f"/r/{link.code}", **https(scenario)))
    assert inner.calls == 0, "the fast path handed a request to Django"
    django_answer = call(inner.django, redirect_environ(f"/r/{link.code}", **https(scenario)))

    assert [first[0], second[0]] == ["302 Found", "302 Found"]
    assert third == django_answer
    assert third[0] == "429 Too Many Requests"
    assert third[2] == BODY
    expected = [
        ("Content-Type", "application/json"),
        ("Retry-After", "30"),
        ("Content-Length", str(len(BODY))),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    if scenario == "https behind a proxy":
        expected.insert(3, ("Strict-Transport-Security", "max-age=3600"))
    assert third[1] == expected
    clickspool.spool().rotate()
    assert clickspool.flush_directory(spool_dir) == 2  # the 302s' clicks, none for the 429s
    assert Click.objects.count() == 2
    # Another IP is not refused.
    assert call(fast, redirect_environ(f"/r/{link.code}", REMOTE_ADDR="198.51.100.7"))[0] == "302 Found"


@pytest.mark.parametrize("scenario", ["plain http", "https behind a proxy"])
def test_the_event_fast_path_answers_djangos_429(scenario, limits, settings, merchant, program, workers):
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = False
    settings.SECURE_HSTS_PRELOAD = False
    inner = Counting()
    fast = EventFastPath(inner)

    def purchase(n: int) -> dict:
        body = {"type": "purchase", "customer_id": f"c-{n}", "order_id": f"A-{n}", "amount": "10.00"}
        return event_environ(merchant, body, **https(scenario))

    first, second, third = (call(fast, purchase(n)) for n in (1, 2, 3))
    assert inner.calls == 0, "the fast path handed a request to Django"
    django_answer = call(inner.django, purchase(4))

    assert [first[0], second[0]] == ["201 Created", "201 Created"]
    assert third == django_answer
    assert third[0] == "429 Too Many Requests"
    assert third[2] == BODY
    assert dict(third[1])["Retry-After"] == "30"
    assert ("Strict-Transport-Security" in dict(third[1])) is (scenario == "https behind a proxy")
    assert sorted(ConversionEvent.objects.values_list("order_id", flat=True)) == ["A-1", "A-2"]


def test_the_event_fast_path_counts_the_client_ip_too(limits, merchant, program, workers):
    limits.RATE_LIMIT_API_PER_KEY = 100
    limits.RATE_LIMIT_API_PER_IP = 2
    inner = Counting()
    fast = EventFastPath(inner)

    def purchase(n: int, ip: str) -> dict:
        body = {"type": "purchase", "customer_id": f"c-{n}", "order_id": f"A-{n}", "amount": "10.00"}
        return event_environ(merchant, body, REMOTE_ADDR=ip)

    answers = [call(fast, purchase(n, "203.0.113.5"))[0] for n in (1, 2, 3)]
    answers.append(call(fast, purchase(4, "203.0.113.6"))[0])

    assert inner.calls == 0
    assert answers == ["201 Created", "201 Created", "429 Too Many Requests", "201 Created"]
    assert sorted(ConversionEvent.objects.values_list("order_id", flat=True)) == ["A-1", "A-2", "A-4"]


def test_a_request_the_event_fast_path_hands_to_django_is_counted_once(limits, merchant, program, workers):
    inner = Counting()
    fast = EventFastPath(inner)
    refund = {"type": "refund", "customer_id": "c-1", "order_id": "A-1", "refund_id": "R-1", "amount": "1.00"}

    answers = [call(fast, event_environ(merchant, refund))[0] for _ in range(3)]

    assert inner.calls == 2  # refunds are Django's; the third was refused in front of it
    # Django refuses both refunds (no such order), counted once each; the third is throttled
    assert answers == ["400 Bad Request", "400 Bad Request", "429 Too Many Requests"]


def test_a_redirect_the_fast_path_hands_to_django_is_counted_once(limits, spool_dir, monkeypatch, link):
    inner = Counting()
    fast = TrackingFastPath(inner)
    call(inner.django, redirect_environ(f"/r/{link.code}"))  # caches the link; counted: 1
    real_record = clickspool.record

    def full_disk(**kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(clickspool, "record", full_disk)
    # The fast path counts it, fails to spool it and hands it to Django, which commits the
    # click (its own spool write fails too, so it commits) without counting it again.
    second = call(fast, redirect_environ(f"/r/{link.code}"))
    monkeypatch.setattr(clickspool, "record", real_record)
    third = call(fast, redirect_environ(f"/r/{link.code}"))

    assert inner.calls == 1  # the second; the third was refused in front of Django
    assert second[0] == "302 Found"
    assert third[0] == "429 Too Many Requests"
    assert views.COOKIE_NAME in dict(second[1])["Set-Cookie"]
