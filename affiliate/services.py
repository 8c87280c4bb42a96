"""Every write of the tracking layer: merchants, programs, links, clicks.

Conversion events live in ``affiliate.events``.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import secrets
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connections, router, transaction
from django.utils import timezone

from core.errors import ServiceValidationError
from core.validation import FieldProblem, destination_host
from merchants.models import Merchant

from . import fraud, partitions
from .models import Click, ReferralLink, Visitor, uuid7

# --- Referral links -------------------------------------------------------------------

CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _new_code(length: int = 8) -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(length))


def link_create(*, merchant: Merchant, promoter, destination_url: str, channel: str = "") -> ReferralLink:
    problems: dict[str, list[str]] = {}
    try:
        _, host = destination_host(destination_url)
        if not merchant.allows_host(host):
            problems["destination_url"] = [
                f"The host {host} is not one of the merchant's domains ({', '.join(merchant.domains)})."
            ]
    except FieldProblem as exc:
        problems["destination_url"] = [str(exc)]
    if promoter is None or promoter.merchant_id != merchant.pk:
        problems["promoter"] = ["No promoter with this id."]
    channel = (channel or "").strip() if isinstance(channel, str) else None
    if channel is None or len(channel) > 100:
        problems["channel"] = ["The channel is free text of at most 100 characters."]
    if problems:
        raise ServiceValidationError(problems)
    for _ in range(5):
        try:
            with transaction.atomic():
                return ReferralLink.objects.create(
                    merchant=merchant,
                    program_id=promoter.program_id,
                    promoter=promoter,
                    code=_new_code(),
                    destination_url=destination_url,
                    channel=channel,
                )
        except IntegrityError:  # a code collision: draw again
            continue
    raise RuntimeError("Could not draw a unique link code.")


def promoter_link_create(*, promoter, destination_url: str, channel: str = ""):
    """A referral link the promoter makes for themself: only an active promoter can (one
    awaiting approval, or made inactive, would send traffic that earns nothing)."""
    if promoter.status != promoter.Status.ACTIVE:
        raise ServiceValidationError(
            {"promoter": ["Your account is not active: you can make links once the merchant approves it."]}
        )
    return link_create(merchant=promoter.merchant, promoter=promoter, destination_url=destination_url, channel=channel)


# --- Clicks (the tracking redirect) ---------------------------------------------------


def hash_ip(ip: str) -> str:
    if not ip:
        return ""
    try:
        ip = str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        return ""
    return hashlib.sha256(f"{settings.IP_HASH_SALT}|{ip}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class LinkTarget:
    """What the redirect needs of a link, small enough to cache."""

    id: int
    merchant_id: int
    program_id: int
    promoter_id: int
    destination_url: str
    duplicate_click_seconds: int
    click_rules: fraud.ClickRules = fraud.ClickRules()


def _text(value, limit: int) -> str:
    """What a browser sent, fit to store: NUL characters (which PostgreSQL cannot hold)
    dropped, cut to the column's length."""
    return (value or "").replace("\x00", "")[:limit]


def click_browser_fields(*, ip: str, user_agent: str, referrer: str, subs: dict | None) -> dict[str, str]:
    """A click's fields that come from the browser, as stored (the spool stores them too)."""
    subs = subs or {}
    return {
        "user_agent": _text(user_agent, 512),
        "referrer": _text(referrer, 1024),
        "ip_hash": hash_ip(ip),
        "sub1": _text(subs.get("sub1"), 255),
        "sub2": _text(subs.get("sub2"), 255),
        "sub3": _text(subs.get("sub3"), 255),
        "sub4": _text(subs.get("sub4"), 255),
        "sub5": _text(subs.get("sub5"), 255),
    }


