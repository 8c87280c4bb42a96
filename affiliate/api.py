"""The merchant API for settings, programs, links and conversion events, and the postback.

Thin: parse, call one service, serialise. Shapes follow CONTRACT.md to the letter.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core import money
from core.api_common import MerchantScopedViewSet, body_dict, errors, read_schema, refuse_nul, resolve_id
from core.errors import ApiError, ServiceValidationError
from merchants import services as merchant_services
from merchants.models import Merchant

from . import events, services
from .models import Click, ConversionEvent, ReferralLink

# --- Referral links -------------------------------------------------------------------


def tracking_url(request, code: str) -> str:
    base = settings.TRACKING_BASE_URL or request.build_absolute_uri("/").rstrip("/")
    return f"{base}/r/{code}"


class LinkSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    promoter = serializers.IntegerField()
    program = serializers.IntegerField(read_only=True)
    destination_url = serializers.URLField(max_length=2048)
    channel = serializers.CharField(max_length=100, required=False, allow_blank=True, help_text="Free text: blog, youtube, newsletter...")
    code = serializers.CharField(read_only=True)
    url = serializers.URLField(read_only=True, help_text="The absolute tracking URL /r/<code>")
    created_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, link: ReferralLink) -> dict:
        return {
            "id": link.pk,
            "promoter": link.promoter_id,
            "program": link.program_id,
            "destination_url": link.destination_url,
            "channel": link.channel,
            "code": link.code,
            "url": tracking_url(self.context["request"], link.code),
            "created_at": link.created_at.isoformat(),
        }


@extend_schema(tags=["links"])
@extend_schema_view(**read_schema(LinkSerializer))
class LinkViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, MerchantScopedViewSet):
    model = ReferralLink
    serializer_class = LinkSerializer
    filterset_fields = ["promoter", "program", "channel"]

    def get_queryset(self):
        return super().get_queryset().order_by("id")

    @extend_schema(request=LinkSerializer, responses={201: LinkSerializer, **errors(400, 401)})
    def create(self, request, *args, **kwargs):
        from promoters.models import Promoter

        data = body_dict(request)
        problems: dict = {}
        if data.get("promoter") is None:
            problems["promoter"] = ["This field is required."]
        promoter = resolve_id(Promoter, self.merchant.pk, data.get("promoter"), "promoter", problems)
        if "destination_url" not in data:
            problems["destination_url"] = ["This field is required."]
        if problems:
            raise ServiceValidationError(problems)
        link = services.link_create(
            merchant=self.merchant,
            promoter=promoter,
            destination_url=data.get("destination_url"),
            channel=data.get("channel", ""),
        )
        return Response(LinkSerializer(link, context={"request": request}).data, status=status.HTTP_201_CREATED)


# --- Conversion events ----------------------------------------------------------------


class AttributionRowSerializer(serializers.Serializer):
    promoter = serializers.IntegerField()
    weight = serializers.CharField(help_text="Decimal string")
    revenue = serializers.CharField(help_text="Money string")


class CommissionRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    promoter = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["direct", "override", "bounty", "reversal"])
    level = serializers.IntegerField()
    amount = serializers.CharField(help_text="Money string")
    status = serializers.CharField()


class WarningSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="unknown_click_id, unknown_coupon, click_flagged or conversion_flagged")
    message = serializers.CharField()
    reason = serializers.CharField(required=False, help_text="click_flagged, conversion_flagged: the flag's reason")


class EventInputSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=ConversionEvent.Type.values)
    customer_id = serializers.CharField(max_length=255)
    click_id = serializers.CharField(max_length=255, required=False)
    order_id = serializers.CharField(max_length=255, required=False, help_text="Required for purchase and refund")
    amount = serializers.CharField(required=False, help_text="Money string; purchase: required, > 0; refund: default the rest of the order")
    currency = serializers.CharField(required=False)
    coupon = serializers.CharField(max_length=255, required=False)
    refund_id = serializers.CharField(max_length=255, required=False)
    program = serializers.IntegerField(required=False)
    occurred_at = serializers.DateTimeField(required=False)


class EventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    type = serializers.ChoiceField(choices=ConversionEvent.Type.values)
    stage = serializers.ChoiceField(choices=["registration", "first_purchase", "repeat_purchase", "refund"])
    status = serializers.ChoiceField(choices=ConversionEvent.Status.values)
    amount = serializers.CharField(allow_null=True)
    currency = serializers.CharField()
    customer_id = serializers.CharField()
    order_id = serializers.CharField(allow_null=True)
    refund_id = serializers.CharField(allow_null=True)
    click_id = serializers.CharField(allow_null=True)
    coupon = serializers.CharField(allow_null=True)
    program = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    attribution = AttributionRowSerializer(many=True)
    commissions = CommissionRowSerializer(many=True)
    warnings = WarningSerializer(many=True)


def event_warnings(event: ConversionEvent) -> list[dict]:
    """The warnings stored when the event was received, then what is flagged (CONTRACT v2,
    "Flagged traffic is never silent"): the click it named, and the conversion itself."""
    warnings = list(event.warnings or [])
    if event.click_id is not None:
        reason = Click.objects.filter(pk=event.click_id, is_fraud=True).values_list("flag_reason", flat=True).first()
        if reason is not None:
            warnings.append({
                "code": "click_flagged",
                "message": "The click this event names is flagged and earns nothing; "
                "its promoter is credited only through other touchpoints.",
                "reason": reason,
            })
    if event.is_fraud:
        decided = "rejected in review" if event.rejected_at else "held for review"
        warnings.append({
            "code": "conversion_flagged",
            "message": f"The conversion is flagged: its commissions are {decided} and count in no balance.",
            "reason": event.flag_reason,
        })
    return warnings


def event_body(event: ConversionEvent) -> dict:
    body = {
        "id": event.pk,
        "type": event.type,
        "stage": event.stage,
        "status": event.status,
        "amount": money.format_minor(event.amount_minor, event.currency),
        "currency": event.currency,
        "customer_id": event.customer.external_id,
        "order_id": event.order_id or None,
        "refund_id": event.refund_id or None,
        "click_id": event.click_ref or None,
        "coupon": event.coupon or None,
        "program": event.program_id,
        "occurred_at": event.occurred_at.isoformat(),
        "received_at": event.received_at.isoformat(),
        "attribution": [],
        "commissions": [],
        "warnings": event_warnings(event),
    }
    if event.status != ConversionEvent.Status.QUEUED:
        # Processing writes the sections in the transaction that marks the event processed:
        # a queued event has none yet, so there is nothing to read.
        for name, reader in events.BODY_SECTIONS.items():
            body[name] = reader(event)
    return body


def ingest_response(merchant: Merchant, payload: dict, request, source: str) -> Response:
    result = events.event_ingest(
        merchant=merchant,
        payload=payload,
        idempotency_key=request.headers.get("Idempotency-Key"),
        source=source,
    )
    # With tasks inline the event was processed when the transaction committed: read it
    # again. With workers the answer says what was true at the commit (queued, for a new
    # event), and GET /api/v1/events/{id}/ says what is true later.
    event = result.event
    if settings.CELERY_TASK_ALWAYS_EAGER and result.created:
        event = ConversionEvent.objects.select_related("customer").get(pk=event.pk)
    return Response(event_body(event), status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Repeating a request with the same key and body returns the first answer (200); another body is a 409.",
)


@extend_schema(tags=["events"])
@extend_schema_view(**read_schema(EventSerializer))
class EventViewSet(mixins.RetrieveModelMixin, mixins.ListModelMixin, MerchantScopedViewSet):
    model = ConversionEvent
    serializer_class = EventSerializer
    filterset_fields = ["type", "status", "stage", "order_id", "program"]

    def get_queryset(self):
        return super().get_queryset().select_related("customer").order_by("-id")

    @extend_schema(
        request=EventInputSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={201: EventSerializer, 200: EventSerializer, **errors(400, 401, 409, 413)},
        summary="Report a conversion (registration, purchase or refund)",
    )
    def create(self, request, *args, **kwargs):
        return ingest_response(self.merchant, body_dict(request), request, "api")

    def retrieve(self, request, *args, **kwargs):
        return Response(event_body(self.get_object()))

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([event_body(e) for e in page])


# --- Postback -------------------------------------------------------------------------


def postback_signature(secret: str, params: dict[str, str]) -> str:
    """Hex HMAC-SHA256 over the parameters other than ``sig``, sorted, as ``name=value&...``."""
    message = "&".join(f"{name}={params[name]}" for name in sorted(params) if name != "sig")
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), sha256).hexdigest()


@extend_schema(
    tags=["events"],
    auth=[],
    parameters=[
        OpenApiParameter("type", OpenApiTypes.STR, enum=ConversionEvent.Type.values, required=True),
        OpenApiParameter("customer_id", OpenApiTypes.STR, required=True),
        OpenApiParameter("click_id", OpenApiTypes.STR),
        OpenApiParameter("order_id", OpenApiTypes.STR),
        OpenApiParameter("amount", OpenApiTypes.STR),
        OpenApiParameter("currency", OpenApiTypes.STR),
        OpenApiParameter("coupon", OpenApiTypes.STR),
        OpenApiParameter("refund_id", OpenApiTypes.STR),
        OpenApiParameter("program", OpenApiTypes.INT),
        OpenApiParameter("occurred_at", OpenApiTypes.DATETIME),
        OpenApiParameter("sig", OpenApiTypes.STR, description="Hex HMAC-SHA256; required when the merchant sets require_signature"),
        IDEMPOTENCY_HEADER,
    ],
    responses={201: EventSerializer, 200: EventSerializer, **errors(400, 403, 404, 409)},
    summary="Report a conversion by URL (postback)",
)
class PostbackView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]

    def get(self, request, token: str):
        merchant = merchant_services.merchant_by_postback_token(token)
        if merchant is None:
            raise ApiError("not_found", "Unknown postback token.", status_code=404)
        params = {name: request.query_params.get(name) for name in request.query_params}
        refuse_nul(params)
        if merchant.require_signature:
            expected = postback_signature(merchant.postback_secret, params)
            if not hmac.compare_digest(expected.encode(), (params.get("sig") or "").lower().encode()):
                raise ApiError("invalid_signature", "The sig parameter is missing or wrong.", status_code=403)
        params.pop("sig", None)
        return ingest_response(merchant, params, request, "postback")


class PostbackSlashView(PostbackView):
    """``/postback/<token>/``: the same endpoint; documented once, without the slash."""

    schema = None
