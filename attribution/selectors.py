"""Reads of the journey that attribution needs (upstream data, plain facts out)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from affiliate import money
from affiliate.models import Click, ConversionEvent, CustomerVisitor
from affiliate.validation import format_rate

from .engine import ClickFact
from .models import Credit, Touchpoint


def journey_clicks(event: ConversionEvent, lookback_days: int) -> list[ClickFact]:
    """Clicks on the event's program by every visitor bound to its customer, in the window."""
    since = event.occurred_at - timedelta(days=lookback_days)
    # The customer's visitors first (a handful), then their clicks by the (visitor, time)
    # index: one join would let the planner walk every click of the program in the window
    # whenever its statistics are stale (after a burst of clicks), 15 ms instead of 0.1.
    visitors = list(CustomerVisitor.objects.filter(customer_id=event.customer_id).values_list("visitor_id", flat=True))
    if not visitors:
        return []
    rows = (
        Click.objects.filter(
            program_id=event.program_id,
            visitor_id__in=visitors,
            created_at__gte=since,
            created_at__lte=event.occurred_at,
        )
        .values_list("id", "promoter_id", "created_at", "link_id", "link__channel", "is_fraud", "is_duplicate")
        .order_by("created_at", "id")
    )
    return [
        ClickFact(id=click_id.hex, promoter_id=promoter_id, at=at, link_id=link_id, channel=channel, is_fraud=fraud, is_duplicate=dup)
        for click_id, promoter_id, at, link_id, channel, fraud, dup in rows
    ]


def event_journey(event: ConversionEvent) -> dict:
    """For finance: the touchpoints of a conversion with the weight and money each got."""
    currency = event.currency
    touchpoints = (
        Touchpoint.objects.filter(event=event)
        .select_related("promoter", "link")
        .order_by("position")
    )
    credits = Credit.objects.filter(event=event).select_related("promoter").order_by("first_position")
    return {
        "event": event.pk,
        "type": event.type,
        "stage": event.stage,
        "amount": money.format_minor(event.amount_minor, currency),
        "currency": currency,
        "customer_id": event.customer.external_id,
        "occurred_at": event.occurred_at.isoformat(),
        "attribution_model": event.terms.get("attribution_model"),
        "lookback_days": event.terms.get("lookback_days"),
        "touchpoints": [
            {
                "position": t.position,
                "kind": t.kind,
                "at": t.at.isoformat(),
                "promoter": t.promoter_id,
                "promoter_name": t.promoter.name,
                "channel": t.channel,
                "link": t.link.code if t.link else None,
                "click_id": t.click_id.hex if t.click_id else None,
                "weight": _weight_text(t.weight),
                "revenue": money.format_minor(t.revenue_minor, currency),
            }
            for t in touchpoints
        ],
        "credits": [
            {
                "promoter": c.promoter_id,
                "promoter_name": c.promoter.name,
                "weight": _weight_text(c.weight),
                "revenue": money.format_minor(c.revenue_minor, currency),
            }
            for c in credits
        ],
    }


def _weight_text(weight) -> str:
    return format_rate(Decimal(weight).quantize(Decimal("0.000001")))
