from django.contrib import admin

from affiliate.admin_actions import export_as_csv

from .models import Promoter


@admin.register(Promoter)
class PromoterAdmin(admin.ModelAdmin):
    actions = [export_as_csv]
    list_display = ("id", "name", "email", "program", "sponsor", "status", "payout_plan", "referral_code", "coupon_code")
    list_filter = ("status", "payout_plan", "program")
    search_fields = ("name", "email", "referral_code", "coupon_code", "customer_id")
    list_select_related = ("program", "sponsor")
    # The tree and the coupon change through the API, whose service checks loops and clashes.
    readonly_fields = ("merchant", "program", "sponsor", "coupon_code", "referral_code", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False
