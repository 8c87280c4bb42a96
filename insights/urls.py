"""Content intelligence: the content API (the portal serves the content and materials pages)."""

from django.urls import path

from . import api

app_name = "insights"

urlpatterns = [
    path("api/v1/me/content/", api.MeContentView.as_view(), name="me-content"),
    path("api/v1/me/content/<int:id>/", api.MeContentDetailView.as_view(), name="me-content-detail"),
    path("api/v1/content/", api.MerchantContentView.as_view(), name="merchant-content"),
]
