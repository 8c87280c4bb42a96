"""The merchant API for a promoter's payout method and its change log."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api_common import body_dict, errors, known_fields
from promoters.models import Promoter

from . import methods
from .models import PayoutMethod, PayoutMethodChange

WRITABLE = ("kind", "paypal_email", "account_holder", "iban", "bic")


class PayoutMethodSerializer(serializers.Serializer):
    promoter = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=PayoutMethod.Kind.values, help_text="paypal, bank, or manual (paid by hand)")
    paypal_email = serializers.CharField(required=False, allow_blank=True, max_length=254, help_text="paypal: required")
    account_holder = serializers.CharField(required=False, allow_blank=True, max_length=70, help_text="bank: required")
    iban = serializers.CharField(
        required=False, allow_blank=True, max_length=50,
        help_text=(
            f"bank: required; stored compact, upper case. {methods.MASKED_IBAN_HELP} Sent back masked it "
            "stands for the stored IBAN if it is its mask (nothing changes), and is refused otherwise: "
            "send the full IBAN to change it, or leave the field out of a PATCH to keep it."
        ),
    )
    bic = serializers.CharField(
        required=False, allow_blank=True, max_length=20, help_text="bank: optional; must be of the IBAN's country"
    )
    updated_at = serializers.DateTimeField(read_only=True, allow_null=True, help_text="null: never set (paid by hand)")

    def to_representation(self, pair) -> dict:
        promoter, method = pair
        return {
            "promoter": promoter.pk,
            **methods.masked_state(methods.method_state(method)),
            "updated_at": method.updated_at.isoformat() if method else None,
        }


class PayoutMethodStateSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=PayoutMethod.Kind.values)
    paypal_email = serializers.CharField(allow_blank=True)
    account_holder = serializers.CharField(allow_blank=True)
    iban = serializers.CharField(
        allow_blank=True,
        help_text=f"{methods.MASKED_IBAN_HELP} Changes logged before the country code was shown hide it too.",
    )
    bic = serializers.CharField(allow_blank=True)


class PayoutMethodChangeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    changed_by = serializers.CharField(help_text="promoter:<id>, merchant:<id> key:<prefix>, or staff:<username>")
    before = PayoutMethodStateSerializer()
    after = PayoutMethodStateSerializer()
    changed_at = serializers.DateTimeField()

    def to_representation(self, change: PayoutMethodChange) -> dict:
        return {
            "id": change.pk,
            "changed_by": change.changed_by,
            "before": change.before,
            "after": change.after,
            "changed_at": change.changed_at.isoformat(),
        }


def _promoter(request, id: int) -> Promoter:
    return get_object_or_404(Promoter, pk=id, merchant=request.user.merchant)


def _changed_by(request) -> str:
    merchant = request.user.merchant
    return f"merchant:{merchant.pk} key:{merchant.api_key_prefix}"


def _validated(request, *, partial: bool) -> dict:
    data = known_fields(body_dict(request), WRITABLE, ("promoter", "updated_at"))
    serializer = PayoutMethodSerializer(data=data, partial=partial)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _write_schema(summary: str, description: str):
    return extend_schema(
        tags=["promoters"], summary=summary, description=description, request=PayoutMethodSerializer,
        responses={200: PayoutMethodSerializer, **errors(400, 401, 404)},
    )


class PayoutMethodView(APIView):
    @extend_schema(
        tags=["promoters"], summary="A promoter's payout method", responses={200: PayoutMethodSerializer, **errors(401, 404)}
    )
    def get(self, request, id: int):
        promoter = _promoter(request, id)
        method = PayoutMethod.objects.filter(promoter=promoter).first()
        return Response(PayoutMethodSerializer((promoter, method)).data)

    @_write_schema(
        "Set a promoter's payout method",
        "Replaces the method: the fields the kind does not use must be empty. A change is logged (see `changes/`); "
        "sending what is already set changes nothing.",
    )
    def put(self, request, id: int):
        promoter = _promoter(request, id)
        method = methods.payout_method_set(promoter=promoter, changed_by=_changed_by(request), **_validated(request, partial=False))
        return Response(PayoutMethodSerializer((promoter, method)).data)

    @_write_schema(
        "Change some fields of a promoter's payout method",
        "Only the fields sent change: a new BIC, say, needs no IBAN. A new `kind` starts from empty fields. Checked "
        "and logged as a PUT; an IBAN sent masked is taken as the stored one if it is its mask and refused otherwise.",
    )
    def patch(self, request, id: int):
        promoter = _promoter(request, id)
        method = methods.payout_method_update(promoter=promoter, changed_by=_changed_by(request), **_validated(request, partial=True))
        return Response(PayoutMethodSerializer((promoter, method)).data)


@extend_schema(
    tags=["promoters"],
    summary="Changes of a promoter's payout method, newest first",
    responses={200: PayoutMethodChangeSerializer(many=True), **errors(401, 404)},
)
class PayoutMethodChangesView(generics.ListAPIView):
    serializer_class = PayoutMethodChangeSerializer
    filter_backends = []

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return PayoutMethodChange.objects.none()
        return PayoutMethodChange.objects.filter(promoter=_promoter(self.request, self.kwargs["id"])).order_by("-changed_at", "-id")


class PayoutDetailsLinkSerializer(serializers.Serializer):
    url = serializers.URLField(help_text="Send it to the promoter: a page where they set their own payout details")
    expires_at = serializers.DateTimeField(help_text="Also void once the details change")


@extend_schema(
    tags=["promoters"],
    summary="A link for the promoter to set their own payout details",
    request=None,
    responses={201: PayoutDetailsLinkSerializer, **errors(401, 404)},
)
class PayoutDetailsLinkView(APIView):
    def post(self, request, id: int):
        promoter = _promoter(request, id)
        path = reverse("payout-details", args=[methods.payout_details_token(promoter)])
        base = settings.TRACKING_BASE_URL or request.build_absolute_uri("/").rstrip("/")
        expires = timezone.now() + timedelta(days=methods.LINK_DAYS)
        return Response({"url": f"{base}{path}", "expires_at": expires.isoformat()}, status=201)
