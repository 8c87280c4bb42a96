"""The promoter portal's pages, with exact figures."""

from __future__ import annotations

import csv
import io
import re

import pytest
from django.utils import timezone

from affiliate.models import ReferralLink
from payouts import statements
from payouts.models import PayoutMethod, PayoutMethodChange
from promoters.models import Promoter

pytestmark = pytest.mark.django_db


def test_pages_need_a_login(world):
    from django.test import Client

    for path in ("/portal/", "/portal/summary.json", "/portal/links/", "/portal/commissions/", "/portal/team/", "/portal/payouts/"):
        response = Client().get(path)
        assert (response.status_code, response["Location"]) == (302, f"/accounts/login/?next={path}")


def test_a_login_without_a_promoter_is_told_how_to_join(db):
    from tests.portal.conftest import client_logged_in, make_login

    response = client_logged_in(make_login("nobody@example.com")).get("/portal/")
    assert response.status_code == 200
    assert b"No program yet" in response.content


def test_the_dashboard_summary_has_the_promoters_figures(sold):
    body = sold.pia_client.get("/portal/summary.json").json()
    assert body["currency"] == "USD"
    assert body["status"] == "active"
    assert body["balance"] == {"currency": "USD", "pending": "10.00", "available": "0.00", "paid": "0.00"}
    assert body["totals"] == {
        "clicks": 1, "registrations": 1, "purchases": 1, "conversion_rate": "100.0%", "earned": "10.00",
    }
    assert len(body["days"]) == 30
    assert body["days"][-1] == timezone.localdate().isoformat()
    assert sum(body["series"]["clicks"]) == 1
    assert body["series"]["earned"][-1] == "10.00"  # commissions are earned when the sale is processed
    assert body["series"]["earned"][:-1] == ["0.00"] * 29
    sponsor = sold.sam_client.get("/portal/summary.json").json()
    assert sponsor["balance"]["pending"] == "5.00"
    assert sponsor["totals"] == {"clicks": 0, "registrations": 0, "purchases": 0, "conversion_rate": None, "earned": "5.00"}


def test_the_dashboard_page_shows_the_figures_and_polls_the_summary(sold):
    response = sold.pia_client.get("/portal/")
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    html = response.content.decode()
    assert '<span class="value" data-field="balance.pending">10.00</span>' in html
    assert '<span class="value" data-field="totals.conversion_rate">100.0%</span>' in html
    assert 'data-summary-url="/portal/summary.json"' in html
    assert "/static/vendor/chartjs/chart.umd.min.js" in html
    assert f"http://testserver/join/{sold.pia.referral_code}" in html
    assert "cdn" not in html.lower()


def test_a_sale_shows_on_the_next_poll(world):
    before = world.pia_client.get("/portal/summary.json").json()
    assert before["balance"]["pending"] == "0.00"
    world.sale(amount="40.00")
    after = world.pia_client.get("/portal/summary.json").json()
    assert after["balance"]["pending"] == "4.00"
    assert after["totals"]["purchases"] == 1


def test_making_a_link_with_a_channel(world):
    response = world.pia_client.post("/portal/links/", {"destination_url": "https://shop.example.com/p/9", "channel": "youtube"})
    link = ReferralLink.objects.get(promoter=world.pia, channel="youtube")
    assert (response.status_code, response["Location"]) == (302, f"/portal/links/{link.code}/")
    assert (link.destination_url, link.program_id, link.merchant_id) == ("https://shop.example.com/p/9", world.pia.program_id, world.pia.merchant_id)
    page = world.pia_client.get("/portal/links/")
    assert f"http://testserver/r/{link.code}".encode() in page.content


def test_a_link_to_another_domain_is_refused_and_nothing_is_written(world):
    response = world.pia_client.post("/portal/links/", {"destination_url": "https://evil.example.org/", "channel": "blog"})
    assert response.status_code == 400
    assert b"The host evil.example.org is not one of the merchant&#x27;s domains (shop.example.com)." in response.content
    assert not ReferralLink.objects.filter(promoter=world.pia).exists()


def test_a_promoter_awaiting_approval_cannot_make_links(world):
    Promoter.objects.filter(pk=world.pia.pk).update(status="pending")
    page = world.pia_client.get("/portal/")
    assert b"waiting for the merchant's approval" in page.content
    response = world.pia_client.post("/portal/links/", {"destination_url": "https://shop.example.com/", "channel": "blog"})
    assert response.status_code == 400
    assert b"Your account is not active: you can make links once the merchant approves it." in response.content
    assert not ReferralLink.objects.filter(promoter=world.pia).exists()


def test_the_link_page_adds_sub_ids_and_draws_the_qr_code(world):
    world.pia_client.post("/portal/links/", {"destination_url": "https://shop.example.com/", "channel": "blog"})
    link = ReferralLink.objects.get(promoter=world.pia)
    page = world.pia_client.get(f"/portal/links/{link.code}/", {"sub1": "video 1", "sub3": "spring"})
    html = page.content.decode()
    assert page.status_code == 200
    assert f'value="http://testserver/r/{link.code}?sub1=video+1&amp;sub3=spring"' in html
    assert re.search(r'<svg viewBox="0 0 (\d+) \1" class="qr"><title>QR code of the link</title><path ', html)
    assert "<title>QR code of the link</title>" in html
    svg = world.pia_client.get(f"/portal/links/{link.code}/qr.svg", {"sub1": "video 1"})
    assert svg["Content-Type"] == "image/svg+xml"
    assert svg["Content-Disposition"] == f'attachment; filename="qr-{link.code}.svg"'
    assert f"<title>http://testserver/r/{link.code}?sub1=video+1</title>".encode() in svg.content


