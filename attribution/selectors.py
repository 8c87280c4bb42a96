"""Reads of the journey that attribution needs (upstream data, plain facts out)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from affiliate import partitions
from affiliate.models import Click, ConversionEvent, CustomerVisitor
from core import money
from core.validation import format_rate

from .engine import ClickFact
from .models import Credit, Touchpoint


def journey_clicks_many(wanted: list[tuple[ConversionEvent, int]]) -> dict[int, list[ClickFact]]:
    """The clicks on each event's program by every visitor bound to its customer, within its
    lookback window (each event with its lookback), by event id, in two queries whatever
    their number: a batch of events is credited in one transaction.

    The customers' visitors first (a handful each), then their clicks by the (visitor, time)
    index: one join would let the planner walk every click of the program in the window
    whenever its statistics are stale (after a burst of clicks), 15 ms instead of 0.1. The
    clicks of all the events' windows come in one read and are dealt out here, each event
    taking its own program's clicks by its own customer's visitors within its own window,
    oldest first (ties by id, as the database orders uuids)."""
    if not wanted:
        return {}
    visitors_of: dict[int, set] = {}
    for customer_id, visitor_id in CustomerVisitor.objects.filter(
        customer_id__in={event.customer_id for event, _ in wanted}
    ).values_list("customer_id", "visitor_id"):
        visitors_of.setdefault(customer_id, set()).add(visitor_id)
    out: dict[int, list[ClickFact]] = {event.pk: [] for event, _ in wanted}
    bound = [(event, lookback) for event, lookback in wanted if visitors_of.get(event.customer_id)]
    if not bound:
        return out
    windows = [(event, event.occurred_at - timedelta(days=lookback)) for event, lookback in bound]
    start, end = min(since for _, since in windows), max(event.occurred_at for event, _ in windows)
    rows = Click.objects.filter(
        program_id__in={event.program_id for event, _ in windows},
        visitor_id__in={v for event, _ in windows for v in visitors_of[event.customer_id]},
        created_at__gte=start,
        created_at__lte=end,
        # The same window on the id (a UUIDv7 of the click's time): only the months' partitions
        # it covers are read.
        id__gte=partitions.click_id_bound(start),
        id__lte=partitions.click_id_bound(end, upper=True),
    ).values_list("id", "promoter_id", "created_at", "link_id", "link__channel", "is_fraud", "is_duplicate", "program_id", "visitor_id")
    if len(windows) == 1:
        rows = rows.order_by("created_at", "id")
    clicks = sorted(rows, key=lambda row: (row[2], row[0])) if len(windows) > 1 else list(rows)
    for event, since in windows:
        visitors = visitors_of[event.customer_id]
        out[event.pk] = [
            ClickFact(id=click_id.hex, promoter_id=promoter_id, at=at, link_id=link_id, channel=channel, is_fraud=fraud, is_duplicate=dup)
            for click_id, promoter_id, at, link_id, channel, fraud, dup, program_id, visitor_id in clicks
            if program_id == event.program_id and visitor_id in visitors and since <= at <= event.occurred_at
        ]
    return out


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
