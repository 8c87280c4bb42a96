"""The promoter portal: server-rendered pages for one promoter's own figures.

Every page works on ``request.promoter``, one of the promoters the login opens (the one
chosen with the switcher, or the oldest); every object is looked up through that promoter,
so another promoter's link, statement or anything else answers 404.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import urlencode

import segno
from allauth.account.views import SignupView
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from affiliate import services as tracking
from core import money
from core.errors import ServiceValidationError
from payouts import methods, statements
from payouts.models import Commission
from payouts.selectors import promoter_balance
from promoters import selectors, services
from promoters.models import Promoter

from . import selectors as reads
from .access import SESSION_PROMOTER, portal_page
from .accounts import JoinSignupForm
from .forms import SUB_IDS, CommissionFilterForm, JoinForm, LinkForm, SubIdForm

COMMISSIONS_PER_PAGE = 50
TEAM_MEMBERS_PER_PAGE = 100
PAYOUT_KINDS = [
    ("paypal", "PayPal"),
    ("bank", "Bank transfer (IBAN)"),
    ("manual", "Something else: the merchant pays me by hand"),
]


def _absolute(request, path: str) -> str:
    base = settings.TRACKING_BASE_URL or request.build_absolute_uri("/").rstrip("/")
    return base + path


def tracking_url(request, code: str, subs: dict | None = None) -> str:
    query = urlencode([(k, v) for k, v in (subs or {}).items() if v])
    return _absolute(request, f"/r/{code}") + (f"?{query}" if query else "")


def invite_url(request, promoter: Promoter) -> str:
    return request.build_absolute_uri(reverse("join", args=[promoter.referral_code]))


def _add_service_errors(form, exc: ServiceValidationError, *, on_fields: bool = False) -> None:
    """A service's refusal shown on the form: on the field it names when ``on_fields`` and
    the form has it, else above the form."""
    for field, problems in exc.fields.items():
        for problem in problems:
            form.add_error(field if on_fields and field in form.fields else None, problem)


# --- Joining through an invite link -----------------------------------------------------


class JoinView(SignupView):
    """``/join/<referral_code>``: sign up (or, logged in, just join) into the sponsor's
    program, placed under the sponsor."""

    template_name = "portal/join.html"

    def dispatch(self, request, *args, referral_code: str = "", **kwargs):
        self.sponsor = selectors.sponsor_for_invite(referral_code)
        if self.sponsor is None:
            return render(request, "portal/join_invalid.html", status=404)
        if request.user.is_authenticated:
            return join_logged_in(request, self.sponsor)
        return super().dispatch(request, *args, **kwargs)

    def get_form_class(self):
        return JoinSignupForm

    def get_form_kwargs(self):
        return {**super().get_form_kwargs(), "sponsor": self.sponsor}

    def form_valid(self, form):
        try:
            return super().form_valid(form)
        except ServiceValidationError as exc:
            _add_service_errors(form, exc)
            return self.form_invalid(form)

    def get_context_data(self, **kwargs):
        return {**super().get_context_data(**kwargs), "sponsor": self.sponsor, "program": self.sponsor.program}


join = JoinView.as_view()


def join_logged_in(request, sponsor: Promoter):
    already = Promoter.objects.filter(user=request.user, program_id=sponsor.program_id).first()
    if already is not None:
        request.session[SESSION_PROMOTER] = already.pk
        messages.info(request, f"You are already a promoter in {sponsor.program.name}.")
        return redirect("portal:dashboard")
    form = JoinForm(request.POST or None, initial={"name": request.user.get_full_name()})
    if request.method == "POST" and form.is_valid():
        try:
            promoter = services.promoter_join(sponsor=sponsor, user=request.user, name=form.cleaned_data["name"])
        except ServiceValidationError as exc:
            _add_service_errors(form, exc)
        else:
            request.session[SESSION_PROMOTER] = promoter.pk
            if promoter.status == Promoter.Status.PENDING:
                messages.info(request, f"You joined {sponsor.program.name}: the merchant will approve your account soon.")
            else:
                messages.success(request, f"Welcome to {sponsor.program.name}!")
            return redirect("portal:dashboard")
    status = 400 if request.method == "POST" else 200
    return render(
        request, "portal/join_logged_in.html", {"sponsor": sponsor, "program": sponsor.program, "form": form}, status=status
    )


# --- The portal -------------------------------------------------------------------------


@require_POST
@portal_page
def switch(request):
    try:
        wanted = int(request.POST.get("promoter", ""))
    except ValueError:
        raise Http404 from None
    if wanted not in {p.pk for p in request.portal_promoters}:
        raise Http404
    request.session[SESSION_PROMOTER] = wanted
    return redirect("portal:dashboard")


@require_GET
@portal_page
def dashboard(request):
    promoter = request.promoter
    summary = reads.dashboard(promoter)
    series = summary["series"]
    context = {
        "summary": summary,
        "rows": list(zip(summary["days"], series["clicks"], series["registrations"], series["purchases"], series["earned"], strict=True)),
        "invite_url": invite_url(request, promoter),
        "summary_url": reverse("portal:summary"),
    }
    return render(request, "portal/dashboard.html", context)


@require_GET
@portal_page
def summary(request):
    """The dashboard's figures as JSON, polled by the page every few seconds."""
    response = JsonResponse(reads.dashboard(request.promoter))
    response["Cache-Control"] = "private, no-store"
    return response


