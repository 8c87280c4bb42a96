"""Reads for the promoter portal's pages: one promoter's own figures, across the apps.

Part of the portal (a face on top, beside ``views.py``): it reads tracking, attribution and
payouts, and nothing below imports it. Every read is scoped to one promoter and bounded:
a fixed number of queries per page, however many clicks, commissions or recruits there are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.core.cache import cache
from django.db import connections
from django.db.models import Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from affiliate.models import Click, ConversionEvent, ReferralLink
from attribution.models import Credit
from core import money
from core.routers import read_alias, replica_reads
from payouts.models import Account, Commission, Entry, PayoutLine, PayoutMethod, Statement
from payouts.selectors import balance_from
from promoters.models import Promoter, PromoterApiToken
from promoters.selectors import MAX_TEAM_LEVELS, MAX_TEAM_MEMBERS

CHART_DAYS = 30
# The dashboard's day series are kept this long at most (seconds), and only as long as
# nothing new reached the promoter (see _dashboard_state): a safety net for what the state
# cannot see: a click recorded late with an older time than the newest one, or a
# registration without a bounty credited to an older event than the newest credited.
SERIES_TTL = 30


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _dashboard_state(promoter: Promoter, currency: str) -> tuple[dict[str, int], tuple]:
    """The promoter's balances, and what changes whenever something reaches their dashboard:
    the ledger's last entry on their accounts (every commission, reversal, approval or
    payment posts one), their newest click and their newest credited event. One query, each
    figure one step down an index (entry_account, click_promoter_time, credit_promoter_event)."""
    newest = {
        "last_click": Subquery(Click.objects.filter(promoter=promoter).order_by("-created_at").values("created_at")[:1]),
        "last_credit": Subquery(Credit.objects.filter(promoter=promoter).order_by("-event_id").values("event_id")[:1]),
    }
    rows = list(
        Account.objects.filter(promoter=promoter, currency=currency)
        .annotate(
            last_entry=Subquery(Entry.objects.filter(account_id=OuterRef("pk")).order_by("-id").values("id")[:1]),
            **newest,
        )
        .values_list("kind", "balance_minor", "last_entry", "last_click", "last_credit")
    )
    balances = {kind: balance for kind, balance, *_ in rows}
    if not rows:  # no account yet: nothing was ever posted; clicks and credits may exist
        row = Promoter.objects.filter(pk=promoter.pk).annotate(**newest).values_list(
            "last_click", "last_credit"
        ).first() or (None, None)
        return balances, (None, *row)
    last_entry = max((r[2] for r in rows if r[2] is not None), default=None)
    return balances, (last_entry, rows[0][3], rows[0][4])


@replica_reads()
def dashboard(promoter: Promoter, *, now: datetime | None = None, days: int = CHART_DAYS) -> dict:
    """The last ``days`` days (today included, UTC): clicks, registrations and purchases
    attributed to the promoter, the conversion rate (purchases per click), what they earned
    each day, and the pending / available / paid balances.

    The page polls it every few seconds: the day series (three aggregates over the period)
    are cached per promoter under what changes when anything reaches the promoter (a sale's
    commission posts to the ledger, a click, a credit), so that a poll with nothing new runs
    one small query, and a sale shows at the next poll. One query then, four otherwise."""
    now = now or timezone.now()
    today = timezone.localdate(now)
    currency = promoter.program.currency
    balances, state = _dashboard_state(promoter, currency)
    key = f"portal:dashboard:{promoter.pk}:{currency}:{today.isoformat()}:{days}:" + ":".join(
        "" if v is None else (v.isoformat() if isinstance(v, datetime) else str(v)) for v in state
    )
    series = cache.get(key)
    if series is None:
        series = _dashboard_series(promoter, today=today, days=days, currency=currency)
        cache.set(key, series, SERIES_TTL)
    clicks, registrations, purchases, earned = series["clicks"], series["registrations"], series["purchases"], series["earned"]
    first = today - timedelta(days=days - 1)
    labels = [first + timedelta(days=i) for i in range(days)]

    total_clicks, total_purchases = sum(clicks), sum(purchases)
    rate = None
    if total_clicks:
        rate = f"{(100 * total_purchases / total_clicks):.1f}%"
    return {
        "currency": currency,
        "status": promoter.status,
        "balance": balance_from(balances, currency),
        "totals": {
            "clicks": total_clicks,
            "registrations": sum(registrations),
            "purchases": total_purchases,
            "conversion_rate": rate,
            "earned": money.format_minor(sum(earned), currency),
        },
        "days": [d.isoformat() for d in labels],
        "series": {
            "clicks": clicks,
            "registrations": registrations,
            "purchases": purchases,
            "earned": [money.format_minor(m, currency) for m in earned],
        },
        "updated_at": now.isoformat(),
    }


def _dashboard_series(promoter: Promoter, *, today: date, days: int, currency: str) -> dict[str, list[int]]:
    """The day series of ``dashboard``: three aggregates over the period."""
    first = today - timedelta(days=days - 1)
    since = _day_start(first)
    index = {first + timedelta(days=i): i for i in range(days)}

    clicks = [0] * days
    for day, n in (
        # Count("*"), not the id: the (promoter, created_at) index alone answers it.
        Click.objects.filter(promoter=promoter, created_at__gte=since)
        .annotate(day=TruncDate("created_at")).values("day").annotate(n=Count("*")).values_list("day", "n")
    ):
        if day in index:
            clicks[index[day]] = n

    registrations = [0] * days
    purchases = [0] * days
    for day, kind, n in (
        # The program's events of the period first (event_program_time), then the
        # promoter's credit on each, rather than all of the promoter's credits ever.
        Credit.objects.filter(
            promoter=promoter, event__program_id=promoter.program_id, event__occurred_at__gte=since,
            event__type__in=(ConversionEvent.Type.REGISTRATION, ConversionEvent.Type.PURCHASE),
        )
        .annotate(day=TruncDate("event__occurred_at")).values("day", "event__type").annotate(n=Count("id"))
        .values_list("day", "event__type", "n")
    ):
        if day in index:
            series = purchases if kind == ConversionEvent.Type.PURCHASE else registrations
            series[index[day]] = n

    earned = [0] * days
    for day, total in (
        Commission.objects.filter(promoter=promoter, currency=currency, created_at__gte=since)
        .annotate(day=TruncDate("created_at")).values("day").annotate(total=Sum("amount_minor"))
        .values_list("day", "total")
    ):
        if day in index:
            earned[index[day]] = total or 0
    return {"clicks": clicks, "registrations": registrations, "purchases": purchases, "earned": earned}


# --- Links ------------------------------------------------------------------------------


@replica_reads()
def links(promoter: Promoter, *, now: datetime | None = None, days: int = CHART_DAYS) -> list[ReferralLink]:
    """The promoter's links, newest first, each with ``clicks_recent`` (the last ``days`` days).
    Two queries: the recent clicks are counted on their own (click_promoter_time), not by
    joining every click the links ever had."""
    since = (now or timezone.now()) - timedelta(days=days)
    recent = dict(
        Click.objects.filter(promoter=promoter, created_at__gte=since)
        .values("link_id").annotate(n=Count("*")).values_list("link_id", "n")
    )
    rows = list(ReferralLink.objects.filter(promoter=promoter).order_by("-created_at", "-id"))
    for row in rows:
        row.clicks_recent = recent.get(row.pk, 0)
    return rows


def link(promoter: Promoter, code: str) -> ReferralLink | None:
    # On the primary: a new link's page is shown right after it is made.
    return ReferralLink.objects.filter(promoter=promoter, code=code).first()


# --- Commissions ------------------------------------------------------------------------


@dataclass(frozen=True)
class CommissionFilter:
    status: str = ""
    kind: str = ""
    since: date | None = None
    until: date | None = None  # inclusive


def commissions(promoter: Promoter, filters: CommissionFilter = CommissionFilter()):
    """The promoter's own commissions, newest first (a queryset: page it or stream it)."""
    qs = Commission.objects.filter(promoter=promoter)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    if filters.since:
        qs = qs.filter(created_at__gte=_day_start(filters.since))
    if filters.until:
        qs = qs.filter(created_at__lt=_day_start(filters.until + timedelta(days=1)))
    return qs.using(read_alias()).order_by("-created_at", "-id").only(
        "id", "created_at", "event_id", "kind", "level", "amount_minor", "currency", "status", "available_at",
    )


