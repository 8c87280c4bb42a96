import pytest

from merchants.models import Program

pytestmark = pytest.mark.django_db

DEFAULTS = {
    "currency": "USD",
    "attribution_model": "mixed",
    "first_click_share": "0.60",
    "last_click_share": "0.40",
    "lookback_days": 30,
    "registration_bounty": "0.00",
    "first_purchase_rate": "0.10",
    "repeat_purchase_rate": "0.05",
    "tier_rates": ["0.05", "0.03", "0.02", "0.01"],
    "compress_inactive": False,
    "duplicate_click_seconds": 0,
    "hold_days": 30,
    "fraud": {
        "bots": True,
        "click_flood_max": 20,
        "click_flood_seconds": 60,
        "self_referral_email": True,
        "min_click_to_conversion_seconds": 0,
        "ip_max_promoters": 0,
        "max_order_amount": None,
    },
}


def test_every_field_but_name_has_the_contract_default(api):
    response = api.post("/api/v1/programs/", {"name": "Default"}, format="json")
    assert response.status_code == 201
    program = Program.objects.get()
    assert response.json() == {"id": program.pk, "name": "Default", **DEFAULTS, "is_default": True}


def test_the_first_program_is_the_default(api):
    first = api.post("/api/v1/programs/", {"name": "A"}, format="json").json()
    second = api.post("/api/v1/programs/", {"name": "B", "currency": "EUR"}, format="json").json()
    assert (first["is_default"], second["is_default"]) == (True, False)


def test_all_fields_round_trip(api):
    payload = {
        "name": "Creators", "currency": "JPY", "attribution_model": "time_decay", "first_click_share": "0.5",
        "last_click_share": "0.25", "lookback_days": 90, "registration_bounty": "500", "first_purchase_rate": "0.125",
        "repeat_purchase_rate": "0", "tier_rates": ["0.1"] * 10, "compress_inactive": True,
        "duplicate_click_seconds": 30, "hold_days": 0,
    }
    body = api.post("/api/v1/programs/", payload, format="json").json()
    assert body == {
        "id": body["id"], **payload, "first_click_share": "0.50", "repeat_purchase_rate": "0.00",
        "tier_rates": ["0.10"] * 10, "fraud": DEFAULTS["fraud"], "is_default": True,
    }
    assert Program.objects.get().registration_bounty_minor == 500


def test_tier_rates_may_be_empty(api):
    assert api.post("/api/v1/programs/", {"name": "Flat", "tier_rates": []}, format="json").json()["tier_rates"] == []


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"name": ["A name is required."]}),
        ({"name": ""}, {"name": ["A name is required."]}),
        ({"name": "x", "first_purchase_rate": "1.01"}, {"first_purchase_rate": ["The first purchase rate must lie between 0 and 1."]}),
        ({"name": "x", "repeat_purchase_rate": "-0.1"}, {"repeat_purchase_rate": ["The repeat purchase rate must lie between 0 and 1."]}),
        ({"name": "x", "first_click_share": "0.7", "last_click_share": "0.4"}, {"last_click_share": ["The first and last click shares add up to more than 1."]}),
        ({"name": "x", "tier_rates": ["0.01"] * 11}, {"tier_rates": ["At most 10 levels."]}),
        ({"name": "x", "tier_rates": ["0.5", "2"]}, {"tier_rates": ["The level 2 rate must lie between 0 and 1."]}),
        ({"name": "x", "tier_rates": "0.05"}, {"tier_rates": ["Must be a list of decimal strings."]}),
        ({"name": "x", "attribution_model": "u_shaped"}, {"attribution_model": ["Choose one of: first_click, last_click, mixed, linear, time_decay."]}),
        ({"name": "x", "currency": "usd"}, {"currency": ['Give an ISO 4217 currency code such as "USD".']}),
        ({"name": "x", "lookback_days": 0}, {"lookback_days": ["Must be a whole number from 1 to 3650."]}),
        ({"name": "x", "hold_days": -1}, {"hold_days": ["Must be a whole number from 0 to 3650."]}),
        ({"name": "x", "hold_days": "30"}, {"hold_days": ["Must be a whole number from 0 to 3650."]}),
        ({"name": "x", "registration_bounty": "-1"}, {"registration_bounty": ["Must not be negative."]}),
        ({"name": "x", "registration_bounty": "1.001"}, {"registration_bounty": ["At most 2 decimals are allowed in USD."]}),
        ({"name": "x", "compress_inactive": "yes"}, {"compress_inactive": ["Must be true or false."]}),
        ({"name": "x", "first_purchase_rate": "0.1234567"}, {"first_purchase_rate": ["The first purchase rate may have at most 6 decimals."]}),
        ({"name": "x", "colour": "red"}, {"colour": ["Unknown field."]}),
    ],
)
def test_invalid_programs_are_400_and_nothing_is_written(api, payload, fields):
    response = api.post("/api/v1/programs/", payload, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "invalid", "message": "The request is not valid; see fields.", "fields": fields}
    assert Program.objects.count() == 0


