from django.contrib import admin, messages
from django.db import transaction

from core.admin_actions import export_as_csv
from core.errors import ServiceValidationError

from . import services
from .models import Promoter


@admin.action(description="Approve the selected promoters awaiting approval")
def approve_pending(modeladmin, request, queryset):
    approved = 0
    for promoter in queryset.filter(status=Promoter.Status.PENDING).order_by("id"):
        try:
            services.promoter_approve(promoter=promoter)
            approved += 1
        except ServiceValidationError:
            continue  # approved or changed meanwhile
    modeladmin.message_user(request, f"Approved {approved} promoter(s).", messages.SUCCESS)


@admin.register(Promoter)
class PromoterAdmin(admin.ModelAdmin):
    actions = [export_as_csv, approve_pending]
    list_display = ("id", "name", "email", "program", "sponsor", "status", "payout_plan", "referral_code", "coupon_code")
    list_filter = ("status", "payout_plan", "program")
    search_fields = ("name", "email", "referral_code", "coupon_code", "customer_id")
    list_select_related = ("program", "sponsor")
    raw_id_fields = ("user",)
    # The tree and the coupon change through the API, whose service checks loops and clashes.
    readonly_fields = ("merchant", "program", "sponsor", "coupon_code", "referral_code", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False

    def save_model(self, request, obj, form, change):
        """A rate changed here is recorded in the rate history like any other change, in the
        same transaction, so that it applies to events received from now on only."""
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            if change and "commission_rate" in form.changed_data:
                services.promoter_rate_history_record(promoter=obj, old_rate=form.initial.get("commission_rate"))
