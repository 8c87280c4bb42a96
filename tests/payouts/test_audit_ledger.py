"""audit_ledger: clean after real traffic, and it names every kind of corruption."""

from __future__ import annotations

import io

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db.models import Q

from payouts import services
from payouts.audit import audit_ledger
from payouts.models import Account, Commission, Entry, Journal
from tests.payouts.world import World, at

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy(django_capture_on_commit_callbacks):
    """A tree, purchases on several models' journeys, refunds, approvals and a payout."""
    w = World(django_capture_on_commit_callbacks, hold_days=400, attribution_model="linear", registration_bounty="2.00")
    s2 = w.promoter("S2")
    s1 = w.promoter("S1", sponsor=s2)
    p = w.promoter("P", sponsor=s1, payout_plan="immediate")
    q = w.promoter("Q", sponsor=s1)
    click = w.journey((p, at(1)), (q, at(2)), (p, at(3)))
    w.send(type="registration", customer_id="c1", click_id=click, occurred_at=at(3, hours=1))
    first = w.send(type="purchase", customer_id="c1", order_id="o1", amount="123.45", occurred_at=at(4))
    w.send(type="purchase", customer_id="c1", order_id="o2", amount="99.99", occurred_at=at(5))
    w.send(type="refund", customer_id="c1", order_id="o1", refund_id="R1", amount="23.45", occurred_at=at(6))
    paid = [c["id"] for c in first["commissions"] if c["status"] == "approved"]
    services.commissions_mark_paid(commission_ids=paid)
    w.send(type="refund", customer_id="c1", order_id="o1", refund_id="R2", occurred_at=at(7))
    w.api.patch(f"/api/v1/promoters/{s1.pk}/", {"status": "inactive", "sponsor": None}, format="json")  # the tree changes later
    return w


def run() -> tuple[int, str]:
    out = io.StringIO()
    try:
        call_command("audit_ledger", "--quiet", stdout=out, stderr=io.StringIO())
    except SystemExit as exit_:
        return exit_.code, out.getvalue()
    return 0, out.getvalue()


def test_clean_ledger_exits_zero(busy):
    code, output = run()
    assert code == 0, output
    report = audit_ledger()
    assert output == (
        f"ledger audit clean: {report.events} events, {report.commissions} commissions, "
        f"{report.journals} journals, {report.accounts} accounts\n"
    )
    assert report.events == 5
    assert report.commissions == Commission.objects.count() > 10


def test_an_edited_entry_is_caught(busy):
    entry = Entry.objects.filter(account__kind="pending").order_by("id").first()
    Entry.objects.filter(pk=entry.pk).update(amount_minor=entry.amount_minor + 1)
    code, output = run()
    assert code == 1
    assert f"DIFFERENCE journal {entry.journal_id} does not balance: its entries sum to +1 minor units" in output
    assert f"DIFFERENCE account {entry.account_id} (promoter {entry.account.promoter_id} pending) shows" in output


def test_an_edited_running_balance_is_caught(busy):
    account = Account.objects.filter(kind="available").exclude(balance_minor=0).first()
    Account.objects.filter(pk=account.pk).update(balance_minor=account.balance_minor + 500)
    code, output = run()
    assert code == 1
    assert f"DIFFERENCE account {account.pk} (promoter {account.promoter_id} available) shows" in output


def test_an_edited_commission_is_caught(busy):
    commission = Commission.objects.filter(kind="override").order_by("id").first()
    Commission.objects.filter(pk=commission.pk).update(amount_minor=commission.amount_minor + 1)
    code, output = run()
    assert code == 1
    assert (
        f"DIFFERENCE event {commission.event_id}: override level {commission.level} to promoter {commission.promoter_id} is "
        in output
    )
    assert "the rules give" in output


def test_a_deleted_reversal_is_caught(busy):
    reversal = Commission.objects.filter(kind="reversal").order_by("-id").first()
    Entry.objects.filter(journal__commission=reversal).delete()
    Journal.objects.filter(commission=reversal).delete()
    Commission.objects.filter(pk=reversal.pk).delete()
    code, output = run()
    assert code == 1
    assert f"DIFFERENCE refund event {reversal.event_id}: reversal of commission {reversal.reverses_id} is nothing" in output