def test_patch_changes_only_what_is_sent(api):
    program_id = api.post("/api/v1/programs/", {"name": "Default"}, format="json").json()["id"]
    response = api.patch(f"/api/v1/programs/{program_id}/", {"first_purchase_rate": "0.15", "tier_rates": ["0.05"]}, format="json")
    assert response.status_code == 200
    assert response.json() == {"id": program_id, "name": "Default", **DEFAULTS, "first_purchase_rate": "0.15", "tier_rates": ["0.05"], "is_default": True}
    assert api.get(f"/api/v1/programs/{program_id}/").json()["first_purchase_rate"] == "0.15"


def test_patch_that_breaks_a_rule_changes_nothing(api):
    program_id = api.post("/api/v1/programs/", {"name": "Default"}, format="json").json()["id"]
    response = api.patch(f"/api/v1/programs/{program_id}/", {"name": "New", "first_click_share": "0.9"}, format="json")
    assert response.status_code == 400
    program = Program.objects.get()
    assert (program.name, str(program.first_click_share)) == ("Default", "0.600000")


def test_currency_is_fixed_once_there_are_events(api, django_capture_on_commit_callbacks):
    program_id = api.post("/api/v1/programs/", {"name": "Default"}, format="json").json()["id"]
    api.post("/api/v1/events/", {"type": "registration", "customer_id": "c"}, format="json")
    response = api.patch(f"/api/v1/programs/{program_id}/", {"currency": "EUR"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"currency": ["The currency cannot change once the program has events."]}


def test_put_and_delete_are_not_allowed(api):
    program_id = api.post("/api/v1/programs/", {"name": "Default"}, format="json").json()["id"]
    for method in ("put", "delete"):
        response = getattr(api, method)(f"/api/v1/programs/{program_id}/", {"name": "x"}, format="json")
        assert response.status_code == 405
        assert response.json()["error"]["code"] == "method_not_allowed"
    assert Program.objects.get().name == "Default"


def test_another_merchants_program_is_404(api, other_api):
    program_id = api.post("/api/v1/programs/", {"name": "Default"}, format="json").json()["id"]
    assert other_api.get(f"/api/v1/programs/{program_id}/").status_code == 404
    assert other_api.patch(f"/api/v1/programs/{program_id}/", {"name": "Mine"}, format="json").status_code == 404
    assert other_api.get("/api/v1/programs/").json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert Program.objects.get().name == "Default"


def test_fraud_rules_are_changed_one_at_a_time_and_checked(api):
    program_id = api.post("/api/v1/programs/", {"name": "Default"}, format="json").json()["id"]
    response = api.patch(
        f"/api/v1/programs/{program_id}/", {"fraud": {"ip_max_promoters": 5, "max_order_amount": "5000"}}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["fraud"] == {**DEFAULTS["fraud"], "ip_max_promoters": 5, "max_order_amount": "5000.00"}
    assert Program.objects.get().fraud_rules["max_order_amount"] == "5000.00"
    refused = api.patch(
        f"/api/v1/programs/{program_id}/",
        {"fraud": {"bots": "yes", "click_flood_max": -1, "max_order_amount": "1.001", "speed": 3}, "hold_days": 5},
        format="json",
    )
    assert refused.status_code == 400
    assert sorted(refused.json()["error"]["fields"]) == [
        "fraud.bots", "fraud.click_flood_max", "fraud.max_order_amount", "fraud.speed",
    ]
    program = Program.objects.get()
    assert (program.hold_days, program.fraud_rules["ip_max_promoters"], program.fraud_rules["bots"]) == (30, 5, True)
    off = api.patch(f"/api/v1/programs/{program_id}/", {"fraud": {"max_order_amount": None, "bots": False}}, format="json")
    assert off.json()["fraud"] == {**DEFAULTS["fraud"], "ip_max_promoters": 5, "bots": False}
