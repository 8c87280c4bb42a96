"""Outbound webhooks: signed POSTs to the merchant's (and promoters') own systems.

Events
------
``commission.created``, ``commission.approved``, ``commission.reversed`` (the body's ``data``
is the reversal commission, ``reverses`` naming the one it reverses) and ``payout.paid``
(``data`` is the paid payout line). A merchant-wide endpoint receives every event of the
merchant; an endpoint registered for one promoter receives only that promoter's events.

The request
-----------
``POST <endpoint url>`` with ``Content-Type: application/json`` and the body::

    {"id": "commission.created:123", "type": "commission.created",
     "created_at": "2026-11-25T10:00:00+00:00", "data": {...}}

serialised compactly (``separators=(",", ":")``, keys sorted, UTF-8). Headers:

- ``X-Webhook-Id``: the event id, the same on every retry and replay. Receivers use it as
  their idempotency key: a delivery may arrive more than once.
- ``X-Webhook-Event``: the event type.
- ``X-Webhook-Timestamp``: unix seconds when this attempt was signed.
- ``X-Webhook-Attempt``: 1 for the first attempt, counting up on retries (not signed).
- ``X-Webhook-Signature``: ``t=<timestamp>,v1=<hex>``, where ``<hex>`` is the lowercase hex
  HMAC-SHA256, keyed with the UTF-8 bytes of the endpoint's secret exactly as shown when it
  was created (``whsec_...``), over the bytes ``<timestamp>`` + ``.`` + ``<raw body bytes>``.

Any 2xx answer is success; anything else (another status, a redirect, a timeout after 5 s,
a refused connection) is retried after 10 s, 1 min, 5 min, 30 min, 2 h, 6 h and 12 h, so 8
attempts in about 21 hours, and then the delivery is ``failed``. Every attempt is logged on
the delivery; ``POST /api/v1/webhooks/deliveries/{id}/replay/`` sends a finished delivery
again with a fresh set of attempts.

Verifying on the receiving side
-------------------------------
Check the signature over the raw body before parsing it, and refuse stale timestamps so a
captured request cannot be replayed later. ``verify_signature`` below is plain Python with
no dependency; copy it::

    import hashlib, hmac, time

    def verify_signature(secret, header, body, *, tolerance=300, now=None):
        ...  # as below

    # Django, for example:
    ok = verify_signature(WEBHOOK_SECRET, request.headers.get("X-Webhook-Signature"), request.body)
    if not ok:
        return HttpResponse(status=400)
    event = json.loads(request.body)
    if already_seen(request.headers["X-Webhook-Id"]):
        return HttpResponse(status=200)  # a retry of something already handled

Delivery machinery
------------------
``emit`` writes one ``WebhookDelivery`` per matching endpoint in the caller's transaction
and queues ``payouts.deliver_webhook`` once it commits. Sending happens outside any
transaction: a delivery is claimed by a conditional update (its attempt count is the
token, so a duplicate task message is a no-op), posted, and the result recorded. Retries are
not Celery countdowns: ``payouts.sweep_webhooks`` (Celery beat, every 10 s) queues every
pending delivery that is due, so a lost message or a restarted worker loses nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from core import money
from core.errors import ServiceValidationError
from core.tasks import task

from .models import Commission, PayoutLine, WebhookDelivery, WebhookEndpoint

logger = logging.getLogger(__name__)

EVENT_TYPES = tuple(WebhookEndpoint.Event.values)
SECRET_PREFIX = "whsec_"
USER_AGENT = "AffiliatePlatform-Webhooks/1"
DELIVER_TASK = "payouts.deliver_webhook"

TIMEOUT_SECONDS = 5
# Waits after a failed attempt n (1-based): after the last one, the delivery is failed.
BACKOFF = (
    timedelta(seconds=10), timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=30),
    timedelta(hours=2), timedelta(hours=6), timedelta(hours=12),
)
MAX_ATTEMPTS = len(BACKOFF) + 1
# A claimed attempt holds the delivery this long; a worker that dies mid-send frees it then.
IN_FLIGHT_LEASE = timedelta(seconds=60)
# A delivery the sweep has queued is not queued again for this long.
QUEUED_GRACE = timedelta(minutes=2)
SWEEP_BATCH = 500
MAX_ACTIVE_ENDPOINTS = 50
ERROR_CHARS = 500
EXCERPT_CHARS = 1000
LOG_ENTRIES = 50
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


# --- Signing (pure) ---------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The v1 signature: hex HMAC-SHA256 of ``b"<timestamp>." + body`` keyed by the secret."""
    return hmac.new(secret.encode("utf-8"), f"{int(timestamp)}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={int(timestamp)},v1={sign(secret, timestamp, body)}"


def verify_signature(secret, header, body, *, tolerance=300, now=None) -> bool:
    """True when ``header`` (the X-Webhook-Signature value) signs ``body`` (the raw bytes
    received) with ``secret`` and its timestamp is within ``tolerance`` seconds of ``now``
    (unix seconds; default: the clock). Compared in constant time; several ``v1=`` values
    are accepted (any one matching will do). Needs only hashlib, hmac and time."""
    if not isinstance(header, str) or not isinstance(secret, str):
        return False
    if isinstance(body, str):
        body = body.encode("utf-8")
    timestamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)


