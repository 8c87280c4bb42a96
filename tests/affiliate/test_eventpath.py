"""POST /api/v1/events/ answered at the WSGI layer (affiliate/eventpath.py): the same
answer, byte for byte, and the same rows as Django's for a new registration or purchase;
every other request goes to Django, and what the fast path began is rolled back."""

from __future__ import annotations

import io
import json
import re
import time
from decimal import Decimal

import pytest
from django.core.wsgi import get_wsgi_application
from django.db import transaction

from affiliate import eventpath, events, journey, services
from affiliate.eventpath import EventFastPath
from affiliate.models import Click, ConversionEvent, Customer, CustomerVisitor
from core.errors import ServiceValidationError
from merchants.auth import digest
from merchants.models import Program
from tests.factories import PromoterFactory
from tests.realservices import needs_postgres, run_at_once

pytestmark = [pytest.mark.postgres, needs_postgres, pytest.mark.django_db]

WHEN = "2026-01-31T12:00:00Z"


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """As Django's test client does: a request's end must not close the connection that
    holds the test's transaction."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def workers(settings, monkeypatch):
    """Celery workers, as in production: the answer shows the event queued. The ids handed to
    ``enqueue_event`` are collected instead of sent."""
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.EVENT_FASTPATH = True
    queued: list[int] = []
    monkeypatch.setattr(events, "enqueue_event", queued.append)
    return queued


class Counting:
    """Django's WSGI application, counting the requests that reach it."""

    def __init__(self):
        self.django = get_wsgi_application()
        self.calls = 0

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.django(environ, start_response)


def environ(merchant, body, *, key: str | None = "merchant", **extra) -> dict:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    env = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/api/v1/events/",
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "testserver",
        "REMOTE_ADDR": "203.0.113.9",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(content)),
        "wsgi.input": io.BytesIO(content),
        "wsgi.errors": io.StringIO(),
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if key is not None:
        env["HTTP_AUTHORIZATION"] = f"Bearer {merchant.test_api_key if key == 'merchant' else key}"
    env.update(extra)
    return env


def call(app, env: dict) -> tuple[str, list[tuple[str, str]], bytes]:
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"], answer["headers"] = status, headers

    body = app(env, start_response)
    try:
        content = b"".join(body)
    finally:
        if hasattr(body, "close"):
            body.close()
    return answer["status"], answer["headers"], content


def rows() -> dict:
    """What the requests wrote, without what differs from one run to the next (row ids,
    the times of receipt)."""
    customers = {c.pk: c.external_id for c in Customer.objects.all()}
    event_ids = {pk: n for n, pk in enumerate(ConversionEvent.objects.order_by("id").values_list("id", flat=True))}
    event_rows = []
    for values in ConversionEvent.objects.order_by("id").values():
        values.pop("id")
        assert values.pop("received_at") is not None
        values["customer_id"] = customers[values["customer_id"]]
        values["purchase_id"] = event_ids.get(values["purchase_id"])
        values["occurred_at"] = values["occurred_at"].isoformat() if values["payload"].get("occurred_at") else "<now>"
        event_rows.append(values)
    return {
        "events": event_rows,
        "customers": sorted(Customer.objects.values_list("external_id", "stage")),
        "visitors": sorted(
            (customers[customer_id], str(visitor_id), str(click_id))
            for customer_id, visitor_id, click_id in CustomerVisitor.objects.values_list("customer_id", "visitor_id", "click_id")
        ),
    }


def normalised(answer, ids: list[int]) -> tuple:
    """An answer with the event ids numbered in order of creation and the times of receipt
    (and the default occurred_at) masked; Content-Length checked, then left out."""
    status, headers, content = answer
    headers = dict(headers)
    length = headers.pop("Content-Length", None)
    assert length is None or int(length) == len(content)
    content = re.sub(rb'"received_at":"[^"]+"', b'"received_at":"<now>"', content)
    content = re.sub(rb'"occurred_at":"(?!2026-01-31T12:00:00\+00:00)[^"]+"', b'"occurred_at":"<now>"', content)
    match = re.match(rb'\{"id":(\d+),', content)
    if match and status in ("200 OK", "201 Created"):
        content = content.replace(match[0], b'{"id":<event %d>,' % ids.index(int(match[1])), 1)
    return status, headers, content


