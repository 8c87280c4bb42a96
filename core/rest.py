"""DRF plumbing named in settings (kept free of view imports to avoid import cycles)."""

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import PageNumberPagination


class Pagination(PageNumberPagination):
    """``{"count", "next", "previous", "results"}``; ``?page=`` and ``?page_size=`` (max 500)."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class JSONWhateverAccept(DefaultContentNegotiation):
    """The API answers JSON whatever the Accept header says (postbacks come from browsers and
    ad platforms that send anything); an explicit ``?format=`` still chooses."""

    def select_renderer(self, request, renderers, format_suffix=None):
        if format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE):
            return super().select_renderer(request, renderers, format_suffix)
        renderer = renderers[0]
        return renderer, renderer.media_type
