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

from core import money
from core.crypto import EncryptedTextField


class Commission(models.Model):
    class Kind(models.TextChoices):
        DIRECT = "direct"
        OVERRIDE = "override"
        BOUNTY = "bounty"
        REVERSAL = "reversal"

    class Status(models.TextChoices):
        # A flagged conversion's commission, in review: counted in no balance until finance
        # clears it (then pending or approved by the usual rules) or rejects it.
        HELD = "held"
        PENDING = "pending"
        APPROVED = "approved"
        PAID = "paid"
        # Rejected in review: the commission and the reversal that undid it; never paid.
        REJECTED = "rejected"

    # Every new row version goes into every index, and a month-end rewrites a million rows
    # (approved and claimed for their lines): no foreign-key index where a composite index
    # below starts with the same column (merchant, promoter), partial indexes where most
    # rows have nothing to find (reverses, payout_line, commission_due).
    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+", db_index=False)
    program = models.ForeignKey("merchants.Program", on_delete=models.PROTECT, related_name="+")
    event = models.ForeignKey("affiliate.ConversionEvent", on_delete=models.PROTECT, related_name="commissions")
    promoter = models.ForeignKey("promoters.Promoter", on_delete=models.PROTECT, related_name="commissions", db_index=False)
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
    reverses = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="reversals", db_index=False)
    payout_line = models.ForeignKey(
        "PayoutLine", on_delete=models.PROTECT, null=True, blank=True, related_name="commissions", db_index=False,
        help_text="The batch line that pays it (set when the line is built, cleared if it fails).",
    )
    reason = models.CharField(max_length=300, blank=True, default="", help_text="Why finance reversed it by hand.")
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
            models.CheckConstraint(
                condition=Q(status__in=["held", "pending", "approved", "paid", "rejected"]), name="commission_status_valid"
            ),
            models.CheckConstraint(condition=Q(level__lte=10), name="commission_level_at_most_10"),
        ]
        indexes = [
            models.Index(fields=["promoter", "status"], name="commission_promoter_status"),
            # The portal: a promoter's commissions newest first, and their last 30 days.
            models.Index(fields=["promoter", "created_at", "id"], name="commission_promoter_time"),
            # The team page: a promoter's overrides summed by level, from the index alone (the
            # overrides and their reversals only: a promoter's own sales are not in it).
            models.Index(
                fields=["promoter", "level"], include=["currency", "kind", "amount_minor"], condition=Q(level__gte=1),
                name="commission_promoter_level",
            ),
            # What approve_due looks for: the pending ones (a month-end approves them all).
            models.Index(fields=["status", "available_at"], condition=Q(status="pending"), name="commission_due"),
            # The review queue: what is held, by merchant.
            models.Index(fields=["merchant", "event"], condition=Q(status="held"), name="commission_held"),
            models.Index(fields=["merchant", "created_at"], name="commission_merchant_time"),
            models.Index(fields=["reverses"], condition=Q(reverses__isnull=False), name="commission_reverses"),
            models.Index(fields=["payout_line"], condition=Q(payout_line__isnull=False), name="commission_payout_line"),
            # What a batch claims besides the due ones: the approved not yet in a line.
            models.Index(fields=["merchant"], condition=Q(status="approved", payout_line__isnull=True), name="commission_unclaimed"),
        ]
        permissions = [
            ("approve_commission", "Can approve commissions now, before their hold ends"),
            ("reverse_commission", "Can reverse a commission with a reason"),
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
    """A promoter's running balance is updated with every movement: its table is stored with
    room on each page (fillfactor, PostgreSQL, migration 0006) so that an update can stay on
    the page without new index entries (a month-end moves a couple of hundred thousand)."""

    class Kind(models.TextChoices):
        HELD = "held"  # a flagged conversion's commissions, in review: in no balance
        PENDING = "pending"
        AVAILABLE = "available"
        PROCESSING = "processing"  # locked in a payout batch line, not yet confirmed paid
        PAID = "paid"
        EXPENSE = "expense"  # the merchant's side of every commission

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
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
        ADJUSTMENT = "adjustment"  # a guaranteed-minimum top-up or a performance bonus
        BATCH_LOCK = "batch_lock"  # available → processing when a batch line is built
        BATCH_PAID = "batch_paid"  # processing → paid when the line is confirmed
        BATCH_FAILED = "batch_failed"  # processing → available when the line fails
        REVIEW_CLEARED = "cleared"  # held → pending (or available) when finance clears a flag
        REVIEW_REJECTED = "rejected"  # held → expense: the reversal of a rejected commission

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+", db_index=False)  # journal_merchant_time
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
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries", db_index=False)  # entry_account
    amount_minor = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=~Q(amount_minor=0), name="entry_not_zero")]
        indexes = [models.Index(fields=["account", "id"], name="entry_account")]

    def __str__(self) -> str:
        return f"{self.account_id} {self.amount_minor:+d}"


