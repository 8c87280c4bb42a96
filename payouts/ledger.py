"""Posting to the double-entry ledger: balanced journals, running balances by ``F()``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from django.db import connection
from django.db.models import F, Q
from django.utils import timezone

from .models import Account, Commission, Entry, Journal


@dataclass
class Posting:
    journal: Journal
    lines: list[tuple[Account, int]] = field(default_factory=list)


class UnbalancedJournal(ValueError):
    pass


# The promoter accounts a commission may be posted to (held: in review).
POSTING_KINDS = (Account.Kind.HELD, Account.Kind.PENDING, Account.Kind.AVAILABLE, Account.Kind.PROCESSING, Account.Kind.PAID)


def promoter_accounts(merchant_id: int, currency: str, promoter_ids: Iterable[int]) -> dict[tuple[int, str], Account]:
    """The pending/available/processing/paid accounts of these promoters, created when missing."""
    ids = set(promoter_ids)
    if not ids:
        return {}
    kinds = POSTING_KINDS

    def load():
        return {
            (a.promoter_id, a.kind): a
            for a in Account.objects.filter(promoter_id__in=ids, currency=currency, kind__in=kinds)
        }

    accounts = load()
    missing = [
        Account(merchant_id=merchant_id, promoter_id=p, kind=k, currency=currency)
        for p in ids
        for k in kinds
        if (p, k) not in accounts
    ]
    if missing:
        Account.objects.bulk_create(missing, ignore_conflicts=True)
        accounts = load()
    return accounts


def expense_account(merchant_id: int, currency: str) -> Account:
    account = Account.objects.filter(merchant_id=merchant_id, promoter__isnull=True, kind=Account.Kind.EXPENSE, currency=currency).first()
    if account is None:
        Account.objects.bulk_create(
            [Account(merchant_id=merchant_id, kind=Account.Kind.EXPENSE, currency=currency, tracks_balance=False)],
            ignore_conflicts=True,
        )
        account = Account.objects.get(merchant_id=merchant_id, promoter__isnull=True, kind=Account.Kind.EXPENSE, currency=currency)
    return account


def posting_accounts(merchant_id: int, currency: str, promoter_ids: Iterable[int]) -> tuple[dict[tuple[int, str], Account], Account]:
    """``promoter_accounts`` and ``expense_account`` together: one query when they all exist."""
    ids = set(promoter_ids)
    kinds = POSTING_KINDS
    accounts: dict[tuple[int, str], Account] = {}
    expense = None
    rows = Account.objects.filter(
        Q(promoter_id__in=ids, currency=currency, kind__in=kinds)
        | Q(merchant_id=merchant_id, promoter__isnull=True, kind=Account.Kind.EXPENSE, currency=currency)
    )
    for account in rows:
        if account.promoter_id is None:
            expense = account
        else:
            accounts[(account.promoter_id, account.kind)] = account
    if len(accounts) < len(ids) * len(kinds):
        accounts = promoter_accounts(merchant_id, currency, ids)
    if expense is None:
        expense = expense_account(merchant_id, currency)
    return accounts, expense


def post(postings: list[Posting]) -> None:
    """Write journals and entries, then move running balances: one ``F()`` update per
    account, in account order so that concurrent posters cannot deadlock."""
    if not postings:
        return
    for posting in postings:
        if sum(amount for _, amount in posting.lines) != 0:
            raise UnbalancedJournal(f"{posting.journal.kind} journal does not balance: {posting.lines}")
    journals = Journal.objects.bulk_create([p.journal for p in postings], batch_size=5000)
    now = timezone.now()
    entries = []
    deltas: dict[int, int] = defaultdict(int)
    for journal, posting in zip(journals, postings, strict=True):
        for account, amount in posting.lines:
            if amount == 0:
                continue
            entries.append(Entry(journal=journal, account=account, amount_minor=amount, created_at=now))
            if account.tracks_balance:
                deltas[account.pk] += amount
    Entry.objects.bulk_create(entries, batch_size=10000)
    _move_balances({k: v for k, v in deltas.items() if v})


def _move_balances(deltas: dict[int, int]) -> None:
    """Add each delta to its account's running balance. On PostgreSQL the rows are locked in
    account order first, so that concurrent posters cannot deadlock, and then moved in one
    statement (per thousand accounts: a month-end batch moves many); elsewhere one ``F()``
    update per account, in account order."""
    ordered = sorted(deltas.items())
    if len(ordered) > 1 and connection.vendor == "postgresql":
        table = connection.ops.quote_name(Account._meta.db_table)
        with connection.cursor() as cursor:
            for start in range(0, len(ordered), 1000):
                chunk = ordered[start : start + 1000]
                cursor.execute(
                    f"SELECT id FROM {table} WHERE id = ANY(%s) ORDER BY id FOR UPDATE", [[pk for pk, _ in chunk]]
                )
                values = ", ".join(["(%s::bigint, %s::bigint)"] * len(chunk))
                cursor.execute(
                    f"UPDATE {table} AS a SET balance_minor = a.balance_minor + v.delta "
                    f"FROM (VALUES {values}) AS v(id, delta) WHERE a.id = v.id",
                    [x for pair in chunk for x in pair],
                )
        return
    for account_id, delta in ordered:
        Account.objects.filter(pk=account_id).update(balance_minor=F("balance_minor") + delta)


def approval_of_many(merchant_id: int, promoter_id: int, amount: int, count: int, accounts: dict) -> Posting:
    """One journal for all of a promoter's commissions whose hold ended in one run."""
    return Posting(
        Journal(merchant_id=merchant_id, kind=Journal.Kind.APPROVAL, memo=f"hold ended: {count} commission(s)"),
        [
            (accounts[(promoter_id, Account.Kind.PENDING)], -amount),
            (accounts[(promoter_id, Account.Kind.AVAILABLE)], amount),
        ],
    )


