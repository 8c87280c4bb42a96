"""Promoter portal pages of content intelligence: ``/portal/content/`` (register and list
your content) and ``/portal/materials/`` (the drafts handed to you, with their tracking
link and what they converted so far). Every read goes through ``request.promoter``, the
promoter the login opens (the one chosen with the portal's switcher, or the oldest)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import Count
from django.shortcuts import redirect, render
from django.utils import timezone

from affiliate.models import Click, ConversionEvent, ReferralLink
from attribution.models import Touchpoint
from core.errors import ServiceValidationError
from insights.content import content_create
from insights.models import Content, MaterialAssignment

from .access import portal_page

CONTENT_PER_PAGE = 100


class ContentForm(forms.Form):
    title = forms.CharField(max_length=300, label="Title")
    text = forms.CharField(required=False, label="Text", widget=forms.Textarea(attrs={"rows": 4}),
                           help_text="The words of the post, article, video description or email.")
    format = forms.ChoiceField(choices=Content.Format.choices, label="Format")
    channel = forms.CharField(max_length=64, required=False, label="Channel", help_text="e.g. blog, youtube, newsletter.")
    published_at = forms.DateTimeField(label="Published at (UTC)", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
                                       input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"])
    link = forms.ModelChoiceField(queryset=ReferralLink.objects.none(), label="Link it carries", empty_label=None)

    def __init__(self, *args, promoter, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["link"].queryset = ReferralLink.objects.filter(promoter=promoter).order_by("-id")
        self.fields["link"].label_from_instance = lambda link: f"{link.code} ({link.channel or 'no channel'})"


def _tracking_url(request, code: str) -> str:
    base = getattr(settings, "TRACKING_BASE_URL", "") or request.build_absolute_uri("/").rstrip("/")
    return f"{base}/r/{code}"


@portal_page
def content(request):
    promoter = request.promoter
    form = ContentForm(request.POST or None, promoter=promoter)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            published_at = data["published_at"]
            if timezone.is_naive(published_at):
                published_at = timezone.make_aware(published_at, timezone.UTC)
            try:
                content_create(
                    promoter=promoter, title=data["title"], text=data["text"], format=data["format"],
                    channel=data["channel"], published_at=published_at, link_id=data["link"].pk,
                )
            except ServiceValidationError as exc:
                for field, problems in exc.fields.items():
                    for problem in problems:
                        form.add_error(field if field in form.fields else None, problem)
            else:
                messages.success(request, "Your content is registered: its link's conversions now count for it.")
                return redirect("portal:content")
        status = 400
    rows = list(
        Content.objects.filter(promoter=promoter).select_related("link").order_by("-published_at", "-id")[:CONTENT_PER_PAGE]
    )
    return render(request, "portal/content.html", {"form": form, "rows": rows}, status=status)


@portal_page
def materials(request):
    promoter = request.promoter
    assignments = list(
        MaterialAssignment.objects.filter(promoter=promoter).select_related("material", "material__product", "link")
        .order_by("-created_at", "-id")
    )
    link_ids = [a.link_id for a in assignments if a.link_id]
    clicks = dict(
        Click.objects.filter(link_id__in=link_ids, is_fraud=False, is_duplicate=False)
        .values_list("link_id").annotate(n=Count("id")).order_by()
    )
    purchases = dict(
        Touchpoint.objects.filter(link_id__in=link_ids, promoter=promoter, event__type=ConversionEvent.Type.PURCHASE)
        .values_list("link_id").annotate(n=Count("event_id", distinct=True)).order_by()
    )
    rows = [
        {
            "a": a, "m": a.material,
            "url": _tracking_url(request, a.link.code) if a.link_id else None,
            "clicks": clicks.get(a.link_id, 0), "purchases": purchases.get(a.link_id, 0),
        }
        for a in assignments
    ]
    return render(request, "portal/materials.html", {"rows": rows})
