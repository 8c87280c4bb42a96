"""Referral links, visitors, clicks, customers and conversion events: what tracking records.

Money columns hold whole minor units (``*_minor``); ``core.money`` converts.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone

from core import money
from merchants.models import Merchant, Program

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
    # Set when finance clears the flag by hand: the click then counts, and no later file of
    # the spool flags it again; flag_reason keeps what the rule had said.
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.CharField(max_length=150, blank=True, default="", db_default="")

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
    def rule(cls, *, type: str, customer_id: int, order_id: str, refund_id: str = "") -> tuple[str, str, str]:
        """The (kind, key, refund id) that makes an event of ``type`` unique: a registration by
        its customer (the row's id), a purchase by its order, a refund by its order and refund
        id. Both paths that store events (``events.event_ingest`` and the fast path,
        ``eventpath``) take their key from here."""
        if type == ConversionEvent.Type.REGISTRATION:
            return cls.Kind.REGISTRATION, str(customer_id), ""
        if type == ConversionEvent.Type.PURCHASE:
            return cls.Kind.PURCHASE, order_id, ""
        return cls.Kind.REFUND, order_id, refund_id

    @classmethod
    def of(cls, event: ConversionEvent) -> list[EventKey]:
        """The keys ``event`` holds."""
        kind, key, refund_id = cls.rule(
            type=event.type, customer_id=event.customer_id, order_id=event.order_id, refund_id=event.refund_id
        )
        keys = [cls(merchant_id=event.merchant_id, kind=kind, key=key, refund_id=refund_id)]
        if event.idempotency_key is not None:
            keys.append(cls(merchant_id=event.merchant_id, kind=cls.Kind.IDEMPOTENCY, key=event.idempotency_key))
        for key in keys:
            key.event = event
        return keys
