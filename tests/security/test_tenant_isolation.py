"""Every operation of the API schema that takes an object's id answers 404 to another
tenant's credentials (another merchant's key; for the promoter's own API, another
promoter's key, of the same merchant or another) and a write through it changes nothing;
every list shows another tenant none of our rows. The schema drives it: a new route with an
id, or a new list, fails ``test_every_route_of_the_schema_is_covered`` until it is added
here (tests/merchant/test_api_isolation.py checks the merchant routes of the URL conf too)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from affiliate.models import ConversionEvent, ReferralLink
from insights.content import content_create
from insights.models import Content
from merchants.models import Program
from payouts import webhooks
from payouts.models import Commission, PayoutMethod, PayoutMethodChange, WebhookDelivery, WebhookEndpoint
from promoters.models import Promoter
from promoters.services import promoter_api_token_issue
from tests.factories import PromoterFactory

pytestmark = pytest.mark.django_db

# The operations with an object's id in the path, by the object the id names.
ID_OF = {
    "/api/v1/programs/{id}/": "program",
    "/api/v1/promoters/{id}/": "promoter",
    "/api/v1/promoters/{id}/balance/": "promoter",
    "/api/v1/promoters/{id}/payout-method/": "promoter",
    "/api/v1/promoters/{id}/payout-method/changes/": "promoter",
    "/api/v1/promoters/{id}/payout-method/link/": "promoter",
    "/api/v1/links/{id}/": "link",
    "/api/v1/events/{id}/": "event",
    "/api/v1/events/{id}/journey/": "event",
    "/api/v1/commissions/{id}/": "commission",
    "/api/v1/webhooks/{id}/": "webhook",
    "/api/v1/webhooks/{id}/deliveries/": "webhook",
    "/api/v1/webhooks/deliveries/{id}/replay/": "delivery",
    "/api/v1/me/content/{id}/": "content",
}
# The postback's path parameter is the merchant's credential itself, not an object's id: an
# unknown token is a 404 (tests/affiliate/test_postback.py).
CREDENTIAL_IN_PATH = {"/postback/{token}"}
# Writes get a valid body, so that only whose object it is can refuse them.
BODIES = {
    "PATCH /api/v1/programs/{id}/": {"name": "Taken"},
    "PATCH /api/v1/promoters/{id}/": {"status": "inactive"},
    "PUT /api/v1/promoters/{id}/payout-method/": {"kind": "paypal", "paypal_email": "thief@x.example"},
    "PATCH /api/v1/promoters/{id}/payout-method/": {"kind": "paypal", "paypal_email": "thief@x.example"},
    "PATCH /api/v1/webhooks/{id}/": {"active": False},
}
# The lists, with the model and the owner field that cuts them: the merchant's (merchant
# key) or the promoter's (promoter key).
LISTS = {
    "/api/v1/programs/": (Program, "merchant"),
    "/api/v1/promoters/": (Promoter, "merchant"),
    "/api/v1/links/": (ReferralLink, "merchant"),
    "/api/v1/events/": (ConversionEvent, "merchant"),
    "/api/v1/commissions/": (Commission, "merchant"),
    "/api/v1/webhooks/": (WebhookEndpoint, "merchant"),
    "/api/v1/content/": (Content, "merchant"),
    "/api/v1/me/commissions/": (Commission, "promoter"),
    "/api/v1/me/content/": (Content, "promoter"),
}
# Reads of the caller itself, nothing else's: the merchant, the promoter and their figures.
OWN = {"/api/v1/merchant/", "/api/v1/me/", "/api/v1/me/summary/"}
METHODS = {"get", "post", "put", "patch", "delete"}


def schema_operations() -> dict[str, dict]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {
        f"{method.upper()} {path}": operation
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def is_promoters_own(operation: dict) -> bool:
    schemes = {name for requirement in operation.get("security", []) for name in requirement}
    return bool(schemes) and all(name.startswith("Promoter") for name in schemes)


def test_every_route_of_the_schema_is_covered():
    operations = schema_operations()
    paths = {label.split(" ", 1)[1] for label in operations}
    with_ids = {p for p in paths if "{" in p}
    reads = {label.split(" ", 1)[1] for label in operations if label.startswith("GET ") and "{" not in label}

    assert sorted(with_ids - set(ID_OF) - CREDENTIAL_IN_PATH) == []
    assert sorted(set(ID_OF) - with_ids) == []
    assert sorted(reads - set(LISTS) - OWN) == []
    assert {"/api/v1/me/content/{id}/", "/api/v1/me/content/", "/api/v1/content/"} <= paths


@pytest.fixture
def ours(world, other):
    """One of everything of our merchant's, and the credentials of the other tenants."""
    endpoint, _ = webhooks.webhook_endpoint_create(merchant=world.merchant, url="https://hooks.example.com/in", events=["payout.paid"])
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_type="payout.paid", event_id="d-1", payload={"id": "d-1"}, status="failed")
    content = content_create(promoter=world.pia, title="Pia's tips", format="article", link_id=world.pia_blog.pk,
                             published_at=timezone.now() - timedelta(days=1))
    stranger = PromoterFactory(program=other[1], email="olga@other.example.net")
    ids = {
        "program": world.program.pk, "promoter": world.pia.pk, "link": world.pia_blog.pk, "event": world.o1["id"],
        "commission": Commission.objects.filter(promoter=world.pia).order_by("id").first().pk,
        "webhook": endpoint.pk, "delivery": delivery.pk, "content": content.pk,
    }
    return {
        "world": world, "ids": ids, "pia": world.pia,
        "merchant": key_client(world.merchant.test_api_key), "promoter": key_client(promoter_api_token_issue(promoter=world.pia)),
        "other merchant": key_client(other[0].test_api_key),
        "other promoters": {
            "same merchant": (world.olly, key_client(promoter_api_token_issue(promoter=world.olly))),
            "other merchant": (stranger, key_client(promoter_api_token_issue(promoter=stranger))),
        },
    }


