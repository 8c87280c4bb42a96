"""The merchant API for outbound webhooks: endpoints, their delivery log, and replays."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_common import MerchantScopedViewSet, body_dict, errors, known_fields, read_schema, resolve_id
from core.errors import ServiceValidationError
from promoters.models import Promoter

from . import webhooks
from .models import WebhookDelivery, WebhookEndpoint


def _time(value):
    return value.isoformat() if value else None


class WebhookEndpointSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    url = serializers.CharField(max_length=2000, help_text="https; plain http only for localhost (or with DEBUG)")
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEndpoint.Event.values), min_length=1, help_text="Event types to receive"
    )
    promoter = serializers.IntegerField(
        allow_null=True, required=False,
        help_text="A promoter's own endpoint receives only that promoter's events; null (the default): every event",
    )
    active = serializers.BooleanField(required=False, default=True)
    created_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, endpoint: WebhookEndpoint) -> dict:
        return {
            "id": endpoint.pk,
            "url": endpoint.url,
            "events": list(endpoint.events),
            "promoter": endpoint.promoter_id,
            "active": endpoint.active,
            "created_at": endpoint.created_at.isoformat(),
        }


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="Signs every delivery (see X-Webhook-Signature). Shown only in this answer: store it now."
    )

    def to_representation(self, endpoint: WebhookEndpoint) -> dict:
        return {**super().to_representation(endpoint), "secret": self.context["secret"]}


class WebhookEndpointUpdateSerializer(serializers.Serializer):
    url = serializers.CharField(max_length=2000, required=False)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=WebhookEndpoint.Event.values), min_length=1, required=False
    )
    active = serializers.BooleanField(required=False)


class WebhookAttemptSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    attempt = serializers.IntegerField()
    status_code = serializers.IntegerField(allow_null=True, help_text="null: no answer (refused, timed out)")
    error = serializers.CharField(allow_blank=True)
    duration_ms = serializers.IntegerField()


class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    endpoint = serializers.IntegerField()
    event_type = serializers.ChoiceField(choices=WebhookEndpoint.Event.values)
    event_id = serializers.CharField(help_text="Sent as X-Webhook-Id")
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.values)
    attempts = serializers.IntegerField()
    next_attempt_at = serializers.DateTimeField(allow_null=True, help_text="When a pending delivery is tried next")
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(allow_blank=True)
    response_excerpt = serializers.CharField(allow_blank=True, help_text="The start of the receiver's last answer")
    delivered_at = serializers.DateTimeField(allow_null=True)
    body = serializers.JSONField(help_text="The JSON body sent")
    log = WebhookAttemptSerializer(many=True, help_text="Every attempt, oldest first (the last 50)")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    def to_representation(self, d: WebhookDelivery) -> dict:
        return {
            "id": d.pk,
            "endpoint": d.endpoint_id,
            "event_type": d.event_type,
            "event_id": d.event_id,
            "status": d.status,
            "attempts": d.attempts,
            "next_attempt_at": _time(d.next_attempt_at),
            "last_status_code": d.last_status_code,
            "last_error": d.last_error,
            "response_excerpt": d.response_excerpt,
            "delivered_at": _time(d.delivered_at),
            "body": d.payload,
            "log": list(d.log or []),
            "created_at": d.created_at.isoformat(),
            "updated_at": d.updated_at.isoformat(),
        }


CREATE_FIELDS = ("url", "events", "promoter", "active")
UPDATE_FIELDS = ("url", "events", "active")


@extend_schema(tags=["webhooks"])
@extend_schema_view(**read_schema(WebhookEndpointSerializer))
class WebhookEndpointViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, MerchantScopedViewSet
):
    model = WebhookEndpoint
    serializer_class = WebhookEndpointSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    filterset_fields = ["promoter", "active"]

    def get_queryset(self):
        return super().get_queryset().order_by("id")

    @extend_schema(
        request=WebhookEndpointSerializer,
        responses={201: WebhookEndpointCreatedSerializer, **errors(400, 401)},
        summary="Register an endpoint (the answer holds its signing secret, shown once)",
    )
    def create(self, request, *args, **kwargs):
        data = known_fields(body_dict(request), CREATE_FIELDS, read_only=("id", "created_at"))
        problems: dict = {}
        for name in ("url", "events"):
            if name not in data:
                problems[name] = ["This field is required."]
        promoter = resolve_id(Promoter, self.merchant.pk, data.get("promoter"), "promoter", problems)
        if problems:
            raise ServiceValidationError(problems)
        endpoint, secret = webhooks.webhook_endpoint_create(
            merchant=self.merchant, url=data["url"], events=data["events"], promoter=promoter, active=data.get("active", True)
        )
        body = WebhookEndpointCreatedSerializer(endpoint, context={"secret": secret}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=WebhookEndpointUpdateSerializer,
        responses={200: WebhookEndpointSerializer, **errors(400, 401, 404)},
        summary="Change an endpoint's URL, events or active flag",
    )
    def partial_update(self, request, *args, **kwargs):
        endpoint = self.get_object()
        data = known_fields(body_dict(request), UPDATE_FIELDS, read_only=("id", "promoter", "created_at"))
        endpoint = webhooks.webhook_endpoint_update(endpoint=endpoint, **data)
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=WebhookDelivery.Status.values, description="Only this status"),
        ],
        responses={200: WebhookDeliverySerializer(many=True), **errors(400, 401, 404)},
        summary="An endpoint's deliveries, newest first",
    )
    @action(detail=True, methods=["get"], filter_backends=[], serializer_class=WebhookDeliverySerializer)
    def deliveries(self, request, *args, **kwargs):
        endpoint = self.get_object()
        queryset = WebhookDelivery.objects.filter(endpoint=endpoint).order_by("-id")
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in WebhookDelivery.Status.values:
                raise ServiceValidationError({"status": [f"Must be one of: {', '.join(WebhookDelivery.Status.values)}."]})
            queryset = queryset.filter(status=wanted)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)


@extend_schema(
    tags=["webhooks"],
    request=None,
    responses={202: WebhookDeliverySerializer, **errors(400, 401, 404)},
    summary="Send a succeeded or failed delivery again",
)
class WebhookDeliveryReplayView(APIView):
    def post(self, request, id: int):
        delivery = get_object_or_404(WebhookDelivery, pk=id, endpoint__merchant=request.user.merchant)
        webhooks.replay(delivery.pk)
        # Without a broker the attempt has already run; with one, it is queued.
        delivery.refresh_from_db()
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
