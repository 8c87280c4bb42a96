"""A new conversion event accepted at the WSGI layer, in front of Django.

Accepting an event through Django costs several milliseconds of CPU: the request object,
the middleware, DRF's view machinery, and a dozen ORM round trips in ``event_ingest``.
Almost every event a merchant sends is the same simple case, a first registration or a
new purchase, and for that case this wrapper does the work itself, in about a millisecond:
the body is checked by the pieces of ``events.clean_event`` (see "Validation" below), and
what ``events._record`` writes is written with two statements in one transaction:

1. the customer created unless it exists, and locked; whether the event repeats an earlier
   one; the click named by ``click_id``; the promoter of ``coupon``; the program; and the
   API key checked again against the merchant row (the key's merchant comes from a
   process cache);
2. the event (the same columns and values as ``_record``'s), the customer's visitor binding
   and the customer's next stage (``journey.advance``).

After the commit the event goes to ``events.enqueue_event``, as from ``_record``.

The answer is the very response Django would send (``tests/affiliate/test_eventpath.py``
compares them byte for byte, headers included). Anything else goes to Django unchanged,
which gives the answer of reference; when the fast path has begun its transaction, it
rolls it back first, so nothing of it remains:

* anything but ``POST /api/v1/events/`` with ``Content-Type: application/json``, no query
  string, no ``Idempotency-Key``, a body within ``API_MAX_BODY_BYTES``;
* a key that is not ``Bearer <a merchant's key>``; a body that is not a JSON object, has a
  NUL character or fails a check of ``clean_event``; a refund;
* a repeat of an earlier event (200 or 409 from Django), a journey step that is illegal,
  an unknown ``click_id`` or ``coupon`` (the event is recorded with a warning by Django),
  a click that may still be in a tracking server's spool (Django waits for it), a customer
  created at this moment by a concurrent request, any database error;
* whenever ``EVENT_FASTPATH`` is off, the database is not PostgreSQL, tasks run inline
  (``CELERY_TASK_ALWAYS_EAGER``: the answer then shows the processed event), and for the
  Host and TLS checks of the redirect's fast path (``TrackingFastPath``), whose settings
  handling this class inherits.

Over the API's rate limit per key (``affiliate/ratelimit.py``), the 429 that Django's
``RateLimitMiddleware`` would send is sent from here.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from functools import partial

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb
from rest_framework.exceptions import AuthenticationFailed, ParseError
from rest_framework.renderers import JSONRenderer

from core import money
from core.api_common import refuse_nul
from core.errors import ServiceValidationError, StrictJSONParser
from merchants.auth import MerchantKeyAuthentication, digest
from merchants.models import Merchant, Program

from . import events, journey, ratelimit
from .api import event_body
from .fastpath import TrackingFastPath
from .models import ConversionEvent, Customer, EventKey

log = logging.getLogger(__name__)

PATH = "/api/v1/events/"
# What DRF answers in ``Allow`` for the events list route (list and create).
ALLOW = "GET, POST, HEAD, OPTIONS"
_KEY_CACHE_SECONDS = 30
_KEY_CACHE_MAX = 10_000

# The merchant's customer, created unless it exists, and locked: one writer per customer,
# as in ``events._record`` (the journey decides which purchase is the first). A customer
# inserted by a concurrent transaction that commits while this statement waits is in
# neither ``created`` (a conflict) nor ``existing`` (not in this statement's snapshot): no
# row, and Django takes the request. The program is read here too, rather than by
# ``clean_event``'s own query before the transaction: that ORM query cost a third of the
# fast path's CPU, and a row read here is current, which a cache would not be.
_LOOK = """
WITH created AS (
    INSERT INTO affiliate_customer (merchant_id, external_id, stage, created_at, updated_at)
    VALUES (%(merchant)s, %(customer)s, %(visitor_stage)s, %(now)s, %(now)s)
    ON CONFLICT (merchant_id, external_id) DO NOTHING
    RETURNING id, stage
), existing AS (
    SELECT id, stage FROM affiliate_customer
    WHERE merchant_id = %(merchant)s AND external_id = %(customer)s
    FOR NO KEY UPDATE
), customer AS (
    SELECT id, stage FROM created UNION ALL SELECT id, stage FROM existing
), program AS (
    SELECT {program_columns} FROM affiliate_program WHERE merchant_id = %(merchant)s AND {program}
)
SELECT
    customer.id,
    customer.stage,
    EXISTS (SELECT 1 FROM affiliate_merchant WHERE id = %(merchant)s AND api_key_hash = %(key_hash)s),
    EXISTS (SELECT 1 FROM affiliate_eventkey WHERE {repeat}),
    -- A flagged click is for Django to answer (its body warns of it).
    (SELECT visitor_id FROM affiliate_click WHERE id = %(click)s AND merchant_id = %(merchant)s AND NOT is_fraud),
    (SELECT id FROM promoters_promoter WHERE merchant_id = %(merchant)s AND UPPER(coupon_code) = %(coupon_key)s
     ORDER BY id LIMIT 1),
    program.*
