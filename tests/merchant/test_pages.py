"""The merchant pages show the figures, the explorer, the settings and the approvals."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from affiliate.models import Click
from merchants.models import Program
from promoters import services as promoter_services
from promoters.models import Promoter
from tests.portal.conftest import make_login

pytestmark = pytest.mark.django_db


def text(response) -> str:
    assert response.status_code == 200, response.content[:500]
    return response.content.decode()


def test_overview_shows_the_kpis_and_the_chart(world):
    page = text(world.client.get("/merchant/"))
    for kpi, value in [("clicks", "7"), ("registrations", "1"), ("purchases", "2"), ("conversion_rate", "28.6%"),
                       ("revenue", "270.00"), ("pending", "17.50"), ("approved", "12.00"), ("paid", "5.00")]:
        assert f'data-kpi="{kpi}">{value}</span>' in page, kpi
    assert "Money (USD)" in page
    assert 'id="chart-data"' in page and "vendor/chartjs/chart.umd.min.js" in page and "merchant/merchant.js" in page
    assert "<caption" in page and "https://" not in page.split("<body>")[0]


def test_top_promoters_and_channels_pages(world):
    page = text(world.client.get("/merchant/promoters/"))
    assert page.index("By revenue attributed") < page.index(">Pia") < page.index(">Olly")
    assert "150.00" in page and "7.50" in page and "50.0%" in page
    page = text(world.client.get("/merchant/channels/"))
    assert page.index(">youtube<") < page.index(">blog<")
    assert "24.00" in page and "10.50" in page and "34.50" in page and "<caption>" in page


def test_a_range_form_error_is_shown_and_the_default_days_are_used(world):
    response = world.client.get("/merchant/", {"since": "2026-02-10", "until": "2026-02-01"})
    assert response.status_code == 400
    assert "The end of the range comes before its start." in response.content.decode()


def test_conversions_list_and_the_attribution_explorer(world):
    page = text(world.client.get("/merchant/conversions/"))
    assert f"/merchant/conversions/{world.o2['id']}/" in page
    page = text(world.client.get("/merchant/conversions/", {"q": "o2", "type": "purchase"}))
    assert f"#{world.o2['id']}<" in page and f"#{world.o1['id']}<" not in page
    assert '<td class="num">200.00 USD</td><td class="num">2</td></tr>' in page  # two promoters credited
    page = text(world.client.get(f"/merchant/conversions/{world.o2['id']}/"))
    # Three touchpoints: Olly's youtube 0.60 / 120.00, Pia's blog 0, Pia's youtube 0.40 / 80.00.
    assert page.count("<td>youtube</td>") == 2 and page.count("<td>blog</td>") == 1
    first_touch = Click.objects.filter(link=world.olly_yt).earliest("created_at").created_at.strftime("%Y-%m-%d %H:%M:%S")
    assert f"<tr><td>1</td><td>{first_touch}</td><th scope=\"row\">Olly</th><td>youtube</td>" in page
    assert "0.60" in page and "120.00" in page and "0.40" in page and "80.00" in page
    assert "12.00 USD" in page and "8.00 USD" in page and "4.00 USD" in page
    page = text(world.client.get(f"/merchant/conversions/{world.refund['id']}/"))
    assert "-30.00" in page and "-3.00 USD" in page and "-1.50 USD" in page


def test_program_settings_are_saved_through_the_service(world):
    url = f"/merchant/programs/{world.program.pk}/settings/"
    page = text(world.client.get(url))
    assert 'value="0.10"' in page and 'value="0.05, 0.03"' in page
    data = {
        "name": "Default", "currency": "USD", "attribution_model": "last_click", "first_click_share": "0.60",
        "last_click_share": "0.40", "lookback_days": "45", "registration_bounty": "2.50", "first_purchase_rate": "0.12",
        "repeat_purchase_rate": "0.05", "tier_rates": "0.05, 0.02, 0.01", "duplicate_click_seconds": "0", "hold_days": "14",
        "fraud_bots": "on", "fraud_click_flood_max": "20", "fraud_click_flood_seconds": "60", "fraud_self_referral_email": "on",
        "fraud_min_click_to_conversion_seconds": "5", "fraud_ip_max_promoters": "0", "fraud_max_order_amount": "5000",
    }
    response = world.client.post(url, data)
    assert response.status_code == 302
    program = Program.objects.get(pk=world.program.pk)
    assert (program.attribution_model, program.lookback_days, program.registration_bounty_minor, str(program.first_purchase_rate),
            program.tier_rates, program.hold_days, program.compress_inactive) == (
        "last_click", 45, 250, "0.120000", ["0.05", "0.02", "0.01"], 14, False,
    )
    assert program.fraud_rules == {
        "bots": True, "click_flood_max": 20, "click_flood_seconds": 60, "self_referral_email": True,
        "min_click_to_conversion_seconds": 5, "ip_max_promoters": 0, "max_order_amount": "5000.00",
    }
    # The audit trail: the admin's history of the program names the login and the changes.
    entry = LogEntry.objects.get()
    assert (entry.user_id, entry.object_id, entry.object_repr) == (world.staff.pk, str(program.pk), str(program))
    assert entry.change_message == (
        "Settings changed: attribution_model mixed → last_click; lookback_days 30 → 45; registration_bounty 0.00 → 2.50; "
        "first_purchase_rate 0.10 → 0.12; tier_rates 0.05, 0.03 → 0.05, 0.02, 0.01; hold_days 30 → 14; "
        "fraud_min_click_to_conversion_seconds 0 → 5; fraud_max_order_amount  → 5000.00 "
        "(merchant dashboard, Worked Example Shop staff)"
    )


def test_approvals_list_approve_and_reject(world):
    world.program.join_requires_approval = True
    world.program.save()
    ann = promoter_services.promoter_join(sponsor=world.pia, user=make_login("ann@example.com"), name="Ann")
    bob = promoter_services.promoter_join(sponsor=world.pia, user=make_login("bob@example.com"), name="Bob")
    page = text(world.client.get("/merchant/approvals/"))
    assert "Ann" in page and "Bob" in page and "ann@example.com" in page
    assert "1 promoter" not in page
    assert "2 promoters waiting for approval" in text(world.client.get("/merchant/"))
    assert world.client.post(f"/merchant/approvals/{ann.pk}/", {"action": "approve"}).status_code == 302
    assert world.client.post(f"/merchant/approvals/{bob.pk}/", {"action": "reject"}).status_code == 302
    assert dict(Promoter.objects.filter(pk__in=[ann.pk, bob.pk]).values_list("name", "status")) == {"Ann": "active", "Bob": "inactive"}
    assert "Nobody is waiting." in text(world.client.get("/merchant/approvals/"))
    assert sorted((e.object_repr.split(" <")[0], e.change_message.split(" (")[0], e.user_id) for e in LogEntry.objects.all()) == [
        ("Ann", "Approved to join", world.staff.pk), ("Bob", "Rejected: not approved to join", world.staff.pk),
    ]
    # A second decision on someone no longer pending changes nothing.
    response = world.client.post(f"/merchant/approvals/{bob.pk}/", {"action": "approve"}, follow=True)
    assert "Only a promoter awaiting approval can be approved." in text(response)
    assert Promoter.objects.get(pk=bob.pk).status == "inactive"
    response = world.client.post(f"/merchant/approvals/{ann.pk}/", {"action": "reject"}, follow=True)
    assert "Only a promoter awaiting approval can be rejected." in text(response)
    assert Promoter.objects.get(pk=ann.pk).status == "active"
    assert LogEntry.objects.count() == 2  # refused decisions leave no trail