def run(app, merchant, requests, capture, queued: list[int]) -> tuple[list, dict, list[int]]:
    """Send the requests through ``app``; return the answers, the rows written and the
    events handed to the workers (numbered in order of creation), then roll everything back
    so that the next run starts from the same state."""
    savepoint = transaction.savepoint()
    del queued[:]
    answers = []
    for body, extra in requests:
        with capture(execute=True):
            answers.append(call(app, environ(merchant, body, **extra)))
    written = rows()
    ids = list(ConversionEvent.objects.order_by("id").values_list("id", flat=True))
    transaction.savepoint_rollback(savepoint)
    return [normalised(a, ids) for a in answers], written, [ids.index(pk) for pk in queued]


def purchase(customer="cust-1", order="A-1", amount="12.50", **more):
    return {"type": "purchase", "customer_id": customer, "order_id": order, "amount": amount, "occurred_at": WHEN, **more}


def registration(customer="cust-1", **more):
    return {"type": "registration", "customer_id": customer, "occurred_at": WHEN, **more}


@pytest.fixture
def click(program, promoter):
    from tests.factories import LinkFactory

    link = LinkFactory(promoter=promoter, code="annablog")
    return services.click_record(
        target=services.link_target(link.code), visitor_id=None, ip="203.0.113.9", user_agent="UA", referrer="", subs={}
    )


@pytest.fixture
def coupon_promoter(program):
    return PromoterFactory(program=program, email="ben@example.com", name="Ben", coupon_code="Ben10")