def sits_in(commission: Commission) -> str:
    """The promoter account a commission's money is in: held while in review, pending until
    approved, then available (a paid commission's clawback comes out of available too)."""
    if commission.status == Commission.Status.HELD:
        return Account.Kind.HELD
    return Account.Kind.PENDING if commission.status == Commission.Status.PENDING else Account.Kind.AVAILABLE


def review_cleared(commission: Commission, accounts: dict) -> Posting:
    """A held commission (or a held reversal) cleared in review: held → pending."""
    return Posting(
        Journal(merchant_id=commission.merchant_id, kind=Journal.Kind.REVIEW_CLEARED, commission=commission, memo="cleared in review"),
        [
            (accounts[(commission.promoter_id, Account.Kind.HELD)], -commission.amount_minor),
            (accounts[(commission.promoter_id, Account.Kind.PENDING)], commission.amount_minor),
        ],
    )


def review_rejected(reversal: Commission, accounts: dict, expense: Account) -> Posting:
    """The reversal of a commission rejected in review: what was left of it goes from held
    back to the merchant's expense account."""
    return Posting(
        Journal(merchant_id=reversal.merchant_id, kind=Journal.Kind.REVIEW_REJECTED, commission=reversal, memo=f"rejected in review, event {reversal.event_id}"),
        [(accounts[(reversal.promoter_id, Account.Kind.HELD)], reversal.amount_minor), (expense, -reversal.amount_minor)],
    )


def creation(commission: Commission, accounts: dict, expense: Account) -> Posting:
    kind = {
        Commission.Kind.REVERSAL: Journal.Kind.REVERSAL,
    }.get(commission.kind, Journal.Kind.COMMISSION)
    if commission.kind == Commission.Kind.REVERSAL and commission.reverses.status == Commission.Status.PAID:
        kind = Journal.Kind.CLAWBACK
    account = accounts[(commission.promoter_id, sits_in(commission))]
    return Posting(
        Journal(merchant_id=commission.merchant_id, kind=kind, commission=commission, memo=f"{commission.kind} on event {commission.event_id}"),
        [(account, commission.amount_minor), (expense, -commission.amount_minor)],
    )


def approval(commission: Commission, accounts: dict) -> Posting:
    return Posting(
        Journal(merchant_id=commission.merchant_id, kind=Journal.Kind.APPROVAL, commission=commission, memo="hold ended"),
        [
            (accounts[(commission.promoter_id, Account.Kind.PENDING)], -commission.amount_minor),
            (accounts[(commission.promoter_id, Account.Kind.AVAILABLE)], commission.amount_minor),
        ],
    )


def payout(commission: Commission, accounts: dict) -> Posting:
    return Posting(
        Journal(merchant_id=commission.merchant_id, kind=Journal.Kind.PAYOUT, commission=commission, memo="paid out"),
        [
            (accounts[(commission.promoter_id, Account.Kind.AVAILABLE)], -commission.amount_minor),
            (accounts[(commission.promoter_id, Account.Kind.PAID)], commission.amount_minor),
        ],
    )


PROMOTER_KINDS = POSTING_KINDS


def array_literal(values) -> str:
    """A PostgreSQL array literal (``'{1,2,3}'``, ``'{"a b","c"}'``) for ints or strings, to
    be cast in the query (``%s::bigint[]``). psycopg adapts a long Python list element by
    element; a month-end passes lists of a few hundred thousand."""
    values = list(values)
    try:  # ints only (the usual case): joined at C speed
        return "{" + ",".join(map(int.__repr__, values)) + "}"
    except TypeError:
        pass
    quoted: dict = {}  # a month-end's strings repeat (currencies, kinds, memos)

    def element(value) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, int):
            return str(value)
        return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'

    return "{" + ",".join([quoted[v] if v in quoted else quoted.setdefault(v, element(v)) for v in values]) + "}"


class Move(NamedTuple):
    """A journal that takes ``amount`` out of a promoter's ``source`` account into its
    ``target`` account (an approval, a batch lock)."""

    merchant_id: int
    currency: str
    promoter_id: int
    amount: int
    memo: str
    kind: str
    source: str
    target: str


