"""The ledger audit: recompute every commission from the events and prove the ledger.

1. Every journal balances (its entries sum to zero).
2. Every running balance equals the sum of its account's entries.
3. Every promoter account holds exactly its commissions: pending = the pending ones,
   available = the approved ones, paid = the paid ones; every commission has its journal.
4. Every processed event, recomputed from what it was computed on (its touchpoints, the
   program terms stored with it, the promoter facts of that moment), gives the same credits
   and commissions; every refund gives the same reversals, replayed in order.
5. Every event holds the key of its type (one purchase per order...), which is what refuses
   a repeat of it: the events table is partitioned by month on PostgreSQL, and its
   uniqueness lives in the event keys' table.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import connection
from django.db.models import Exists, OuterRef, Q, Sum

from affiliate.models import ConversionEvent, EventKey
from attribution import engine
from attribution.models import Credit, Touchpoint
from attribution.services import conversion_weights
from core import money

from . import rules
from .models import Account, Adjustment, Basis, Commission, Entry, Journal, PayoutLine
from .services import commission_lines

CHUNK = 1000
# Events without their key listed at most (the rest are the same finding).
MAX_LISTED = 100


@dataclass
class AuditReport:
    differences: list[str] = field(default_factory=list)
    events: int = 0
    commissions: int = 0
    journals: int = 0
    accounts: int = 0

    @property
    def clean(self) -> bool:
        return not self.differences


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def audit_ledger(
    *, merchant_id: int | None = None, recompute: bool = True, progress: Callable[[str], None] | None = None,
    commissions_checked: AuditReport | None = None,
) -> AuditReport:
    """All five checks; ``recompute=False`` runs the ledger-wide ones (1-3, grouped SQL
    over the whole ledger, seconds even for millions of rows) and leaves out the
    event-by-event recomputation and the event keys (4-5), which ``manage.py audit_ledger``
    always does.

    ``commissions_checked``: what ``audit_commissions`` found for the same scope a moment
    before (every commission has its journal, none is reversed beyond its amount), when
    nothing written since can change it: the month-end takes it alongside its batch, which
    writes no commission and no commission's journal."""
    report = AuditReport()
    say = progress or (lambda message: None)
    scope = Q(merchant_id=merchant_id) if merchant_id else Q()

    # 1. Journals balance.
    report.journals = Journal.objects.filter(scope).count()
    for journal_id, total in (
        Entry.objects.filter(journal__in=Journal.objects.filter(scope))
        .values("journal_id")
        .annotate(total=Sum("amount_minor"))
        .exclude(total=0)
        # In journal order: the entries lie in it, so the sums stream (no hash of a million journals).
        .order_by("journal_id")
        .values_list("journal_id", "total")
    ):
        report.differences.append(f"journal {journal_id} does not balance: its entries sum to {total:+d} minor units")
    say(f"journals: {report.journals} checked")

    # 2. Running balances; 3. accounts hold exactly their commissions.
    if connection.vendor == "postgresql":
        _check_accounts_in_sql(report, merchant_id, say)
    else:
        _check_accounts(report, scope, say)
    checked = commissions_checked if commissions_checked is not None else audit_commissions(merchant_id=merchant_id)
    report.differences.extend(checked.differences)
    report.commissions = checked.commissions
    say("accounts against commissions: checked")

    # 4. Recompute from the events; 5. every event holds its key.
    if recompute:
        _recompute(report, scope, say)
        _check_event_keys(report, scope, say)
    return report


def _check_event_keys(report: AuditReport, scope: Q, say) -> None:
    """Every event holds the key of its type (affiliate.models.EventKey): without it a
    second purchase of the same order, say, would not be refused. One anti-join."""
    missing = (
        ConversionEvent.objects.filter(scope)
        .exclude(Exists(EventKey.objects.filter(event_id=OuterRef("pk"), kind=OuterRef("type"))))
        .order_by("pk")
        .values_list("pk", "type")
    )
    for pk, kind in missing[:MAX_LISTED]:
        report.differences.append(f"event {pk} ({kind}) holds no event key: a repeat of it would not be refused")
    say("event keys: checked")

