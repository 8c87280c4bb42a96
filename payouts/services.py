"""Commissions from conversions, written to the ledger; approval when the hold ends.

``process_conversions`` is the step that ``affiliate`` runs for each event (registered by
name in ``PayoutsConfig.ready``); it runs inside the event's processing transaction, under
the event's row lock, so a crash half-way leaves nothing and a second run finds the event
already processed.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import timedelta

from django.db import connection, transaction
from django.db.models.expressions import RawSQL
from django.utils import timezone

from affiliate.models import ConversionEvent
from attribution import services as attribution
from core import money
from promoters.models import Promoter, PromoterRateHistory

from . import fraud, ledger, rules, webhooks
from .models import Basis, Commission, WebhookEndpoint


def promoter_facts(promoter_ids, *, levels: int, compress: bool) -> dict[int, rules.PromoterFact]:
    """The credited promoters and enough of their uplines, in one query."""
    return _facts_and_plans(promoter_ids, levels=levels, compress=compress)[0]


def _facts_and_plans(promoter_ids, *, levels: int, compress: bool) -> tuple[dict[int, rules.PromoterFact], dict[int, str]]:
    """``promoter_facts`` and each of those promoters' payout plan."""
    start = set(promoter_ids)
    limit = rules.MAX_UPLINE_WALK if compress else levels
    return _walk(_upline_rows(start, limit), start, limit)


def _upline_rows(start: set[int], limit: int) -> dict[int, tuple]:
    """The rows (status, sponsor, customer, own rate, plan) of these promoters and of every
    promoter within ``limit`` sponsor steps above them, by id, in one recursive query."""
    if not start:
        return {}
    return {
        pk: tuple(rest)
        for pk, *rest in Promoter.objects.filter(pk__in=_within_upline(start, limit)).values_list(
            "id", "status", "sponsor_id", "customer_id", "commission_rate", "payout_plan"
        )
    }


def _walk(
    rows: dict[int, tuple], start: set[int], limit: int, own_rates: dict | None = None
) -> tuple[dict[int, rules.PromoterFact], dict[int, str]]:
    """The facts and plans of ``start`` and their uplines from ``rows``: visited level by
    level, nearest first and by id within a level, exactly as a query per level would, so
    the facts (and the basis written from them) come out the same, in the same order, and
    the same whether ``rows`` was read for one event or for a batch. ``own_rates``: the
    own rate of those promoters whose rate has changed since the event was received (the
    rate in effect then replaces the current one of ``rows``)."""
    facts: dict[int, rules.PromoterFact] = {}
    plans: dict[int, str] = {}
    frontier = start
    depth = 0
    while frontier and depth <= limit:
        level, frontier = sorted(pk for pk in frontier if pk in rows), set()
        for pk in level:
            status, sponsor_id, customer_id, own_rate, plan = rows[pk]
            if own_rates and pk in own_rates:
                own_rate = own_rates[pk]
            facts[pk] = rules.PromoterFact(pk, status == Promoter.Status.ACTIVE, sponsor_id, customer_id, own_rate)
            plans[pk] = plan
            if sponsor_id is not None and sponsor_id not in facts:
                frontier.add(sponsor_id)
        depth += 1
    return facts, plans


def _within_upline(start: set[int], limit: int) -> RawSQL:
    """The ids of these promoters and of their sponsors up to ``limit`` steps above (a
    loop in the tree, which only a hand edit can make, ends at the step limit too)."""
    qn = connection.ops.quote_name
    table, pk, sponsor = qn(Promoter._meta.db_table), qn(Promoter._meta.pk.column), qn(Promoter._meta.get_field("sponsor").column)
    placeholders = ", ".join(["%s"] * len(start))
    return RawSQL(
        f"WITH RECURSIVE up(pid, depth) AS (SELECT {pk}, 0 FROM {table} WHERE {pk} IN ({placeholders}) "
        f"UNION SELECT p.{sponsor}, up.depth + 1 FROM up JOIN {table} p ON p.{pk} = up.pid "
        f"WHERE p.{sponsor} IS NOT NULL AND up.depth < %s) SELECT pid FROM up",
        (*sorted(start), limit),
    )


def process_conversions(events: list[ConversionEvent]) -> None:
    """Commissions for a batch of events, in the transaction that marks them processed.

    Registrations and purchases are credited together: their journeys, uplines and
    accounts read once, their touchpoints, credits, commissions, journals and entries
    written by one insert each, and the running balances moved once, in account order.
    Each event's rows are exactly what it would get alone. Refunds (which read their
    order's commissions) follow, one at a time, after the batch's purchases."""
    done = set(Commission.objects.filter(event__in=[e.pk for e in events]).values_list("event_id", flat=True).distinct())
    # An event with commissions was already written (the event's status guard makes this
    # unreachable; belt and braces).
    todo = [e for e in events if e.pk not in done]
    _process_gains([e for e in todo if e.type != ConversionEvent.Type.REFUND])
    for event in todo:
        if event.type == ConversionEvent.Type.REFUND:
            _process_refund(event)


