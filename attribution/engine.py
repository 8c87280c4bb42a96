"""Attribution as pure functions over plain data: no ORM, no clock, no I/O.

CONTRACT.md, "How money is computed", rules 1-3: which touchpoints count, how each model
weighs them, and how the amount is cut into promoters' revenue to the cent.
Weights are exact fractions, so they always add up to exactly 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction

from core import money
from core.validation import format_rate

HALF_LIFE = timedelta(days=7)
MODELS = ("first_click", "last_click", "mixed", "linear", "time_decay")


@dataclass(frozen=True)
class ClickFact:
    """A click as the journey recorded it."""

    id: str
    promoter_id: int
    at: datetime
    link_id: int | None = None
    channel: str = ""
    is_fraud: bool = False
    is_duplicate: bool = False


@dataclass(frozen=True)
class Touchpoint:
    promoter_id: int
    at: datetime
    kind: str  # "click" or "coupon"
    click_id: str | None = None
    link_id: int | None = None
    channel: str = ""


@dataclass(frozen=True)
class Credit:
    """One promoter's part of a conversion."""

    promoter_id: int
    weight: Fraction
    revenue: Decimal
    first_position: int  # index of the promoter's earliest touchpoint


def select_touchpoints(
    clicks: Sequence[ClickFact],
    *,
    event_at: datetime,
    lookback_days: int,
    coupon_promoter_id: int | None = None,
) -> list[Touchpoint]:
    """Rule 1: the journey's clicks within the lookback window, not later than the event,
    fraud and duplicates left out, oldest first; a coupon adds its promoter last."""
    since = event_at - timedelta(days=lookback_days)
    kept = sorted(
        (c for c in clicks if since <= c.at <= event_at and not c.is_fraud and not c.is_duplicate),
        key=lambda c: (c.at, c.id),
    )
    touchpoints = [Touchpoint(c.promoter_id, c.at, "click", c.id, c.link_id, c.channel) for c in kept]
    if coupon_promoter_id is not None:
        touchpoints.append(Touchpoint(coupon_promoter_id, event_at, "coupon"))
    return touchpoints


def _decay(age: timedelta) -> Fraction:
    """2^(−age / 7 days), to 28 significant digits, as an exact fraction of that decimal."""
    with localcontext() as ctx:
        ctx.prec = 28
        exponent = -Decimal(age.total_seconds()) / Decimal(HALF_LIFE.total_seconds())
        return Fraction(Decimal(2) ** exponent)


def touchpoint_weights(
    model: str,
    touchpoints: Sequence[Touchpoint],
    *,
    event_at: datetime | None = None,
    first_share: Decimal = Decimal("0.60"),
    last_share: Decimal = Decimal("0.40"),
) -> list[Fraction]:
    """Rule 2: one weight per touchpoint, summing to exactly 1 (empty for no touchpoints)."""
    n = len(touchpoints)
    if n == 0:
        return []
    if model == "first_click":
        return [Fraction(1)] + [Fraction(0)] * (n - 1)
    if model == "last_click":
        return [Fraction(0)] * (n - 1) + [Fraction(1)]
    if model == "linear":
        return [Fraction(1, n)] * n
    if model == "time_decay":
        if event_at is None:
            raise ValueError("time_decay needs the event's time")
        raw = [_decay(max(event_at - t.at, timedelta(0))) for t in touchpoints]
        total = sum(raw, Fraction(0))
        return [w / total for w in raw]
    if model == "mixed":
        first, last = Fraction(first_share), Fraction(last_share)
        if n == 1:
            return [Fraction(1)]
        if n == 2:
            if first + last == 0:
                return [Fraction(1, 2), Fraction(1, 2)]
            return [first / (first + last), last / (first + last)]
        middle = (1 - first - last) / (n - 2)
        return [first] + [middle] * (n - 2) + [last]
    raise ValueError(f"unknown attribution model {model!r}")


def attribute(
    amount: Decimal,
    currency: str,
    touchpoints: Sequence[Touchpoint],
    weights: Sequence[Fraction],
) -> list[Credit]:
    """Rule 3: weights added up per promoter, the amount cut to the minor unit by largest
    remainder (ties: the promoter with the earlier touchpoint first). Promoters of weight 0
    are left out. Credits come in the order of each promoter's first touchpoint."""
    per_promoter: dict[int, Fraction] = {}
    first_position: dict[int, int] = {}
    for position, (touchpoint, weight) in enumerate(zip(touchpoints, weights, strict=True)):
        per_promoter[touchpoint.promoter_id] = per_promoter.get(touchpoint.promoter_id, Fraction(0)) + weight
        first_position.setdefault(touchpoint.promoter_id, position)
    promoters = [p for p in per_promoter if per_promoter[p] > 0]
    if not promoters:
        return []
    parts = money.split(
        amount, [per_promoter[p] for p in promoters], currency, tie_order=[first_position[p] for p in promoters]
    )
    return [Credit(p, per_promoter[p], part, first_position[p]) for p, part in zip(promoters, parts, strict=True)]


def split_over(amount: Decimal, currency: str, shares: Sequence[Decimal | Fraction]) -> list[Decimal]:
    """Cut an amount in proportion to earlier parts (a refund over a purchase's credits)."""
    if not shares or sum(Fraction(s) for s in shares) == 0:
        return [money.quantize(Decimal(0), currency)] * len(shares)
    return money.split(amount, list(shares), currency)


def weight_string(weight: Fraction) -> str:
    """A weight for people: six decimals at most, at least two (``"0.60"``, ``"0.333333"``)."""
    with localcontext() as ctx:
        ctx.prec = 40
        value = (Decimal(weight.numerator) / Decimal(weight.denominator)).quantize(Decimal("0.000001"))
    return format_rate(value)
