"""Browser routes: the tracking redirect (hot path) and the health check."""

from __future__ import annotations

import logging
import time
import uuid

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.urls import Resolver404, resolve
from django.utils.http import http_date

from . import clickspool, services

log = logging.getLogger(__name__)

COOKIE_NAME = "aff_vid"
COOKIE_MAX_AGE = 365 * 24 * 3600
_CACHE_SECONDS = 30
_CACHE_MAX = 50_000
_link_cache: dict[str, tuple[float, services.LinkTarget | None]] = {}


def cached_link_target(code: str) -> services.LinkTarget | None:
    """Links never change once made; a short process-local cache keeps the redirect off the
    database for everything but the click insert. Unknown codes are cached briefly too."""
    hit = _link_cache.get(code)
    now = time.monotonic()
    if hit is not None and hit[0] > now:
        return hit[1]
    target = services.link_target(code) if len(code) <= 32 else None
    if len(_link_cache) >= _CACHE_MAX:
        _link_cache.clear()
    _link_cache[code] = (now + (_CACHE_SECONDS if target else 2), target)
    return target


def cached_link_target_if_cached(code: str) -> services.LinkTarget | None:
    """The cached link, without going to the database (None when not cached, or unknown)."""
    hit = _link_cache.get(code)
    return hit[1] if hit is not None and hit[0] > time.monotonic() else None


def clear_link_cache() -> None:
    _link_cache.clear()


def client_ip(request) -> str:
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR", "")


def with_click(destination: str, click_id: str) -> str:
    """Append ``aff_click`` and keep the existing query byte for byte (and the fragment)."""
    base, hash_, fragment = destination.partition("#")
    separator = "&" if "?" in base else "?"
    if base.endswith("?") or base.endswith("&"):
        separator = ""
    return f"{base}{separator}aff_click={click_id}{hash_}{fragment}"


def visitor_from_cookie(request) -> uuid.UUID | None:
    return visitor_from_cookies(request.COOKIES)


def visitor_from_cookies(cookies: dict) -> uuid.UUID | None:
    raw = cookies.get(COOKIE_NAME)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


# What django.views.decorators.cache.never_cache adds, written out: the same two headers
# without patch_cache_control's parsing on every click. A cached 302 would be a lost click.
NEVER_CACHE = "max-age=0, no-cache, no-store, must-revalidate, private"


def _never_cache(response):
    response.headers["Expires"] = http_date(time.time())
    response.headers["Cache-Control"] = NEVER_CACHE
    return response


def _click_commit(**kwargs) -> tuple[uuid.UUID, uuid.UUID]:
    click = services.click_record(**kwargs)
    return click.id, click.visitor_id


def track_redirect(request, code: str):
    if request.method not in ("GET", "HEAD"):
        return _never_cache(HttpResponseNotAllowed(["GET", "HEAD"]))
    target = cached_link_target(code)
    if target is None:
        raise Http404("No such referral link.")
    if request.method == "HEAD":
        # Link unfurlers and scanners ask with HEAD: answer, but it is not a visit.
        return _never_cache(HttpResponseRedirect(target.destination_url))
    visitor_id = visitor_from_cookie(request)
    click = dict(
        target=target,
        visitor_id=visitor_id,
        ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        referrer=request.META.get("HTTP_REFERER", ""),
        subs={f"sub{i}": request.GET.get(f"sub{i}", "") for i in range(1, 6)},
    )
    # Spooled (clickspool: stored in batches moments later) or committed before the 302;
    # committed too when the spool cannot be written (a full disk).
    try:
        click_id, visitor_id = (clickspool.record if settings.CLICK_SPOOL_DIR else _click_commit)(**click)
    except OSError:
        log.exception("Click spool: write failed; the click is committed to the database instead.")
        click_id, visitor_id = _click_commit(**click)
    response = HttpResponseRedirect(with_click(target.destination_url, click_id.hex))
    response.set_cookie(
        COOKIE_NAME,
        str(visitor_id),
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure(),
    )
    response["Referrer-Policy"] = "no-referrer-when-downgrade"
    return _never_cache(response)


class TrackRedirectMiddleware:
    """Answer ``/r/<code>`` for a known link right after SecurityMiddleware, skipping the
    middleware listed below it in settings.MIDDLEWARE.

    The redirect reads no session, user, message or CSRF token and serves no static file,
    yet setting those up and finishing them was about a sixth of its CPU per click
    (bench/README.md). What the skipped middleware would still do to this response is
    done here: the host is validated and Content-Length set (CommonMiddleware: a bad Host
    is a 400), and X-Frame-Options is set (XFrameOptionsMiddleware). Everything else takes the whole
    stack as before: other methods (CSRF still answers a POST), unknown codes (the 404
    page), other paths, and every request when DISALLOWED_USER_AGENTS or PREPEND_WWW is on.
    SecurityMiddleware, above this one, still redirects to https and adds its headers.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.enabled = not settings.DISALLOWED_USER_AGENTS and not settings.PREPEND_WWW
        self.x_frame_options = getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()

    def __call__(self, request):
        if self.enabled and request.method in ("GET", "HEAD") and request.path_info.startswith("/r/"):
            try:
                match = resolve(request.path_info, getattr(request, "urlconf", None))
            except Resolver404:
                match = None
            if match is not None and match.func is track_redirect and cached_link_target(match.kwargs["code"]):
                request.get_host()  # raises DisallowedHost for a host not in ALLOWED_HOSTS
                request.resolver_match = match
                response = track_redirect(request, *match.args, **match.kwargs)
                if response.get("X-Frame-Options") is None:
                    response.headers["X-Frame-Options"] = self.x_frame_options
                if not response.has_header("Content-Length"):
                    response.headers["Content-Length"] = str(len(response.content))
                return response
        return self.get_response(request)


def bare_redirect(request):
    """The ceiling for the redirect benchmark: Django answering 302 and nothing else."""
    return HttpResponseRedirect("https://shop.example.com/")


def healthz(request):
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # noqa: BLE001
        return JsonResponse({"status": "database unavailable"}, status=503, headers={"Retry-After": "5"})
    return HttpResponse("ok", content_type="text/plain")