def _process_gains(events: list[ConversionEvent]) -> None:
    # The fraud rules first: a flagged conversion's commissions are computed as if it were
    # clean and written held, in review (payouts/review.py), counted in no balance until
    # finance clears it or rejects it.
    if not events:
        return
    touchpoints_of = fraud.conversions_screen(events)
    held = {e.pk for e in events if e.is_fraud}
    credits_of = attribution.attributions_record(events=events, touchpoints_of=touchpoints_of)
    credited = [e for e in events if credits_of[e.pk]]
    if not credited:
        return
    terms_of = {e.pk: rules.Terms.from_snapshot(e.terms) for e in credited}
    limit_of = {
        e.pk: rules.MAX_UPLINE_WALK if terms_of[e.pk].compress_inactive else len(terms_of[e.pk].tier_rates) for e in credited
    }
    start_of = {e.pk: {c.promoter_id for c in credits_of[e.pk]} for e in credited}
    rows = _upline_rows(set().union(*start_of.values()), max(limit_of.values()))
    # A rate applies to events received from its change on, however late they are
    # processed: the whole history of the promoters whose rate changed after the batch's
    # oldest event was received, in one query (usually empty).
    changed = PromoterRateHistory.objects.filter(
        promoter_id__in=sorted(rows), effective_from__gt=min(e.received_at for e in credited)
    ).values("promoter_id")
    history: dict[int, tuple[list, list]] = {}
    for pk, effective_from, rate in (
        PromoterRateHistory.objects.filter(promoter_id__in=changed)
        .order_by("promoter_id", "effective_from", "id")
        .values_list("promoter_id", "effective_from", "rate")
    ):
        times, rates = history.setdefault(pk, ([], []))
        times.append(effective_from)
        rates.append(rate)

    def own_rates_at(received_at) -> dict:
        # The last rate from at or before ``received_at`` (before the first row: the first).
        return {pk: rates[max(bisect_right(times, received_at) - 1, 0)] for pk, (times, rates) in history.items()}

    bases, commissions, immediate = [], [], set()
    for event in credited:
        terms = terms_of[event.pk]
        facts, plans = _walk(rows, start_of[event.pk], limit_of[event.pk], own_rates_at(event.received_at) if history else None)
        bases.append(Basis(event=event, promoters=rules.facts_to_json(facts)))
        available_at = event.occurred_at + timedelta(days=terms.hold_days)
        commissions.extend(
            Commission(
                merchant_id=event.merchant_id,
                program_id=event.program_id,
                event=event,
                promoter_id=line.promoter_id,
                source_promoter_id=line.source_promoter_id,
                kind=line.kind,
                level=line.level,
                amount_minor=money.to_minor(line.amount, event.currency),
                currency=event.currency,
                base_minor=money.to_minor(line.base, event.currency),
                rate=line.rate,
                available_at=available_at,
                status=Commission.Status.HELD if event.pk in held else Commission.Status.PENDING,
            )
            for line in commission_lines(event, terms, credits_of[event.pk], facts)
        )
        # Every commission goes to a promoter among the facts, whose payout plan came with them.
        immediate.update(pk for pk, plan in plans.items() if plan == Promoter.PayoutPlan.IMMEDIATE)
    Basis.objects.bulk_create(bases)
    _write(commissions, immediate=immediate)


def commission_lines(event: ConversionEvent, terms: rules.Terms, credits, facts) -> list[rules.Line]:
    """The rules applied to an event's credits (also what the audit recomputes)."""
    customer_id = event.customer.external_id
    if event.type == ConversionEvent.Type.REGISTRATION:
        last = max(credits, key=lambda c: c.first_position).promoter_id
        return rules.registration_lines(last, customer_id=customer_id, promoters=facts, terms=terms)
    shares = [rules.ShareFact(c.promoter_id, money.from_minor(c.revenue_minor, event.currency)) for c in credits]
    return rules.purchase_lines(
        shares, first_purchase=event.stage == "first_purchase", customer_id=customer_id, promoters=facts, terms=terms
    )


