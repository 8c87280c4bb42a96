from django.urls import path

from . import views

app_name = "merchant"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("switch/", views.switch, name="switch"),
    path("promoters/", views.top_promoters, name="promoters"),
    path("channels/", views.channels, name="channels"),
    path("conversions/", views.conversions, name="conversions"),
    path("conversions/<int:event_id>/", views.conversion, name="conversion"),
    path("programs/", views.programs, name="programs"),
    path("programs/<int:program_id>/settings/", views.program_settings, name="program-settings"),
    path("approvals/", views.approvals, name="approvals"),
    path("approvals/<int:promoter_id>/", views.approval_decide, name="approval-decide"),
    path("review/", views.review, name="review"),
    path("review/<int:event_id>/", views.review_decide, name="review-decide"),
    path("insights/", views.insights_value, name="insights"),
    path("insights/segments/", views.insights_segments, name="insights-segments"),
    path("insights/content/", views.insights_content, name="insights-content"),
]
