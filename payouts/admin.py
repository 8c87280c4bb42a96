from django import forms
from django.contrib import admin, messages

from core import money
from core.admin_actions import ReadOnlyAdmin as ReadOnly
from core.admin_actions import export_as_csv
from core.errors import ServiceValidationError

from . import webhooks
from .admin_finance import CommissionFinanceActions
from .models import Account, Basis, Commission, Entry, Journal, WebhookDelivery, WebhookEndpoint


@admin.register(Commission)
class CommissionAdmin(CommissionFinanceActions, ReadOnly):
    list_display = ("id", "event_id", "promoter", "kind", "level", "amount_display", "status", "available_at", "created_at")
    list_filter = ("status", "kind", "level", "currency")
    search_fields = ("=id", "=event__id", "promoter__name", "promoter__email")
    list_select_related = ("promoter",)
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = [export_as_csv, "approve_now", "reverse_with_reason"]

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


# --- Outbound webhooks --------------------------------------------------------------------


class WebhookEndpointForm(forms.ModelForm):
    """The URL and events pass the same checks as through the API."""

    url = forms.CharField(max_length=2000)

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "events", "active")

    def _service_clean(self, name, cleaner):
        try:
            return cleaner(self.cleaned_data.get(name))
        except ServiceValidationError as exc:
            raise forms.ValidationError(exc.fields.get(name) or exc.message)

    def clean_url(self):
        return self._service_clean("url", webhooks.clean_url)

    def clean_events(self):
        return self._service_clean("events", webhooks.clean_events)


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Endpoints are registered through the API (which shows the secret once); here their
    URL, events and active flag can be changed. The secret is never shown."""

    form = WebhookEndpointForm
    list_display = ("id", "merchant", "promoter", "url", "events", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("=id", "url", "merchant__name", "promoter__email")
    list_select_related = ("merchant", "promoter")
    readonly_fields = ("merchant", "promoter", "created_at", "updated_at")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnly):
    list_display = ("id", "endpoint", "event_type", "event_id", "status", "attempts", "last_status_code", "next_attempt_at", "created_at")
    list_filter = ("status", "event_type")
    search_fields = ("=id", "event_id", "endpoint__url")
    list_select_related = ("endpoint",)
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["replay"]

    def has_replay_permission(self, request):
        return request.user.has_perm("payouts.change_webhookendpoint")

    @admin.action(description="Replay the selected deliveries", permissions=["replay"])
    def replay(self, request, queryset):
        done, refused = 0, []
        for delivery in queryset.order_by("id"):
            try:
                webhooks.replay(delivery.pk)
                done += 1
            except ServiceValidationError as exc:
                refused.append(f"{delivery.pk}: {exc.message}")
        if done:
            self.message_user(request, f"{done} delivery(ies) queued again.", messages.SUCCESS)
        if refused:
            self.message_user(request, "Not replayed: " + "; ".join(refused), messages.WARNING)