def body_bytes(payload: dict) -> bytes:
    """The exact bytes sent (and signed) for a stored body: the same on every attempt."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


# --- Payloads ---------------------------------------------------------------------------


def commission_payload(commission: Commission) -> dict:
    c = commission
    return {
        "id": c.pk,
        "event": c.event_id,
        "promoter": c.promoter_id,
        "kind": c.kind,
        "level": c.level,
        "amount": money.format_minor(c.amount_minor, c.currency),
        "currency": c.currency,
        "status": c.status,
        "reverses": c.reverses_id,
        "created_at": c.created_at.isoformat(),
    }


def payout_line_payload(line: PayoutLine) -> dict:
    return {
        "id": line.pk,
        "batch": line.batch_id,
        "period": line.batch.period,
        "promoter": line.promoter_id,
        "amount": money.format_minor(line.amount_minor, line.currency),
        "currency": line.currency,
        "status": line.status,
        "method": (line.method or {}).get("kind", ""),
        "settled_at": line.settled_at.isoformat() if line.settled_at else None,
    }


# --- Endpoints --------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def clean_url(raw) -> str:
    """An absolute http(s) URL; https unless DEBUG is on or the host is this machine."""
    if not isinstance(raw, str) or not raw.strip():
        raise ServiceValidationError({"url": ["Must be an absolute URL such as https://crm.example.com/hooks."]})
    url = raw.strip()
    if len(url) > 2000:
        raise ServiceValidationError({"url": ["At most 2000 characters."]})
    try:
        URLValidator(schemes=["http", "https"])(url)
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except (ValidationError, ValueError):
        raise ServiceValidationError({"url": ["Must be an absolute http(s) URL."]})
    if parts.scheme != "https" and not settings.DEBUG and host not in LOCAL_HOSTS:
        raise ServiceValidationError({"url": ["Must use https."]})
    if not settings.WEBHOOK_ALLOW_PRIVATE_HOSTS:
        address = _literal_address(host)
        if host == "localhost" or host.endswith(".localhost") or (address is not None and not address.is_global):
            raise ServiceValidationError({"url": ["Must be a public address, not a private, loopback or link-local one."]})
    return url


def _literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def private_address(url: str) -> str:
    """The first address the URL's host resolves to that is not on the public internet (a
    private, loopback, link-local, shared or reserved one), or "" when there is none.

    Checked before every attempt, not only when the endpoint is saved: a name may resolve
    elsewhere later. (The request then resolves the name again; a DNS server that answers
    differently within those milliseconds is not defeated by this check.)"""
    host = (urlsplit(url).hostname or "").lower()
    address = _literal_address(host)
    if address is not None:
        return "" if address.is_global else str(address)
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return ""  # unresolvable: the request fails on its own, and says so
    for info in infos:
        resolved = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not resolved.is_global:
            return str(resolved)
    return ""


def clean_events(raw) -> list[str]:
    """A non-empty list of known event types, without repeats, in the canonical order."""
    if not isinstance(raw, list) or not raw:
        raise ServiceValidationError({"events": [f"Must be a non-empty list of: {', '.join(EVENT_TYPES)}."]})
    unknown = [str(e) for e in raw if not isinstance(e, str) or e not in EVENT_TYPES]
    if unknown:
        raise ServiceValidationError({"events": [f"Unknown event type: {name!r}." for name in unknown[:10]]})
    return [e for e in EVENT_TYPES if e in raw]


def clean_active(raw) -> bool:
    if not isinstance(raw, bool):
        raise ServiceValidationError({"active": ["Must be true or false."]})
    return raw


def _check_capacity(merchant_id: int, *, excluding: int | None = None) -> None:
    active = WebhookEndpoint.objects.filter(merchant_id=merchant_id, active=True).exclude(pk=excluding)
    if active.count() >= MAX_ACTIVE_ENDPOINTS:
        raise ServiceValidationError({"active": [f"At most {MAX_ACTIVE_ENDPOINTS} active endpoints per merchant."]})


@transaction.atomic
def webhook_endpoint_create(*, merchant, url, events, promoter=None, active=True) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint. Returns it with its signing secret: the only time it is shown."""
    problems: dict = {}
    cleaned = {}
    for name, cleaner, raw in (("url", clean_url, url), ("events", clean_events, events), ("active", clean_active, active)):
        try:
            cleaned[name] = cleaner(raw)
        except ServiceValidationError as exc:
            problems.update(exc.fields)
    if promoter is not None and promoter.merchant_id != merchant.pk:
        problems["promoter"] = ["No object with this id."]
    if problems:
        raise ServiceValidationError(problems)
    if cleaned["active"]:
        _check_capacity(merchant.pk)
    secret = new_secret()
    endpoint = WebhookEndpoint.objects.create(
        merchant=merchant, promoter=promoter, url=cleaned["url"], events=cleaned["events"], active=cleaned["active"], secret=secret
    )
    return endpoint, secret