@require_http_methods(["GET", "POST"])
@portal_page
def links(request):
    promoter = request.promoter
    form = LinkForm(request.POST or None, initial={"destination_url": _default_destination(promoter)})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                link = tracking.promoter_link_create(
                    promoter=promoter, destination_url=form.cleaned_data["destination_url"],
                    channel=form.cleaned_data["channel"],
                )
            except ServiceValidationError as exc:
                _add_service_errors(form, exc, on_fields=True)
            else:
                messages.success(request, "Your link is ready: copy it or add sub-ids below.")
                return redirect("portal:link", code=link.code)
        status = 400
    rows = [
        {"link": link, "url": tracking_url(request, link.code)} for link in reads.links(promoter)
    ]
    return render(request, "portal/links.html", {"form": form, "rows": rows, "domains": promoter.merchant.domains}, status=status)


def _default_destination(promoter: Promoter) -> str:
    domains = promoter.merchant.domains
    return f"https://{domains[0]}/" if domains else ""


def _link_or_404(request, code: str):
    link = reads.link(request.promoter, code)
    if link is None:
        raise Http404
    return link


def _link_url(request, link) -> tuple[SubIdForm, str]:
    """The sub-id form read from the query, and the link's tracking URL with the valid sub-ids."""
    subs = SubIdForm(request.GET or None)
    values = subs.cleaned_data if subs.is_bound and subs.is_valid() else {}
    return subs, tracking_url(request, link.code, {k: values.get(k, "") for k in SUB_IDS})


def _qr_svg(url: str) -> str:
    return segno.make(url, error="m").svg_inline(
        scale=1, omitsize=True, border=4, svgclass="qr", lineclass=None, title="QR code of the link",
    )


@require_GET
@portal_page
def link_detail(request, code: str):
    link = _link_or_404(request, code)
    subs, url = _link_url(request, link)
    context = {"link": link, "url": url, "subs": subs, "qr_svg": _qr_svg(url), "qr_query": request.GET.urlencode()}
    return render(request, "portal/link_detail.html", context)


@require_GET
@portal_page
def link_qr(request, code: str):
    link = _link_or_404(request, code)
    _, url = _link_url(request, link)
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=8, border=4, title=url)
    svg = out.getvalue()
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Content-Disposition"] = f'attachment; filename="qr-{link.code}.svg"'
    return response


class TwoEndedPaginator(Paginator):
    """Pages past the middle are read from the other end (the oldest first, then turned
    round): an offset never walks more than half of the rows, so the last page of 100,000
    commissions costs what the first does."""

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = min(bottom + self.per_page, self.count)
        if bottom <= self.count // 2 or not self.object_list.ordered:
            return super().page(number)
        rows = list(self.object_list.reverse()[self.count - top : self.count - bottom])
        rows.reverse()
        return self._get_page(rows, number, self)


def _commission_filters(request) -> tuple[CommissionFilterForm, reads.CommissionFilter]:
    form = CommissionFilterForm(request.GET or None)
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        return form, reads.CommissionFilter(
            status=data["status"], kind=data["kind"], since=data["since"], until=data["until"]
        )
    return form, reads.CommissionFilter()


def _commission_label(c) -> str:
    if c.kind == "override":
        return f"Team override, level {c.level}"
    if c.kind == "reversal":
        return "Reversal" + (f" (team level {c.level})" if c.level else "")
    return {"direct": "Own sale", "bounty": "Registration bounty"}.get(c.kind, c.kind)


@require_GET
@portal_page
def commissions(request):
    promoter = request.promoter
    form, filters = _commission_filters(request)
    status = 400 if form.is_bound and not form.is_valid() else 200
    totals = reads.commission_totals(promoter, filters)
    paginator = TwoEndedPaginator(reads.commissions(promoter, filters), COMMISSIONS_PER_PAGE)
    paginator.count = totals["count"]  # counted with the totals: one pass over the rows, not two
    page = paginator.get_page(request.GET.get("page"))
    in_review = reads.review_reasons(c.event_id for c in page.object_list if c.status == Commission.Status.HELD)
    rows = [
        {
            "c": c, "label": _commission_label(c), "amount": money.format_minor(c.amount_minor, c.currency),
            "review": in_review.get(c.event_id, "") if c.status == Commission.Status.HELD else "",
        }
        for c in page.object_list
    ]
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form, "page": page, "rows": rows, "totals": totals,
        "query": query.urlencode(),
    }
    return render(request, "portal/commissions.html", context, status=status)