FROM customer LEFT JOIN program ON true
"""
# What ``Program.terms()`` and the event need of the program (JSON as text, parsed here as
# Django's JSONField does).
PROGRAM_COLUMNS = (
    "id", "currency", "attribution_model", "first_click_share", "last_click_share", "lookback_days",
    "registration_bounty_minor", "first_purchase_rate", "repeat_purchase_rate", "tier_rates",
    "compress_inactive", "hold_days", "fraud",
)  # fmt: skip
# As ``events._program`` finds it: the default program (``.first()``: the lowest id), or the
# merchant's program of that id.
_PROGRAM = {False: "is_default ORDER BY id LIMIT 1", True: "id = %(program)s"}
# A repeat, found by the event's key (models.EventKey).
_REPEAT = {
    "purchase": "merchant_id = %(merchant)s AND kind = 'purchase' AND key = %(order_id)s AND refund_id = ''",
    "registration": "merchant_id = %(merchant)s AND kind = 'registration' AND key = customer.id::text AND refund_id = ''",
}
# (event type, program given by id) -> the statement
LOOK = {
    (event_type, by_id): _LOOK.format(
        repeat=repeat,
        program=_PROGRAM[by_id],
        program_columns=", ".join(f"{c}::text AS {c}" if c in ("tier_rates", "fraud") else c for c in PROGRAM_COLUMNS),
    )
    for event_type, repeat in _REPEAT.items()
    for by_id in (False, True)
}

_EVENT = """
WITH event AS (
    INSERT INTO affiliate_conversionevent (
        merchant_id, program_id, customer_id, type, stage, status, amount_minor, currency,
        order_id, refund_id, purchase_id, click_ref, click_id, coupon, coupon_promoter_id,
        idempotency_key, body_hash, source, payload, warnings, terms, occurred_at,
        received_at, processed_at, attempts
    ) VALUES (
        %(merchant)s, %(program)s, %(customer_pk)s, %(type)s, %(event_stage)s, 'queued', %(amount_minor)s,
        %(currency)s, %(order_id)s, '', NULL, %(click_ref)s, %(click)s, %(coupon)s, %(coupon_promoter)s,
        NULL, %(body_hash)s, 'api', %(payload)s, %(warnings)s, %(terms)s, %(occurred_at)s,
        %(now)s, NULL, 0
    )
    RETURNING id
), key AS (
    INSERT INTO affiliate_eventkey (merchant_id, kind, key, refund_id, event_id)
    SELECT %(merchant)s, %(kind)s, %(key)s, '', id FROM event
){binding}{stage}
SELECT id FROM event
"""
_BINDING = """, binding AS (
    INSERT INTO affiliate_customervisitor (customer_id, visitor_id, click_id, bound_at)
    VALUES (%(customer_pk)s, %(visitor)s, %(click)s, %(now)s)
    ON CONFLICT (customer_id, visitor_id) DO NOTHING
)"""
_STAGE = """, stage AS (
    UPDATE affiliate_customer SET stage = %(next_stage)s, updated_at = %(now)s WHERE id = %(customer_pk)s
)"""
# (binds a visitor, advances the stage) -> the statement
EVENT = {
    (bind, advance): _EVENT.format(binding=_BINDING if bind else "", stage=_STAGE if advance else "")
    for bind in (False, True)
    for advance in (False, True)
}


class FallThrough(Exception):
    """The request is not the simple case: roll back, and let Django answer it."""


class EventFastPath(TrackingFastPath):
    """``POST /api/v1/events/`` for a new registration or purchase, answered here; every other
    request goes to ``app``. A subclass of the redirect's fast path for its Host and TLS
    checks and its reading of the security settings; the redirect itself stays with the
    ``TrackingFastPath`` that ``app`` is (config/wsgi.py)."""

    def __init__(self, app):
        super().__init__(app)
        self._merchants: dict[str, tuple[float, Merchant]] = {}
        self._renderer = JSONRenderer()
        self._parser = StrictJSONParser()

    def _configure(self) -> None:
        if self._configured_for is settings._wrapped:
            return
        super()._configure()
        self._merchants = {}
        self.accepting = (
            settings.EVENT_FASTPATH
            and connection.vendor == "postgresql"
            and not settings.CELERY_TASK_ALWAYS_EAGER
            and not settings.DISALLOWED_USER_AGENTS
            and not settings.PREPEND_WWW
        )
        self.max_body = settings.API_MAX_BODY_BYTES
        # In the order the middleware adds them on the way out: XFrameOptionsMiddleware,
        # CommonMiddleware (Content-Length), then SecurityMiddleware (HSTS on HTTPS, nosniff,
        # the referrer and opener policies).
        self.frame_options = ("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper())
        self.policies = []
        if settings.SECURE_CONTENT_TYPE_NOSNIFF:
            self.policies.append(("X-Content-Type-Options", "nosniff"))
        referrer_policy = settings.SECURE_REFERRER_POLICY
        if referrer_policy:
            if isinstance(referrer_policy, str):
                referrer_policy = referrer_policy.split(",")
            self.policies.append(("Referrer-Policy", ",".join(v.strip() for v in referrer_policy)))
        if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
            self.policies.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") == PATH and environ.get("REQUEST_METHOD") == "POST":
            self._configure()
            if self.accepting:
                answer = self._accept(environ, start_response)
                if answer is not None:
                    return answer
        return self.app(environ, start_response)

    # --- the request ------------------------------------------------------------------

    def _accept(self, environ, start_response):
        """Answer the request, or return ``None`` with ``wsgi.input`` still readable by Django."""
        if (
            environ.get("CONTENT_TYPE") != "application/json"
            or environ.get("QUERY_STRING")
            or "HTTP_IDEMPOTENCY_KEY" in environ
            or not self._host_allowed(environ)
        ):
            return None
        secure = self._secure(environ)
        if not secure and self.ssl_redirect and not any(p.search(PATH[1:]) for p in self.redirect_exempt):
            return None
        key = ratelimit.bearer_key(environ)
        if key is None:
            return None
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if not 0 < length <= self.max_body:
            return None  # an empty body is a 400, a large one a 413: Django's answers
        # Counted here, as Django's RateLimitMiddleware would (after the body's size check of
        # ApiBodyLimitMiddleware, above it); not again by Django should the request go there.
        hashed = digest(key)
        wait = ratelimit.hit_wsgi(environ, ratelimit.api_scopes(environ, key, hashed))
        if wait:
            return ratelimit.answer_wsgi(start_response, wait, secure=secure)
        raw = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(raw)  # for Django, should the request go there
        payload = self._payload(raw)
        if payload is None:
            return None

        _drop_if_obsolete()
        try:
            merchant = self._merchant(key, hashed)
            if merchant is None:
                return None
            event = self._record(merchant, hashed, payload)
        except FallThrough:
            return None
        except IntegrityError:
            return None  # a concurrent repeat: Django answers it as one
        except Exception:  # noqa: BLE001 - Django answers instead, and reports what it meets
            log.warning("Event fast path: gave the request to Django after an error.", exc_info=True)
            return None

        content = self._renderer.render(event_body(event))
        headers = [
            ("Content-Type", "application/json"),
            ("Allow", ALLOW),
            self.frame_options,
            ("Content-Length", str(len(content))),
        ]
        if self.sts and secure:
            headers.append(("Strict-Transport-Security", self.sts))
        headers += self.policies
        _drop_if_obsolete()
        start_response("201 Created", headers)
        return [content]

    def _payload(self, raw: bytes) -> dict | None:
        """The body as ``api_common.body_dict`` gives it to ``event_ingest``, or ``None``."""
        try:
            payload = self._parser.parse(io.BytesIO(raw))
        except ParseError:
            return None
        if not isinstance(payload, dict) or payload.get("type") not in ("purchase", "registration"):
            return None
        try:
            refuse_nul(payload)
        except ServiceValidationError:
            return None
        return payload

    def _merchant(self, key: str, hashed: str) -> Merchant | None:
        """The key's merchant, through the API's own look-up, cached for a while: the
        transaction checks the key against the merchant row again, so a key rotated away
        meanwhile goes to Django (a 401)."""
        hit = self._merchants.get(hashed)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            merchant = MerchantKeyAuthentication().principal_for(key).merchant
        except AuthenticationFailed:
            return None
        if len(self._merchants) >= _KEY_CACHE_MAX:
            self._merchants.clear()
        self._merchants[hashed] = (now + _KEY_CACHE_SECONDS, merchant)
        return merchant

    # --- the writes -------------------------------------------------------------------

    def _record(self, merchant: Merchant, key_hash: str, payload: dict) -> ConversionEvent:
        """What ``events._record`` writes for a new registration or purchase, or ``FallThrough``."""
        strings = _strings(payload)
        program_id = _program_id(payload.get("program"))
        click = None
        if strings["click_id"]:
            try:
                click = uuid.UUID(strings["click_id"])
            except ValueError:
                raise FallThrough from None  # unknown for sure: Django records it with a warning
        event_type = payload["type"]
        now = timezone.now()
        params = {
            "merchant": merchant.pk,
            "key_hash": key_hash,
            "customer": strings["customer_id"],
            "visitor_stage": journey.Stage.VISITOR,
            "now": now,
            "order_id": strings["order_id"],
            "click": click,
            "coupon_key": strings["coupon"].strip().upper() if strings["coupon"] else None,
            "program": program_id,
        }
        with transaction.atomic(), connection.cursor() as cursor:
            with connection.connection.pipeline():  # BEGIN travels with the statement
                cursor.execute(LOOK[(event_type, program_id is not None)], params)
                row = cursor.fetchone()
            if row is None:
                raise FallThrough  # the customer was created by a concurrent request
            customer_pk, stage, key_valid, repeated, visitor, coupon_promoter, *program_row = row
            if not key_valid or repeated or (click and visitor is None) or (strings["coupon"] and coupon_promoter is None):
                raise FallThrough
            if program_row[0] is None:
                raise FallThrough  # no such program: a 400 from Django
            program = _program(merchant, program_row)
            data = _clean(payload, strings, program)
            try:
                next_stage, event_stage = journey.advance(stage, data.type)
            except journey.IllegalTransition:
                raise FallThrough from None
            terms = program.terms()
            amount_minor = None if data.amount is None else money.to_minor(data.amount, program.currency)
            digest_ = events.body_hash(payload)
            params.update(
                program=program.pk,
                customer_pk=customer_pk,
                type=data.type,
                event_stage=event_stage,
                next_stage=next_stage,
                amount_minor=amount_minor,
                currency=program.currency,
                click_ref=data.click_id,
                coupon=data.coupon,
                coupon_promoter=coupon_promoter,
                visitor=visitor,
                body_hash=digest_,
                payload=Jsonb(events._json_safe(payload)),
                warnings=Jsonb([]),
                terms=Jsonb(terms),
                occurred_at=data.occurred_at,
            )
            params["kind"], params["key"], _ = EventKey.rule(type=data.type, customer_id=customer_pk, order_id=data.order_id)
            cursor.execute(EVENT[(visitor is not None, next_stage != stage)], params)
            event_id = cursor.fetchone()[0]
            transaction.on_commit(partial(_enqueue, event_id), robust=True)
        return ConversionEvent(
            pk=event_id,
            merchant=merchant,
            program=program,
            customer=Customer(pk=customer_pk, merchant=merchant, external_id=data.customer_id, stage=next_stage),
            type=data.type,
            stage=event_stage,
            status=ConversionEvent.Status.QUEUED,
            amount_minor=amount_minor,
            currency=program.currency,
            order_id=data.order_id,
            click_ref=data.click_id,
            click_id=click,
            coupon=data.coupon,
            coupon_promoter_id=coupon_promoter,
            body_hash=digest_,
            payload=payload,
            warnings=[],
            terms=terms,
            occurred_at=data.occurred_at,
            received_at=now,
        )


# --- Validation: ``events.clean_event``, in two halves ----------------------------------
#
# ``clean_event`` reads the program with an ORM query of its own before anything else; here
# the program comes with the transaction's first statement, so its checks run in two halves
# around that statement, built of the very pieces of ``clean_event`` (``events._string``,
# ``events._occurred_at``, ``money.parse_amount``), in its order, for the two types this path
# takes. Any problem is a ``FallThrough``: Django then runs ``clean_event`` itself and names
# every problem. ``tests/affiliate/test_eventpath.py`` checks the halves against
# ``clean_event`` payload by payload.


def _strings(payload: dict) -> dict[str, str]:
    """The checks that need no program: the id strings, as ``clean_event`` cleans them."""
    problems: dict[str, list[str]] = {}
    strings = {name: events._string(payload, name, problems, required=name == "customer_id") for name in events.STRING_FIELDS}
    if payload["type"] == "purchase" and not strings["order_id"]:
        raise FallThrough
    if problems or strings["refund_id"]:
        raise FallThrough
    return strings


def _program_id(raw) -> int | None:
    """The program id of the body, as ``events._program`` reads it (``None``: the default)."""
    if raw is None or raw == "":
        return None
    try:
        program_id = int(raw)
        if isinstance(raw, bool) or str(program_id) != str(raw).strip():
            raise ValueError
    except (TypeError, ValueError):
        raise FallThrough from None
    return program_id


def _program(merchant: Merchant, row: list) -> Program:
    values = dict(zip(PROGRAM_COLUMNS, row, strict=True))
    values["tier_rates"] = json.loads(values["tier_rates"])
    values["fraud"] = json.loads(values["fraud"]) if isinstance(values["fraud"], str) else values["fraud"]
    return Program(merchant=merchant, **values)


def _clean(payload: dict, strings: dict[str, str], program: Program) -> events.CleanEvent:
    """The checks that need the program; ``clean_event``'s result."""
    problems: dict[str, list[str]] = {}
    event_type = payload["type"]
    occurred_at = events._occurred_at(payload.get("occurred_at"), problems)
    raw_currency = payload.get("currency")
    raw_currency = "" if raw_currency is None else raw_currency
    if not isinstance(raw_currency, str) or (raw_currency and raw_currency != program.currency):
        raise FallThrough
    amount = None
    raw_amount = payload.get("amount")
    if event_type == "registration":
        if raw_amount not in (None, ""):
            raise FallThrough
    elif raw_amount in (None, ""):
        raise FallThrough
    else:
        try:
            amount = money.parse_amount(raw_amount, program.currency)
        except money.MoneyError:
            raise FallThrough from None
    if problems:
        raise FallThrough
    return events.CleanEvent(
        type=event_type,
        customer_id=strings["customer_id"],
        program=program,
        currency=program.currency,
        occurred_at=occurred_at,
        amount=amount,
        order_id=strings["order_id"],
        refund_id=strings["refund_id"],
        click_id=strings["click_id"],
        coupon=strings["coupon"],
        program_given=payload.get("program") not in (None, ""),
        currency_given=raw_currency,
    )


def _drop_if_obsolete() -> None:
    """Close the connection once it has outlived ``CONN_MAX_AGE``, as Django does at the
    start and the end of each request (``close_old_connections``).

    Not the request signals themselves: with ``CONN_HEALTH_CHECKS`` they make the next
    query of every request a ``SELECT 1`` first, a round trip this path does not need. A
    connection that broke meanwhile fails the fast path's first statement; the request then
    goes to Django, whose own ``close_old_connections`` replaces the connection."""
    if connection.connection is not None and not connection.in_atomic_block:
        close_at = connection.close_at
        if close_at is not None and time.monotonic() >= close_at:
            connection.close()


def _enqueue(event_id: int) -> None:
    """Hand the committed event to the workers, by whatever ``events.enqueue_event`` does now."""
    events.enqueue_event(event_id)