_UNSET = object()


@transaction.atomic
def webhook_endpoint_update(*, endpoint: WebhookEndpoint, url=_UNSET, events=_UNSET, active=_UNSET) -> WebhookEndpoint:
    """Change the URL, the events or the active flag. Deliveries not yet sent go to the new
    URL; the secret and the promoter never change."""
    problems: dict = {}
    changes = {}
    for name, cleaner, raw in (("url", clean_url, url), ("events", clean_events, events), ("active", clean_active, active)):
        if raw is _UNSET:
            continue
        try:
            changes[name] = cleaner(raw)
        except ServiceValidationError as exc:
            problems.update(exc.fields)
    if problems:
        raise ServiceValidationError(problems)
    if changes.get("active") and not endpoint.active:
        _check_capacity(endpoint.merchant_id, excluding=endpoint.pk)
    for name, value in changes.items():
        setattr(endpoint, name, value)
    if changes:
        endpoint.save(update_fields=[*changes, "updated_at"])
    return endpoint


def webhook_endpoint_deactivate(*, endpoint: WebhookEndpoint) -> WebhookEndpoint:
    """Stop sending: nothing new is queued, and pending deliveries fail when next due."""
    return webhook_endpoint_update(endpoint=endpoint, active=False)


# --- Emitting ---------------------------------------------------------------------------


def matching_endpoints(*, merchant_id: int, promoter_id: int | None, event_type: str) -> list[WebhookEndpoint]:
    """The merchant's active endpoints for this event: the merchant-wide ones and, for a
    promoter's event, that promoter's own."""
    owners = Q(promoter__isnull=True)
    if promoter_id is not None:
        owners |= Q(promoter_id=promoter_id)
    endpoints = WebhookEndpoint.objects.filter(owners, merchant_id=merchant_id, active=True).order_by("id")
    # Few per merchant: the event list is checked here (SQLite has no JSON containment).
    return [e for e in endpoints if event_type in (e.events or [])]


