"""Outbound webhooks: signing, fan-out to matching endpoints, delivery against a real HTTP
receiver on 127.0.0.1 with retries, give-up and replay, and the merchant API."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine

from core.errors import ServiceValidationError
from payouts import webhooks
from payouts.models import Commission, PayoutBatch, PayoutLine, WebhookDelivery, WebhookEndpoint
from tests.conftest import client_for
from tests.factories import ProgramFactory, PromoterFactory
from tests.payouts.world import World, at

pytestmark = pytest.mark.django_db

T = datetime(2026, 11, 2, 9, 30, 0, tzinfo=UTC)
DATA = {"id": 41, "promoter": 7, "amount": "12.50", "currency": "USD"}


# --- A real receiver ----------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that records every request and answers the scripted
    status codes in turn (200 once the script runs out)."""

    def __init__(self, *statuses: int):
        self.script = list(statuses)
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
                status = receiver.script.pop(0) if receiver.script else 200
                answer = b"ok" if status < 300 else b"boom"
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/affiliate"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver():
    made = []

    def make(*statuses):
        made.append(Receiver(*statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


@pytest.fixture
def closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"


@pytest.fixture
def clock():
    with time_machine.travel(T, tick=False) as traveller:
        yield traveller


def endpoint_for(merchant, url, events=("commission.created",), promoter=None):
    return webhooks.webhook_endpoint_create(merchant=merchant, url=url, events=list(events), promoter=promoter)


def emit(capture, merchant, promoter=None, event_type="commission.created", event_id="commission.created:41", data=DATA):
    with capture(execute=True):
        return webhooks.emit(
            merchant_id=merchant.pk, promoter_id=promoter.pk if promoter else None,
            event_type=event_type, event_id=event_id, data=data,
        )


# --- Signing ------------------------------------------------------------------------------


def test_signature_header_is_t_and_hex_hmac_of_timestamp_dot_body():
    body = b'{"data":{"amount":"12.50"},"id":"commission.created:41"}'
    by_hand = hmac.new(b"whsec_test", b"1767000000." + body, hashlib.sha256).hexdigest()

    header = webhooks.signature_header("whsec_test", 1767000000, body)

    assert header == f"t=1767000000,v1={by_hand}"
    assert len(by_hand) == 64


def test_verify_signature_accepts_only_a_fresh_exact_signature():
    body = b'{"id":"x"}'
    good = webhooks.signature_header("whsec_a", 1000, body)
    other = webhooks.signature_header("whsec_b", 1000, body)

    assert webhooks.verify_signature("whsec_a", good, body, now=1000)
    assert webhooks.verify_signature("whsec_a", good, body.decode(), now=1299)  # str bodies are UTF-8
    assert webhooks.verify_signature("whsec_a", f"{other},v1={good.split('v1=')[1]}", body, now=1000)  # any v1 matches
    assert not webhooks.verify_signature("whsec_b", good, body, now=1000)  # wrong secret
    assert not webhooks.verify_signature("whsec_a", good, b'{"id":"y"}', now=1000)  # tampered body
    assert not webhooks.verify_signature("whsec_a", good, body, now=1301)  # stale
    assert not webhooks.verify_signature("whsec_a", good, body, now=699)  # from the future
    assert webhooks.verify_signature("whsec_a", good, body, now=1600, tolerance=600)
    for bad in (None, "", "v1=abc", "t=1000", "t=abc,v1=" + good.split("v1=")[1], good.replace("t=1000", "t=1001")):
        assert not webhooks.verify_signature("whsec_a", bad, body, now=1000), bad


def test_the_body_is_compact_sorted_json():
    assert webhooks.body_bytes({"type": "t", "data": {"b": 1, "a": "é"}, "id": "i"}) == '{"data":{"a":"é","b":1},"id":"i","type":"t"}'.encode()


# --- Who gets what ------------------------------------------------------------------------


def test_emit_writes_deliveries_only_for_matching_endpoints(merchant, other_merchant, program, django_capture_on_commit_callbacks):
    anna = PromoterFactory(program=program, name="Anna")
    bob = PromoterFactory(program=program, name="Bob")
    wide, _ = endpoint_for(merchant, "https://crm.example.com/a", ["commission.created", "commission.reversed"])
    annas, _ = endpoint_for(merchant, "https://anna.example.com/h", ["commission.created"], promoter=anna)
    bobs, _ = endpoint_for(merchant, "https://bob.example.com/h", ["commission.created"], promoter=bob)
    endpoint_for(merchant, "https://finance.example.com/p", ["payout.paid"])  # another event
    off, _ = endpoint_for(merchant, "https://old.example.com/a", ["commission.created"])
    webhooks.webhook_endpoint_deactivate(endpoint=off)
    endpoint_for(other_merchant, "https://crm.other.net/a", ["commission.created"])

    with django_capture_on_commit_callbacks() as queued:  # written and queued, not sent
        made = webhooks.emit(merchant_id=merchant.pk, promoter_id=anna.pk, event_type="commission.created", event_id="commission.created:41", data=DATA)

    assert sorted(d.endpoint_id for d in made) == [wide.pk, annas.pk]
    assert len(queued) == 2
    assert WebhookDelivery.objects.filter(endpoint=bobs).count() == 0
    assert WebhookDelivery.objects.count() == 2
    delivery = WebhookDelivery.objects.get(endpoint=annas)
    assert (delivery.status, delivery.attempts, delivery.event_type, delivery.event_id) == ("pending", 0, "commission.created", "commission.created:41")
    assert delivery.payload["data"] == DATA and delivery.payload["id"] == "commission.created:41"

    # The same event again: nothing new, nothing queued.
    with django_capture_on_commit_callbacks() as again:
        assert webhooks.emit(merchant_id=merchant.pk, promoter_id=anna.pk, event_type="commission.created", event_id="commission.created:41", data=DATA) == []
    assert (len(again), WebhookDelivery.objects.count()) == (0, 2)

    # Bob's event: the merchant-wide endpoint and Bob's own; a merchant-level event: only the wide one.
    with django_capture_on_commit_callbacks():
        bob_made = webhooks.emit(merchant_id=merchant.pk, promoter_id=bob.pk, event_type="commission.created", event_id="commission.created:42", data=DATA)
        no_one = webhooks.emit(merchant_id=merchant.pk, promoter_id=None, event_type="commission.reversed", event_id="commission.reversed:43", data=DATA)
    assert sorted(d.endpoint_id for d in bob_made) == [wide.pk, bobs.pk]
    assert [d.endpoint_id for d in no_one] == [wide.pk]


def test_emit_refuses_an_unknown_event_type(merchant):
    with pytest.raises(ValueError):
        webhooks.emit(merchant_id=merchant.pk, promoter_id=None, event_type="commission.eaten", event_id="x", data={})


# --- Sending to a real receiver -----------------------------------------------------------


def test_the_receiver_gets_the_exact_body_and_headers_and_the_signature_verifies(merchant, receiver, clock, django_capture_on_commit_callbacks):
    r = receiver()
    endpoint, secret = endpoint_for(merchant, r.url)

    (delivery,) = emit(django_capture_on_commit_callbacks, merchant)

    assert len(r.requests) == 1
    got = r.requests[0]
    assert got["path"] == "/hooks/affiliate"
    assert json.loads(got["body"]) == {"id": "commission.created:41", "type": "commission.created", "created_at": T.isoformat(), "data": DATA}
    assert got["body"] == webhooks.body_bytes(delivery.payload)
    ts = int(T.timestamp())
    headers = got["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Webhook-Id"] == "commission.created:41"
    assert headers["X-Webhook-Event"] == "commission.created"
    assert headers["X-Webhook-Timestamp"] == str(ts)
    assert headers["X-Webhook-Attempt"] == "1"
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + got["body"], hashlib.sha256).hexdigest()
    assert headers["X-Webhook-Signature"] == f"t={ts},v1={expected}"
    assert webhooks.verify_signature(secret, headers["X-Webhook-Signature"], got["body"], now=ts + 5)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.last_error) == ("succeeded", 1, 200, "")
    assert (delivery.response_excerpt, delivery.next_attempt_at, delivery.delivered_at) == ("ok", None, T)
    assert [(e["attempt"], e["status_code"], e["error"]) for e in delivery.log] == [(1, 200, "")]

    # A duplicate task message for the same attempt sends nothing.
    assert webhooks.deliver(delivery.pk, expected_attempts=0) is None
    assert len(r.requests) == 1


