"""Commissions and the append-only double-entry ledger.

Every movement of money is a ``Journal`` of ``Entry`` rows that sum to zero. A promoter has
three accounts per currency: ``pending`` (on hold), ``available`` (approved, payable) and
``paid`` (paid out, cumulative); the merchant's ``expense`` account is the other side of
every commission. Balances are sums of entries; ``Account.balance_minor`` is a running
copy, updated with ``F()`` in the same transaction, that ``audit_ledger`` checks.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from affiliate import money


class Commission(models.Model):
    class Kind(models.TextChoices):
        DIRECT = "direct"
        OVERRIDE = "override"
        BOUNTY = "bounty"
        REVERSAL = "reversal"

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        PAID = "paid"

    merchant = models.ForeignKey("affiliate.Merchant", on_delete=models.PROTECT, related_name="+")
    program = models.ForeignKey("affiliate.Program", on_delete=models.PROTECT, related_name="+")
    event = models.ForeignKey("affiliate.ConversionEvent", on_delete=models.PROTECT, related_name="commissions")
    promoter = models.ForeignKey("promoters.Promoter", on_delete=models.PROTECT, related_name="commissions")
    source_promoter = models.ForeignKey(
        "promoters.Promoter", on_delete=models.PROTECT, related_name="+",
        help_text="The promoter whose attributed share this commission derives from.",
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    level = models.PositiveSmallIntegerField(default=0, help_text="0 for the promoter's own commission, k for the k-th upline.")
    amount_minor = models.BigIntegerField(help_text="Signed: a reversal is negative.")
    currency = models.CharField(max_length=3)
    base_minor = models.BigIntegerField(default=0, help_text="The attributed revenue it was computed on.")
    rate = models.DecimalField(max_digits=7, decimal_places=6, null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    reverses = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversals")
    available_at = models.DateTimeField(help_text="When the hold ends.")
    created_at = models.DateTimeField(default=timezone.now)
    approved_at = models.DateTimeField(null=True, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["event", "source_promoter", "kind", "level"], condition=~Q(kind="reversal"),
                name="commission_once_per_event_share_level",
            ),
            models.UniqueConstraint(
                fields=["event", "reverses"], condition=Q(kind="reversal"), name="commission_reversed_once_per_refund"
            ),
            models.CheckConstraint(
                condition=(Q(kind="reversal", amount_minor__lt=0, reverses__isnull=False) | (~Q(kind="reversal") & Q(amount_minor__gt=0, reverses__isnull=True))),
                name="commission_sign_matches_kind",
            ),
            models.CheckConstraint(condition=Q(status__in=["pending", "approved", "paid"]), name="commission_status_valid"),
            models.CheckConstraint(condition=Q(level__lte=10), name="commission_level_at_most_10"),
        ]
        indexes = [
            models.Index(fields=["promoter", "status"], name="commission_promoter_status"),
            models.Index(fields=["status", "available_at"], name="commission_due"),
            models.Index(fields=["merchant", "created_at"], name="commission_merchant_time"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} to {self.promoter_id}"

    @property
    def amount(self):
        return money.from_minor(self.amount_minor, self.currency)


class Basis(models.Model):
    """The promoter facts a conversion's commissions were computed from (status, sponsor,
    own rate, own customer id as they were then), so the audit can recompute them exactly
    after the tree has changed."""

    event = models.OneToOneField("affiliate.ConversionEvent", on_delete=models.PROTECT, related_name="basis")
    promoters = models.JSONField(help_text="{id: [active, sponsor_id, customer_id, own_rate]}")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"basis of event {self.event_id}"


class Account(models.Model):
    class Kind(models.TextChoices):
        PENDING = "pending"
        AVAILABLE = "available"
        PAID = "paid"
        EXPENSE = "expense"  # the merchant's side of every commission

    merchant = models.ForeignKey("affiliate.Merchant", on_delete=models.PROTECT, related_name="+")
    promoter = models.ForeignKey("promoters.Promoter", on_delete=models.PROTECT, null=True, blank=True, related_name="accounts")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    currency = models.CharField(max_length=3)
    balance_minor = models.BigIntegerField(default=0, help_text="Running sum of entries (promoter accounts).")
    tracks_balance = models.BooleanField(
        default=True, help_text="The merchant's expense account is summed on demand, so that it never becomes a hot row."
    )

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["promoter", "kind", "currency"], condition=Q(promoter__isnull=False), name="account_promoter_kind_currency"
            ),
            models.UniqueConstraint(
                fields=["merchant", "kind", "currency"], condition=Q(promoter__isnull=True), name="account_merchant_kind_currency"
            ),
            models.CheckConstraint(
                condition=(Q(promoter__isnull=True, kind="expense") | (Q(promoter__isnull=False) & ~Q(kind="expense"))),
                name="account_owner_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        owner = f"promoter {self.promoter_id}" if self.promoter_id else f"merchant {self.merchant_id}"
        return f"{owner} {self.kind} {self.currency}"


class Journal(models.Model):
    """One balanced movement of money."""

    class Kind(models.TextChoices):
        COMMISSION = "commission"
        APPROVAL = "approval"
        REVERSAL = "reversal"
        CLAWBACK = "clawback"
        PAYOUT = "payout"

    merchant = models.ForeignKey("affiliate.Merchant", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    commission = models.ForeignKey(Commission, on_delete=models.PROTECT, null=True, blank=True, related_name="journals")
    memo = models.CharField(max_length=200, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["commission", "kind"], condition=Q(commission__isnull=False), name="journal_once_per_commission_kind"
            ),
        ]
        indexes = [models.Index(fields=["merchant", "created_at"], name="journal_merchant_time")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class Entry(models.Model):
    """One line of a journal. Never updated, never deleted."""

    journal = models.ForeignKey(Journal, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    amount_minor = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=~Q(amount_minor=0), name="entry_not_zero")]
        indexes = [models.Index(fields=["account", "id"], name="entry_account")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount_minor:+d}"
