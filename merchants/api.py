"""The merchant API for the merchant's own settings and its programs.

Thin: parse, call one service, serialise. Shapes follow CONTRACT.md to the letter.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from core import money
from core.api_common import MerchantScopedViewSet, body_dict, errors, known_fields, read_schema
from core.errors import ServiceValidationError
from core.validation import format_rate

from . import services
from .models import Merchant, Program

# --- Merchant settings ----------------------------------------------------------------


class MerchantSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=200)
    domains = serializers.ListField(child=serializers.CharField(), min_length=1)
    require_signature = serializers.BooleanField()

    def to_representation(self, merchant: Merchant) -> dict:
        return {
            "id": merchant.pk,
            "name": merchant.name,
            "domains": list(merchant.domains),
            "require_signature": merchant.require_signature,
        }


class MerchantView(APIView):
    @extend_schema(responses={200: MerchantSerializer, **errors(401)}, summary="The calling merchant's settings")
    def get(self, request):
        return Response(MerchantSerializer(request.user.merchant).data)

    @extend_schema(
        request=MerchantSerializer(partial=True),
        responses={200: MerchantSerializer, **errors(400, 401)},
        summary="Change the calling merchant's settings",
    )
    def patch(self, request):
        data = body_dict(request)
        fields = known_fields(data, ("name", "domains", "require_signature"), ("id",))
        if "require_signature" in fields and not isinstance(fields["require_signature"], bool):
            raise ServiceValidationError({"require_signature": ["Must be true or false."]})
        merchant = services.merchant_update(merchant=request.user.merchant, **fields)
        return Response(MerchantSerializer(merchant).data)


# --- Programs -------------------------------------------------------------------------

RateString = serializers.CharField  # decimal strings such as "0.10"


class FraudRulesSerializer(serializers.Serializer):
    """A program's fraud rules (CONTRACT v2): 0 and null turn a rule off. A PATCH may send some
    of them; the others keep their value."""

    bots = serializers.BooleanField(default=True, help_text="Flag clicks from known bots (by user agent).")
    click_flood_max = serializers.IntegerField(
        default=20, min_value=0, help_text="Flag a visitor's or an IP's clicks on one link beyond this many within click_flood_seconds."
    )
    click_flood_seconds = serializers.IntegerField(default=60, min_value=0)
    self_referral_email = serializers.BooleanField(
        default=True, help_text="Flag a conversion whose customer id (or payload email) is a credited promoter's email."
    )
    min_click_to_conversion_seconds = serializers.IntegerField(
        default=0, min_value=0, help_text="Flag a conversion this soon after its last click (0: off; fast buyers are honest too)."
    )
    ip_max_promoters = serializers.IntegerField(
        default=0, min_value=0,
        help_text="Flag a conversion whose click's IP is behind more promoters' conversions than this within a day "
        "(0: off; carrier NAT puts many people behind one address).",
    )
    max_order_amount = serializers.CharField(
        default=None, allow_null=True, help_text="Money string: a purchase above it is flagged (null: off)."
    )


class ProgramSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=200)
    currency = serializers.CharField(default="USD", help_text="ISO 4217 code")
    attribution_model = serializers.ChoiceField(choices=Program.Model.values, default="mixed")
    first_click_share = RateString(default="0.60", help_text="Decimal string in [0, 1]")
    last_click_share = RateString(default="0.40", help_text="Decimal string in [0, 1]")
    lookback_days = serializers.IntegerField(default=30, min_value=1, max_value=3650)
    registration_bounty = serializers.CharField(default="0.00", help_text="Money string")
    first_purchase_rate = RateString(default="0.10")
    repeat_purchase_rate = RateString(default="0.05")
    tier_rates = serializers.ListField(child=RateString(), max_length=10, default=["0.05", "0.03", "0.02", "0.01"])
    compress_inactive = serializers.BooleanField(default=False)
    duplicate_click_seconds = serializers.IntegerField(default=0, min_value=0)
    hold_days = serializers.IntegerField(default=30, min_value=0)
    fraud = FraudRulesSerializer(required=False, help_text="The fraud rules; flagged conversions' commissions are held for review.")
    is_default = serializers.BooleanField(read_only=True)

    def to_representation(self, p: Program) -> dict:
        return {
            "id": p.pk,
            "name": p.name,
            "currency": p.currency,
            "attribution_model": p.attribution_model,
            "first_click_share": format_rate(p.first_click_share),
            "last_click_share": format_rate(p.last_click_share),
            "lookback_days": p.lookback_days,
            "registration_bounty": money.format_minor(p.registration_bounty_minor, p.currency),
            "first_purchase_rate": format_rate(p.first_purchase_rate),
            "repeat_purchase_rate": format_rate(p.repeat_purchase_rate),
            "tier_rates": [format_rate(r) for r in p.tier_rate_decimals],
            "compress_inactive": p.compress_inactive,
            "duplicate_click_seconds": p.duplicate_click_seconds,
            "hold_days": p.hold_days,
            "fraud": p.fraud_rules,
            "is_default": p.is_default,
        }


def program_fields(data: dict) -> dict:
    return known_fields(data, services.PROGRAM_FIELDS, ("id", "is_default"))


@extend_schema(tags=["programs"])
@extend_schema_view(**read_schema(ProgramSerializer))
class ProgramViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, mixins.UpdateModelMixin, MerchantScopedViewSet
):
    model = Program
    serializer_class = ProgramSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]
    filterset_fields = ["currency", "attribution_model"]

    @extend_schema(request=ProgramSerializer, responses={201: ProgramSerializer, **errors(400, 401)})
    def create(self, request, *args, **kwargs):
        program = services.program_create(merchant=self.merchant, **program_fields(body_dict(request)))
        return Response(ProgramSerializer(program).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ProgramSerializer(partial=True), responses={200: ProgramSerializer, **errors(400, 401, 404)})
    def partial_update(self, request, *args, **kwargs):
        program = services.program_update(program=self.get_object(), **program_fields(body_dict(request)))
        return Response(ProgramSerializer(program).data)
