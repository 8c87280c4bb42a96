"""Reads for the merchant dashboards: one merchant's programs, aggregated by the database.

Every read takes the merchant (or a program already looked up through it) and runs a fixed
number of queries, whatever the number of clicks, events, promoters or commissions.

What the figures mean (the same on every page):

- The range is a pair of UTC days, both included. Clicks count by when they were made;
  everything about a conversion (its credits, its commissions) counts by the event's
  ``occurred_at``, so that a sale and what it cost land in the same range.
- Registrations and purchases are the program's events attributed to at least one promoter
  (events with a credit); an order shared by two promoters counts once.
- Revenue is the attributed revenue net of refunds: the credits' revenue, purchases positive
  and refunds negative (a refund's credits take back the purchase's in proportion).
- Commissions are every commission of the program (own sales, bounties, overrides and the
  negative reversals), summed by status: pending, approved, paid.
- Conversion rate: attributed purchases per click.
- Channels: a promoter's part of a conversion (their credit, and the commissions that derive
  from it) goes to the channel of that promoter's last touchpoint in the journey (a coupon's
  touchpoint has no channel). Revenue and commissions so add up over the channels to the
  program's; a purchase shared by promoters on two channels counts as a conversion in both.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db import connections, transaction
from django.db.models import (
    BigIntegerField,
    BooleanField,
    CharField,
    Count,
    F,
    Func,
    IntegerField,
    Q,
    Subquery,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from affiliate.models import Click, ConversionEvent, ReferralLink
from attribution.models import Credit, Touchpoint
from core import money
from core.routers import read_alias, replica_reads
from merchants.models import Merchant, MerchantMember, Program
from payouts.models import Commission
from promoters.models import Promoter

CHART_DAYS = 30
TOP_PROMOTERS = 20
CONVERSIONS_PER_PAGE = 50
PENDING_LIMIT = 500
PURCHASE = ConversionEvent.Type.PURCHASE
REGISTRATION = ConversionEvent.Type.REGISTRATION


# --- Who and what -------------------------------------------------------------------------


def memberships(user) -> list[MerchantMember]:
    """The merchants a login works for, oldest membership first."""
    if not getattr(user, "is_authenticated", False):
        return []
    return list(MerchantMember.objects.filter(user=user).select_related("merchant").order_by("id"))


@replica_reads()
def programs(merchant: Merchant) -> list[Program]:
    return list(Program.objects.filter(merchant=merchant).order_by("-is_default", "id"))


def program(merchant: Merchant, program_id: int) -> Program | None:
    return Program.objects.filter(merchant=merchant, pk=program_id).first()


# --- Ranges -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    since: date
    until: date  # included

    @classmethod
    def last_days(cls, days: int = CHART_DAYS, *, now: datetime | None = None) -> Range:
        today = timezone.localdate(now or timezone.now())
        return cls(today - timedelta(days=days - 1), today)

    @property
    def start(self) -> datetime:
        return _day_start(self.since)

    @property
    def end(self) -> datetime:  # excluded
        return _day_start(self.until + timedelta(days=1))

    @property
    def days(self) -> list[date]:
        return [self.since + timedelta(days=i) for i in range((self.until - self.since).days + 1)]


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _events_in(span: Range, prefix: str = "event__") -> Q:
    return Q(**{f"{prefix}occurred_at__gte": span.start, f"{prefix}occurred_at__lt": span.end})


class _OneOf(Func):
    """``column IN (subquery)``; on PostgreSQL ``column = ANY(ARRAY(subquery))``: the ids are
    collected first and each is looked up in the column's index. A few thousand events of a
    range have a few thousand commissions; joined, the planner would rather read every
    commission the program ever had (a sequential scan of the widest table), which costs
    several times more."""

    output_field = BooleanField()
    arity = 2

    def as_sql(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, template="%(expressions)s", arg_joiner=" IN ", **extra)

    def as_postgresql(self, compiler, connection, **extra):
        return super().as_sql(compiler, connection, template="%(expressions)s)", arg_joiner=" = ANY(ARRAY", **extra)


def _of_events(span: Range, program_ids: list[int], field: str = "event_id") -> _OneOf:
    """The rows whose ``field`` is one of the programs' events in the range (event_program_time)."""
    events = ConversionEvent.objects.filter(_events_in(span, prefix=""), program_id__in=program_ids).order_by().values("id")
    return _OneOf(F(field), Subquery(events))