def test_commissions_are_listed_filtered_and_exported(sold):
    page = sold.pia_client.get("/portal/commissions/")
    assert page.status_code == 200
    assert b"1 commission, 10.00 USD in all." in page.content
    assert b"Own sale" in page.content
    none = sold.pia_client.get("/portal/commissions/", {"status": "approved"})
    assert b"0 commissions, 0.00 USD in all." in none.content
    sponsor = sold.sam_client.get("/portal/commissions/", {"kind": "override"})
    assert b"1 commission, 5.00 USD in all." in sponsor.content
    assert b"Team override, level 1" in sponsor.content
    bad = sold.pia_client.get("/portal/commissions/", {"since": "2025-02-01", "until": "2025-01-01"})
    assert bad.status_code == 400
    assert b"The end date is before the start date." in bad.content

    export = sold.sam_client.get("/portal/commissions.csv")
    assert export["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert rows[0] == ["id", "created_at", "event", "kind", "level", "description", "amount", "currency", "status", "available_at"]
    assert [r[3:9] for r in rows[1:]] == [["override", "1", "Team override, level 1", "5.00", "USD", "pending"]]


def test_the_team_page_shows_the_tree_and_each_levels_override_totals_only(sold):
    w = sold.w
    deep = w.promoter("Dee", sponsor=sold.pia)
    page = sold.sam_client.get("/portal/team/")
    html = page.content.decode()
    assert page.status_code == 200
    assert '<tr><th scope="row">1</th><td class="num">5.00</td><td class="num">1</td><td class="num">5%</td><td class="num">1</td></tr>' in html
    assert '<tr><th scope="row">2</th><td class="num">0.00</td><td class="num">1</td><td class="num">3%</td><td class="num">0</td></tr>' in html
    assert html.index("Pia") < html.index("Dee")
    assert "pia@example.com" not in html and deep.email not in html
    assert "10.00" not in html  # Pia's own commission is hers


def test_payouts_and_statements(sold):
    period = timezone.now().strftime("%Y-%m")
    statement, _ = statements.statement_write(promoter=sold.pia, period=period)
    page = sold.pia_client.get("/portal/payouts/")
    assert page.status_code == 200
    assert f'href="/portal/statements/{statement.pk}.pdf"'.encode() in page.content
    pdf = sold.pia_client.get(f"/portal/statements/{statement.pk}.pdf")
    assert (pdf["Content-Type"], pdf.content[:5]) == ("application/pdf", b"%PDF-")
    assert pdf["Content-Disposition"] == f'attachment; filename="statement-{period}.pdf"'
    text = sold.pia_client.get(f"/portal/statements/{statement.pk}.csv").content.decode()
    assert text.splitlines()[:3] == [f"statement,{period},Pia,USD", "Opening balance,0.00", "Commissions on your own sales,10.00"]


def test_payout_details_are_saved_through_the_payout_service(world):
    response = world.pia_client.post("/portal/payout-details/", {"kind": "paypal", "paypal_email": "pia@pay.example.com", "iban": "leftover"})
    assert (response.status_code, response["Location"]) == (302, "/portal/payout-details/")
    method = PayoutMethod.objects.get(promoter=world.pia)
    assert (method.kind, method.paypal_email, method.iban) == ("paypal", "pia@pay.example.com", "")
    assert PayoutMethodChange.objects.get(promoter=world.pia).changed_by == f"promoter:{world.pia.pk} (portal)"
    page = world.pia_client.get("/portal/payout-details/")
    assert b"Now: PayPal (pia@pay.example.com)." in page.content


def test_bad_payout_details_are_refused_and_nothing_is_written(world):
    response = world.pia_client.post("/portal/payout-details/", {"kind": "bank", "account_holder": "Pia", "iban": "DE00 1234"})
    assert response.status_code == 400
    assert b'class="error"' in response.content
    assert not PayoutMethod.objects.exists()
    assert not PayoutMethodChange.objects.exists()


def test_a_login_with_two_programs_switches_between_them(world, other_merchant):
    from tests.factories import PromoterFactory

    other = PromoterFactory(program__merchant=other_merchant, name="Pia at Other", email="pia@example.com")
    Promoter.objects.filter(pk=other.pk).update(user=world.pia_user)
    page = world.pia_client.get("/portal/")
    assert b"Hello, Pia</h1>" in page.content
    assert b'<select id="switch-promoter" name="promoter">' in page.content
    response = world.pia_client.post("/portal/switch/", {"promoter": other.pk})
    assert response.status_code == 302
    assert b"Hello, Pia at Other</h1>" in world.pia_client.get("/portal/").content
