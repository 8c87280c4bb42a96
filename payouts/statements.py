"""Monthly statements, computed from the ledger so that they match it to the cent.

A promoter's balance on a statement is everything owed and not yet paid out: pending +
available + processing. The month's movements are the ledger entries on those accounts,
grouped by what caused them; moves between them (approval, batch lock, a failed line) net
to zero and are checked to.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Case, Sum, Value, When
from django.utils import timezone

from core import money
from promoters.models import Promoter

from . import ledger
from .models import Account, Commission, Entry, Journal, Statement

OWED = (Account.Kind.PENDING, Account.Kind.AVAILABLE, Account.Kind.PROCESSING)
FIGURES = ("opening", "direct", "override", "bounty", "reversals", "topups", "bonuses", "payouts", "closing")
LABELS = {
    "opening": "Opening balance",
    "direct": "Commissions on your own sales",
    "override": "Overrides from your team",
    "bounty": "Registration bounties",
    "reversals": "Refund reversals and clawbacks",
    "topups": "Guaranteed-minimum top-ups",
    "bonuses": "Performance bonuses",
    "payouts": "Paid out",
    "closing": "Closing balance",
}


class PeriodError(ValueError):
    pass


class LedgerMismatch(RuntimeError):
    """A statement that would not match the ledger: never written, always reported."""


def month_bounds(period: str) -> tuple[datetime, datetime]:
    try:
        year, month = (int(part) for part in period.split("-"))
        if not (1 <= month <= 12 and 2000 <= year <= 2999 and len(period) == 7):
            raise ValueError
    except ValueError:
        raise PeriodError(f"{period!r} is not a month: write YYYY-MM.") from None
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def statement_figures(promoter: Promoter, period: str) -> dict:
    """Minor units: the opening and closing balances and what moved in between."""
    start, end = month_bounds(period)
    currency = promoter.program.currency
    owed = Entry.objects.filter(account__promoter=promoter, account__currency=currency, account__kind__in=OWED)
    opening = owed.filter(created_at__lt=start).aggregate(total=Sum("amount_minor"))["total"] or 0
    month = owed.filter(created_at__gte=start, created_at__lt=end)
    figures = dict.fromkeys(FIGURES, 0)
    figures["opening"] = opening
    transfers = 0
    for journal_kind, commission_kind, memo, amount in month.values_list(
        "journal__kind", "journal__commission__kind", "journal__memo", "amount_minor"
    ):
        if journal_kind == "commission":
            figures[commission_kind] += amount
        elif journal_kind in ("reversal", "clawback"):
            figures["reversals"] += amount
        elif journal_kind == "adjustment":
            figures["bonuses" if memo.startswith("bonus") else "topups"] += amount
        elif journal_kind in ("payout", "batch_paid"):
            figures["payouts"] += amount
        else:  # approval, batch_lock, batch_failed: moves between owed accounts
            transfers += amount
    if transfers:
        raise LedgerMismatch(f"moves between owed accounts of promoter {promoter.pk} in {period} do not net to zero: {transfers}")
    figures["closing"] = opening + sum(figures[k] for k in FIGURES if k not in ("opening", "closing"))
    ledger_closing = owed.filter(created_at__lt=end).aggregate(total=Sum("amount_minor"))["total"] or 0
    if ledger_closing != figures["closing"]:
        raise LedgerMismatch(f"statement of promoter {promoter.pk} for {period} does not match the ledger")
    by_kind = dict(
        Entry.objects.filter(account__promoter=promoter, account__currency=currency, created_at__lt=end)
        .values("account__kind").annotate(total=Sum("amount_minor")).values_list("account__kind", "total")
    )
    figures["closing_pending"] = by_kind.get("pending", 0)
    figures["closing_available"] = by_kind.get("available", 0) + by_kind.get("processing", 0)
    figures["paid_to_date"] = by_kind.get("paid", 0)
    return {"currency": currency, "period": period, "minor": figures}


@transaction.atomic
def statement_write(*, promoter: Promoter, period: str) -> tuple[Statement, bool]:
    """Freeze the month's statement once; a second call returns the first."""
    existing = Statement.objects.filter(promoter=promoter, period=period, currency=promoter.program.currency).first()
    if existing is not None:
        return existing, False
    figures = statement_figures(promoter, period)
    return Statement.objects.create(promoter=promoter, period=period, currency=figures["currency"], figures=figures["minor"]), True


def statement_lines(statement: Statement) -> list[tuple[str, str]]:
    currency = statement.currency
    return [(LABELS[key], money.format_minor(statement.figures[key], currency)) for key in FIGURES]


