"""Commission rules as pure functions (CONTRACT.md, "How money is computed", rules 4-8).

Plain data in, plain lines out: no ORM, no clock. The services feed them and write the
result; the ledger audit feeds them again to prove what was written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from core import money

MAX_UPLINE_WALK = 200  # compression may skip inactive sponsors; never walk forever


@dataclass(frozen=True)
class PromoterFact:
    id: int
    active: bool
    sponsor_id: int | None
    customer_id: str | None = None
    own_rate: Decimal | None = None


def facts_to_json(facts: Mapping[int, PromoterFact]) -> dict:
    return {
        str(f.id): [f.active, f.sponsor_id, f.customer_id, None if f.own_rate is None else str(f.own_rate)]
        for f in facts.values()
    }


def facts_from_json(data: Mapping) -> dict[int, PromoterFact]:
    return {
        int(pk): PromoterFact(int(pk), bool(active), sponsor, customer, None if rate is None else Decimal(rate))
        for pk, (active, sponsor, customer, rate) in data.items()
    }


@dataclass(frozen=True)
class Terms:
    currency: str
    first_purchase_rate: Decimal
    repeat_purchase_rate: Decimal
    tier_rates: tuple[Decimal, ...]
    compress_inactive: bool
    registration_bounty: Decimal
    hold_days: int

    @classmethod
    def from_snapshot(cls, terms: Mapping) -> Terms:
        currency = terms["currency"]
        return cls(
            currency=currency,
            first_purchase_rate=Decimal(terms["first_purchase_rate"]),
            repeat_purchase_rate=Decimal(terms["repeat_purchase_rate"]),
            tier_rates=tuple(Decimal(r) for r in terms["tier_rates"]),
            compress_inactive=bool(terms["compress_inactive"]),
            registration_bounty=money.from_minor(terms["registration_bounty_minor"], currency),
            hold_days=int(terms["hold_days"]),
        )


@dataclass(frozen=True)
class Line:
    """A commission to write: who, what kind, which level, how much and on what base."""

    promoter_id: int
    kind: str  # direct | override | bounty
    level: int
    amount: Decimal
    base: Decimal  # the attributed revenue R it was computed on (0 for a bounty)
    rate: Decimal | None
    source_promoter_id: int  # the promoter whose share it derives from


@dataclass(frozen=True)
class ShareFact:
    promoter_id: int
    revenue: Decimal


def earns(promoter: PromoterFact, customer_id: str) -> bool:
    """Rule 7: inactive promoters and the customer themself earn nothing."""
    return promoter.active and promoter.customer_id != customer_id


def upline(promoter_id: int, promoters: Mapping[int, PromoterFact]) -> list[PromoterFact]:
    """Sponsors above a promoter, nearest first (as far as ``promoters`` knows them)."""
    chain: list[PromoterFact] = []
    seen = {promoter_id}
    current = promoters[promoter_id].sponsor_id
    while current is not None and current not in seen and current in promoters and len(chain) < MAX_UPLINE_WALK:
        seen.add(current)
        chain.append(promoters[current])
        current = promoters[current].sponsor_id
    return chain


def override_lines(
    share: ShareFact, *, customer_id: str, promoters: Mapping[int, PromoterFact], terms: Terms
) -> list[Line]:
    """Rule 5. Without compression an inactive sponsor's level is lost and the walk goes on;
    with it, the next active sponsor takes the level and everyone above moves down one."""
    levels = len(terms.tier_rates)
    if levels == 0:
        return []
    chain = upline(share.promoter_id, promoters)
    if terms.compress_inactive:
        chain = [s for s in chain if s.active]
    lines = []
    for level, sponsor in enumerate(chain[:levels], start=1):
        if not earns(sponsor, customer_id):
            continue
        rate = terms.tier_rates[level - 1]
        amount = money.multiply(share.revenue, rate, terms.currency)
        if amount > 0:
            lines.append(Line(sponsor.id, "override", level, amount, share.revenue, rate, share.promoter_id))
    return lines


def purchase_lines(
    shares: Sequence[ShareFact],
    *,
    first_purchase: bool,
    customer_id: str,
    promoters: Mapping[int, PromoterFact],
    terms: Terms,
) -> list[Line]:
    """Rules 4, 5 and 7 for one purchase: a direct commission per credited promoter and the
    overrides above each. A share that earns nothing gives its sponsors nothing either."""
    lines: list[Line] = []
    for share in shares:
        promoter = promoters[share.promoter_id]
        if not earns(promoter, customer_id):
            continue
        if promoter.own_rate is not None:
            rate = promoter.own_rate
        else:
            rate = terms.first_purchase_rate if first_purchase else terms.repeat_purchase_rate
        amount = money.multiply(share.revenue, rate, terms.currency)
        if amount > 0:
            lines.append(Line(promoter.id, "direct", 0, amount, share.revenue, rate, promoter.id))
        lines.extend(override_lines(share, customer_id=customer_id, promoters=promoters, terms=terms))
    return lines


def registration_lines(
    last_promoter_id: int | None, *, customer_id: str, promoters: Mapping[int, PromoterFact], terms: Terms
) -> list[Line]:
    """Rule 6: the bounty to the last touchpoint's promoter."""
    if last_promoter_id is None or terms.registration_bounty <= 0:
        return []
    if not earns(promoters[last_promoter_id], customer_id):
        return []
    zero = money.quantize(Decimal(0), terms.currency)
    return [Line(last_promoter_id, "bounty", 0, terms.registration_bounty, zero, None, last_promoter_id)]


@dataclass(frozen=True)
class CommissionFact:
    id: int
    amount: Decimal  # positive
    reversed_so_far: Decimal  # negative or zero


def reversal_amounts(
    commissions: Sequence[CommissionFact],
    *,
    refund: Decimal,
    order_amount: Decimal,
    completes_order: bool,
    currency: str,
) -> list[tuple[int, Decimal]]:
    """Rule 8: minus amount × refunded / order amount, rounded half-up; the refund that
    completes the order reverses exactly what is left. Never more than what is left."""
    out = []
    for commission in commissions:
        left = commission.amount + commission.reversed_so_far
        if left <= 0:
            continue
        if completes_order:
            take = left
        else:
            take = min(money.prorate(commission.amount, refund, order_amount, currency), left)
        if take > 0:
            out.append((commission.id, -take))
    return out