def _process_refund(event: ConversionEvent) -> None:
    purchase = event.purchase
    # Refunds count in the order they were received, whatever order they are processed in.
    refunded = sum(ConversionEvent.objects.filter(purchase=purchase, pk__lte=event.pk).values_list("amount_minor", flat=True))
    completes = refunded >= purchase.amount_minor
    attribution.refund_credits_record(refund=event, purchase=purchase, completes_order=completes)
    originals = list(
        Commission.objects.select_for_update()
        .filter(event=purchase)
        .exclude(kind=Commission.Kind.REVERSAL)
        .exclude(status=Commission.Status.REJECTED)  # reversed in full in review already
        .order_by("id")
    )
    if not originals:
        return
    reversed_so_far: dict[int, int] = {}
    for parent_id, amount in Commission.objects.filter(reverses__in=originals).values_list("reverses_id", "amount_minor"):
        reversed_so_far[parent_id] = reversed_so_far.get(parent_id, 0) + amount
    currency = purchase.currency
    amounts = rules.reversal_amounts(
        [
            rules.CommissionFact(c.id, c.amount, money.from_minor(reversed_so_far.get(c.id, 0), currency))
            for c in originals
        ],
        refund=event.amount,
        order_amount=purchase.amount,
        completes_order=completes,
        currency=currency,
    )
    by_id = {c.id: c for c in originals}
    reversals = []
    for parent_id, amount in amounts:
        parent = by_id[parent_id]
        settled = parent.status not in (Commission.Status.PENDING, Commission.Status.HELD)
        reversals.append(
            Commission(
                merchant_id=event.merchant_id,
                program_id=parent.program_id,
                event=event,
                promoter_id=parent.promoter_id,
                source_promoter_id=parent.source_promoter_id,
                kind=Commission.Kind.REVERSAL,
                level=parent.level,
                amount_minor=money.to_minor(amount, currency),
                currency=currency,
                base_minor=parent.base_minor,
                rate=parent.rate,
                reverses=parent,
                # A reversal sits where its commission sits: in review or on hold with it, or
                # at once against available (a clawback when the commission was already paid).
                status=Commission.Status.APPROVED if settled else parent.status,
                approved_at=timezone.now() if settled else None,
                available_at=parent.available_at,
            )
        )
    _write(reversals)


def _write(commissions: list[Commission], *, immediate: frozenset[int] | set[int] = frozenset()) -> None:
    """Write commissions (of any events) and post them. ``immediate``: which of the
    promoters are paid at once (their payout plan came with their facts); a reversal
    sits where its commission sits, whatever the plan."""
    if not commissions:
        return
    now = timezone.now()
    for commission in commissions:
        if commission.status == Commission.Status.HELD:
            continue  # in review: neither pending nor approved until cleared
        if commission.kind != Commission.Kind.REVERSAL and (commission.promoter_id in immediate or commission.available_at <= now):
            commission.status = Commission.Status.APPROVED
            commission.approved_at = now
    Commission.objects.bulk_create(commissions)
    postings = []
    for (merchant_id, currency), group in _by_merchant_currency(commissions).items():
        accounts, expense = ledger.posting_accounts(merchant_id, currency, {c.promoter_id for c in group})
        for commission in group:
            if commission.kind == Commission.Kind.REVERSAL or commission.status == Commission.Status.HELD:
                postings.append(ledger.creation(commission, accounts, expense))
                continue
            # Every commission passes through pending, so the ledger tells the whole story.
            approved_now = commission.status == Commission.Status.APPROVED
            commission.status = Commission.Status.PENDING
            postings.append(ledger.creation(commission, accounts, expense))
            if approved_now:
                commission.status = Commission.Status.APPROVED
                postings.append(ledger.approval(commission, accounts))
    ledger.post(postings)
    listening = webhooks.endpoint_events({c.merchant_id for c in commissions})
    gains = [c for c in commissions if c.kind != Commission.Kind.REVERSAL]
    webhooks.emit_commissions(commissions=gains, event_type="commission.created", listening=listening)
    webhooks.emit_commissions(
        commissions=[c for c in commissions if c.kind == Commission.Kind.REVERSAL], event_type="commission.reversed", listening=listening
    )
    webhooks.emit_commissions(
        commissions=[c for c in gains if c.status == Commission.Status.APPROVED], event_type="commission.approved", listening=listening
    )


@transaction.atomic
def approve_due(*, now=None, limit: int = 50_000) -> int:
    """Approve pending commissions whose hold has ended (reversals move with theirs)."""
    now = now or timezone.now()
    if transaction.get_connection().vendor == "postgresql":
        return _approve_due_in_sql(now, limit)
    due = list(
        Commission.objects.select_for_update(skip_locked=True)
        .filter(status=Commission.Status.PENDING, available_at__lte=now)
        .order_by("id")[:limit]
    )
    return _approve(due, now)


