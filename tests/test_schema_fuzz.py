"""Schemathesis over the OpenAPI schema served at /api/v1/schema/, in process through the WSGI
app, as an authenticated merchant with a program, a promoter, a link and an event to read.

Every operation, the postback included (with the merchant's real token in the path), gets
valid and invalid requests (schemathesis' positive and negative modes) and must never answer
5xx, and must answer what the schema documents: status code, content type and body.

The schema is loaded when the module is collected (the schema view reads no database) and
each operation is a test of its own. Schemathesis' own pytest integration is not used: on
pytest 9.2 the items it makes for the operations of one test function all share one node id
(and its ``from_fixture`` runner sets ``request.node._nodeid``, which fails), so under xdist
all but one operation would silently not run.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import schemathesis
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import load_all_checks, not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from affiliate import events
from affiliate.models import ConversionEvent
from tests.factories import LinkFactory, ProgramFactory, PromoterFactory, make_merchant

pytestmark = [pytest.mark.xdist_group("schema_fuzz")]

load_all_checks()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SCHEMA = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())
LOADED = list(SCHEMA.get_all_operations())
OPERATIONS = {result.ok().label: result.ok() for result in LOADED if isinstance(result, Ok)}
# Bounded: a few examples per operation and mode, the same ones on every run, no deadline
# (tests never assert on time) and no example database written to the working tree.
FUZZ_SETTINGS = settings(
    max_examples=15,  # per mode: 30 requests per operation
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def seeded(django_db_setup, django_db_blocker):
    """A merchant with one of everything, so that reads by id can hit real objects.

    Set up once for the module and committed: each request then commits on its own, as in
    production (no test transaction that a database error would poison), and what one
    operation creates, the next can read. The database is flushed once at the end, instead
    of after every operation (that flush costs a second a test on PostgreSQL)."""
    try:
        with django_db_blocker.unblock():
            data = _seed()
        yield data
    finally:
        with django_db_blocker.unblock():
            call_command("flush", interactive=False, verbosity=0)


def _seed() -> dict:
    merchant = make_merchant("Fuzz Shop", ["shop.example.com"])
    program = ProgramFactory(merchant=merchant, name="Default")
    promoter = PromoterFactory(program=program, email="anna@example.com", name="Anna", coupon_code="ANNA10")
    link = LinkFactory(promoter=promoter, code="fuzzlink", destination_url="https://shop.example.com/p/1")
    event = events.event_ingest(
        merchant=merchant,
        payload={"type": "purchase", "customer_id": "cust-1", "order_id": "A-1", "amount": "120.00", "coupon": "ANNA10"},
    ).event
    ids = {
        "/api/v1/programs/": program.pk,
        "/api/v1/promoters/": promoter.pk,
        "/api/v1/links/": link.pk,
        "/api/v1/events/": event.pk,
    }
    client = Client(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")

    def real_id(collection: str):
        """A seeded object's id; for another collection, the first one it lists, if any."""
        if collection not in ids:
            response = client.get(collection)
            results = response.json().get("results") if response.status_code == 200 else None
            ids[collection] = results[0]["id"] if results else None
        return ids[collection]

    return {"merchant": merchant, "real_id": real_id}


def test_the_schema_documents_the_contract():
    assert [result for result in LOADED if not isinstance(result, Ok)] == []
    contract = {
        "GET /api/v1/events/",
        "GET /api/v1/events/{id}/",
        "GET /api/v1/links/",
        "GET /api/v1/merchant/",
        "GET /api/v1/programs/{id}/",
        "GET /api/v1/promoters/",
        "GET /api/v1/promoters/{id}/",
        "GET /postback/{token}",
        "PATCH /api/v1/merchant/",
        "PATCH /api/v1/programs/{id}/",
        "PATCH /api/v1/promoters/{id}/",
        "POST /api/v1/events/",
        "POST /api/v1/links/",
        "POST /api/v1/programs/",
        "POST /api/v1/promoters/",
    }
    assert sorted(contract - set(OPERATIONS)) == []


def point_at_seeded_objects(case, seeded, realistic: bool) -> None:
    """The postback gets the merchant's real token (else every call is a 404 and the view is
    never reached); an ``{id}`` gets, half of the time, a real object of its collection."""
    params = case.path_parameters
    if not params:
        return
    if "token" in params:
        params["token"] = seeded["merchant"].test_postback_token
    if "id" in params and realistic:
        real = seeded["real_id"](case.operation.path.rsplit("{id}", 1)[0])
        if real is not None:
            params["id"] = real


def nudge_towards_valid(case, seeded) -> None:
    """Give valid values to the fields random data almost never gets right (ids of the
    merchant's objects, a link destination on its domain, an amount), so that valid
    requests go past validation into the services and their writes."""
    real_id = seeded["real_id"]
    values = {
        "program": real_id("/api/v1/programs/"),
        "promoter": real_id("/api/v1/promoters/"),
        "destination_url": "https://shop.example.com/p/1",
        "amount": "12.34",
        "currency": "USD",
        "occurred_at": (timezone.now() - timedelta(days=1)).isoformat(),
    }
    for name in ("body", "query"):
        data = getattr(case, name)
        if not isinstance(data, dict):
            continue
        for key, value in values.items():
            if key in data:
                data[key] = value if name == "body" or isinstance(value, str) else str(value)
        # A refund of the seeded order by its customer; a purchase of an order of its own.
        if data.get("type") == "refund":
            data.update(customer_id="cust-1", order_id="A-1")
        elif data.get("type") == "purchase" and not data.get("order_id"):
            data["order_id"] = f"F-{len(case.operation.label)}-{len(str(data))}"
    if case.headers:
        case.headers.pop("Idempotency-Key", None)


@pytest.mark.parametrize("label", sorted(OPERATIONS))
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_operation_conforms_to_the_schema(label, mode, seeded, django_db_blocker):
    operation = OPERATIONS[label]
    headers = {"Authorization": f"Bearer {seeded['merchant'].test_api_key}"}

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode), realistic=st.booleans())
    def fuzz(case, realistic):
        point_at_seeded_objects(case, seeded, realistic)
        if realistic and mode is GenerationMode.POSITIVE:
            nudge_towards_valid(case, seeded)
        case.call_and_validate(headers=headers, checks=CHECKS)

    with django_db_blocker.unblock():
        fuzz()


@pytest.mark.parametrize(
    "field, value",
    [("customer_id", "c\x00"), ("order_id", "A-\x001"), ("coupon", "\x00"), ("unknown_key\x00", "1")],
)
def test_nul_character_in_an_event_is_a_400(db, merchant, program, field, value):
    payload = {"type": "purchase", "customer_id": "cust-1", "order_id": "A-1", "amount": "1.00", field: value}
    client = Client(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")

    r = client.post("/api/v1/events/", payload, content_type="application/json")

    assert r.status_code == 400, r.content
    assert r.json()["error"]["code"] == "invalid"
    assert ConversionEvent.objects.filter(merchant=merchant).count() == 0