def _clicks_in(span: Range) -> Q:
    return Q(created_at__gte=span.start, created_at__lt=span.end)


# --- Reading aggregates -------------------------------------------------------------------


@contextmanager
def aggregate_reads():
    """Around a page's aggregates: on PostgreSQL, one transaction (one snapshot, so that the
    page's figures agree with each other) without JIT compilation and without parallel
    workers. These queries read a few thousand rows each; compiling them costs about 20 ms
    (more than running them) and starting workers costs more than it saves on two cores.
    ``SET LOCAL``: the settings end with the transaction. One query; nothing elsewhere."""
    with replica_reads() as alias:
        connection = connections[alias]
        if connection.vendor != "postgresql":
            yield
            return
        with transaction.atomic(using=alias, savepoint=False):
            with connection.cursor() as cursor:
                cursor.execute("SELECT set_config('jit', 'off', true), set_config('max_parallel_workers_per_gather', '0', true)")
            yield


# --- Formatting ---------------------------------------------------------------------------


def rate_text(part: int, whole: int) -> str | None:
    """``3`` of ``40`` → ``"7.5%"``; nothing to divide by → None."""
    if not whole:
        return None
    return f"{(Decimal(100) * part / whole).quantize(Decimal('0.1'))}%"


def per_unit(total_minor: int, count: int, currency: str) -> Decimal | None:
    """``total / count`` as money, half-up to the minor unit; None without a count."""
    if not count:
        return None
    return money.quantize(money.from_minor(total_minor, currency) / count, currency)


def _money(minor: int, currency: str) -> Decimal:
    return money.from_minor(minor or 0, currency)


# --- Program KPIs -------------------------------------------------------------------------


def _empty_kpis(p: Program) -> dict:
    return {
        "program": p, "currency": p.currency, "clicks": 0, "registrations": 0, "purchases": 0,
        "revenue_minor": 0, "pending_minor": 0, "approved_minor": 0, "paid_minor": 0,
    }


def _finish_kpis(row: dict) -> dict:
    currency = row["currency"]
    row["conversion_rate"] = rate_text(row["purchases"], row["clicks"])
    row["revenue"] = _money(row["revenue_minor"], currency)
    for status in ("pending", "approved", "paid"):
        row[status] = _money(row[f"{status}_minor"], currency)
    row["commissions_minor"] = row["pending_minor"] + row["approved_minor"] + row["paid_minor"]
    row["commissions"] = _money(row["commissions_minor"], currency)
    return row


def _figures(span: Range, rows: dict[int, dict], *, chart_of: Program | None = None) -> dict | None:
    """The one read of the programs' clicks and credited events over the range, added into
    ``rows`` (by program): two queries, grouped by program (and by day when ``chart_of`` is
    given). Returns ``chart_of``'s series day by day (clicks, attributed purchases, revenue
    net of refunds), or None. An event, or a click, falls on one day of the range: the
    range's totals are the sums of its days."""
    ids = list(rows)  # by program, so that the (program, time) indexes serve every query
    by_day = chart_of is not None
    labels = span.days if by_day else []
    index = {day: i for i, day in enumerate(labels)}
    clicks, purchases, revenue = [0] * len(labels), [0] * len(labels), [0] * len(labels)
    click_rows = Click.objects.filter(_clicks_in(span), program_id__in=ids)  # Count("*"): from click_program_time alone
    credit_rows = Credit.objects.filter(_events_in(span), event__program_id__in=ids)
    if by_day:
        click_rows = click_rows.annotate(day=TruncDate("created_at"))
        credit_rows = credit_rows.annotate(day=TruncDate("event__occurred_at"))
    day_field = ("day",) if by_day else ()
    click_rows = click_rows.values("program_id", *day_field)
    credit_rows = credit_rows.values("event__program_id", "event__type", *day_field)
    for program_id, *day, n in (
        click_rows.annotate(n=Count("*")).values_list("program_id", *day_field, "n")
    ):
        rows[program_id]["clicks"] += n
        if by_day and program_id == chart_of.pk and day[0] in index:
            clicks[index[day[0]]] = n
    for program_id, kind, *day, n, total in (
        credit_rows.annotate(n=Count("event_id", distinct=True), total=Sum("revenue_minor"))
        .values_list("event__program_id", "event__type", *day_field, "n", "total")
    ):
        row = rows[program_id]
        row["revenue_minor"] += total or 0
        if kind == PURCHASE:
            row["purchases"] += n
        elif kind == REGISTRATION:
            row["registrations"] += n
        if by_day and program_id == chart_of.pk and day[0] in index:
            revenue[index[day[0]]] += total or 0
            if kind == PURCHASE:
                purchases[index[day[0]]] = n
    if not by_day:
        return None
    currency = chart_of.currency
    return {
        "currency": currency,
        "days": [d.isoformat() for d in labels],
        "clicks": clicks,
        "purchases": purchases,
        "revenue": [str(_money(m, currency)) for m in revenue],
    }


