"""Merchant API keys: random, shown once, stored as a SHA-256 digest."""

from __future__ import annotations

import hashlib
import secrets

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions, permissions

from .models import Merchant

API_KEY_PREFIX = "mk_live_"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


class KeyPrincipal:
    """What ``request.user`` is on an API authenticated by a key: the key's owner."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    kind = "key"

    def __init__(self, owner):
        self.pk = owner.pk

    def __str__(self) -> str:
        return f"{self.kind}:{self.pk}"


class MerchantPrincipal(KeyPrincipal):
    kind = "merchant"

    def __init__(self, merchant: Merchant):
        super().__init__(merchant)
        self.merchant = merchant


class BearerKeyAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <key>``; subclasses look the key up (``principal_for``)."""

    keyword = "Bearer"
    key_name = "api key"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword.lower():
            raise exceptions.AuthenticationFailed(f"Send the header as 'Authorization: Bearer <{self.key_name}>'.")
        return self.principal_for(parts[1]), parts[1]

    def principal_for(self, key: str):
        raise NotImplementedError

    def authenticate_header(self, request):
        return self.keyword


class MerchantKeyAuthentication(BearerKeyAuthentication):
    def principal_for(self, key: str) -> MerchantPrincipal:
        # A lookup by digest compares digests, not the secret, so its timing tells nothing.
        # The postback secret is decrypted only where a postback is signed, not on every call.
        merchant = Merchant.objects.filter(api_key_hash=digest(key)).defer("postback_secret").first()
        if merchant is None:
            raise exceptions.AuthenticationFailed("The API key is not valid.")
        return MerchantPrincipal(merchant)


class IsMerchant(permissions.BasePermission):
    def has_permission(self, request, view):
        return isinstance(request.user, MerchantPrincipal)


class MerchantKeyScheme(OpenApiAuthenticationExtension):
    target_class = "merchants.auth.MerchantKeyAuthentication"
    name = "BearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "The merchant API key printed by create_merchant."}
