"""Browser routes: the tracking redirect (hot path) and the health check."""

from __future__ import annotations

import time
import uuid

from django.conf import settings
from django.db import connection
from django.http import Http404, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect, JsonResponse
from django.utils.http import http_date

from . import services

COOKIE_NAME = "aff_vid"
COOKIE_MAX_AGE = 365 * 24 * 3600
_CACHE_SECONDS = 30
_CACHE_MAX = 50_000
_link_cache: dict[str, tuple[float, services.LinkTarget | None]] = {}


def cached_link_target(code: str) -> services.LinkTarget | None:
    """Links never change once made; a short process-local cache keeps the redirect off the
    database for everything but the click insert. Unknown codes are cached briefly too."""
    now = time.monotonic()
    hit = _link_cache.get(code)
    if hit is not None and hit[0] > now:
        return hit[1]
    target = services.link_target(code) if len(code) <= 32 else None
    if len(_link_cache) >= _CACHE_MAX:
        _link_cache.clear()
    _link_cache[code] = (now + (_CACHE_SECONDS if target else 2), target)
    return target


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
    raw = request.COOKIES.get(COOKIE_NAME)
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


# What django.views.decorators.cache.never_cache adds, written out: the same two headers
# without patch_cache_control's parsing on every click. A cached 302 would be a lost click.
_NEVER_CACHE = "max-age=0, no-cache, no-store, must-revalidate, private"


def _never_cache(response):
    response.headers["Expires"] = http_date(time.time())
    response.headers["Cache-Control"] = _NEVER_CACHE
    return response


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
    click = services.click_record(
        target=target,
        visitor_id=visitor_id,
        ip=client_ip(request),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        referrer=request.META.get("HTTP_REFERER", ""),
        subs={f"sub{i}": request.GET.get(f"sub{i}", "") for i in range(1, 6)},
    )
    response = HttpResponseRedirect(with_click(target.destination_url, click.id.hex))
    response.set_cookie(
        COOKIE_NAME,
        str(click.visitor_id),
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure(),
    )
    response["Referrer-Policy"] = "no-referrer-when-downgrade"
    return _never_cache(response)


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
