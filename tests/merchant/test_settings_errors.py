"""A program settings form that is refused writes nothing and says why, on the field."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry

from merchants.models import Program

pytestmark = pytest.mark.django_db

VALID = {
    "name": "Default", "currency": "USD", "attribution_model": "mixed", "first_click_share": "0.60",
    "last_click_share": "0.40", "lookback_days": "30", "registration_bounty": "0.00", "first_purchase_rate": "0.10",
    "repeat_purchase_rate": "0.05", "tier_rates": "0.05, 0.03", "duplicate_click_seconds": "0", "hold_days": "30",
    "fraud_bots": "on", "fraud_click_flood_max": "20", "fraud_click_flood_seconds": "60", "fraud_self_referral_email": "on",
    "fraud_min_click_to_conversion_seconds": "0", "fraud_ip_max_promoters": "0", "fraud_max_order_amount": "",
}


def post(world, **changes):
    return world.client.post(f"/merchant/programs/{world.program.pk}/settings/", {**VALID, **changes})


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        # Refused by the service (merchants.services.program_update), shown on its field.
        ({"first_click_share": "0.70", "last_click_share": "0.50", "name": "Renamed"}, "last_click_share",
         "The first and last click shares add up to more than 1."),
        ({"currency": "EUR", "hold_days": "7"}, "currency", "The currency cannot change once the program has events."),
        ({"first_purchase_rate": "1.5", "name": "Renamed"}, "first_purchase_rate", "The first purchase rate must lie between 0 and 1."),
        ({"tier_rates": "0.05, lots", "hold_days": "7"}, "tier_rates", "The level 2 rate must be a decimal string such as"),
        ({"registration_bounty": "1.005", "name": "Renamed"}, "registration_bounty", "At most 2 decimals are allowed in USD."),
        ({"fraud_max_order_amount": "12.345", "name": "Renamed"}, "fraud_max_order_amount",
         "At most 2 decimals are allowed in USD. (null: off)"),
        # Refused by the form before the service is called.
        ({"lookback_days": "soon", "name": "Renamed"}, "lookback_days", "Enter a whole number."),
        ({"hold_days": "-1", "name": "Renamed"}, "hold_days", "Ensure this value is greater than or equal to 0."),
    ],
)
def test_a_refused_change_writes_nothing_and_names_the_field(world, changes, field, message):
    before = Program.objects.values().get(pk=world.program.pk)
    response = post(world, **changes)
    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing was saved" in page
    error_at = page.index(f'id="id_{field}_error"')
    assert message in page[error_at:error_at + 300]
    assert Program.objects.values().get(pk=world.program.pk) == before
    assert not LogEntry.objects.exists()


def test_the_valid_form_unchanged_saves_the_same_terms(world):
    before = Program.objects.values().get(pk=world.program.pk)
    assert post(world).status_code == 302
    after = Program.objects.values().get(pk=world.program.pk)
    before.pop("updated_at"), after.pop("updated_at")
    assert after == before
