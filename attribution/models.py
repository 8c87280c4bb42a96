"""What attribution decided for each conversion: its touchpoints and the promoters' credits."""

from django.db import models
from django.db.models import Q


class Touchpoint(models.Model):
    """One touchpoint of a conversion, as judged when the event was computed."""

    class Kind(models.TextChoices):
        CLICK = "click"
        COUPON = "coupon"

    event = models.ForeignKey("affiliate.ConversionEvent", on_delete=models.PROTECT, related_name="touchpoints")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=8, choices=Kind.choices)
    promoter = models.ForeignKey("promoters.Promoter", on_delete=models.PROTECT, related_name="+")
    click = models.ForeignKey("affiliate.Click", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    link = models.ForeignKey("affiliate.ReferralLink", on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    channel = models.CharField(max_length=100, blank=True, default="")
    at = models.DateTimeField()
    weight = models.DecimalField(max_digits=14, decimal_places=12, help_text="Rounded for display; the split used exact fractions.")
    revenue_minor = models.BigIntegerField(help_text="This touchpoint's part of its promoter's revenue.")

    class Meta:
        ordering = ["event", "position"]
        constraints = [models.UniqueConstraint(fields=["event", "position"], name="touchpoint_position_unique")]

    def __str__(self) -> str:
        return f"{self.event_id}#{self.position}"


class Credit(models.Model):
    """A promoter's part of a conversion: the weight of their touchpoints and the revenue."""

    event = models.ForeignKey("affiliate.ConversionEvent", on_delete=models.PROTECT, related_name="credits")
    promoter = models.ForeignKey("promoters.Promoter", on_delete=models.PROTECT, related_name="credits")
    weight = models.DecimalField(max_digits=14, decimal_places=12)
    weight_exact = models.CharField(max_length=200, help_text="The exact weight as a fraction, p/q.")
    revenue_minor = models.BigIntegerField()
    currency = models.CharField(max_length=3)
    first_position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["event", "first_position"]
        constraints = [
            models.UniqueConstraint(fields=["event", "promoter"], name="credit_one_per_promoter"),
            models.CheckConstraint(condition=Q(weight__gt=0), name="credit_weight_positive"),
        ]
        indexes = [models.Index(fields=["promoter", "event"], name="credit_promoter_event")]

    def __str__(self) -> str:
        return f"{self.promoter_id} on {self.event_id}"
