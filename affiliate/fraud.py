"""Fraud controls: which clicks and conversions earn nothing, and why.

Clicks (decided when a click is stored, by ``services.click_record`` and by the click spool's
set-based flush alike):

* a known bot: the user agent is a crawler's (the ``crawlerdetect`` library, cached per
  user-agent string, so the redirect pays a dictionary look-up for a user agent it saw);
* a click flood: the same visitor, or the same IP, already clicked the same link
  ``FRAUD_CLICK_FLOOD_MAX`` times within the last ``FRAUD_CLICK_FLOOD_SECONDS``: the first
  N clicks count, every further one within the window is flagged (every click counts towards
  the N, flagged or not, so a flood stays flagged while it goes on).

A flagged click (``is_fraud``) is left out of attribution (``attribution.engine``); its
reason is in ``flag_reason``, which names the fraud even when the click is also a duplicate.

Conversions (decided when the event is credited, for a whole batch at once, by
``payouts.fraud.conversions_screen``; the rules themselves are ``conversion_reasons`` below):

* self-referral by email: the customer's id is a credited promoter's email (case-insensitive),
  or the event's payload carries an ``email`` that is;
* implausibly fast: the last click touchpoint less than
  ``FRAUD_MIN_CLICK_TO_CONVERSION_SECONDS`` before the event;
* one IP behind many promoters: the IP of the converting click (the last click touchpoint)
  is already behind conversions credited to more than ``FRAUD_IP_MAX_PROMOTERS`` distinct
  promoters within ``FRAUD_IP_WINDOW_SECONDS`` before the event (a conversion is behind an
  IP when one of its click touchpoints came from it; flagged conversions do not count).

A flagged conversion earns nothing: no touchpoints, credits or commissions are written, it is
marked processed with its reason. Finance can clear a flag by hand (``conversion_clear``):
the conversion is then credited through the normal processors, once.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
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


def bot_reason(user_agent: str) -> str:
    """``"known bot: <what matched>"`` when the user agent is a crawler's, else ``""``."""
    if not settings.FRAUD_BOT_DETECTION or not user_agent:
        return ""
    match = _bot_match(user_agent)
    return reason_text(f"known bot: {match}") if match else ""


def flood_settings() -> tuple[int, int]:
    """(max clicks, window seconds); (0, 0) when the flood rule is off."""
    limit, seconds = settings.FRAUD_CLICK_FLOOD_MAX, settings.FRAUD_CLICK_FLOOD_SECONDS
    return (limit, seconds) if limit > 0 and seconds > 0 else (0, 0)


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


def cleared_reason(reason: str, *, by: str, at: datetime) -> str:
    """What a click's flag_reason says once finance cleared it (clicks have no cleared_* fields)."""
    return reason_text(f"cleared by {by or 'finance'} {at:%Y-%m-%d %H:%M} UTC (was: {reason})")


CLEARED_PREFIX = "cleared by "


@transaction.atomic
def clicks_clear(*, click_ids: Iterable, by: str) -> int:
    """Clear the fraud flag of these clicks: they count for conversions processed from now on
    (a conversion already credited is not computed again). Returns how many were cleared."""
    from .models import Click

    now = timezone.now()
    clicks = list(Click.objects.select_for_update().filter(pk__in=list(click_ids), is_fraud=True).order_by("pk"))
    for click in clicks:
        click.is_fraud = False
        click.flag_reason = cleared_reason(click.flag_reason, by=by, at=now)
    Click.objects.bulk_update(clicks, ["is_fraud", "flag_reason"])
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


@dataclass(frozen=True)
class ConversionRules:
    self_referral_email: bool = True
    min_click_seconds: float = 0
    ip_max_promoters: int = 0
    ip_window_seconds: int = 0

    @classmethod
    def from_settings(cls) -> ConversionRules:
        return cls(
            self_referral_email=settings.FRAUD_SELF_REFERRAL_EMAIL,
            min_click_seconds=settings.FRAUD_MIN_CLICK_TO_CONVERSION_SECONDS,
            ip_max_promoters=settings.FRAUD_IP_MAX_PROMOTERS if settings.FRAUD_IP_WINDOW_SECONDS > 0 else 0,
            ip_window_seconds=settings.FRAUD_IP_WINDOW_SECONDS if settings.FRAUD_IP_MAX_PROMOTERS > 0 else 0,
        )

    @property
    def ip_rule(self) -> bool:
        return self.ip_max_promoters > 0 and self.ip_window_seconds > 0

    @property
    def any(self) -> bool:
        return self.self_referral_email or self.min_click_seconds > 0 or self.ip_rule


