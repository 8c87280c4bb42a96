"""Content intelligence: the content API and the portal's content and materials pages."""

from django.urls import path

from . import api, views

app_name = "insights"

urlpatterns = [
    path("api/v1/me/content/", api.MeContentView.as_view(), name="me-content"),
    path("api/v1/me/content/<int:id>/", api.MeContentDetailView.as_view(), name="me-content-detail"),
    path("api/v1/content/", api.MerchantContentView.as_view(), name="merchant-content"),
    path("portal/content/", views.content, name="content"),
    path("portal/materials/", views.materials, name="materials"),
]
