"""Payout batches: lock what is payable, export it, settle it. Every step is ledger entries.

Building a batch claims approved, unpaid commissions and adjustments for a line per
promoter whose payable total reaches the program's minimum; a claim is a conditional
update (``payout_line IS NULL``), so two batches built at once can never take the same
money. The line's total moves available → processing; a paid line moves processing → paid
(and its commissions become ``paid``); a failed line moves the money back to available.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db import transaction
from django.db.models import OuterRef, Subquery, Sum
from django.utils import timezone

from affiliate.models import Merchant
from promoters.models import Promoter

from . import ledger, webhooks
from .models import Account, Adjustment, Commission, Journal, PayoutBatch, PayoutLine, PayoutMethod, PayoutPolicy


class BatchError(ValueError):
    pass


def policy_for(program) -> PayoutPolicy:
    policy, _ = PayoutPolicy.objects.get_or_create(program=program)
    return policy


def method_snapshot(method: PayoutMethod | None) -> dict:
    if method is None:
        return {"kind": "manual"}
    return {
        "kind": method.kind,
        "paypal_email": method.paypal_email,
        "account_holder": method.account_holder,
        "iban": method.iban,
        "bic": method.bic,
    }


@dataclass
class BatchResult:
    batch: PayoutBatch | None
    lines: int
    total_minor: int
    created: bool


def _payable_by_promoter(merchant_id: int, currency: str) -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for promoter_id, total in (
        Commission.objects.filter(merchant_id=merchant_id, currency=currency, status=Commission.Status.APPROVED, payout_line__isnull=True)
        .values("promoter_id").annotate(total=Sum("amount_minor")).values_list("promoter_id", "total")
    ):
        totals[promoter_id] += total
    for promoter_id, total in (
        Adjustment.objects.filter(merchant_id=merchant_id, currency=currency, payout_line__isnull=True, paid_at__isnull=True)
        .values("promoter_id").annotate(total=Sum("amount_minor")).values_list("promoter_id", "total")
    ):
        totals[promoter_id] += total
    return totals


@transaction.atomic
def batch_build(*, merchant: Merchant, currency: str, period: str = "", progress=None) -> BatchResult:
    """One line per promoter whose payable balance reaches their program's minimum."""
    Merchant.objects.select_for_update().filter(pk=merchant.pk).first()  # one builder per merchant at a time
    if period:
        existing = PayoutBatch.objects.filter(merchant=merchant, currency=currency, period=period).first()
        if existing is not None:
            total = existing.lines.aggregate(total=Sum("amount_minor"))["total"] or 0
            return BatchResult(existing, existing.lines.count(), total, False)
    totals = _payable_by_promoter(merchant.pk, currency)
    if not totals:
        return BatchResult(None, 0, 0, False)
    promoters = {
        p.pk: p
        for p in Promoter.objects.filter(pk__in=list(totals)).select_related("program", "program__payout_policy", "payout_method")
    }
    minimums = {}
    for promoter in promoters.values():
        program = promoter.program
        if program.pk not in minimums:
            minimums[program.pk] = policy_for(program).minimum_payout_minor
    eligible = {
        pid: total for pid, total in totals.items() if total > 0 and total >= minimums[promoters[pid].program_id]
    }
    if not eligible:
        return BatchResult(None, 0, 0, False)
    batch = PayoutBatch.objects.create(merchant=merchant, currency=currency, period=period)
    PayoutLine.objects.bulk_create(
        [
            PayoutLine(
                batch=batch, promoter_id=pid, amount_minor=total, currency=currency,
                method=method_snapshot(getattr(promoters[pid], "payout_method", None)),
            )
            for pid, total in eligible.items()
        ],
        batch_size=5000,
    )
    if progress:
        progress(f"batch {batch.pk}: {len(eligible)} lines to lock")
    line_of = PayoutLine.objects.filter(batch=batch, promoter_id=OuterRef("promoter_id")).values("id")[:1]
    # The claim: only what is still unclaimed, so nothing is ever in two lines.
    Commission.objects.filter(
        merchant_id=merchant.pk, currency=currency, status=Commission.Status.APPROVED, payout_line__isnull=True,
        promoter_id__in=PayoutLine.objects.filter(batch=batch).values("promoter_id"),
    ).update(payout_line=Subquery(line_of))
    Adjustment.objects.filter(
        merchant_id=merchant.pk, currency=currency, payout_line__isnull=True, paid_at__isnull=True,
        promoter_id__in=PayoutLine.objects.filter(batch=batch).values("promoter_id"),
    ).update(payout_line=Subquery(line_of))
    claimed = _claimed_totals(batch)
    postings, empty = [], []
    lines = list(PayoutLine.objects.filter(batch=batch).select_related("batch"))
    accounts = ledger.promoter_accounts(merchant.pk, currency, [line.promoter_id for line in lines])
    for line in lines:
        amount = claimed.get(line.pk, 0)
        if amount <= 0:  # everything it counted on was claimed elsewhere in the meantime
            empty.append(line.pk)
            continue
        if amount != line.amount_minor:
            line.amount_minor = amount
            PayoutLine.objects.filter(pk=line.pk).update(amount_minor=amount)
        postings.append(_posting(line, Journal.Kind.BATCH_LOCK, Account.Kind.AVAILABLE, Account.Kind.PROCESSING, accounts))
    if empty:
        Commission.objects.filter(payout_line_id__in=empty).update(payout_line=None)
        Adjustment.objects.filter(payout_line_id__in=empty).update(payout_line=None)
        PayoutLine.objects.filter(pk__in=empty).delete()
    ledger.post(postings)
    total = sum(line.amount_minor for line in lines if line.pk not in empty)
    return BatchResult(batch, len(lines) - len(empty), total, True)