@replica_reads()
def program_kpis(merchant: Merchant, span: Range, program_list: list[Program]) -> dict[int, dict]:
    """``{program id: kpis}`` for each of the merchant's programs over the range: three
    queries (clicks, credits, commissions), grouped by program."""
    rows = {p.pk: _empty_kpis(p) for p in program_list if p.merchant_id == merchant.pk}
    _figures(span, rows)
    _commission_kpis(rows, span)
    return {pk: _finish_kpis(row) for pk, row in rows.items()}


def _commission_kpis(rows: dict[int, dict], span: Range) -> None:
    """The programs' commissions of the range's events, summed by status: one query."""
    ids = list(rows)
    for program_id, status, total in (
        # Through the events' ids (a commission's program is its event's): the range's events
        # by event_program_time, then their commissions by the commission event index.
        Commission.objects.filter(_of_events(span, ids), program_id__in=ids)
        .values("program_id", "status").annotate(total=Sum("amount_minor"))
        .values_list("program_id", "status", "total")
    ):
        rows[program_id][f"{status}_minor"] = total or 0


@replica_reads()
def overview(merchant: Merchant, span: Range, program_list: list[Program], chosen: Program, *,
             now: datetime | None = None) -> tuple[dict[int, dict], dict]:
    """``program_kpis`` over the range and ``program_days`` of the chosen program, the same
    figures. When the range is the chart's own (the last 30 days, the page's default), the
    clicks and the credits are read once for both, grouped by program and day: three queries
    instead of five."""
    chart_span = Range.last_days(CHART_DAYS, now=now)
    rows = {p.pk: _empty_kpis(p) for p in program_list if p.merchant_id == merchant.pk}
    if span != chart_span or chosen.pk not in rows:
        return program_kpis(merchant, span, program_list), program_days(chosen, now=now)
    chart = _figures(span, rows, chart_of=chosen)
    _commission_kpis(rows, span)
    return {pk: _finish_kpis(row) for pk, row in rows.items()}, chart


@replica_reads()
def program_days(p: Program, *, now: datetime | None = None, days: int = CHART_DAYS) -> dict:
    """The last ``days`` days of one program, day by day: clicks, attributed purchases and
    revenue (net of refunds). Two queries."""
    return _figures(Range.last_days(days, now=now), {p.pk: _empty_kpis(p)}, chart_of=p)


# --- Top promoters ------------------------------------------------------------------------


