"""Promoter keys: the promoter's own key, made in the portal, opens the ``/api/v1/me/...``
APIs of every app (the portal's and the content insights'). One authentication for all."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions, permissions

from merchants.auth import BearerKeyAuthentication, KeyPrincipal

from .models import Promoter, PromoterApiToken
from .services import PROMOTER_KEY_PREFIX, promoter_key_digest


class PromoterPrincipal(KeyPrincipal):
    """``request.user`` on the promoter API: the promoter, authenticated by their key."""

    kind = "promoter"

    def __init__(self, promoter: Promoter):
        super().__init__(promoter)
        self.promoter = promoter


class PromoterKeyAuthentication(BearerKeyAuthentication):
    key_name = "promoter key"

    def principal_for(self, key: str) -> PromoterPrincipal:
        if not key.startswith(PROMOTER_KEY_PREFIX):
            raise exceptions.AuthenticationFailed("This API takes a promoter key, made in the promoter portal.")
        token = (
            PromoterApiToken.objects.select_related("promoter__program")
            .filter(key_hash=promoter_key_digest(key)).first()
        )
        if token is None:
            raise exceptions.AuthenticationFailed("The promoter key is not valid.")
        return PromoterPrincipal(token.promoter)


class IsPromoter(permissions.BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.user, PromoterPrincipal)


class PromoterKeyScheme(OpenApiAuthenticationExtension):
    target_class = "promoters.auth.PromoterKeyAuthentication"
    name = "PromoterKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A promoter's own key, made in the promoter portal."}
