"""Attribution of one event, written down: touchpoints and credits."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from affiliate.models import ConversionEvent
from core import money
from promoters.models import Promoter

from . import engine
from .models import Credit, Touchpoint
from .selectors import journey_clicks_many


def _decimal_weight(weight: Fraction) -> Decimal:
    return (Decimal(weight.numerator) / Decimal(weight.denominator)).quantize(Decimal("0.000000000001"))


def _coupon_promoter_ids(events: list[ConversionEvent]) -> dict[int, int | None]:
    """Each event's coupon promoter, by event id, when the coupon counts: a coupon counts on
    its promoter's own program only, for rates are the program's."""
    wanted = {event.coupon_promoter_id for event in events if event.coupon_promoter_id is not None}
    programs = dict(Promoter.objects.filter(pk__in=wanted).values_list("id", "program_id")) if wanted else {}
    return {
        event.pk: event.coupon_promoter_id
        if event.coupon_promoter_id is not None and programs.get(event.coupon_promoter_id) == event.program_id
        else None
        for event in events
    }


def events_touchpoints(wanted: list[tuple[ConversionEvent, dict]]) -> dict[int, list[engine.Touchpoint]]:
    """``event_touchpoints`` for many events (each with its terms), by event id."""
    clicks = journey_clicks_many([(event, terms["lookback_days"]) for event, terms in wanted])
    coupons = _coupon_promoter_ids([event for event, _ in wanted])
    return {
        event.pk: engine.select_touchpoints(
            clicks[event.pk],
            event_at=event.occurred_at,
            lookback_days=terms["lookback_days"],
            coupon_promoter_id=coupons[event.pk],
        )
        for event, terms in wanted
    }


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


def attributions_record(*, events: list[ConversionEvent], touchpoints_of: dict | None = None) -> dict[int, list[Credit]]:
    """Attribute registrations and purchases credited in one transaction, and write their
    touchpoints and credits: the journeys read together, the touchpoints and the credits of
    all the events written by one insert each. Returns each event's credits, by event id."""
    # ``touchpoints_of``: those already selected for some of the events (the fraud rules
    # select them first); the journeys of the others are read here.
    known = touchpoints_of or {}
    missing = [(event, event.terms) for event in events if event.pk not in known]
    touchpoints_of = {**known, **(events_touchpoints(missing) if missing else {})}
    touchpoint_rows: list[Touchpoint] = []
    credit_rows: dict[int, list[Credit]] = {}
    for event in events:
        terms, currency = event.terms, event.currency
        touchpoints = touchpoints_of[event.pk]
        weights = conversion_weights(event, terms, touchpoints)
        amount = event.amount if event.amount is not None else Decimal(0)
        credits = engine.attribute(amount, currency, touchpoints, weights) if touchpoints else []
        revenue_at: dict[int, Decimal] = {}
        for credit in credits:
            positions = [i for i, t in enumerate(touchpoints) if t.promoter_id == credit.promoter_id]
            parts = engine.split_over(credit.revenue, currency, [weights[i] for i in positions])
            revenue_at.update(zip(positions, parts, strict=True))
        touchpoint_rows.extend(
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
        )
        credit_rows[event.pk] = [
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
    if touchpoint_rows:
        Touchpoint.objects.bulk_create(touchpoint_rows)
    flat = [credit for rows in credit_rows.values() for credit in rows]
    if flat:
        Credit.objects.bulk_create(flat)
    return credit_rows


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
