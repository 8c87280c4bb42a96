"""Fraud controls: which clicks and conversions are flagged, and why. The rules are each
program's own (``Program.fraud``, CONTRACT v2; 0 and null turn one off).

Clicks (decided when a click is stored, by ``services.click_record`` and by the click spool's
set-based flush alike, by the rules of the link's program, ``ClickRules``):

* a known bot (``bots``): the user agent is a crawler's (the ``crawlerdetect`` library, cached
  per user-agent string, so the redirect pays a dictionary look-up for a user agent it saw);
* a click flood: the same visitor, or the same IP, already clicked the same link
  ``click_flood_max`` times within the last ``click_flood_seconds``: the first N clicks count,
  every further one within the window is flagged (every click counts towards the N, flagged
  or not, so a flood stays flagged while it goes on).

A flagged click (``is_fraud``) is left out of attribution (``attribution.engine``); its
reason is in ``flag_reason``, which names the fraud even when the click is also a duplicate.
An event naming it carries the ``click_flagged`` warning.

Conversions (decided when the event is credited, for a whole batch at once, by
``payouts.fraud.conversions_screen``, each by the rules stored with it; the rules themselves
are ``conversion_reasons`` below):

* ``max_order_amount``: a purchase above it;
* self-referral by email: the customer's id is a credited promoter's email (case-insensitive),
  or the event's payload carries an ``email`` that is;
* implausibly fast: the last click touchpoint less than ``min_click_to_conversion_seconds``
  before the event;
* one IP behind many promoters: the IP of the converting click is already behind
  conversions credited to more than ``ip_max_promoters`` distinct promoters within the day
  before the event (flagged conversions do not count).

A flagged conversion is credited as if it were clean; its commissions are written ``held``
(``payouts/review.py``) until finance clears or rejects it, once (``conversion_review``).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

REASON_LENGTH = 200  # Click.flag_reason and ConversionEvent.flag_reason

# --- Clicks -----------------------------------------------------------------------------

_detectors = threading.local()


def _detector():
    """One CrawlerDetect per thread: it keeps the last match on the instance."""
    detector = getattr(_detectors, "detector", None)
    if detector is None:
        from crawlerdetect import CrawlerDetect

        detector = _detectors.detector = CrawlerDetect()
    return detector


@functools.lru_cache(maxsize=8192)
def _bot_match(user_agent: str) -> str:
    detector = _detector()
    if not detector.isCrawler(user_agent):
        return ""
    return str(detector.getMatches() or "crawler")


@dataclass(frozen=True)
class ClickRules:
    """A program's click rules (its ``fraud`` settings): known bots, and the click flood."""

    bots: bool = True
    flood_max: int = 20
    flood_seconds: int = 60

    @classmethod
    def of(cls, rules: Mapping | None) -> ClickRules:
        from merchants.models import FRAUD_DEFAULTS

        rules = {**FRAUD_DEFAULTS, **(rules or {})}
        return cls(bool(rules["bots"]), int(rules["click_flood_max"] or 0), int(rules["click_flood_seconds"] or 0))

    @property
    def flood(self) -> tuple[int, int]:
        """(max clicks, window seconds); (0, 0) when the flood rule is off."""
        return (self.flood_max, self.flood_seconds) if self.flood_max > 0 and self.flood_seconds > 0 else (0, 0)


def bot_reason(user_agent: str, *, enabled: bool = True) -> str:
    """``"known bot: <what matched>"`` when the user agent is a crawler's (and the program's
    bot rule is on), else ``""``."""
    if not enabled or not user_agent:
        return ""
    match = _bot_match(user_agent)
    return reason_text(f"known bot: {match}") if match else ""


def program_click_rules(program_ids) -> dict[int, ClickRules]:
    """The click rules of these programs, by id (one query)."""
    from merchants.models import Program

    return {pk: ClickRules.of(rules) for pk, rules in Program.objects.filter(pk__in=set(program_ids)).values_list("pk", "fraud")}


def flood_reason(by: str, limit: int, seconds: int) -> str:
    """``by``: "visitor" or "IP"."""
    return f"click flood: more than {limit} clicks by one {by} on this link within {seconds}s"


@dataclass(frozen=True)
class ClickFact:
    """A click as the flood rule sees it."""

    id: str
    link_id: int
    visitor_id: str
    ip_hash: str
    at: datetime