def statement_commissions(statement: Statement):
    start, end = month_bounds(statement.period)
    return (
        Commission.objects.filter(promoter_id=statement.promoter_id, currency=statement.currency, created_at__gte=start, created_at__lt=end)
        .order_by("created_at", "id")
    )


def statement_csv(statement: Statement) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["statement", statement.period, statement.promoter.name, statement.currency])
    for label, amount in statement_lines(statement):
        writer.writerow([label, amount])
    writer.writerow([])
    writer.writerow(["commission", "created_at", "event", "kind", "level", "amount", "status"])
    for c in statement_commissions(statement):
        writer.writerow([c.pk, c.created_at.isoformat(), c.event_id, c.kind, c.level, money.format_minor(c.amount_minor, c.currency), c.status])
    return out.getvalue()


def statement_pdf(statement: Statement) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, f"Statement {statement.period}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 11)
    promoter = statement.promoter
    pdf.cell(0, 7, _latin(f"{promoter.name} <{promoter.email}>, promoter {promoter.pk}"), new_x="LMARGIN", new_y="NEXT")
    pdf.cell(0, 7, f"Amounts in {statement.currency}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for label, amount in statement_lines(statement):
        bold = label in (LABELS["opening"], LABELS["closing"])
        pdf.set_font("Helvetica", "B" if bold else "", 11)
        pdf.cell(120, 8, label, border="B")
        pdf.cell(50, 8, amount, border="B", align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(6)
    pdf.set_font("Helvetica", "B", 11)
    pdf.cell(0, 8, "Commissions this month", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    for header, width in (("Date", 40), ("Event", 25), ("Kind", 30), ("Level", 15), ("Amount", 30), ("Status", 30)):
        pdf.cell(width, 6, header, border="B")
    pdf.ln()
    for c in statement_commissions(statement)[:2000]:
        for text, width in (
            (c.created_at.strftime("%Y-%m-%d %H:%M"), 40), (str(c.event_id), 25), (c.kind, 30), (str(c.level), 15),
            (money.format_minor(c.amount_minor, c.currency), 30), (c.status, 30),
        ):
            pdf.cell(width, 5, text)
        pdf.ln()
    return bytes(pdf.output())


def _latin(text: str) -> str:
    """The core PDF fonts speak Latin-1; anything else is replaced, never an error."""
    return text.encode("latin-1", "replace").decode("latin-1")


def _figure_key(journal_kind: str, commission_kind: str | None, adjustment: str) -> str | None:
    if journal_kind == "commission":
        return commission_kind
    if journal_kind in ("reversal", "clawback"):
        return "reversals"
    if journal_kind == "adjustment":
        return adjustment
    if journal_kind in ("payout", "batch_paid"):
        return "payouts"
    return None  # a move between owed accounts


def statements_write_all(*, merchant_id: int, period: str, promoter_ids=None, progress=None) -> int:
    """Every promoter's statement for the month in a few grouped queries (a month-end has a
    hundred thousand of them); the figures are the same as ``statement_figures``. Returns
    how many were written; those already written stay as they are."""
    start, end = month_bounds(period)
    if transaction.get_connection().vendor == "postgresql":
        written = _statements_insert(merchant_id, period, start, end, promoter_ids)
        if progress:
            progress(f"  statements {written} written by one grouped insert")
        return written
    owed = Entry.objects.filter(account__merchant_id=merchant_id, account__promoter__isnull=False, account__kind__in=OWED)
    if promoter_ids is not None:
        owed = owed.filter(account__promoter_id__in=promoter_ids)
    figures: dict[tuple[int, str], dict] = {}

    def of(promoter_id: int, currency: str) -> dict:
        return figures.setdefault((promoter_id, currency), dict.fromkeys(FIGURES, 0))

    for promoter_id, currency, total in (
        owed.filter(created_at__lt=start).values("account__promoter_id", "account__currency")
        .annotate(total=Sum("amount_minor")).values_list("account__promoter_id", "account__currency", "total")
    ):
        of(promoter_id, currency)["opening"] = total
    transfers: dict[tuple[int, str], int] = {}
    adjustment = Case(When(journal__memo__startswith="bonus", then=Value("bonuses")), default=Value("topups"))
    for promoter_id, currency, journal_kind, commission_kind, adj, total in (
        owed.filter(created_at__gte=start, created_at__lt=end)
        .annotate(adj=adjustment)
        .values("account__promoter_id", "account__currency", "journal__kind", "journal__commission__kind", "adj")
        .annotate(total=Sum("amount_minor"))
        .values_list("account__promoter_id", "account__currency", "journal__kind", "journal__commission__kind", "adj", "total")
    ):
        key = _figure_key(journal_kind, commission_kind, adj)
        if key is None:
            transfers[(promoter_id, currency)] = transfers.get((promoter_id, currency), 0) + total
        else:
            of(promoter_id, currency)[key] += total
    closing_by_kind: dict[tuple[int, str], dict[str, int]] = {}
    every = Entry.objects.filter(account__merchant_id=merchant_id, account__promoter__isnull=False, created_at__lt=end)
    if promoter_ids is not None:
        every = every.filter(account__promoter_id__in=promoter_ids)
    for promoter_id, currency, kind, total in (
        every.values("account__promoter_id", "account__currency", "account__kind").annotate(total=Sum("amount_minor"))
        .values_list("account__promoter_id", "account__currency", "account__kind", "total")
    ):
        closing_by_kind.setdefault((promoter_id, currency), {})[kind] = total
        of(promoter_id, currency)
    promoters = Promoter.objects.filter(merchant_id=merchant_id, created_at__lt=end)
    if promoter_ids is not None:
        promoters = promoters.filter(pk__in=promoter_ids)
    for promoter_id, currency in promoters.values_list("id", "program__currency"):
        of(promoter_id, currency)
    rows = []
    for (promoter_id, currency), f in figures.items():
        if transfers.get((promoter_id, currency), 0):
            raise LedgerMismatch(f"moves between owed accounts of promoter {promoter_id} in {period} do not net to zero")
        f["closing"] = f["opening"] + sum(f[k] for k in FIGURES if k not in ("opening", "closing"))
        kinds = closing_by_kind.get((promoter_id, currency), {})
        if f["closing"] != kinds.get("pending", 0) + kinds.get("available", 0) + kinds.get("processing", 0):
            raise LedgerMismatch(f"statement of promoter {promoter_id} for {period} does not match the ledger")
        f["closing_pending"] = kinds.get("pending", 0)
        f["closing_available"] = kinds.get("available", 0) + kinds.get("processing", 0)
        f["paid_to_date"] = kinds.get("paid", 0)
        rows.append(Statement(promoter_id=promoter_id, period=period, currency=currency, figures=f))
    before = Statement.objects.filter(promoter__merchant_id=merchant_id, period=period).count()
    for start_index in range(0, len(rows), 5000):
        Statement.objects.bulk_create(rows[start_index : start_index + 5000], ignore_conflicts=True)
        if progress:
            progress(f"  statements {min(start_index + 5000, len(rows))}/{len(rows)}")
    return Statement.objects.filter(promoter__merchant_id=merchant_id, period=period).count() - before


def _statements_insert(merchant_id: int, period: str, start, end, promoter_ids=None) -> int:
    """``statements_write_all`` on PostgreSQL: the same figures and checks, computed and
    inserted by the database in one statement, so that a hundred thousand statements never
    pass through Python. Nothing is written when a statement would not match the ledger."""
    qn = transaction.get_connection().ops.quote_name
    entry, account, journal, commission, statement, promoter, program = (
        qn(model._meta.db_table)
        for model in (Entry, Account, Journal, Commission, Statement, Promoter, Promoter._meta.get_field("program").related_model)
    )
    some = promoter_ids is not None
    only_accounts = "AND a.promoter_id = ANY(%(ids)s::bigint[])" if some else ""
    only_promoters = "AND p.id = ANY(%(ids)s::bigint[])" if some else ""
    owed = "('pending', 'available', 'processing')"

    def moved(condition: str) -> str:
        return f"COALESCE(SUM(e.amount_minor) FILTER (WHERE {condition}), 0)"

    sql = f"""
        WITH e AS NOT MATERIALIZED (
            SELECT a.promoter_id, a.currency, a.kind AS account_kind, en.journal_id, en.amount_minor, en.created_at
            FROM {entry} en JOIN {account} a ON a.id = en.account_id
            WHERE a.merchant_id = %(merchant)s AND a.promoter_id IS NOT NULL {only_accounts}
              AND en.created_at < %(end)s
        ), month AS (
            SELECT e.promoter_id, e.currency,
                {moved("j.kind = 'commission' AND c.kind = 'direct'")} AS direct,
                {moved("j.kind = 'commission' AND c.kind = 'override'")} AS override,
                {moved("j.kind = 'commission' AND c.kind = 'bounty'")} AS bounty,
                {moved("j.kind IN ('reversal', 'clawback')")} AS reversals,
                {moved("j.kind = 'adjustment' AND j.memo NOT LIKE 'bonus%%'")} AS topups,
                {moved("j.kind = 'adjustment' AND j.memo LIKE 'bonus%%'")} AS bonuses,
                {moved("j.kind IN ('payout', 'batch_paid')")} AS payouts,
                {moved("j.kind NOT IN ('commission', 'reversal', 'clawback', 'adjustment', 'payout', 'batch_paid')")} AS transfers
            FROM e JOIN {journal} j ON j.id = e.journal_id LEFT JOIN {commission} c ON c.id = j.commission_id
            WHERE e.account_kind IN {owed} AND e.created_at >= %(start)s
            GROUP BY e.promoter_id, e.currency
        ), balances AS (
            SELECT e.promoter_id, e.currency,
                {moved(f"e.account_kind IN {owed} AND e.created_at < %(start)s")} AS opening,
                {moved("e.account_kind = 'pending'")} AS pending,
                {moved("e.account_kind IN ('available', 'processing')")} AS available,
                {moved("e.account_kind = 'paid'")} AS paid
            FROM e GROUP BY e.promoter_id, e.currency
        ), keys AS (
            SELECT promoter_id, currency FROM balances
            UNION
            SELECT p.id, pr.currency FROM {promoter} p JOIN {program} pr ON pr.id = p.program_id
            WHERE p.merchant_id = %(merchant)s AND p.created_at < %(end)s {only_promoters}
        ), f AS MATERIALIZED (
            SELECT k.promoter_id, k.currency,
                COALESCE(b.opening, 0) AS opening, COALESCE(m.direct, 0) AS direct, COALESCE(m.override, 0) AS override,
                COALESCE(m.bounty, 0) AS bounty, COALESCE(m.reversals, 0) AS reversals, COALESCE(m.topups, 0) AS topups,
                COALESCE(m.bonuses, 0) AS bonuses, COALESCE(m.payouts, 0) AS payouts,
                COALESCE(m.transfers, 0) AS transfers,
                COALESCE(b.opening, 0) + COALESCE(m.direct, 0) + COALESCE(m.override, 0) + COALESCE(m.bounty, 0)
                    + COALESCE(m.reversals, 0) + COALESCE(m.topups, 0) + COALESCE(m.bonuses, 0) + COALESCE(m.payouts, 0)
                    AS closing,
                COALESCE(b.pending, 0) AS closing_pending, COALESCE(b.available, 0) AS closing_available,
                COALESCE(b.paid, 0) AS paid_to_date
            FROM keys k
            LEFT JOIN balances b ON b.promoter_id = k.promoter_id AND b.currency = k.currency
            LEFT JOIN month m ON m.promoter_id = k.promoter_id AND m.currency = k.currency
        ), bad AS (
            SELECT promoter_id, transfers <> 0 AS moves_off FROM f
            WHERE transfers <> 0 OR closing <> closing_pending + closing_available
            ORDER BY promoter_id, currency LIMIT 1
        ), written AS (
            INSERT INTO {statement} (promoter_id, period, currency, figures, created_at)
            SELECT promoter_id, %(period)s, currency, jsonb_build_object(
                'opening', opening, 'direct', direct, 'override', override, 'bounty', bounty, 'reversals', reversals,
                'topups', topups, 'bonuses', bonuses, 'payouts', payouts, 'closing', closing,
                'closing_pending', closing_pending, 'closing_available', closing_available, 'paid_to_date', paid_to_date
            ), %(now)s
            FROM f WHERE NOT EXISTS (SELECT 1 FROM bad)
            ORDER BY promoter_id, currency
            ON CONFLICT DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT COUNT(*) FROM written), bad.promoter_id, bad.moves_off FROM (SELECT 1) AS one LEFT JOIN bad ON TRUE
    """
    params = {"merchant": merchant_id, "start": start, "end": end, "period": period, "now": timezone.now()}
    if some:
        params["ids"] = ledger.array_literal(promoter_ids)
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(sql, params)
        written, bad_promoter, moves_off = cursor.fetchone()
    if bad_promoter is not None:
        if moves_off:
            raise LedgerMismatch(f"moves between owed accounts of promoter {bad_promoter} in {period} do not net to zero")
        raise LedgerMismatch(f"statement of promoter {bad_promoter} for {period} does not match the ledger")
    return written
