"""Every object route of the merchant API answers 404 to another merchant's key, and a write
through it changes nothing (the pages' side is in test_isolation.py)."""

from __future__ import annotations

import pytest

from config import urls as project_urls
from merchants.models import Program
from payouts import webhooks
from payouts.models import Commission, PayoutMethod, PayoutMethodChange, WebhookDelivery, WebhookEndpoint
from promoters.models import Promoter
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

OBJECT_ROUTES = {
    "program-detail", "promoter-detail", "promoter-balance", "promoter-payout-method", "promoter-payout-method-changes",
    "promoter-payout-details-link", "link-detail", "event-detail", "event-journey", "commission-detail",
    "webhook-detail", "webhook-deliveries", "webhook-delivery-replay",
}


def test_every_object_route_of_the_merchant_api_is_covered():
    with_ids = {p.name for p in project_urls.api_v1 if p.pattern.converters or p.pattern.regex.groups}
    assert with_ids == OBJECT_ROUTES


def requests(world, endpoint, delivery) -> list[tuple[str, str, str, dict]]:
    """(route name, method, path, body) for each route and method, on our merchant's objects."""
    pia, program = world.pia.pk, world.program.pk
    commission = Commission.objects.filter(merchant=world.merchant).order_by("id").first().pk
    return [
        ("program-detail", "get", f"/api/v1/programs/{program}/", {}),
        ("program-detail", "patch", f"/api/v1/programs/{program}/", {"name": "Taken"}),
        ("promoter-detail", "get", f"/api/v1/promoters/{pia}/", {}),
        ("promoter-detail", "patch", f"/api/v1/promoters/{pia}/", {"status": "inactive"}),
        ("promoter-balance", "get", f"/api/v1/promoters/{pia}/balance/", {}),
        ("promoter-payout-method", "get", f"/api/v1/promoters/{pia}/payout-method/", {}),
        ("promoter-payout-method", "put", f"/api/v1/promoters/{pia}/payout-method/", {"kind": "paypal", "paypal_email": "thief@x.example"}),
        ("promoter-payout-method", "patch", f"/api/v1/promoters/{pia}/payout-method/", {"kind": "paypal", "paypal_email": "thief@x.example"}),
        ("promoter-payout-method-changes", "get", f"/api/v1/promoters/{pia}/payout-method/changes/", {}),
        ("promoter-payout-details-link", "post", f"/api/v1/promoters/{pia}/payout-method/link/", {}),
        ("link-detail", "get", f"/api/v1/links/{world.pia_blog.pk}/", {}),
        ("event-detail", "get", f"/api/v1/events/{world.o1['id']}/", {}),
        ("event-journey", "get", f"/api/v1/events/{world.o1['id']}/journey/", {}),
        ("commission-detail", "get", f"/api/v1/commissions/{commission}/", {}),
        ("webhook-detail", "get", f"/api/v1/webhooks/{endpoint.pk}/", {}),
        ("webhook-detail", "patch", f"/api/v1/webhooks/{endpoint.pk}/", {"active": False}),
        ("webhook-deliveries", "get", f"/api/v1/webhooks/{endpoint.pk}/deliveries/", {}),
        ("webhook-delivery-replay", "post", f"/api/v1/webhooks/deliveries/{delivery.pk}/replay/", {}),
    ]


def state(world, endpoint, delivery):
    return (
        Program.objects.values().get(pk=world.program.pk),
        Promoter.objects.values().get(pk=world.pia.pk),
        WebhookEndpoint.objects.values().get(pk=endpoint.pk),
        WebhookDelivery.objects.values().get(pk=delivery.pk),
        PayoutMethod.objects.count(), PayoutMethodChange.objects.count(),
    )


def test_another_merchants_key_gets_404_on_every_object_route_and_writes_nothing(world, other):
    endpoint, _ = webhooks.webhook_endpoint_create(merchant=world.merchant, url="https://hooks.example.com/in", events=["payout.paid"])
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type="payout.paid", event_id="d-1", payload={"id": "d-1"}, status="failed")
    ours, theirs = client_for(world.merchant), client_for(other[0])
    all_requests = requests(world, endpoint, delivery)
    assert {name for name, *_ in all_requests} == OBJECT_ROUTES
    for name, method, path, _ in all_requests:
        if method == "get":
            assert ours.get(path).status_code == 200, name  # the route works for its merchant
    before = state(world, endpoint, delivery)
    for name, method, path, body in all_requests:
        response = getattr(theirs, method)(path, body, format="json")
        assert response.status_code == 404, (name, method, response.content[:200])
        assert response.json()["error"]["code"] == "not_found", (name, method)
    assert state(world, endpoint, delivery) == before
