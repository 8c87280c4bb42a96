"""The merchant API for promoters."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.response import Response

from core.api_common import MerchantScopedViewSet, body_dict, errors, known_fields, read_schema, resolve_id
from core.errors import ServiceValidationError
from core.validation import format_rate
from merchants.models import Program

from . import services
from .models import Promoter


class PromoterSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    email = serializers.EmailField()
    name = serializers.CharField(max_length=200)
    program = serializers.IntegerField()
    sponsor = serializers.IntegerField(allow_null=True, required=False)
    customer_id = serializers.CharField(max_length=255, allow_null=True, required=False)
    coupon_code = serializers.CharField(max_length=64, allow_null=True, required=False)
    commission_rate = serializers.CharField(allow_null=True, required=False, help_text="Decimal string in [0, 1]; replaces the program's purchase rates")
    payout_plan = serializers.ChoiceField(choices=Promoter.PayoutPlan.values, default="standard")
    status = serializers.ChoiceField(choices=Promoter.Status.values, default="active")
    referral_code = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)

    def to_representation(self, p: Promoter) -> dict:
        return {
            "id": p.pk,
            "email": p.email,
            "name": p.name,
            "program": p.program_id,
            "sponsor": p.sponsor_id,
            "customer_id": p.customer_id,
            "coupon_code": p.coupon_code,
            "commission_rate": format_rate(p.commission_rate),
            "payout_plan": p.payout_plan,
            "status": p.status,
            "referral_code": p.referral_code,
            "created_at": p.created_at.isoformat(),
        }


def promoter_fields(merchant_id: int, data: dict) -> dict:
    fields = known_fields(data, services.PROMOTER_FIELDS, ("id", "referral_code", "created_at"))
    problems: dict = {}
    if "program" in fields and fields["program"] is not None:
        fields["program"] = resolve_id(Program, merchant_id, fields["program"], "program", problems)
    if "sponsor" in fields and fields["sponsor"] is not None:
        fields["sponsor"] = resolve_id(Promoter, merchant_id, fields["sponsor"], "sponsor", problems)
    if problems:
        raise ServiceValidationError(problems)
    return fields


@extend_schema(tags=["promoters"])
@extend_schema_view(**read_schema(PromoterSerializer))
class PromoterViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, MerchantScopedViewSet
):
    model = Promoter
    serializer_class = PromoterSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    filterset_fields = ["program", "sponsor", "status", "payout_plan", "customer_id"]

    @extend_schema(request=PromoterSerializer, responses={201: PromoterSerializer, **errors(400, 401)})
    def create(self, request, *args, **kwargs):
        promoter = services.promoter_create(merchant=self.merchant, **promoter_fields(self.merchant.pk, body_dict(request)))
        return Response(PromoterSerializer(promoter).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PromoterSerializer(partial=True), responses={200: PromoterSerializer, **errors(400, 401, 404)})
    def partial_update(self, request, *args, **kwargs):
        promoter = self.get_object()
        promoter = services.promoter_update(promoter=promoter, **promoter_fields(self.merchant.pk, body_dict(request)))
        return Response(PromoterSerializer(promoter).data)