@transaction.atomic
def emit(*, merchant_id: int, promoter_id: int | None, event_type: str, event_id: str, data: dict) -> list[WebhookDelivery]:
    """Write a delivery for every matching endpoint and queue each once the transaction
    commits. Idempotent: an event id already delivered to an endpoint is not written twice.
    Returns the deliveries written now."""
    event_type = str(event_type)
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    if not event_id or len(event_id) > 100:
        raise ValueError("event_id must be 1 to 100 characters")
    now = timezone.now()
    # Stored and sent identically: a round trip through JSON turns Decimal and datetime
    # values into the strings the database will hand back.
    payload = json.loads(
        json.dumps({"id": event_id, "type": event_type, "created_at": now.isoformat(), "data": data}, cls=DjangoJSONEncoder)
    )
    created = []
    for endpoint in matching_endpoints(merchant_id=merchant_id, promoter_id=promoter_id, event_type=event_type):
        if WebhookDelivery.objects.filter(endpoint=endpoint, event_id=event_id).exists():
            continue
        try:
            with transaction.atomic():
                delivery = WebhookDelivery.objects.create(
                    endpoint=endpoint, event_type=event_type, event_id=event_id, payload=payload, next_attempt_at=now
                )
        except IntegrityError:  # the same event emitted concurrently
            continue
        created.append(delivery)
        transaction.on_commit(lambda pk=delivery.pk: enqueue(pk, expected_attempts=0))
    return created


def emit_commission(*, commission: Commission, event_type: str) -> list[WebhookDelivery]:
    """``commission.created`` / ``approved`` / ``reversed`` for one commission row."""
    return emit(
        merchant_id=commission.merchant_id,
        promoter_id=commission.promoter_id,
        event_type=event_type,
        event_id=f"{event_type}:{commission.pk}",
        data=commission_payload(commission),
    )


def endpoint_events(merchant_ids) -> dict[int, set[str]]:
    """The events that these merchants' active endpoints take, by merchant, in one query."""
    listening: dict[int, set[str]] = {pk: set() for pk in merchant_ids}
    for merchant_id, events in WebhookEndpoint.objects.filter(merchant_id__in=list(listening), active=True).values_list(
        "merchant_id", "events"
    ):
        listening[merchant_id].update(events)
    return listening


def emit_commissions(*, commissions, event_type: str, listening: dict[int, set[str]] | None = None) -> int:
    """``emit_commission`` for many rows: a merchant with no endpoint for this event (the
    usual case for a month-end's approvals) costs one query, not one per row; none when
    the caller passes ``endpoint_events`` of the commissions' merchants."""
    commissions = list(commissions)
    if not commissions:
        return 0
    if listening is None:
        listening = endpoint_events({c.merchant_id for c in commissions})
    written = 0
    for commission in commissions:
        if event_type in listening[commission.merchant_id]:
            written += len(emit_commission(commission=commission, event_type=event_type))
    return written


def emit_event_failed(event) -> list[WebhookDelivery]:
    """``event.failed``: a conversion event that could not be processed after
    ``EVENT_MAX_ATTEMPTS`` tries (merchant-wide endpoints only). Its id changes with every
    time it fails for good, so a retried event that fails again is announced again."""
    return emit(
        merchant_id=event.merchant_id,
        promoter_id=None,
        event_type=WebhookEndpoint.Event.EVENT_FAILED,
        event_id=f"event.failed:{event.pk}:{event.attempts}:{int(timezone.now().timestamp())}",
        data={
            "event": event.pk,
            "type": event.type,
            "customer_id": event.customer.external_id,
            "order_id": event.order_id or None,
            "attempts": event.attempts,
            "last_error": event.last_error,
            "received_at": event.received_at.isoformat(),
        },
    )


def emit_payout_paid(*, line: PayoutLine) -> list[WebhookDelivery]:
    return emit(
        merchant_id=line.batch.merchant_id,
        promoter_id=line.promoter_id,
        event_type=WebhookEndpoint.Event.PAYOUT_PAID,
        event_id=f"payout.paid:{line.pk}",
        data=payout_line_payload(line),
    )


