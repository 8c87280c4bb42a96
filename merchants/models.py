"""Merchants, their programs and their staff: the ground floor every other app stands on.

The tables keep the names they were created with (``affiliate_merchant``,
``affiliate_program``, ``promoters_merchantmember``): the models moved, the data did not.
Money columns hold whole minor units (``*_minor``); ``core.money`` converts.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from core import money
from core.crypto import EncryptedTextField


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
        db_table = "affiliate_merchant"
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
        db_table = "affiliate_program"
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


class MerchantMember(models.Model):
    """A login that works for a merchant: opens that merchant's pages (never a promoter's).

    It lives with the merchant, at the bottom of the house: every app may ask who works for a
    merchant; nothing here knows of promoters.
    """

    class Role(models.TextChoices):
        OWNER = "owner"
        STAFF = "staff"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="merchant_memberships")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="members")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.STAFF)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        db_table = "promoters_merchantmember"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "merchant"], name="merchant_member_once"),
            models.CheckConstraint(condition=Q(role__in=["owner", "staff"]), name="merchant_member_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} at merchant {self.merchant_id} ({self.role})"