def test_a_500_is_retried_after_the_first_backoff_step_and_then_succeeds(merchant, receiver, clock, django_capture_on_commit_callbacks):
    r = receiver(500)
    endpoint_for(merchant, r.url)

    (delivery,) = emit(django_capture_on_commit_callbacks, merchant)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, 500)
    assert (delivery.last_error, delivery.response_excerpt) == ("HTTP 500", "boom")
    assert delivery.next_attempt_at == T + timedelta(seconds=10)

    clock.move_to(T + timedelta(seconds=9))
    assert webhooks.sweep() == 0  # not due yet
    assert len(r.requests) == 1

    clock.move_to(T + timedelta(seconds=11))
    assert webhooks.sweep() == 1

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code, delivery.next_attempt_at) == ("succeeded", 2, 200, None)
    assert [(e["attempt"], e["status_code"]) for e in delivery.log] == [(1, 500), (2, 200)]
    assert len(r.requests) == 2
    first, second = r.requests
    assert first["body"] == second["body"]
    assert first["headers"]["X-Webhook-Id"] == second["headers"]["X-Webhook-Id"]
    assert second["headers"]["X-Webhook-Attempt"] == "2"
    assert second["headers"]["X-Webhook-Timestamp"] == str(int(T.timestamp()) + 11)


