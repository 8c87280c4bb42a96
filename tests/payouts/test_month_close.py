"""Batches, exports, statements, plans and the month-end close, with hand-worked figures."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from affiliate import services as affiliate_services
from payouts import batches, exports
from payouts.audit import audit_ledger
from payouts.closing import close_month, reconciliation
from payouts.models import (
    Adjustment,
    Commission,
    MonthClose,
    PayoutBatch,
    PayoutLine,
    PayoutMethod,
    PayoutPolicy,
    Statement,
)
from payouts.plans import MonthFacts, plan_amounts
from payouts.statements import statement_csv, statement_figures, statement_pdf
from tests.payouts.world import World

pytestmark = pytest.mark.django_db

SEPT = "2026-09"


@pytest.fixture
def september(django_capture_on_commit_callbacks):
    """P (sponsor S) sells 1,000.00 on 10 September; 200.00 is refunded on 20 September.
    P: +100.00 −20.00 = 80.00; S: +50.00 −10.00 = 40.00. G, on the guaranteed plan, sells
    100.00: 10.00. Hold 30 days from the sale: everything is due on 10 October."""
    with time_machine.travel("2026-09-01T08:00:00Z", tick=True):
        w = World(django_capture_on_commit_callbacks, hold_days=30, tier_rates=["0.05"])
        PayoutPolicy.objects.update_or_create(
            program=w.program,
            defaults={
                "minimum_payout_minor": 5000, "guaranteed_minimum_minor": 2500, "guaranteed_months": 3,
                "activity_min_clicks": 1, "activity_min_conversions": 1,
                "bonus_revenue_threshold_minor": 5000, "bonus_rate": "0.02",
            },
        )
        s = w.promoter("S")
        p = w.promoter("P", sponsor=s)
        g = w.promoter("G", payout_plan="guaranteed")
    with time_machine.travel("2026-09-10T12:00:00Z", tick=True) as clock:
        click_p = w.journey((p, affiliate_services.timezone.now()))
        click_g = w.journey((g, affiliate_services.timezone.now()))
        clock.shift(60)
        w.send(type="purchase", customer_id="c1", order_id="o1", amount="1000.00", click_id=click_p)
        w.send(type="purchase", customer_id="c2", order_id="o2", amount="100.00", click_id=click_g)
    with time_machine.travel("2026-09-20T12:00:00Z", tick=True):
        w.send(type="refund", customer_id="c1", order_id="o1", amount="200.00")
    return w, p, s, g


def close(w, when="2026-10-15T03:00:00Z"):
    with time_machine.travel(when, tick=True):
        return close_month(merchant=w.merchant, period=SEPT)


def test_close_approves_applies_plans_builds_the_batch_and_writes_statements(september):
    w, p, s, g = september
    result = close(w)
    assert result.approved == 5  # P's direct, S's override, G's direct and the two reversals
    # G: earned 10.00 < 25.00 with 1 click and 1 purchase → top-up 15.00; revenue 100.00 >
    # 50.00 → bonus 2% = 2.00. G's payable 27.00 is under the 50.00 minimum: no line.
    assert sorted(Adjustment.objects.values_list("promoter__name", "kind", "amount_minor")) == [("G", "bonus", 200), ("G", "topup", 1500)]
    # P 80.00 ≥ 50.00: one line; S 40.00 < 50.00 waits.
    line = PayoutLine.objects.get()
    assert (line.promoter_id, line.amount_minor, line.status) == (p.pk, 8000, "pending")
    assert result.lines == 1 and result.payable_minor == {"USD": 8000}
    # Balances: P's 80.00 is locked in the batch but still "available" to the contract.
    assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "80.00", "paid": "0.00"}
    assert w.balance(s) == {"currency": "USD", "pending": "0.00", "available": "40.00", "paid": "0.00"}
    assert w.balance(g) == {"currency": "USD", "pending": "0.00", "available": "27.00", "paid": "0.00"}
    # September statements (booked in September: the sale and the refund).
    statement = Statement.objects.get(promoter=p, period=SEPT)
    assert {k: statement.figures[k] for k in ("opening", "direct", "override", "reversals", "payouts", "closing")} == {
        "opening": 0, "direct": 10000, "override": 0, "reversals": -2000, "payouts": 0, "closing": 8000,
    }
    assert (statement.figures["closing_pending"], statement.figures["closing_available"]) == (8000, 0)
    s_statement = Statement.objects.get(promoter=s, period=SEPT)
    assert (s_statement.figures["override"], s_statement.figures["reversals"], s_statement.figures["closing"]) == (5000, -1000, 4000)
    assert result.statements_written == 3
    # The month-end writes them all at once; each matches the one-promoter computation.
    for frozen in Statement.objects.select_related("promoter__program"):
        assert frozen.figures == statement_figures(frozen.promoter, SEPT)["minor"]
    assert result.clean, result.report["differences"]
    assert result.report["events"]["purchases_minor"] == 110000
    assert result.report["events"]["refunds_minor"] == 20000
    assert result.report["payouts"] == {"lines": 1, "total_minor": 8000}
    assert audit_ledger().clean


def test_closing_twice_changes_nothing(september):
    w, p, s, g = september
    close(w)
    picture = (
        list(Commission.objects.order_by("id").values_list("status", "payout_line_id")),
        list(PayoutLine.objects.values_list("id", "amount_minor")),
        Statement.objects.count(), Adjustment.objects.count(), PayoutBatch.objects.count(), MonthClose.objects.count(),
    )
    again = close(w, when="2026-10-16T03:00:00Z")
    assert again.already_closed is True
    assert (again.approved, again.lines, again.statements_written) == (0, 0, 0)
    assert picture == (
        list(Commission.objects.order_by("id").values_list("status", "payout_line_id")),
        list(PayoutLine.objects.values_list("id", "amount_minor")),
        Statement.objects.count(), Adjustment.objects.count(), PayoutBatch.objects.count(), MonthClose.objects.count(),
    )


def test_an_open_month_cannot_be_closed(september):
    w = september[0]
    with time_machine.travel("2026-09-25T00:00:00Z", tick=True), pytest.raises(ValueError, match="has not ended yet"):
        close_month(merchant=w.merchant, period=SEPT)


def test_paying_and_failing_lines(september):
    w, p, s, g = september
    close(w)
    line = PayoutLine.objects.get()
    with pytest.raises(batches.BatchError, match="Say why"):
        batches.lines_settle(line_ids=[line.pk], paid=False)
    assert batches.lines_settle(line_ids=[line.pk], paid=False, reason="IBAN closed") == 1
    line.refresh_from_db()
    assert (line.status, line.failure_reason) == ("failed", "IBAN closed")
    assert Commission.objects.filter(payout_line__isnull=False).count() == 0  # back to available, unlocked
    assert w.balance(p)["available"] == "80.00"
    # The next batch takes the money again (S's 40.00 is still under the 50.00 minimum).
    again = batches.batch_build(merchant=w.merchant, currency="USD")
    new_line = again.batch.lines.get()
    assert (new_line.promoter_id, new_line.amount_minor) == (p.pk, 8000)
    assert batches.lines_settle(line_ids=[new_line.pk], paid=True) == 1
    assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "0.00", "paid": "80.00"}
    assert set(Commission.objects.filter(promoter=p).values_list("status", flat=True)) == {"paid"}
    assert PayoutBatch.objects.get(pk=again.batch.pk).status == "closed"
    assert batches.lines_settle(line_ids=[new_line.pk], paid=True) == 0  # settling twice does nothing
    assert audit_ledger().clean


def test_exports(september):
    w, p, s, g = september
    PayoutMethod.objects.create(promoter=p, kind="paypal", paypal_email="p@example.com")
    close(w)
    line = PayoutLine.objects.get()
    batch = line.batch
    rows = list(csv.reader(io.StringIO(exports.batch_csv(batch))))
    assert rows == [
        exports.CSV_COLUMNS,
        [str(batch.pk), str(line.pk), f"AFF-{batch.pk}-{line.pk}", str(p.pk), "P", p.email, "80.00", "USD", "paypal", "p@example.com", "", "", "", "pending"],
    ]
    assert json.loads(exports.paypal_payouts(batch)) == {
        "sender_batch_header": {"sender_batch_id": f"AFF-{batch.pk}", "email_subject": "You have a payout", "email_message": "Your commissions have been paid."},
        "items": [{"recipient_type": "EMAIL", "receiver": "p@example.com", "amount": {"value": "80.00", "currency": "USD"}, "note": f"Commissions, batch {batch.pk}", "sender_item_id": f"AFF-{batch.pk}-{line.pk}"}],
    }
    with pytest.raises(exports.ExportError, match="EUR only"):
        exports.sepa_credit_transfer(batch)


def test_sepa_credit_transfer_validates(django_capture_on_commit_callbacks):
    from datetime import date

    w = World(django_capture_on_commit_callbacks, currency="EUR", hold_days=0, tier_rates=[])
    PayoutPolicy.objects.update_or_create(
        program=w.program, defaults={"minimum_payout_minor": 100, "payer_name": "Acme GmbH", "payer_iban": "DE89370400440532013000", "payer_bic": "COBADEFFXXX"}
    )
    p = w.promoter("Paula")
    PayoutMethod.objects.create(promoter=p, kind="bank", account_holder="Paula Müller", iban="FR1420041010050500013M02606")
    w.send(type="purchase", customer_id="c1", order_id="o1", amount="123.45", click_id=w.journey((p, affiliate_services.timezone.now())))
    built = batches.batch_build(merchant=w.merchant, currency="EUR")
    line = built.batch.lines.get()
    assert line.amount_minor == 1235  # 12.345 → 12.35
    xml = exports.sepa_credit_transfer(built.batch, execution_date=date(2026, 12, 1)).decode()
    assert "<IBAN>FR1420041010050500013M02606</IBAN>" in xml
    assert "<IBAN>DE89370400440532013000</IBAN>" in xml
    assert '<InstdAmt Ccy="EUR">12.35</InstdAmt>' in xml
    assert f"<EndToEndId>AFF-{built.batch.pk}-{line.pk}</EndToEndId>" in xml
    assert "<ReqdExctnDt>2026-12-01</ReqdExctnDt>" in xml


def test_statement_files(september):
    w, p, *_ = september
    close(w)
    statement = Statement.objects.get(promoter=p, period=SEPT)
    rows = list(csv.reader(io.StringIO(statement_csv(statement))))
    assert rows[0] == ["statement", SEPT, "P", "USD"]
    assert rows[1:10] == [
        ["Opening balance", "0.00"], ["Commissions on your own sales", "100.00"], ["Overrides from your team", "0.00"],
        ["Registration bounties", "0.00"], ["Refund reversals and clawbacks", "-20.00"], ["Guaranteed-minimum top-ups", "0.00"],
        ["Performance bonuses", "0.00"], ["Paid out", "0.00"], ["Closing balance", "80.00"],
    ]
    assert [r[3] for r in rows[12:]] == ["direct", "reversal"]
    pdf = statement_pdf(statement)
    assert pdf.startswith(b"%PDF-") and len(pdf) > 1000


@pytest.mark.parametrize(
    ("facts", "month_index", "expected"),
    [
        (MonthFacts(1000, 10000, 1, 1), 0, {"topup": 1500, "bonus": 200}),
        (MonthFacts(1000, 10000, 0, 1), 0, {"bonus": 200}),  # no click: not active, no top-up
        (MonthFacts(3000, 4000, 5, 2), 1, {}),  # earned above the minimum, revenue under the threshold
        (MonthFacts(-500, 0, 5, 1), 2, {"topup": 2500}),  # a net negative month tops up to the minimum only
        (MonthFacts(0, 90000, 5, 3), 3, {}),  # the fourth month: the plan is over
    ],
)
def test_plan_amounts(facts, month_index, expected):
    policy = PayoutPolicy(
        guaranteed_minimum_minor=2500, guaranteed_months=3, activity_min_clicks=1, activity_min_conversions=1,
        bonus_revenue_threshold_minor=5000, bonus_rate=Decimal("0.02"),
    )
    got = {kind: amount for kind, (amount, _) in plan_amounts(facts, policy, month_index, "USD").items()}
    assert got == expected


def test_the_command_prints_progress_and_a_summary(september):
    w = september[0]
    out, err = io.StringIO(), io.StringIO()
    with time_machine.travel("2026-10-15T03:00:00Z", tick=True):
        call_command("close_month", SEPT, stdout=out, stderr=err)
    assert out.getvalue().splitlines()[0] == (
        f"{w.merchant.name} {SEPT}: closed; approved 5, adjustments 2, batch lines 1 (80.00 USD), statements 3, differences 0"
    )
    assert "building the USD payout batch" in err.getvalue()
    assert "3 statement(s) written" in err.getvalue()


needs_postgres = pytest.mark.skipif(not settings.IS_POSTGRES, reason="concurrent builders need PostgreSQL")


@needs_postgres
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_batches_built_at_once_never_pay_a_balance_twice(django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, hold_days=0, tier_rates=[])
    PayoutPolicy.objects.update_or_create(program=w.program, defaults={"minimum_payout_minor": 100})
    for index in range(6):
        promoter = w.promoter(f"P{index}")
        w.send(type="purchase", customer_id=f"c{index}", order_id=f"o{index}", amount="50.00", click_id=w.journey((promoter, affiliate_services.timezone.now())))
    barrier = threading.Barrier(2)
    results = []

    def build():
        try:
            barrier.wait()
            results.append(batches.batch_build(merchant=w.merchant, currency="USD"))
        finally:
            connection.close()

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(r.lines for r in results) == [0, 6]
    assert PayoutLine.objects.count() == 6
    assert sum(PayoutLine.objects.values_list("amount_minor", flat=True)) == 6 * 500
    assert audit_ledger().clean


@needs_postgres
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_statements_are_written_alongside_the_batch(september):
    """On PostgreSQL, with no transaction around the close, a second connection writes the
    statements while the batch runs: the same statements, figures and report."""
    w, p, s, g = september
    lines = []
    with time_machine.travel("2026-10-15T03:00:00Z", tick=True):
        result = close_month(merchant=w.merchant, period=SEPT, progress=lines.append)
    assert "  the statements are being written meanwhile, on a second connection" in lines
    assert result.clean, result.report["differences"]
    assert result.statements_written == 3 == result.report["statements"]
    for frozen in Statement.objects.select_related("promoter__program"):
        assert frozen.figures == statement_figures(frozen.promoter, SEPT)["minor"]
    assert Statement.objects.get(promoter=p).figures["closing"] == 8000
    assert (result.approved, result.lines, result.payable_minor) == (5, 1, {"USD": 8000})
    # The figures read alongside the batch are those read after it.
    assert any("the reconciliation's figures of the month" in line for line in lines)
    assert result.report == reconciliation(merchant=w.merchant, period=SEPT)
    assert result.report["commissions"] == {"count": Commission.objects.count(), "total_minor": 10000 + 5000 + 1000 - 3000}
    assert audit_ledger().clean
    again = close(w, when="2026-10-16T03:00:00Z")
    assert again.already_closed and Statement.objects.count() == 3


@needs_postgres
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_close_that_fails_leaves_no_statement_written_alongside(september, monkeypatch):
    w = september[0]

    def broken(**kwargs):
        raise RuntimeError("the batch failed")

    monkeypatch.setattr("payouts.closing.batch_build", broken)
    with time_machine.travel("2026-10-15T03:00:00Z", tick=True), pytest.raises(RuntimeError, match="the batch failed"):
        close_month(merchant=w.merchant, period=SEPT)
    assert (Statement.objects.count(), PayoutBatch.objects.count(), MonthClose.objects.count()) == (0, 0, 0)
    monkeypatch.undo()
    result = close(w)
    assert result.statements_written == 3 and result.clean, result.report["differences"]


@needs_postgres
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_statement_that_would_not_match_the_ledger_is_reported_when_written_alongside(september):
    from payouts.models import Account, Entry, Journal

    w, p, s, g = september
    # An approval that only adds: the moves between S's owed accounts do not net to zero.
    at = datetime(2026, 9, 20, tzinfo=UTC)
    journal = Journal.objects.create(merchant=w.merchant, kind="approval", created_at=at)
    Entry.objects.create(journal=journal, account=Account.objects.get(promoter=s, kind="available"), amount_minor=100, created_at=at)
    lines = []
    with time_machine.travel("2026-10-15T03:00:00Z", tick=True):
        result = close_month(merchant=w.merchant, period=SEPT, progress=lines.append)
    assert "  the statements are being written meanwhile, on a second connection" in lines
    assert f"moves between owed accounts of promoter {s.pk} in {SEPT} do not net to zero" in result.report["differences"]
    assert result.statements_written == 0 == Statement.objects.count()


def test_inside_a_transaction_the_statements_are_written_after_the_batch(september):
    w = september[0]
    lines = []
    with time_machine.travel("2026-10-15T03:00:00Z", tick=True):
        result = close_month(merchant=w.merchant, period=SEPT, progress=lines.append)
    assert not any("second connection" in line for line in lines)
    assert result.statements_written == 3 and result.clean, result.report["differences"]


def test_the_plans_write_at_once_what_they_write_one_by_one(django_capture_on_commit_callbacks, monkeypatch):
    """Top-ups and bonuses written in one transaction: the same adjustments, journals,
    entries, balances and accounts, created in the same order, as one by one; one already
    written for the month is left as it is."""
    from django.db import IntegrityError, transaction

    from payouts import plans
    from payouts.models import Account, Entry, Journal

    with time_machine.travel("2026-09-01T08:00:00Z", tick=True):
        w = World(django_capture_on_commit_callbacks, hold_days=30, tier_rates=["0.05"])
        PayoutPolicy.objects.update_or_create(
            program=w.program,
            defaults={
                "minimum_payout_minor": 5000, "guaranteed_minimum_minor": 2500, "guaranteed_months": 3,
                "activity_min_clicks": 0, "activity_min_conversions": 0,
                "bonus_revenue_threshold_minor": 5000, "bonus_rate": "0.02",
            },
        )
        g1 = w.promoter("G1", payout_plan="guaranteed")
        idle = w.promoter("Idle", payout_plan="guaranteed")  # no commission, so no account yet
        g3 = w.promoter("G3", payout_plan="guaranteed")
    with time_machine.travel("2026-09-10T12:00:00Z", tick=True) as clock:
        clicks = [w.journey((g, affiliate_services.timezone.now())) for g in (g1, g3)]
        clock.shift(60)
        w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=clicks[0])
        w.send(type="purchase", customer_id="c3", order_id="o3", amount="300.00", click_id=clicks[1])
    assert not Account.objects.filter(promoter=idle).exists()
    plans._adjust(g3, "topup", SEPT, 100, "USD", "written before")

    def picture():
        journals = {j.pk: n for n, j in enumerate(Journal.objects.filter(kind="adjustment").order_by("id"))}
        return (
            list(Adjustment.objects.order_by("id").values_list("promoter__name", "kind", "amount_minor", "reason")),
            [(j.kind, j.memo) for j in Journal.objects.filter(kind="adjustment").order_by("id")],
            [
                (journals[e.journal_id], e.account.promoter_id, e.account.kind, e.amount_minor)
                for e in Entry.objects.filter(journal__kind="adjustment").select_related("account").order_by("id")
            ],
            list(Account.objects.order_by("id").values_list("promoter_id", "kind", "currency", "balance_minor")),
        )

    def one_by_one(wanted, period):
        raise IntegrityError("as if another close had written one meanwhile")

    savepoint = transaction.savepoint()
    with monkeypatch.context() as m:
        m.setattr(plans, "_adjust_all", one_by_one)
        reference = plans.apply_plans(merchant=w.merchant, period=SEPT)
    expected = picture()
    transaction.savepoint_rollback(savepoint)
    written = plans.apply_plans(merchant=w.merchant, period=SEPT)
    assert [(a.promoter.name, a.kind) for a in written] == [(a.promoter.name, a.kind) for a in reference] == [
        ("G1", "topup"), ("G1", "bonus"), ("Idle", "topup"), ("G3", "bonus"),
    ]
    assert picture() == expected
    assert plans.apply_plans(merchant=w.merchant, period=SEPT) == []
    assert audit_ledger().clean