def approval_move(merchant_id: int, currency: str, promoter_id: int, amount: int, count: int) -> Move:
    """``approval_of_many`` as a ``Move``: pending → available for a promoter's ``count``
    commissions whose hold ended in one run."""
    return Move(
        merchant_id, currency, promoter_id, amount, f"hold ended: {count} commission(s)",
        Journal.Kind.APPROVAL, Account.Kind.PENDING, Account.Kind.AVAILABLE,
    )


def post_moves(moves: list[Move]) -> None:
    """Many moves between a promoter's own accounts, one journal each, in the order given. A
    month-end posts a couple of hundred thousand (approvals, batch locks): on PostgreSQL
    they are written by a few set-based statements, elsewhere by ``post``. The same
    journals, entries and balances either way."""
    if not moves:
        return
    if connection.vendor != "postgresql":
        wanted: dict[tuple[int, str], set[int]] = {}
        for move in moves:
            wanted.setdefault((move.merchant_id, move.currency), set()).add(move.promoter_id)
        accounts = {key: promoter_accounts(key[0], key[1], ids) for key, ids in wanted.items()}
        post([
            Posting(
                Journal(merchant_id=m.merchant_id, kind=m.kind, memo=m.memo[:200]),
                [
                    (accounts[(m.merchant_id, m.currency)][(m.promoter_id, m.source)], -m.amount),
                    (accounts[(m.merchant_id, m.currency)][(m.promoter_id, m.target)], m.amount),
                ],
            )
            for m in moves
        ])
        return
    qn = connection.ops.quote_name
    journals, entries, accounts_table = (qn(model._meta.db_table) for model in (Journal, Entry, Account))
    merchants, currencies, promoters, amounts, memos, kinds, sources, targets = (list(column) for column in zip(*moves, strict=True))
    now = timezone.now()
    with connection.cursor() as cursor:
        # The promoters' accounts, created when missing (as promoter_accounts does).
        cursor.execute(
            f"INSERT INTO {accounts_table} (merchant_id, promoter_id, kind, currency, balance_minor, tracks_balance) "
            f"SELECT m.merchant_id, m.promoter_id, k.kind, m.currency, 0, TRUE "
            f"FROM (SELECT DISTINCT * FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[])) AS m(merchant_id, promoter_id, currency) "
            f"CROSS JOIN unnest(%s::varchar[]) AS k(kind) "
            f"WHERE NOT EXISTS (SELECT 1 FROM {accounts_table} a "
            f"WHERE a.promoter_id = m.promoter_id AND a.kind = k.kind AND a.currency = m.currency) "
            f"ON CONFLICT DO NOTHING",
            [array_literal(merchants), array_literal(promoters), array_literal(currencies), list(PROMOTER_KINDS)],
        )
        # Journal ids drawn first, so that each journal's entries can name it.
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [Journal._meta.db_table, len(moves)],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
        cursor.execute(
            f"INSERT INTO {journals} (id, merchant_id, kind, commission_id, memo, created_at) "
            f"SELECT j.id, j.merchant_id, j.kind, NULL, j.memo, %s "
            f"FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[]) WITH ORDINALITY "
            f"AS j(id, merchant_id, kind, memo, n) ORDER BY j.n",
            [now, array_literal(ids), array_literal(merchants), array_literal(kinds), array_literal(memo[:200] for memo in memos)],
        )
        # Two entries a journal, source then target, as post writes them; zero moves nothing.
        cursor.execute(
            f"INSERT INTO {entries} (journal_id, account_id, amount_minor, created_at) "
            f"SELECT m.journal_id, a.id, s.amount, %s "
            f"FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::bigint[], %s::varchar[], %s::varchar[]) "
            f"WITH ORDINALITY AS m(journal_id, promoter_id, currency, amount, source, target, n) "
            f"CROSS JOIN LATERAL (VALUES (1, m.source, -m.amount), (2, m.target, m.amount)) AS s(line, kind, amount) "
            f"JOIN {accounts_table} a ON a.promoter_id = m.promoter_id AND a.currency = m.currency AND a.kind = s.kind "
            f"WHERE m.amount <> 0 ORDER BY m.n, s.line "
            f"RETURNING account_id, amount_minor",
            [now, *map(array_literal, (ids, promoters, currencies, amounts, sources, targets))],
        )
        deltas: dict[int, int] = defaultdict(int)
        for account_id, amount in cursor.fetchall():
            deltas[account_id] += amount
        moved = sorted((account_id, delta) for account_id, delta in deltas.items() if delta)
        if not moved:
            return
        # Running balances: the rows locked in account order first (as _move_balances does,
        # so that concurrent posters cannot deadlock), then moved in one statement.
        account_ids = [account_id for account_id, _ in moved]
        cursor.execute(
            f"SELECT id FROM {accounts_table} WHERE id = ANY(%s::bigint[]) ORDER BY id FOR UPDATE", [array_literal(account_ids)]
        )
        cursor.execute(
            f"UPDATE {accounts_table} AS a SET balance_minor = a.balance_minor + v.delta "
            f"FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, delta) WHERE a.id = v.id",
            [array_literal(account_ids), array_literal(delta for _, delta in moved)],
        )
