"""Field rules shared by services: rates, shares, hosts, identifiers."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit

MAX_TIER_LEVELS = 10
RATE_MAX_DECIMALS = 6
_HOST_RE = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")


class FieldProblem(ValueError):
    pass


def parse_rate(raw, *, what: str = "rate") -> Decimal:
    """A rate or share: a decimal in [0, 1] with at most six decimals."""
    if isinstance(raw, bool) or raw is None or isinstance(raw, (list, dict)):
        raise FieldProblem(f"The {what} must be a decimal string such as \"0.10\".")
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        raise FieldProblem(f"The {what} must be a decimal string such as \"0.10\".") from None
    if not value.is_finite() or value < 0 or value > 1:
        raise FieldProblem(f"The {what} must lie between 0 and 1.")
    if max(0, -value.normalize().as_tuple().exponent) > RATE_MAX_DECIMALS:
        raise FieldProblem(f"The {what} may have at most {RATE_MAX_DECIMALS} decimals.")
    return value


def format_rate(value: Decimal | None) -> str | None:
    """``0.1`` → ``"0.10"``, ``0.125`` → ``"0.125"``: at least two decimals, no trailing noise."""
    if value is None:
        return None
    normalized = Decimal(value).normalize()
    if normalized.as_tuple().exponent > -2:
        normalized = normalized.quantize(Decimal("0.01"))
    return format(normalized, "f")


def normalize_host(raw: str) -> str:
    if not isinstance(raw, str):
        raise FieldProblem("A domain must be a host name such as shop.example.com.")
    host = raw.strip().lower().rstrip(".")
    if "://" in host or "/" in host or ":" in host:
        raise FieldProblem(f"{raw!r} is not a bare host name; write shop.example.com.")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise FieldProblem(f"{raw!r} is not a valid host name.") from None
    if not _HOST_RE.match(host):
        raise FieldProblem(f"{raw!r} is not a valid host name.")
    return host


def destination_host(url: str) -> tuple[str, str]:
    """Return (scheme, host) of an absolute http(s) URL or raise ``FieldProblem``."""
    if not isinstance(url, str) or not url.strip():
        raise FieldProblem("Give an absolute http(s) URL.")
    if any(ch in url for ch in "\r\n\t ") or len(url) > 2048:
        raise FieldProblem("The URL must not contain spaces or line breaks and must fit in 2048 characters.")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise FieldProblem("The URL is malformed.") from None
    if parts.scheme not in ("http", "https") or not host:
        raise FieldProblem("The URL must be absolute and use http or https.")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise FieldProblem("The URL's host is not valid.") from None
    return parts.scheme, host.lower().rstrip(".")