def _check_accounts(report: AuditReport, scope: Q, say) -> None:
    """Checks 2 and 3, the accounts' sums compared in Python (SQLite)."""
    sums = dict(
        Entry.objects.filter(account__in=Account.objects.filter(scope)).values("account_id").annotate(total=Sum("amount_minor"))
        .order_by("account_id").values_list("account_id", "total")
    )
    accounts = list(Account.objects.filter(scope).values_list("id", "promoter_id", "kind", "currency", "balance_minor", "tracks_balance"))
    report.accounts = len(accounts)
    for account_id, promoter_id, kind, currency, balance, tracks in accounts:
        if tracks and balance != sums.get(account_id, 0):
            report.differences.append(
                f"account {account_id} (promoter {promoter_id} {kind}) shows {money.format_minor(balance, currency)} "
                f"but its entries sum to {money.format_minor(sums.get(account_id, 0), currency)}"
            )
    say(f"accounts: {report.accounts} running balances checked")

    # pending: the pending commissions; available: the approved ones and the adjustments not
    # in a payout line; processing: those in a line awaiting confirmation; paid: the rest.
    expected: dict[tuple[int, str, str], int] = defaultdict(int)
    for promoter_id, currency, status, in_line, total in (
        Commission.objects.filter(scope).values("promoter_id", "currency", "status", "payout_line__status")
        .annotate(total=Sum("amount_minor"))
        .values_list("promoter_id", "currency", "status", "payout_line__status", "total")
    ):
        if status == "rejected":
            continue  # a rejected commission and its reversal: back in the merchant's expense
        if status == "approved" and in_line == "pending":
            kind = "processing"
        else:
            kind = {"held": "held", "pending": "pending", "approved": "available", "paid": "paid"}[status]
        expected[(promoter_id, currency, kind)] += total
    for promoter_id, currency, paid_at, in_line, total in (
        Adjustment.objects.filter(scope).values("promoter_id", "currency", "paid_at", "payout_line__status")
        .annotate(total=Sum("amount_minor"))
        .values_list("promoter_id", "currency", "paid_at", "payout_line__status", "total")
    ):
        kind = "paid" if paid_at else ("processing" if in_line == "pending" else "available")
        expected[(promoter_id, currency, kind)] += total
    actual = {(p, c, k): sums.get(a, 0) for a, p, k, c, _, _ in accounts if p is not None}
    for key in sorted(set(expected) | set(actual)):
        if expected.get(key, 0) != actual.get(key, 0):
            promoter_id, currency, kind = key
            report.differences.append(_holds_difference(promoter_id, currency, kind, expected.get(key, 0), actual.get(key, 0)))


def _holds_difference(promoter_id: int, currency: str, kind: str, expected: int, actual: int) -> str:
    return (
        f"promoter {promoter_id} {kind}: commissions say {money.format_minor(expected, currency)}, "
        f"the ledger says {money.format_minor(actual, currency)}"
    )