class PayoutPolicy(models.Model):
    """How a program pays: the threshold, and the guaranteed-minimum-plus-bonus plan for new
    promoters. Every figure is a setting; amounts in the program's minor units."""

    program = models.OneToOneField("merchants.Program", on_delete=models.CASCADE, related_name="payout_policy")
    minimum_payout_minor = models.BigIntegerField(default=5000, help_text="Balances below this wait for the next run.")
    guaranteed_minimum_minor = models.BigIntegerField(default=0, help_text="Monthly earnings floor for promoters on the guaranteed plan.")
    guaranteed_months = models.PositiveSmallIntegerField(default=3, help_text="For their first N calendar months.")
    activity_min_clicks = models.PositiveIntegerField(default=0, help_text="Clicks needed in the month to earn the top-up.")
    activity_min_conversions = models.PositiveIntegerField(default=1, help_text="Purchases needed in the month to earn the top-up.")
    bonus_revenue_threshold_minor = models.BigIntegerField(default=0, help_text="0: no bonus. Attributed revenue above which the bonus is paid.")
    bonus_rate = models.DecimalField(max_digits=7, decimal_places=6, default=0, help_text="Bonus as a share of the month's attributed revenue.")
    payer_name = models.CharField(max_length=70, blank=True, default="", help_text="The debtor on SEPA files.")
    payer_iban = models.CharField(max_length=34, blank=True, default="")
    payer_bic = models.CharField(max_length=11, blank=True, default="")

    class Meta:
        verbose_name_plural = "payout policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(minimum_payout_minor__gte=0, guaranteed_minimum_minor__gte=0, bonus_revenue_threshold_minor__gte=0),
                name="policy_amounts_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"payout policy of {self.program}"


class PayoutMethod(models.Model):
    """Where a promoter's money goes. One current method per promoter; every change is logged."""

    class Kind(models.TextChoices):
        PAYPAL = "paypal"
        BANK = "bank"
        MANUAL = "manual"

    promoter = models.OneToOneField("promoters.Promoter", on_delete=models.CASCADE, related_name="payout_method")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MANUAL)
    paypal_email = models.EmailField(blank=True, default="")
    account_holder = models.CharField(max_length=70, blank=True, default="")
    iban = models.CharField(max_length=34, blank=True, default="")
    bic = models.CharField(max_length=11, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.kind} for {self.promoter_id}"


class PayoutMethodChange(models.Model):
    promoter = models.ForeignKey("promoters.Promoter", on_delete=models.CASCADE, related_name="payout_method_changes")
    changed_by = models.CharField(max_length=200, help_text="Who changed it: the promoter, a merchant key, a staff user.")
    before = models.JSONField()
    after = models.JSONField()
    changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"payout method of {self.promoter_id} changed {self.changed_at:%Y-%m-%d}"


class Adjustment(models.Model):
    """Money for a promoter that is not a commission on an event: a guaranteed-minimum
    top-up or a performance bonus, each with its reason. Credited to available at once."""

    class Kind(models.TextChoices):
        TOPUP = "topup"
        BONUS = "bonus"

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    promoter = models.ForeignKey("promoters.Promoter", on_delete=models.PROTECT, related_name="adjustments")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    period = models.CharField(max_length=7, help_text="The month it is for, YYYY-MM.")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    reason = models.CharField(max_length=300)
    payout_line = models.ForeignKey("PayoutLine", on_delete=models.PROTECT, null=True, blank=True, related_name="adjustments")
    paid_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["promoter", "kind", "period"], name="adjustment_once_per_month"),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="adjustment_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.period} for {self.promoter_id}"


