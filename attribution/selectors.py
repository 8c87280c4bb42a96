"""Reads of the journey that attribution needs (upstream data, plain facts out)."""

from __future__ import annotations

from datetime import timedelta

from affiliate.models import Click, ConversionEvent

from .engine import ClickFact


def journey_clicks(event: ConversionEvent, lookback_days: int) -> list[ClickFact]:
    """Clicks on the event's program by every visitor bound to its customer, in the window."""
    since = event.occurred_at - timedelta(days=lookback_days)
    rows = (
        Click.objects.filter(
            program_id=event.program_id,
            visitor__bindings__customer_id=event.customer_id,
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
