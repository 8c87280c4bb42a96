"""The merchant API's read side of money: commissions and promoter balances."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core import money
from core.api_common import MerchantScopedViewSet, errors, read_schema
from core.validation import format_rate
from promoters.models import Promoter

from .models import Commission
from .selectors import promoter_balance


class CommissionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    promoter = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Commission.Kind.values)
    level = serializers.IntegerField()
    amount = serializers.CharField(help_text="Money string; negative for a reversal")
    status = serializers.ChoiceField(choices=Commission.Status.values)
    event = serializers.IntegerField()
    currency = serializers.CharField()
    source_promoter = serializers.IntegerField(help_text="The promoter whose attributed share it derives from")
    base = serializers.CharField(help_text="The attributed revenue it was computed on")
    rate = serializers.CharField(allow_null=True)
    reverses = serializers.IntegerField(allow_null=True)
    available_at = serializers.DateTimeField(help_text="When the hold ends")
    created_at = serializers.DateTimeField()

    def to_representation(self, c: Commission) -> dict:
        return {
            "id": c.pk,
            "promoter": c.promoter_id,
            "kind": c.kind,
            "level": c.level,
            "amount": money.format_minor(c.amount_minor, c.currency),
            "status": c.status,
            "event": c.event_id,
            "currency": c.currency,
            "source_promoter": c.source_promoter_id,
            "base": money.format_minor(c.base_minor, c.currency),
            "rate": format_rate(c.rate),
            "reverses": c.reverses_id,
            "available_at": c.available_at.isoformat(),
            "created_at": c.created_at.isoformat(),
        }


@extend_schema(tags=["commissions"])
@extend_schema_view(**read_schema(CommissionSerializer))
class CommissionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, MerchantScopedViewSet):
    model = Commission
    serializer_class = CommissionSerializer
    filterset_fields = ["promoter", "event", "status", "kind", "level"]

    def get_queryset(self):
        return super().get_queryset().order_by("id")


class BalanceSerializer(serializers.Serializer):
    currency = serializers.CharField()
    pending = serializers.CharField(help_text="On hold")
    available = serializers.CharField(help_text="Approved, not yet paid; may be negative after a clawback")
    paid = serializers.CharField(help_text="Paid out, all time")


@extend_schema(tags=["promoters"], responses={200: BalanceSerializer, **errors(401, 404)}, summary="A promoter's balance")
class PromoterBalanceView(APIView):
    def get(self, request, id: int):
        promoter = get_object_or_404(Promoter.objects.select_related("program"), pk=id, merchant=request.user.merchant)
        return Response(promoter_balance(promoter))