class PayoutBatch(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"  # lines locked, exported, awaiting confirmation
        CLOSED = "closed"  # every line paid or failed

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    currency = models.CharField(max_length=3)
    period = models.CharField(max_length=7, blank=True, default="", help_text="The month closed by it, if any.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "payout batches"
        constraints = [
            models.UniqueConstraint(
                fields=["merchant", "currency", "period"], condition=~Q(period=""), name="batch_once_per_month"
            ),
        ]

    def __str__(self) -> str:
        return f"batch {self.pk} ({self.currency} {self.period or self.created_at:%Y-%m-%d})"


class PayoutLine(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        PAID = "paid"
        FAILED = "failed"

    batch = models.ForeignKey(PayoutBatch, on_delete=models.PROTECT, related_name="lines")
    promoter = models.ForeignKey("promoters.Promoter", on_delete=models.PROTECT, related_name="payout_lines")
    amount_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    method = models.JSONField(default=dict, help_text="The payout method as it was when the line was built.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    failure_reason = models.CharField(max_length=300, blank=True, default="")
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "promoter"], name="line_once_per_promoter"),
            models.CheckConstraint(condition=Q(amount_minor__gt=0), name="line_positive"),
        ]

    def __str__(self) -> str:
        return f"line {self.pk}: {self.promoter_id}"


class Statement(models.Model):
    """A promoter's month, frozen when the month was closed."""

    promoter = models.ForeignKey("promoters.Promoter", on_delete=models.PROTECT, related_name="statements")
    period = models.CharField(max_length=7)
    currency = models.CharField(max_length=3)
    figures = models.JSONField(help_text="Opening, commissions by kind, reversals, adjustments, payouts, closing (minor units).")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-period", "promoter"]
        constraints = [models.UniqueConstraint(fields=["promoter", "period", "currency"], name="statement_once_per_month")]

    def __str__(self) -> str:
        return f"statement {self.period} of {self.promoter_id}"


class MonthClose(models.Model):
    """One run of close_month for a merchant and month, with its reconciliation report."""

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    period = models.CharField(max_length=7)
    report = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant", "period"], name="close_once_per_month")]

    def __str__(self) -> str:
        return f"close {self.period} of {self.merchant_id}"


class WebhookEndpoint(models.Model):
    """A URL that receives signed POSTs for the events it subscribes to. A merchant-wide
    endpoint (no promoter) gets every promoter's events; a promoter's endpoint only theirs."""

    class Event(models.TextChoices):
        COMMISSION_CREATED = "commission.created"
        COMMISSION_APPROVED = "commission.approved"
        COMMISSION_REVERSED = "commission.reversed"
        PAYOUT_PAID = "payout.paid"
        EVENT_FAILED = "event.failed"

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="+")
    promoter = models.ForeignKey(
        "promoters.Promoter", on_delete=models.CASCADE, null=True, blank=True, related_name="webhook_endpoints",
        help_text="Set: only this promoter's events. Empty: every event of the merchant.",
    )
    url = models.URLField(max_length=2000)
    events = models.JSONField(default=list, help_text="The event types subscribed to.")
    secret = EncryptedTextField(help_text="Signs every delivery; shown once, when the endpoint is created; stored encrypted.")
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["merchant", "active"], name="webhook_endpoint_merchant")]

    def __str__(self) -> str:
        return f"webhook {self.pk} → {self.url}"


class WebhookDelivery(models.Model):
    """One event for one endpoint: the JSON body, and where its sending stands. Sent once per
    (endpoint, event id); retried with backoff until it succeeds or gives up; replayable."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=40)
    event_id = models.CharField(max_length=100, help_text="Sent as X-Webhook-Id: the receiver's idempotency key.")
    payload = models.JSONField(help_text="The body sent: {id, type, created_at, data}.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When a pending delivery is due.")
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True, default="")
    response_excerpt = models.CharField(max_length=1000, blank=True, default="")
    log = models.JSONField(default=list, help_text="Every attempt: {at, attempt, status_code, error, duration_ms}.")
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "event_id"], name="webhook_delivery_once_per_event"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "succeeded", "failed"]), name="webhook_delivery_status_valid"
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} → endpoint {self.endpoint_id}"