def test_after_the_last_attempt_the_delivery_fails_and_a_replay_sends_it_again(merchant, receiver, clock, django_capture_on_commit_callbacks):
    r = receiver(*[503] * webhooks.MAX_ATTEMPTS)
    endpoint_for(merchant, r.url)
    (delivery,) = emit(django_capture_on_commit_callbacks, merchant)

    waits = []
    for _ in range(webhooks.MAX_ATTEMPTS - 1):
        delivery.refresh_from_db()
        waits.append(delivery.next_attempt_at - last_attempt_at(delivery))
        clock.move_to(delivery.next_attempt_at)
        assert webhooks.sweep() == 1

    delivery.refresh_from_db()
    assert waits == [timedelta(seconds=10), timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30),
                     timedelta(hours=2), timedelta(hours=6), timedelta(hours=12)]
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at, delivery.last_status_code) == ("failed", 8, None, 503)
    assert len(r.requests) == 8 == len(delivery.log)
    assert webhooks.sweep() == 0

    with django_capture_on_commit_callbacks(execute=True):
        webhooks.replay(delivery.pk)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("succeeded", 1, 200)
    assert len(r.requests) == 9
    assert r.requests[-1]["body"] == r.requests[0]["body"]
    assert r.requests[-1]["headers"]["X-Webhook-Attempt"] == "1"


def last_attempt_at(delivery):
    return datetime.fromisoformat(delivery.log[-1]["at"])


def test_a_receiver_that_is_down_gets_a_retry_and_nothing_is_raised(merchant, closed_port_url, clock, django_capture_on_commit_callbacks):
    endpoint_for(merchant, closed_port_url)

    (delivery,) = emit(django_capture_on_commit_callbacks, merchant)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 1, None)
    assert delivery.last_error.startswith("ConnectionError")
    assert delivery.next_attempt_at == T + timedelta(seconds=10)


def test_a_lost_queue_message_is_sent_by_the_sweep(merchant, receiver, clock, django_capture_on_commit_callbacks):
    r = receiver()
    endpoint_for(merchant, r.url)
    with django_capture_on_commit_callbacks(execute=False):  # the message never reaches a worker
        (delivery,) = webhooks.emit(merchant_id=merchant.pk, promoter_id=None, event_type="commission.created", event_id="e-1", data=DATA)
    assert r.requests == []

    assert webhooks.sweep() == 1

    delivery.refresh_from_db()
    assert (delivery.status, len(r.requests)) == ("succeeded", 1)


