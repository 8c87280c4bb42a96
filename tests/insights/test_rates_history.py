"""A new own rate applies to events received from the change on, however late they are
processed; the audit recomputes the same commissions from the stored basis."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command

from affiliate.models import ConversionEvent
from payouts.models import Basis, Commission
from promoters.models import PromoterRateHistory
from promoters.services import promoter_update
from tests.payouts.world import World, at

pytestmark = pytest.mark.django_db


def _post(w, **payload):
    payload["occurred_at"] = payload["occurred_at"].isoformat()
    response = w.api.post("/api/v1/events/", payload, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def _directs(event_id):
    return list(Commission.objects.filter(event_id=event_id, kind="direct").values_list("amount_minor", "rate"))


def test_event_received_before_a_change_but_processed_after_earns_the_old_rate(django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, hold_days=400, tier_rates=[])
    anna = w.promoter("Anna", commission_rate="0.20")
    click1 = w.journey((anna, at(1)))
    click2 = w.journey((anna, at(1)))
    # Received while the rate is 0.20, but left queued (a backlog): processed after the change.
    with django_capture_on_commit_callbacks(execute=False) as queued:
        early = _post(w, type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click1, occurred_at=at(2))
    assert ConversionEvent.objects.get(pk=early).status == "queued"

    promoter_update(promoter=anna, commission_rate="0.30")
    # The first change also writes the rate until then, from the promoter's creation.
    assert list(PromoterRateHistory.objects.filter(promoter=anna).values_list("rate", flat=True)) == [
        Decimal("0.200000"), Decimal("0.300000"),
    ]

    late = w.send(type="purchase", customer_id="c2", order_id="o2", amount="100.00", click_id=click2, occurred_at=at(3))["id"]
    for callback in queued:
        callback()
    assert ConversionEvent.objects.get(pk=early).status == "processed"
    # 100.00 × 0.20 = 20.00 for the early event; 100.00 × 0.30 = 30.00 for the later one.
    assert _directs(early) == [(2000, Decimal("0.200000"))]
    assert _directs(late) == [(3000, Decimal("0.300000"))]
    assert Basis.objects.get(event_id=early).promoters[str(anna.pk)][3] == "0.200000"
    call_command("audit_ledger")  # raises on any difference


def test_rate_back_to_the_program_rates_and_no_history_when_unchanged(django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, hold_days=400, tier_rates=[])
    bob = w.promoter("Bob")
    promoter_update(promoter=bob, name="Bob B")
    assert not PromoterRateHistory.objects.filter(promoter=bob).exists()
    click1 = w.journey((bob, at(1)))
    with django_capture_on_commit_callbacks(execute=False) as queued:
        early = _post(w, type="purchase", customer_id="c1", order_id="o1", amount="50.00", click_id=click1, occurred_at=at(2))
    promoter_update(promoter=bob, commission_rate="0.5")
    promoter_update(promoter=bob, commission_rate="0.500000")  # the same rate: no row
    assert list(PromoterRateHistory.objects.filter(promoter=bob).values_list("rate", flat=True)) == [None, Decimal("0.5")]
    for callback in queued:
        callback()
    # Received under the program's first-purchase rate (10%): 50.00 × 0.10 = 5.00.
    assert _directs(early) == [(500, Decimal("0.100000"))]


def test_the_api_patch_records_the_history(api, promoter):
    # promoter: the conftest's Anna, on the program's rates (None) since its creation.
    response = api.patch(f"/api/v1/promoters/{promoter.pk}/", {"commission_rate": "0.125"}, format="json")
    assert response.status_code == 200, response.content
    rows = list(PromoterRateHistory.objects.filter(promoter=promoter).values_list("rate", "effective_from"))
    assert [r for r, _ in rows] == [None, Decimal("0.125")]
    assert rows[0][1] == promoter.created_at and rows[1][1] > promoter.created_at
    bad = api.patch(f"/api/v1/promoters/{promoter.pk}/", {"commission_rate": "1.5"}, format="json")
    assert bad.status_code == 400
    assert PromoterRateHistory.objects.filter(promoter=promoter).count() == 2  # nothing for a refused change


def test_a_rate_changed_in_the_admin_records_the_history(promoter, client, django_user_model):
    # Given finance edits Anna's own rate (on the program's rates until now) in the admin
    root = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    url = f"/admin/promoters/promoter/{promoter.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {name: ("" if value is None else value) for name, value in form.initial.items() if name in form.fields}
    data.update(commission_rate="0.15", user="")
    response = client.post(url, data)
    assert response.status_code == 302, response.content[:2000]

    # Then the change is in the history like any other: the rate until now, then 0.15
    promoter.refresh_from_db()
    assert promoter.commission_rate == Decimal("0.150000")
    assert list(PromoterRateHistory.objects.filter(promoter=promoter).values_list("rate", flat=True)) == [None, Decimal("0.150000")]

    # And saving the form again without a rate change records nothing more
    data.update(commission_rate="0.15", name="Anna B.")
    assert client.post(url, data).status_code == 302
    assert PromoterRateHistory.objects.filter(promoter=promoter).count() == 2
