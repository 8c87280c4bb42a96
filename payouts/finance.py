"""What finance does by hand, each through the ledger: approve now, reverse with a reason."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from . import ledger, webhooks
from .models import Commission


class FinanceError(ValueError):
    pass


def reversal_by_hand(commission: Commission, *, amount_minor: int, status: str, reason: str, approved_at=None) -> Commission:
    """An unsaved reversal of ``commission`` on its own event (by finance, or in review)."""
    return Commission(
        merchant_id=commission.merchant_id,
        program_id=commission.program_id,
        event_id=commission.event_id,
        promoter_id=commission.promoter_id,
        source_promoter_id=commission.source_promoter_id,
        kind=Commission.Kind.REVERSAL,
        level=commission.level,
        amount_minor=amount_minor,
        currency=commission.currency,
        base_minor=commission.base_minor,
        rate=commission.rate,
        reverses=commission,
        status=status,
        approved_at=approved_at,
        available_at=commission.available_at,
        reason=reason[:300],
    )


@transaction.atomic
def commission_reverse(*, commission_id: int, reason: str, by: str) -> Commission:
    """Reverse what is left of a commission (fraud found later, a deal cancelled...).

    The reversal sits where the commission sits: on hold with it, or against available (a
    clawback when it was already paid). A commission is reversed by hand at most once."""
    reason = (reason or "").strip()
    if not reason:
        raise FinanceError("Give the reason for the reversal.")
    commission = Commission.objects.select_for_update().get(pk=commission_id)
    if commission.kind == Commission.Kind.REVERSAL:
        raise FinanceError("A reversal cannot be reversed; it would pay the commission again.")
    if commission.status in (Commission.Status.HELD, Commission.Status.REJECTED):
        raise FinanceError("This commission is in review: clear or reject its conversion instead.")
    if Commission.objects.filter(event=commission.event, reverses=commission).exists():
        raise FinanceError("This commission was already reversed by hand.")
    reversed_so_far = commission.reversals.aggregate(total=Sum("amount_minor"))["total"] or 0
    left = commission.amount_minor + reversed_so_far
    if left <= 0:
        raise FinanceError("Nothing is left of this commission to reverse.")
    settled = commission.status != Commission.Status.PENDING
    reversal = reversal_by_hand(
        commission, amount_minor=-left, reason=f"{reason} (by {by})",
        status=Commission.Status.APPROVED if settled else Commission.Status.PENDING,
        approved_at=timezone.now() if settled else None,
    )
    reversal.save(force_insert=True)
    accounts = ledger.promoter_accounts(commission.merchant_id, commission.currency, [commission.promoter_id])
    expense = ledger.expense_account(commission.merchant_id, commission.currency)
    ledger.post([ledger.creation(reversal, accounts, expense)])
    webhooks.emit_commission(commission=reversal, event_type="commission.reversed")
    return reversal