def test_a_deactivated_endpoint_gets_nothing_more(merchant, receiver, clock, django_capture_on_commit_callbacks):
    r = receiver(500)
    endpoint, _ = endpoint_for(merchant, r.url)
    (delivery,) = emit(django_capture_on_commit_callbacks, merchant)
    webhooks.webhook_endpoint_deactivate(endpoint=endpoint)

    clock.move_to(T + timedelta(minutes=1))
    webhooks.sweep()

    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error, len(r.requests)) == ("failed", "The endpoint is inactive.", 1)
    with pytest.raises(ServiceValidationError):
        webhooks.replay(delivery.pk)


def test_a_pending_delivery_cannot_be_replayed(merchant, closed_port_url, clock, django_capture_on_commit_callbacks):
    endpoint_for(merchant, closed_port_url)
    (delivery,) = emit(django_capture_on_commit_callbacks, merchant)

    with pytest.raises(ServiceValidationError) as raised:
        webhooks.replay(delivery.pk)
    assert raised.value.code == "not_replayable"


# --- Payloads -----------------------------------------------------------------------------


def test_commission_and_payout_line_payloads(django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, hold_days=400, tier_rates=[])
    p = w.promoter("P")
    w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=w.journey((p, at(1))), occurred_at=at(2))
    c = Commission.objects.get(promoter=p)

    assert webhooks.commission_payload(c) == {
        "id": c.pk, "event": c.event_id, "promoter": p.pk, "kind": "direct", "level": 0, "amount": "10.00",
        "currency": "USD", "status": "pending", "reverses": None, "created_at": c.created_at.isoformat(),
    }

    batch = PayoutBatch.objects.create(merchant=w.merchant, currency="USD", period="2026-10")
    line = PayoutLine.objects.create(
        batch=batch, promoter=p, amount_minor=1000, currency="USD", method={"kind": "bank", "iban": "DE89370400440532013000"},
        status="paid", settled_at=T,
    )
    assert webhooks.payout_line_payload(line) == {
        "id": line.pk, "batch": batch.pk, "period": "2026-10", "promoter": p.pk, "amount": "10.00", "currency": "USD",
        "status": "paid", "method": "bank", "settled_at": T.isoformat(),
    }

    endpoint_for(w.merchant, "https://crm.example.com/h", ["commission.created", "payout.paid"])
    with django_capture_on_commit_callbacks():
        (created,) = webhooks.emit_commission(commission=c, event_type="commission.created")
        (paid,) = webhooks.emit_payout_paid(line=line)
    assert (created.event_id, created.payload["data"]) == (f"commission.created:{c.pk}", webhooks.commission_payload(c))
    assert (paid.event_id, paid.payload["data"]["amount"]) == (f"payout.paid:{line.pk}", "10.00")


# --- The merchant API ---------------------------------------------------------------------


