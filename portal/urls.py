from django.urls import path

from . import insight_views, views

app_name = "portal"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("summary.json", views.summary, name="summary"),
    path("switch/", views.switch, name="switch"),
    path("links/", views.links, name="links"),
    path("links/<str:code>/", views.link_detail, name="link"),
    path("links/<str:code>/qr.svg", views.link_qr, name="link-qr"),
    path("commissions/", views.commissions, name="commissions"),
    path("commissions.csv", views.commissions_csv, name="commissions-csv"),
    path("team/", views.team, name="team"),
    path("payouts/", views.payouts, name="payouts"),
    path("statements/<int:statement_id>.pdf", views.statement_pdf, name="statement-pdf"),
    path("statements/<int:statement_id>.csv", views.statement_csv, name="statement-csv"),
    path("payout-details/", views.payout_details, name="payout-details"),
    path("api-key/", views.api_key, name="api-key"),
    path("content/", insight_views.content, name="content"),
    path("materials/", insight_views.materials, name="materials"),
]
