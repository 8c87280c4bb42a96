"""Promoters and the sponsor tree."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Upper
from django.utils import timezone

from merchants.models import RATE_VALIDATORS


class Promoter(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        INACTIVE = "inactive"
        # Joined through an invite link of a program that wants the merchant's approval:
        # earns nothing (payouts/rules.py treats every status but active as inactive).
        PENDING = "pending", "pending approval"

    class PayoutPlan(models.TextChoices):
        STANDARD = "standard"
        IMMEDIATE = "immediate"
        GUARANTEED = "guaranteed"

    merchant = models.ForeignKey("merchants.Merchant", on_delete=models.PROTECT, related_name="promoters")
    program = models.ForeignKey("merchants.Program", on_delete=models.PROTECT, related_name="promoters")
    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=200)
    sponsor = models.ForeignKey("self", on_delete=models.PROTECT, null=True, blank=True, related_name="recruits")
    referral_code = models.CharField(max_length=32, unique=True, editable=False)
    customer_id = models.CharField(max_length=255, null=True, blank=True, help_text="The promoter's own customer id at the merchant.")
    coupon_code = models.CharField(max_length=64, null=True, blank=True)
    commission_rate = models.DecimalField(
        max_digits=7, decimal_places=6, null=True, blank=True, validators=RATE_VALIDATORS,
        help_text="Replaces the program's purchase rates for this promoter when set.",
    )
    payout_plan = models.CharField(max_length=16, choices=PayoutPlan.choices, default=PayoutPlan.STANDARD)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="promoters",
        help_text="The login that opens this promoter's portal (one per program at most).",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(Upper("coupon_code"), "merchant", name="promoter_coupon_unique_per_merchant"),
            models.UniqueConstraint(fields=["program", "email"], name="promoter_email_unique_per_program"),
            models.CheckConstraint(condition=~Q(sponsor=models.F("id")), name="promoter_not_own_sponsor"),
            models.CheckConstraint(
                condition=Q(commission_rate__isnull=True) | Q(commission_rate__gte=0, commission_rate__lte=1),
                name="promoter_rate_in_range",
            ),
            models.CheckConstraint(condition=Q(status__in=["active", "inactive", "pending"]), name="promoter_status_valid"),
            models.UniqueConstraint(
                fields=["user", "program"], condition=Q(user__isnull=False), name="promoter_one_login_per_program"
            ),
        ]
        indexes = [models.Index(fields=["merchant", "customer_id"], name="promoter_customer")]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def own_rate(self) -> Decimal | None:
        return self.commission_rate


class PromoterApiToken(models.Model):
    """The key of a promoter's own read-only API: random, shown once, stored as a SHA-256
    digest. One per promoter; a new one replaces the old."""

    promoter = models.OneToOneField(Promoter, on_delete=models.CASCADE, related_name="api_token")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=16, editable=False, help_text="The key's first characters, to recognise it.")
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return f"{self.prefix}… of promoter {self.promoter_id}"


class PromoterRateHistory(models.Model):
    """The promoter's own commission rate from ``effective_from`` on (None: the program's
    rates). Written by ``promoters.services`` whenever the rate changes: the first change of
    a promoter also writes the rate it had until then, from its creation, so the rate in
    effect at any moment is the last row at or before it. A promoter without rows has had
    its current rate all along. Commissions read it at the event's ``received_at``: a new
    rate applies to events received from the change on, however late they are processed."""

    promoter = models.ForeignKey(Promoter, on_delete=models.CASCADE, related_name="rate_history")
    rate = models.DecimalField(max_digits=7, decimal_places=6, null=True, blank=True)
    effective_from = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["promoter_id", "effective_from", "id"]
        indexes = [models.Index(fields=["promoter", "effective_from"], name="promoter_rate_history_time")]

    def __str__(self) -> str:
        return f"rate of {self.promoter_id} from {self.effective_from}: {self.rate}"