class _Echo:
    def write(self, value):
        return value


@require_GET
@portal_page
def commissions_csv(request):
    form, filters = _commission_filters(request)
    if form.is_bound and not form.is_valid():
        return HttpResponse("The filters are not valid.", status=400, content_type="text/plain")
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(["id", "created_at", "event", "kind", "level", "description", "amount", "currency", "status", "available_at"])
        for c in reads.commissions(request.promoter, filters).iterator(chunk_size=2000):
            yield writer.writerow([
                c.pk, c.created_at.isoformat(), c.event_id, c.kind, c.level, _commission_label(c),
                money.format_minor(c.amount_minor, c.currency), c.currency, c.status, c.available_at.isoformat(),
            ])

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="commissions-{request.promoter.referral_code}.csv"'
    return response


@require_GET
@portal_page
def team(request):
    promoter = request.promoter
    members = reads.TeamMembers(promoter)  # counted per level by the database; read a page at a time
    totals = reads.override_totals(promoter)
    tier_rates = promoter.program.tier_rate_decimals
    levels = []
    counts = members.per_level
    deepest = max([*counts, *totals, len(tier_rates)] or [0])
    zero = money.format_minor(0, promoter.program.currency)
    for level in range(1, deepest + 1):
        levels.append({
            "level": level,
            "members": counts.get(level, 0),
            "rate": f"{(tier_rates[level - 1] * 100).normalize():f}%" if level <= len(tier_rates) else "",
            "earned": totals.get(level, {}).get("total", zero),
            "commissions": totals.get(level, {}).get("count", 0),
        })
    # The tree is listed a page at a time: a 2,000-member list is too long to render
    # quickly, and to read on a phone.
    page = Paginator(members, TEAM_MEMBERS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "members": page.object_list, "page": page, "member_count": members.total, "levels": levels,
        "currency": promoter.program.currency, "invite_url": invite_url(request, promoter),
        "truncated": members.truncated,
    }
    return render(request, "portal/team.html", context)


@require_GET
@portal_page
def payouts(request):
    promoter = request.promoter
    lines = [
        {"line": line, "amount": money.format_minor(line.amount_minor, line.currency)}
        for line in reads.payout_lines(promoter)
    ]
    context = {"balance": promoter_balance(promoter), "lines": lines, "statements": reads.statements(promoter)}
    return render(request, "portal/payouts.html", context)


def _statement_or_404(request, statement_id: int):
    statement = reads.statement(request.promoter, statement_id)
    if statement is None:
        raise Http404
    return statement


@require_GET
@portal_page
def statement_pdf(request, statement_id: int):
    statement = _statement_or_404(request, statement_id)
    response = HttpResponse(statements.statement_pdf(statement), content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="statement-{statement.period}.pdf"'
    return response


@require_GET
@portal_page
def statement_csv(request, statement_id: int):
    statement = _statement_or_404(request, statement_id)
    response = HttpResponse(statements.statement_csv(statement), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="statement-{statement.period}.csv"'
    return response


@require_http_methods(["GET", "POST"])
@portal_page
def payout_details(request):
    promoter = request.promoter
    current = methods.method_state(reads.payout_method(promoter))
    context = {"kinds": PAYOUT_KINDS, "errors": {}, "current": current}
    context["masked_iban"] = methods.mask_iban(current["iban"]) if current["iban"] else ""
    if request.method == "POST":
        values = {name: request.POST.get(name, "") for name in ("kind", *methods.FIELDS)}
        used = methods.USED_BY.get(values["kind"], ())  # the other kinds' fields may hold leftovers
        try:
            methods.payout_method_set(
                promoter=promoter, changed_by=f"promoter:{promoter.pk} (portal)", kind=values["kind"],
                **{name: (values[name] if name in used else "") for name in methods.FIELDS},
            )
        except ServiceValidationError as exc:
            context.update(errors=exc.fields, values=values)
            return render(request, "portal/payout_details.html", context, status=400)
        messages.success(request, "Your payout details are saved.")
        return redirect("portal:payout-details")
    context["values"] = {**current, "iban": ""}
    return render(request, "portal/payout_details.html", context)


@require_http_methods(["GET", "POST"])
@portal_page
def api_key(request):
    """The key of the promoter's own read-only API: made (shown this once) or revoked."""
    promoter = request.promoter
    new_key = None
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "create":
            new_key = services.promoter_api_token_issue(promoter=promoter)
        elif action == "revoke":
            services.promoter_api_token_revoke(promoter=promoter)
            messages.success(request, "Your API key is revoked: it no longer works.")
            return redirect("portal:api-key")
        else:
            return HttpResponse("Unknown action.", status=400, content_type="text/plain")
    context = {
        "token": reads.api_token(promoter),
        "new_key": new_key,
        "api_base": _absolute(request, "/api/v1/me/"),
    }
    return render(request, "portal/api_key.html", context)