@replica_reads()
def top_promoters(p: Program, span: Range, *, limit: int = TOP_PROMOTERS) -> dict:
    """The program's promoters with the most attributed revenue and with the most
    commissions over the range (more than nothing), each with clicks, purchases, conversion rate, revenue and
    commissions. Two queries: the two rankings with the figures of the promoters they name
    (credits and commissions summed per promoter once, ranked, joined), then their clicks."""
    credits = (
        Credit.objects.filter(_events_in(span), event__program=p).order_by().values("promoter_id")
        .annotate(revenue=Sum("revenue_minor"), purchases=Count("event_id", filter=Q(event__type=PURCHASE), distinct=True))
    )
    commissions = (
        Commission.objects.filter(_of_events(span, [p.pk]), program=p).order_by().values("promoter_id")
        .annotate(total=Sum("amount_minor"))
    )
    credits_sql, credits_params = credits.query.sql_with_params()
    commissions_sql, commissions_params = commissions.query.sql_with_params()
    connection = connections[read_alias()]
    q = connection.ops.quote_name
    sql = f"""
        WITH cr AS ({credits_sql}), cm AS ({commissions_sql}),
        by_revenue AS (SELECT promoter_id FROM cr WHERE revenue > 0 ORDER BY revenue DESC, promoter_id LIMIT %s),
        by_commissions AS (SELECT promoter_id FROM cm WHERE total > 0 ORDER BY total DESC, promoter_id LIMIT %s)
        SELECT named.promoter_id, pr.{q("name")}, pr.{q("status")}, cr.revenue, cr.purchases, cm.total
        FROM (SELECT promoter_id FROM by_revenue UNION SELECT promoter_id FROM by_commissions) named
        JOIN {q(Promoter._meta.db_table)} pr ON pr.{q("id")} = named.promoter_id
        LEFT JOIN cr ON cr.promoter_id = named.promoter_id
        LEFT JOIN cm ON cm.promoter_id = named.promoter_id"""
    figures: dict[int, dict] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [*credits_params, *commissions_params, limit, limit])
        for pk, name, status, revenue, purchases, commissions_minor in cursor.fetchall():
            figures[pk] = {
                "id": pk, "name": name, "status": status, "clicks": 0, "purchases": purchases or 0,
                "revenue_minor": revenue or 0, "commissions_minor": commissions_minor or 0,
            }
    # The rankings again, among the promoters named (each ranking's first are all there).
    by_revenue = sorted((pk for pk, r in figures.items() if r["revenue_minor"] > 0), key=lambda pk: (-figures[pk]["revenue_minor"], pk))[:limit]
    by_commissions = sorted((pk for pk, r in figures.items() if r["commissions_minor"] > 0), key=lambda pk: (-figures[pk]["commissions_minor"], pk))[:limit]
    if figures:
        for pk, n in (
            Click.objects.filter(_clicks_in(span), program=p, promoter_id__in=list(figures))
            .values("promoter_id").annotate(n=Count("id")).values_list("promoter_id", "n")
        ):
            figures[pk]["clicks"] = n
    currency = p.currency
    for row in figures.values():
        row["conversion_rate"] = rate_text(row["purchases"], row["clicks"])
        row["revenue"] = _money(row["revenue_minor"], currency)
        row["commissions"] = _money(row["commissions_minor"], currency)
    return {
        "currency": currency,
        "by_revenue": [figures[pk] for pk in by_revenue],
        "by_commissions": [figures[pk] for pk in by_commissions],
    }


# --- Channels -----------------------------------------------------------------------------


