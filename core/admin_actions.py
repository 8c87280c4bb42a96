"""Admin actions every back-office list shares: "Export selected as CSV".

Lives in ``affiliate`` (the bottom of the stack) so that every app's admin can use it without
importing a downstream app."""

from __future__ import annotations

import csv
import html
from datetime import UTC, date, datetime

from django.contrib import admin
from django.contrib.admin.utils import label_for_field, lookup_field
from django.db import models
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.html import strip_tags
from django.utils.safestring import SafeString
from django.utils.text import slugify

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    """A value as a spreadsheet should read it. Text that a spreadsheet would run as a formula
    (a promoter can name themselves ``=HYPERLINK(...)``) is prefixed with an apostrophe;
    negative numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return (value.astimezone(UTC) if timezone.is_aware(value) else value).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ", ".join(csv_cell(v) for v in value)
    # HTML made by a display method is read as its text; anything else is kept as it is.
    text = html.unescape(strip_tags(value)) if isinstance(value, SafeString) else str(value)
    if text.startswith(FORMULA_STARTS) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() == text


def _value(name, obj, modeladmin):
    field, attr, value = lookup_field(name, obj, modeladmin)
    if field is not None and getattr(field, "flatchoices", None) and not isinstance(field, models.ForeignKey):
        return dict(field.flatchoices).get(value, value)
    return value


class _Echo:
    def write(self, value):
        return value


def csv_columns(modeladmin, request) -> list:
    return [name for name in modeladmin.get_list_display(request) if name != "action_checkbox"]


def csv_rows(modeladmin, request, queryset):
    """The header (the changelist's column titles), then one row per object, in the list's order."""
    columns = csv_columns(modeladmin, request)
    yield [str(label_for_field(name, modeladmin.model, modeladmin)) for name in columns]
    related = modeladmin.get_list_select_related(request)
    if related is True:
        queryset = queryset.select_related()
    elif related:
        queryset = queryset.select_related(*related)
    ordering = modeladmin.get_ordering(request) or modeladmin.model._meta.ordering or ["pk"]
    for obj in queryset.order_by(*ordering).iterator(chunk_size=2000):
        yield [csv_cell(_value(name, obj, modeladmin)) for name in columns]


@admin.action(description="Export selected as CSV", permissions=["view"])
def export_as_csv(modeladmin, request, queryset):
    """Stream the selected rows with the changelist's columns (display methods included)."""
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse(
        (writer.writerow(row) for row in csv_rows(modeladmin, request, queryset)), content_type="text/csv; charset=utf-8"
    )
    name = slugify(modeladmin.model._meta.verbose_name_plural) or "export"
    response["Content-Disposition"] = f'attachment; filename="{name}-{timezone.now():%Y%m%d-%H%M%S}.csv"'
    return response


class ReadOnlyAdmin(admin.ModelAdmin):
    """Facts and money are never edited by hand: view and export only."""

    actions = [export_as_csv]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
