"""The finance back office in Django admin, driven through the test client as a member of
the "Finance" group: each action does its ledger work, downloads carry the right files, CSV
exports have exact rows, and everything else is refused."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import pytest
import time_machine
from django.apps import apps
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import Client

from affiliate import services as affiliate_services
from payouts import exports
from payouts.audit import audit_ledger
from payouts.finance_group import GROUP_NAME
from payouts.methods import payout_method_set
from payouts.models import Commission, PayoutBatch, PayoutLine, PayoutMethodChange, PayoutPolicy, Statement
from payouts.statements import statement_csv, statement_write
from promoters.services import promoter_create
from tests.payouts.world import World

pytestmark = pytest.mark.django_db

SALE = "2026-09-10T12:00:00Z"
LATER = "2026-10-15T09:00:00Z"  # the month of the sale has ended, its 60-day hold has not


@pytest.fixture
def shop(django_capture_on_commit_callbacks):
    """P (sponsor S) sells 1,000.00 on 10 September: P 100.00 direct, S 50.00 override, both
    pending for 60 days. P is paid by PayPal. Payouts from 50.00."""
    with time_machine.travel(SALE, tick=True):
        w = World(django_capture_on_commit_callbacks, hold_days=60, tier_rates=["0.05"])
        PayoutPolicy.objects.update_or_create(program=w.program, defaults={"minimum_payout_minor": 5000})
        s = w.promoter("S")
        p = w.promoter("P", sponsor=s)
        payout_method_set(promoter=p, kind="paypal", changed_by=f"promoter:{p.pk}", paypal_email="p@example.com")
        w.send(type="purchase", customer_id="c1", order_id="o1", amount="1000.00", click_id=w.journey((p, affiliate_services.timezone.now())))
    direct = Commission.objects.get(promoter=p, kind="direct")
    override = Commission.objects.get(promoter=s, kind="override")
    return w, p, s, direct, override


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def finance_user(db):
    user = User.objects.create_user("fiona", "fiona@example.com", "pw", is_staff=True)
    user.groups.add(Group.objects.get(name=GROUP_NAME))
    return user


@pytest.fixture
def finance(finance_user) -> Client:
    return login(finance_user)


def notes(response) -> list[str]:
    """The messages shown on the page the request ended on (redirects followed)."""
    return [str(m) for m in response.context["messages"]]


def action(client, model_url, name, ids, **extra):
    """Run a changelist action on the selected ids, following the redirect back to the list."""
    return client.post(model_url, {"action": name, "_selected_action": [str(i) for i in ids], **extra}, follow=True)


def landed(response) -> str:
    return response.redirect_chain[-1][0]


def csv_rows(response) -> list[list[str]]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return list(csv.reader(io.StringIO(body.decode())))


COMMISSIONS = "/admin/payouts/commission/"
LINES = "/admin/payouts/payoutline/"


# --- The group ----------------------------------------------------------------------------


def test_the_finance_group_holds_exactly_its_permissions():
    views = {
        f"{label}.view_{model._meta.model_name}"
        for label in ("merchants", "promoters", "affiliate", "attribution", "payouts")
        for model in apps.get_app_config(label).get_models()
    }
    extra = {
        "payouts.change_payoutpolicy", "payouts.change_payoutbatch", "payouts.change_payoutline",
        "payouts.approve_commission", "payouts.reverse_commission",
    }
    group = Group.objects.get(name=GROUP_NAME)
    held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
    assert held == views | extra
    assert {"merchants.view_merchant", "promoters.view_promoter", "attribution.view_credit", "payouts.view_entry"} <= held


def test_the_command_refreshes_the_group_idempotently():
    group = Group.objects.get(name=GROUP_NAME)
    before = set(group.permissions.values_list("pk", flat=True))
    group.permissions.add(Permission.objects.get(codename="delete_user"))
    group.permissions.remove(Permission.objects.get(codename="reverse_commission"))
    out = io.StringIO()
    call_command("setup_finance_group", stdout=out)
    call_command("setup_finance_group", stdout=io.StringIO())
    assert set(Group.objects.get(name=GROUP_NAME).permissions.values_list("pk", flat=True)) == before
    assert Group.objects.filter(name=GROUP_NAME).count() == 1
    assert out.getvalue() == (
        f'Group "{GROUP_NAME}" has {len(before)} permissions. Add finance staff to it (is_staff, not superuser).\n'
    )


# --- What a finance user may not do -------------------------------------------------------------


def test_finance_is_refused_users_groups_and_every_add_delete_or_change_of_read_only_models(finance, shop):
    w, p, s, direct, _ = shop
    refused = [
        ("get", "/admin/auth/user/"),
        ("get", "/admin/auth/group/"),
        ("get", "/admin/auth/user/add/"),
        ("get", "/admin/merchants/program/add/"),
        ("get", f"/admin/merchants/program/{w.program.pk}/delete/"),
        ("post", f"/admin/merchants/program/{w.program.pk}/change/"),
        ("get", f"/admin/merchants/merchant/{w.merchant.pk}/delete/"),
        ("post", f"/admin/merchants/merchant/{w.merchant.pk}/change/"),
        ("get", "/admin/promoters/promoter/add/"),
        ("get", f"/admin/promoters/promoter/{p.pk}/delete/"),
        ("post", f"/admin/promoters/promoter/{p.pk}/change/"),
        ("get", "/admin/payouts/commission/add/"),
        ("get", f"/admin/payouts/commission/{direct.pk}/delete/"),
        ("post", f"/admin/payouts/commission/{direct.pk}/change/"),
        ("get", "/admin/payouts/payoutpolicy/add/"),
        ("get", "/admin/payouts/payoutbatch/add/"),
        ("get", f"/admin/payouts/payoutmethod/{p.payout_method.pk}/delete/"),
        ("post", f"/admin/payouts/payoutmethod/{p.payout_method.pk}/change/"),
    ]
    answers = [(method, url, getattr(finance, method)(url, {"name": "Hacked"}).status_code) for method, url in refused]
    assert answers == [(method, url, 403) for method, url in refused]
    assert w.program.__class__.objects.get(pk=w.program.pk).name == "Default"


def test_finance_reads_the_money_apps_but_not_auth(finance, shop):
    w, p, s, direct, _ = shop
    index = finance.get("/admin/")
    assert index.status_code == 200
    apps_shown = sorted(app["app_label"] for app in index.context["app_list"])
    assert apps_shown == ["affiliate", "attribution", "merchants", "payouts", "promoters"]
    for url in (
        "/admin/merchants/merchant/", f"/admin/merchants/merchant/{w.merchant.pk}/change/", "/admin/merchants/program/",
        "/admin/affiliate/conversionevent/", f"/admin/promoters/promoter/{p.pk}/change/", "/admin/attribution/credit/",
        COMMISSIONS, f"/admin/payouts/commission/{direct.pk}/change/", "/admin/payouts/journal/", "/admin/payouts/account/",
        "/admin/payouts/payoutbatch/", LINES, "/admin/payouts/statement/", "/admin/payouts/payoutpolicy/",
        "/admin/payouts/payoutmethod/", "/admin/payouts/adjustment/",
    ):
        assert finance.get(url).status_code == 200, url
    # The change page of a read-only model is a view: no save button.
    page = finance.get(f"/admin/promoters/promoter/{p.pk}/change/").content.decode()
    assert 'name="_save"' not in page


def test_superusers_keep_what_they_had(shop):
    w = shop[0]
    root = login(User.objects.create_superuser("root", "root@example.com", "pw"))
    assert root.get("/admin/merchants/program/add/").status_code == 200
    assert root.get(f"/admin/merchants/program/{w.program.pk}/change/").status_code == 200
    assert root.get("/admin/auth/user/").status_code == 200
    assert root.get("/admin/payouts/payoutpolicy/add/").status_code == 200


def test_staff_without_the_custom_permissions_cannot_approve_reverse_or_build(shop):
    w, p, s, direct, _ = shop
    clerk = User.objects.create_user("clerk", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_commission"))
    client = login(clerk)
    page = client.get(COMMISSIONS)
    choices = [value for value, _ in page.context["action_form"].fields["action"].choices]
    assert choices == ["", "export_as_csv"]
    response = action(client, COMMISSIONS, "approve_now", [direct.pk])
    assert notes(response) == ["No action selected."]
    direct.refresh_from_db()
    assert direct.status == "pending"
    clerk.user_permissions.add(Permission.objects.get(codename="view_payoutbatch"))
    client = login(User.objects.get(pk=clerk.pk))
    assert "/admin/payouts/payoutbatch/build/" not in client.get("/admin/payouts/payoutbatch/").content.decode()
    assert client.post("/admin/payouts/payoutbatch/build/", {"merchant": w.merchant.pk, "currency": "USD"}).status_code == 403
    assert PayoutBatch.objects.count() == 0


# --- Commissions: approve now, reverse with a reason -------------------------------------------


def test_approve_now_moves_the_balance_to_available(finance, shop):
    w, p, s, direct, override = shop
    assert w.balance(p) == {"currency": "USD", "pending": "100.00", "available": "0.00", "paid": "0.00"}
    page = finance.get(COMMISSIONS)
    assert [v for v, _ in page.context["action_form"].fields["action"].choices] == [
        "", "export_as_csv", "approve_now", "reverse_with_reason",
    ]
    response = action(finance, COMMISSIONS, "approve_now", [direct.pk])
    assert landed(response) == COMMISSIONS
    assert notes(response) == ["1 commission(s) approved: their amount is now available."]
    assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "100.00", "paid": "0.00"}
    assert w.balance(s) == {"currency": "USD", "pending": "50.00", "available": "0.00", "paid": "0.00"}
    # Again: nothing left to approve.
    again = action(finance, COMMISSIONS, "approve_now", [direct.pk])
    assert notes(again) == ["1 commission(s) were not pending and were left as they are."]
    assert audit_ledger().clean


def test_reverse_with_a_reason_asks_then_writes_the_reversal(finance, shop):
    w, p, s, direct, override = shop
    action(finance, COMMISSIONS, "approve_now", [direct.pk])
    form = action(finance, COMMISSIONS, "reverse_with_reason", [direct.pk, override.pk])
    assert form.status_code == 200
    assert form.templates[0].name == "admin/payouts/action_reason.html"
    assert Commission.objects.filter(kind="reversal").count() == 0  # nothing done before the reason
    blank = action(finance, COMMISSIONS, "reverse_with_reason", [direct.pk], apply="1", reason="  ")
    assert blank.status_code == 200 and blank.context["form"].errors == {"reason": ["This field is required."]}
    assert Commission.objects.filter(kind="reversal").count() == 0

    done = action(finance, COMMISSIONS, "reverse_with_reason", [direct.pk, override.pk], apply="1", reason="Fraud found")
    assert landed(done) == COMMISSIONS
    reversals = {r.reverses_id: r for r in Commission.objects.filter(kind="reversal")}
    assert notes(done) == [
        f"Reversed 2 commission(s): {direct.pk} (reversal {reversals[direct.pk].pk}), {override.pk} (reversal {reversals[override.pk].pk})."
    ]
    assert [(r.amount_minor, r.status, r.reason) for r in (reversals[direct.pk], reversals[override.pk])] == [
        (-10000, "approved", "Fraud found (by fiona)"), (-5000, "pending", "Fraud found (by fiona)"),
    ]
    assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "0.00", "paid": "0.00"}
    assert w.balance(s) == {"currency": "USD", "pending": "0.00", "available": "0.00", "paid": "0.00"}
    assert audit_ledger().clean

    # A second time, and a reversal itself: each refusal is reported, nothing is written.
    again = action(
        finance, COMMISSIONS, "reverse_with_reason", [direct.pk, reversals[direct.pk].pk], apply="1", reason="Twice"
    )
    assert notes(again) == [
        f"Commission {direct.pk} not reversed: This commission was already reversed by hand.",
        f"Commission {reversals[direct.pk].pk} not reversed: A reversal cannot be reversed; it would pay the commission again.",
    ]
    assert Commission.objects.filter(kind="reversal").count() == 2
    assert audit_ledger().clean


# --- Batches: build, download, settle ---------------------------------------------------------


def build(finance, w):
    return finance.post("/admin/payouts/payoutbatch/build/", {"merchant": w.merchant.pk, "currency": "USD"}, follow=True)


def test_build_a_batch_now_then_download_it(finance, shop):
    w, p, s, direct, override = shop
    assert 'href="/admin/payouts/payoutbatch/build/"' in finance.get("/admin/payouts/payoutbatch/").content.decode()
    assert finance.get("/admin/payouts/payoutbatch/build/").status_code == 200
    nothing = build(finance, w)
    assert notes(nothing) == [f"Nothing to pay for {w.merchant} in USD: no promoter's payable balance reaches the minimum."]
    assert PayoutBatch.objects.count() == 0

    action(finance, COMMISSIONS, "approve_now", [direct.pk, override.pk])  # S's 50.00 reaches the minimum too
    response = build(finance, w)
    batch = PayoutBatch.objects.get()
    assert landed(response) == f"/admin/payouts/payoutbatch/{batch.pk}/change/"
    assert notes(response) == [f"Batch {batch.pk} built: 2 line(s), 150.00 USD."]
    lines = {line.promoter_id: line for line in batch.lines.all()}
    assert {pid: line.amount_minor for pid, line in lines.items()} == {p.pk: 10000, s.pk: 5000}

    page = finance.get(f"/admin/payouts/payoutbatch/{batch.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "pending: 2 line(s), 150.00 USD" in html and "paid: 0 line(s), 0.00 USD" in html
    assert f"/admin/payouts/payoutbatch/{batch.pk}/export/sepa/" in html

    as_csv = finance.get(f"/admin/payouts/payoutbatch/{batch.pk}/export/csv/")
    assert as_csv["Content-Type"] == "text/csv; charset=utf-8"
    assert as_csv["Content-Disposition"] == f'attachment; filename="payout-batch-{batch.pk}-csv.csv"'
    assert as_csv.content.decode() == exports.batch_csv(batch)
    line_p, line_s = lines[p.pk], lines[s.pk]
    expected = {  # rows in line order, whichever line was written first
        line_p.pk: [str(batch.pk), str(line_p.pk), f"AFF-{batch.pk}-{line_p.pk}", str(p.pk), "P", p.email, "100.00", "USD", "paypal", "p@example.com", "", "", "", "pending"],
        line_s.pk: [str(batch.pk), str(line_s.pk), f"AFF-{batch.pk}-{line_s.pk}", str(s.pk), "S", s.email, "50.00", "USD", "manual", "", "", "", "", "pending"],
    }
    assert csv_rows(as_csv) == [exports.CSV_COLUMNS, *(expected[pk] for pk in sorted(expected))]
    paypal = finance.get(f"/admin/payouts/payoutbatch/{batch.pk}/export/paypal/")
    assert paypal["Content-Type"] == "application/json"
    assert json.loads(paypal.content)["items"] == [{
        "recipient_type": "EMAIL", "receiver": "p@example.com", "amount": {"value": "100.00", "currency": "USD"},
        "note": f"Commissions, batch {batch.pk}", "sender_item_id": f"AFF-{batch.pk}-{line_p.pk}",
    }]
    # SEPA is EUR only: a message on the batch page, never a 500.
    sepa = finance.get(f"/admin/payouts/payoutbatch/{batch.pk}/export/sepa/", follow=True)
    assert landed(sepa) == f"/admin/payouts/payoutbatch/{batch.pk}/change/"
    assert notes(sepa) == ["SEPA credit transfers are in EUR only."]
    assert finance.get(f"/admin/payouts/payoutbatch/{batch.pk}/export/pdf/").status_code == 404


def test_sepa_download(finance, django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, currency="EUR", hold_days=0, tier_rates=[])
    PayoutPolicy.objects.update_or_create(
        program=w.program, defaults={"minimum_payout_minor": 100, "payer_name": "Acme GmbH", "payer_iban": "DE89370400440532013000"}
    )
    paula = w.promoter("Paula")
    payout_method_set(promoter=paula, kind="bank", changed_by="x", account_holder="Paula Martin", iban="FR1420041010050500013M02606")
    w.send(type="purchase", customer_id="c1", order_id="o1", amount="123.45", click_id=w.journey((paula, affiliate_services.timezone.now())))
    response = finance.post("/admin/payouts/payoutbatch/build/", {"merchant": w.merchant.pk, "currency": "EUR"})
    batch = PayoutBatch.objects.get()
    assert response.status_code == 302
    sepa = finance.get(f"/admin/payouts/payoutbatch/{batch.pk}/export/sepa/")
    assert sepa.status_code == 200
    assert sepa["Content-Type"] == "application/xml"
    assert sepa["Content-Disposition"] == f'attachment; filename="payout-batch-{batch.pk}-sepa.xml"'
    xml = sepa.content.decode()
    assert "<IBAN>FR1420041010050500013M02606</IBAN>" in xml
    assert '<InstdAmt Ccy="EUR">12.35</InstdAmt>' in xml
    assert f"<ReqdExctnDt>{date.today().isoformat()}</ReqdExctnDt>" in xml


def test_mark_paid_and_mark_failed_with_a_reason(finance, shop):
    w, p, s, direct, override = shop
    action(finance, COMMISSIONS, "approve_now", [direct.pk, override.pk])
    build(finance, w)
    line_p, line_s = PayoutLine.objects.get(promoter=p), PayoutLine.objects.get(promoter=s)

    paid = action(finance, LINES, "mark_paid", [line_p.pk])
    assert notes(paid) == ["1 line(s) marked paid."]
    assert w.balance(p) == {"currency": "USD", "pending": "0.00", "available": "0.00", "paid": "100.00"}
    assert Commission.objects.get(pk=direct.pk).status == "paid"

    form = action(finance, LINES, "mark_failed", [line_s.pk])
    assert form.status_code == 200 and b'name="reason"' in form.content
    assert PayoutLine.objects.get(pk=line_s.pk).status == "pending"
    failed = action(finance, LINES, "mark_failed", [line_s.pk, line_p.pk], apply="1", reason="Account closed")
    assert notes(failed) == ["1 line(s) marked failed.", "1 line(s) were not pending and were left as they are."]
    line_s.refresh_from_db()
    assert (line_s.status, line_s.failure_reason) == ("failed", "Account closed")
    assert w.balance(s) == {"currency": "USD", "pending": "0.00", "available": "50.00", "paid": "0.00"}
    assert PayoutBatch.objects.get().status == "closed"
    assert audit_ledger().clean


# --- Statements ----------------------------------------------------------------------------


def test_statement_page_and_downloads(finance, shop):
    w, p, *_ = shop
    with time_machine.travel(LATER, tick=True):
        statement, _ = statement_write(promoter=p, period="2026-09")
    page = finance.get(f"/admin/payouts/statement/{statement.pk}/change/")
    html = page.content.decode()
    assert "<tr><td>Commissions on your own sales</td><td style='text-align:right'>100.00</td></tr>" in html
    assert "<tr><td>Closing balance</td><td style='text-align:right'>100.00</td></tr>" in html
    pdf = finance.get(f"/admin/payouts/statement/{statement.pk}/download/pdf/")
    assert pdf["Content-Type"] == "application/pdf"
    assert pdf["Content-Disposition"] == f'attachment; filename="statement-2026-09-promoter-{p.pk}.pdf"'
    assert pdf.content.startswith(b"%PDF-")
    as_csv = finance.get(f"/admin/payouts/statement/{statement.pk}/download/csv/")
    assert as_csv["Content-Type"] == "text/csv; charset=utf-8"
    assert as_csv["Content-Disposition"] == f'attachment; filename="statement-2026-09-promoter-{p.pk}.csv"'
    assert as_csv.content.decode() == statement_csv(Statement.objects.get(pk=statement.pk))
    assert csv_rows(as_csv)[:3] == [["statement", "2026-09", "P", "USD"], ["Opening balance", "0.00"], ["Commissions on your own sales", "100.00"]]


# --- CSV export -------------------------------------------------------------------------------


def test_export_selected_commissions_as_csv(finance, shop):
    w, p, s, direct, override = shop
    response = action(finance, COMMISSIONS, "export_as_csv", [override.pk, direct.pk])
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="commissions-')
    assert csv_rows(response) == [
        ["ID", "Event id", "promoter", "kind", "level", "amount", "status", "available at", "created at"],
        [str(direct.pk), str(direct.event_id), f"P <{p.email}>", "Direct", "0", "100.00", "Pending",
         direct.available_at.isoformat(), direct.created_at.isoformat()],
        [str(override.pk), str(override.event_id), f"S <{s.email}>", "Override", "1", "50.00", "Pending",
         override.available_at.isoformat(), override.created_at.isoformat()],
    ]


def test_export_promoters_as_csv_neutralises_formulas(finance, shop):
    w, p, s, *_ = shop
    evil = promoter_create(merchant=w.merchant, email="evil@example.com", name='=HYPERLINK("http://x")', program=w.program)
    response = action(finance, "/admin/promoters/promoter/", "export_as_csv", [evil.pk, s.pk])
    assert csv_rows(response) == [
        ["ID", "name", "email", "program", "sponsor", "status", "payout plan", "referral code", "coupon code"],
        [str(s.pk), "S", s.email, "Default (USD)", "", "Active", "Standard", s.referral_code, ""],
        [str(evil.pk), "'=HYPERLINK(\"http://x\")", evil.email, "Default (USD)", "", "Active", "Standard", evil.referral_code, ""],
    ]


def test_export_payout_methods_masks_the_iban(finance, shop):
    w, p, *_ = shop
    payout_method_set(promoter=p, kind="bank", changed_by="x", account_holder="P", iban="DE89370400440532013000", bic="COBADEFF")
    response = action(finance, "/admin/payouts/payoutmethod/", "export_as_csv", [p.payout_method.pk])
    rows = csv_rows(response)
    assert rows[0] == ["promoter", "kind", "paypal email", "account holder", "IBAN", "bic", "updated at"]
    assert rows[1][:6] == [f"P <{p.email}>", "Bank", "", "P", "DE****************3000", "COBADEFF"]
    # The method's page shows the change log, IBANs masked.
    page = finance.get(f"/admin/payouts/payoutmethod/{p.payout_method.pk}/change/").content.decode()
    assert PayoutMethodChange.objects.filter(promoter=p).count() == 2
    assert "iban=DE****************3000" in page
    assert "paypal_email=p@example.com" in page


# --- Payout policies ---------------------------------------------------------------------------


def test_finance_edits_a_payout_policy_with_a_checked_iban(finance, shop):
    w = shop[0]
    policy = PayoutPolicy.objects.get(program=w.program)
    url = f"/admin/payouts/payoutpolicy/{policy.pk}/change/"
    form = {
        "minimum_payout_minor": "2500", "guaranteed_minimum_minor": "0", "guaranteed_months": "3",
        "activity_min_clicks": "0", "activity_min_conversions": "1", "bonus_revenue_threshold_minor": "0",
        "bonus_rate": "0", "payer_name": "Acme GmbH", "payer_iban": "DE89 3704 0044 0532 0130 01", "payer_bic": "",
    }
    bad = finance.post(url, form)
    assert bad.status_code == 200
    assert bad.context["adminform"].form.errors == {"payer_iban": ["Not a valid IBAN (invalid checksum digits)."]}
    assert PayoutPolicy.objects.get(pk=policy.pk).minimum_payout_minor == 5000
    good = finance.post(url, {**form, "payer_iban": "de89 3704 0044 0532 0130 00"})
    assert good.status_code == 302
    policy.refresh_from_db()
    assert (policy.minimum_payout_minor, policy.payer_name, policy.payer_iban) == (2500, "Acme GmbH", "DE89370400440532013000")
