"""Review of flagged conversions: their held commissions cleared or rejected, through the ledger.

A conversion the fraud rules flag (``payouts.fraud``) is credited as if it were clean, and
its commissions are written ``held``: posted to the promoter's ``held`` account, counted in
no balance. Refunds of the order reverse them there (rule 8). Finance then decides, once:

* **clear**: every held commission of the conversion (and the held reversals of its refunds)
  moves held → pending, one journal each; those whose hold has ended by ``occurred_at`` +
  ``hold_days``, or whose promoter is paid at once, are approved there and then;
* **reject**: each commission gets a reversal of what is left of it, held → expense; the
  commission, its reversals and the rejection are ``rejected``; nothing is paid. A refund of a
  rejected order reverses nothing more (nothing is left).

Each decision runs under the event's row lock and checks the event's state first, so two
finance users pressing the button at once decide once.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from affiliate import events as affiliate_events
from affiliate.models import ConversionEvent
from promoters.models import Promoter

from . import ledger, webhooks
from .finance import reversal_by_hand
from .models import Basis, Commission
from .services import _approve, _by_merchant_currency


def _lock_flagged(event_id: int) -> ConversionEvent | None:
    event = (
        ConversionEvent.objects.select_for_update(of=("self",)).select_related("customer").filter(pk=event_id).first()
    )
    if event is None or not event.is_fraud or event.rejected_at is not None:
        return None
    return event


def _held_of(event: ConversionEvent) -> list[Commission]:
    """The event's held commissions and the held reversals of its refunds, locked, by id."""
    return list(
        Commission.objects.select_for_update(of=("self",))
        .filter(Q(event=event) | Q(reverses__event=event), status=Commission.Status.HELD)
        .order_by("id")
    )


@transaction.atomic
def conversion_clear(*, event_id: int, by: str) -> bool:
    """Clear a flagged conversion: its held commissions follow the usual rules from now on
    (pending until the hold from ``occurred_at`` ends, approved at once where due). Returns
    whether it was cleared (False: not flagged, or decided already)."""
    event = _lock_flagged(event_id)
    if event is None:
        return False
    now = timezone.now()
    event.is_fraud = False
    event.cleared_at = now
    event.cleared_by = (by or "")[:150]
    event.save(update_fields=["is_fraud", "cleared_at", "cleared_by"])
    if event.status != ConversionEvent.Status.PROCESSED:
        return True  # credited by its worker as a cleared event
    held = _held_of(event)
    if not held and not Basis.objects.filter(event=event).exists():
        # Flagged before flagged conversions were credited held: credit it now, and replay
        # its refunds after it, in the order received.
        _credit_now(event)
        return True
    _release(held, now)
    return True


def _credit_now(event: ConversionEvent) -> None:
    for processor in affiliate_events.PROCESSORS:
        processor([event])
    refunds = list(
        ConversionEvent.objects.select_for_update(of=("self",))
        .select_related("customer", "purchase")
        .filter(purchase_id=event.pk, status=ConversionEvent.Status.PROCESSED)
        .order_by("pk")
    )
    for refund in refunds:
        for processor in affiliate_events.PROCESSORS:
            processor([refund])


def _release(held: list[Commission], now) -> None:
    if not held:
        return
    postings = []
    for (merchant_id, currency), group in _by_merchant_currency(held).items():
        accounts = ledger.promoter_accounts(merchant_id, currency, {c.promoter_id for c in group})
        postings.extend(ledger.review_cleared(c, accounts) for c in group)
    ledger.post(postings)
    Commission.objects.filter(pk__in=[c.pk for c in held]).update(status=Commission.Status.PENDING)
    for commission in held:
        commission.status = Commission.Status.PENDING
    immediate = set(
        Promoter.objects.filter(
            pk__in={c.promoter_id for c in held}, payout_plan=Promoter.PayoutPlan.IMMEDIATE
        ).values_list("pk", flat=True)
    )
    _approve([c for c in held if c.available_at <= now or c.promoter_id in immediate], now)


@transaction.atomic
def conversion_reject(*, event_id: int, by: str) -> bool:
    """Reject a flagged conversion: each of its held commissions is reversed in full (what
    its refunds left of it), held → expense, and it and its reversals are ``rejected``.
    Returns whether it was rejected (False: not flagged, not processed, or decided already)."""
    event = _lock_flagged(event_id)
    if event is None or event.status != ConversionEvent.Status.PROCESSED:
        return False
    now = timezone.now()
    who = (by or "")[:150]
    event.rejected_at = now
    event.rejected_by = who
    event.save(update_fields=["rejected_at", "rejected_by"])
    held = _held_of(event)
    originals = [c for c in held if c.kind != Commission.Kind.REVERSAL]
    reversed_so_far = dict(
        Commission.objects.filter(reverses__in=originals)
        .values("reverses_id")
        .annotate(total=Sum("amount_minor"))
        .values_list("reverses_id", "total")
    )
    reversals = []
    for commission in originals:
        left = commission.amount_minor + (reversed_so_far.get(commission.pk) or 0)
        if left <= 0:
            continue
        reversals.append(
            reversal_by_hand(
                commission, amount_minor=-left, status=Commission.Status.REJECTED,
                reason=f"rejected in review by {who or 'finance'}: {event.flag_reason}",
            )
        )
    Commission.objects.bulk_create(reversals)
    postings = []
    for (merchant_id, currency), group in _by_merchant_currency(reversals).items():
        accounts, expense = ledger.posting_accounts(merchant_id, currency, {c.promoter_id for c in group})
        postings.extend(ledger.review_rejected(c, accounts, expense) for c in group)
    ledger.post(postings)
    Commission.objects.filter(pk__in=[c.pk for c in held]).update(status=Commission.Status.REJECTED)
    webhooks.emit_commissions(commissions=reversals, event_type="commission.reversed")
    return True