@replica_reads()
def _channel_shares(p: Program, span: Range) -> list[tuple]:
    """``(channel, conversions, revenue, commissions)`` per channel: each promoter's share of
    each of the range's conversions (their credit, and the commissions whose source they
    are, their sponsors' overrides too) goes to the channel of that promoter's last
    touchpoint in the journey (a refund's journey is its purchase's). One query: credits and
    commissions are gathered per share (event, promoter) first, so that the channel is
    looked up once per share (touchpoint_position_unique), not once per row."""
    journey = Coalesce("event__purchase_id", "event_id", output_field=IntegerField())
    credits = (
        Credit.objects.filter(_events_in(span), event__program=p).order_by()
        .values(ev=F("event_id"), pr=F("promoter_id"), journey=journey, etype=F("event__type"), revenue=F("revenue_minor"),
                commission=Value(0, BigIntegerField()), credited=Value(1, IntegerField()))
    )
    commissions = (
        # Not joined to the events: a commission's journey is its credit's (the same event
        # and promoter), looked up below only for a commission without one.
        Commission.objects.filter(_of_events(span, [p.pk]), program=p).order_by()
        .values(ev=F("event_id"), pr=F("source_promoter_id"), journey=Value(None, IntegerField()),
                etype=Value(None, CharField()), revenue=Value(0, BigIntegerField()), commission=F("amount_minor"),
                credited=Value(0, IntegerField()))
    )
    credits_sql, credits_params = credits.query.sql_with_params()
    commissions_sql, commissions_params = commissions.query.sql_with_params()
    connection = connections[read_alias()]
    q = connection.ops.quote_name
    touchpoint, event = q(Touchpoint._meta.db_table), q(ConversionEvent._meta.db_table)
    sql = f"""
        SELECT (SELECT t.{q("channel")} FROM {touchpoint} t
                WHERE t.{q("event_id")} = COALESCE(
                    s.journey,
                    (SELECT COALESCE(e.{q("purchase_id")}, e.{q("id")}) FROM {event} e WHERE e.{q("id")} = s.ev)
                ) AND t.{q("promoter_id")} = s.pr
                ORDER BY t.{q("position")} DESC LIMIT 1) AS channel,
               COUNT(DISTINCT CASE WHEN s.credited = 1 AND s.etype = %s THEN s.ev END),
               SUM(s.revenue), SUM(s.commission)
        FROM (
            SELECT x.ev, x.pr, MAX(x.journey) AS journey, MAX(x.etype) AS etype, SUM(x.revenue) AS revenue,
                   SUM(x.commission) AS commission, MAX(x.credited) AS credited
            FROM ({credits_sql} UNION ALL {commissions_sql}) x
            GROUP BY x.ev, x.pr
        ) s
        GROUP BY 1"""
    with connection.cursor() as cursor:
        cursor.execute(sql, [PURCHASE.value, *credits_params, *commissions_params])
        return cursor.fetchall()


@replica_reads()
def channels(p: Program, span: Range) -> dict:
    """Per channel of the program, over the range: clicks, conversions (attributed
    purchases), revenue, commissions and cost per conversion (commissions / conversions).
    Two queries: the clicks (per link, then per channel), and the shares of the conversions
    (credits and commissions)."""
    rows: dict[str, dict] = {}

    def row(name: str | None) -> dict:
        name = name or ""
        return rows.setdefault(name, {"channel": name, "clicks": 0, "conversions": 0, "revenue_minor": 0, "commissions_minor": 0})

    # Counted per link first, then per channel: 37,000 clicks are not each joined to their link.
    clicks_sql, clicks_params = (
        Click.objects.filter(_clicks_in(span), program=p).order_by().values("link_id").annotate(n=Count("*"))
        .query.sql_with_params()
    )
    connection = connections[read_alias()]
    q = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT l.{q('channel')}, SUM(c.n) FROM ({clicks_sql}) c"
            f" JOIN {q(ReferralLink._meta.db_table)} l ON l.{q('id')} = c.link_id GROUP BY l.{q('channel')}",
            clicks_params,
        )
        for name, n in cursor.fetchall():
            row(name)["clicks"] += n
    for name, n, revenue, commissions in _channel_shares(p, span):
        r = row(name)
        r["conversions"] += n
        r["revenue_minor"] += revenue or 0
        r["commissions_minor"] += commissions or 0
    currency = p.currency
    out = []
    for r in rows.values():
        r["revenue"] = _money(r["revenue_minor"], currency)
        r["commissions"] = _money(r["commissions_minor"], currency)
        r["conversion_rate"] = rate_text(r["conversions"], r["clicks"])
        r["cost_per_conversion"] = per_unit(r["commissions_minor"], r["conversions"], currency)
        out.append(r)
    out.sort(key=lambda r: (-r["revenue_minor"], -r["clicks"], r["channel"]))
    totals = {
        key: sum(r[key] for r in out) for key in ("clicks", "conversions", "revenue_minor", "commissions_minor")
    }
    return {
        "currency": currency,
        "rows": out,
        "revenue_total": _money(totals["revenue_minor"], currency),
        "commissions_total": _money(totals["commissions_minor"], currency),
        "clicks_total": totals["clicks"],
    }


# --- Conversions and the attribution explorer --------------------------------------------


@dataclass(frozen=True)
class ConversionFilter:
    program_id: int | None = None
    type: str = ""
    search: str = ""  # an event id, an order id or a customer id