def _claimed_totals(batch: PayoutBatch) -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for model in (Commission, Adjustment):
        for line_id, total in (
            model.objects.filter(payout_line__batch=batch).values("payout_line_id").annotate(total=Sum("amount_minor"))
            .values_list("payout_line_id", "total")
        ):
            totals[line_id] += total
    return totals


def _posting(line: PayoutLine, kind: str, source: str, target: str, accounts) -> ledger.Posting:
    return ledger.Posting(
        Journal(merchant_id=line.batch.merchant_id, kind=kind, memo=f"batch {line.batch_id} line {line.pk}"),
        [
            (accounts[(line.promoter_id, source)], -line.amount_minor),
            (accounts[(line.promoter_id, target)], line.amount_minor),
        ],
    )


@transaction.atomic
def lines_settle(*, line_ids, paid: bool, reason: str = "", now=None) -> int:
    """Confirm lines as paid, or as failed (the money goes back to available)."""
    now = now or timezone.now()
    lines = list(
        PayoutLine.objects.select_for_update().select_related("batch")
        .filter(pk__in=list(line_ids), status=PayoutLine.Status.PENDING).order_by("id")
    )
    if not lines:
        return 0
    if not paid and not reason.strip():
        raise BatchError("Say why the payment failed.")
    postings = []
    by_currency: dict[tuple[int, str], list[PayoutLine]] = defaultdict(list)
    for line in lines:
        by_currency[(line.batch.merchant_id, line.currency)].append(line)
    for (merchant_id, currency), group in by_currency.items():
        accounts = ledger.promoter_accounts(merchant_id, currency, [line.promoter_id for line in group])
        for line in group:
            if paid:
                postings.append(_posting(line, Journal.Kind.BATCH_PAID, Account.Kind.PROCESSING, Account.Kind.PAID, accounts))
            else:
                postings.append(_posting(line, Journal.Kind.BATCH_FAILED, Account.Kind.PROCESSING, Account.Kind.AVAILABLE, accounts))
    ledger.post(postings)
    ids = [line.pk for line in lines]
    if paid:
        Commission.objects.filter(payout_line_id__in=ids).update(status=Commission.Status.PAID, paid_at=now)
        Adjustment.objects.filter(payout_line_id__in=ids).update(paid_at=now)
        PayoutLine.objects.filter(pk__in=ids).update(status=PayoutLine.Status.PAID, settled_at=now)
    else:
        Commission.objects.filter(payout_line_id__in=ids).update(payout_line=None)
        Adjustment.objects.filter(payout_line_id__in=ids).update(payout_line=None)
        PayoutLine.objects.filter(pk__in=ids).update(status=PayoutLine.Status.FAILED, settled_at=now, failure_reason=reason[:300])
    if paid:
        for line in lines:
            line.status, line.settled_at = PayoutLine.Status.PAID, now
            webhooks.emit_payout_paid(line=line)
    for batch_id in {line.batch_id for line in lines}:
        if not PayoutLine.objects.filter(batch_id=batch_id, status=PayoutLine.Status.PENDING).exists():
            PayoutBatch.objects.filter(pk=batch_id).update(status=PayoutBatch.Status.CLOSED, closed_at=now)
    return len(lines)
