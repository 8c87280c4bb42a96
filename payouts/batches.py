"""Payout batches: lock what is payable, export it, settle it. Every step is ledger entries.

Building a batch claims approved, unpaid commissions and adjustments for a line per
promoter whose payable total reaches the program's minimum; a claim is a conditional
update (``payout_line IS NULL``), so two batches built at once can never take the same
money. The line's total moves available → processing; a paid line moves processing → paid
(and its commissions become ``paid``); a failed line moves the money back to available.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import NamedTuple

from django.db import transaction
from django.db.models import OuterRef, Q, Subquery, Sum
from django.utils import timezone

from merchants.models import Merchant, Program
from merchants.services import merchant_lock
from promoters.models import Promoter

from . import ledger, services, webhooks
from .models import (
    Account,
    Adjustment,
    Commission,
    Journal,
    PayoutBatch,
    PayoutLine,
    PayoutMethod,
    PayoutPolicy,
    WebhookEndpoint,
)


class BatchError(ValueError):
    pass


def policy_for(program) -> PayoutPolicy:
    policy, _ = PayoutPolicy.objects.get_or_create(program=program)
    return policy


SNAPSHOT_FIELDS = ("kind", "paypal_email", "account_holder", "iban", "bic")


def method_snapshot(method: PayoutMethod | None) -> dict:
    if method is None:
        return {"kind": "manual"}
    return {name: getattr(method, name) for name in SNAPSHOT_FIELDS}


@dataclass
class BatchResult:
    batch: PayoutBatch | None
    lines: int
    total_minor: int
    created: bool
    approved: int = 0  # commissions the build approved (``approve_due_at``)


def _payable(merchant_id: int, currency: str, due_by=None):
    """Approved commissions not yet in a line; with ``due_by``, also the pending ones whose
    hold has ended by then (``approve_due`` would approve them)."""
    payable = Q(status=Commission.Status.APPROVED)
    if due_by is not None:
        payable |= Q(status=Commission.Status.PENDING, available_at__lte=due_by)
    return Commission.objects.filter(payable, merchant_id=merchant_id, currency=currency, payout_line__isnull=True)


def _payable_by_promoter(merchant_id: int, currency: str, due_by=None) -> dict[int, int]:
    totals: dict[int, int] = defaultdict(int)
    for promoter_id, total in (
        _payable(merchant_id, currency, due_by)
        .values("promoter_id").annotate(total=Sum("amount_minor")).values_list("promoter_id", "total")
    ):
        totals[promoter_id] += total
    for promoter_id, total in (
        Adjustment.objects.filter(merchant_id=merchant_id, currency=currency, payout_line__isnull=True, paid_at__isnull=True)
        .values("promoter_id").annotate(total=Sum("amount_minor")).values_list("promoter_id", "total")
    ):
        totals[promoter_id] += total
    return totals


@transaction.atomic
def batch_build(*, merchant: Merchant, currency: str, period: str = "", progress=None, approve_due_at=None) -> BatchResult:
    """One line per promoter whose payable balance reaches their program's minimum.

    ``approve_due_at`` (the month-end): the merchant's pending commissions in this currency
    whose hold has ended by then count as approved, and are approved as ``approve_due``
    would (approval journals, one per promoter, and webhooks) by the very update that
    claims them for their lines, so that each of a month's million commissions is written
    once, not twice."""
    merchant_lock(merchant.pk)  # one builder per merchant at a time
    if period:
        existing = PayoutBatch.objects.filter(merchant=merchant, currency=currency, period=period).first()
        if existing is not None:
            total = existing.lines.aggregate(total=Sum("amount_minor"))["total"] or 0
            return BatchResult(existing, existing.lines.count(), total, False)
    totals = _payable_by_promoter(merchant.pk, currency, approve_due_at)
    if not totals:
        return BatchResult(None, 0, 0, False)
    # Plain values, not instances: a month-end has a hundred thousand promoters.
    program_of = _of_promoters(Promoter.objects.filter(merchant_id=merchant.pk), "id", "program_id", ids=totals)
    minimums = {program.pk: policy_for(program).minimum_payout_minor for program in Program.objects.filter(pk__in=set(program_of.values()))}
    eligible = {
        pid: total for pid, total in totals.items() if total > 0 and total >= minimums[program_of[pid]]
    }
    if not eligible:
        return BatchResult(None, 0, 0, False)
    batch = PayoutBatch.objects.create(merchant=merchant, currency=currency, period=period)
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        methods = _of_promoters(
            PayoutMethod.objects.filter(promoter__merchant_id=merchant.pk), "promoter_id", "kind", "paypal_email",
            "account_holder", "iban", "bic", ids=eligible,
        )
        snapshots = {pid: method_snapshot(PayoutMethod(promoter_id=pid, **methods[pid]) if pid in methods else None) for pid in eligible}
        PayoutLine.objects.bulk_create(
            [
                PayoutLine(batch=batch, promoter_id=pid, amount_minor=total, currency=currency, method=snapshots[pid])
                for pid, total in eligible.items()
            ],
            batch_size=5000,
        )
    else:
        # A month-end's hundred thousand lines in one statement, not as model instances, each
        # with its promoter's payout method as method_snapshot writes it; then statistics for
        # them: without, the planner guesses a handful and walks a month-end's million
        # commissions promoter by promoter, in random order, instead of reading them once.
        table, methods = (connection.ops.quote_name(model._meta.db_table) for model in (PayoutLine, PayoutMethod))
        snapshot = ", ".join(f"'{name}', m.{connection.ops.quote_name(name)}" for name in SNAPSHOT_FIELDS)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (batch_id, promoter_id, amount_minor, currency, method, status, failure_reason) "
                f"SELECT %s, l.promoter_id, l.amount_minor, %s, "
                f"CASE WHEN m.id IS NULL THEN %s::jsonb ELSE jsonb_build_object({snapshot}) END, %s, '' "
                f"FROM unnest(%s::bigint[], %s::bigint[]) WITH ORDINALITY AS l(promoter_id, amount_minor, n) "
                f"LEFT JOIN {methods} m ON m.promoter_id = l.promoter_id "
                f"ORDER BY l.n",
                [
                    batch.pk, currency, json.dumps(method_snapshot(None)), PayoutLine.Status.PENDING,
                    ledger.array_literal(eligible), ledger.array_literal(eligible.values()),
                ],
            )
            cursor.execute(f"ANALYZE {table}")
    if progress:
        progress(f"batch {batch.pk}: {len(eligible)} lines to lock")
    # The claim: only what is still unclaimed, so nothing is ever in two lines.
    approved, moves, groups = _approve_due(batch, currency, approve_due_at) if approve_due_at is not None else (0, [], [])
    groups += _claim(_payable(merchant.pk, currency), batch)
    groups += _claim(Adjustment.objects.filter(
        merchant_id=merchant.pk, currency=currency, payout_line__isnull=True, paid_at__isnull=True,
    ), batch)
    # What the lines hold: what these claims put in them (the batch is new, and the rows
    # they claimed stay locked until the end of this transaction).
    claimed: dict[int, int] = defaultdict(int)
    for group in groups:
        if group.line_id is not None:
            claimed[group.line_id] += group.total
    empty, total, count = [], 0, 0
    for line_id, promoter_id, line_amount in PayoutLine.objects.filter(batch=batch).values_list("id", "promoter_id", "amount_minor"):
        amount = claimed.get(line_id, 0)
        if amount <= 0:  # everything it counted on was claimed elsewhere in the meantime
            empty.append(line_id)
            continue
        if amount != line_amount:
            PayoutLine.objects.filter(pk=line_id).update(amount_minor=amount)
        moves.append(ledger.Move(
            merchant.pk, currency, promoter_id, amount, f"batch {batch.pk} line {line_id}",
            Journal.Kind.BATCH_LOCK, Account.Kind.AVAILABLE, Account.Kind.PROCESSING,
        ))
        total += amount
        count += 1
    if empty:
        Commission.objects.filter(payout_line_id__in=empty).update(payout_line=None)
        Adjustment.objects.filter(payout_line_id__in=empty).update(payout_line=None)
        PayoutLine.objects.filter(pk__in=empty).delete()
    ledger.post_moves(moves)  # the approvals, then the locks: one set of statements for both
    return BatchResult(batch, count, total, True, approved)


def _approve_due(batch: PayoutBatch, currency: str, now) -> tuple[int, list[ledger.Move], list[Claimed]]:
    """Approve the merchant's pending commissions in this currency whose hold has ended by
    ``now``, those of the batch's promoters claimed for their lines by the same update, and
    send their webhooks. Returns how many, their approval journals to post (pending →
    available, one per promoter, in order of each one's first commission, as
    ``approve_due`` writes them), and what the update claimed."""
    due = Commission.objects.filter(
        merchant_id=batch.merchant_id, currency=currency, status=Commission.Status.PENDING, available_at__lte=now,
        payout_line__isnull=True,
    )
    # Ids only when the merchant has a webhook endpoint at all (emit_approved loads them).
    listening = WebhookEndpoint.objects.filter(merchant_id=batch.merchant_id, active=True).exists()
    groups = _claim(due, batch, approved_at=now, every_promoter=True, ids=listening)
    if listening:
        services.emit_approved({batch.merchant_id: [pk for group in groups for pk in group.ids]})
    return sum(group.count for group in groups), [
        ledger.approval_move(batch.merchant_id, currency, group.promoter_id, group.total, group.count)
        for group in groups
        if group.total
    ], groups


def _of_promoters(queryset, key: str, *fields: str, ids) -> dict:
    """``{promoter id: value(s)}`` for these promoters, read from ``queryset`` (the merchant's
    rows, one cheap query) and, for any id it does not hold, by id."""
    def rows(qs):
        if len(fields) == 1:
            return {row[0]: row[1] for row in qs.values_list(key, *fields)}
        return {row[0]: dict(zip(fields, row[1:], strict=True)) for row in qs.values_list(key, *fields)}

    found = rows(queryset)
    missing = [pid for pid in ids if pid not in found]
    if missing:
        found.update(rows(queryset.model.objects.filter(**{f"{key}__in": missing})))
    return {pid: found[pid] for pid in ids if pid in found}


class Claimed(NamedTuple):
    """A promoter's rows that one ``_claim`` updated: the line they now point at (None:
    approved, left unclaimed), their sum, how many, their ids (when asked for)."""

    promoter_id: int
    line_id: int | None
    total: int
    count: int
    ids: list[int]


def _claim(queryset, batch: PayoutBatch, *, approved_at=None, every_promoter=False, ids=False) -> list[Claimed]:
    """Point the unclaimed rows of the batch's promoters at their line, and with
    ``approved_at`` approve them in the same update (with ``every_promoter``, the rows of
    the merchant's other promoters too, left unclaimed). Returns what it updated, per
    promoter, in order of their first row. Each row's own conditions are checked again
    under its lock, so a row another builder or approver took first is left alone."""
    lines = PayoutLine.objects.filter(batch=batch)
    model = queryset.model
    approve = {"status": Commission.Status.APPROVED, "approved_at": approved_at} if approved_at is not None else {}
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        mine = queryset.filter(promoter__merchant_id=batch.merchant_id) if every_promoter else queryset.filter(promoter_id__in=lines.values("promoter_id"))
        rows = list(mine.select_for_update().order_by("id").values_list("id", "promoter_id", "amount_minor"))
        line_of = lines.filter(promoter_id=OuterRef("promoter_id")).values("id")[:1]
        for start in range(0, len(rows), 10000):
            chunk = [pk for pk, _, _ in rows[start : start + 10000]]
            mine.filter(pk__in=chunk).update(payout_line=Subquery(line_of), **approve)
        line_ids = dict(lines.values_list("promoter_id", "id"))
        groups: dict[int, list] = {}
        for pk, promoter_id, amount in rows:
            group = groups.setdefault(promoter_id, [promoter_id, line_ids.get(promoter_id), 0, 0, []])
            group[2] += amount
            group[3] += 1
            if ids:
                group[4].append(pk)
        return [Claimed(*group) for group in groups.values()]
    # One joined update, the table read once in order: the lines hashed (the planner has
    # statistics for them, see batch_build), or every promoter of the merchant with their
    # line if any; summed per promoter by the database.
    compiler = queryset.query.get_compiler(connection=connection)
    where, params = queryset.query.where.as_sql(compiler, connection)  # the row's own columns: no join
    qn = connection.ops.quote_name
    table, line_table = qn(model._meta.db_table), qn(PayoutLine._meta.db_table)
    if every_promoter:
        source = (
            f"(SELECT p.id AS promoter_id, l.id AS line_id FROM {qn(Promoter._meta.db_table)} p "
            f"LEFT JOIN {line_table} l ON l.batch_id = %s AND l.promoter_id = p.id WHERE p.merchant_id = %s) AS l"
        )
        source_params = [batch.pk, batch.merchant_id]
    else:
        source = f"(SELECT promoter_id, id AS line_id FROM {line_table} WHERE batch_id = %s) AS l"
        source_params = [batch.pk]
    sets = "".join(f", {qn(model._meta.get_field(name).column)} = %s" for name in approve)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH claimed AS (UPDATE {table} SET payout_line_id = l.line_id{sets} FROM {source} "
            f"WHERE l.promoter_id = {table}.promoter_id AND {where} "
            f"RETURNING {table}.id, {table}.promoter_id, {table}.payout_line_id, {table}.amount_minor) "
            # A promoter has at most one line in the batch: grouped by promoter all the same.
            f"SELECT promoter_id, payout_line_id, SUM(amount_minor), COUNT(*), {'ARRAY_AGG(id ORDER BY id)' if ids else 'NULL'} "
            f"FROM claimed GROUP BY promoter_id, payout_line_id ORDER BY MIN(id)",
            [*approve.values(), *source_params, *params],
        )
        return [
            Claimed(promoter_id, line_id, int(total), count, pks or [])
            for promoter_id, line_id, total, count, pks in cursor.fetchall()
        ]


def _posting(line: PayoutLine, kind: str, source: str, target: str, accounts) -> ledger.Posting:
    return ledger.Posting(
        Journal(merchant_id=line.batch.merchant_id, kind=kind, memo=f"batch {line.batch_id} line {line.pk}"),
        [
            (accounts[(line.promoter_id, source)], -line.amount_minor),
            (accounts[(line.promoter_id, target)], line.amount_minor),
        ],
    )


@transaction.atomic
def lines_settle(*, line_ids, paid: bool, reason: str = "", now=None) -> int:
    """Confirm lines as paid, or as failed (the money goes back to available)."""
    now = now or timezone.now()
    lines = list(
        PayoutLine.objects.select_for_update().select_related("batch")
        .filter(pk__in=list(line_ids), status=PayoutLine.Status.PENDING).order_by("id")
    )
    if not lines:
        return 0
    if not paid and not reason.strip():
        raise BatchError("Say why the payment failed.")
    postings = []
    by_currency: dict[tuple[int, str], list[PayoutLine]] = defaultdict(list)
    for line in lines:
        by_currency[(line.batch.merchant_id, line.currency)].append(line)
    for (merchant_id, currency), group in by_currency.items():
        accounts = ledger.promoter_accounts(merchant_id, currency, [line.promoter_id for line in group])
        for line in group:
            if paid:
                postings.append(_posting(line, Journal.Kind.BATCH_PAID, Account.Kind.PROCESSING, Account.Kind.PAID, accounts))
            else:
                postings.append(_posting(line, Journal.Kind.BATCH_FAILED, Account.Kind.PROCESSING, Account.Kind.AVAILABLE, accounts))
    ledger.post(postings)
    ids = [line.pk for line in lines]
    if paid:
        Commission.objects.filter(payout_line_id__in=ids).update(status=Commission.Status.PAID, paid_at=now)
        Adjustment.objects.filter(payout_line_id__in=ids).update(paid_at=now)
        PayoutLine.objects.filter(pk__in=ids).update(status=PayoutLine.Status.PAID, settled_at=now)
    else:
        Commission.objects.filter(payout_line_id__in=ids).update(payout_line=None)
        Adjustment.objects.filter(payout_line_id__in=ids).update(payout_line=None)
        PayoutLine.objects.filter(pk__in=ids).update(status=PayoutLine.Status.FAILED, settled_at=now, failure_reason=reason[:300])
    if paid:
        for line in lines:
            line.status, line.settled_at = PayoutLine.Status.PAID, now
            webhooks.emit_payout_paid(line=line)
    for batch_id in {line.batch_id for line in lines}:
        if not PayoutLine.objects.filter(batch_id=batch_id, status=PayoutLine.Status.PENDING).exists():
            PayoutBatch.objects.filter(pk=batch_id).update(status=PayoutBatch.Status.CLOSED, closed_at=now)
    return len(lines)