def conversion_reasons(
    conversions: Sequence[ConversionFacts],
    *,
    emails: Mapping[int, str],
    history: Iterable[IpConversion],
    rules: ConversionRules,
) -> dict[int, str]:
    """The flagged conversions' ids with their reason. Conversions are judged in id order, as
    if one at a time: one that passes counts, for the IP rule, towards those after it."""
    behind = list(history)
    window = timedelta(seconds=rules.ip_window_seconds)
    out: dict[int, str] = {}
    for facts in sorted(conversions, key=lambda f: f.event_id):
        reason = _conversion_reason(facts, emails, behind, rules, window)
        if reason:
            out[facts.event_id] = reason_text(reason)
            continue
        behind.extend(
            IpConversion(ip, facts.merchant_id, facts.occurred_at, promoter_id)
            for ip in sorted(facts.click_ips)
            if ip
            for promoter_id in facts.credited
        )
    return out


def _conversion_reason(facts: ConversionFacts, emails, behind: list[IpConversion], rules: ConversionRules, window) -> str:
    if rules.self_referral_email:
        own = {facts.customer_id.strip().casefold(), facts.payload_email.strip().casefold()} - {""}
        for promoter_id in facts.credited:
            email = (emails.get(promoter_id) or "").strip().casefold()
            if email and email in own:
                return f"self-referral: the customer is promoter {promoter_id} ({emails[promoter_id]})"
    if rules.min_click_seconds > 0 and facts.last_click_at is not None:
        gap = (facts.occurred_at - facts.last_click_at).total_seconds()
        if gap < rules.min_click_seconds:
            return f"click to conversion in {gap:.1f}s, under {rules.min_click_seconds:g}s"
    if rules.ip_rule and facts.last_click_ip:
        since = facts.occurred_at - window
        promoters = {
            b.promoter_id
            for b in behind
            if b.ip_hash == facts.last_click_ip and b.merchant_id == facts.merchant_id and since <= b.at <= facts.occurred_at
        }
        if len(promoters) > rules.ip_max_promoters:
            return (
                f"one IP behind the conversions of {len(promoters)} promoters within "
                f"{rules.ip_window_seconds}s (more than {rules.ip_max_promoters})"
            )
    return ""


def payload_email(payload) -> str:
    raw = payload.get("email") if isinstance(payload, dict) else None
    return raw if isinstance(raw, str) else ""


@transaction.atomic
def conversion_clear(*, event_id: int, by: str) -> bool:
    """Clear a conversion's fraud flag and pay it: the downstream processors (attribution,
    commissions, the ledger) run on it now, as they would have when it was processed, and its
    refunds processed since are replayed after it, in the order received. One transaction, under
    the event's row lock; a conversion that is not flagged (cleared already) is left alone, so
    it is never paid twice. Returns whether it was cleared."""
    from . import events
    from .models import ConversionEvent

    event = ConversionEvent.objects.select_for_update(of=("self",)).select_related("customer").filter(pk=event_id).first()
    if event is None or not event.is_fraud:
        return False
    event.is_fraud = False
    event.cleared_at = timezone.now()
    event.cleared_by = (by or "")[:150]
    event.save(update_fields=["is_fraud", "cleared_at", "cleared_by"])
    if event.status != ConversionEvent.Status.PROCESSED:
        return True  # credited by its drainer, as a cleared event
    for processor in events.PROCESSORS:
        processor([event])
    refunds = list(
        ConversionEvent.objects.select_for_update(of=("self",))
        .select_related("customer", "purchase")
        .filter(purchase_id=event.pk, status=ConversionEvent.Status.PROCESSED)
        .order_by("pk")
    )
    for refund in refunds:
        for processor in events.PROCESSORS:
            processor([refund])
    return True
