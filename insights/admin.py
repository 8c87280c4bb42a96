"""Finance's view of insights: rate rules are edited here; freezes, rate changes (with a
revert action) and the other insight records are read-only."""

from django.contrib import admin, messages

from core.errors import ServiceValidationError

from . import rates
from .models import (
    Content,
    InsightRun,
    Material,
    MaterialAssignment,
    PlanChange,
    Product,
    PromoterSegment,
    RateChange,
    RateFreeze,
    RateRule,
    SegmentModel,
    SegmentPlan,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RateRule)
class RateRuleAdmin(admin.ModelAdmin):
    list_display = ("program", "active", "window_days", "raise_at", "lower_at", "min_customers", "step", "floor", "cap", "cooldown_days")
    list_filter = ("active",)
    raw_id_fields = ("program",)


@admin.register(RateFreeze)
class RateFreezeAdmin(ReadOnlyAdmin):
    list_display = ("promoter", "reason", "frozen_by", "created_at")
    list_select_related = ("promoter", "frozen_by")
    search_fields = ("promoter__name", "promoter__email")


@admin.action(description="Revert the selected rate changes", permissions=["revert"])
def revert_changes(modeladmin, request, queryset):
    reverted, refused = 0, []
    for change in queryset.order_by("-id"):  # the latest first: an earlier one may become revertible
        try:
            rates.rate_change_revert(change=change, actor=request.user)
            reverted += 1
        except ServiceValidationError as exc:
            refused.append(f"change {change.pk}: {' '.join(m for ms in exc.fields.values() for m in ms)}")
    if reverted:
        modeladmin.message_user(request, f"Reverted {reverted} change(s).", messages.SUCCESS)
    for line in refused:
        modeladmin.message_user(request, line, messages.ERROR)


@admin.register(RateChange)
class RateChangeAdmin(ReadOnlyAdmin):
    actions = [revert_changes]
    list_display = ("id", "promoter", "program", "kind", "old_rate", "new_rate", "reason", "reverts", "actor", "notified_at", "created_at")
    list_filter = ("kind", "program")
    list_select_related = ("promoter", "program", "actor")
    search_fields = ("promoter__name", "promoter__email", "reason")

    def has_revert_permission(self, request):
        return request.user.has_perm("insights.change_ratechange")


@admin.register(SegmentModel)
class SegmentModelAdmin(ReadOnlyAdmin):
    list_display = ("merchant", "version", "status", "clusters", "silhouette", "created_at")
    list_filter = ("status",)


@admin.register(PromoterSegment)
class PromoterSegmentAdmin(ReadOnlyAdmin):
    list_display = ("promoter", "model", "segment")
    list_filter = ("segment",)
    list_select_related = ("promoter", "model")


@admin.register(SegmentPlan)
class SegmentPlanAdmin(ReadOnlyAdmin):
    list_display = ("merchant", "segment", "payout_plan")


@admin.register(PlanChange)
class PlanChangeAdmin(ReadOnlyAdmin):
    list_display = ("promoter", "model", "segment", "old_plan", "new_plan", "created_at")
    list_select_related = ("promoter", "model")


@admin.register(Content)
class ContentAdmin(ReadOnlyAdmin):
    list_display = ("title", "promoter", "format", "channel", "published_at")
    list_filter = ("format",)
    list_select_related = ("promoter",)


@admin.register(Product)
class ProductAdmin(ReadOnlyAdmin):
    list_display = ("name", "merchant", "url", "active")


@admin.register(InsightRun)
class InsightRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "merchant", "kind", "window_days", "seconds", "created_at")
    list_filter = ("kind",)


@admin.register(Material)
class MaterialAdmin(ReadOnlyAdmin):
    list_display = ("headline", "merchant", "format", "variant", "created_at")


@admin.register(MaterialAssignment)
class MaterialAssignmentAdmin(ReadOnlyAdmin):
    list_display = ("material", "promoter", "link", "created_at")
    list_select_related = ("material", "promoter")
