"""Merchants, programs, referral links, visitors, clicks, customers and conversion events.

Money columns hold whole minor units (``*_minor``); ``affiliate.money`` converts.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from . import money
from .crypto import EncryptedTextField
from .journey import EVENT_STAGES, Stage

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def uuid7(at: datetime | None = None) -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7) of ``at`` (now by default): new rows land at
    the end of the index, and a click's id tells the month whose partition holds it
    (affiliate/partitions.py)."""
    millis = (time.time_ns() // 1_000_000 if at is None else (at - _EPOCH) // timedelta(milliseconds=1)) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    rand_a = (rand >> 62) & 0xFFF
    rand_b = rand & ((1 << 62) - 1)
    return uuid.UUID(int=(millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b)


def default_tier_rates() -> list[str]:
    return ["0.05", "0.03", "0.02", "0.01"]


# A program's fraud rules (CONTRACT v2, "Flagged traffic is never silent"); 0 and None turn a
# rule off. The rules that can hit honest traffic (shared addresses behind carrier NAT, fast
# buyers) are off until the merchant turns them on. affiliate/fraud.py applies them.
FRAUD_DEFAULTS: dict = {
    "bots": True,
    "click_flood_max": 20,
    "click_flood_seconds": 60,
    "self_referral_email": True,
    "min_click_to_conversion_seconds": 0,
    "ip_max_promoters": 0,
    "max_order_amount": None,
}


def default_fraud_rules() -> dict:
    return dict(FRAUD_DEFAULTS)


RATE_VALIDATORS = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))]


def rate_field(default: str, **kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=7, decimal_places=6, default=Decimal(default), validators=RATE_VALIDATORS, **kwargs
    )


class Merchant(models.Model):
    name = models.CharField(max_length=200)
    domains = models.JSONField(default=list, help_text="Hosts that referral links may point to (subdomains included).")
    api_key_hash = models.CharField(max_length=64, unique=True, editable=False)
    api_key_prefix = models.CharField(max_length=16, editable=False, help_text="The key's first characters, to recognise it.")
    postback_token_hash = models.CharField(max_length=64, unique=True, editable=False)
    postback_secret = EncryptedTextField(
        editable=False, help_text="The HMAC key of signed postbacks: read back in clear to verify them, stored encrypted."
    )
    require_signature = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return any(host == d or host.endswith("." + d) for d in self.domains)


