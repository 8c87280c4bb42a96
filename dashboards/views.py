"""The merchant dashboards' pages, for merchant staff.

Every page works on ``request.merchant``, one of the merchants the login is a member of (the
one chosen with the switcher, or the oldest membership); every object (a program, an event,
a promoter) is looked up through that merchant, so another merchant's answers 404. A login
that is on no merchant's staff (a promoter's, say) gets 403 on every page.
"""

from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from attribution.selectors import event_journey
from core.errors import ServiceValidationError
from merchants import services as merchant_services
from payouts import review as review_services
from payouts import selectors as payout_reads
from promoters import services as promoter_services

from . import insight_selectors as insight_reads
from . import selectors as reads
from .forms import ConversionFilterForm, ProgramSettingsForm, RangeForm

SESSION_MERCHANT = "merchant_dashboard_merchant"


def merchant_page(view):
    """Logged in and on a merchant's staff; sets ``request.merchant`` and
    ``request.membership``. Never cached."""

    @login_required
    @never_cache
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        members = reads.memberships(request.user)
        if not members:
            return render(request, "merchant/not_staff.html", status=403)
        chosen = request.session.get(SESSION_MERCHANT)
        membership = next((m for m in members if m.merchant_id == chosen), members[0])
        request.membership = membership
        request.merchant = membership.merchant
        request.merchant_memberships = members
        return view(request, *args, **kwargs)

    return wrapper


def _record(request, obj, message: str) -> None:
    """The audit trail of a decision taken on these pages: a row of the admin's history
    (``LogEntry``), shown under the object's History in the admin, naming the login. Written
    in the transaction of the change it records."""
    LogEntry.objects.log_actions(
        user_id=request.user.pk, queryset=[obj], action_flag=CHANGE,
        change_message=f"{message} (merchant dashboard, {request.merchant.name} {request.membership.role})",
        single_object=True,
    )


def _range_form(request, programs):
    """The page's program and range; another merchant's program is a 404."""
    form = RangeForm(request.GET, programs=programs)
    if not form.is_bound:
        return form, programs[0], form.span(), 200
    valid = form.is_valid()
    if "program" in form.errors:
        raise Http404
    chosen = form.cleaned_data.get("program")
    program = next((p for p in programs if p.pk == chosen), programs[0])
    return form, program, form.span(), 200 if valid else 400


def _no_programs(request):
    return render(request, "merchant/no_programs.html")


@require_POST
@merchant_page
def switch(request):
    try:
        wanted = int(request.POST.get("merchant", ""))
    except ValueError:
        raise Http404 from None
    if wanted not in {m.merchant_id for m in request.merchant_memberships}:
        raise Http404
    request.session[SESSION_MERCHANT] = wanted
    return redirect("merchant:dashboard")


def _range_page(request, template: str, figures):
    """A page of one program over a range of days: ``figures(programs, program, span)`` gives
    the context beyond the form; a merchant without programs gets the page that says so."""
    programs = reads.programs(request.merchant)
    if not programs:
        return _no_programs(request)
    form, program, span, status = _range_form(request, programs)
    with reads.aggregate_reads():
        context = {"form": form, "program": program, "span": span, **figures(programs, program, span)}
    return render(request, template, context, status=status)


@require_GET
@merchant_page
def dashboard(request):
    merchant = request.merchant

    def figures(programs, program, span):
        kpis, chart = reads.overview(merchant, span, programs, program)
        return {
            "kpis": kpis[program.pk], "all_kpis": [kpis[p.pk] for p in programs], "chart": chart,
            "chart_rows": list(zip(chart["days"], chart["clicks"], chart["purchases"], chart["revenue"], strict=True)),
            "pending": reads.pending_count(merchant),
            "in_review": reads.review_count(merchant),
            "failed_events": reads.failed_events_count(merchant),
        }

    return _range_page(request, "merchant/dashboard.html", figures)


@require_GET
@merchant_page
def top_promoters(request):
    return _range_page(
        request, "merchant/top_promoters.html",
        lambda programs, program, span: {"top": reads.top_promoters(program, span)},
    )


@require_GET
@merchant_page
def channels(request):
    return _range_page(
        request, "merchant/channels.html",
        lambda programs, program, span: {"channels": reads.channels(program, span)},
    )


@require_GET
@merchant_page
def conversions(request):
    merchant = request.merchant
    programs = reads.programs(merchant)
    form = ConversionFilterForm(request.GET, programs=programs)
    filters = reads.ConversionFilter()
    status = 200
    if form.is_bound:
        if form.is_valid():
            data = form.cleaned_data
            filters = reads.ConversionFilter(program_id=data["program"], type=data["type"], search=data["q"])
        elif "program" in form.errors:
            raise Http404
        else:
            status = 400
    paginator = Paginator(reads.conversions(merchant, filters), reads.CONVERSIONS_PER_PAGE)
    page = paginator.get_page(request.GET.get("page"))
    credited = reads.promoters_credited(e.pk for e in page.object_list)
    rows = [{"e": e, "promoters": credited.get(e.pk, 0)} for e in page.object_list]
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "rows": rows, "query": query.urlencode()}
    return render(request, "merchant/conversions.html", context, status=status)