def click_record(
    *,
    target: LinkTarget,
    visitor_id: uuid.UUID | None,
    ip: str = "",
    user_agent: str = "",
    referrer: str = "",
    subs: dict[str, str] | None = None,
    at=None,
) -> Click:
    """Store one click; create the visitor when the browser brought no valid id.
    ``at`` backdates the click (the traffic simulator); the redirect leaves it unset.

    When this returns the click is committed (or, inside ``transaction.atomic``, part of the
    caller's transaction). On PostgreSQL the visitor and the click go in one statement: one
    round trip, atomic by itself. Elsewhere: a transaction through the ORM."""
    now = at or timezone.now()
    new_visitor = visitor_id is None
    if new_visitor:
        visitor_id = uuid.uuid4()
    values = {
        # Its id tells its month: the partition it belongs in (affiliate/partitions.py).
        "id": uuid7(now),
        "link_id": target.id,
        "merchant_id": target.merchant_id,
        "program_id": target.program_id,
        "promoter_id": target.promoter_id,
        "visitor_id": visitor_id,
        "created_at": now,
        **click_browser_fields(ip=ip, user_agent=user_agent, referrer=referrer, subs=subs),
    }
    duplicate_seconds = 0 if new_visitor else target.duplicate_click_seconds
    # Fraud (affiliate/fraud.py): a known bot, decided here (cached per user agent); a click
    # flood, decided against the stored clicks, in the same statement as the insert.
    bot = fraud.bot_reason(values["user_agent"], enabled=target.click_rules.bots)
    using = router.db_for_write(Click)
    if connections[using].vendor == "postgresql":
        return _click_insert_postgresql(
            values, using=using, duplicate_seconds=duplicate_seconds, bot=bot, new_visitor=new_visitor,
            flood=target.click_rules.flood,
        )
    click = Click(**values)
    with transaction.atomic(using=using):
        if new_visitor:
            Visitor.objects.using(using).create(id=visitor_id, first_seen_at=now)
        else:
            # The cookie may come from another installation or a wiped database.
            Visitor.objects.using(using).bulk_create([Visitor(id=visitor_id, first_seen_at=now)], ignore_conflicts=True)
            if duplicate_seconds:
                since = now - timezone.timedelta(seconds=duplicate_seconds)
                if Click.objects.using(using).filter(visitor_id=visitor_id, link_id=target.id, created_at__gte=since).exists():
                    click.is_duplicate = True
                    click.flag_reason = _duplicate_reason(duplicate_seconds)
        reason = bot or _flood_reason(using, values, new_visitor=new_visitor, flood=target.click_rules.flood)
        if reason:
            click.is_fraud, click.flag_reason = True, reason
        click.save(force_insert=True, using=using)
    return click


def _flood_reason(using: str, values: dict, *, new_visitor: bool, flood: tuple[int, int]) -> str:
    """The flood rule (the program's ``flood``: limit, seconds) for one click about to be
    stored (the clicks stored so far count)."""
    limit, seconds = flood
    if not limit:
        return ""
    at = values["created_at"]
    recent = Click.objects.using(using).filter(
        link_id=values["link_id"], created_at__gte=at - timezone.timedelta(seconds=seconds), created_at__lte=at
    )
    if not new_visitor and len(recent.filter(visitor_id=values["visitor_id"]).values_list("pk")[:limit]) >= limit:
        return fraud.flood_reason("visitor", limit, seconds)
    if values["ip_hash"] and len(recent.filter(ip_hash=values["ip_hash"]).values_list("pk")[:limit]) >= limit:
        return fraud.flood_reason("IP", limit, seconds)
    return ""


def _duplicate_reason(seconds: int) -> str:
    return f"repeat click within {seconds}s"


# Field types whose Python values psycopg adapts as they are (no get_db_prep_save needed).
_PLAIN_FIELD_TYPES = {
    "AutoField", "BigAutoField", "BigIntegerField", "BooleanField", "CharField", "DateTimeField",
    "ForeignKey", "IntegerField", "PositiveIntegerField", "SmallIntegerField", "TextField", "UUIDField",
}


