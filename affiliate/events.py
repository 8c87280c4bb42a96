"""Conversion events: validation, idempotency, the journey, durable queuing, processing.

The request that receives an event commits it before answering; processing is queued on
commit and can run any number of times (a status guard under a row lock). What happens
to a processed event downstream (attribution, commissions) is registered by name in
``PROCESSORS`` by the downstream apps, so this module imports none of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, OperationalError, transaction
from django.utils import dateparse, timezone

from core import money
from core.errors import ApiError, ServiceValidationError
from core.tasks import task, tasks_inline
from merchants.models import Merchant, Program
from promoters.selectors import promoter_by_coupon

from . import clickspool, journey
from .models import Click, ConversionEvent, Customer, CustomerVisitor, EventKey

logger = logging.getLogger(__name__)

Event = ConversionEvent
MAX_ID_LENGTH = 255
STRING_FIELDS = ("customer_id", "click_id", "order_id", "refund_id", "coupon")

# Downstream steps run, in order, inside the processing transaction, each given the list of
# events being processed together (a batch; refunds come one at a time, after their order).
PROCESSORS: list[Callable[[list[ConversionEvent]], None]] = []


# Told of an event that has failed for good (EVENT_MAX_ATTEMPTS), after the commit that marks
# it failed: payouts announces it by webhook. Filled by downstream apps, like PROCESSORS.
FAILURE_HOOKS: list[Callable[[ConversionEvent], None]] = []


def register_failure_hook(func: Callable[[ConversionEvent], None]) -> Callable[[ConversionEvent], None]:
    if func not in FAILURE_HOOKS:
        FAILURE_HOOKS.append(func)
    return func


def register_processor(func: Callable[[list[ConversionEvent]], None]) -> Callable[[list[ConversionEvent]], None]:
    if func not in PROCESSORS:
        PROCESSORS.append(func)
    return func


# Sections of the event body that downstream apps fill in ("attribution", "commissions").
BODY_SECTIONS: dict[str, Callable[[ConversionEvent], list[dict]]] = {}


def register_body_section(name: str, func: Callable[[ConversionEvent], list[dict]]) -> None:
    BODY_SECTIONS[name] = func


@dataclass
class IngestResult:
    event: ConversionEvent
    created: bool


@dataclass
class CleanEvent:
    type: str
    customer_id: str
    program: Program
    currency: str
    occurred_at: datetime
    amount: Decimal | None = None
    order_id: str = ""
    refund_id: str = ""
    click_id: str = ""
    coupon: str = ""
    program_given: bool = False
    currency_given: str = ""


def body_hash(payload: dict) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _json_safe(payload: dict) -> dict:
    return json.loads(json.dumps(payload, default=str))


def conflict(message: str) -> ApiError:
    return ApiError("idempotency_conflict", message, status_code=409)


# --- Validation -----------------------------------------------------------------------


def _string(payload: dict, name: str, problems: dict, *, required: bool = False) -> str:
    raw = payload.get(name)
    if raw is None or raw == "":
        if required:
            problems.setdefault(name, []).append("This field is required.")
        return ""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        problems.setdefault(name, []).append("Must be a string.")
        return ""
    value = str(raw).strip()
    if not value and required:
        problems.setdefault(name, []).append("This field is required.")
    if len(value) > MAX_ID_LENGTH:
        problems.setdefault(name, []).append(f"At most {MAX_ID_LENGTH} characters.")
        return ""
    return value


def _program(merchant: Merchant, raw, problems: dict) -> Program | None:
    if raw is None or raw == "":
        program = Program.objects.filter(merchant=merchant, is_default=True).first()
        if program is None:
            problems.setdefault("program", []).append("The merchant has no program yet; create one first.")
        return program
    try:
        program_id = int(raw)
        if isinstance(raw, bool) or str(program_id) != str(raw).strip():
            raise ValueError
    except (TypeError, ValueError):
        problems.setdefault("program", []).append("Must be a program id.")
        return None
    program = Program.objects.filter(merchant=merchant, pk=program_id).first()
    if program is None:
        problems.setdefault("program", []).append("No program with this id.")
    return program


def _occurred_at(raw, problems: dict) -> datetime:
    now = timezone.now()
    if raw is None or raw == "":
        return now
    parsed = None
    if isinstance(raw, str):
        try:
            parsed = dateparse.parse_datetime(raw.strip())
        except ValueError:
            parsed = None
    if parsed is None:
        problems.setdefault("occurred_at", []).append("Must be an ISO 8601 time with an offset, e.g. 2026-01-31T12:00:00Z.")
        return now
    if timezone.is_naive(parsed):
        problems.setdefault("occurred_at", []).append("The time needs a UTC offset (Z or +hh:mm).")
        return now
    parsed = parsed.astimezone(UTC)
    if parsed > now + timedelta(seconds=settings.EVENT_FUTURE_TOLERANCE_SECONDS):
        problems.setdefault("occurred_at", []).append("The time lies in the future.")
    return parsed


def clean_event(merchant: Merchant, payload: dict) -> CleanEvent:
    """Check a payload against the contract; raise ``ServiceValidationError`` naming every problem."""
    if not isinstance(payload, dict):
        raise ServiceValidationError({"non_field_errors": ["The body must be a JSON object."]})
    problems: dict[str, list[str]] = {}
    event_type = payload.get("type")
    if event_type not in ConversionEvent.Type.values:
        problems["type"] = ["Choose one of: registration, purchase, refund."]
    strings = {name: _string(payload, name, problems, required=name == "customer_id") for name in STRING_FIELDS}
    if event_type in ("purchase", "refund") and not strings["order_id"] and "order_id" not in problems:
        problems["order_id"] = ["This field is required for a purchase or a refund."]
    program = _program(merchant, payload.get("program"), problems)
    occurred_at = _occurred_at(payload.get("occurred_at"), problems)
    currency = program.currency if program else "USD"
    raw_currency = payload.get("currency")
    raw_currency = "" if raw_currency is None else raw_currency
    if not isinstance(raw_currency, str):
        problems["currency"] = ["Must be an ISO 4217 code such as \"USD\"."]
    elif raw_currency and program is not None and event_type != "refund" and raw_currency != program.currency:
        # A refund is checked against its order's program instead.
        problems["currency"] = [f"The program's currency is {program.currency}."]
    amount = None
    raw_amount = payload.get("amount")
    if event_type == "registration":
        if raw_amount not in (None, ""):
            problems["amount"] = ["A registration carries no amount."]
    elif raw_amount in (None, ""):
        if event_type == "purchase":
            problems["amount"] = ["This field is required for a purchase."]
    else:
        try:
            amount = money.parse_amount(raw_amount, currency)
        except money.MoneyError as exc:
            problems["amount"] = [str(exc)]
    if event_type != "refund" and strings["refund_id"]:
        problems["refund_id"] = ["Only a refund carries a refund_id."]
    if problems:
        raise ServiceValidationError(problems)
    return CleanEvent(
        type=event_type,
        customer_id=strings["customer_id"],
        program=program,
        currency=currency,
        occurred_at=occurred_at,
        amount=amount,
        order_id=strings["order_id"],
        refund_id=strings["refund_id"],
        click_id=strings["click_id"],
        coupon=strings["coupon"],
        program_given=payload.get("program") not in (None, ""),
        currency_given=raw_currency if isinstance(raw_currency, str) else "",
    )


# --- Repeats --------------------------------------------------------------------------


def _find_repeat(merchant: Merchant, data: CleanEvent) -> ConversionEvent | None:
    """The event this request repeats, or ``None``; raise a 409 for a conflicting repeat.

    Runs on every event, and almost always finds nothing: the look-up is one probe of the
    event keys' unique index (with the few columns the checks need), and the whole event is
    loaded only when there is a repeat."""
    keys = EventKey.objects.filter(merchant=merchant)
    if data.type == "registration":
        # Through the customer's unique key first: an index look-up, not a scan of the merchant.
        customer_pk = Customer.objects.filter(merchant=merchant, external_id=data.customer_id).values_list("pk", flat=True).first()
        if customer_pk is None:
            return None
        return _load(keys.filter(kind=EventKey.Kind.REGISTRATION, key=str(customer_pk)).values_list("event_id", flat=True).first())
    if data.type == "purchase":
        row = (
            keys.filter(kind=EventKey.Kind.PURCHASE, key=data.order_id)
            .values_list("event_id", "event__customer__external_id", "event__amount_minor", "event__currency")
            .first()
        )
        if row is None:
            return None
        pk, external_id, amount_minor, currency = row
        amount = _amount(amount_minor, currency)
        if external_id != data.customer_id:
            raise conflict(f"Order {data.order_id} was already received for another customer.")
        if amount != data.amount:
            raise conflict(f"Order {data.order_id} was already received with amount {amount}.")
        return _load(pk)
    row = (
        keys.filter(kind=EventKey.Kind.REFUND, key=data.order_id, refund_id=data.refund_id)
        .values_list("event_id", "event__amount_minor", "event__currency")
        .first()
    )
    if row is None:
        return None
    pk, amount_minor, currency = row
    amount = _amount(amount_minor, currency)
    if data.amount is not None and amount != data.amount:
        what = f"refund {data.refund_id}" if data.refund_id else "a refund without refund_id"
        raise conflict(f"Order {data.order_id} already has {what} of {amount}.")
    return _load(pk)


def _amount(amount_minor: int | None, currency: str) -> Decimal | None:
    """``ConversionEvent.amount`` from its columns."""
    return None if amount_minor is None else money.from_minor(amount_minor, currency)


def _load(pk: int | None) -> ConversionEvent | None:
    return None if pk is None else ConversionEvent.objects.select_related("customer").get(pk=pk)


def _find_by_key(merchant: Merchant, key: str | None, digest: str) -> ConversionEvent | None:
    if not key:
        return None
    existing = _load(
        EventKey.objects.filter(merchant=merchant, kind=EventKey.Kind.IDEMPOTENCY, key=key)
        .values_list("event_id", flat=True)
        .first()
    )
    if existing is not None and existing.body_hash != digest:
        raise conflict("This Idempotency-Key was already used with another body.")
    return existing


# --- Ingestion ------------------------------------------------------------------------


def event_ingest(
    *, merchant: Merchant, payload: dict, idempotency_key: str | None = None, source: str = "api"
) -> IngestResult:
    """Record one conversion event exactly once; return it and whether it is new.

    Every check runs before the first write; the writes share one transaction, so a
    request that fails leaves nothing behind.
    """
    if idempotency_key is not None:
        idempotency_key = idempotency_key.strip()
        if not idempotency_key or len(idempotency_key) > MAX_ID_LENGTH:
            raise ServiceValidationError({"Idempotency-Key": [f"Must be 1 to {MAX_ID_LENGTH} characters."]})
    digest = body_hash(payload) if isinstance(payload, dict) else ""
    existing = _find_by_key(merchant, idempotency_key, digest)
    if existing is not None:
        return IngestResult(existing, False)
    data = clean_event(merchant, payload)
    if data.type == "refund":
        # Checked again under the customer's lock in _record, which is enough for the other
        # types: a repeat registration or purchase names a customer that exists already, and
        # a conflicting one rolls back everything. A refund is matched by its order alone,
        # so a repeat naming another customer_id would leave that customer behind.
        existing = _find_repeat(merchant, data)
        if existing is not None:
            return IngestResult(existing, False)
    if data.click_id and clickspool.enabled():
        # A click made moments ago may still be in a tracking server's spool: wait for it
        # here, before the transaction (which holds the customer's lock) begins.
        _await_click(merchant, data.click_id)
    try:
        return _record(merchant, data, payload, idempotency_key, digest, source)
    except IntegrityError:
        # A concurrent request recorded the same event first: answer as a repeat.
        existing = _find_by_key(merchant, idempotency_key, digest) or _find_repeat(merchant, data)
        if existing is None:
            raise
        return IngestResult(existing, False)


@transaction.atomic
def _record(merchant, data: CleanEvent, payload, idempotency_key, digest, source) -> IngestResult:
    # Create the customer unless it exists (a no-op insert on the unique key), then lock it:
    # one writer per customer at a time, for the journey decides which purchase is the first.
    Customer.objects.bulk_create([Customer(merchant=merchant, external_id=data.customer_id)], ignore_conflicts=True)
    # FOR NO KEY UPDATE: writers of the customer queue behind each other, while a worker
    # that writes rows referring to the customer (a key share lock) is not held up.
    customer = Customer.objects.select_for_update(no_key=True).get(merchant=merchant, external_id=data.customer_id)
    existing = _find_repeat(merchant, data)
    if existing is not None:
        return IngestResult(existing, False)

    program = data.program
    purchase = None
    amount = data.amount
    if data.type == "refund":
        purchase, amount = _refund_target(merchant, data, customer)
        program = purchase.program

    try:
        next_stage, event_stage = journey.advance(customer.stage, data.type)
    except journey.IllegalTransition as exc:
        raise ServiceValidationError({"type": [str(exc)]}) from None

    warnings = []
    click = None
    if data.click_id:
        click = _known_click(merchant, data.click_id)
        if click is None:
            warnings.append({"code": "unknown_click_id", "message": f"No click {data.click_id!r} is known; nothing was bound."})
    coupon_promoter = None
    if data.coupon:
        coupon_promoter = promoter_by_coupon(merchant.pk, data.coupon)
        if coupon_promoter is None:
            warnings.append({"code": "unknown_coupon", "message": f"No promoter has the coupon {data.coupon!r}."})

    event = ConversionEvent.objects.create(
        merchant=merchant,
        program=program,
        customer=customer,
        type=data.type,
        stage=event_stage,
        amount_minor=None if amount is None else money.to_minor(amount, program.currency),
        currency=program.currency,
        order_id=data.order_id,
        refund_id=data.refund_id,
        purchase=purchase,
        click_ref=data.click_id,
        click=click,
        coupon=data.coupon,
        coupon_promoter=coupon_promoter,
        idempotency_key=idempotency_key,
        body_hash=digest,
        source=source,
        payload=_json_safe(payload),
        warnings=warnings,
        terms=program.terms(),
        occurred_at=data.occurred_at,
    )
    # The event's keys, whose unique index refuses a concurrent twin (an IntegrityError,
    # answered by event_ingest as a repeat).
    EventKey.objects.bulk_create(EventKey.of(event))
    if click is not None:
        CustomerVisitor.objects.bulk_create(
            [CustomerVisitor(customer=customer, visitor_id=click.visitor_id, click=click)], ignore_conflicts=True
        )
    if next_stage != customer.stage:
        customer.stage = next_stage
        customer.save(update_fields=["stage", "updated_at"])
    transaction.on_commit(lambda: enqueue_event(event.pk))
    return IngestResult(event, True)


def _refund_target(merchant: Merchant, data: CleanEvent, customer: Customer) -> tuple[ConversionEvent, Decimal]:
    purchase_pk = (
        EventKey.objects.filter(merchant=merchant, kind=EventKey.Kind.PURCHASE, key=data.order_id)
        .values_list("event_id", flat=True)
        .first()
    )
    purchase = (
        None
        if purchase_pk is None
        # The purchase alone (not its program, which every commission row refers to), and
        # FOR NO KEY UPDATE: refunds of the order queue behind each other, and a worker
        # crediting the purchase is not held up by this lock while this waits for it.
        else ConversionEvent.objects.select_for_update(no_key=True, of=("self",))
        .select_related("program")
        .filter(pk=purchase_pk)
        .first()
    )
    if purchase is None:
        raise ServiceValidationError({"order_id": [f"No purchase with order_id {data.order_id!r} is known."]})
    if purchase.customer_id != customer.pk:
        raise ServiceValidationError({"customer_id": ["The order belongs to another customer."]})
    if data.program_given and data.program.pk != purchase.program_id:
        raise ServiceValidationError({"program": ["The order belongs to another program."]})
    if data.currency_given and data.currency_given != purchase.currency:
        raise ServiceValidationError({"currency": [f"The order's currency is {purchase.currency}."]})
    refunded = sum(purchase.refunds.values_list("amount_minor", flat=True))
    left = purchase.amount_minor - refunded
    currency = purchase.currency
    if left <= 0:
        raise ServiceValidationError({"amount": ["The order is already refunded in full."]})
    if data.amount is None:
        return purchase, money.from_minor(left, currency)
    if money.to_minor(data.amount, currency) > left:
        raise ServiceValidationError(
            {"amount": [f"Only {money.format_minor(left, currency)} of the order is left to refund."]}
        )
    return purchase, data.amount


def _await_click(merchant: Merchant, click_ref: str) -> None:
    try:
        click_id = uuid.UUID(click_ref)
    except ValueError:
        return
    clickspool.wait_for_click(click_id, lambda: _known_click(merchant, click_ref))


def _known_click(merchant: Merchant, click_ref: str) -> Click | None:
    try:
        click_id = uuid.UUID(click_ref)
    except ValueError:
        return None
    # The event needs only the click's id and its visitor.
    return Click.objects.filter(pk=click_id, merchant=merchant).only("id", "visitor_id").first()


# --- Queuing and processing -----------------------------------------------------------


# Events are credited by drainers: Celery tasks that claim queued events from the event
# table in batches (skipping those another drainer holds) until none are left. The web
# process only makes sure one is running, by taking its lease in the cache (Redis); the
# event table itself is the queue, so nothing is lost with a message.


def _lease_key(slot: int) -> str:
    return f"events:drainer:{slot}"


def ring_drainer(slot: int = 0) -> bool:
    """Start a drainer in ``slot`` unless one holds its lease; True when one was started.
    A cache or broker that is down loses nothing: the sweep queues the events again."""
    try:
        if not cache.add(_lease_key(slot), os.getpid(), timeout=settings.EVENT_DRAINER_LEASE_SECONDS):
            return False
    except Exception:  # noqa: BLE001
        logger.warning("could not take the drainer lease; the sweep will queue the events", exc_info=True)
        return False
    try:
        task("affiliate.drain_events").delay(slot)
    except Exception:  # noqa: BLE001
        cache.delete(_lease_key(slot))
        logger.warning("could not start a drainer; the sweep will queue the events", exc_info=True)
        return False
    return True


def enqueue_event(event_id: int) -> None:
    """Hand a committed event to the workers: with tasks inline (no broker) it is processed
    here and now; otherwise a drainer is started unless one is already running."""
    if not tasks_inline():
        ring_drainer(0)
        return
    inline_sweeper.start()
    process_inline(event_id)


# Inline processing meets other writers of the embedded SQLite database: a lock it could not
# get is tried again after these pauses (seconds) before the attempt counts as failed.
LOCK_RETRY_PAUSES = (0.05, 0.2, 0.5, 1.0)


def process_inline(event_id: int) -> bool:
    """Process one event here and now (tasks inline); True when it is processed. A failure
    is counted against the event (``event_fail``) and the in-process sweep tries it again."""
    pauses = iter(LOCK_RETRY_PAUSES)
    while True:
        try:
            event = event_process(event_id=event_id)
            return event is not None and event.status == ConversionEvent.Status.PROCESSED
        except Exception as exc:  # noqa: BLE001 - the event is committed; counted, tried again
            pause = next(pauses, None) if _is_lock(exc) else None
            if pause is None:
                logger.warning("event %s failed; it will be tried again", event_id, exc_info=True)
                event_fail(event_id=event_id, error=exc)
                return False
            time.sleep(pause)


def _is_lock(exc: Exception) -> bool:
    """A database lock another writer holds (SQLite's "database is locked")."""
    text = str(exc).lower()
    return isinstance(exc, OperationalError) and ("locked" in text or "busy" in text)


def event_fail(*, event_id: int, error: BaseException | str) -> bool:
    """Count a failed attempt to process a queued event, with its error. At
    ``EVENT_MAX_ATTEMPTS`` the event is ``failed``: the sweep no longer sends it and the
    failure hooks (the ``event.failed`` webhook) are told after the commit. Returns whether
    it is now failed."""
    text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    with transaction.atomic():
        event = (
            ConversionEvent.objects.select_for_update(of=("self",))
            .filter(pk=event_id, status=ConversionEvent.Status.QUEUED)
            .first()
        )
        if event is None:
            return False
        event.attempts += 1
        event.last_error = text[:4000]
        failed = event.attempts >= settings.EVENT_MAX_ATTEMPTS
        if failed:
            event.status = ConversionEvent.Status.FAILED
            transaction.on_commit(lambda: _announce_failed(event.pk), robust=True)
        event.save(update_fields=["attempts", "last_error", "status"])
    return failed


def _announce_failed(event_id: int) -> None:
    event = ConversionEvent.objects.filter(pk=event_id).first()
    if event is None:
        return
    for hook in FAILURE_HOOKS:
        hook(event)


@transaction.atomic
def events_retry(*, event_ids) -> list[int]:
    """Queue failed events again, their attempts counted from zero (finance's "process
    again", once the cause is fixed); they are then processed as new. Returns their ids."""
    ids = list(
        ConversionEvent.objects.select_for_update(of=("self",))
        .filter(pk__in=list(event_ids), status=ConversionEvent.Status.FAILED)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    ConversionEvent.objects.filter(pk__in=ids).update(status=ConversionEvent.Status.QUEUED, attempts=0)
    for event_id in ids:
        transaction.on_commit(lambda event_id=event_id: enqueue_event(event_id))
    return ids


class InlineSweeper:
    """The embedded default's sweep (tasks inline, no beat): a thread of the web process
    that every ``EVENT_REQUEUE_AFTER_SECONDS`` processes again the events still queued after
    that long, so none stays queued when its inline processing failed."""

    def __init__(self):
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def start(self) -> None:
        """Start the thread in this process unless it runs (or tasks are not inline, or
        ``EVENT_INLINE_SWEEP`` is off)."""
        if not settings.EVENT_INLINE_SWEEP or not tasks_inline() or self._running():
            return
        with self._lock:
            if self._running():
                return
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name="inline-event-sweep", daemon=True)
            self._thread.start()

    def _running(self) -> bool:
        """Running in this process (a forked worker starts its own)."""
        return self._thread is not None and self._pid == os.getpid() and self._thread.is_alive()

    def _run(self) -> None:
        from django.db import connection

        while True:
            time.sleep(max(settings.EVENT_REQUEUE_AFTER_SECONDS, 1))
            try:
                requeue_stale_events()
            except Exception:  # noqa: BLE001 - the next round tries again
                logger.warning("the inline sweep failed; it runs again", exc_info=True)
            finally:
                connection.close()


inline_sweeper = InlineSweeper()


def events_drain(*, slot: int = 0) -> int:
    """Process queued events, a batch per transaction, until there are none for a while;
    return how many were processed. Runs under the lease of ``slot`` (renewed on every
    batch; a drainer that dies leaves it to expire). A full batch means a backlog: the
    drainer of the next slot is started to help, up to ``EVENT_DRAINERS``. After a batch
    that was not full it waits ``EVENT_DRAINER_POLL_SECONDS`` before it looks again, so
    that a steady trickle is credited in batches of several events too (most of a batch's
    cost is the same for one event as for fifty).

    A batch that fails is retried one event at a time, so that a bad event holds up no
    other; the bad one stays queued for the sweep (and its error in the log)."""
    key, batch = _lease_key(slot), settings.EVENT_BATCH_SIZE
    failed: set[int] = set()
    done = 0
    idle_since = None
    while True:
        if not _lease("touch", key):
            return done
        try:
            count = len(events_process_next(limit=batch, exclude=failed))
        except Exception:  # noqa: BLE001 - isolated below
            logger.exception("a batch of events failed; processing them one at a time")
            count = _process_one_by_one(batch, failed)
        done += count
        if count >= batch:  # a backlog: straight on, with help
            if slot + 1 < settings.EVENT_DRAINERS:
                ring_drainer(slot + 1)
            idle_since = None
            continue
        if count:  # a moment for more to gather: a batch costs little more than one event
            idle_since = None
            time.sleep(settings.EVENT_DRAINER_POLL_SECONDS)
            continue
        now = time.monotonic()
        idle_since = idle_since or now
        if now - idle_since < settings.EVENT_DRAINER_LINGER_SECONDS:
            time.sleep(settings.EVENT_DRAINER_POLL_SECONDS)
            continue
        if not _lease("delete", key):
            return done
        # An event committed after the last look found the lease still held and started no
        # drainer: look once more, now that the lease is free, and carry on if there is one.
        waiting = ConversionEvent.objects.filter(status=ConversionEvent.Status.QUEUED).exclude(pk__in=failed).exists()
        if not waiting or not _lease("add", key):
            return done
        idle_since = None


def _lease(action: str, key: str) -> bool:
    """Renew (``touch``), give back (``delete``) or take again (``add``) a drainer's lease.
    False when the cache (Redis) is unreachable, or ``add`` finds the lease taken: the
    drainer then stops, and what is still queued waits for the next drainer or the sweep."""
    try:
        if action == "touch":
            cache.touch(key, settings.EVENT_DRAINER_LEASE_SECONDS)
            return True
        if action == "delete":
            cache.delete(key)
            return True
        return bool(cache.add(key, os.getpid(), timeout=settings.EVENT_DRAINER_LEASE_SECONDS))
    except Exception:  # noqa: BLE001 - the events are committed; the sweep sends them
        logger.warning("the drainer lease could not be %s; the drainer stops", {"touch": "renewed", "delete": "given back", "add": "taken"}[action], exc_info=True)
        return False


def _process_one_by_one(limit: int, failed: set[int]) -> int:
    ids = list(_queued().exclude(pk__in=failed).values_list("pk", flat=True)[:limit])
    done = 0
    for event_id in ids:
        try:
            events_process(event_ids=[event_id])
            done += 1
        except Exception as exc:  # noqa: BLE001
            logger.exception("event %s failed; it stays queued for the sweep", event_id)
            failed.add(event_id)
            event_fail(event_id=event_id, error=exc)
    return done


def _queued():
    """The queued events, oldest first (ids are drawn as events are received)."""
    return ConversionEvent.objects.filter(status=ConversionEvent.Status.QUEUED).order_by("id")


def event_process(*, event_id: int) -> ConversionEvent | None:
    """Run the downstream processors for one event, once. Safe to call again at any time."""
    return events_process(event_ids=[event_id]).get(event_id)


def events_process(*, event_ids) -> dict[int, ConversionEvent]:
    """Run the downstream processors for these events, once each, in one transaction.
    Safe to call again at any time, with any of them; returns the events found, by id.
    The events are locked in id order, so that two callers cannot deadlock."""
    with transaction.atomic():
        # The customer comes along (the self-referral rule needs its id); only events are locked.
        found = list(
            ConversionEvent.objects.select_for_update(of=("self",))
            .select_related("customer")
            .filter(pk__in=sorted(set(event_ids)))
            .order_by("pk")
        )
        _process([e for e in found if e.status != ConversionEvent.Status.PROCESSED])
    return {e.pk: e for e in found}


def events_process_next(*, limit: int, exclude=()) -> list[int]:
    """Claim up to ``limit`` queued events, oldest first, skipping those another worker
    holds, and process them in one transaction; return their ids.

    The claim reads the ids alone, from the index of queued events (``event_queued``), and
    the events and their customers are then loaded by primary key: a join in the claim
    would let the planner hash a whole table of customers on every claim whenever its
    statistics lag behind (a table that was empty at the last ANALYZE)."""
    with transaction.atomic():
        ids = list(
            _queued().select_for_update(skip_locked=True).exclude(pk__in=exclude).values_list("pk", flat=True)[:limit]
        )
        found = list(ConversionEvent.objects.select_related("customer").filter(pk__in=ids).order_by("pk")) if ids else []
        _process(found)
    return ids


def _process(todo: list[ConversionEvent]) -> None:
    """The processors over locked, unprocessed events: registrations and purchases together;
    then each refund, after its order and the order's earlier refunds (in the order they
    were received, even when the queue delivered the refund first or in the same batch)."""
    gains = [e for e in todo if e.purchase_id is None]
    if gains:
        for processor in PROCESSORS:
            processor(gains)
        _mark_processed(gains)
    for refund in (e for e in todo if e.purchase_id is not None):
        if ConversionEvent.objects.filter(pk=refund.pk, status=ConversionEvent.Status.PROCESSED).exists():
            continue  # processed just now, as an earlier refund of another refund's order
        event_process(event_id=refund.purchase_id)
        earlier = ConversionEvent.objects.filter(
            purchase_id=refund.purchase_id, pk__lt=refund.pk, status=ConversionEvent.Status.QUEUED
        ).order_by("pk")
        for earlier_id in earlier.values_list("pk", flat=True):
            event_process(event_id=earlier_id)
        for processor in PROCESSORS:
            processor([refund])
        _mark_processed([refund])


def _mark_processed(events: list[ConversionEvent]) -> None:
    now = timezone.now()
    for event in events:
        event.status = ConversionEvent.Status.PROCESSED
        event.processed_at = now
        event.attempts += 1
    ConversionEvent.objects.bulk_update(events, ["status", "processed_at", "attempts"])


def requeue_stale_events(*, older_than_seconds: int | None = None, limit: int = 1000) -> int:
    """Queue again the events still ``queued`` after a while (a lost message, a dead worker)."""
    age = settings.EVENT_REQUEUE_AFTER_SECONDS if older_than_seconds is None else older_than_seconds
    cutoff = timezone.now() - timedelta(seconds=age)
    ids = list(
        ConversionEvent.objects.filter(status=ConversionEvent.Status.QUEUED, received_at__lte=cutoff)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if tasks_inline():
        for event_id in ids:
            enqueue_event(event_id)
        return len(ids)
    # Straight to the workers in batches, not through a drainer's lease: a lease left by a
    # drainer that died must not hold them up.
    process_events = task("affiliate.process_events")
    for start in range(0, len(ids), settings.EVENT_BATCH_SIZE):
        try:
            process_events.delay(ids[start : start + settings.EVENT_BATCH_SIZE])
        except Exception:  # noqa: BLE001 - the next sweep tries again
            logger.warning("could not queue events; the next sweep will retry", exc_info=True)
            break
    return len(ids)