def flood_flags(clicks: Sequence[ClickFact], *, limit: int, seconds: int) -> dict[str, str]:
    """The flood rule over a set of clicks: the flagged ones' ids with their reason. A click
    is flagged when ``limit`` clicks of the same visitor (first) or the same IP on its link
    came before it (by time, then id) within ``seconds``. What the database paths compute."""
    if limit <= 0 or seconds <= 0:
        return {}
    window = timedelta(seconds=seconds)
    ordered = sorted(clicks, key=lambda c: (c.at, c.id))
    out: dict[str, str] = {}
    for by, key in (("visitor", lambda c: c.visitor_id), ("IP", lambda c: c.ip_hash)):
        seen: dict[tuple, list[datetime]] = {}
        for click in ordered:
            k = key(click)
            if not k:
                continue
            times = seen.setdefault((click.link_id, k), [])
            if click.id not in out and sum(1 for t in times if t >= click.at - window) >= limit:
                out[click.id] = flood_reason(by, limit, seconds)
            times.append(click.at)
    return out


def reason_text(reason: str) -> str:
    return reason[:REASON_LENGTH]


@transaction.atomic
def clicks_clear(*, click_ids: Iterable, by: str) -> int:
    """Clear the fraud flag of these clicks: they count for conversions processed from now on
    (a conversion already credited is not computed again). Returns how many were cleared."""
    from .models import Click

    now = timezone.now()
    clicks = list(Click.objects.select_for_update().filter(pk__in=list(click_ids), is_fraud=True).order_by("pk"))
    for click in clicks:
        click.is_fraud = False
        click.cleared_at = now
        click.cleared_by = by or "finance"
    Click.objects.bulk_update(clicks, ["is_fraud", "cleared_at", "cleared_by"])
    return len(clicks)


# --- Conversions ------------------------------------------------------------------------


@dataclass(frozen=True)
class ConversionFacts:
    """What the conversion rules need of one registration or purchase."""

    event_id: int
    merchant_id: int
    occurred_at: datetime
    customer_id: str
    payload_email: str = ""
    amount_minor: int | None = None
    currency: str = "USD"
    credited: tuple[int, ...] = ()  # the promoters its attribution credits
    last_click_at: datetime | None = None  # the last click touchpoint
    last_click_ip: str = ""  # the converting click's ip_hash
    click_ips: frozenset[str] = field(default_factory=frozenset)  # every click touchpoint's ip_hash


@dataclass(frozen=True)
class IpConversion:
    """A credited conversion behind an IP: one row per (IP, credited promoter)."""

    ip_hash: str
    merchant_id: int
    at: datetime
    promoter_id: int


# The window of the shared-IP rule: conversions behind one IP within the day before.
IP_WINDOW_SECONDS = 86400

# What a flagged conversion's rule is called (``ConversionEvent.flag_code``), and what the
# promoter whose commission is held may read of it (the reason itself names people and
# addresses: finance reads that).
FLAG_CODES = {
    "self_referral": "The customer appears to be the promoter (self-referral).",
    "fast_conversion": "The sale followed the click faster than a person usually buys.",
    "shared_ip": "Sales of many promoters came from one network address.",
    "order_amount": "The order is above the amount the program reviews by hand.",
}


def public_reason(code: str) -> str:
    """What a promoter may read of why a conversion is in review."""
    return FLAG_CODES.get(code, "The sale is being checked by the merchant.")


@dataclass(frozen=True)
class ConversionRules:
    """A program's conversion rules (its ``fraud`` terms): 0 and None turn a rule off."""

    self_referral_email: bool = True
    min_click_seconds: float = 0
    ip_max_promoters: int = 0
    ip_window_seconds: int = 0
    max_order_minor: int | None = None

    @classmethod
    def from_terms(cls, terms: Mapping) -> ConversionRules:
        """The rules stored with an event (the program's as it was received); an event
        stored before programs had rules takes the defaults."""
        from core import money
        from merchants.models import FRAUD_DEFAULTS

        rules = {**FRAUD_DEFAULTS, **((terms or {}).get("fraud") or {})}
        ip_max = int(rules["ip_max_promoters"] or 0)
        limit = rules["max_order_amount"]
        return cls(
            self_referral_email=bool(rules["self_referral_email"]),
            min_click_seconds=float(rules["min_click_to_conversion_seconds"] or 0),
            ip_max_promoters=ip_max,
            ip_window_seconds=IP_WINDOW_SECONDS if ip_max > 0 else 0,
            max_order_minor=None if limit in (None, "") else money.to_minor(Decimal(str(limit)), terms.get("currency", "USD")),
        )

    @classmethod
    def union(cls, many: Iterable[ConversionRules]) -> ConversionRules:
        """What a batch must read to judge each of its events by its own rules: every rule
        any of them has on, the widest IP window."""
        many = list(many)
        return cls(
            self_referral_email=any(r.self_referral_email for r in many),
            min_click_seconds=max((r.min_click_seconds for r in many), default=0),
            ip_max_promoters=max((r.ip_max_promoters for r in many), default=0),
            ip_window_seconds=max((r.ip_window_seconds for r in many), default=0),
            max_order_minor=None,
        )

    @property
    def ip_rule(self) -> bool:
        return self.ip_max_promoters > 0 and self.ip_window_seconds > 0

    @property
    def any(self) -> bool:
        return self.self_referral_email or self.min_click_seconds > 0 or self.ip_rule or self.max_order_minor is not None


