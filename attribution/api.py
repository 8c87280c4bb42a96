"""The attribution explorer over the merchant API."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from affiliate.models import ConversionEvent
from core.api_common import errors

from .selectors import event_journey

JourneySerializer = inline_serializer(
    "EventJourney",
    {
        "event": serializers.IntegerField(),
        "type": serializers.CharField(),
        "stage": serializers.CharField(),
        "amount": serializers.CharField(allow_null=True),
        "currency": serializers.CharField(),
        "customer_id": serializers.CharField(),
        "occurred_at": serializers.DateTimeField(),
        "attribution_model": serializers.CharField(),
        "lookback_days": serializers.IntegerField(),
        "touchpoints": inline_serializer(
            "JourneyTouchpoint",
            {
                "position": serializers.IntegerField(),
                "kind": serializers.ChoiceField(choices=["click", "coupon"]),
                "at": serializers.DateTimeField(),
                "promoter": serializers.IntegerField(),
                "promoter_name": serializers.CharField(),
                "channel": serializers.CharField(),
                "link": serializers.CharField(allow_null=True),
                "click_id": serializers.CharField(allow_null=True),
                "weight": serializers.CharField(),
                "revenue": serializers.CharField(),
            },
            many=True,
        ),
        "credits": inline_serializer(
            "JourneyCredit",
            {
                "promoter": serializers.IntegerField(),
                "promoter_name": serializers.CharField(),
                "weight": serializers.CharField(),
                "revenue": serializers.CharField(),
            },
            many=True,
        ),
    },
)


@extend_schema(
    tags=["events"],
    responses={200: JourneySerializer, **errors(401, 404)},
    summary="The attribution explorer: an event's touchpoints with the weight and money each got",
)
class EventJourneyView(APIView):
    def get(self, request, id: int):
        event = get_object_or_404(ConversionEvent.objects.select_related("customer"), pk=id, merchant=request.user.merchant)
        return Response(event_journey(event))