def _approve_due_in_sql(now, limit: int) -> int:
    """``approve_due`` on PostgreSQL, set-based (a month-end approves a million): the database
    takes the same rows (oldest first, skipping those another approver holds), approves
    them and sums them per promoter; the approval journals are ``_approve``'s, one per
    promoter and run, in the order of each promoter's first commission."""
    table = transaction.get_connection().ops.quote_name(Commission._meta.db_table)
    with transaction.get_connection().cursor() as cursor:
        cursor.execute(
            f"WITH due AS (SELECT id FROM {table} WHERE status = %s AND available_at <= %s "
            f"ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED), "
            f"approved AS (UPDATE {table} AS c SET status = %s, approved_at = %s FROM due WHERE c.id = due.id "
            f"RETURNING c.id, c.merchant_id, c.currency, c.promoter_id, c.amount_minor) "
            f"SELECT merchant_id, currency, promoter_id, SUM(amount_minor), COUNT(*), ARRAY_AGG(id) "
            f"FROM approved GROUP BY merchant_id, currency, promoter_id ORDER BY MIN(id)",
            [Commission.Status.PENDING, now, limit, Commission.Status.APPROVED, now],
        )
        groups = cursor.fetchall()
    if not groups:
        return 0
    # _approve's postings are grouped by merchant and currency, in order of first appearance.
    first_seen = {}
    for merchant_id, currency, *_ in groups:
        first_seen.setdefault((merchant_id, currency), len(first_seen))
    groups.sort(key=lambda g: first_seen[(g[0], g[1])])
    ledger.post_moves([
        ledger.approval_move(merchant_id, currency, promoter_id, int(total), count)
        for merchant_id, currency, promoter_id, total, count, _ in groups
        if total
    ])
    ids_of: dict[int, list[int]] = {}
    for merchant_id, _, _, _, _, ids in groups:
        ids_of.setdefault(merchant_id, []).extend(ids)
    emit_approved(ids_of)
    return sum(count for *_, count, _ in groups)


def emit_approved(ids_of: dict[int, list[int]]) -> None:
    """``commission.approved`` for commissions approved set-based (their ids by merchant):
    loaded, in id order, only for the merchants that have an endpoint at all;
    ``emit_commissions`` then checks which events each endpoint takes."""
    listening = set(WebhookEndpoint.objects.filter(merchant_id__in=list(ids_of), active=True).values_list("merchant_id", flat=True))
    ids = sorted(pk for merchant_id in listening for pk in ids_of[merchant_id])
    for start in range(0, len(ids), 10000):
        webhooks.emit_commissions(
            commissions=list(Commission.objects.filter(pk__in=ids[start : start + 10000]).order_by("id")),
            event_type="commission.approved",
        )


@transaction.atomic
def commissions_approve(*, commission_ids, now=None) -> int:
    """Approve these pending commissions now, whatever their hold (finance's decision)."""
    now = now or timezone.now()
    due = list(Commission.objects.select_for_update().filter(pk__in=commission_ids, status=Commission.Status.PENDING).order_by("id"))
    return _approve(due, now)


def _approve(due: list[Commission], now) -> int:
    if not due:
        return 0
    postings = []
    for (merchant_id, currency), group in _by_merchant_currency(due).items():
        accounts = ledger.promoter_accounts(merchant_id, currency, {c.promoter_id for c in group})
        per_promoter: dict[int, list[int]] = {}
        for commission in group:
            per_promoter.setdefault(commission.promoter_id, []).append(commission.amount_minor)
        # One journal per promoter and run: a month-end approves a million commissions.
        for promoter_id, amounts in per_promoter.items():
            if sum(amounts):
                postings.append(ledger.approval_of_many(merchant_id, promoter_id, sum(amounts), len(amounts), accounts))
    ledger.post(postings)
    ids = [c.pk for c in due]
    for start in range(0, len(ids), 10000):
        Commission.objects.filter(pk__in=ids[start : start + 10000]).update(status=Commission.Status.APPROVED, approved_at=now)
    for commission in due:
        commission.status, commission.approved_at = Commission.Status.APPROVED, now
    webhooks.emit_commissions(commissions=due, event_type="commission.approved")
    return len(due)



@transaction.atomic
def commissions_mark_paid(*, commission_ids, now=None) -> int:
    """Record approved commissions as paid out: available → paid, one journal each."""
    now = now or timezone.now()
    paid = list(
        Commission.objects.select_for_update().filter(pk__in=commission_ids, status=Commission.Status.APPROVED).order_by("id")
    )
    if not paid:
        return 0
    postings = []
    for (merchant_id, currency), group in _by_merchant_currency(paid).items():
        accounts = ledger.promoter_accounts(merchant_id, currency, {c.promoter_id for c in group})
        postings.extend(ledger.payout(c, accounts) for c in group)
    ledger.post(postings)
    Commission.objects.filter(pk__in=[c.pk for c in paid]).update(status=Commission.Status.PAID, paid_at=now)
    return len(paid)


def _by_merchant_currency(commissions: list[Commission]) -> dict[tuple[int, str], list[Commission]]:
    groups: dict[tuple[int, str], list[Commission]] = {}
    for commission in commissions:
        groups.setdefault((commission.merchant_id, commission.currency), []).append(commission)
    return groups