def test_create_shows_the_secret_once(api, merchant, promoter):
    response = api.post(
        "/api/v1/webhooks/", {"url": "https://crm.example.com/hooks", "events": ["payout.paid", "commission.created"], "promoter": promoter.pk},
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    endpoint = WebhookEndpoint.objects.get(pk=body["id"])
    assert body == {
        "id": endpoint.pk, "url": "https://crm.example.com/hooks", "events": ["commission.created", "payout.paid"],
        "promoter": promoter.pk, "active": True, "created_at": endpoint.created_at.isoformat(), "secret": endpoint.secret,
    }
    assert body["secret"].startswith("whsec_") and len(body["secret"]) > 40
    assert "secret" not in api.get(f"/api/v1/webhooks/{endpoint.pk}/").json()
    assert "secret" not in api.get("/api/v1/webhooks/").json()["results"][0]


@pytest.mark.parametrize(
    "payload, fields",
    [
        ({"url": "http://crm.example.com/hooks", "events": ["commission.created"]}, {"url": ["Must use https."]}),
        ({"url": "not a url", "events": ["commission.created"]}, {"url": ["Must be an absolute http(s) URL."]}),
        ({"url": "ftp://crm.example.com/", "events": ["commission.created"]}, {"url": ["Must be an absolute http(s) URL."]}),
        ({"url": "https://crm.example.com/", "events": ["commission.eaten"]}, {"events": ["Unknown event type: 'commission.eaten'."]}),
        ({"url": "https://crm.example.com/", "events": []}, {"events": ["Must be a non-empty list of: commission.created, commission.approved, commission.reversed, payout.paid, event.failed."]}),
        ({"events": ["commission.created"]}, {"url": ["This field is required."]}),
        ({"url": "https://crm.example.com/", "events": ["commission.created"], "secret": "mine"}, {"secret": ["Unknown field."]}),
        ({"url": "https://crm.example.com/", "events": ["commission.created"], "promoter": 999999}, {"promoter": ["No object with this id."]}),
        ({"url": "https://crm.example.com/", "events": ["commission.created"], "active": "yes"}, {"active": ["Must be true or false."]}),
    ],
)
def test_create_refuses_bad_input_and_writes_nothing(api, program, payload, fields):
    response = api.post("/api/v1/webhooks/", payload, format="json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert response.json()["error"]["fields"] == fields
    assert WebhookEndpoint.objects.count() == 0


def test_plain_http_is_allowed_for_localhost_and_with_debug(api, settings):
    assert api.post("/api/v1/webhooks/", {"url": "http://localhost:9000/h", "events": ["payout.paid"]}, format="json").status_code == 201
    assert api.post("/api/v1/webhooks/", {"url": "http://crm.internal/h", "events": ["payout.paid"]}, format="json").status_code == 400
    settings.DEBUG = True
    assert api.post("/api/v1/webhooks/", {"url": "http://crm.internal/h", "events": ["payout.paid"]}, format="json").status_code == 201


def test_another_merchants_promoter_is_refused(api, other_merchant):
    theirs = PromoterFactory(program=ProgramFactory(merchant=other_merchant))
    response = api.post("/api/v1/webhooks/", {"url": "https://crm.example.com/", "events": ["payout.paid"], "promoter": theirs.pk}, format="json")
    assert (response.status_code, response.json()["error"]["fields"]) == (400, {"promoter": ["No object with this id."]})


def test_patch_changes_url_events_and_active(api, merchant):
    endpoint, secret = endpoint_for(merchant, "https://crm.example.com/a")

    response = api.patch(
        f"/api/v1/webhooks/{endpoint.pk}/", {"url": "https://crm.example.com/b", "events": ["commission.reversed"], "active": False}, format="json"
    )

    assert response.status_code == 200, response.content
    assert {k: response.json()[k] for k in ("url", "events", "active")} == {
        "url": "https://crm.example.com/b", "events": ["commission.reversed"], "active": False,
    }
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.events, endpoint.active, endpoint.secret) == ("https://crm.example.com/b", ["commission.reversed"], False, secret)
    bad = api.patch(f"/api/v1/webhooks/{endpoint.pk}/", {"url": "http://crm.example.com/c", "events": "all"}, format="json")
    assert bad.status_code == 400
    assert set(bad.json()["error"]["fields"]) == {"url", "events"}
    endpoint.refresh_from_db()
    assert endpoint.url == "https://crm.example.com/b"


def test_delivery_log_is_paginated_and_filterable(api, merchant, receiver, clock, django_capture_on_commit_callbacks):
    r = receiver(500)
    endpoint, _ = endpoint_for(merchant, r.url)
    emit(django_capture_on_commit_callbacks, merchant, event_id="e-1")
    emit(django_capture_on_commit_callbacks, merchant, event_id="e-2")

    page = api.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/?page_size=1")

    assert page.status_code == 200
    body = page.json()
    assert (body["count"], len(body["results"]), body["previous"]) == (2, 1, None)
    newest = body["results"][0]
    delivery = WebhookDelivery.objects.get(event_id="e-2")
    assert newest == {
        "id": delivery.pk, "endpoint": endpoint.pk, "event_type": "commission.created", "event_id": "e-2", "status": "succeeded",
        "attempts": 1, "next_attempt_at": None, "last_status_code": 200, "last_error": "", "response_excerpt": "ok",
        "delivered_at": T.isoformat(), "body": {"id": "e-2", "type": "commission.created", "created_at": T.isoformat(), "data": DATA},
        "log": [{"at": T.isoformat(), "attempt": 1, "status_code": 200, "error": "", "duration_ms": newest["log"][0]["duration_ms"]}],
        "created_at": T.isoformat(), "updated_at": T.isoformat(),
    }
    pending = api.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/?status=pending").json()
    assert [d["event_id"] for d in pending["results"]] == ["e-1"]
    assert api.get(f"/api/v1/webhooks/{endpoint.pk}/deliveries/?status=lost").status_code == 400


def test_replay_through_the_api(api, merchant, receiver, clock, django_capture_on_commit_callbacks):
    r = receiver()
    endpoint_for(merchant, r.url)
    (delivery,) = emit(django_capture_on_commit_callbacks, merchant)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(f"/api/v1/webhooks/deliveries/{delivery.pk}/replay/")

    assert response.status_code == 202, response.content
    assert (response.json()["status"], response.json()["attempts"]) == ("pending", 0)  # queued
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)
    assert len(r.requests) == 2
    assert r.requests[0]["body"] == r.requests[1]["body"]


