"""Schemathesis over the OpenAPI schema served at /api/v1/schema/, in process through the WSGI
app, as an authenticated merchant with a program, a promoter, a link, an event and a piece
of content to read.

Every operation of the schema, the postback included (with the merchant's real token in the
path) and the promoter's own API (``/api/v1/me/...``, the insights' content routes included,
called with the promoter's key), gets valid and invalid requests (schemathesis' positive and
negative modes) and must never answer 5xx, and must answer what the schema documents: status
code, content type and body. Then sequences of calls follow the links schemathesis infers
between the operations (an id a POST answers, used by the GET, PATCH and sub-resources of
that id): ``test_sequences_along_the_links``.

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
from hypothesis.errors import FlakyStrategyDefinition
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
from insights.content import content_create
from promoters.services import promoter_api_token_issue
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
    promoter_key = promoter_api_token_issue(promoter=promoter)
    content = content_create(
        promoter=promoter, title="Ten camping tips", format="article", link_id=link.pk,
        published_at=timezone.now() - timedelta(days=2),
    )
    event = events.event_ingest(
        merchant=merchant,
        payload={"type": "purchase", "customer_id": "cust-1", "order_id": "A-1", "amount": "120.00", "coupon": "ANNA10"},
    ).event
    ids = {
        "/api/v1/programs/": program.pk,
        "/api/v1/promoters/": promoter.pk,
        "/api/v1/links/": link.pk,
        "/api/v1/events/": event.pk,
        "/api/v1/me/content/": content.pk,
    }
    client = Client(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")

    def real_id(collection: str):
        """A seeded object's id; for another collection, the first one it lists, if any."""
        if collection not in ids:
            response = client.get(collection)
            results = response.json().get("results") if response.status_code == 200 else None
            ids[collection] = results[0]["id"] if results else None
        return ids[collection]

    return {"merchant": merchant, "promoter_key": promoter_key, "link": link.pk, "real_id": real_id}


def headers_for(operation, seeded) -> dict:
    """The merchant's key, or the promoter's for the promoter's own API (its security
    schemes are the promoter key's: ``PromoterKeyAuth``, ``PromoterContentKeyAuth``)."""
    schemes = {name for requirement in operation.definition.raw.get("security", []) for name in requirement}
    if schemes and all(name.startswith("Promoter") for name in schemes):
        return {"Authorization": f"Bearer {seeded['promoter_key']}"}
    return {"Authorization": f"Bearer {seeded['merchant'].test_api_key}"}


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
    # The promoter's own API, the insights' content routes included, is fuzzed as well.
    promoters_own = {
        "GET /api/v1/me/",
        "GET /api/v1/me/summary/",
        "GET /api/v1/me/commissions/",
        "GET /api/v1/me/content/",
        "POST /api/v1/me/content/",
        "GET /api/v1/me/content/{id}/",
        "GET /api/v1/content/",
    }
    assert sorted(promoters_own - set(OPERATIONS)) == []


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
        "published_at": (timezone.now() - timedelta(days=1)).isoformat(),
    }
    if case.operation.path.startswith("/api/v1/me/content/"):
        values["link"] = seeded["link"]  # the seeded promoter's own link
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


LABELS = sorted(OPERATIONS)


@pytest.mark.parametrize("label", LABELS)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_operation_conforms_to_the_schema(label, mode, seeded, django_db_blocker):
    operation = OPERATIONS[label]
    headers = headers_for(operation, seeded)

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode), realistic=st.booleans())
    def fuzz(case, realistic):
        point_at_seeded_objects(case, seeded, realistic)
        if realistic and mode is GenerationMode.POSITIVE:
            nudge_towards_valid(case, seeded)
        case.call_and_validate(headers=headers, checks=CHECKS)

    with django_db_blocker.unblock():
        fuzz()


STATEFUL_SETTINGS = settings(
    max_examples=60,  # sequences
    stateful_step_count=6,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def test_sequences_along_the_links(seeded, django_db_blocker):
    """Schemathesis' stateful testing: sequences of calls where each takes what an earlier
    answer gave (the links it infers between the operations), every answer checked as above."""
    machine = SCHEMA.as_state_machine()
    # The links that make the sequences: an object a POST makes is read, changed and
    # followed into its sub-resources.
    linked = SCHEMA.operations_with_incoming_links()
    assert {
        "GET /api/v1/programs/{id}/",
        "PATCH /api/v1/programs/{id}/",
        "GET /api/v1/promoters/{id}/",
        "GET /api/v1/links/{id}/",
        "GET /api/v1/events/{id}/",
        "GET /api/v1/webhooks/{id}/",
        "GET /api/v1/me/content/{id}/",
    } <= linked, sorted(linked)

    followed: set[str] = set()  # the operations called with what a link carried over

    class Sequences(machine):
        def step(self, input):
            if input.transition is not None and input.is_applied:
                followed.add(input.case.operation.label)
            return super().step(input)

        def before_call(self, case):
            point_at_seeded_objects(case, seeded, realistic=False)
            nudge_towards_valid(case, seeded)

        def get_call_kwargs(self, case):
            return {"headers": headers_for(case.operation, seeded)}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            try:
                case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)
            except Exception as exc:
                # Kept, then raised below: hypothesis, replaying the failing sequence on a
                # database the sequences changed, may stop as "flaky" and lose it otherwise.
                failures.append(f"{case.operation.label}: {exc}")
                raise

    failures: list[str] = []
    with django_db_blocker.unblock():
        try:
            Sequences.run(settings=STATEFUL_SETTINGS)
        except FlakyStrategyDefinition:
            # Every sequence writes to the one database, so a choice hypothesis replays can
            # meet another state (a list that was empty is not): hypothesis then stops with
            # "inconsistent data generation". That is the test's limit, not an answer that
            # broke the schema (those raise their own failure); the sequences run until
            # then still count below, and any failure they met is kept in ``failures``.
            pass
    assert failures == []
    assert len(followed) >= 5, sorted(followed)


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
