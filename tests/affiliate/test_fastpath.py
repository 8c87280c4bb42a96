"""The redirect answered at the WSGI layer (affiliate/fastpath.py) sends exactly what Django
sends for the same request, and hands everything else to Django."""

from __future__ import annotations

import io
import re
import uuid

import pytest
from django.core.wsgi import get_wsgi_application

from affiliate import clickspool, views
from affiliate.fastpath import TrackingFastPath
from affiliate.models import Click
from affiliate.services import hash_ip
from tests.factories import LinkFactory
from tests.realservices import needs_postgres

pytestmark = [pytest.mark.postgres, needs_postgres, pytest.mark.django_db]


@pytest.fixture
def spool_dir(tmp_path, settings):
    settings.CLICK_SPOOL_DIR = str(tmp_path / "spool")
    settings.CLICK_SPOOL_FLUSH_SECONDS = 3600
    settings.ALLOWED_HOSTS = ["go.example.net"]
    clickspool.reset()
    yield tmp_path / "spool"
    clickspool.reset()


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


class Counting:
    """Django's WSGI application, counting the requests that reach it."""

    def __init__(self):
        self.django = get_wsgi_application()
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.django(environ, start_response)


def environ(path: str, query: str = "", method: str = "GET", **extra) -> dict:
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SCRIPT_NAME": "",
        "SERVER_NAME": "go.example.net",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "go.example.net",
        "REMOTE_ADDR": "203.0.113.9",
        "HTTP_USER_AGENT": "Mozilla/5.0 test",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    env.update(extra)
    return env


def call(app, env: dict) -> tuple[str, list[tuple[str, str]], bytes]:
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, headers

    body = app(env, start_response)
    try:
        content = b"".join(body)
    finally:
        if hasattr(body, "close"):
            body.close()
    return answer["status"], answer["headers"], content