def test_a_pending_delivery_replayed_through_the_api_is_a_400(api, merchant, closed_port_url, clock, django_capture_on_commit_callbacks):
    endpoint_for(merchant, closed_port_url)
    (delivery,) = emit(django_capture_on_commit_callbacks, merchant)

    response = api.post(f"/api/v1/webhooks/deliveries/{delivery.pk}/replay/")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "not_replayable"


def test_another_merchants_endpoints_and_deliveries_are_404(api, other_merchant, receiver, clock, django_capture_on_commit_callbacks):
    r = receiver()
    theirs, _ = endpoint_for(other_merchant, r.url)
    (delivery,) = emit(django_capture_on_commit_callbacks, other_merchant)
    assert len(r.requests) == 1

    assert api.get(f"/api/v1/webhooks/{theirs.pk}/").status_code == 404
    assert api.patch(f"/api/v1/webhooks/{theirs.pk}/", {"active": False}, format="json").status_code == 404
    assert api.get(f"/api/v1/webhooks/{theirs.pk}/deliveries/").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        replay = api.post(f"/api/v1/webhooks/deliveries/{delivery.pk}/replay/")
    assert (replay.status_code, replay.json()["error"]["code"]) == (404, "not_found")
    assert api.get("/api/v1/webhooks/").json()["count"] == 0
    theirs.refresh_from_db()
    assert theirs.active is True
    assert len(r.requests) == 1
    assert client_for(other_merchant).get(f"/api/v1/webhooks/{theirs.pk}/").status_code == 200


def test_the_webhook_api_needs_a_key(client):
    response = client.get("/api/v1/webhooks/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


# --- Admin --------------------------------------------------------------------------------


def test_admin_never_shows_the_secret_and_replays_deliveries(admin_client, merchant, receiver, clock, django_capture_on_commit_callbacks):
    r = receiver()
    endpoint, secret = endpoint_for(merchant, r.url)
    (delivery,) = emit(django_capture_on_commit_callbacks, merchant)

    page = admin_client.get(f"/admin/payouts/webhookendpoint/{endpoint.pk}/change/")
    assert page.status_code == 200
    assert secret not in page.content.decode()
    assert admin_client.get("/admin/payouts/webhookdelivery/").status_code == 200

    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(
            "/admin/payouts/webhookdelivery/", {"action": "replay", "_selected_action": [delivery.pk]}, follow=True
        )

    assert done.status_code == 200
    assert len(r.requests) == 2
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 1)


def test_admin_edits_pass_the_same_checks(admin_client, merchant):
    endpoint, secret = endpoint_for(merchant, "https://crm.example.com/a")
    form = {"url": "http://crm.example.com/b", "events": '["payout.paid"]', "active": "on"}

    refused = admin_client.post(f"/admin/payouts/webhookendpoint/{endpoint.pk}/change/", form)
    assert refused.status_code == 200 and "Must use https." in refused.content.decode()

    saved = admin_client.post(f"/admin/payouts/webhookendpoint/{endpoint.pk}/change/", {**form, "url": "https://crm.example.com/b"})
    assert saved.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.events, endpoint.secret) == ("https://crm.example.com/b", ["payout.paid"], secret)