@replica_reads()
def conversions(merchant: Merchant, filters: ConversionFilter = ConversionFilter()):
    """The merchant's events, newest first, with their customer and program (a queryset:
    page it, then ask ``promoters_credited`` about the page)."""
    qs = ConversionEvent.objects.filter(merchant=merchant)
    if filters.program_id:
        qs = qs.filter(program_id=filters.program_id)
    if filters.type:
        qs = qs.filter(type=filters.type)
    term = filters.search.strip()
    if term:
        match = Q(order_id=term) | Q(customer__external_id=term)
        if term.isdigit() and len(term) < 19:
            match |= Q(pk=int(term))
        qs = qs.filter(match)
    return (
        qs.using(read_alias()).select_related("customer", "program")
        .order_by("-occurred_at", "-id")
        .only(
            "id", "type", "stage", "status", "amount_minor", "currency", "order_id", "occurred_at",
            "customer__external_id", "program__name", "program__currency",
        )
    )


@replica_reads()
def promoters_credited(event_ids) -> dict[int, int]:
    """``{event id: how many promoters were credited}`` for a page of events: one query."""
    return dict(
        Credit.objects.filter(event_id__in=list(event_ids)).values("event_id").annotate(n=Count("id"))
        .values_list("event_id", "n")
    )


@replica_reads()
def conversion(merchant: Merchant, event_id: int) -> ConversionEvent | None:
    return ConversionEvent.objects.filter(merchant=merchant, pk=event_id).select_related("customer", "program").first()


# --- Promoter approvals -------------------------------------------------------------------


@replica_reads()
def pending_promoters(merchant: Merchant, *, limit: int = PENDING_LIMIT) -> list[Promoter]:
    """Promoters waiting for the merchant's approval, oldest first, with program and sponsor."""
    return list(
        Promoter.objects.filter(merchant=merchant, status=Promoter.Status.PENDING)
        .select_related("program", "sponsor").order_by("created_at", "id")[:limit]
    )


def merchant_promoter(merchant: Merchant, promoter_id: int) -> Promoter | None:
    return Promoter.objects.filter(merchant=merchant, pk=promoter_id).select_related("merchant").first()


@replica_reads()
def pending_count(merchant: Merchant) -> int:
    return Promoter.objects.filter(merchant=merchant, status=Promoter.Status.PENDING).count()


def failed_events_count(merchant: Merchant) -> int:
    """Events whose processing failed EVENT_MAX_ATTEMPTS times (the admin processes them again)."""
    return ConversionEvent.objects.filter(merchant=merchant, status=ConversionEvent.Status.FAILED).count()


def review_queue(merchant: Merchant, *, limit: int = 200) -> list[dict]:
    """The flagged conversions waiting for finance's decision, newest first: each with its
    reason and its held commissions (the sum per currency, and how many)."""
    flagged = list(
        ConversionEvent.objects.filter(
            merchant=merchant, is_fraud=True, rejected_at__isnull=True, status=ConversionEvent.Status.PROCESSED
        )
        .select_related("customer", "program")
        .order_by("-occurred_at", "-id")[:limit]
    )
    held: dict[int, list] = {}
    for event_id, currency, total, n in (
        Commission.objects.filter(
            Q(event_id__in=[e.pk for e in flagged]) | Q(reverses__event_id__in=[e.pk for e in flagged]),
            status=Commission.Status.HELD,
        )
        .annotate(owner=Coalesce("reverses__event_id", "event_id"))
        .values("owner", "currency").annotate(total=Sum("amount_minor"), n=Count("id"))
        .values_list("owner", "currency", "total", "n")
    ):
        held.setdefault(event_id, []).append((currency, total, n))
    return [
        {
            "event": e,
            "amount": money.format_minor(e.amount_minor, e.currency),
            "held": [money.format_minor(total, currency) + f" {currency}" for currency, total, _ in held.get(e.pk, [])],
            "held_count": sum(n for *_, n in held.get(e.pk, [])),
        }
        for e in flagged
    ]


def review_count(merchant: Merchant) -> int:
    """How many conversions hold commissions in review (the partial index commission_held)."""
    held = Commission.objects.filter(merchant=merchant, status=Commission.Status.HELD).exclude(kind=Commission.Kind.REVERSAL)
    return held.values("event_id").distinct().count()
