"""POST/GET /api/v1/events/: the contract's conversion events, exactly."""

from __future__ import annotations

import pytest
from django.utils import timezone

from affiliate import services
from affiliate.models import Click, ConversionEvent, Customer, CustomerVisitor, Visitor
from tests.factories import LinkFactory, PromoterFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def post(api, django_capture_on_commit_callbacks):
    """POST an event and run what was queued on commit, as the inline default does."""

    def _post(headers=None, **payload):
        with django_capture_on_commit_callbacks(execute=True):
            return api.post("/api/v1/events/", payload, format="json", **(headers or {}))

    return _post


def counts():
    return (ConversionEvent.objects.count(), Customer.objects.count(), CustomerVisitor.objects.count())


def test_purchase_is_recorded_and_processed(post, program):
    response = post(type="purchase", customer_id="cust-42", order_id="A-1001", amount="120.00")
    assert response.status_code == 201
    body = response.json()
    event = ConversionEvent.objects.get()
    assert body == {
        "id": event.pk,
        "type": "purchase",
        "stage": "first_purchase",
        "status": "queued",  # the answer is built before the commit hands it to the workers
        "amount": "120.00",
        "currency": "USD",
        "customer_id": "cust-42",
        "order_id": "A-1001",
        "refund_id": None,
        "click_id": None,
        "coupon": None,
        "program": program.pk,
        "occurred_at": event.occurred_at.isoformat(),
        "received_at": event.received_at.isoformat(),
        "attribution": [],
        "commissions": [],
        "warnings": [],
    }
    assert event.status == "processed"
    assert event.amount_minor == 12000
    assert event.processed_at is not None
    assert Customer.objects.get().stage == "first_purchase"


def test_the_platform_decides_which_purchase_is_first(post, program):
    first = post(type="purchase", customer_id="c1", order_id="o1", amount="10.00").json()
    second = post(type="purchase", customer_id="c1", order_id="o2", amount="20.00").json()
    third = post(type="purchase", customer_id="c1", order_id="o3", amount="30.00").json()
    assert [first["stage"], second["stage"], third["stage"]] == ["first_purchase", "repeat_purchase", "repeat_purchase"]
    assert Customer.objects.get(external_id="c1").stage == "repeat_purchaser"


def test_registration_then_purchase_walks_the_journey(post, program):
    registration = post(type="registration", customer_id="c1")
    assert registration.status_code == 201
    assert registration.json()["stage"] == "registration"
    assert registration.json()["amount"] is None
    assert Customer.objects.get().stage == "registered"
    purchase = post(type="purchase", customer_id="c1", order_id="o1", amount="5.00")
    assert purchase.json()["stage"] == "first_purchase"


def test_registration_after_a_purchase_does_not_move_the_journey_back(post, program):
    post(type="purchase", customer_id="c1", order_id="o1", amount="5.00")
    late = post(type="registration", customer_id="c1")
    assert late.status_code == 201
    assert late.json()["stage"] == "registration"
    assert Customer.objects.get().stage == "first_purchase"


def test_repeat_registration_answers_200_with_the_first_body(post, program):
    first = post(type="registration", customer_id="c1")
    again = post(type="registration", customer_id="c1", click_id="whatever")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["status"] == "processed"
    assert ConversionEvent.objects.count() == 1


def test_repeat_purchase_answers_200_and_conflicts_answer_409(post, program):
    first = post(type="purchase", customer_id="c1", order_id="A-1", amount="120.00")
    again = post(type="purchase", customer_id="c1", order_id="A-1", amount="120.0")
    assert again.status_code == 200
    assert again.json() == {**first.json(), "status": "processed"}
    before = counts()
    other_amount = post(type="purchase", customer_id="c1", order_id="A-1", amount="121.00")
    other_customer = post(type="purchase", customer_id="c2", order_id="A-1", amount="120.00")
    assert other_amount.status_code == other_customer.status_code == 409
    assert other_amount.json()["error"]["code"] == "idempotency_conflict"
    assert other_customer.json()["error"]["code"] == "idempotency_conflict"
    assert counts() == before  # not even the second customer was created


