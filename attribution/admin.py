from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from affiliate.models import ConversionEvent
from core import money
from core.admin_actions import ReadOnlyAdmin as ReadOnly

from .models import Credit, Touchpoint
from .selectors import event_journey


@admin.register(Touchpoint)
class TouchpointAdmin(ReadOnly):
    list_display = ("event_link", "position", "at", "kind", "promoter", "channel", "link", "weight", "revenue")
    list_filter = ("kind", "channel")
    search_fields = ("=event__id", "promoter__name", "promoter__email")
    list_select_related = ("promoter", "link", "event")
    show_full_result_count = False

    @admin.display(description="event")
    def event_link(self, obj):
        url = reverse("admin:attribution-explorer", args=[obj.event_id])
        return format_html('<a href="{}">event {}</a>', url, obj.event_id)

    @admin.display(description="revenue")
    def revenue(self, obj):
        return money.format_minor(obj.revenue_minor, obj.event.currency)

    def get_urls(self):
        view = self.admin_site.admin_view(self.explorer)
        return [
            path("explorer/", view, name="attribution-explorer-search"),
            path("explorer/<int:event_id>/", view, name="attribution-explorer"),
            *super().get_urls(),
        ]

    def explorer(self, request, event_id=None):
        """For any event: the journey's touchpoints with the weight and money each got."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        event_id = event_id or request.GET.get("event")
        journey = None
        if event_id and str(event_id).isdigit():
            event = get_object_or_404(ConversionEvent.objects.select_related("customer"), pk=int(event_id))
            journey = event_journey(event)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Attribution of event {event_id}" if journey else "Attribution explorer",
            "journey": journey,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/attribution/explorer.html", context)


@admin.register(Credit)
class CreditAdmin(ReadOnly):
    list_display = ("event_id", "promoter", "weight", "revenue")
    search_fields = ("=event__id", "promoter__name")
    list_select_related = ("promoter",)
    show_full_result_count = False

    @admin.display(description="revenue")
    def revenue(self, obj):
        return money.format_minor(obj.revenue_minor, obj.currency)