def key_client(key: str) -> APIClient:
    return APIClient(HTTP_AUTHORIZATION=f"Bearer {key}")


def state():
    return (
        list(Program.objects.order_by("id").values()), list(Promoter.objects.order_by("id").values()),
        list(WebhookEndpoint.objects.order_by("id").values()), list(WebhookDelivery.objects.order_by("id").values()),
        list(Content.objects.order_by("id").values()), PayoutMethod.objects.count(), PayoutMethodChange.objects.count(),
    )


def test_another_tenants_credentials_get_404_on_every_route_with_an_id_and_write_nothing(ours):
    operations = {label: op for label, op in schema_operations().items() if label.split(" ", 1)[1] in ID_OF}
    before = state()
    tried = set()
    for label, operation in sorted(operations.items()):
        method, template = label.split(" ", 1)
        path = template.replace("{id}", str(ours["ids"][ID_OF[template]]))
        if is_promoters_own(operation):
            owner, outsiders = ours["promoter"], {who: c for who, (_, c) in ours["other promoters"].items()}
        else:
            owner, outsiders = ours["merchant"], {"other merchant": ours["other merchant"]}
        if method == "GET":
            assert owner.get(path).status_code == 200, label  # the route works for its owner
        for who, client in outsiders.items():
            response = getattr(client, method.lower())(path, BODIES.get(label, {}), format="json")
            assert response.status_code == 404, (label, who, response.content[:200])
            assert response.json()["error"]["code"] == "not_found", (label, who)
        tried.add(template)
    assert tried == set(ID_OF)
    assert state() == before


def test_no_list_shows_another_tenant_our_rows(ours):
    operations = schema_operations()
    merchant = ours["world"].merchant
    for path, cut in LISTS.items():
        model, owner_field = cut
        assert f"GET {path}" in operations, path
        if is_promoters_own(operations[f"GET {path}"]):
            owner, outsiders = ours["promoter"], {who: c for who, (_, c) in ours["other promoters"].items()}
        else:
            owner, outsiders = ours["merchant"], {"other merchant": ours["other merchant"]}
        mine = set(model.objects.filter(**{owner_field: ours["pia"] if owner_field == "promoter" else merchant}).values_list("id", flat=True))
        listed = {row["id"] for row in owner.get(path, {"page_size": 100}).json()["results"]}
        assert listed and listed <= mine, path  # the list has rows, ours
        for who, client in outsiders.items():
            response = client.get(path, {"page_size": 100})
            assert response.status_code == 200, (path, who, response.content[:200])
            seen = {row["id"] for row in response.json()["results"]}
            assert seen & mine == set(), (path, who)
