"""Payout plans: the guaranteed monthly minimum plus a performance bonus for new promoters.

For each promoter on the ``guaranteed`` plan, in their first ``guaranteed_months``
calendar months (the month they joined is the first): if they were active (the policy's
minimum clicks and purchases in the month) and their commissions of the month fall short
of the guaranteed minimum, a top-up makes up the difference; if the revenue attributed to
them in the month exceeds the bonus threshold, a bonus of ``bonus_rate`` × that revenue is
added. Each is an ``Adjustment`` with its reason and a ledger journal (expense →
available), at most once per promoter, kind and month.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum

from affiliate.models import Click
from attribution.models import Credit
from core import money
from merchants.models import Merchant
from promoters.models import Promoter

from . import ledger
from .batches import policy_for
from .models import Account, Adjustment, Commission, Journal
from .statements import month_bounds


@dataclass(frozen=True)
class MonthFacts:
    earned_minor: int
    revenue_minor: int
    clicks: int
    purchases: int


def months_since_joining(promoter: Promoter, period: str) -> int:
    year, month = (int(part) for part in period.split("-"))
    joined = promoter.created_at
    return (year - joined.year) * 12 + (month - joined.month)


def plan_amounts(facts: MonthFacts, policy, month_index: int, currency: str) -> dict[str, tuple[int, str]]:
    """Pure: the top-up and bonus a promoter gets for the month, with their reasons."""
    out: dict[str, tuple[int, str]] = {}
    if not 0 <= month_index < policy.guaranteed_months:
        return out
    minimum = policy.guaranteed_minimum_minor
    active = facts.clicks >= policy.activity_min_clicks and facts.purchases >= policy.activity_min_conversions
    if minimum > 0 and facts.earned_minor < minimum and active:
        short = minimum - max(facts.earned_minor, 0)
        out["topup"] = (
            short,
            f"guaranteed minimum {money.format_minor(minimum, currency)} in month {month_index + 1}: "
            f"earned {money.format_minor(facts.earned_minor, currency)}, {facts.clicks} clicks, {facts.purchases} purchases",
        )
    threshold = policy.bonus_revenue_threshold_minor
    if threshold > 0 and policy.bonus_rate > 0 and facts.revenue_minor > threshold:
        revenue = money.from_minor(facts.revenue_minor, currency)
        bonus = money.multiply(revenue, Decimal(policy.bonus_rate), currency)
        if bonus > 0:
            out["bonus"] = (
                money.to_minor(bonus, currency),
                f"revenue {revenue} above {money.format_minor(threshold, currency)}: {policy.bonus_rate.normalize()} of it",
            )
    return out


def month_facts(promoter_ids, period: str) -> dict[int, MonthFacts]:
    start, end = month_bounds(period)
    earned = defaultdict(int)
    for pid, total in (
        Commission.objects.filter(promoter_id__in=promoter_ids, created_at__gte=start, created_at__lt=end)
        .values("promoter_id").annotate(total=Sum("amount_minor")).values_list("promoter_id", "total")
    ):
        earned[pid] = total
    revenue, purchases = defaultdict(int), defaultdict(int)
    for pid, total, count in (
        Credit.objects.filter(promoter_id__in=promoter_ids, event__occurred_at__gte=start, event__occurred_at__lt=end)
        .values("promoter_id").annotate(total=Sum("revenue_minor"), n=Count("id", filter=Q(event__type="purchase")))
        .values_list("promoter_id", "total", "n")
    ):
        revenue[pid], purchases[pid] = total, count
    clicks = dict(
        Click.objects.filter(promoter_id__in=promoter_ids, created_at__gte=start, created_at__lt=end, is_fraud=False)
        .values("promoter_id").annotate(n=Count("id")).values_list("promoter_id", "n")
    )
    return {pid: MonthFacts(earned[pid], revenue[pid], clicks.get(pid, 0), purchases[pid]) for pid in promoter_ids}


def apply_plans(*, merchant: Merchant, period: str) -> list[Adjustment]:
    """Write the month's top-ups and bonuses (each at most once)."""
    promoters = list(
        Promoter.objects.filter(merchant=merchant, payout_plan=Promoter.PayoutPlan.GUARANTEED).select_related("program")
    )
    facts = month_facts([p.pk for p in promoters], period)
    policies: dict[int, object] = {}
    wanted = []
    for promoter in promoters:
        if promoter.program_id not in policies:
            policies[promoter.program_id] = policy_for(promoter.program)
        policy = policies[promoter.program_id]
        currency = promoter.program.currency
        for kind, (amount, reason) in plan_amounts(facts[promoter.pk], policy, months_since_joining(promoter, period), currency).items():
            wanted.append((promoter, kind, amount, currency, reason))
    if not wanted:
        return []
    try:
        return _adjust_all(wanted, period)
    except IntegrityError:  # another close wrote some of them meanwhile: one by one, each at most once
        written = [_adjust(promoter, kind, period, amount, currency, reason) for promoter, kind, amount, currency, reason in wanted]
        return [adjustment for adjustment in written if adjustment is not None]


