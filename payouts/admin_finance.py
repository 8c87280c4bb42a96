"""The finance back office in Django admin: batches and their lines, statements, payout
policies and methods, adjustments, and the commission actions (approve now, reverse with a
reason). Every write goes through a service; what a user may do is their permissions (see
``finance_group``)."""

from __future__ import annotations

import logging

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, Sum
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from core import money
from core.admin_actions import export_as_csv
from core.errors import ServiceValidationError
from merchants.models import Merchant, Program

from . import batches, exports, finance, policies, services, statements
from .methods import mask_iban
from .models import (
    Adjustment,
    MonthClose,
    PayoutBatch,
    PayoutLine,
    PayoutMethod,
    PayoutMethodChange,
    PayoutPolicy,
    Statement,
)

logger = logging.getLogger(__name__)

MAX_REVERSALS_AT_ONCE = 500


class ReadOnlyAdmin(admin.ModelAdmin):
    actions = [export_as_csv]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _money(minor, currency):
    return money.format_minor(minor or 0, currency)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=250, widget=forms.TextInput(attrs={"size": 80}))

    def clean_reason(self):
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError("Give a reason.")
        return reason


def ask_reason(modeladmin, request, queryset, *, action: str, title: str, intro: str, submit: str):
    """The page between choosing an action and doing it: shows the rows, asks for a reason.
    Returns the reason once the form is posted valid, else the page to show."""
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        return form.cleaned_data["reason"]
    shown = 100
    objects = list(queryset.order_by("pk")[: shown + 1])
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "submit": submit,
        "form": form,
        "objects": objects[:shown],
        "more": max(queryset.count() - shown, 0) if len(objects) > shown else 0,
        "action": action,
        # The selection as the changelist posted it, sent back with the reason.
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, "admin/payouts/action_reason.html", context)


# --- Commissions: approve now, reverse with a reason ---------------------------------------


class CommissionFinanceActions:
    """Mixed into the (read-only) commission admin."""

    def has_approve_permission(self, request):
        return request.user.has_perm("payouts.approve_commission")

    def has_reverse_permission(self, request):
        return request.user.has_perm("payouts.reverse_commission")

    @admin.action(description="Approve now (end the hold)", permissions=["approve"])
    def approve_now(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        approved = services.commissions_approve(commission_ids=ids)
        if approved:
            self.message_user(request, f"{approved} commission(s) approved: their amount is now available.", messages.SUCCESS)
        if len(ids) - approved:
            self.message_user(
                request, f"{len(ids) - approved} commission(s) were not pending and were left as they are.", messages.WARNING
            )

    @admin.action(description="Reverse with a reason…", permissions=["reverse"])
    def reverse_with_reason(self, request, queryset):
        count = queryset.count()
        if count > MAX_REVERSALS_AT_ONCE:
            self.message_user(request, f"Reverse at most {MAX_REVERSALS_AT_ONCE} commissions at once.", messages.ERROR)
            return None
        asked = ask_reason(
            self, request, queryset, action="reverse_with_reason", title="Reverse commissions",
            intro="Each commission is reversed in full (what is left of it), through the ledger: on hold with it, or "
            "against available when it was approved or paid. A commission is reversed by hand only once.",
            submit="Reverse them",
        )
        if not isinstance(asked, str):
            return asked
        by = request.user.get_username()
        done = []
        for commission_id in queryset.order_by("pk").values_list("pk", flat=True):
            try:
                reversal = finance.commission_reverse(commission_id=commission_id, reason=asked, by=by)
            except finance.FinanceError as exc:
                self.message_user(request, f"Commission {commission_id} not reversed: {exc}", messages.WARNING)
            else:
                done.append(f"{commission_id} (reversal {reversal.pk})")
        if done:
            self.message_user(request, f"Reversed {len(done)} commission(s): {', '.join(done)}.", messages.SUCCESS)
        return None


# --- Batches and lines -------------------------------------------------------------------


class LinesFormSet(forms.BaseInlineFormSet):
    """The batch page shows its first lines; the line list shows them all."""

    LIMIT = 200

    def get_queryset(self):
        if not hasattr(self, "_first_lines"):
            self._first_lines = super().get_queryset()[: self.LIMIT]
        return self._first_lines


class PayoutLineInline(admin.TabularInline):
    model = PayoutLine
    formset = LinesFormSet
    extra = 0
    can_delete = False
    fields = ("id", "promoter", "amount_display", "method_kind", "status", "failure_reason", "settled_at")
    readonly_fields = fields
    verbose_name_plural = f"lines (the first {LinesFormSet.LIMIT})"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="amount")
    def amount_display(self, line):
        return _money(line.amount_minor, line.currency)

    @admin.display(description="method")
    def method_kind(self, line):
        return line.method.get("kind", "manual")