def normalised(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers with what differs from one request to the next masked: the click id,
    the visitor id of a new browser, and the dates."""
    out = []
    for name, value in headers:
        value = re.sub(r"aff_click=[0-9a-f]{32}", "aff_click=<click>", value)
        value = re.sub(r"aff_vid=[0-9a-f-]{36}", "aff_vid=<visitor>", value)
        value = re.sub(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT", "<date>", value)
        out.append((name, value))
    return out


SCENARIOS = {
    "new browser": {},
    "returning browser": {"HTTP_COOKIE": "aff_vid=6f1c1f7e-4b5a-4c8e-9a47-2f8f0b7f2d11; other=1"},
    "broken cookie": {"HTTP_COOKIE": "aff_vid=not-a-uuid"},
    "https behind a proxy": {"HTTP_X_FORWARDED_PROTO": "https"},
    "sub ids": {"QUERY_STRING": "sub1=a&sub2=b%20c&sub5=%C3%A9&sub1=last"},
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_fast_path_answers_exactly_as_django(scenario, spool_dir, settings, promoter):
    settings.SECURE_HSTS_SECONDS = 3600
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    settings.SECURE_HSTS_PRELOAD = False
    link = LinkFactory(promoter=promoter, destination_url="https://shop.example.com/p/3?a=1#reviews")
    extra = dict(SCENARIOS[scenario])
    query = extra.pop("QUERY_STRING", "")
    inner = Counting()
    fast = TrackingFastPath(inner)

    django_answer = call(inner.django, environ(f"/r/{link.code}", query, **extra))  # caches the link
    calls = inner.calls
    fast_answer = call(fast, environ(f"/r/{link.code}", query, **extra))
    assert inner.calls == calls, "the request reached Django"

    assert fast_answer[0] == django_answer[0] == "302 Found"
    assert normalised(fast_answer[1]) == normalised(django_answer[1])
    assert fast_answer[2] == django_answer[2] == b""
    if scenario == "returning browser":
        assert dict(fast_answer[1])["Set-Cookie"] == dict(django_answer[1])["Set-Cookie"].replace(
            re.search(r"expires=[^;]+", dict(django_answer[1])["Set-Cookie"])[0],
            re.search(r"expires=[^;]+", dict(fast_answer[1])["Set-Cookie"])[0],
        )
    if scenario == "https behind a proxy":
        assert ("Strict-Transport-Security", "max-age=3600; includeSubDomains") in fast_answer[1]
        assert dict(fast_answer[1])["Set-Cookie"].endswith("; Secure")

    # Both clicks stored alike.
    clickspool.spool().rotate()
    assert clickspool.flush_directory(spool_dir) == 2
    first, second = Click.objects.order_by("created_at")
    for field in (
        "link_id",
        "user_agent",
        "referrer",
        "ip_hash",
        "sub1",
        "sub2",
        "sub3",
        "sub4",
        "sub5",
        "is_duplicate",
    ):
        assert getattr(first, field) == getattr(second, field), field
    assert second.ip_hash == hash_ip("203.0.113.9")
    location = dict(fast_answer[1])["Location"]
    assert location == f"https://shop.example.com/p/3?a=1&aff_click={second.id.hex}#reviews"
    if scenario == "sub ids":
        assert [second.sub1, second.sub2, second.sub5] == ["last", "b c", "é"]
    if scenario == "returning browser":
        assert first.visitor_id == second.visitor_id == uuid.UUID("6f1c1f7e-4b5a-4c8e-9a47-2f8f0b7f2d11")


@pytest.mark.parametrize(
    "case",
    [
        "head",
        "post",
        "unknown code",
        "not cached yet",
        "host not allowed",
        "plain http with ssl redirect",
        "other path",
    ],
)
def test_everything_else_goes_to_django(case, spool_dir, settings, link):
    if case == "plain http with ssl redirect":
        settings.SECURE_SSL_REDIRECT = True  # before the middleware is loaded
    inner = Counting()
    fast = TrackingFastPath(inner)
    views.clear_link_cache()
    if case != "not cached yet":
        call(inner.django, environ(f"/r/{link.code}", HTTP_X_FORWARDED_PROTO="https"))  # caches the link
    env = environ(f"/r/{link.code}")
    if case == "head":
        env["REQUEST_METHOD"] = "HEAD"
    elif case == "post":
        env["REQUEST_METHOD"] = "POST"
    elif case == "unknown code":
        env["PATH_INFO"] = "/r/NoSuchCode"
    elif case == "host not allowed":
        env["HTTP_HOST"] = "evil.example.com"
    elif case == "other path":
        env["PATH_INFO"] = f"/r/{link.code}/extra"
    calls = inner.calls
    status, headers, _ = call(fast, env)
    assert inner.calls == calls + 1
    expected = {
        "head": "302 Found",
        "post": "403 Forbidden",  # CSRF answers a POST first
        "unknown code": "404 Not Found",
        "not cached yet": "302 Found",
        "host not allowed": "400 Bad Request",
        "plain http with ssl redirect": "301 Moved Permanently",
        "other path": "404 Not Found",
    }[case]
    assert status == expected


def test_without_the_spool_django_answers_and_commits_the_click(settings, link):
    settings.CLICK_SPOOL_DIR = ""
    settings.ALLOWED_HOSTS = ["go.example.net"]
    inner = Counting()
    fast = TrackingFastPath(inner)
    call(fast, environ(f"/r/{link.code}"))
    status, headers, _ = call(fast, environ(f"/r/{link.code}"))
    assert (status, inner.calls) == ("302 Found", 2)
    assert Click.objects.count() == 2


def test_a_spool_that_cannot_be_written_falls_back_to_committing(spool_dir, link, monkeypatch):
    inner = Counting()
    fast = TrackingFastPath(inner)
    call(inner.django, environ(f"/r/{link.code}"))  # caches the link (spooled)

    def disk_full(values):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(clickspool.spool(), "append", disk_full)
    status, headers, _ = call(fast, environ(f"/r/{link.code}"))
    assert (status, inner.calls) == ("302 Found", 1)  # the fast path gave way to Django ...
    click_hex = re.search(r"aff_click=([0-9a-f]{32})", dict(headers)["Location"])[1]
    assert Click.objects.get().id.hex == click_hex  # ... which committed the click at once
