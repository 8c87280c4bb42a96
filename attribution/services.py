"""Attribution of one event, written down: touchpoints and credits."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from affiliate import money
from affiliate.models import ConversionEvent
from promoters.models import Promoter

from . import engine
from .models import Credit, Touchpoint
from .selectors import journey_clicks


def _decimal_weight(weight: Fraction) -> Decimal:
    return (Decimal(weight.numerator) / Decimal(weight.denominator)).quantize(Decimal("0.000000000001"))


def _coupon_promoter_id(event: ConversionEvent) -> int | None:
    if event.coupon_promoter_id is None:
        return None
    program_id = Promoter.objects.filter(pk=event.coupon_promoter_id).values_list("program_id", flat=True).first()
    # A coupon counts on its promoter's own program only: rates are the program's.
    return event.coupon_promoter_id if program_id == event.program_id else None


def event_touchpoints(event: ConversionEvent, terms: dict) -> list[engine.Touchpoint]:
    clicks = journey_clicks(event, terms["lookback_days"])
    return engine.select_touchpoints(
        clicks,
        event_at=event.occurred_at,
        lookback_days=terms["lookback_days"],
        coupon_promoter_id=_coupon_promoter_id(event),
    )


def conversion_weights(event: ConversionEvent, terms: dict, touchpoints: list[engine.Touchpoint]) -> list[Fraction]:
    """Registrations credit the last touchpoint (rule 6); purchases follow the program's model."""
    if event.type == ConversionEvent.Type.REGISTRATION:
        return [Fraction(0)] * (len(touchpoints) - 1) + [Fraction(1)] if touchpoints else []
    return engine.touchpoint_weights(
        terms["attribution_model"],
        touchpoints,
        event_at=event.occurred_at,
        first_share=Decimal(terms["first_click_share"]),
        last_share=Decimal(terms["last_click_share"]),
    )


def attribution_record(*, event: ConversionEvent) -> list[Credit]:
    """Attribute a registration or purchase; write its touchpoints and credits."""
    terms = event.terms
    currency = event.currency
    touchpoints = event_touchpoints(event, terms)
    weights = conversion_weights(event, terms, touchpoints)
    amount = event.amount if event.amount is not None else Decimal(0)
    credits = engine.attribute(amount, currency, touchpoints, weights) if touchpoints else []
    by_promoter = {c.promoter_id: c for c in credits}

    touchpoint_rows = []
    for promoter_id, credit in by_promoter.items():
        positions = [i for i, t in enumerate(touchpoints) if t.promoter_id == promoter_id]
        parts = engine.split_over(credit.revenue, currency, [weights[i] for i in positions])
        for position, part in zip(positions, parts, strict=True):
            touchpoint_rows.append((position, part))
    revenue_at = dict(touchpoint_rows)
    Touchpoint.objects.bulk_create(
        [
            Touchpoint(
                event=event,
                position=i,
                kind=t.kind,
                promoter_id=t.promoter_id,
                click_id=t.click_id,
                link_id=t.link_id,
                channel=t.channel,
                at=t.at,
                weight=_decimal_weight(weights[i]),
                revenue_minor=money.to_minor(revenue_at.get(i, Decimal(0)), currency),
            )
            for i, t in enumerate(touchpoints)
        ]
    )
    return Credit.objects.bulk_create(
        [
            Credit(
                event=event,
                promoter_id=c.promoter_id,
                weight=_decimal_weight(c.weight),
                weight_exact=f"{c.weight.numerator}/{c.weight.denominator}",
                revenue_minor=money.to_minor(c.revenue, currency),
                currency=currency,
                first_position=c.first_position,
            )
            for c in credits
        ]
    )


def refund_credits_record(*, refund: ConversionEvent, purchase: ConversionEvent, completes_order: bool) -> list[Credit]:
    """A refund takes revenue back from the purchase's promoters in proportion; the refund
    that completes the order takes back exactly what is left."""
    currency = purchase.currency
    originals = list(Credit.objects.filter(event=purchase).order_by("first_position"))
    if not originals:
        return []
    taken: dict[int, int] = {}
    for promoter_id, revenue in Credit.objects.filter(event__purchase=purchase).exclude(event=refund).values_list(
        "promoter_id", "revenue_minor"
    ):
        taken[promoter_id] = taken.get(promoter_id, 0) + revenue
    if completes_order:
        minors = [-(c.revenue_minor + taken.get(c.promoter_id, 0)) for c in originals]
    else:
        parts = engine.split_over(refund.amount, currency, [Decimal(c.revenue_minor) for c in originals])
        minors = [-money.to_minor(p, currency) for p in parts]
    rows = [
        Credit(
            event=refund,
            promoter_id=c.promoter_id,
            weight=c.weight,
            weight_exact=c.weight_exact,
            revenue_minor=m,
            currency=currency,
            first_position=c.first_position,
        )
        for c, m in zip(originals, minors, strict=True)
        if m != 0
    ]
    return Credit.objects.bulk_create(rows)
