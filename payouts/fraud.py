"""The conversion fraud rules (``affiliate.fraud``) applied to a batch of events being credited.

Called by ``services._process_gains`` before anything is written: the facts of the whole
batch are read set-based (the batch's touchpoints as attribution will select them, the
credited promoters' emails, the converting clicks' IPs, and the conversions already behind
those IPs), a few queries whatever the batch's size; the flagged events get their reason
(one update) and are left out of attribution and commissions: they earn nothing.
"""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction

from affiliate import fraud
from affiliate.models import Click, ConversionEvent
from attribution import services as attribution
from attribution.models import Credit, Touchpoint
from promoters.models import Promoter

# Ids per IN list of the IP history's look-ups.
CHUNK = 1000


def conversions_screen(events: list[ConversionEvent]) -> dict[int, list]:
    """Flag the events the fraud rules of their program (the terms stored with each event)
    catch: ``is_fraud``, ``flag_code`` and ``flag_reason``, saved. Returns the touchpoints
    selected for the events judged, by event id (attribution takes them as they are instead
    of reading the journeys again). Events cleared by hand (``cleared_at``) are not judged
    again. A batch's events may come from programs with different rules: each is judged by
    its own, the IP history read once for the widest window."""
    judged = [e for e in events if e.cleared_at is None and not e.is_fraud]
    rules_of = {e.pk: fraud.ConversionRules.from_terms(e.terms) for e in judged}
    judged = [e for e in judged if rules_of[e.pk].any]
    if not judged:
        return {}
    rules = fraud.ConversionRules.union(rules_of[e.pk] for e in judged)
    touchpoints_of = attribution.events_touchpoints([(e, e.terms) for e in judged])
    credited_of: dict[int, tuple[int, ...]] = {}
    last_click_of: dict[int, object] = {}
    click_ids: set[str] = set()
    for event in judged:
        points = touchpoints_of[event.pk]
        weights = attribution.conversion_weights(event, event.terms, points)
        total: dict[int, Fraction] = {}
        for point, weight in zip(points, weights, strict=True):
            total[point.promoter_id] = total.get(point.promoter_id, Fraction(0)) + weight
        credited_of[event.pk] = tuple(p for p, w in total.items() if w > 0)
        clicks = [p for p in points if p.kind == "click"]
        last_click_of[event.pk] = clicks[-1] if clicks else None
        click_ids.update(p.click_id for p in clicks)
    ip_of: dict[str, str] = {}
    if rules.ip_rule and click_ids:
        ip_of = {pk.hex: ip for pk, ip in Click.objects.filter(pk__in=sorted(click_ids)).values_list("id", "ip_hash")}
    emails: dict[int, str] = {}
    if rules.self_referral_email:
        wanted = {p for credited in credited_of.values() for p in credited}
        emails = dict(Promoter.objects.filter(pk__in=sorted(wanted)).values_list("id", "email")) if wanted else {}
    facts = []
    for event in judged:
        last = last_click_of[event.pk]
        facts.append(
            fraud.ConversionFacts(
                event_id=event.pk,
                merchant_id=event.merchant_id,
                occurred_at=event.occurred_at,
                customer_id=event.customer.external_id,
                payload_email=fraud.payload_email(event.payload),
                credited=credited_of[event.pk],
                amount_minor=event.amount_minor,
                currency=event.currency,
                last_click_at=last.at if last else None,
                last_click_ip=ip_of.get(last.click_id, "") if last else "",
                click_ips=frozenset(ip_of.get(p.click_id, "") for p in touchpoints_of[event.pk] if p.kind == "click") - {""},
            )
        )
    history = _ip_history(facts, rules) if rules.ip_rule else []
    reasons = fraud.conversion_reasons(facts, emails=emails, history=history, rules_of=rules_of)
    flagged = [e for e in judged if e.pk in reasons]
    for event in flagged:
        event.is_fraud = True
        event.flag_code, event.flag_reason = reasons[event.pk]
    if flagged:
        ConversionEvent.objects.bulk_update(flagged, ["is_fraud", "flag_code", "flag_reason"])
    return touchpoints_of


def _ip_history(facts: list[fraud.ConversionFacts], rules: fraud.ConversionRules) -> list[fraud.IpConversion]:
    """The credited conversions already processed behind the batch's converting IPs, within
    the window before the batch's events.

    Three index-driven queries, not one join: the clicks of those IPs (the clicks' IP index,
    in every month's partition), their touchpoints (by click), then the events among them
    that are in the window (by id). As one join over the partitioned clicks and events, the
    plan PostgreSQL keeps for a prepared statement read whole partitions: seconds a batch."""
    ips = sorted({f.last_click_ip for f in facts if f.last_click_ip})
    if not ips:
        return []
    window = timedelta(seconds=rules.ip_window_seconds)
    ip_of = dict(Click.objects.filter(ip_hash__in=ips).values_list("id", "ip_hash"))
    if not ip_of:
        return []
    event_ips: dict[int, set[str]] = {}
    click_ids = sorted(ip_of)
    for start in range(0, len(click_ids), CHUNK):
        for click_id, event_id in Touchpoint.objects.filter(
            kind=Touchpoint.Kind.CLICK, click_id__in=click_ids[start : start + CHUNK]
        ).values_list("click_id", "event_id"):
            event_ips.setdefault(event_id, set()).add(ip_of[click_id])
    rows = set()
    event_ids = sorted(event_ips)
    for start in range(0, len(event_ids), CHUNK):
        for event_id, merchant_id, at in ConversionEvent.objects.filter(
            pk__in=event_ids[start : start + CHUNK],
            merchant_id__in=sorted({f.merchant_id for f in facts}),
            status=ConversionEvent.Status.PROCESSED,
            is_fraud=False,
            occurred_at__gte=min(f.occurred_at for f in facts) - window,
            occurred_at__lte=max(f.occurred_at for f in facts),
        ).values_list("id", "merchant_id", "occurred_at"):
            rows.update((ip, event_id, merchant_id, at) for ip in event_ips[event_id])
    if not rows:
        return []
    promoters_of: dict[int, list[int]] = {}
    for event_id, promoter_id in Credit.objects.filter(event_id__in=sorted({r[1] for r in rows})).values_list(
        "event_id", "promoter_id"
    ):
        promoters_of.setdefault(event_id, []).append(promoter_id)
    return [
        fraud.IpConversion(ip, merchant_id, at, promoter_id)
        for ip, event_id, merchant_id, at in sorted(rows)
        for promoter_id in promoters_of.get(event_id, ())
    ]
