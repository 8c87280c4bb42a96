from django.contrib import admin

from . import money
from .admin_actions import ReadOnlyAdmin, export_as_csv
from .models import Click, ConversionEvent, Customer, CustomerVisitor, Merchant, Program, ReferralLink, Visitor


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


@admin.register(Click)
class ClickAdmin(ReadOnlyAdmin):
    list_display = ("id", "created_at", "link", "promoter", "visitor_id", "is_fraud", "is_duplicate", "flag_reason")
    list_filter = ("is_fraud", "is_duplicate")
    search_fields = ("=id", "link__code")
    list_select_related = ("link", "promoter")
    date_hierarchy = "created_at"
    show_full_result_count = False


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
class ConversionEventAdmin(ReadOnlyAdmin):
    list_display = ("id", "type", "stage", "status", "amount_display", "order_id", "refund_id", "customer", "occurred_at", "received_at")
    list_filter = ("type", "stage", "status", "source")
    search_fields = ("order_id", "customer__external_id", "idempotency_key")
    list_select_related = ("customer",)
    date_hierarchy = "occurred_at"
    show_full_result_count = False

    @admin.display(description="amount")
    def amount_display(self, obj):
        return money.format_minor(obj.amount_minor, obj.currency)