def review_reasons(event_ids) -> dict[int, str]:
    """Why these events' commissions are in review, as a promoter may read it (never the
    finance reason, which names people and addresses), by event id; a refund's is its
    order's."""
    from affiliate import fraud

    ids = sorted(set(event_ids))
    if not ids:
        return {}
    rows = ConversionEvent.objects.using(read_alias()).filter(pk__in=ids).values_list("pk", "flag_code", "purchase__flag_code")
    return {pk: fraud.public_reason(own or of_order or "") for pk, own, of_order in rows}


@replica_reads()
def commission_totals(promoter: Promoter, filters: CommissionFilter = CommissionFilter()) -> dict:
    row = commissions(promoter, filters).order_by().aggregate(n=Count("id"), total=Sum("amount_minor"))
    currency = promoter.program.currency
    return {"count": row["n"], "total": money.format_minor(row["total"] or 0, currency), "currency": currency}


# --- Team -------------------------------------------------------------------------------


@replica_reads()
def override_totals(promoter: Promoter) -> dict[int, dict]:
    """What the promoter earned from each level of their team (overrides net of reversals),
    ``{level: {"total", "count"}}``: totals only, never a team member's own commissions."""
    currency = promoter.program.currency
    # Count("level"), not the id (never null either): commission_promoter_level alone answers.
    rows = (
        Commission.objects.filter(promoter=promoter, currency=currency, level__gte=1)
        .values("level").annotate(total=Sum("amount_minor"), n=Count("level", filter=~Q(kind=Commission.Kind.REVERSAL)))
        .order_by("level")
    )
    return {r["level"]: {"total": money.format_minor(r["total"] or 0, currency), "count": r["n"]} for r in rows}