class BuildBatchForm(forms.Form):
    merchant = forms.ModelChoiceField(queryset=Merchant.objects.order_by("name", "pk"))
    currency = forms.ChoiceField(choices=())

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        currencies = sorted(set(Program.objects.values_list("currency", flat=True)))
        self.fields["currency"].choices = [(c, c) for c in currencies]


EXPORTS = {
    "csv": ("text/csv; charset=utf-8", "csv"),
    "paypal": ("application/json", "json"),
    "sepa": ("application/xml", "xml"),
}


@admin.register(PayoutBatch)
class PayoutBatchAdmin(ReadOnlyAdmin):
    list_display = ("id", "merchant", "currency", "period", "status", "line_count", "total_display", "created_at", "closed_at")
    list_filter = ("status", "currency", "merchant")
    search_fields = ("=id", "period", "merchant__name")
    list_select_related = ("merchant",)
    date_hierarchy = "created_at"
    fields = ("merchant", "currency", "period", "status", "created_at", "closed_at", "totals", "downloads")
    readonly_fields = fields
    inlines = [PayoutLineInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(line_count=Count("lines"), total_minor=Sum("lines__amount_minor"))

    @admin.display(description="lines", ordering="line_count")
    def line_count(self, batch):
        return batch.line_count

    @admin.display(description="total", ordering="total_minor")
    def total_display(self, batch):
        return _money(batch.total_minor, batch.currency)

    @admin.display(description="totals")
    def totals(self, batch):
        rows = batch.lines.aggregate(
            **{
                f"{status}_{what}": agg("amount_minor" if what == "minor" else "id", filter=Q(status=status))
                for status in PayoutLine.Status.values
                for what, agg in (("minor", Sum), ("count", Count))
            }
        )
        url = reverse("admin:payouts_payoutline_changelist") + f"?batch__id__exact={batch.pk}"
        return format_html(
            "{}<p><a href='{}'>All lines of this batch</a></p>",
            format_html_join(
                "", "<p>{}: {} line(s), {} {}</p>",
                (
                    (status, rows[f"{status}_count"], _money(rows[f"{status}_minor"], batch.currency), batch.currency)
                    for status in PayoutLine.Status.values
                ),
            ),
            url,
        )

    @admin.display(description="download")
    def downloads(self, batch):
        return format_html_join(
            " · ", "<a href='{}'>{}</a>",
            (
                (reverse("admin:payouts_payoutbatch_export", args=[batch.pk, fmt]), label)
                for fmt, label in (("csv", "CSV"), ("paypal", "PayPal Payouts JSON"), ("sepa", "SEPA XML"))
            ),
        )

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("build/", wrap(self.build_view), name="payouts_payoutbatch_build"),
            path("<int:batch_id>/export/<str:fmt>/", wrap(self.export_view), name="payouts_payoutbatch_export"),
            *super().get_urls(),
        ]

    def has_build_permission(self, request):
        return request.user.has_perm("payouts.change_payoutbatch")

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), "can_build": self.has_build_permission(request)})

    def build_view(self, request):
        if not self.has_build_permission(request):
            raise PermissionDenied
        form = BuildBatchForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            merchant, currency = form.cleaned_data["merchant"], form.cleaned_data["currency"]
            result = batches.batch_build(merchant=merchant, currency=currency)
            if result.batch is None or not result.created:
                self.message_user(
                    request,
                    f"Nothing to pay for {merchant} in {currency}: no promoter's payable balance reaches the minimum.",
                    messages.WARNING,
                )
                return HttpResponseRedirect(reverse("admin:payouts_payoutbatch_changelist"))
            self.message_user(
                request,
                f"Batch {result.batch.pk} built: {result.lines} line(s), {_money(result.total_minor, currency)} {currency}.",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:payouts_payoutbatch_change", args=[result.batch.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Build a payout batch now",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/payouts/build_batch.html", context)

    def export_view(self, request, batch_id: int, fmt: str):
        batch = get_object_or_404(PayoutBatch, pk=batch_id)
        if not self.has_view_permission(request, batch):
            raise PermissionDenied
        if fmt not in EXPORTS:
            raise Http404("No such export.")
        try:
            if fmt == "csv":
                body = exports.batch_csv(batch)
            elif fmt == "paypal":
                body = exports.paypal_payouts(batch)
            else:
                body = exports.sepa_credit_transfer(batch)
        except exports.ExportError as exc:
            return self._export_refused(request, batch, str(exc))
        except Exception as exc:  # noqa: BLE001 - sepaxml raises bare Exception for invalid data
            logger.warning("export %s of batch %s failed: %s", fmt, batch.pk, exc)
            return self._export_refused(request, batch, f"The {fmt} file could not be made: {exc}")
        content_type, extension = EXPORTS[fmt]
        response = HttpResponse(body, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="payout-batch-{batch.pk}-{fmt}.{extension}"'
        return response

    def _export_refused(self, request, batch, message):
        self.message_user(request, message, messages.ERROR)
        return HttpResponseRedirect(reverse("admin:payouts_payoutbatch_change", args=[batch.pk]))


@admin.register(PayoutLine)
class PayoutLineAdmin(ReadOnlyAdmin):
    list_display = (
        "id", "batch_id", "promoter", "amount_display", "currency", "method_kind", "status", "failure_reason", "settled_at",
    )
    list_filter = ("status", "currency", "batch__merchant")
    search_fields = ("=id", "=batch__id", "promoter__name", "promoter__email")
    list_select_related = ("promoter",)
    actions = [export_as_csv, "mark_paid", "mark_failed"]

    def has_settle_permission(self, request):
        return request.user.has_perm("payouts.change_payoutline")

    @admin.display(description="batch", ordering="batch_id")
    def batch_id(self, line):
        return line.batch_id

    @admin.display(description="amount", ordering="amount_minor")
    def amount_display(self, line):
        return _money(line.amount_minor, line.currency)

    @admin.display(description="method")
    def method_kind(self, line):
        return line.method.get("kind", "manual")

    def _settled(self, request, ids, settled, verb):
        if settled:
            self.message_user(request, f"{settled} line(s) marked {verb}.", messages.SUCCESS)
        if len(ids) - settled:
            self.message_user(request, f"{len(ids) - settled} line(s) were not pending and were left as they are.", messages.WARNING)

    @admin.action(description="Mark paid", permissions=["settle"])
    def mark_paid(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        self._settled(request, ids, batches.lines_settle(line_ids=ids, paid=True), "paid")

    @admin.action(description="Mark failed…", permissions=["settle"])
    def mark_failed(self, request, queryset):
        asked = ask_reason(
            self, request, queryset, action="mark_failed", title="Mark payout lines failed",
            intro="The money of each pending line goes back to the promoter's available balance, for the next batch.",
            submit="Mark them failed",
        )
        if not isinstance(asked, str):
            return asked
        ids = list(queryset.values_list("pk", flat=True))
        try:
            settled = batches.lines_settle(line_ids=ids, paid=False, reason=asked)
        except batches.BatchError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return None
        self._settled(request, ids, settled, "failed")
        return None


# --- Statements ---------------------------------------------------------------------------


@admin.register(Statement)
class StatementAdmin(ReadOnlyAdmin):
    list_display = ("id", "promoter", "period", "currency", "closing_display", "created_at")
    list_filter = ("period", "currency")
    search_fields = ("=id", "promoter__name", "promoter__email", "period")
    list_select_related = ("promoter",)
    fields = ("promoter", "period", "currency", "created_at", "statement", "downloads")
    readonly_fields = fields

    @admin.display(description="closing balance")
    def closing_display(self, statement):
        return _money(statement.figures.get("closing"), statement.currency)

    @admin.display(description="statement")
    def statement(self, statement):
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><td>{}</td><td style='text-align:right'>{}</td></tr>", statements.statement_lines(statement)),
        )

    @admin.display(description="download")
    def downloads(self, statement):
        return format_html(
            "<a href='{}'>PDF</a> · <a href='{}'>CSV</a>",
            reverse("admin:payouts_statement_download", args=[statement.pk, "pdf"]),
            reverse("admin:payouts_statement_download", args=[statement.pk, "csv"]),
        )

    def get_urls(self):
        return [
            path(
                "<int:statement_id>/download/<str:fmt>/", self.admin_site.admin_view(self.download_view),
                name="payouts_statement_download",
            ),
            *super().get_urls(),
        ]

    def download_view(self, request, statement_id: int, fmt: str):
        statement = get_object_or_404(Statement.objects.select_related("promoter"), pk=statement_id)
        if not self.has_view_permission(request, statement):
            raise PermissionDenied
        if fmt == "pdf":
            response = HttpResponse(statements.statement_pdf(statement), content_type="application/pdf")
        elif fmt == "csv":
            response = HttpResponse(statements.statement_csv(statement), content_type="text/csv; charset=utf-8")
        else:
            raise Http404("No such download.")
        name = f"statement-{statement.period}-promoter-{statement.promoter_id}.{fmt}"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


# --- Policies, methods, adjustments, month closes ----------------------------------------


class PayoutPolicyForm(forms.ModelForm):
    class Meta:
        model = PayoutPolicy
        fields = policies.POLICY_FIELDS

    def clean(self):
        cleaned = super().clean()
        present = {name: cleaned[name] for name in policies.POLICY_FIELDS if name in cleaned}
        try:
            cleaned.update(policies.policy_clean(**present))
        except ServiceValidationError as exc:
            for name, problems in exc.fields.items():
                self.add_error(name if name in self.fields else None, problems)
        return cleaned


@admin.register(PayoutPolicy)
class PayoutPolicyAdmin(admin.ModelAdmin):
    form = PayoutPolicyForm
    list_display = (
        "id", "program", "minimum_payout_minor", "guaranteed_minimum_minor", "guaranteed_months",
        "bonus_revenue_threshold_minor", "bonus_rate", "payer_name",
    )
    list_select_related = ("program", "program__merchant")
    search_fields = ("program__name", "program__merchant__name")
    actions = [export_as_csv]

    def get_readonly_fields(self, request, obj=None):
        return ("program",) if obj is not None else ()

    def get_fields(self, request, obj=None):
        return ("program", *policies.POLICY_FIELDS)

    def save_model(self, request, obj, form, change):
        values = {name: form.cleaned_data[name] for name in policies.POLICY_FIELDS if name in form.cleaned_data}
        if obj.pk is None:
            obj.save()
        policies.payout_policy_update(policy=obj, **values)

    def has_delete_permission(self, request, obj=None):
        return False  # batches and closes read it: a policy is changed, never removed


@admin.register(PayoutMethod)
class PayoutMethodAdmin(ReadOnlyAdmin):
    list_display = ("promoter", "kind", "paypal_email", "account_holder", "iban_masked", "bic", "updated_at")
    list_filter = ("kind",)
    search_fields = ("promoter__name", "promoter__email", "paypal_email", "account_holder")
    list_select_related = ("promoter",)
    fields = ("promoter", "kind", "paypal_email", "account_holder", "iban", "bic", "updated_at", "change_log")
    readonly_fields = fields

    @admin.display(description="IBAN")
    def iban_masked(self, method):
        return mask_iban(method.iban)

    @admin.display(description="changes (IBANs masked)")
    def change_log(self, method):
        changes = PayoutMethodChange.objects.filter(promoter_id=method.promoter_id).order_by("-changed_at", "-id")[:100]
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((c.changed_at.isoformat(), c.changed_by, _state(c.before), _state(c.after)) for c in changes),
        )
        if not rows:
            return "No change logged."
        return format_html("<table><tr><th>when</th><th>by</th><th>before</th><th>after</th></tr>{}</table>", rows)


def _state(state: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in state.items() if v) or "—"


@admin.register(PayoutMethodChange)
class PayoutMethodChangeAdmin(ReadOnlyAdmin):
    list_display = ("id", "promoter", "changed_by", "before_display", "after_display", "changed_at")
    search_fields = ("=promoter__id", "promoter__name", "promoter__email", "changed_by")
    list_select_related = ("promoter",)
    date_hierarchy = "changed_at"

    @admin.display(description="before")
    def before_display(self, change):
        return _state(change.before)

    @admin.display(description="after")
    def after_display(self, change):
        return _state(change.after)


@admin.register(Adjustment)
class AdjustmentAdmin(ReadOnlyAdmin):
    list_display = ("id", "promoter", "kind", "period", "amount_display", "currency", "reason", "payout_line_id", "paid_at")
    list_filter = ("kind", "period", "currency")
    search_fields = ("=id", "promoter__name", "promoter__email")
    list_select_related = ("promoter",)

    @admin.display(description="amount", ordering="amount_minor")
    def amount_display(self, adjustment):
        return _money(adjustment.amount_minor, adjustment.currency)


@admin.register(MonthClose)
class MonthCloseAdmin(ReadOnlyAdmin):
    list_display = ("id", "merchant", "period", "created_at")
    list_filter = ("period",)
    list_select_related = ("merchant",)