def test_idempotency_key_same_body_repeats_other_body_conflicts(post, program):
    key = {"HTTP_IDEMPOTENCY_KEY": "k-1"}
    first = post(headers=key, type="registration", customer_id="c1")
    again = post(headers=key, type="registration", customer_id="c1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    before = counts()
    clash = post(headers=key, type="registration", customer_id="c2")
    assert clash.status_code == 409
    assert clash.json() == {
        "error": {"code": "idempotency_conflict", "message": "This Idempotency-Key was already used with another body.", "fields": {}}
    }
    assert counts() == before


def test_partial_refunds_then_the_rest(post, program):
    post(type="purchase", customer_id="c1", order_id="o1", amount="100.00")
    r1 = post(type="refund", customer_id="c1", order_id="o1", refund_id="R-1", amount="30.00")
    r2 = post(type="refund", customer_id="c1", order_id="o1", refund_id="R-2")
    assert (r1.status_code, r2.status_code) == (201, 201)
    assert (r1.json()["stage"], r1.json()["amount"], r1.json()["refund_id"]) == ("refund", "30.00", "R-1")
    assert r2.json()["amount"] == "70.00"  # default: the rest of the order
    purchase = ConversionEvent.objects.get(type="purchase")
    assert sorted(purchase.refunds.values_list("amount_minor", flat=True)) == [3000, 7000]
    before = counts()
    r3 = post(type="refund", customer_id="c1", order_id="o1", refund_id="R-3", amount="0.01")
    assert r3.status_code == 400
    assert r3.json()["error"]["fields"] == {"amount": ["The order is already refunded in full."]}
    assert counts() == before
    assert Customer.objects.get().stage == "first_purchase"


def test_refund_beyond_what_is_left_is_400_and_writes_nothing(post, program):
    post(type="purchase", customer_id="c1", order_id="o1", amount="100.00")
    post(type="refund", customer_id="c1", order_id="o1", refund_id="R-1", amount="60.00")
    before = counts()
    response = post(type="refund", customer_id="c1", order_id="o1", refund_id="R-2", amount="40.01")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"amount": ["Only 40.00 of the order is left to refund."]}
    assert counts() == before


def test_refund_of_an_unknown_order_is_400(post, program):
    response = post(type="refund", customer_id="c1", order_id="nope")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"order_id": ["No purchase with order_id 'nope' is known."]}
    assert counts() == (0, 0, 0)


def test_refund_by_another_customer_is_400(post, program):
    post(type="purchase", customer_id="c1", order_id="o1", amount="100.00")
    before = counts()
    response = post(type="refund", customer_id="c2", order_id="o1")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"customer_id": ["The order belongs to another customer."]}
    assert counts() == before


def test_second_refund_without_refund_id_is_a_repeat_or_a_conflict(post, program):
    post(type="purchase", customer_id="c1", order_id="o1", amount="100.00")
    first = post(type="refund", customer_id="c1", order_id="o1", amount="25.00")
    same = post(type="refund", customer_id="c1", order_id="o1", amount="25.00")
    omitted = post(type="refund", customer_id="c1", order_id="o1")
    other = post(type="refund", customer_id="c1", order_id="o1", amount="10.00")
    assert [first.status_code, same.status_code, omitted.status_code, other.status_code] == [201, 200, 200, 409]
    assert same.json()["id"] == omitted.json()["id"] == first.json()["id"]
    assert ConversionEvent.objects.filter(type="refund").count() == 1