def enqueue(delivery_id: int, *, expected_attempts: int) -> None:
    """Hand a delivery to the workers. A broker that is down loses nothing: the sweep
    queues every due delivery again."""
    try:
        task("payouts.deliver_webhook").apply_async(args=[delivery_id], kwargs={"expected_attempts": expected_attempts}, queue="default")
    except Exception:  # noqa: BLE001 - the delivery is committed; the sweep will queue it
        logger.warning("could not queue webhook delivery %s; the sweep will retry", delivery_id, exc_info=True)


# --- Sending ----------------------------------------------------------------------------


def _claim(delivery_id: int, expected_attempts: int | None) -> int | None:
    """Take the next attempt of a pending delivery; returns its number, or None when the
    delivery is finished, given up, or someone else took this attempt first."""
    now = timezone.now()
    if expected_attempts is None:  # a direct call: only when due
        row = WebhookDelivery.objects.filter(pk=delivery_id, next_attempt_at__lte=now).values("attempts").first()
        if row is None:
            return None
        expected_attempts = row["attempts"]
    if expected_attempts >= MAX_ATTEMPTS:
        return None
    taken = WebhookDelivery.objects.filter(
        pk=delivery_id, status=WebhookDelivery.Status.PENDING, attempts=expected_attempts
    ).update(attempts=F("attempts") + 1, next_attempt_at=now + IN_FLIGHT_LEASE, updated_at=now)
    return expected_attempts + 1 if taken else None


def _clean_text(text: str, limit: int) -> str:
    # PostgreSQL stores no NUL character in text.
    return text.replace("\x00", "\ufffd")[:limit]


def _post(url: str, body: bytes, headers: dict) -> tuple[int | None, str, str]:
    """POST once: (status code or None, response excerpt, error)."""
    try:
        response = requests.post(url, data=body, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False, stream=True)
    except requests.RequestException as exc:
        return None, "", f"{type(exc).__name__}: {exc}"
    try:
        raw = next(response.iter_content(EXCERPT_CHARS), b"")
    except requests.RequestException as exc:
        raw = f"(body unreadable: {type(exc).__name__})".encode()
    finally:
        response.close()
    excerpt = raw.decode("utf-8", errors="replace")
    error = "" if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
    return response.status_code, excerpt, error


def deliver(delivery_id: int, *, expected_attempts: int | None = None) -> WebhookDelivery | None:
    """Make one attempt at a pending delivery and record it. Runs outside a transaction on
    purpose: no row is locked while the receiver takes its time. Returns the delivery, or
    None when there was nothing to send (finished, not due, or taken by another worker)."""
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return None
    endpoint = delivery.endpoint
    if not endpoint.active:
        WebhookDelivery.objects.filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING).update(
            status=WebhookDelivery.Status.FAILED, next_attempt_at=None, last_error="The endpoint is inactive.",
            updated_at=timezone.now(),
        )
        return WebhookDelivery.objects.get(pk=delivery_id)
    attempt = _claim(delivery_id, expected_attempts)
    if attempt is None:
        return None

    body = body_bytes(delivery.payload)
    timestamp = int(timezone.now().timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Id": delivery.event_id,
        "X-Webhook-Event": delivery.event_type,
        "X-Webhook-Timestamp": str(timestamp),
        "X-Webhook-Attempt": str(attempt),
        "X-Webhook-Signature": signature_header(endpoint.secret, timestamp, body),
    }
    started = time.monotonic()
    refused = "" if settings.WEBHOOK_ALLOW_PRIVATE_HOSTS else private_address(endpoint.url)
    if refused:
        status_code, excerpt, error = None, "", f"Not sent: the host resolves to {refused}, not a public address."
    else:
        status_code, excerpt, error = _post(endpoint.url, body, headers)
    duration_ms = int((time.monotonic() - started) * 1000)
    if error:
        logger.info("webhook delivery %s attempt %s to %s failed: %s", delivery_id, attempt, endpoint.url, error)
    return _record(delivery_id, attempt, status_code=status_code, excerpt=excerpt, error=error, duration_ms=duration_ms)