def scenario(name: str, click, program) -> tuple[list, list[str], int]:
    """The requests (body, environ extras), the statuses, how many the fast path answers."""
    return {
        "amount as a JSON number": (
            [(b'{"type":"purchase","customer_id":"c-9","order_id":"A-9","amount":12.5,"occurred_at":"%s"}' % WHEN.encode(), {})],
            ["201 Created"],
            1,
        ),
        "program and currency given": ([(purchase(program=program.pk, currency="USD"), {})], ["201 Created"], 1),
        "unknown program": ([(purchase(program=program.pk + 1000), {})], ["400 Bad Request"], 0),
        "another currency": ([(purchase(currency="EUR"), {})], ["400 Bad Request"], 0),
        "first purchase": ([({**purchase(), "occurred_at": None}, {})], ["201 Created"], 1),
        "second purchase of a customer": (
            [(purchase(), {}), (purchase(order="A-2", amount="7"), {})],
            ["201 Created", "201 Created"],
            2,
        ),
        "registration, then purchase": ([(registration(), {}), (purchase(), {})], ["201 Created", "201 Created"], 2),
        "purchase, then registration": ([(purchase(), {}), (registration(), {})], ["201 Created", "201 Created"], 2),
        "purchase with a known click": ([(purchase(click_id=str(click.id)), {})], ["201 Created"], 1),
        "registration with a known click (by its hex)": ([(registration(click_id=click.id.hex), {})], ["201 Created"], 1),
        "the same click again": (
            [(purchase(click_id=str(click.id)), {}), (purchase(order="A-2", click_id=str(click.id)), {})],
            ["201 Created", "201 Created"],
            2,
        ),
        "purchase with a known coupon": ([(purchase(coupon=" ben10 "), {})], ["201 Created"], 1),
        "unknown click": ([(purchase(click_id="0190d1c4-1111-7222-8333-444455556666"), {})], ["201 Created"], 0),
        "click id that is no uuid": ([(purchase(click_id="nope"), {})], ["201 Created"], 0),
        "unknown coupon": ([(purchase(coupon="NOBODY"), {})], ["201 Created"], 0),
        "repeat of an order": ([(purchase(), {}), (purchase(), {})], ["201 Created", "200 OK"], 1),
        "repeat of a registration": ([(registration(), {}), (registration(), {})], ["201 Created", "200 OK"], 1),
        "conflicting repeat (amount)": ([(purchase(), {}), (purchase(amount="13.00"), {})], ["201 Created", "409 Conflict"], 1),
        "conflicting repeat (another customer)": (
            [(purchase(), {}), (purchase(customer="cust-2"), {})],
            ["201 Created", "409 Conflict"],
            1,
        ),
        "invalid amount": ([(purchase(amount="-1"), {})], ["400 Bad Request"], 0),
        "missing amount": ([({"type": "purchase", "customer_id": "c", "order_id": "A-1"}, {})], ["400 Bad Request"], 0),
        "occurred in the future": ([(purchase(occurred_at="2999-01-01T00:00:00Z"), {})], ["400 Bad Request"], 0),
        "not an object": ([([1, 2], {})], ["400 Bad Request"], 0),
        "malformed json": ([(b'{"type": "purchase",', {})], ["400 Bad Request"], 0),
        "nul character": ([(purchase(customer="a\x00b"), {})], ["400 Bad Request"], 0),
        "refund": (
            [(purchase(), {}), ({"type": "refund", "customer_id": "cust-1", "order_id": "A-1", "occurred_at": WHEN}, {})],
            ["201 Created", "201 Created"],
            1,
        ),
        "wrong api key": ([(purchase(), {"key": "mk_live_wrong"})], ["401 Unauthorized"], 0),
        "no api key": ([(purchase(), {"key": None})], ["401 Unauthorized"], 0),
        "idempotency key": ([(purchase(), {"HTTP_IDEMPOTENCY_KEY": "k-1"})], ["201 Created"], 0),
        "query string": ([(purchase(), {"QUERY_STRING": "format=json"})], ["201 Created"], 0),
        "charset in the content type": (
            [(purchase(), {"CONTENT_TYPE": "application/json; charset=utf-8"})],
            ["201 Created"],
            0,
        ),
        "host not allowed": ([(purchase(), {"HTTP_HOST": "evil.example.com"})], ["400 Bad Request"], 0),
        "https behind a proxy": ([(purchase(), {"HTTP_X_FORWARDED_PROTO": "https"})], ["201 Created"], 1),
    }[name]


SCENARIOS = [
    "amount as a JSON number",
    "program and currency given",
    "unknown program",
    "another currency",
    "first purchase",
    "second purchase of a customer",
    "registration, then purchase",
    "purchase, then registration",
    "purchase with a known click",
    "registration with a known click (by its hex)",
    "the same click again",
    "purchase with a known coupon",
    "unknown click",
    "click id that is no uuid",
    "unknown coupon",
    "repeat of an order",
    "repeat of a registration",
    "conflicting repeat (amount)",
    "conflicting repeat (another customer)",
    "invalid amount",
    "missing amount",
    "occurred in the future",
    "not an object",
    "malformed json",
    "nul character",
    "refund",
    "wrong api key",
    "no api key",
    "idempotency key",
    "query string",
    "charset in the content type",
    "host not allowed",
    "https behind a proxy",
]


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_fast_path_answers_and_writes_exactly_as_django(
    name, settings, merchant, program, click, coupon_promoter, workers, django_capture_on_commit_callbacks
):
    settings.SECURE_HSTS_SECONDS = 3600
    requests, statuses, answered = scenario(name, click, program)
    inner = Counting()
    fast = EventFastPath(inner)

    reference = run(inner.django, merchant, requests, django_capture_on_commit_callbacks, workers)
    calls = inner.calls
    answers = run(fast, merchant, requests, django_capture_on_commit_callbacks, workers)

    assert [status for status, _, _ in answers[0]] == statuses
    assert inner.calls - calls == len(requests) - answered, "the fast path answered another number of requests"
    assert answers == reference