def test_known_click_binds_the_visitor_for_good(post, link):
    target = services.link_target(link.code)
    click = services.click_record(target=target, visitor_id=None)
    response = post(type="registration", customer_id="c1", click_id=click.id.hex)
    assert response.status_code == 201
    assert response.json()["warnings"] == []
    binding = CustomerVisitor.objects.get()
    assert (binding.customer.external_id, binding.visitor_id, binding.click_id) == ("c1", click.visitor_id, click.id)
    # A second device joins the same customer.
    other_device = services.click_record(target=target, visitor_id=None)
    post(type="purchase", customer_id="c1", order_id="o1", amount="9.99", click_id=str(other_device.id))
    assert set(Customer.objects.get().visitors.values_list("id", flat=True)) == {click.visitor_id, other_device.visitor_id}


def test_unknown_click_binds_nothing_but_the_event_is_kept(post, program, other_merchant):
    foreign_link = LinkFactory(promoter=PromoterFactory(program__merchant=other_merchant), destination_url="https://other.example.net/")
    foreign_click = services.click_record(target=services.link_target(foreign_link.code), visitor_id=None)
    for click_id in ("not-a-click", "0" * 32, foreign_click.id.hex):
        response = post(type="purchase", customer_id="c1", order_id=f"o-{click_id}", amount="50.00", click_id=click_id)
        assert response.status_code == 201
        assert response.json()["warnings"] == [
            {"code": "unknown_click_id", "message": f"No click {click_id!r} is known; nothing was bound."}
        ]
    assert ConversionEvent.objects.count() == 3
    assert CustomerVisitor.objects.count() == 0


def test_coupon_names_its_promoter(post, program):
    anna = PromoterFactory(program=program, coupon_code="ANNA10")
    known = post(type="purchase", customer_id="c1", order_id="o1", amount="50.00", coupon="anna10")
    unknown = post(type="purchase", customer_id="c1", order_id="o2", amount="50.00", coupon="NOPE")
    assert ConversionEvent.objects.get(order_id="o1").coupon_promoter == anna
    assert known.json()["warnings"] == []
    assert unknown.json()["warnings"] == [{"code": "unknown_coupon", "message": "No promoter has the coupon 'NOPE'."}]