@functools.cache
def _click_insert_statement(using: str) -> tuple[str, tuple]:
    """The one PostgreSQL statement that stores a click, and the click's fields in the order
    of its parameters (each with whether its value goes to psycopg as it is). Built from the
    models' metadata once per database alias.

    * ``v`` inserts the visitor; ``ON CONFLICT DO NOTHING`` keeps a cookie we already know
      (or one from another installation or a wiped database) working. Foreign keys are
      deferred, so the click's reference to it is checked at the statement's commit.
    * ``dup`` tells whether this visitor clicked this link since the given instant (a NULL
      instant: no duplicate window, nothing to check).
    * ``fl`` is the fraud reason (affiliate/fraud.py): the bot reason given, else a click
      flood, when this visitor or this IP already clicked this link the limit's number of
      times within the window (a NULL instant: the rule is off, or a new visitor).
    * The click insert returns its flags; ``ON CONFLICT (id) DO NOTHING`` makes the statement
      safe to send twice (see ``_click_insert_postgresql``), and the missing row says so."""
    qn = connections[using].ops.quote_name
    opts, visitor_opts = Click._meta, Visitor._meta
    if [f.attname for f in visitor_opts.concrete_fields] != ["id", "first_seen_at"]:
        raise RuntimeError("Visitor gained fields: update _click_insert_statement.")
    fields = tuple(opts.concrete_fields)
    col = {f.attname: qn(f.column) for f in fields}
    table = qn(opts.db_table)
    values = []
    for f in fields:
        if f.attname == "is_duplicate":
            values.append("dup.d")
        elif f.attname == "is_fraud":
            values.append("fl.r <> ''")
        elif f.attname == "flag_reason":
            values.append("CASE WHEN fl.r <> '' THEN fl.r WHEN dup.d THEN %s ELSE '' END")
        else:
            values.append("%s")

    # Each window on created_at comes with the same window on the id (a UUIDv7 of the click's
    # time), which keeps PostgreSQL to the months' partitions it covers.
    ids = f"AND {col['id']} >= %s::uuid AND {col['id']} <= %s::uuid"

    def recent(key: str) -> str:
        return (
            f"(SELECT count(*) FROM (SELECT 1 FROM {table} WHERE {col[key]} = %s AND {col['link_id']} = %s "
            f"AND {col['created_at']} >= %s::timestamptz AND {col['created_at']} <= %s::timestamptz {ids} "
            f"LIMIT %s::integer) x)"
        )

    sql = (
        f"WITH v AS (INSERT INTO {qn(visitor_opts.db_table)} ({qn(visitor_opts.pk.column)}, {qn('first_seen_at')}) "
        f"VALUES (%s, %s) ON CONFLICT DO NOTHING), "
        f"dup AS (SELECT %s::timestamptz IS NOT NULL AND EXISTS (SELECT 1 FROM {table} WHERE {col['visitor_id']} = %s "
        f"AND {col['link_id']} = %s AND {col['created_at']} >= %s::timestamptz {ids}) AS d), "
        f"fl AS (SELECT CASE WHEN %s::text <> '' THEN %s::text "
        f"WHEN %s::timestamptz IS NOT NULL AND {recent('visitor_id')} >= %s::integer THEN %s::text "
        f"WHEN %s::timestamptz IS NOT NULL AND {recent('ip_hash')} >= %s::integer THEN %s::text "
        f"ELSE '' END AS r) "
        f"INSERT INTO {table} ({', '.join(col[f.attname] for f in fields)}) SELECT {', '.join(values)} FROM dup CROSS JOIN fl "
        f"ON CONFLICT ({col[opts.pk.attname]}) DO NOTHING RETURNING {col['is_duplicate']}, {col['is_fraud']}, {col['flag_reason']}"
    )
    order = tuple(
        (f, f.get_internal_type() in _PLAIN_FIELD_TYPES) for f in fields if f.attname not in ("is_duplicate", "is_fraud")
    )
    return sql, order


