"""One error shape for everything under /api/ and /postback/:
``{"error": {"code", "message", "fields"}}``."""

from __future__ import annotations

import json
import logging
from decimal import Decimal

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.response import Response

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"


class ApiError(exceptions.APIException):
    """An error raised by a service or view with an explicit code, status and fields."""

    def __init__(self, code: str, message: str, *, status_code: int = 400, fields: dict | None = None):
        super().__init__(detail=message, code=code)
        self.status_code = status_code
        self.error_code = code
        self.message = message
        self.fields = fields or {}


class ServiceValidationError(Exception):
    """Raised by services for bad input; the API turns it into a 400 with ``fields``."""

    def __init__(self, fields: dict[str, list[str]] | None = None, *, message: str = "The request is not valid; see fields.", code: str = "invalid"):
        super().__init__(message)
        self.fields = fields or {}
        self.message = message
        self.code = code


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "fields": fields or {}}}


def json_error(code: str, message: str, status_code: int, fields: dict | None = None, headers=None) -> JsonResponse:
    response = JsonResponse(error_body(code, message, fields), status=status_code)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _flatten(detail) -> list[str]:
    if isinstance(detail, (list, tuple)):
        out = []
        for item in detail:
            out.extend(_flatten(item))
        return out
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            out.extend(f"{key}: {m}" for m in _flatten(value))
        return out
    return [str(detail)]


def _fields(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    return {"non_field_errors": _flatten(detail)}


_CODES = {
    exceptions.NotAuthenticated: ("not_authenticated", "Authentication is required: send 'Authorization: Bearer <api key>'."),
    exceptions.AuthenticationFailed: ("authentication_failed", None),
    exceptions.PermissionDenied: ("permission_denied", None),
    exceptions.NotFound: ("not_found", "Not found."),
    exceptions.MethodNotAllowed: ("method_not_allowed", None),
    exceptions.NotAcceptable: ("not_acceptable", None),
    exceptions.UnsupportedMediaType: ("unsupported_media_type", None),
    exceptions.Throttled: ("throttled", None),
    exceptions.ParseError: ("malformed_json", None),
}


def exception_handler(exc, context):
    """DRF's exception handler, rewritten to the contract's shape."""
    headers = {}
    if isinstance(exc, ApiError):
        return Response(error_body(exc.error_code, exc.message, exc.fields), status=exc.status_code)
    if isinstance(exc, ServiceValidationError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(error_body("payload_too_large", "The request body is too large."), status=413)
    elif isinstance(exc, DataError):
        # A value the database cannot hold came from the client (a filter, say): their input.
        return Response(
            error_body("invalid", "A value in the request cannot be stored or searched for; check the input."),
            status=400,
        )
    elif isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", exc)
        return Response(
            error_body("service_unavailable", "A backing service is unavailable; retry shortly."),
            status=503,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    elif isinstance(exc, DatabaseError):
        logger.exception("database error")
        return Response(
            error_body("service_unavailable", "The request could not be completed; retry shortly."),
            status=503,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    if not isinstance(exc, exceptions.APIException):
        return None
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body("invalid", "The request is not valid; see fields.", _fields(exc.detail)),
            status=400,
            headers=headers,
        )
    code, message = next(((c, m) for cls, (c, m) in _CODES.items() if isinstance(exc, cls)), (None, None))
    if code is None:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
    if message is None:
        message = " ".join(_flatten(exc.detail))
    return Response(error_body(code, message), status=exc.status_code, headers=headers)


class StrictJSONParser(JSONParser):
    """JSON with decimals kept exact and NaN/Infinity refused."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", "utf-8")
        try:
            text = stream.read().decode(encoding) if stream is not None else ""
            if not text.strip():
                return {}
            return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {exc}") from None


def _reject_constant(name):
    raise ValueError(f"{name} is not allowed")


def is_api_path(path: str) -> bool:
    return path.startswith("/api/") or path.startswith("/postback/")


def handler404(request, exception=None):
    if is_api_path(request.path):
        return json_error("not_found", "Not found.", status.HTTP_404_NOT_FOUND)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if is_api_path(request.path):
        return json_error("server_error", "Something went wrong on our side; it has been logged.", 500)
    from django.views.defaults import server_error

    return server_error(request)


def handler400(request, exception=None):
    if is_api_path(request.path):
        return json_error("bad_request", "The request could not be understood.", 400)
    from django.views.defaults import bad_request

    return bad_request(request, exception)


def handler403(request, exception=None):
    if is_api_path(request.path):
        return json_error("permission_denied", "You may not do this.", 403)
    from django.views.defaults import permission_denied

    return permission_denied(request, exception)
