"""Pieces every API module shares: the merchant-scoped viewset, the error schema and body
helpers."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, viewsets

from .errors import ServiceValidationError


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


def errors(*codes: int) -> dict:
    """The documented error answers of an operation: ``codes``, and 429, which any call may
    get once over its rate limit (affiliate/ratelimit.py)."""
    codes = tuple(sorted({*codes, 429}))
    descriptions = {
        400: "Invalid input", 401: "Missing or wrong API key", 403: "Forbidden", 404: "Not found",
        409: "Idempotency conflict", 413: "Body too large", 429: "Throttled", 503: "Service unavailable",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=descriptions[code]) for code in codes}


def body_dict(request) -> dict:
    data = request.data
    if not isinstance(data, dict):
        raise ServiceValidationError({"non_field_errors": ["The body must be a JSON object."]})
    data = dict(data)
    refuse_nul(data)
    return data


def _has_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


def refuse_nul(data: dict) -> None:
    """A NUL character can be stored nowhere (PostgreSQL refuses it in text and JSON):
    name the field and refuse the request before anything is written."""
    problems = {}
    for key, value in data.items():
        if _has_nul(key):
            problems["non_field_errors"] = ["A field name contains the NUL character."]
        elif _has_nul(value):
            problems[key] = ["Must not contain the NUL character."]
    if problems:
        raise ServiceValidationError(problems)


def resolve_id(model, merchant_id: int, raw, field: str, problems: dict):
    """Turn an id in a body into the merchant's object, or note a problem on ``field``."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, str)) or not str(raw).strip().isdigit():
        problems[field] = ["Must be an integer id."]
        return None
    obj = model.objects.filter(pk=int(raw), merchant_id=merchant_id).first()
    if obj is None:
        problems[field] = ["No object with this id."] if field != "sponsor" else ["No promoter with this id."]
    return obj


class MerchantScopedViewSet(viewsets.GenericViewSet):
    """Every queryset is cut to the calling merchant: another merchant's object is a 404."""

    model = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no merchant
            return self.model.objects.none()
        return self.model.objects.filter(merchant_id=self.request.user.merchant.pk)

    @property
    def merchant(self):
        """The calling merchant (``merchants.models.Merchant``)."""
        return self.request.user.merchant


def known_fields(data: dict, writable, read_only=()) -> dict:
    """The writable fields of a body. Echoed read-only fields are allowed; anything else is a
    400, so that a misspelt setting is never silently ignored."""
    unknown = sorted(set(data) - set(writable) - set(read_only))
    if unknown:
        raise ServiceValidationError({name: ["Unknown field."] for name in unknown})
    return {name: data[name] for name in writable if name in data}


def read_schema(serializer) -> dict:
    """The documented answers of a list (filters can be invalid: 400; a page past the end:
    404) and of a read by id (not this merchant's, or no such id: 404)."""
    return {
        "list": extend_schema(responses={200: serializer, **errors(400, 401, 404)}),
        "retrieve": extend_schema(responses={200: serializer, **errors(401, 404)}),
    }