def _click_insert_postgresql(
    values: dict, *, using: str, duplicate_seconds: int, bot: str = "", new_visitor: bool = False,
    flood: tuple[int, int] = (0, 0),
) -> Click:
    connection = connections[using]
    sql, fields = _click_insert_statement(using)
    reason = _duplicate_reason(duplicate_seconds) if duplicate_seconds else ""
    at = values["created_at"]
    since = at - timezone.timedelta(seconds=duplicate_seconds) if duplicate_seconds else None
    limit, seconds = flood
    flood_since = at - timezone.timedelta(seconds=seconds) if limit else None
    visitor_since = None if new_visitor else flood_since
    row = []
    for f, plain in fields:
        if f.attname == "flag_reason":
            row.append(reason)
            continue
        value = values[f.attname] if f.attname in values else f.get_default()
        values[f.attname] = value
        row.append(value if plain else f.get_db_prep_save(value, connection))
    visitor, link, ip = values["visitor_id"], values["link_id"], values["ip_hash"]
    # The id bounds of the windows (partitions.click_id_bound); the duplicate window has no
    # end but now, give or take the clocks of the machines: an hour's margin.
    since_id, visitor_since_id, flood_since_id = (partitions.click_id_bound(t) for t in (since, visitor_since, flood_since))
    at_id, later_id = partitions.click_id_bound(at, upper=True), partitions.click_id_bound(at + timezone.timedelta(hours=1), upper=True)
    params = [
        visitor, at, since, visitor, link, since, since_id, later_id,
        bot, bot,
        visitor_since, visitor, link, visitor_since, at, visitor_since_id, at_id, limit, limit,
        fraud.flood_reason("visitor", limit, seconds),
        flood_since if ip else None, ip, link, flood_since, at, flood_since_id, at_id, limit, limit,
        fraud.flood_reason("IP", limit, seconds),
        *row,
    ]  # fmt: skip

    # Sent on the connection Django manages, in autocommit (so committed when it returns),
    # or in the caller's transaction when there is one.
    inserted = _execute_click_statement(connection, sql, params, click_id=values[Click._meta.pk.attname])
    if inserted is None:
        # Nothing inserted: a click with this id exists already. Only a retry after a lost
        # answer can cause that (see below); anything else is a genuine id collision.
        raise IntegrityError("A click with this id already exists.")
    values["is_duplicate"], values["is_fraud"], values["flag_reason"] = inserted
    # As the ORM builds a fetched row (positional, the cheaper way): a saved Click.
    return Click.from_db(using, None, [values[f.attname] for f in Click._meta.concrete_fields])


def _execute_click_statement(connection, sql: str, params: list, *, click_id: uuid.UUID):
    """Run the click statement; return the stored (is_duplicate, is_fraud, flag_reason), or
    None if no row was inserted.

    The statement is prepared on each connection (PostgreSQL parses and plans it once, not
    on every click). Django turns psycopg's automatic preparation off, so this asks for it
    explicitly on a server-side-binding cursor; when queries are being logged or wrapped
    (DEBUG, tests, ``connection.execute_wrapper``) it goes through Django's cursor instead.

    A persistent connection can die between requests (a database restart). Instead of a
    health-check query before every click (one more round trip), the statement is retried
    once on a fresh connection when the failure came from the connection itself and no
    transaction of the caller is open. The retry cannot store the click twice: the click id
    is the same and the insert does nothing on an existing id; the flag is then read back."""
    import psycopg

    for attempt in (1, 2):
        try:
            # connection.cursor(), less its health check.
            connection.ensure_connection()
            if connection.queries_logged or connection.execute_wrappers:
                with connection.wrap_database_errors:
                    raw = connection.create_cursor()
                with connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw) as cursor:
                    cursor.execute(sql, params)
                    row = cursor.fetchone()
            else:
                with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
                    cursor.execute(sql, params, prepare=True)
                    row = cursor.fetchone()
            if row is None and attempt == 2:
                row = (
                    Click.objects.using(connection.alias)
                    .filter(pk=click_id)
                    .values_list("is_duplicate", "is_fraud", "flag_reason")
                    .first()
                )
            return None if row is None else tuple(row)
        except (OperationalError, InterfaceError):
            if attempt == 2 or connection.in_atomic_block or not connection.get_autocommit():
                raise
            connection.close()
    raise AssertionError("unreachable")


def link_target(code: str) -> LinkTarget | None:
    row = (
        ReferralLink.objects.filter(code=code)
        .values_list(
            "id", "merchant_id", "program_id", "promoter_id", "destination_url", "program__duplicate_click_seconds", "program__fraud"
        )
        .first()
    )
    return LinkTarget(*row[:6], fraud.ClickRules.of(row[6])) if row else None


