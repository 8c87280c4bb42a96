import os

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from affiliate import views as tracking
from affiliate.api import EventViewSet, LinkViewSet, PostbackSlashView, PostbackView
from attribution.api import EventJourneyView
from merchants.api import MerchantView, ProgramViewSet
from payouts import views as payout_pages
from payouts.api import CommissionViewSet, PromoterBalanceView
from payouts.methods_api import PayoutDetailsLinkView, PayoutMethodChangesView, PayoutMethodView
from payouts.webhooks_api import WebhookDeliveryReplayView, WebhookEndpointViewSet
from portal import views as portal
from portal.api import MeCommissionsView, MeSummaryView, MeView
from promoters.api import PromoterViewSet

router = SimpleRouter(trailing_slash=True)
router.register("programs", ProgramViewSet, basename="program")
router.register("promoters", PromoterViewSet, basename="promoter")
router.register("links", LinkViewSet, basename="link")
router.register("events", EventViewSet, basename="event")
router.register("commissions", CommissionViewSet, basename="commission")
router.register("webhooks", WebhookEndpointViewSet, basename="webhook")

api_v1 = [
    path("merchant/", MerchantView.as_view(), name="merchant"),
    path("promoters/<int:id>/balance/", PromoterBalanceView.as_view(), name="promoter-balance"),
    path("promoters/<int:id>/payout-method/", PayoutMethodView.as_view(), name="promoter-payout-method"),
    path("promoters/<int:id>/payout-method/changes/", PayoutMethodChangesView.as_view(), name="promoter-payout-method-changes"),
    path("promoters/<int:id>/payout-method/link/", PayoutDetailsLinkView.as_view(), name="promoter-payout-details-link"),
    path("events/<int:id>/journey/", EventJourneyView.as_view(), name="event-journey"),
    path("webhooks/deliveries/<int:id>/replay/", WebhookDeliveryReplayView.as_view(), name="webhook-delivery-replay"),
    path("me/", MeView.as_view(), name="me"),
    path("me/summary/", MeSummaryView.as_view(), name="me-summary"),
    path("me/commissions/", MeCommissionsView.as_view(), name="me-commissions"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    *router.urls,
]

urlpatterns = [
    re_path(r"^r/(?P<code>[^/]+)/?$", tracking.track_redirect, name="track-redirect"),
    path("postback/<str:token>", PostbackView.as_view(), name="postback"),
    path("postback/<str:token>/", PostbackSlashView.as_view()),
    path("api/v1/", include(api_v1)),
    path("admin/", admin.site.urls),
    path("healthz", tracking.healthz, name="healthz"),
    path("payout-details/<str:token>/", payout_pages.payout_details, name="payout-details"),
    path("accounts/", include("allauth.urls")),
    re_path(r"^join/(?P<referral_code>[A-Za-z0-9]{1,32})/?$", portal.join, name="join"),
    path("portal/", include("portal.urls")),
    path("merchant/", include("dashboards.urls")),
    path("", include("insights.urls")),
]

if os.environ.get("BENCH_BARE_REDIRECT") == "1":
    urlpatterns.append(path("bare302", tracking.bare_redirect))

handler400 = "core.errors.handler400"
handler403 = "core.errors.handler403"
handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"
