"""The tracking redirect at the WSGI layer, in front of Django.

With the click spool on (``CLICK_SPOOL_DIR``) a redirect for a known link needs no
database: the link comes from the process's cache and the click goes to the spool. What
is left of Django's work per request (building the request object, the request signals,
the middleware, resolving the URL) was then most of the redirect's cost. This wrapper
answers exactly those requests itself, with the very response Django would send
(``tests/affiliate/test_fastpath.py`` compares the two header by header), and hands every
other request to Django unchanged:

* anything but ``GET /r/<code>`` (other paths, ``HEAD``, other methods);
* a link not in this process's cache (Django's path looks it up and caches it), an
  unknown code (Django's 404 page);
* a Host not in ``ALLOWED_HOSTS`` (Django's 400), a plain-HTTP request that
  ``SECURE_SSL_REDIRECT`` sends to HTTPS;
* whenever the spool is off, ``DISALLOWED_USER_AGENTS`` or ``PREPEND_WWW`` is set, or the
  spool cannot be written (Django's path then commits the click to the database).

What SecurityMiddleware, XFrameOptionsMiddleware and CommonMiddleware add to this
response is added here the same way (HSTS on HTTPS, nosniff, the opener policy,
X-Frame-Options, Content-Length).

Over the redirect's rate limit per client IP (``affiliate/ratelimit.py``), the 429 that
Django's ``RateLimitMiddleware`` would send is sent from here.
"""

from __future__ import annotations

import logging
import re
import time

from django.conf import settings
from django.http import QueryDict
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.utils.encoding import iri_to_uri
from django.utils.http import http_date

from . import clickspool, ratelimit, views

log = logging.getLogger(__name__)

_PATH = re.compile(r"/r/([A-Za-z0-9_-]{1,32})/?")


class _Meta:
    """What ``views.client_ip`` reads of a request."""

    __slots__ = ("META",)

    def __init__(self, environ):
        self.META = environ


class TrackingFastPath:
    def __init__(self, app):
        self.app = app
        self._hosts: dict[str, bool] = {}
        self._configured_for = None

    def _configure(self) -> None:
        """Read the settings once (again if a test overrides them)."""
        s = settings._wrapped
        if self._configured_for is s:
            return
        self._configured_for = s
        self._hosts = {}
        self.enabled = (
            bool(settings.CLICK_SPOOL_DIR) and not settings.DISALLOWED_USER_AGENTS and not settings.PREPEND_WWW
        )
        self.allowed_hosts = settings.ALLOWED_HOSTS
        if settings.DEBUG and not self.allowed_hosts:
            self.allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
        self.proxy_ssl_header = settings.SECURE_PROXY_SSL_HEADER
        self.ssl_redirect = settings.SECURE_SSL_REDIRECT
        self.redirect_exempt = [re.compile(r) for r in settings.SECURE_REDIRECT_EXEMPT]
        self.use_x_forwarded_host = settings.USE_X_FORWARDED_HOST
        sts = settings.SECURE_HSTS_SECONDS
        self.sts = None
        if sts:
            self.sts = f"max-age={sts}"
            if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
                self.sts += "; includeSubDomains"
            if settings.SECURE_HSTS_PRELOAD:
                self.sts += "; preload"
        self.tail = [("Referrer-Policy", "no-referrer-when-downgrade")]
        # In the order the middleware adds them on the way out: XFrameOptionsMiddleware and
        # CommonMiddleware, then SecurityMiddleware (HSTS on HTTPS, nosniff, opener policy).
        self.after = [
            ("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()),
            ("Content-Length", "0"),
        ]
        self.security = []
        if settings.SECURE_CONTENT_TYPE_NOSNIFF:
            self.security.append(("X-Content-Type-Options", "nosniff"))
        if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
            self.security.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET" and environ.get("PATH_INFO", "").startswith("/r/"):
            self._configure()
            if self.enabled:
                answer = self._redirect(environ, start_response)
                if answer is not None:
                    return answer
        return self.app(environ, start_response)

    def _secure(self, environ) -> bool:
        if self.proxy_ssl_header:
            header, secure_value = self.proxy_ssl_header
            value = environ.get(header)
            if value is not None:
                return value.split(",", 1)[0].strip() == secure_value
        return environ.get("wsgi.url_scheme") == "https"

    def _host_allowed(self, environ) -> bool:
        if self.use_x_forwarded_host and "HTTP_X_FORWARDED_HOST" in environ:
            host = environ["HTTP_X_FORWARDED_HOST"]
        elif "HTTP_HOST" in environ:
            host = environ["HTTP_HOST"]
        else:
            return False  # Django builds it from SERVER_NAME: let Django decide
        allowed = self._hosts.get(host)
        if allowed is None:
            domain, _ = split_domain_port(host)
            allowed = bool(domain) and validate_host(domain, self.allowed_hosts)
            if len(self._hosts) < 1000:
                self._hosts[host] = allowed
        return allowed

    def _redirect(self, environ, start_response):
        match = _PATH.fullmatch(environ["PATH_INFO"])
        if match is None:
            return None
        target = views.cached_link_target_if_cached(match[1])
        if target is None or not self._host_allowed(environ):
            return None
        secure = self._secure(environ)
        if (
            not secure
            and self.ssl_redirect
            and not any(p.search(environ["PATH_INFO"].lstrip("/")) for p in self.redirect_exempt)
        ):
            return None
        # Counted here, where Django's RateLimitMiddleware would count it (past the checks
        # above, which hand the request to Django: it counts those itself).
        ip = views.client_ip(_Meta(environ))
        wait = ratelimit.hit_wsgi(environ, [("redirect", ip)])
        if wait:
            return ratelimit.answer_wsgi(start_response, wait, secure=secure)
        visitor_id = views.visitor_from_cookies(parse_cookie(environ.get("HTTP_COOKIE", "")))
        query = QueryDict(environ.get("QUERY_STRING", "").encode("iso-8859-1"))
        try:
            click_id, visitor_id = clickspool.record(
                target=target,
                visitor_id=visitor_id,
                ip=ip,
                user_agent=environ.get("HTTP_USER_AGENT", ""),
                referrer=environ.get("HTTP_REFERER", ""),
                subs={f"sub{i}": query.get(f"sub{i}", "") for i in range(1, 6)},
            )
        except OSError:
            log.exception("Click spool: write failed; this click goes through Django (committed to the database).")
            return None
        now = time.time()
        cookie = (
            f" {views.COOKIE_NAME}={visitor_id}; expires={http_date(now + views.COOKIE_MAX_AGE)}; HttpOnly; "
            f"Max-Age={views.COOKIE_MAX_AGE}; Path=/; SameSite=Lax{'; Secure' if secure else ''}"
        )
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Location", iri_to_uri(views.with_click(target.destination_url, click_id.hex))),
            *self.tail,
            ("Expires", http_date(now)),
            ("Cache-Control", views.NEVER_CACHE),
            *self.after,
        ]
        if self.sts and secure:
            headers.append(("Strict-Transport-Security", self.sts))
        headers += self.security
        headers.append(("Set-Cookie", cookie))
        start_response("302 Found", headers)
        return [b""]
