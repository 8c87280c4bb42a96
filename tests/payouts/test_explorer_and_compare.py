"""The attribution explorer (API and admin) and attribution_compare."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.utils import timezone

from payouts.models import Commission, Entry
from tests.payouts.world import World

pytestmark = pytest.mark.django_db


@pytest.fixture
def journey(django_capture_on_commit_callbacks):
    # Mixed 0.60/0.40 over Ann, Ben, Cleo on 100.00: Ann (first) 0.60 = 60.00, Ben (the
    # middle, which the defaults leave 0) nothing, Cleo (last) 0.40 = 40.00.
    w = World(django_capture_on_commit_callbacks, hold_days=400, tier_rates=[])
    a, b, c = w.promoter("Ann"), w.promoter("Ben"), w.promoter("Cleo")
    now = timezone.now().replace(microsecond=0)
    click = w.journey((a, now - timezone.timedelta(days=3)), (b, now - timezone.timedelta(days=2)), (c, now - timezone.timedelta(days=1)))
    body = w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=now - timezone.timedelta(hours=1))
    return w, body, (a, b, c)


def test_the_journey_endpoint_shows_every_touchpoint(journey, other_api):
    w, body, (a, b, c) = journey
    response = w.api.get(f"/api/v1/events/{body['id']}/journey/")
    assert response.status_code == 200
    data = response.json()
    assert (data["attribution_model"], data["amount"], data["lookback_days"]) == ("mixed", "100.00", 30)
    assert [(t["position"], t["promoter_name"], t["channel"], t["weight"], t["revenue"]) for t in data["touchpoints"]] == [
        (0, "Ann", "ch-Ann", "0.60", "60.00"),
        (1, "Ben", "ch-Ben", "0.00", "0.00"),
        (2, "Cleo", "ch-Cleo", "0.40", "40.00"),
    ]
    assert [t["link"] for t in data["touchpoints"]] == [w.links[a.pk].code, w.links[b.pk].code, w.links[c.pk].code]
    assert [(r["promoter_name"], r["weight"], r["revenue"]) for r in data["credits"]] == [("Ann", "0.60", "60.00"), ("Cleo", "0.40", "40.00")]
    assert other_api.get(f"/api/v1/events/{body['id']}/journey/").status_code == 404


def test_the_admin_explorer_page(journey, client):
    w, body, _ = journey
    User.objects.create_superuser("finance", "finance@example.com", "pw")
    client.force_login(User.objects.get(username="finance"))
    page = client.get(f"/admin/attribution/touchpoint/explorer/{body['id']}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Attribution of event" in html and "Ann" in html and "Cleo" in html and "60.00" in html and "ch-Ben" in html
    search = client.get("/admin/attribution/touchpoint/explorer/", {"event": body["id"]})
    assert search.status_code == 200 and "Cleo" in search.content.decode()


def test_attribution_compare_prints_what_would_change_and_writes_nothing(journey):
    w, body, (a, b, c) = journey
    before = (Commission.objects.count(), Entry.objects.count())
    out = io.StringIO()
    call_command("attribution_compare", "--model", "linear", "--days", "30", stdout=out)
    lines = out.getvalue().splitlines()
    # Linear: 33.34 / 33.33 / 33.33; first purchase 10%: 3.33 each.
    # Now: Ann 60.00 → 6.00, Ben nothing, Cleo 40.00 → 4.00.
    assert lines[0] == "1 purchases of the last 30 days recomputed under linear (currency USD; gross of refunds; nothing written)"
    rows = {line.split()[1]: line.split()[2:] for line in lines[3:6]}
    assert rows["Ann"] == ["60.00", "33.34", "-26.66", "6.00", "3.33", "-2.67"]
    assert rows["Ben"] == ["0.00", "33.33", "+33.33", "0.00", "3.33", "+3.33"]
    assert rows["Cleo"] == ["40.00", "33.33", "-6.67", "4.00", "3.33", "-0.67"]
    assert lines[-1].split() == ["total", "100.00", "100.00", "0.00", "10.00", "9.99", "-0.01"]
    assert (Commission.objects.count(), Entry.objects.count()) == before


def test_the_explorer_needs_the_view_permission(journey, client):
    w, body, _ = journey
    User.objects.create_user("clerk", "clerk@example.com", "pw", is_staff=True)
    client.force_login(User.objects.get(username="clerk"))
    assert client.get(f"/admin/attribution/touchpoint/explorer/{body['id']}/").status_code == 403