@require_GET
@merchant_page
def conversion(request, event_id: int):
    event = reads.conversion(request.merchant, event_id)
    if event is None:
        raise Http404
    context = {"event": event, "journey": event_journey(event), "commissions": payout_reads.event_commissions(event, for_people=True)}
    return render(request, "merchant/conversion.html", context)


@require_GET
@merchant_page
def programs(request):
    return render(request, "merchant/programs.html", {"programs": reads.programs(request.merchant)})


@require_http_methods(["GET", "POST"])
@merchant_page
def program_settings(request, program_id: int):
    program = reads.program(request.merchant, program_id)
    if program is None:
        raise Http404
    if request.method == "POST":
        form = ProgramSettingsForm(request.POST)
        if form.is_valid():
            try:
                with transaction.atomic():
                    before = ProgramSettingsForm.initial_for(program)
                    updated = merchant_services.program_update(program=program, **form.service_fields())
                    after = ProgramSettingsForm.initial_for(updated)
                    changes = [f"{name} {before[name]!s} → {after[name]!s}" for name in after if before[name] != after[name]]
                    _record(request, updated, "Settings changed: " + ("; ".join(changes) or "nothing"))
            except ServiceValidationError as exc:
                for field, problems in exc.fields.items():
                    name = field.replace(".", "_")  # fraud.<rule> is the form's fraud_<rule>
                    for problem in problems:
                        form.add_error(name if name in form.fields else None, problem)
            else:
                messages.success(request, "The program's settings are saved. They apply to events received from now on.")
                return redirect("merchant:program-settings", program_id=program.pk)
        return render(request, "merchant/program_settings.html", {"program": program, "form": form}, status=400)
    form = ProgramSettingsForm(initial=ProgramSettingsForm.initial_for(program))
    return render(request, "merchant/program_settings.html", {"program": program, "form": form})


@require_GET
@merchant_page
def approvals(request):
    return render(request, "merchant/approvals.html", {"promoters": reads.pending_promoters(request.merchant)})


@require_POST
@merchant_page
def approval_decide(request, promoter_id: int):
    promoter = reads.merchant_promoter(request.merchant, promoter_id)
    if promoter is None:
        raise Http404
    action = request.POST.get("action")
    decide = {"approve": promoter_services.promoter_approve, "reject": promoter_services.promoter_reject}.get(action)
    if decide is None:
        messages.error(request, "Choose approve or reject.")
        return redirect("merchant:approvals")
    try:
        with transaction.atomic():
            promoter = decide(promoter=promoter)
            _record(request, promoter, "Approved to join" if action == "approve" else "Rejected: not approved to join")
    except ServiceValidationError as exc:
        for problems in exc.fields.values():
            for problem in problems:
                messages.error(request, f"{promoter.name}: {problem}")
        return redirect("merchant:approvals")
    if action == "approve":
        messages.success(request, f"{promoter.name} is approved: they earn on events received from now on.")
    else:
        messages.success(request, f"{promoter.name} is rejected: their account stays inactive.")
    return redirect("merchant:approvals")


# --- Review of flagged conversions -------------------------------------------------------


@require_GET
@merchant_page
def review(request):
    return render(request, "merchant/review.html", {"rows": reads.review_queue(request.merchant)})


@require_POST
@merchant_page
def review_decide(request, event_id: int):
    """Clear or reject one flagged conversion (payouts/review.py), once, with the login in
    the admin's history of the event."""
    event = reads.conversion(request.merchant, event_id)
    if event is None:
        raise Http404
    action = request.POST.get("action")
    decide = {"clear": review_services.conversion_clear, "reject": review_services.conversion_reject}.get(action)
    if decide is None:
        messages.error(request, "Choose clear or reject.")
        return redirect("merchant:review")
    with transaction.atomic():
        done = decide(event_id=event.pk, by=request.user.get_username())
        if done:
            _record(request, event, "Cleared in review" if action == "clear" else "Rejected in review")
    if not done:
        messages.error(request, f"Conversion {event.pk} was already decided.")
    elif action == "clear":
        messages.success(request, f"Conversion {event.pk} is cleared: its commissions follow the usual hold from the sale.")
    else:
        messages.success(request, f"Conversion {event.pk} is rejected: its commissions are reversed and nothing is paid.")
    return redirect("merchant:review")


# --- Insights -------------------------------------------------------------------------


@require_GET
@merchant_page
def insights_value(request):
    """LTV, CAC and LTV/CAC by channel and promoter (the latest run), and the rate-change log."""
    programs = reads.programs(request.merchant)
    if not programs:
        return _no_programs(request)
    program = programs[0]
    if request.GET.get("program"):
        program = next((p for p in programs if str(p.pk) == request.GET["program"]), None)
        if program is None:  # another merchant's program, or none
            raise Http404
    context = {"program": program, "programs": programs, **insight_reads.value_page(request.merchant, program),
               "changes": insight_reads.rate_log(request.merchant)}
    return render(request, "merchant/insights_value.html", context)


@require_GET
@merchant_page
def insights_segments(request):
    return render(request, "merchant/insights_segments.html", insight_reads.segments_page(request.merchant))


@require_GET
@merchant_page
def insights_content(request):
    return render(request, "merchant/insights_content.html", insight_reads.content_page(request.merchant))