@transaction.atomic
def _record(delivery_id: int, attempt: int, *, status_code, excerpt: str, error: str, duration_ms: int) -> WebhookDelivery:
    now = timezone.now()
    delivery = WebhookDelivery.objects.select_for_update().get(pk=delivery_id)
    entry = {
        "at": now.isoformat(), "attempt": attempt, "status_code": status_code,
        "error": _clean_text(error, ERROR_CHARS), "duration_ms": duration_ms,
    }
    delivery.log = [*(delivery.log or []), entry][-LOG_ENTRIES:]
    fields = ["log", "updated_at"]
    if delivery.status == WebhookDelivery.Status.PENDING and delivery.attempts == attempt:
        # Still ours (no replay began meanwhile): the outcome decides what comes next.
        delivery.last_status_code = status_code
        delivery.last_error = _clean_text(error, ERROR_CHARS)
        delivery.response_excerpt = _clean_text(excerpt, EXCERPT_CHARS)
        if not error:
            delivery.status = WebhookDelivery.Status.SUCCEEDED
            delivery.next_attempt_at = None
            delivery.delivered_at = now
        elif attempt >= MAX_ATTEMPTS:
            delivery.status = WebhookDelivery.Status.FAILED
            delivery.next_attempt_at = None
        else:
            delivery.next_attempt_at = now + BACKOFF[attempt - 1]
        fields += ["last_status_code", "last_error", "response_excerpt", "status", "next_attempt_at", "delivered_at"]
    delivery.save(update_fields=fields)
    return delivery


@transaction.atomic
def replay(delivery_id: int) -> WebhookDelivery:
    """Send a finished (succeeded or failed) delivery again, with a fresh set of attempts.
    The body and event id are the same, so the receiver can tell it is a repeat."""
    delivery = WebhookDelivery.objects.select_for_update().select_related("endpoint").get(pk=delivery_id)
    if delivery.status == WebhookDelivery.Status.PENDING:
        raise ServiceValidationError(
            {"status": ["The delivery is still pending; it is sent again at next_attempt_at."]},
            message="Only a succeeded or failed delivery can be replayed.", code="not_replayable",
        )
    if not delivery.endpoint.active:
        raise ServiceValidationError(
            {"endpoint": ["The endpoint is inactive; activate it first."]},
            message="The endpoint is inactive.", code="not_replayable",
        )
    delivery.status = WebhookDelivery.Status.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = timezone.now()
    delivery.save(update_fields=["status", "attempts", "next_attempt_at", "updated_at"])
    transaction.on_commit(lambda: enqueue(delivery.pk, expected_attempts=0))
    return delivery


def sweep(*, limit: int = SWEEP_BATCH) -> int:
    """Queue every pending delivery that is due (retries, and first attempts whose message
    was lost). Returns how many were queued. Safe to run at any time, on several workers."""
    now = timezone.now()
    pending = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now)
    # An attempt claimed and never recorded (its worker died) on the last try: give up.
    pending.filter(attempts__gte=MAX_ATTEMPTS).update(
        status=WebhookDelivery.Status.FAILED, next_attempt_at=None, updated_at=now,
        last_error="Gave up: the last attempt never finished.",
    )
    queued = 0
    due = pending.filter(attempts__lt=MAX_ATTEMPTS).order_by("next_attempt_at", "id").values_list("pk", "attempts")[:limit]
    for pk, attempts in list(due):
        # Hold it for a while so the next sweep does not queue it again meanwhile.
        held = WebhookDelivery.objects.filter(
            pk=pk, status=WebhookDelivery.Status.PENDING, attempts=attempts, next_attempt_at__lte=now
        ).update(next_attempt_at=now + QUEUED_GRACE)
        if held:
            enqueue(pk, expected_attempts=attempts)
            queued += 1
    return queued
