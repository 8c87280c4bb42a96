from django.contrib import admin, messages

from core import money
from core.admin_actions import ReadOnlyAdmin, export_as_csv

from . import events, fraud
from .models import Click, ConversionEvent, Customer, CustomerVisitor, ReferralLink, Visitor


@admin.register(ReferralLink)
class ReferralLinkAdmin(admin.ModelAdmin):
    actions = [export_as_csv]
    list_display = ("code", "promoter", "program", "channel", "destination_url", "created_at")
    list_filter = ("channel",)
    search_fields = ("code", "promoter__email", "destination_url")
    list_select_related = ("promoter", "program")
    raw_id_fields = ("promoter", "program", "merchant")
    readonly_fields = ("code", "created_at")


@admin.register(Visitor)
class VisitorAdmin(ReadOnlyAdmin):
    list_display = ("id", "first_seen_at")
    search_fields = ("id",)


# Clearing a fraud flag decides money: the people who may approve commissions may do it.
CLEAR_FRAUD_PERMISSION = "payouts.approve_commission"


class ClearFraudMixin:
    def has_clear_fraud_permission(self, request):
        return request.user.has_perm(CLEAR_FRAUD_PERMISSION)


@admin.register(Click)
class ClickAdmin(ClearFraudMixin, ReadOnlyAdmin):
    list_display = ("id", "created_at", "link", "promoter", "visitor_id", "is_fraud", "is_duplicate", "flag_reason", "cleared_by")
    list_filter = ("is_fraud", "is_duplicate")
    search_fields = ("=id", "link__code")
    list_select_related = ("link", "promoter")
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = [export_as_csv, "clear_fraud"]

    @admin.action(description="Clear the fraud flag", permissions=["clear_fraud"])
    def clear_fraud(self, request, queryset):
        ids = list(queryset.filter(is_fraud=True).values_list("pk", flat=True))
        done = fraud.clicks_clear(click_ids=ids, by=request.user.get_username())
        self.message_user(
            request,
            f"{done} click(s) cleared: they count for conversions processed from now on; "
            "conversions already credited are not computed again.",
            messages.SUCCESS,
        )


class CustomerVisitorInline(admin.TabularInline):
    model = CustomerVisitor
    extra = 0
    can_delete = False
    readonly_fields = ("visitor", "click", "bound_at")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Customer)
class CustomerAdmin(ReadOnlyAdmin):
    list_display = ("external_id", "merchant", "stage", "created_at")
    list_filter = ("stage",)
    search_fields = ("external_id",)
    list_select_related = ("merchant",)
    inlines = [CustomerVisitorInline]


@admin.register(ConversionEvent)
class ConversionEventAdmin(ClearFraudMixin, ReadOnlyAdmin):
    list_display = (
        "id", "type", "stage", "status", "amount_display", "order_id", "refund_id", "customer", "occurred_at", "received_at",
        "is_fraud", "flag_reason", "cleared_by", "rejected_by", "attempts",
    )
    list_filter = ("is_fraud", "type", "stage", "status", "source")
    readonly_fields = ("last_error",)
    actions = [export_as_csv, "clear_fraud", "reject_fraud", "process_again"]

    def _review(self, request, queryset, decision: str) -> int:
        """Each flagged conversion decided in its own transaction, once."""
        return sum(
            1
            for pk in queryset.filter(is_fraud=True, rejected_at__isnull=True).order_by("pk").values_list("pk", flat=True)
            if fraud.conversion_review(event_id=pk, decision=decision, by=request.user.get_username())
        )

    @admin.action(description="Clear the fraud flag (its held commissions follow the usual rules)", permissions=["clear_fraud"])
    def clear_fraud(self, request, queryset):
        done = self._review(request, queryset, "clear")
        self.message_user(
            request, f"{done} conversion(s) cleared: their held commissions are pending or approved now.", messages.SUCCESS
        )

    @admin.action(description="Reject the flagged conversion (its held commissions reversed)", permissions=["clear_fraud"])
    def reject_fraud(self, request, queryset):
        done = self._review(request, queryset, "reject")
        self.message_user(
            request, f"{done} conversion(s) rejected: each held commission is reversed in full; nothing is paid.", messages.SUCCESS
        )

    @admin.action(description="Process again (failed events)", permissions=["clear_fraud"])
    def process_again(self, request, queryset):
        ids = events.events_retry(event_ids=queryset.filter(status=ConversionEvent.Status.FAILED).values_list("pk", flat=True))
        self.message_user(request, f"{len(ids)} failed event(s) queued again and processed.", messages.SUCCESS)
    search_fields = ("order_id", "customer__external_id", "idempotency_key")
    list_select_related = ("customer",)
    date_hierarchy = "occurred_at"
    show_full_result_count = False

    @admin.display(description="amount")
    def amount_display(self, obj):
        return money.format_minor(obj.amount_minor, obj.currency)
