from django.contrib import admin

from core.admin_actions import export_as_csv

from .models import Merchant, MerchantMember, Program


@admin.register(Merchant)
class MerchantAdmin(admin.ModelAdmin):
    actions = [export_as_csv]
    list_display = ("id", "name", "domain_list", "require_signature", "api_key_prefix", "created_at")
    search_fields = ("name",)
    list_filter = ("require_signature",)
    readonly_fields = ("api_key_prefix", "created_at")
    exclude = ("api_key_hash", "postback_token_hash", "postback_secret")

    @admin.display(description="domains")
    def domain_list(self, obj):
        return ", ".join(obj.domains)

    def has_add_permission(self, request):
        return False  # keys are shown once: create merchants with `manage.py create_merchant`


@admin.register(Program)
class ProgramAdmin(admin.ModelAdmin):
    actions = [export_as_csv]
    list_display = ("id", "name", "merchant", "currency", "attribution_model", "first_purchase_rate", "repeat_purchase_rate", "hold_days", "join_requires_approval", "is_default")
    list_filter = ("attribution_model", "currency", "is_default", "join_requires_approval")
    search_fields = ("name", "merchant__name")
    list_select_related = ("merchant",)
    readonly_fields = ("is_default", "created_at", "updated_at")


@admin.register(MerchantMember)
class MerchantMemberAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "merchant", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "merchant__name")
    list_select_related = ("user", "merchant")
    raw_id_fields = ("user", "merchant")