def _check_accounts_in_sql(report: AuditReport, merchant_id: int | None, say) -> None:
    """Checks 2 and 3 as ``_check_accounts`` makes them, compared by the database, which
    sends back only the differences (in the same order) instead of every account: a
    month-end's ledger has four hundred thousand."""
    qn = connection.ops.quote_name
    entry, account, commission, adjustment, line = (
        qn(model._meta.db_table) for model in (Entry, Account, Commission, Adjustment, PayoutLine)
    )

    def scope(alias: str = "") -> str:
        return f"{alias}merchant_id = %(merchant)s" if merchant_id else "TRUE"

    sql = f"""
        WITH sums AS (
            SELECT account_id, SUM(amount_minor)::bigint AS total FROM {entry}
            WHERE account_id IN (SELECT id FROM {account} WHERE {scope()}) GROUP BY account_id
        ), accounts AS MATERIALIZED (
            SELECT a.id, a.promoter_id, a.kind, a.currency, a.balance_minor, a.tracks_balance, COALESCE(s.total, 0) AS total
            FROM {account} a LEFT JOIN sums s ON s.account_id = a.id WHERE {scope('a.')}
        ), expected AS (
            SELECT promoter_id, currency, kind, SUM(amount_minor)::bigint AS total FROM (
                SELECT c.promoter_id, c.currency,
                    CASE WHEN c.status = 'approved' AND l.status = 'pending' THEN 'processing'
                         WHEN c.status = 'approved' THEN 'available' ELSE c.status END AS kind,
                    c.amount_minor
                FROM {commission} c LEFT JOIN {line} l ON l.id = c.payout_line_id
                WHERE {scope('c.')} AND c.status <> 'rejected'
                UNION ALL
                SELECT d.promoter_id, d.currency,
                    CASE WHEN d.paid_at IS NOT NULL THEN 'paid' WHEN l.status = 'pending' THEN 'processing' ELSE 'available' END,
                    d.amount_minor
                FROM {adjustment} d LEFT JOIN {line} l ON l.id = d.payout_line_id WHERE {scope('d.')}
            ) AS held GROUP BY promoter_id, currency, kind
        )
        SELECT * FROM (
            SELECT 0 AS part, COUNT(*) AS id, NULL::bigint AS promoter_id, NULL AS kind, NULL AS currency,
                NULL::bigint AS shown, NULL::bigint AS summed
            FROM accounts
            UNION ALL
            SELECT 1, id, promoter_id, kind, currency, balance_minor, total FROM accounts
            WHERE tracks_balance AND balance_minor <> total
            UNION ALL
            SELECT 2, NULL, promoter_id, kind, currency, COALESCE(x.total, 0), COALESCE(a.total, 0)
            FROM expected x FULL JOIN (SELECT promoter_id, currency, kind, total FROM accounts WHERE promoter_id IS NOT NULL) a
                USING (promoter_id, currency, kind)
            WHERE COALESCE(x.total, 0) <> COALESCE(a.total, 0)
        ) AS found
        -- Python's order: accounts by id, then (promoter, currency, kind) by code point.
        ORDER BY part, id, promoter_id, currency COLLATE "C", kind COLLATE "C"
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"merchant": merchant_id})
        rows = cursor.fetchall()
    for part, account_id, promoter_id, kind, currency, shown, summed in rows:
        if part == 0:
            report.accounts = account_id
            say(f"accounts: {report.accounts} running balances checked")
        elif part == 1:
            report.differences.append(
                f"account {account_id} (promoter {promoter_id} {kind}) shows {money.format_minor(shown, currency)} "
                f"but its entries sum to {money.format_minor(summed, currency)}"
            )
        else:
            report.differences.append(_holds_difference(promoter_id, currency, kind, shown, summed))


def audit_commissions(*, merchant_id: int | None = None) -> AuditReport:
    """The commissions' own checks: every one has its journal in the ledger, none is
    reversed beyond its amount (by refunds and by hand together); and how many there are."""
    report = AuditReport()
    scope = Q(merchant_id=merchant_id) if merchant_id else Q()
    created = Journal.objects.filter(scope, kind__in=["commission", "reversal", "clawback", "rejected"], commission_id=OuterRef("pk"))
    missing = Commission.objects.filter(scope).exclude(Exists(created)).values_list("id", flat=True)[:100]
    for commission_id in missing:
        report.differences.append(f"commission {commission_id} has no journal in the ledger")
    reversed_totals = (
        Commission.objects.filter(scope, kind="reversal").values("reverses_id").annotate(total=Sum("amount_minor"))
    )
    originals = dict(
        Commission.objects.filter(pk__in=reversed_totals.values("reverses_id")).values_list("id", "amount_minor")
    )
    for row in reversed_totals:
        if -row["total"] > originals.get(row["reverses_id"], 0):
            report.differences.append(
                f"commission {row['reverses_id']} is reversed by {-row['total']} minor units, more than its "
                f"{originals.get(row['reverses_id'], 0)}"
            )
    report.commissions = Commission.objects.filter(scope).count()
    return report


def _recompute(report: AuditReport, scope: Q, say) -> None:
    event_ids = list(ConversionEvent.objects.filter(scope).order_by("id").values_list("id", flat=True))
    report.events = len(event_ids)
    done = 0
    for chunk in _chunks(event_ids):
        _recompute_chunk(chunk, report)
        done += len(chunk)
        say(f"events: {done}/{report.events} recomputed")


def _recompute_chunk(event_ids: list[int], report: AuditReport) -> None:
    events = {e.pk: e for e in ConversionEvent.objects.filter(pk__in=event_ids).select_related("customer", "purchase")}
    touchpoints: dict[int, list[Touchpoint]] = defaultdict(list)
    for t in Touchpoint.objects.filter(event_id__in=event_ids).order_by("event_id", "position"):
        touchpoints[t.event_id].append(t)
    credits: dict[int, dict[int, int]] = defaultdict(dict)
    for event_id, promoter_id, revenue in Credit.objects.filter(event_id__in=event_ids).values_list("event_id", "promoter_id", "revenue_minor"):
        credits[event_id][promoter_id] = revenue
    stored: dict[int, list[Commission]] = defaultdict(list)
    for c in Commission.objects.filter(event_id__in=event_ids).order_by("id"):
        stored[c.event_id].append(c)
    bases = dict(Basis.objects.filter(event_id__in=event_ids).values_list("event_id", "promoters"))

    for event_id in event_ids:
        event = events[event_id]
        if event.status != ConversionEvent.Status.PROCESSED:
            if stored[event_id]:
                report.differences.append(f"event {event_id} is not processed yet has commissions")
            continue
        if event.type == ConversionEvent.Type.REFUND:
            _check_refund(event, stored[event_id], report)
        else:
            _check_gain(event, touchpoints[event_id], credits[event_id], stored[event_id], bases.get(event_id), report)


def _check_gain(event, touchpoints, stored_credits, commissions, basis, report: AuditReport) -> None:
    currency = event.currency
    points = [engine.Touchpoint(t.promoter_id, t.at, t.kind, t.click_id, t.link_id, t.channel) for t in touchpoints]
    weights = conversion_weights(event, event.terms, points)
    amount = event.amount if event.amount is not None else money.quantize(Decimal(0), currency)
    recomputed = engine.attribute(amount, currency, points, weights) if points else []
    want = {c.promoter_id: money.to_minor(c.revenue, currency) for c in recomputed}
    if want != stored_credits:
        report.differences.append(f"event {event.pk}: credits {stored_credits} differ from the recomputed {want}")
        return
    if not recomputed:
        if commissions:
            report.differences.append(f"event {event.pk} has commissions but no credited promoter")
        return
    if basis is None:
        report.differences.append(f"event {event.pk} has credits but no recorded basis")
        return
    terms = rules.Terms.from_snapshot(event.terms)
    credit_rows = [Credit(promoter_id=c.promoter_id, revenue_minor=want[c.promoter_id], first_position=c.first_position) for c in recomputed]
    lines = commission_lines(event, terms, credit_rows, rules.facts_from_json(basis))
    want_lines = {(x.promoter_id, x.kind, x.level, x.source_promoter_id): money.to_minor(x.amount, currency) for x in lines}
    have_lines = {
        (c.promoter_id, c.kind, c.level, c.source_promoter_id): c.amount_minor
        for c in commissions
        if c.kind != "reversal"  # reversed by hand: checked with every reversal below
    }
    for key in sorted(set(want_lines) | set(have_lines)):
        if want_lines.get(key) != have_lines.get(key):
            promoter_id, kind, level, _ = key
            report.differences.append(
                f"event {event.pk}: {kind} level {level} to promoter {promoter_id} is "
                f"{_fmt(have_lines.get(key), currency)}, the rules give {_fmt(want_lines.get(key), currency)}"
            )


def _check_refund(event, reversals, report: AuditReport) -> None:
    purchase = event.purchase
    currency = purchase.currency
    earlier = ConversionEvent.objects.filter(purchase=purchase, pk__lt=event.pk)
    refunded_before = sum(earlier.values_list("amount_minor", flat=True))
    completes = refunded_before + event.amount_minor >= purchase.amount_minor
    originals = list(Commission.objects.filter(event=purchase).exclude(kind="reversal").order_by("id"))
    before: dict[int, int] = defaultdict(int)
    # What was reversed before it: by earlier refunds, and by hand or in review (a reversal on
    # the purchase itself), as crediting counted it.
    by_hand = Q(event=purchase)
    if reversals:
        by_hand &= Q(pk__lt=min(c.pk for c in reversals))
    for parent_id, amount in Commission.objects.filter(
        Q(event__in=earlier) | by_hand, reverses__in=originals
    ).values_list("reverses_id", "amount_minor"):
        before[parent_id] += amount
    want = {
        parent_id: money.to_minor(amount, currency)
        for parent_id, amount in rules.reversal_amounts(
            [rules.CommissionFact(c.pk, c.amount, money.from_minor(before[c.pk], currency)) for c in originals],
            refund=event.amount,
            order_amount=purchase.amount,
            completes_order=completes,
            currency=currency,
        )
    }
    have = {c.reverses_id: c.amount_minor for c in reversals}
    for parent_id in sorted(set(want) | set(have)):
        if want.get(parent_id) != have.get(parent_id):
            report.differences.append(
                f"refund event {event.pk}: reversal of commission {parent_id} is {_fmt(have.get(parent_id), currency)}, "
                f"the rules give {_fmt(want.get(parent_id), currency)}"
            )


def _fmt(minor: int | None, currency: str) -> str:
    return "nothing" if minor is None else money.format_minor(minor, currency)