def conversion_reasons(
    conversions: Sequence[ConversionFacts],
    *,
    emails: Mapping[int, str],
    history: Iterable[IpConversion],
    rules_of: Mapping[int, ConversionRules],
) -> dict[int, tuple[str, str]]:
    """The flagged conversions' ids with their (code, reason), each judged by its own
    rules. Conversions are judged in id order, as if one at a time: one that passes counts,
    for the IP rule, towards those after it."""
    behind = list(history)
    out: dict[int, tuple[str, str]] = {}
    for facts in sorted(conversions, key=lambda f: f.event_id):
        code, reason = _conversion_reason(facts, emails, behind, rules_of[facts.event_id])
        if code:
            out[facts.event_id] = (code, reason_text(reason))
            continue
        behind.extend(
            IpConversion(ip, facts.merchant_id, facts.occurred_at, promoter_id)
            for ip in sorted(facts.click_ips)
            if ip
            for promoter_id in facts.credited
        )
    return out


def _conversion_reason(facts: ConversionFacts, emails, behind: list[IpConversion], rules: ConversionRules) -> tuple[str, str]:
    from core import money

    if rules.max_order_minor is not None and facts.amount_minor is not None and facts.amount_minor > rules.max_order_minor:
        return "order_amount", (
            f"order of {money.format_minor(facts.amount_minor, facts.currency)} above the program's "
            f"max_order_amount of {money.format_minor(rules.max_order_minor, facts.currency)}"
        )
    if rules.self_referral_email:
        own = {facts.customer_id.strip().casefold(), facts.payload_email.strip().casefold()} - {""}
        for promoter_id in facts.credited:
            email = (emails.get(promoter_id) or "").strip().casefold()
            if email and email in own:
                return "self_referral", f"self-referral: the customer is promoter {promoter_id} ({emails[promoter_id]})"
    if rules.min_click_seconds > 0 and facts.last_click_at is not None:
        gap = (facts.occurred_at - facts.last_click_at).total_seconds()
        if gap < rules.min_click_seconds:
            return "fast_conversion", f"click to conversion in {gap:.1f}s, under {rules.min_click_seconds:g}s"
    if rules.ip_rule and facts.last_click_ip:
        since = facts.occurred_at - timedelta(seconds=rules.ip_window_seconds)
        promoters = {
            b.promoter_id
            for b in behind
            if b.ip_hash == facts.last_click_ip and b.merchant_id == facts.merchant_id and since <= b.at <= facts.occurred_at
        }
        if len(promoters) > rules.ip_max_promoters:
            return "shared_ip", (
                f"one IP behind the conversions of {len(promoters)} promoters within "
                f"{rules.ip_window_seconds}s (more than {rules.ip_max_promoters})"
            )
    return "", ""


def payload_email(payload) -> str:
    raw = payload.get("email") if isinstance(payload, dict) else None
    return raw if isinstance(raw, str) else ""


# Finance's decisions on a flagged conversion ("clear", "reject"), registered by payouts (the
# ledger is its): affiliate's admin calls them by name and imports no downstream app.
REVIEWERS: dict[str, Callable[..., bool]] = {}


def register_reviewer(decision: str, func: Callable[..., bool]) -> None:
    REVIEWERS[decision] = func


def conversion_review(*, event_id: int, decision: str, by: str) -> bool:
    """Clear or reject a flagged conversion, once; returns whether anything changed."""
    return REVIEWERS[decision](event_id=event_id, by=by)


def conversion_clear(*, event_id: int, by: str) -> bool:
    return conversion_review(event_id=event_id, decision="clear", by=by)


def conversion_reject(*, event_id: int, by: str) -> bool:
    return conversion_review(event_id=event_id, decision="reject", by=by)