@transaction.atomic
def _adjust_all(wanted, period: str) -> list[Adjustment]:
    """``_adjust`` for each, in one transaction and a few statements: the same rows, in the
    same order (accounts created when missing, as ``_adjust`` creates them), the same
    journals and entries. Those already written for the month are left out."""
    existing = set(
        Adjustment.objects.filter(period=period, promoter_id__in={promoter.pk for promoter, *_ in wanted})
        .values_list("promoter_id", "kind")
    )
    wanted = [w for w in wanted if (w[0].pk, w[1]) not in existing]
    if not wanted:
        return []
    adjustments = Adjustment.objects.bulk_create([
        Adjustment(
            merchant_id=promoter.merchant_id, promoter=promoter, kind=kind, period=period,
            amount_minor=amount, currency=currency, reason=reason[:300],
        )
        for promoter, kind, amount, currency, reason in wanted
    ])
    promoter_ids: dict[tuple[int, str], set[int]] = defaultdict(set)
    for promoter, _, _, currency, _ in wanted:
        promoter_ids[(promoter.merchant_id, currency)].add(promoter.pk)
    accounts, expenses = {}, {}
    for (merchant_id, currency), ids in promoter_ids.items():
        accounts[(merchant_id, currency)] = {
            (a.promoter_id, a.kind): a
            for a in Account.objects.filter(promoter_id__in=ids, currency=currency, kind__in=ledger.PROMOTER_KINDS)
        }
        expenses[(merchant_id, currency)] = Account.objects.filter(
            merchant_id=merchant_id, promoter__isnull=True, kind=Account.Kind.EXPENSE, currency=currency
        ).first()
    postings = []
    for promoter, kind, amount, currency, reason in wanted:
        key = (promoter.merchant_id, currency)
        mine = accounts[key]
        # Created when missing, promoter by promoter and then the expense account, as _adjust does.
        if any((promoter.pk, k) not in mine for k in ledger.PROMOTER_KINDS):
            mine.update(ledger.promoter_accounts(promoter.merchant_id, currency, [promoter.pk]))
        if expenses[key] is None:
            expenses[key] = ledger.expense_account(promoter.merchant_id, currency)
        postings.append(ledger.Posting(
            _journal(promoter, kind, period, reason),
            [(mine[(promoter.pk, "available")], amount), (expenses[key], -amount)],
        ))
    ledger.post(postings)
    return adjustments


def _journal(promoter: Promoter, kind: str, period: str, reason: str) -> Journal:
    """The adjustment's journal, its memo naming the kind (the statements tell bonuses by it)."""
    return Journal(
        merchant_id=promoter.merchant_id, kind=Journal.Kind.ADJUSTMENT,
        memo=f"{'bonus' if kind == 'bonus' else 'topup'} {period}: {reason}"[:200],
    )


def _adjust(promoter: Promoter, kind: str, period: str, amount: int, currency: str, reason: str) -> Adjustment | None:
    try:
        with transaction.atomic():
            adjustment = Adjustment.objects.create(
                merchant_id=promoter.merchant_id, promoter=promoter, kind=kind, period=period,
                amount_minor=amount, currency=currency, reason=reason[:300],
            )
            accounts = ledger.promoter_accounts(promoter.merchant_id, currency, [promoter.pk])
            expense = ledger.expense_account(promoter.merchant_id, currency)
            ledger.post([
                ledger.Posting(
                    _journal(promoter, kind, period, reason),
                    [(accounts[(promoter.pk, "available")], amount), (expense, -amount)],
                )
            ])
            return adjustment
    except IntegrityError:
        return None  # already written for this month