def _team_sql(connection) -> str:
    """The promoter's downline as CTEs ``tree`` (every member down to ``%(levels)s`` levels,
    with their level and their path from the promoter) and ``kept`` (the first ``%(limit)s``
    of them by level, then id: whom the page lists). Each recruit's path sorts right after
    their sponsor's, their sponsor's other recruits by id: the tree depth first."""
    table = connection.ops.quote_name(Promoter._meta.db_table)
    if connection.vendor == "postgresql":
        first, step = "ARRAY[id]", "t.path || p.id"
    else:  # ids zero-padded to a fixed width: text order is then numeric order
        first, step = "printf('%%020d', id)", "t.path || printf('%%020d', p.id)"
    return f"""
        WITH RECURSIVE tree (id, sponsor_id, level, path) AS (
            SELECT id, sponsor_id, 1, {first} FROM {table}
            WHERE sponsor_id = %(root)s AND id <> %(root)s
          UNION ALL
            SELECT p.id, p.sponsor_id, t.level + 1, {step}
            FROM tree t JOIN {table} p ON p.sponsor_id = t.id
            WHERE t.level < %(levels)s AND p.id <> %(root)s
        ), kept AS (
            SELECT id, sponsor_id, level, path FROM tree ORDER BY level, id LIMIT %(limit)s
        )"""


class TeamMembers:
    """The promoters below ``promoter``, depth first (each recruit right after their sponsor,
    a sponsor's recruits by id), at most ``levels`` deep and ``limit`` long (the first by
    level, then id), for a paginator: ``per_level`` (members on each level) and the count
    are one query, counted by the database; a slice reads only its own rows (one query).
    Each row has ``id``, ``name``, ``status``, ``created_at``, ``sponsor_id``, ``level`` and
    ``recruits`` (their recruits among the members listed), never an email.

    The tree follows ``sponsor_id`` down from the promoter, who never appears in it: a loop
    through the promoter (only a hand edit of the database could make one) stops there."""

    def __init__(self, promoter: Promoter, *, levels: int = MAX_TEAM_LEVELS, limit: int = MAX_TEAM_MEMBERS):
        self.params = {"root": promoter.pk, "levels": levels, "limit": limit}
        self.limit = limit
        self.alias = read_alias()  # the page's slices are read later, by the paginator
        connection = connections[self.alias]
        with connection.cursor() as cursor:
            cursor.execute(_team_sql(connection) + " SELECT level, COUNT(*) FROM kept GROUP BY level ORDER BY level", self.params)
            self.per_level = {level: n for level, n in cursor.fetchall()}
        self.total = sum(self.per_level.values())

    @property
    def truncated(self) -> bool:
        return self.total >= self.limit

    def count(self) -> int:
        return self.total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index: slice) -> list[dict]:
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError("TeamMembers takes a slice")
        start, stop, _ = index.indices(self.total)
        if stop <= start:
            return []
        connection = connections[self.alias]
        table = connection.ops.quote_name(Promoter._meta.db_table)
        sql = _team_sql(connection) + f"""
            , shown AS (SELECT id, sponsor_id, level, path FROM kept ORDER BY path LIMIT %(n)s OFFSET %(start)s)
            , recruits AS (SELECT sponsor_id, COUNT(*) AS n FROM kept GROUP BY sponsor_id)
            SELECT p.id, p.name, p.status, p.created_at, s.sponsor_id, s.level, COALESCE(r.n, 0) AS recruit_count
            FROM shown s JOIN {table} p ON p.id = s.id LEFT JOIN recruits r ON r.sponsor_id = s.id
            ORDER BY s.path"""
        # Through raw(): the database's values converted as the model's fields (created_at).
        return [
            {"id": p.pk, "name": p.name, "status": p.status, "created_at": p.created_at, "sponsor_id": p.sponsor_id,
             "level": p.level, "recruits": p.recruit_count}
            for p in Promoter.objects.raw(sql, {**self.params, "n": stop - start, "start": start}, using=self.alias)
        ]


# --- Payouts and statements ---------------------------------------------------------------


@replica_reads()
def payout_lines(promoter: Promoter, *, limit: int = 120) -> list[PayoutLine]:
    return list(
        PayoutLine.objects.filter(promoter=promoter).select_related("batch").order_by("-batch__created_at", "-id")[:limit]
    )


@replica_reads()
def statements(promoter: Promoter, *, limit: int = 120) -> list[Statement]:
    return list(Statement.objects.filter(promoter=promoter).order_by("-period", "-id")[:limit])


@replica_reads()
def statement(promoter: Promoter, statement_id: int) -> Statement | None:
    return Statement.objects.filter(promoter=promoter, pk=statement_id).select_related("promoter").first()


def payout_method(promoter: Promoter) -> PayoutMethod | None:
    return PayoutMethod.objects.filter(promoter=promoter).first()


def api_token(promoter: Promoter) -> PromoterApiToken | None:
    return PromoterApiToken.objects.filter(promoter=promoter).first()
