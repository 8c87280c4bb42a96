"""The month-end's set-based writes (PostgreSQL) and their plain counterparts (SQLite) leave
exactly the same journals, entries, balances and statements: every assertion here runs on
both, and pins what the close writes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.conf import settings
from django.db import connection

from affiliate import services as affiliate_services
from payouts import ledger
from payouts.audit import audit_ledger
from payouts.closing import close_month
from payouts.models import Account, Commission, Entry, Journal, PayoutLine, PayoutPolicy, Statement, WebhookDelivery
from payouts.statements import LedgerMismatch, statement_figures, statements_write_all
from payouts.webhooks import webhook_endpoint_create
from tests.payouts.world import World

pytestmark = pytest.mark.django_db

SEPT = "2026-09"


def balances(promoter) -> dict[str, int]:
    return dict(Account.objects.filter(promoter=promoter).values_list("kind", "balance_minor"))


def journals_of(promoter, *kinds) -> list[tuple[str, str, list[tuple[str, int]]]]:
    """(kind, memo, [(account kind, amount), ...]) of the journals touching the promoter."""
    out = []
    for journal in Journal.objects.filter(entries__account__promoter=promoter, kind__in=kinds).distinct().order_by("id"):
        lines = [(e.account.kind, e.amount_minor) for e in journal.entries.select_related("account").order_by("id")]
        out.append((journal.kind, journal.memo, lines))
    return out


@pytest.fixture
def september(django_capture_on_commit_callbacks):
    """P (sponsor S) sells 1,000.00 (a first purchase, 10%) and 300.00 (a repeat, 5%) in
    September; G sells 100.00. Hold 30 days: all of it is due on 10 October. P's 115.00 and
    S's 65.00 reach the 50.00 minimum; G's 10.00 does not."""
    with time_machine.travel("2026-09-01T08:00:00Z", tick=True):
        w = World(django_capture_on_commit_callbacks, hold_days=30, tier_rates=["0.05"])
        PayoutPolicy.objects.update_or_create(program=w.program, defaults={"minimum_payout_minor": 5000})
        s = w.promoter("S")
        p = w.promoter("P", sponsor=s)
        g = w.promoter("G")
    with time_machine.travel("2026-09-10T12:00:00Z", tick=True) as clock:
        click_p = w.journey((p, affiliate_services.timezone.now()))
        click_g = w.journey((g, affiliate_services.timezone.now()))
        clock.shift(60)
        w.send(type="purchase", customer_id="c1", order_id="o1", amount="1000.00", click_id=click_p)
        w.send(type="purchase", customer_id="c1", order_id="o2", amount="300.00")
        w.send(type="purchase", customer_id="c2", order_id="o3", amount="100.00", click_id=click_g)
    return w, p, s, g


def test_the_close_approves_what_is_due_with_the_batch_that_claims_it(september, settings):
    settings.DEBUG = True  # plain-http localhost endpoint
    w, p, s, g = september
    endpoint, _ = webhook_endpoint_create(merchant=w.merchant, url="http://127.0.0.1:9/hook", events=["commission.approved"])
    with time_machine.travel("2026-10-15T03:00:00Z", tick=True):
        result = close_month(merchant=w.merchant, period=SEPT)
    assert result.clean, result.report["differences"]
    assert result.approved == 5 == Commission.objects.filter(status="approved").count()
    lines = {line.promoter_id: line for line in PayoutLine.objects.all()}
    assert {pid: line.amount_minor for pid, line in lines.items()} == {p.pk: 11500, s.pk: 6500}
    # Every commission of a promoter with a line is in it; G's is approved, in no line.
    assert set(Commission.objects.filter(promoter=p).values_list("payout_line_id", flat=True)) == {lines[p.pk].pk}
    assert Commission.objects.get(promoter=g).payout_line_id is None
    # One approval journal per promoter for all that came out of hold, then the line's lock.
    assert journals_of(p, "approval", "batch_lock") == [
        ("approval", "hold ended: 2 commission(s)", [("pending", -11500), ("available", 11500)]),
        ("batch_lock", f"batch {lines[p.pk].batch_id} line {lines[p.pk].pk}", [("available", -11500), ("processing", 11500)]),
    ]
    assert journals_of(g, "approval", "batch_lock") == [
        ("approval", "hold ended: 1 commission(s)", [("pending", -1000), ("available", 1000)]),
    ]
    assert balances(p) == {"held": 0, "pending": 0, "available": 0, "processing": 11500, "paid": 0}
    assert balances(s) == {"held": 0, "pending": 0, "available": 0, "processing": 6500, "paid": 0}
    assert balances(g) == {"held": 0, "pending": 0, "available": 1000, "processing": 0, "paid": 0}
    # A webhook for every commission approved, as approve_due sends them.
    assert sorted(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("event_id", flat=True)) == sorted(
        f"commission.approved:{pk}" for pk in Commission.objects.values_list("id", flat=True)
    )
    assert audit_ledger().clean


def test_each_line_keeps_its_promoters_payout_method_as_it_was(september):
    from payouts.batches import method_snapshot
    from payouts.methods import payout_method_set

    w, p, s, g = september
    method = payout_method_set(
        promoter=p, kind="bank", changed_by="x", account_holder='Anna "Q" Müller \\', iban="DE89370400440532013000",
    )
    with time_machine.travel("2026-10-15T03:00:00Z", tick=True):
        close_month(merchant=w.merchant, period=SEPT)
    payout_method_set(promoter=p, kind="paypal", changed_by="x", paypal_email="later@example.com")
    lines = {line.promoter_id: line.method for line in PayoutLine.objects.all()}
    assert lines == {p.pk: method_snapshot(method), s.pk: {"kind": "manual"}}
    assert lines[p.pk]["account_holder"] == 'Anna "Q" Müller \\' and lines[p.pk]["kind"] == "bank"


def test_post_moves_writes_what_post_writes(september):
    """Accounts created when missing, one journal a move in order, source then target, a
    zero move a journal without entries, memos kept as they are."""
    w, p, s, g = september
    new = w.promoter("N")  # no account yet
    before = {x.pk: balances(x) for x in (p, s)}
    memo = 'quote " and backslash \\ {braces}, commas'
    ledger.post_moves([
        ledger.Move(w.merchant.pk, "USD", p.pk, 700, memo, "approval", "pending", "available"),
        ledger.Move(w.merchant.pk, "USD", new.pk, 0, "nothing", "approval", "pending", "available"),
        ledger.Move(w.merchant.pk, "USD", s.pk, 200, "lock", "batch_lock", "pending", "processing"),
        ledger.Move(w.merchant.pk, "USD", p.pk, 300, "again", "batch_lock", "available", "processing"),
    ])
    journals = list(Journal.objects.order_by("-id")[:4])[::-1]
    assert [(j.kind, j.memo, j.commission_id) for j in journals] == [
        ("approval", memo, None), ("approval", "nothing", None), ("batch_lock", "lock", None), ("batch_lock", "again", None),
    ]
    entries = [
        (e.journal_id, e.account.promoter_id, e.account.kind, e.amount_minor)
        for e in Entry.objects.filter(journal__in=journals).select_related("account").order_by("id")
    ]
    j = [journal.pk for journal in journals]
    assert entries == [
        (j[0], p.pk, "pending", -700), (j[0], p.pk, "available", 700),
        (j[2], s.pk, "pending", -200), (j[2], s.pk, "processing", 200),
        (j[3], p.pk, "available", -300), (j[3], p.pk, "processing", 300),
    ]
    assert balances(new) == {"held": 0, "pending": 0, "available": 0, "processing": 0, "paid": 0}
    moved_p = {"held": 0, "pending": -700, "available": 400, "processing": 300, "paid": 0}
    assert balances(p) == {k: before[p.pk][k] + moved_p[k] for k in moved_p}
    assert balances(s) == {**before[s.pk], "pending": before[s.pk]["pending"] - 200, "processing": 200}
    # The journals balance and the running balances follow; only the commissions disagree.
    assert audit_ledger(recompute=False).differences == [
        f"promoter {s.pk} pending: commissions say 65.00, the ledger says 63.00",
        f"promoter {s.pk} processing: commissions say 0.00, the ledger says 2.00",
        f"promoter {p.pk} available: commissions say 0.00, the ledger says 4.00",
        f"promoter {p.pk} pending: commissions say 115.00, the ledger says 108.00",
        f"promoter {p.pk} processing: commissions say 0.00, the ledger says 3.00",
    ]


def test_statements_written_at_once_are_the_ones_written_one_by_one(september):
    w, p, s, g = september
    with time_machine.travel("2026-10-15T03:00:00Z", tick=True):
        close_month(merchant=w.merchant, period=SEPT)
    Statement.objects.all().delete()
    assert statements_write_all(merchant_id=w.merchant.pk, period=SEPT, promoter_ids=[p.pk, g.pk]) == 2
    assert statements_write_all(merchant_id=w.merchant.pk, period=SEPT) == 1  # S's; the others stay
    assert statements_write_all(merchant_id=w.merchant.pk, period=SEPT) == 0
    for frozen in Statement.objects.select_related("promoter__program"):
        assert frozen.figures == statement_figures(frozen.promoter, SEPT)["minor"]
    assert Statement.objects.get(promoter=p).figures == {
        "opening": 0, "direct": 11500, "override": 0, "bounty": 0, "reversals": 0, "topups": 0, "bonuses": 0,
        "payouts": 0, "closing": 11500, "closing_pending": 11500, "closing_available": 0, "paid_to_date": 0,
    }


def test_a_statement_that_would_not_match_the_ledger_is_never_written(september):
    w, p, s, g = september
    # An approval that only adds: the moves between S's owed accounts do not net to zero.
    at = datetime(2026, 9, 20, tzinfo=UTC)
    journal = Journal.objects.create(merchant=w.merchant, kind="approval", created_at=at)
    Entry.objects.create(journal=journal, account=Account.objects.get(promoter=s, kind="available"), amount_minor=100, created_at=at)
    with pytest.raises(LedgerMismatch) as raised:
        statements_write_all(merchant_id=w.merchant.pk, period=SEPT)
    assert str(raised.value) == f"moves between owed accounts of promoter {s.pk} in {SEPT} do not net to zero"
    assert Statement.objects.count() == 0


needs_postgres = pytest.mark.skipif(not settings.IS_POSTGRES, reason="PostgreSQL array literals")


@needs_postgres
@pytest.mark.postgres
def test_array_literals_round_trip():
    values = ["plain", 'with "quotes"', "back\\slash", "{braces},commas", "", "ünïcode", "NULL"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::varchar[], %s::bigint[]", [ledger.array_literal(values), ledger.array_literal([1, -2, 3])])
        assert cursor.fetchone() == (values, [1, -2, 3])