class Program(models.Model):
    class Model(models.TextChoices):
        FIRST_CLICK = "first_click"
        LAST_CLICK = "last_click"
        MIXED = "mixed"
        LINEAR = "linear"
        TIME_DECAY = "time_decay"

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="programs")
    name = models.CharField(max_length=200)
    is_default = models.BooleanField(default=False, editable=False)
    currency = models.CharField(max_length=3, default="USD")
    attribution_model = models.CharField(max_length=16, choices=Model.choices, default=Model.MIXED)
    first_click_share = rate_field("0.60")
    last_click_share = rate_field("0.40")
    lookback_days = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1), MaxValueValidator(3650)])
    registration_bounty_minor = models.BigIntegerField(default=0)
    first_purchase_rate = rate_field("0.10")
    repeat_purchase_rate = rate_field("0.05")
    tier_rates = models.JSONField(default=default_tier_rates, help_text="Override rates for upline levels 1..N (N ≤ 10), as strings.")
    compress_inactive = models.BooleanField(default=False)
    duplicate_click_seconds = models.PositiveIntegerField(default=0)
    hold_days = models.PositiveIntegerField(default=30)
    fraud = models.JSONField(
        default=default_fraud_rules, help_text="The fraud rules: " + ", ".join(FRAUD_DEFAULTS) + " (0 or null: off)."
    )
    join_requires_approval = models.BooleanField(
        default=False,
        help_text="Promoters who sign up through an invite link wait for the merchant's approval "
        "(and earn nothing until then) instead of joining at once.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant"], condition=Q(is_default=True), name="one_default_program_per_merchant"),
            models.CheckConstraint(condition=Q(registration_bounty_minor__gte=0), name="program_bounty_not_negative"),
            models.CheckConstraint(
                condition=Q(first_click_share__gte=0, last_click_share__gte=0, first_click_share__lte=1, last_click_share__lte=1),
                name="program_shares_in_range",
            ),
            models.CheckConstraint(
                condition=Q(first_purchase_rate__gte=0, first_purchase_rate__lte=1, repeat_purchase_rate__gte=0, repeat_purchase_rate__lte=1),
                name="program_rates_in_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"

    @property
    def registration_bounty(self) -> Decimal:
        return money.from_minor(self.registration_bounty_minor, self.currency)

    @property
    def tier_rate_decimals(self) -> list[Decimal]:
        return [Decimal(r) for r in self.tier_rates]

    def terms(self) -> dict:
        """The settings that decide money, as stored with each event."""
        return {
            "currency": self.currency,
            "attribution_model": self.attribution_model,
            "first_click_share": str(self.first_click_share),
            "last_click_share": str(self.last_click_share),
            "lookback_days": self.lookback_days,
            "registration_bounty_minor": self.registration_bounty_minor,
            "first_purchase_rate": str(self.first_purchase_rate),
            "repeat_purchase_rate": str(self.repeat_purchase_rate),
            "tier_rates": [str(r) for r in self.tier_rates],
            "compress_inactive": self.compress_inactive,
            "hold_days": self.hold_days,
            "fraud": self.fraud_rules,
        }

    @property
    def fraud_rules(self) -> dict:
        """The fraud rules, every key present (a rule added later takes its default)."""
        return {**FRAUD_DEFAULTS, **(self.fraud or {})}


class ReferralLink(models.Model):
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="links")
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="links")
    promoter = models.ForeignKey("promoters.Promoter", on_delete=models.PROTECT, related_name="links")
    code = models.CharField(max_length=32, unique=True)
    destination_url = models.URLField(max_length=2048)
    channel = models.CharField(max_length=100, blank=True, default="", db_index=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.code


class Visitor(models.Model):
    """One browser, known by its ``aff_vid`` cookie."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    first_seen_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return str(self.id)


class Click(models.Model):
    """One tracked redirect. Its id is the ``aff_click`` value handed to the merchant."""

    id = models.UUIDField(primary_key=True, default=uuid7, editable=False)
    link = models.ForeignKey(ReferralLink, on_delete=models.PROTECT, related_name="clicks")
    # Denormalised from the link so that touchpoint selection reads one table.
    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+", db_index=False)
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="+", db_index=False)
    promoter = models.ForeignKey("promoters.Promoter", on_delete=models.PROTECT, related_name="clicks", db_index=False)
    visitor = models.ForeignKey(Visitor, on_delete=models.PROTECT, related_name="clicks", db_index=False)
    created_at = models.DateTimeField(default=timezone.now)
    user_agent = models.CharField(max_length=512, blank=True, default="")
    referrer = models.CharField(max_length=1024, blank=True, default="")
    ip_hash = models.CharField(max_length=32, blank=True, default="")
    sub1 = models.CharField(max_length=255, blank=True, default="")
    sub2 = models.CharField(max_length=255, blank=True, default="")
    sub3 = models.CharField(max_length=255, blank=True, default="")
    sub4 = models.CharField(max_length=255, blank=True, default="")
    sub5 = models.CharField(max_length=255, blank=True, default="")
    is_fraud = models.BooleanField(default=False)
    is_duplicate = models.BooleanField(default=False)
    flag_reason = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["created_at"]
        indexes = [
            models.Index(fields=["visitor", "created_at"], name="click_visitor_time"),
            models.Index(fields=["visitor", "link", "created_at"], name="click_visitor_link_time"),
            # The flood rule by IP (one IP's clicks on one link in a window); its prefix serves
            # every look-up by IP alone, so it replaces the index on ip_hash.
            models.Index(fields=["ip_hash", "link", "created_at"], name="click_ip_link_time"),
            models.Index(fields=["promoter", "created_at"], name="click_promoter_time"),
            models.Index(fields=["program", "created_at"], name="click_program_time"),
        ]

    def __str__(self) -> str:
        return self.id.hex


class Customer(models.Model):
    """A merchant's customer, known by the merchant's own id, and where their journey stands."""

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="customers")
    external_id = models.CharField(max_length=255)
    stage = models.CharField(max_length=20, choices=Stage.CHOICES, default=Stage.VISITOR)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    visitors = models.ManyToManyField(Visitor, through="CustomerVisitor", related_name="customers")

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "external_id"], name="customer_unique_per_merchant"),
            models.CheckConstraint(condition=Q(stage__in=Stage.ALL), name="customer_stage_valid"),
        ]

    def __str__(self) -> str:
        return self.external_id


class CustomerVisitor(models.Model):
    """A visitor (a browser) bound for good to a customer, by the click an event named."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="bindings")
    visitor = models.ForeignKey(Visitor, on_delete=models.PROTECT, related_name="bindings")
    click = models.ForeignKey(Click, on_delete=models.PROTECT, related_name="+", null=True, blank=True)
    bound_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customer", "visitor"], name="customer_visitor_unique")]

    def __str__(self) -> str:
        return f"{self.customer_id} ← {self.visitor_id}"


class ConversionEvent(models.Model):
    """A conversion as the merchant reported it: the durable log everything else derives from."""

    class Type(models.TextChoices):
        REGISTRATION = "registration"
        PURCHASE = "purchase"
        REFUND = "refund"

    class Status(models.TextChoices):
        QUEUED = "queued"
        PROCESSED = "processed"
        # Processing failed EVENT_MAX_ATTEMPTS times: no sweep sends it again until finance
        # processes it again by hand (admin action), after the cause is fixed.
        FAILED = "failed"

    class Source(models.TextChoices):
        API = "api"
        POSTBACK = "postback"
        INTERNAL = "internal"

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="events")
    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="events")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="events")
    type = models.CharField(max_length=16, choices=Type.choices)
    stage = models.CharField(max_length=20, choices=[(s, s) for s in EVENT_STAGES])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    amount_minor = models.BigIntegerField(null=True, blank=True)
    currency = models.CharField(max_length=3)
    order_id = models.CharField(max_length=255, blank=True, default="")
    # "" when the merchant sent none: an order then takes one refund without an id.
    refund_id = models.CharField(max_length=255, blank=True, default="")
    purchase = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="refunds")
    click_ref = models.CharField(max_length=255, blank=True, default="", help_text="The click_id as sent.")
    click = models.ForeignKey(Click, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    coupon = models.CharField(max_length=255, blank=True, default="")
    coupon_promoter = models.ForeignKey(
        "promoters.Promoter", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    body_hash = models.CharField(max_length=64)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.API)
    payload = models.JSONField(default=dict)
    warnings = models.JSONField(default=list, blank=True)
    # The program's money terms when the event was received: a later change of the program
    # applies to events received after it, even if this one is processed later.
    terms = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(default=timezone.now)
    processed_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="", db_default="", help_text="Why processing failed last.")
    # Fraud controls (affiliate/fraud.py): a flagged conversion's commissions are written
    # held, in review, until finance clears the flag (they then follow the usual rules) or
    # rejects it (each is reversed in full).
    is_fraud = models.BooleanField(default=False, db_default=False)
    flag_code = models.CharField(max_length=32, blank=True, default="", db_default="", help_text="The rule that flagged it.")
    flag_reason = models.CharField(max_length=200, blank=True, default="", db_default="")
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.CharField(max_length=150, blank=True, default="", db_default="")
    rejected_at = models.DateTimeField(null=True, blank=True)
    rejected_by = models.CharField(max_length=150, blank=True, default="", db_default="")

    class Meta:
        ordering = ["id"]
        # What must be unique besides the id (one purchase per order...) is EventKey's to
        # enforce: this table is partitioned by month on PostgreSQL (affiliate/partitions.py).
        constraints = [
            models.CheckConstraint(
                condition=Q(type="registration", amount_minor__isnull=True) | Q(amount_minor__gt=0),
                name="event_amount_positive",
            ),
            models.CheckConstraint(
                condition=Q(type="registration") | ~Q(order_id=""), name="event_order_id_required"
            ),
            models.CheckConstraint(condition=Q(status__in=["queued", "processed", "failed"]), name="event_status_valid"),
        ]
        indexes = [
            models.Index(fields=["status", "received_at"], name="event_status_received"),
            # What the drainers claim, oldest first: only the queued events are in it, so a
            # claim reads the few it takes, however long the table and whatever its statistics.
            models.Index(fields=["id"], condition=Q(status="queued"), name="event_queued"),
            models.Index(fields=["customer", "occurred_at"], name="event_customer_time"),
            models.Index(fields=["program", "occurred_at"], name="event_program_time"),
            # The merchant's conversions list, newest first: read in order, not sorted.
            models.Index(fields=["merchant", "occurred_at", "id"], name="event_merchant_time"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk}"

    @property
    def amount(self) -> Decimal | None:
        return None if self.amount_minor is None else money.from_minor(self.amount_minor, self.currency)


class EventKey(models.Model):
    """What makes a conversion event unique besides its id, one row per rule, written in the
    event's transaction: one registration per customer, one purchase per order, one refund
    per order and refund id, one event per Idempotency-Key.

    The events table is partitioned by month on PostgreSQL (affiliate/partitions.py), and a
    unique index across partitions must hold the partition key; here, in one plain table,
    the unique constraint refuses a second event for the same key whatever months the two
    fall in, and finds the first by an index look-up."""

    class Kind(models.TextChoices):
        REGISTRATION = "registration"  # key: the customer's id (ours)
        PURCHASE = "purchase"  # key: the order id
        REFUND = "refund"  # key: the order id, with the refund id
        IDEMPOTENCY = "idempotency"  # key: the Idempotency-Key

    merchant = models.ForeignKey(Merchant, on_delete=models.PROTECT, related_name="+", db_index=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    key = models.CharField(max_length=255)
    refund_id = models.CharField(max_length=255, blank=True, default="")
    event = models.ForeignKey(ConversionEvent, on_delete=models.PROTECT, related_name="keys", db_index=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "kind", "key", "refund_id"], name="eventkey_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"

    @classmethod
    def of(cls, event: ConversionEvent) -> list[EventKey]:
        """The keys ``event`` holds."""
        keys = []
        if event.type == ConversionEvent.Type.REGISTRATION:
            keys.append(cls(merchant_id=event.merchant_id, kind=cls.Kind.REGISTRATION, key=str(event.customer_id)))
        elif event.type == ConversionEvent.Type.PURCHASE:
            keys.append(cls(merchant_id=event.merchant_id, kind=cls.Kind.PURCHASE, key=event.order_id))
        else:
            keys.append(
                cls(merchant_id=event.merchant_id, kind=cls.Kind.REFUND, key=event.order_id, refund_id=event.refund_id)
            )
        if event.idempotency_key is not None:
            keys.append(cls(merchant_id=event.merchant_id, kind=cls.Kind.IDEMPOTENCY, key=event.idempotency_key))
        for key in keys:
            key.event = event
        return keys