def test_a_first_purchase_answered_in_front_of_django(merchant, program, workers, django_capture_on_commit_callbacks):
    inner = Counting()
    with django_capture_on_commit_callbacks(execute=True):
        status, headers, content = call(EventFastPath(inner), environ(merchant, purchase(amount="120")))

    event = ConversionEvent.objects.get()
    assert inner.calls == 0
    assert status == "201 Created"
    expected = (
        f'{{"id":{event.pk},"type":"purchase","stage":"first_purchase","status":"queued","amount":"120.00",'
        f'"currency":"USD","customer_id":"cust-1","order_id":"A-1","refund_id":null,"click_id":null,"coupon":null,'
        f'"program":{program.pk},"occurred_at":"2026-01-31T12:00:00+00:00",'
        f'"received_at":"{event.received_at.isoformat()}","attribution":[],"commissions":[],"warnings":[]}}'
    ).encode()
    assert content == expected
    assert headers == [
        ("Content-Type", "application/json"),
        ("Allow", "GET, POST, HEAD, OPTIONS"),
        ("X-Frame-Options", "DENY"),
        ("Content-Length", str(len(expected))),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
    ]
    assert (event.amount_minor, event.status, event.source, event.body_hash) == (
        12000, "queued", "api", events.body_hash(purchase(amount="120"))
    )
    program.refresh_from_db()
    assert event.terms == program.terms()
    assert Customer.objects.get().stage == "first_purchase"
    assert workers == [event.pk]


def test_an_error_after_the_first_write_leaves_nothing_and_django_answers(
    merchant, program, click, workers, django_capture_on_commit_callbacks, monkeypatch
):
    # Given a fast path whose second statement fails (after the customer was created and locked)
    monkeypatch.setattr(eventpath, "EVENT", {key: "SELECT no_such_column" for key in eventpath.EVENT})
    inner = Counting()
    fast = EventFastPath(inner)
    sid = transaction.savepoint()
    with pytest.raises(Exception):  # noqa: B017, PT011 - the statement's own error, whatever its class
        with transaction.atomic():
            fast._record(merchant, digest(merchant.test_api_key), purchase(customer="cust-9", click_id=str(click.id)))
    transaction.savepoint_commit(sid)
    # then nothing of it remains ...
    assert (Customer.objects.count(), ConversionEvent.objects.count(), CustomerVisitor.objects.count()) == (0, 0, 0)

    # ... and a request meeting that error is answered by Django, once.
    with django_capture_on_commit_callbacks(execute=True):
        status, _, _ = call(fast, environ(merchant, purchase(customer="cust-9", click_id=str(click.id))))
    assert (status, inner.calls) == ("201 Created", 1)
    assert list(Customer.objects.values_list("external_id", "stage")) == [("cust-9", "first_purchase")]
    assert ConversionEvent.objects.get().click_id == click.id
    assert CustomerVisitor.objects.get().visitor_id == click.visitor_id
    assert workers == [ConversionEvent.objects.get().pk]


def test_a_conflicting_repeat_writes_nothing(merchant, program, workers, django_capture_on_commit_callbacks):
    inner = Counting()
    fast = EventFastPath(inner)
    with django_capture_on_commit_callbacks(execute=True):
        call(fast, environ(merchant, purchase()))
        status, _, content = call(fast, environ(merchant, purchase(customer="cust-2")))
    assert (status, inner.calls) == ("409 Conflict", 1)
    assert json.loads(content)["error"]["code"] == "idempotency_conflict"
    assert list(Customer.objects.values_list("external_id", "stage")) == [("cust-1", "first_purchase")]
    assert ConversionEvent.objects.count() == 1
    assert len(workers) == 1


