"""What would change under another attribution model: recomputed, never written."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from affiliate.models import ConversionEvent
from attribution import engine
from attribution.models import Credit, Touchpoint
from core import money
from promoters.models import Promoter

from . import rules
from .models import Basis, Commission
from .services import commission_lines, promoter_facts


@dataclass
class PromoterDelta:
    promoter_id: int
    name: str = ""
    revenue_now: int = 0
    revenue_then: int = 0
    commission_now: int = 0
    commission_then: int = 0


@dataclass
class Comparison:
    model: str
    days: int
    events: int = 0
    currency: str = ""
    rows: list[PromoterDelta] = field(default_factory=list)


def compare_models(*, model: str, days: int, merchant_id: int | None = None, program_id: int | None = None, now=None) -> Comparison:
    if model not in engine.MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(engine.MODELS)}")
    now = now or timezone.now()
    events = ConversionEvent.objects.filter(
        type="purchase", status="processed", occurred_at__gte=now - timedelta(days=days), occurred_at__lte=now
    ).select_related("customer")
    if merchant_id:
        events = events.filter(merchant_id=merchant_id)
    if program_id:
        events = events.filter(program_id=program_id)
    result = Comparison(model=model, days=days)
    deltas: dict[int, PromoterDelta] = {}
    currencies = set()

    def row(promoter_id: int) -> PromoterDelta:
        return deltas.setdefault(promoter_id, PromoterDelta(promoter_id))

    event_list = list(events.order_by("id"))
    for start in range(0, len(event_list), 500):
        chunk = event_list[start : start + 500]
        ids = [e.pk for e in chunk]
        points: dict[int, list] = defaultdict(list)
        for t in Touchpoint.objects.filter(event_id__in=ids).order_by("event_id", "position"):
            points[t.event_id].append(engine.Touchpoint(t.promoter_id, t.at, t.kind, t.click_id, t.link_id, t.channel))
        for promoter_id, revenue in Credit.objects.filter(event_id__in=ids).values_list("promoter_id", "revenue_minor"):
            row(promoter_id).revenue_now += revenue
        for promoter_id, amount in Commission.objects.filter(event_id__in=ids).exclude(kind="reversal").values_list("promoter_id", "amount_minor"):
            row(promoter_id).commission_now += amount
        bases = dict(Basis.objects.filter(event_id__in=ids).values_list("event_id", "promoters"))
        for event in chunk:
            currencies.add(event.currency)
            touchpoints = points.get(event.pk)
            if not touchpoints:
                continue
            terms = event.terms
            weights = engine.touchpoint_weights(
                model, touchpoints, event_at=event.occurred_at,
                first_share=Decimal(terms["first_click_share"]), last_share=Decimal(terms["last_click_share"]),
            )
            credits = engine.attribute(event.amount, event.currency, touchpoints, weights)
            for credit in credits:
                row(credit.promoter_id).revenue_then += money.to_minor(credit.revenue, event.currency)
            facts = rules.facts_from_json(bases[event.pk]) if event.pk in bases else _facts_now(credits, terms)
            # Promoters credited only under the other model are not in the stored basis.
            missing = {c.promoter_id for c in credits} - set(facts)
            if missing:
                facts = {**_facts_now(credits, terms), **facts}
            credit_rows = [
                Credit(promoter_id=c.promoter_id, revenue_minor=money.to_minor(c.revenue, event.currency), first_position=c.first_position)
                for c in credits
            ]
            for line in commission_lines(event, rules.Terms.from_snapshot(terms), credit_rows, facts):
                row(line.promoter_id).commission_then += money.to_minor(line.amount, event.currency)
    names = dict(Promoter.objects.filter(pk__in=deltas).values_list("id", "name"))
    for delta in deltas.values():
        delta.name = names.get(delta.promoter_id, "")
    result.events = len(event_list)
    result.currency = ", ".join(sorted(currencies)) or "-"
    result.rows = sorted(
        deltas.values(), key=lambda d: (-abs(d.commission_then - d.commission_now), -abs(d.revenue_then - d.revenue_now), d.promoter_id)
    )
    return result


def _facts_now(credits, terms) -> dict[int, rules.PromoterFact]:
    return promoter_facts([c.promoter_id for c in credits], levels=len(terms["tier_rates"]), compress=terms["compress_inactive"])
