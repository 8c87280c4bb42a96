"""The promoter's own read-only API (``/api/v1/me/...``), opened by the key they make in the
portal: their profile and balance, the dashboard's figures, and their commissions. Nothing
here reaches another promoter's data: every read is of the key's promoter."""

from __future__ import annotations

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from core import money
from core.api_common import errors
from payouts.models import Commission
from payouts.selectors import promoter_balance
from promoters.auth import IsPromoter, PromoterKeyAuthentication
from promoters.models import Promoter

from . import selectors as reads


class PromoterApiView:
    authentication_classes = [PromoterKeyAuthentication]
    permission_classes = [IsPromoter]


BalanceSerializer = inline_serializer("PromoterOwnBalance", {
    "currency": serializers.CharField(),
    "pending": serializers.CharField(), "available": serializers.CharField(), "paid": serializers.CharField(),
})


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.EmailField()
    program = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Promoter.Status.values)
    referral_code = serializers.CharField()
    balance = BalanceSerializer


@extend_schema(tags=["promoter's own API"], responses={200: MeSerializer, **errors(401)})
class MeView(PromoterApiView, APIView):
    """The key's promoter and their balance."""

    def get(self, request):
        p = request.user.promoter
        return Response({
            "id": p.pk, "name": p.name, "email": p.email, "program": p.program_id, "status": p.status,
            "referral_code": p.referral_code, "balance": promoter_balance(p),
        })


SummarySerializer = inline_serializer("PromoterOwnSummary", {
    "currency": serializers.CharField(),
    "status": serializers.CharField(),
    "balance": BalanceSerializer,
    "totals": inline_serializer("PromoterOwnTotals", {
        "clicks": serializers.IntegerField(), "registrations": serializers.IntegerField(),
        "purchases": serializers.IntegerField(), "conversion_rate": serializers.CharField(allow_null=True),
        "earned": serializers.CharField(),
    }),
    "days": serializers.ListField(child=serializers.DateField()),
    "series": inline_serializer("PromoterOwnSeries", {
        "clicks": serializers.ListField(child=serializers.IntegerField()),
        "registrations": serializers.ListField(child=serializers.IntegerField()),
        "purchases": serializers.ListField(child=serializers.IntegerField()),
        "earned": serializers.ListField(child=serializers.CharField()),
    }),
    "updated_at": serializers.DateTimeField(),
})


@extend_schema(tags=["promoter's own API"], responses={200: SummarySerializer, **errors(401)})
class MeSummaryView(PromoterApiView, APIView):
    """The dashboard's figures: the last 30 days, day by day, and the balance."""

    def get(self, request):
        return Response(reads.dashboard(request.user.promoter))


class OwnCommissionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    event = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Commission.Kind.values)
    level = serializers.IntegerField(help_text="0: your own sale; k: an override from level k of your team")
    amount = serializers.CharField()
    currency = serializers.CharField()
    status = serializers.ChoiceField(choices=Commission.Status.values)
    available_at = serializers.DateTimeField()

    def to_representation(self, c: Commission) -> dict:
        return {
            "id": c.pk, "created_at": c.created_at.isoformat(), "event": c.event_id, "kind": c.kind, "level": c.level,
            "amount": money.format_minor(c.amount_minor, c.currency), "currency": c.currency, "status": c.status,
            "available_at": c.available_at.isoformat(),
        }


class OwnCommissionFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Commission.Status.choices)
    kind = filters.ChoiceFilter(choices=Commission.Kind.choices)
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Commission
        fields = ["status", "kind"]


@extend_schema(tags=["promoter's own API"], responses={200: OwnCommissionSerializer(many=True), **errors(400, 401, 404)})
class MeCommissionsView(PromoterApiView, generics.ListAPIView):
    """Your commissions, newest first; overrides name their level, never the team member."""

    serializer_class = OwnCommissionSerializer
    filterset_class = OwnCommissionFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Commission.objects.none()
        return reads.commissions(self.request.user.promoter)