def test_occurred_at_is_stored_and_returned_in_utc(post, program):
    response = post(type="purchase", customer_id="c1", order_id="o1", amount="1.00", occurred_at="2026-11-20T14:30:00+02:00")
    assert response.json()["occurred_at"] == "2026-11-20T12:30:00+00:00"


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"customer_id": "c1"}, {"type": ["Choose one of: registration, purchase, refund."]}),
        ({"type": "chargeback", "customer_id": "c1"}, {"type": ["Choose one of: registration, purchase, refund."]}),
        ({"type": "registration"}, {"customer_id": ["This field is required."]}),
        ({"type": "registration", "customer_id": "   "}, {"customer_id": ["This field is required."]}),
        ({"type": "purchase", "customer_id": "c1", "amount": "1.00"}, {"order_id": ["This field is required for a purchase or a refund."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o"}, {"amount": ["This field is required for a purchase."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "0.00"}, {"amount": ["Must be greater than zero."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "-5"}, {"amount": ["Must be greater than zero."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "1.234"}, {"amount": ["At most 2 decimals are allowed in USD."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "1000000000000"}, {"amount": ["At most 12 integer digits are allowed."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "ten"}, {"amount": ['Must be a decimal string such as "120.00".']}),
        ({"type": "purchase", "customer_id": "c" * 256, "order_id": "o", "amount": "1"}, {"customer_id": ["At most 255 characters."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o" * 256, "amount": "1"}, {"order_id": ["At most 255 characters."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "1", "coupon": "x" * 256}, {"coupon": ["At most 255 characters."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "1", "click_id": "x" * 256}, {"click_id": ["At most 255 characters."]}),
        ({"type": "refund", "customer_id": "c1", "order_id": "o", "refund_id": "x" * 256}, {"refund_id": ["At most 255 characters."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "1", "currency": "EUR"}, {"currency": ["The program's currency is USD."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "1", "program": 999999}, {"program": ["No program with this id."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "1", "program": "x"}, {"program": ["Must be a program id."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "1", "occurred_at": "2999-01-01T00:00:00Z"}, {"occurred_at": ["The time lies in the future."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "1", "occurred_at": "2026-01-01T00:00:00"}, {"occurred_at": ["The time needs a UTC offset (Z or +hh:mm)."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "1", "occurred_at": "yesterday"}, {"occurred_at": ["Must be an ISO 8601 time with an offset, e.g. 2026-01-31T12:00:00Z."]}),
        ({"type": "registration", "customer_id": "c1", "amount": "5.00"}, {"amount": ["A registration carries no amount."]}),
        ({"type": "purchase", "customer_id": "c1", "order_id": "o", "amount": "1", "refund_id": "R"}, {"refund_id": ["Only a refund carries a refund_id."]}),
        ({"type": "purchase", "customer_id": ["c1"], "order_id": "o", "amount": "1"}, {"customer_id": ["Must be a string."]}),
    ],
)
def test_invalid_events_are_400_and_write_nothing(post, program, payload, fields):
    response = post(**payload)
    assert response.status_code == 400
    assert response.json() == {"error": {"code": "invalid", "message": "The request is not valid; see fields.", "fields": fields}}
    assert counts() == (0, 0, 0)


def test_another_merchants_program_is_not_found(post, program, other_merchant):
    from tests.factories import ProgramFactory

    foreign = ProgramFactory(merchant=other_merchant)
    response = post(type="registration", customer_id="c1", program=foreign.pk)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"program": ["No program with this id."]}


def test_no_program_yet_is_a_clear_400(post, merchant):
    response = post(type="registration", customer_id="c1")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"program": ["The merchant has no program yet; create one first."]}


def test_get_event_returns_the_same_body(post, api, program):
    created = post(type="purchase", customer_id="c1", order_id="o1", amount="12.34").json()
    fetched = api.get(f"/api/v1/events/{created['id']}/")
    assert fetched.status_code == 200
    assert fetched.json() == {**created, "status": "processed"}


def test_another_merchants_event_is_404(post, other_api, program):
    created = post(type="registration", customer_id="c1").json()
    response = other_api.get(f"/api/v1/events/{created['id']}/")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}


def test_processing_is_idempotent(post, program):
    from affiliate.events import event_process

    event_id = post(type="purchase", customer_id="c1", order_id="o1", amount="1.00").json()["id"]
    event = ConversionEvent.objects.get(pk=event_id)
    processed_at = event.processed_at
    event_process(event_id=event_id)
    event_process(event_id=event_id)
    event.refresh_from_db()
    assert (event.status, event.attempts, event.processed_at) == ("processed", 1, processed_at)


def test_sweep_requeues_what_was_left_queued(program, api):
    from affiliate.events import requeue_stale_events

    # Received with the queue down: the commit hook never ran (no capture here).
    event_id = api.post("/api/v1/events/", {"type": "registration", "customer_id": "c1"}, format="json").json()["id"]
    ConversionEvent.objects.filter(pk=event_id).update(received_at=timezone.now() - timezone.timedelta(minutes=5))
    assert ConversionEvent.objects.get(pk=event_id).status == "queued"
    assert requeue_stale_events() == 1
    assert ConversionEvent.objects.get(pk=event_id).status == "processed"
    assert requeue_stale_events() == 0


def test_visitors_and_clicks_are_untouched_by_a_failed_event(post, link):
    click = services.click_record(target=services.link_target(link.code), visitor_id=None)
    before = (Visitor.objects.count(), Click.objects.count())
    response = post(type="purchase", customer_id="c1", order_id="o1", amount="0", click_id=click.id.hex)
    assert response.status_code == 400
    assert (Visitor.objects.count(), Click.objects.count()) == before
    assert counts() == (0, 0, 0)