@pytest.mark.parametrize("switch", ["EVENT_FASTPATH off", "tasks inline"])
def test_switched_off_django_answers(switch, settings, merchant, program, django_capture_on_commit_callbacks):
    if switch == "EVENT_FASTPATH off":
        settings.EVENT_FASTPATH = False
    else:
        settings.CELERY_TASK_ALWAYS_EAGER = True
    inner = Counting()
    with django_capture_on_commit_callbacks(execute=True):
        status, _, _ = call(EventFastPath(inner), environ(merchant, purchase()))
    assert (status, inner.calls, ConversionEvent.objects.count()) == ("201 Created", 1, 1)


def test_a_click_still_in_the_spool_is_waited_for_by_django(
    tmp_path, settings, merchant, program, click, workers, django_capture_on_commit_callbacks, monkeypatch
):
    # Given the click spool on, and a click made a moment ago that is not stored yet
    settings.CLICK_SPOOL_DIR = str(tmp_path / "spool")
    stored = Click.objects.filter(pk=click.pk).values()[0]
    Click.objects.filter(pk=click.pk).delete()
    known_click = events._known_click

    def flushed_while_waiting(merchant, click_ref):
        if not Click.objects.filter(pk=click.pk).exists():
            Click.objects.create(**stored)  # the flusher stores it while the request waits
            return None
        return known_click(merchant, click_ref)

    monkeypatch.setattr(events, "_known_click", flushed_while_waiting)
    inner = Counting()

    # When the event names it
    with django_capture_on_commit_callbacks(execute=True):
        status, _, content = call(EventFastPath(inner), environ(merchant, purchase(click_id=str(click.id))))

    # Then the fast path gave way to Django, which waited for the click and bound it
    assert (status, inner.calls) == ("201 Created", 1)
    assert json.loads(content)["warnings"] == []
    event = ConversionEvent.objects.get()
    assert event.click_id == click.id
    assert list(CustomerVisitor.objects.values_list("visitor_id", "click_id")) == [(click.visitor_id, click.id)]
    assert workers == [event.pk]


HALVES = {
    "purchase": purchase(),
    "registration": registration(),
    "registration without occurred_at": {"type": "registration", "customer_id": "c"},
    "ids are stripped, numbers are strings": purchase(customer=" 42 ", order=7, click_id=" x ", coupon=" C "),
    "amount as a JSON number": purchase(amount=Decimal("12.5")),
    "amount as an integer": purchase(amount=12),
    "currency given": purchase(currency="USD"),
    "program by id": {**purchase(), "program": "<program>"},
    "program by id as a string": {**purchase(), "program": "<program> "},
    "empty optional strings": purchase(click_id="", coupon="", refund_id=""),
    "empty amount on a registration": registration(amount=""),
    # each one a 400 from clean_event
    "another currency": purchase(currency="EUR"),
    "currency not a string": purchase(currency=1),
    "no customer_id": {"type": "purchase", "order_id": "A-1", "amount": "1"},
    "blank customer_id": purchase(customer="   "),
    "customer_id too long": purchase(customer="x" * 256),
    "customer_id not a string": purchase(customer=["x"]),
    "customer_id a boolean": purchase(customer=True),
    "no order_id": {"type": "purchase", "customer_id": "c", "amount": "1"},
    "no amount": {"type": "purchase", "customer_id": "c", "order_id": "A-1"},
    "zero amount": purchase(amount="0"),
    "too many decimals": purchase(amount="1.005"),
    "amount a float string": purchase(amount="1e3"),
    "amount on a registration": registration(amount="1.00"),
    "refund_id on a purchase": purchase(refund_id="R-1"),
    "naive occurred_at": purchase(occurred_at="2026-01-31T12:00:00"),
    "occurred_at not a time": purchase(occurred_at="yesterday"),
    "occurred_at in the future": purchase(occurred_at="2999-01-01T00:00:00Z"),
    "program not an id": {**purchase(), "program": "1.5"},
    "program a boolean": {**purchase(), "program": True},
    "unknown program": {**purchase(), "program": 999999},
}


