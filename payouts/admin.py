from django.contrib import admin

from affiliate import money

from .models import Account, Basis, Commission, Entry, Journal


class ReadOnly(admin.ModelAdmin):
    """The ledger is append-only: nothing here is edited by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Commission)
class CommissionAdmin(ReadOnly):
    list_display = ("id", "event_id", "promoter", "kind", "level", "amount_display", "status", "available_at", "created_at")
    list_filter = ("status", "kind", "level", "currency")
    search_fields = ("=id", "=event__id", "promoter__name", "promoter__email")
    list_select_related = ("promoter",)
    date_hierarchy = "created_at"
    show_full_result_count = False

    @admin.display(description="amount")
    def amount_display(self, obj):
        return money.format_minor(obj.amount_minor, obj.currency)


@admin.register(Account)
class AccountAdmin(ReadOnly):
    list_display = ("id", "promoter", "kind", "currency", "balance_display")
    list_filter = ("kind", "currency")
    search_fields = ("promoter__name", "promoter__email")
    list_select_related = ("promoter",)

    @admin.display(description="balance")
    def balance_display(self, obj):
        return money.format_minor(obj.balance_minor, obj.currency) if obj.tracks_balance else "(summed on demand)"


class EntryInline(admin.TabularInline):
    model = Entry
    extra = 0
    can_delete = False
    readonly_fields = ("account", "amount_minor", "created_at")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Journal)
class JournalAdmin(ReadOnly):
    list_display = ("id", "kind", "commission_id", "memo", "created_at")
    list_filter = ("kind",)
    search_fields = ("=id", "=commission__id")
    inlines = [EntryInline]
    show_full_result_count = False


@admin.register(Basis)
class BasisAdmin(ReadOnly):
    list_display = ("event_id", "created_at")
    search_fields = ("=event__id",)
