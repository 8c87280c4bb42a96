"""Insights: what promoters and channels are worth, and what the platform does about it.

- Dynamic commission rates: a program's ``RateRule`` turns each promoter's LTV/CAC into a
  rate change within limits; every change is a ``RateChange`` audit row (and can be
  reverted); ``RateFreeze`` keeps finance's hand on a promoter's rate.
- Promoter segments: ``SegmentModel`` is a versioned, trained clustering with its metrics
  (one live per merchant, the others kept for roll-back); ``PromoterSegment`` the segment
  each promoter fell in; ``SegmentPlan`` the payout plan a segment maps to, and
  ``PlanChange`` the audit row of each plan it changed.
- Content intelligence: promoters register their ``Content``; an ``InsightRun`` keeps what
  a job found (keywords, formats, posting times, LTV/CAC tables) for the pages; the
  ``Material`` drafts written from the winners go to promoters as ``MaterialAssignment``s,
  each with a tracking link of its own, so their conversions close the loop.

Insights change a promoter's rate or plan only through the ``promoters`` services, with an
audit row here.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from affiliate.models import ReferralLink
from merchants.models import Merchant, Program
from promoters.models import Promoter

RATE = {"max_digits": 7, "decimal_places": 6}


class RateRule(models.Model):
    """How a program's rates follow LTV/CAC: a promoter with at least ``min_customers`` new
    customers in the last ``window_days`` whose LTV/CAC is at least ``raise_at`` gets
    ``step`` more (up to ``cap``); at most ``lower_at``, ``step`` less (down to ``floor``);
    not again within ``cooldown_days`` of the last change."""

    program = models.OneToOneField(Program, on_delete=models.CASCADE, related_name="rate_rule")
    active = models.BooleanField(default=True)
    window_days = models.PositiveIntegerField(default=90)
    raise_at = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("3.00"))
    lower_at = models.DecimalField(max_digits=8, decimal_places=2, default=Decimal("1.00"))
    min_customers = models.PositiveIntegerField(default=10)
    step = models.DecimalField(**RATE, default=Decimal("0.01"))
    floor = models.DecimalField(**RATE, default=Decimal("0.02"))
    cap = models.DecimalField(**RATE, default=Decimal("0.25"))
    cooldown_days = models.PositiveIntegerField(default=30)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(lower_at__lt=models.F("raise_at")), name="raterule_lower_below_raise"),
            models.CheckConstraint(condition=Q(floor__gte=0, cap__lte=1, floor__lte=models.F("cap")), name="raterule_limits"),
            models.CheckConstraint(condition=Q(step__gt=0, step__lte=1), name="raterule_step"),
        ]

    def __str__(self) -> str:
        return f"rate rule of {self.program}"


class RateFreeze(models.Model):
    """Finance's hold on a promoter's rate: the daily job leaves it alone."""

    promoter = models.OneToOneField(Promoter, on_delete=models.CASCADE, related_name="rate_freeze")
    reason = models.CharField(max_length=200, blank=True)
    frozen_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"rate of {self.promoter_id} frozen"


class RateChange(models.Model):
    """One change of a promoter's rate: what it was, what it became, and why."""

    class Kind(models.TextChoices):
        RAISE = "raise"
        LOWER = "lower"
        REVERT = "revert"

    program = models.ForeignKey(Program, on_delete=models.PROTECT, related_name="rate_changes")
    promoter = models.ForeignKey(Promoter, on_delete=models.PROTECT, related_name="rate_changes")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    old_rate = models.DecimalField(**RATE, null=True, blank=True, help_text="Empty: the program's rates applied.")
    new_rate = models.DecimalField(**RATE, null=True, blank=True)
    metrics = models.JSONField(default=dict, help_text="LTV, CAC, LTV/CAC, customers: the figures the decision used.")
    rule = models.JSONField(default=dict, help_text="The rule's settings at the time.")
    reason = models.CharField(max_length=300)
    reverts = models.OneToOneField("self", null=True, blank=True, on_delete=models.PROTECT, related_name="reverted_by")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    notified_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["promoter", "created_at"], name="ratechange_promoter_time")]

    def __str__(self) -> str:
        return f"{self.kind} of {self.promoter_id}: {self.old_rate} -> {self.new_rate}"