@pytest.mark.parametrize("name", HALVES)
def test_the_validation_halves_agree_with_clean_event(name, merchant, program):
    payload = json.loads(json.dumps(HALVES[name], default=str).replace('"<program>', f'"{program.pk}'), parse_float=Decimal)
    if name == "program by id":
        payload["program"] = program.pk
    if name == "amount as a JSON number":
        payload["amount"] = Decimal("12.5")
    try:
        expected = events.clean_event(merchant, payload)
    except ServiceValidationError:
        expected = None
    try:
        strings = eventpath._strings(payload)
        program_id = eventpath._program_id(payload.get("program"))
        found = Program.objects.filter(merchant=merchant, **({"pk": program_id} if program_id else {"is_default": True})).first()
        if found is None:
            raise eventpath.FallThrough
        row = [getattr(found, column) for column in eventpath.PROGRAM_COLUMNS]
        row[eventpath.PROGRAM_COLUMNS.index("tier_rates")] = json.dumps(found.tier_rates)
        cleaned = eventpath._clean(payload, strings, eventpath._program(merchant, row))
    except eventpath.FallThrough:
        cleaned = None
    if expected is None:
        assert cleaned is None
        return
    assert cleaned is not None
    if "occurred_at" not in payload:
        assert abs((cleaned.occurred_at - expected.occurred_at).total_seconds()) < 5
        cleaned.occurred_at = expected.occurred_at
    assert cleaned.program.pk == expected.program.pk
    assert cleaned.program.terms() == expected.program.terms()
    cleaned.program = expected.program
    assert cleaned == expected


@pytest.fixture
def wide_race_window(monkeypatch):
    """Hold every request a moment between reading the customer's stage and writing the
    event (as tests/affiliate/test_concurrency_pg.py does), on both paths."""
    advance = journey.advance

    def slow_advance(stage, action):
        time.sleep(0.05)
        return advance(stage, action)

    monkeypatch.setattr(journey, "advance", slow_advance)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("customer", ["new", "known"])
def test_ten_identical_purchases_at_once_make_one_event(customer, merchant, program, workers, wide_race_window):
    if customer == "known":
        Customer.objects.create(merchant=merchant, external_id="cust-1", stage="registered")
    fast = EventFastPath(get_wsgi_application())

    answers = run_at_once([lambda: call(fast, environ(merchant, purchase())) for _ in range(10)])

    assert sorted(status for status, _, _ in answers) == ["200 OK"] * 9 + ["201 Created"]
    event = ConversionEvent.objects.get()
    assert {json.loads(content)["id"] for _, _, content in answers} == {event.pk}
    assert (event.stage, event.amount_minor) == ("first_purchase", 1250)
    assert list(Customer.objects.values_list("external_id", "stage")) == [("cust-1", "first_purchase")]
    assert workers == [event.pk]


@pytest.mark.django_db(transaction=True)
def test_ten_orders_of_one_customer_at_once_make_one_first_purchase(merchant, program, workers, wide_race_window):
    Customer.objects.create(merchant=merchant, external_id="cust-1")
    inner = Counting()
    fast = EventFastPath(inner)

    answers = run_at_once([lambda i=i: call(fast, environ(merchant, purchase(order=f"A-{i}"))) for i in range(10)])

    assert [status for status, _, _ in answers] == ["201 Created"] * 10
    assert inner.calls == 0  # the customer's lock kept them apart, in the fast path itself
    stages = sorted(ConversionEvent.objects.values_list("stage", flat=True))
    assert stages == ["first_purchase"] + ["repeat_purchase"] * 9
    assert list(Customer.objects.values_list("stage", flat=True)) == ["repeat_purchaser"]
    assert sorted(workers) == sorted(ConversionEvent.objects.values_list("id", flat=True))