def test_an_event_without_its_key_is_caught(busy):
    from affiliate.models import ConversionEvent, EventKey

    purchase = ConversionEvent.objects.get(order_id="o2")
    assert list(EventKey.objects.filter(event=purchase).values_list("kind", "key", "refund_id")) == [("purchase", "o2", "")]
    EventKey.objects.filter(event=purchase).delete()
    code, output = run()
    assert code == 1
    assert output.count("DIFFERENCE") == 1, output
    assert f"DIFFERENCE event {purchase.pk} (purchase) holds no event key: a repeat of it would not be refused" in output
    assert audit_ledger(recompute=False).clean  # the ledger-wide checks leave the keys out


def test_a_commission_status_moved_without_the_ledger_is_caught(busy):
    pending = Commission.objects.filter(status="pending").first()
    Commission.objects.filter(pk=pending.pk).update(status="approved")
    code, output = run()
    assert code == 1
    assert f"DIFFERENCE promoter {pending.promoter_id} pending: commissions say" in output


def test_a_reversal_by_hand_is_clean_and_once(busy):
    from payouts.finance import FinanceError, commission_reverse

    pending = Commission.objects.filter(kind="override", status="pending", reversals__isnull=True).order_by("id").first()
    reversal = commission_reverse(commission_id=pending.pk, reason="fraud found in review", by="finance@example.com")
    assert (reversal.amount_minor, reversal.status, reversal.reason) == (
        -pending.amount_minor, "pending", "fraud found in review (by finance@example.com)",
    )
    with pytest.raises(FinanceError, match="cannot be reversed"):
        commission_reverse(commission_id=reversal.pk, reason="undo", by="x")
    with pytest.raises(FinanceError, match="already reversed by hand"):
        commission_reverse(commission_id=pending.pk, reason="again", by="x")
    with pytest.raises(FinanceError, match="Give the reason"):
        commission_reverse(commission_id=Commission.objects.filter(kind="direct").first().pk, reason=" ", by="x")
    assert run()[0] == 0


def test_reversing_more_than_a_commission_is_caught(busy):
    reversal = Commission.objects.filter(kind="reversal").order_by("id").first()
    Commission.objects.filter(pk=reversal.pk).update(amount_minor=reversal.amount_minor - 100_000)
    code, output = run()
    assert code == 1
    assert f"DIFFERENCE commission {reversal.reverses_id} is reversed by" in output


@pytest.mark.skipif(not settings.IS_POSTGRES, reason="the comparison in SQL is PostgreSQL's")
@pytest.mark.postgres
def test_the_accounts_compared_in_sql_give_what_python_gives(busy, django_capture_on_commit_callbacks):
    """Checks 2 and 3 on PostgreSQL are compared by the database: the same differences, in
    the same order, as the comparison in Python, for the whole ledger and for a merchant."""
    from payouts.audit import AuditReport, _check_accounts, _check_accounts_in_sql

    other = World(django_capture_on_commit_callbacks, hold_days=400)
    o = other.promoter("O")
    other.send(type="purchase", customer_id="x1", order_id="x1", amount="10.00", click_id=other.journey((o, at(1))), occurred_at=at(2))
    assert Commission.objects.filter(promoter=o).exists()
    entry = Entry.objects.filter(account__kind="pending").order_by("id").first()
    Entry.objects.filter(pk=entry.pk).update(amount_minor=entry.amount_minor + 1)
    for account in Account.objects.filter(kind="available").exclude(balance_minor=0)[:2]:
        Account.objects.filter(pk=account.pk).update(balance_minor=account.balance_minor + 500)
    Account.objects.filter(kind="expense").update(balance_minor=123)  # summed on demand: never a difference
    for pending in Commission.objects.filter(status="pending").order_by("-id")[:3]:
        Commission.objects.filter(pk=pending.pk).update(status="approved")
    Commission.objects.filter(promoter=o).update(status="paid")
    found = {}
    for merchant_id in (None, busy.merchant.pk, other.merchant.pk):
        scope = Q(merchant_id=merchant_id) if merchant_id else Q()
        in_python, in_sql = AuditReport(), AuditReport()
        _check_accounts(in_python, scope, lambda line: None)
        _check_accounts_in_sql(in_sql, merchant_id, lambda line: None)
        assert in_sql.differences == in_python.differences
        assert in_sql.accounts == in_python.accounts == Account.objects.filter(scope).count()
        found[merchant_id] = len(in_sql.differences)
    assert found[None] == found[busy.merchant.pk] + found[other.merchant.pk]
    assert found[busy.merchant.pk] >= 6 and found[other.merchant.pk] == 2
