"""What promoters and channels are worth: LTV, CAC and LTV/CAC over a window.

The rules, applied the same way to every figure:

- **New customer**: a customer whose first purchase (the event of stage ``first_purchase``)
  in the program occurred in the window ``[now − window_days, now)``.
- **Who brought them**: the promoters credited on that first purchase, each for its credit
  weight (one promoter alone: 1; two sharing: their weights, e.g. ½ and ½). A channel
  brought them for the weight of the first purchase's touchpoints in that channel
  (``Touchpoint.channel``, the link's channel at the click; coupons have their own). A
  promoter's (channel's) **customers** is the sum of those weights. A first purchase
  nobody is credited on (organic) belongs to no promoter and no channel.
- **Revenue** of a customer: every purchase minus every refund of the customer in the
  program, in the program's currency, occurred before ``now`` (from the first purchase
  on, so also after the window's end). A promoter gets its weight of each of its new
  customers' revenue; **LTV** = that revenue / customers.
- **Cost** of a customer: every commission on any of the customer's events (kinds direct,
  override and bounty, whoever was paid, so an upline's override counts as a cost of the
  customer) plus the reversals of them, created before ``now``, shared by the same
  weights. A promoter's cost adds its own guaranteed-minimum top-ups and bonuses
  (``Adjustment``) created in the window; a channel's adds each promoter's adjustments
  split over the channels by that promoter's customers in each (a promoter with
  adjustments but no new customers has them in ``unallocated_adjustments``, in no
  channel). **CAC** = cost / customers; **LTV/CAC** = revenue / cost (None when the cost
  is not positive).
- **Projected LTV** (horizon ``horizon_months``, default 12): monthly cohorts of first
  purchases (every first purchase of the program, by calendar month, UTC). For each
  cohort, the cumulative net revenue of its customers through month k (month 0: the month
  of the first purchase). The growth of month k is the mean, over the cohorts for which
  month k is over (cohort month + k before ``now``'s month) and whose cumulative revenue
  through month k−1 is positive, of cum(k) / cum(k−1); 1 when no cohort has it. A
  customer ``m`` months into its cohort (the current, unfinished month) is projected to
  its revenue so far × growth(m+1) × … × growth(horizon−1) (nothing to multiply when
  m ≥ horizon − 1): the mean growth of the older cohorts applied to its own curve.

Money is exact (``Decimal``; the weights are the credits' 12-decimal weights), rounded
half-up to the currency's minor unit only in the output; ratios are rounded to 4 decimals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pandas as pd
from django.db.models import Sum
from django.utils import timezone

from affiliate.models import ConversionEvent
from attribution.models import Credit, Touchpoint
from core import money
from merchants.models import Merchant, Program
from payouts.models import Adjustment, Commission

from .models import InsightRun

COST_KINDS = (Commission.Kind.DIRECT, Commission.Kind.OVERRIDE, Commission.Kind.BOUNTY, Commission.Kind.REVERSAL)
RATIO_PLACES = Decimal("0.0001")
ZERO = Decimal(0)
PROMOTER_COLUMNS = [
    "program_id", "promoter_id", "currency", "customers", "revenue", "cost", "adjustments",
    "ltv", "cac", "ltv_cac", "projected_ltv", "projected_ltv_cac",
]
CHANNEL_COLUMNS = [
    "program_id", "channel", "currency", "customers", "revenue", "cost", "adjustments",
    "ltv", "cac", "ltv_cac", "projected_ltv", "projected_ltv_cac",
]


@dataclass
class ValueTables:
    promoters: pd.DataFrame
    channels: pd.DataFrame
    growth: dict[int, list[Decimal]] = field(default_factory=dict)  # program id -> growth of months 1..horizon-1
    unallocated_adjustments: dict[int, Decimal] = field(default_factory=dict)  # program id -> amount


def month_index(moment: datetime) -> int:
    moment = moment.astimezone(UTC) if timezone.is_aware(moment) else moment
    return moment.year * 12 + moment.month - 1


def growth_factors(cumulative: dict[int, dict[int, int]], *, now_month: int, horizon: int) -> list[Decimal]:
    """The mean month-over-month growth of month k = 1 .. horizon−1 (index k−1).

    ``cumulative``: cohort month -> {k: cumulative net revenue (minor) through month k}
    (a month missing from a cohort's dict has the cumulative of the month before)."""
    factors = []
    for k in range(1, horizon):
        ratios = []
        for cohort, by_k in cumulative.items():
            if cohort + k >= now_month:
                continue  # month k of this cohort is not over
            before, through = _cum_at(by_k, k - 1), _cum_at(by_k, k)
            if before > 0:
                ratios.append(Decimal(through) / Decimal(before))
        factors.append(sum(ratios, ZERO) / len(ratios) if ratios else Decimal(1))
    return factors


def _cum_at(by_k: dict[int, int], k: int) -> int:
    known = [j for j in by_k if j <= k]
    return by_k[max(known)] if known else 0


def projection_multiplier(factors: list[Decimal], months_in: int) -> Decimal:
    """growth(m+1) × … × growth(horizon−1) for a customer ``months_in`` months into its cohort."""
    product = Decimal(1)
    for k in range(max(months_in, 0) + 1, len(factors) + 1):
        product *= factors[k - 1]
    return product


def value_compute(*, program: Program, window_days: int = 90, now: datetime | None = None, horizon_months: int = 12) -> ValueTables:
    """LTV, CAC and LTV/CAC of the program's promoters and channels (see the module's rules)."""
    now = now or timezone.now()
    start = now - timedelta(days=window_days)
    currency = program.currency
    now_month = month_index(now)

    # Every first purchase of the program (cohorts), the earliest per customer.
    first = pd.DataFrame(
        ConversionEvent.objects.filter(
            program=program, type=ConversionEvent.Type.PURCHASE, stage="first_purchase", occurred_at__lt=now
        ).values_list("id", "customer_id", "occurred_at"),
        columns=["event_id", "customer_id", "occurred_at"],
    )
    first = first.sort_values(["occurred_at", "event_id"]).drop_duplicates("customer_id") if len(first) else first
    cohort_of = (
        dict(zip(first["customer_id"].tolist(), _months(first["occurred_at"]).tolist(), strict=True)) if len(first) else {}
    )

    # Net revenue of every purchase and refund, by customer and month since its first purchase.
    events = pd.DataFrame(
        ConversionEvent.objects.filter(
            program=program, currency=currency, occurred_at__lt=now,
            type__in=[ConversionEvent.Type.PURCHASE, ConversionEvent.Type.REFUND],
        ).values_list("customer_id", "type", "amount_minor", "occurred_at"),
        columns=["customer_id", "type", "amount_minor", "occurred_at"],
    )
    net_of: dict[int, int] = {}
    cumulative: dict[int, dict[int, int]] = {}
    if len(events):
        events = events[events["customer_id"].isin(cohort_of.keys())]
        signed = events["amount_minor"].fillna(0).astype("int64")
        events = events.assign(
            net=signed.where(events["type"] == ConversionEvent.Type.PURCHASE, -signed),
            cohort=events["customer_id"].map(cohort_of),
            month=_months(events["occurred_at"]),
        )
        events["k"] = (events["month"] - events["cohort"]).clip(lower=0)
        net_of = {int(c): int(v) for c, v in events.groupby("customer_id")["net"].sum().items()}
        by_cohort_k = events.groupby(["cohort", "k"])["net"].sum().sort_index()
        for (cohort, k), total in by_cohort_k.groupby(level=0).cumsum().items():
            cumulative.setdefault(int(cohort), {})[int(k)] = int(total)
    for cohort in set(cohort_of.values()):
        cumulative.setdefault(cohort, {})
    factors = growth_factors(cumulative, now_month=now_month, horizon=horizon_months)
    multipliers = {m: projection_multiplier(factors, m) for m in range(0, horizon_months + 1)}

    def projected(customer_id: int) -> Decimal:
        months_in = now_month - cohort_of[customer_id]
        return Decimal(net_of.get(customer_id, 0)) * multipliers.get(months_in, Decimal(1))

    # The window's new customers and who brought them.
    new = first[first["occurred_at"] >= start] if len(first) else first
    customer_of_event = dict(zip(new["event_id"].tolist(), new["customer_id"].tolist(), strict=True)) if len(new) else {}
    new_events = list(customer_of_event)
    window_first = ConversionEvent.objects.filter(
        program=program, type=ConversionEvent.Type.PURCHASE, stage="first_purchase", occurred_at__gte=start, occurred_at__lt=now
    ).values("customer_id")
    cost_of = {
        customer_id: int(total or 0)
        for customer_id, total in Commission.objects.filter(
            program=program, currency=currency, kind__in=COST_KINDS, created_at__lt=now, event__customer_id__in=window_first,
        ).values("event__customer_id").annotate(total=Sum("amount_minor")).values_list("event__customer_id", "total")
    } if new_events else {}

    promoters: dict[int, list[Decimal]] = {}  # id -> [customers, revenue, cost, projected]
    channels: dict[str, list[Decimal]] = {}
    promoter_channels: dict[int, dict[str, Decimal]] = {}
    for chunk in _chunks(new_events):
        for event_id, promoter_id, weight in Credit.objects.filter(event_id__in=chunk).values_list("event_id", "promoter_id", "weight"):
            _add(promoters, promoter_id, customer_of_event[event_id], weight, net_of, cost_of, projected)
        for event_id, promoter_id, channel, weight in Touchpoint.objects.filter(event_id__in=chunk, weight__gt=0).values_list(
            "event_id", "promoter_id", "channel", "weight"
        ):
            _add(channels, channel, customer_of_event[event_id], weight, net_of, cost_of, projected)
            per = promoter_channels.setdefault(promoter_id, {})
            per[channel] = per.get(channel, ZERO) + weight

    adjustments = {
        promoter_id: int(total)
        for promoter_id, total in Adjustment.objects.filter(
            promoter__program=program, currency=currency, created_at__gte=start, created_at__lt=now
        ).values("promoter_id").annotate(total=Sum("amount_minor")).values_list("promoter_id", "total")
    }
    channel_adjustments: dict[str, Decimal] = {}
    unallocated = ZERO
    for promoter_id, total in adjustments.items():
        promoters.setdefault(promoter_id, [ZERO, ZERO, ZERO, ZERO])
        per = promoter_channels.get(promoter_id)
        if not per:
            unallocated += Decimal(total)
            continue
        # Split by the one money helper, so that a promoter's channels add up to its own.
        parts = money.split(money.from_minor(total, currency), list(per.values()), currency)
        for channel, part in zip(per, parts, strict=True):
            channel_adjustments[channel] = channel_adjustments.get(channel, ZERO) + money.to_minor(part, currency)

    promoter_rows = [
        _row(currency, program.pk, promoter_id, figures, Decimal(adjustments.get(promoter_id, 0)))
        for promoter_id, figures in sorted(promoters.items())
    ]
    channel_rows = [
        _row(currency, program.pk, channel, channels.get(channel, [ZERO] * 4), channel_adjustments.get(channel, ZERO))
        for channel in sorted(set(channels) | set(channel_adjustments))
    ]
    return ValueTables(
        promoters=pd.DataFrame(promoter_rows, columns=PROMOTER_COLUMNS),
        channels=pd.DataFrame(channel_rows, columns=CHANNEL_COLUMNS),
        growth={program.pk: factors},
        unallocated_adjustments={program.pk: _minor_to_money(unallocated, currency)},
    )


def _months(moments: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(moments, utc=True)
    return stamps.dt.year * 12 + stamps.dt.month - 1


def _chunks(items: list, size: int = 5000):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _add(table: dict, key, customer_id: int, weight: Decimal, net_of: dict, cost_of: dict, projected) -> None:
    figures = table.setdefault(key, [ZERO, ZERO, ZERO, ZERO])
    figures[0] += weight
    figures[1] += net_of.get(customer_id, 0) * weight
    figures[2] += cost_of.get(customer_id, 0) * weight
    figures[3] += projected(customer_id) * weight


def _minor_to_money(minor: Decimal, currency: str) -> Decimal:
    return money.quantize(minor.scaleb(-money.minor_digits(currency)), currency)


def _row(currency: str, program_id: int, key, figures: list[Decimal], adjustments: Decimal) -> list:
    customers, revenue, commissions, proj = figures
    cost = commissions + adjustments
    as_money = lambda minor: _minor_to_money(minor, currency)  # noqa: E731
    return [
        program_id,
        key,
        currency,
        customers.quantize(RATIO_PLACES),
        as_money(revenue),
        as_money(cost),
        as_money(adjustments),
        as_money(revenue / customers) if customers else None,
        as_money(cost / customers) if customers else None,
        (revenue / cost).quantize(RATIO_PLACES) if cost > 0 else None,
        as_money(proj / customers) if customers else None,
        (proj / cost).quantize(RATIO_PLACES) if cost > 0 else None,
    ]


def value_compute_merchant(*, merchant: Merchant, window_days: int = 90, now: datetime | None = None, horizon_months: int = 12) -> ValueTables:
    """``value_compute`` for every program of the merchant, the tables one after another."""
    tables = [
        value_compute(program=program, window_days=window_days, now=now, horizon_months=horizon_months)
        for program in Program.objects.filter(merchant=merchant).order_by("id")
    ]
    if not tables:
        return ValueTables(pd.DataFrame(columns=PROMOTER_COLUMNS), pd.DataFrame(columns=CHANNEL_COLUMNS))
    return ValueTables(
        promoters=pd.concat([t.promoters for t in tables], ignore_index=True),
        channels=pd.concat([t.channels for t in tables], ignore_index=True),
        growth={k: v for t in tables for k, v in t.growth.items()},
        unallocated_adjustments={k: v for t in tables for k, v in t.unallocated_adjustments.items()},
    )


def tables_json(tables: ValueTables) -> dict:
    """The tables as JSON: money and ratios as strings, money with the currency's decimals."""

    def records(frame: pd.DataFrame) -> list[dict]:
        return [
            {key: (None if value is None else str(value) if isinstance(value, Decimal) else value) for key, value in row.items()}
            for row in frame.astype(object).to_dict("records")
        ]

    return {
        "promoters": records(tables.promoters),
        "channels": records(tables.channels),
        "growth": {str(k): [str(g.quantize(RATIO_PLACES)) for g in v] for k, v in tables.growth.items()},
        "unallocated_adjustments": {str(k): str(v) for k, v in tables.unallocated_adjustments.items()},
    }


def value_run(*, merchant: Merchant, window_days: int = 90, now: datetime | None = None, horizon_months: int = 12) -> InsightRun:
    """Compute the merchant's value tables and keep them as an ``InsightRun(kind="value")``."""
    began = time.monotonic()
    tables = value_compute_merchant(merchant=merchant, window_days=window_days, now=now, horizon_months=horizon_months)
    results = tables_json(tables)
    results["horizon_months"] = horizon_months
    run = InsightRun.objects.create(
        merchant=merchant, kind=InsightRun.Kind.VALUE, window_days=window_days, results=results, seconds=time.monotonic() - began
    )
    run.tables = tables  # not stored: for a job that runs next on the same figures (the rates)
    return run