class SegmentModel(models.Model):
    """A trained clustering of a merchant's promoters: a versioned artefact with its metrics."""

    class Status(models.TextChoices):
        LIVE = "live"
        RETIRED = "retired"
        FAILED = "failed"

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="segment_models")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices)
    clusters = models.PositiveSmallIntegerField(default=0)
    silhouette = models.FloatField(null=True, blank=True)
    metrics = models.JSONField(default=dict, help_text="Silhouette per k tried, sizes, inertia, promoters trained on.")
    features = models.JSONField(default=list, help_text="Feature names, in column order.")
    scaler = models.JSONField(default=dict, help_text="Mean and scale of each feature.")
    centroids = models.JSONField(default=list, help_text="Scaled centroids, one list per cluster.")
    names = models.JSONField(default=dict, help_text="Segment name of each cluster number.")
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["merchant", "version"], name="segmentmodel_version_unique"),
            models.UniqueConstraint(fields=["merchant"], condition=Q(status="live"), name="segmentmodel_one_live"),
        ]

    def __str__(self) -> str:
        return f"segments v{self.version} ({self.status})"


class PromoterSegment(models.Model):
    model = models.ForeignKey(SegmentModel, on_delete=models.CASCADE, related_name="assignments")
    promoter = models.ForeignKey(Promoter, on_delete=models.CASCADE, related_name="segments")
    segment = models.CharField(max_length=32)
    features = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model", "promoter"], name="promotersegment_unique")]

    def __str__(self) -> str:
        return f"{self.promoter_id}: {self.segment}"


class SegmentPlan(models.Model):
    """The payout plan a merchant's segment maps to (stars: immediate; novices: guaranteed)."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="segment_plans")
    segment = models.CharField(max_length=32)
    payout_plan = models.CharField(max_length=16, choices=Promoter.PayoutPlan.choices)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["merchant", "segment"], name="segmentplan_unique")]

    def __str__(self) -> str:
        return f"{self.segment} -> {self.payout_plan}"


class PlanChange(models.Model):
    """One payout plan changed because of a promoter's segment."""

    promoter = models.ForeignKey(Promoter, on_delete=models.PROTECT, related_name="plan_changes")
    model = models.ForeignKey(SegmentModel, on_delete=models.PROTECT, related_name="plan_changes")
    segment = models.CharField(max_length=32)
    old_plan = models.CharField(max_length=16)
    new_plan = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.promoter_id}: {self.old_plan} -> {self.new_plan}"


class Content(models.Model):
    """A piece of content a promoter published, with the link it carries."""

    class Format(models.TextChoices):
        ARTICLE = "article"
        VIDEO = "video"
        SOCIAL = "social_post"
        EMAIL = "email"

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="contents")
    promoter = models.ForeignKey(Promoter, on_delete=models.CASCADE, related_name="contents")
    link = models.ForeignKey(ReferralLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="contents")
    title = models.CharField(max_length=300)
    text = models.TextField(blank=True)
    format = models.CharField(max_length=16, choices=Format.choices)
    channel = models.CharField(max_length=64, blank=True)
    published_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["merchant", "published_at"], name="content_merchant_time")]

    def __str__(self) -> str:
        return self.title


class Product(models.Model):
    """A product of the merchant's that promotional material can feature."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="products")
    name = models.CharField(max_length=200)
    url = models.URLField(max_length=500)
    description = models.TextField(blank=True)
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class InsightRun(models.Model):
    """What one run of an insight job found, kept for the pages (and for comparison)."""

    class Kind(models.TextChoices):
        VALUE = "value"  # LTV, CAC and LTV/CAC by promoter and channel
        RATES = "rates"
        SEGMENTS = "segments"
        CONTENT = "content"

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="insight_runs")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    window_days = models.PositiveIntegerField()
    results = models.JSONField(default=dict)
    seconds = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["merchant", "kind", "created_at"], name="insightrun_latest")]

    def __str__(self) -> str:
        return f"{self.kind} run {self.pk}"


class Material(models.Model):
    """A promotional draft written from what converts: a headline and copy, one variant."""

    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="materials")
    run = models.ForeignKey(InsightRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="materials")
    product = models.ForeignKey(Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="materials")
    headline = models.CharField(max_length=300)
    body = models.TextField()
    format = models.CharField(max_length=16, choices=Content.Format.choices)
    topics = models.JSONField(default=list)
    variant = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.headline


class MaterialAssignment(models.Model):
    """A draft handed to a promoter, with a tracking link of its own."""

    material = models.ForeignKey(Material, on_delete=models.CASCADE, related_name="assignments")
    promoter = models.ForeignKey(Promoter, on_delete=models.CASCADE, related_name="materials")
    link = models.ForeignKey(ReferralLink, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["material", "promoter"], name="materialassignment_unique")]

    def __str__(self) -> str:
        return f"material {self.material_id} to {self.promoter_id}"
