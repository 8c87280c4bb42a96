from django.conf import settings

from .errors import is_api_path, json_error


class ApiBodyLimitMiddleware:
    """Refuse oversized bodies on the API with 413 before anything reads them."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if is_api_path(request.path):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return json_error("bad_request", "Content-Length is not a number.", 400)
            if length > settings.API_MAX_BODY_BYTES:
                return json_error(
                    "payload_too_large",
                    f"The request body is larger than {settings.API_MAX_BODY_BYTES} bytes.",
                    413,
                )
        return self.get_response(request)
