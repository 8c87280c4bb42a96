"""The content API: a promoter registers and lists their own content
(``/api/v1/me/content/``, their promoter key), a merchant lists their promoters' content
(``/api/v1/content/``, the merchant API key). Thin: parse, call one service, serialise."""

from __future__ import annotations

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response

from core.api_common import body_dict, errors, known_fields
from core.errors import ServiceValidationError
from promoters.auth import IsPromoter, PromoterKeyAuthentication

from .content import CONTENT_FIELDS, content_create, content_problems
from .models import Content

# --- Serialisers and filters -------------------------------------------------------------


class ContentSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    promoter = serializers.IntegerField(read_only=True)
    link = serializers.IntegerField(help_text="The id of one of your referral links, the link the content carries.")
    link_code = serializers.CharField(read_only=True, allow_null=True)
    title = serializers.CharField(max_length=300)
    text = serializers.CharField(required=False, allow_blank=True)
    format = serializers.ChoiceField(choices=Content.Format.values)
    channel = serializers.CharField(max_length=64, required=False, allow_blank=True)
    published_at = serializers.DateTimeField(help_text="ISO 8601; not in the future. Without an offset: UTC.")
    created_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, c: Content) -> dict:
        return {
            "id": c.pk, "promoter": c.promoter_id, "link": c.link_id, "link_code": c.link.code if c.link_id else None,
            "title": c.title, "text": c.text, "format": c.format, "channel": c.channel,
            "published_at": c.published_at.isoformat(), "created_at": c.created_at.isoformat(),
        }


class ContentFilter(filters.FilterSet):
    content_format = filters.ChoiceFilter(field_name="format", choices=Content.Format.choices,
                                          help_text="article, video, social_post or email (`format` picks the renderer).")
    promoter = filters.NumberFilter(field_name="promoter_id")
    published_after = filters.IsoDateTimeFilter(field_name="published_at", lookup_expr="gte")
    published_before = filters.IsoDateTimeFilter(field_name="published_at", lookup_expr="lt")

    class Meta:
        model = Content
        fields = ["content_format", "promoter"]


def _parse(data: dict) -> tuple[dict, dict]:
    """The body's fields as the service takes them, and what could not be read."""
    fields = known_fields(data, CONTENT_FIELDS, ("id", "promoter", "link_code", "created_at"))
    problems: dict[str, list[str]] = {}
    raw_link = fields.get("link")
    link_id = None
    if raw_link is not None:
        if isinstance(raw_link, bool) or not str(raw_link).strip().isdigit():
            problems["link"] = ["Must be an integer id."]
        else:
            link_id = int(str(raw_link).strip())
    raw_time = fields.get("published_at")
    published_at = None
    if raw_time is not None:
        parsed = parse_datetime(raw_time) if isinstance(raw_time, str) else None
        if parsed is None:
            problems["published_at"] = ["An ISO 8601 date and time, e.g. 2026-05-01T19:30:00Z."]
        else:
            published_at = parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, timezone.UTC)
    return {
        "title": fields.get("title"), "text": fields.get("text", ""), "format": fields.get("format"),
        "channel": fields.get("channel", ""), "published_at": published_at, "link_id": link_id,
    }, problems


# --- Views ---------------------------------------------------------------------------------


@extend_schema(tags=["promoter's own API"])
class MeContentView(generics.ListAPIView):
    """Your content, newest first (GET); register a piece (POST)."""

    authentication_classes = [PromoterKeyAuthentication]
    permission_classes = [IsPromoter]
    serializer_class = ContentSerializer
    filterset_class = ContentFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Content.objects.none()
        return Content.objects.select_related("link").filter(promoter=self.request.user.promoter).order_by("-published_at", "-id")

    @extend_schema(responses={200: ContentSerializer(many=True), **errors(400, 401, 404)})
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(request=ContentSerializer, responses={201: ContentSerializer, **errors(400, 401)})
    def post(self, request):
        promoter = request.user.promoter
        values, problems = _parse(body_dict(request))
        checked = content_problems(promoter=promoter, **values)
        for field, messages in checked.items():  # a field that could not be read keeps that problem
            problems.setdefault(field, messages)
        if problems:
            raise ServiceValidationError(problems)
        content = content_create(promoter=promoter, **values)
        return Response(ContentSerializer(content).data, status=201)


@extend_schema(tags=["promoter's own API"], responses={200: ContentSerializer, **errors(401, 404)})
class MeContentDetailView(generics.RetrieveAPIView):
    """One piece of your content (another promoter's: 404)."""

    authentication_classes = [PromoterKeyAuthentication]
    permission_classes = [IsPromoter]
    serializer_class = ContentSerializer
    lookup_url_kwarg = "id"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Content.objects.none()
        return Content.objects.select_related("link").filter(promoter=self.request.user.promoter)


@extend_schema(responses={200: ContentSerializer(many=True), **errors(400, 401, 404)})
class MerchantContentView(generics.ListAPIView):
    """The content your promoters registered, newest first (the merchant API key)."""

    serializer_class = ContentSerializer
    filterset_class = ContentFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Content.objects.none()
        return Content.objects.select_related("link").filter(merchant_id=self.request.user.merchant.pk).order_by("-published_at", "-id")
