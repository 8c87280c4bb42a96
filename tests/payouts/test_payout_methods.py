"""Payout methods: PayPal, bank (IBAN/BIC checked by schwifty) or by hand; every change logged
with the IBAN masked; the merchant API (the IBAN shown masked, PATCH of some fields, a masked
IBAN sent back) and its isolation; the SEPA export still carries the IBAN whole."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator

from affiliate import services as affiliate_services
from core.errors import ServiceValidationError
from payouts import batches, exports
from payouts.methods import mask_iban, payout_method_set
from payouts.models import PayoutBatch, PayoutMethod, PayoutMethodChange, PayoutPolicy
from tests.payouts.world import World

pytestmark = pytest.mark.django_db

IBAN_DE = "DE89370400440532013000"
IBAN_FR = "FR1420041010050500013M02606"
MANUAL = {"kind": "manual", "paypal_email": "", "account_holder": "", "iban": "", "bic": ""}


def logged(promoter):
    return list(PayoutMethodChange.objects.filter(promoter=promoter).order_by("id").values_list("changed_by", "before", "after"))


def stored(promoter):
    m = PayoutMethod.objects.get(promoter=promoter)
    return {"kind": m.kind, "paypal_email": m.paypal_email, "account_holder": m.account_holder, "iban": m.iban, "bic": m.bic}


def refused(promoter, **fields) -> dict:
    """Set a method that must be refused; returns the problems and checks nothing was written."""
    methods_before = list(PayoutMethod.objects.filter(promoter=promoter).values())
    changes_before = PayoutMethodChange.objects.count()
    with pytest.raises(ServiceValidationError) as caught:
        payout_method_set(promoter=promoter, changed_by="promoter:1", **fields)
    assert list(PayoutMethod.objects.filter(promoter=promoter).values()) == methods_before
    assert PayoutMethodChange.objects.count() == changes_before
    return caught.value.fields


# --- The service ----------------------------------------------------------------------------


def test_a_bank_account_is_stored_compact_and_upper_case_and_logged_masked(promoter):
    method = payout_method_set(
        promoter=promoter, kind="bank", changed_by=f"promoter:{promoter.pk}",
        account_holder="  Anna Müller ", iban="de89 3704 0044 0532 0130 00", bic="cobadeffxxx",
    )
    assert stored(promoter) == {
        "kind": "bank", "paypal_email": "", "account_holder": "Anna Müller", "iban": IBAN_DE, "bic": "COBADEFFXXX",
    }
    assert method.pk == PayoutMethod.objects.get(promoter=promoter).pk
    assert logged(promoter) == [(
        f"promoter:{promoter.pk}",
        MANUAL,
        {"kind": "bank", "paypal_email": "", "account_holder": "Anna Müller", "iban": "DE****************3000", "bic": "COBADEFFXXX"},
    )]


def test_the_bic_is_optional_and_may_have_8_characters(promoter):
    payout_method_set(promoter=promoter, kind="bank", changed_by="x", account_holder="Anna", iban=IBAN_FR)
    assert stored(promoter)["bic"] == ""
    payout_method_set(promoter=promoter, kind="bank", changed_by="x", account_holder="Anna", iban=IBAN_FR, bic="bnpafrpp")
    assert stored(promoter)["bic"] == "BNPAFRPP"


@pytest.mark.parametrize(
    "iban, problem",
    [
        ("DE89370400440532013001", "Not a valid IBAN (invalid checksum digits)."),
        ("DE8937040044053201300", "Not a valid IBAN (invalid IBAN length)."),
        ("XX89370400440532013000", "Not a valid IBAN (unknown country-code 'XX')."),
        ("DE89-3704", "Not a valid IBAN (invalid characters in IBAN DE89-3704)."),
    ],
)
def test_an_invalid_iban_is_refused(promoter, iban, problem):
    assert refused(promoter, kind="bank", account_holder="Anna", iban=iban) == {"iban": [problem]}


def test_a_bic_of_another_country_than_the_iban_is_refused(promoter):
    assert refused(promoter, kind="bank", account_holder="Anna", iban=IBAN_DE, bic="BNPAFRPP") == {
        "bic": ["The BIC is of country FR, the IBAN of DE: they must be of one country."]
    }


def test_an_invalid_bic_is_refused(promoter):
    assert refused(promoter, kind="bank", account_holder="Anna", iban=IBAN_DE, bic="COBAXXFF") == {
        "bic": ["Not a valid BIC (invalid country code 'XX')."]
    }


def test_a_bank_account_needs_holder_and_iban(promoter):
    assert refused(promoter, kind="bank") == {
        "account_holder": ["Required for a bank payout method."],
        "iban": ["Required for a bank payout method."],
    }


def test_paypal_needs_a_valid_email(promoter):
    assert refused(promoter, kind="paypal") == {"paypal_email": ["Required for a PayPal payout method."]}
    assert refused(promoter, kind="paypal", paypal_email="anna@") == {"paypal_email": ["Enter a valid email address."]}
    payout_method_set(promoter=promoter, kind="paypal", changed_by="x", paypal_email=" anna@example.com ")
    assert stored(promoter) == {"kind": "paypal", "paypal_email": "anna@example.com", "account_holder": "", "iban": "", "bic": ""}


def test_fields_another_kind_uses_are_refused_not_ignored(promoter):
    assert refused(promoter, kind="paypal", paypal_email="anna@example.com", iban=IBAN_DE) == {
        "iban": ["Not used by a paypal payout method: leave it empty."]
    }
    assert refused(promoter, kind="manual", account_holder="Anna") == {
        "account_holder": ["Not used by a manual payout method: leave it empty."]
    }


def test_an_unknown_kind_is_refused(promoter):
    assert refused(promoter, kind="cheque") == {"kind": ["Must be one of: paypal, bank, manual."]}


def test_switching_kinds_clears_the_old_details_and_logs_each_change(promoter):
    payout_method_set(promoter=promoter, kind="bank", changed_by="promoter:7", account_holder="Anna", iban=IBAN_FR, bic="BNPAFRPP")
    payout_method_set(promoter=promoter, kind="paypal", changed_by="staff:alice", paypal_email="anna@example.com")
    payout_method_set(promoter=promoter, kind="manual", changed_by="merchant:1 key:mk_x")
    assert stored(promoter) == MANUAL
    bank = {"kind": "bank", "paypal_email": "", "account_holder": "Anna", "iban": "FR*********************2606", "bic": "BNPAFRPP"}
    paypal = {"kind": "paypal", "paypal_email": "anna@example.com", "account_holder": "", "iban": "", "bic": ""}
    assert logged(promoter) == [
        ("promoter:7", MANUAL, bank),
        ("staff:alice", bank, paypal),
        ("merchant:1 key:mk_x", paypal, MANUAL),
    ]


def test_setting_what_is_already_there_writes_no_change(promoter):
    first = payout_method_set(promoter=promoter, kind="bank", changed_by="x", account_holder="Anna", iban=IBAN_DE)
    again = payout_method_set(promoter=promoter, kind="bank", changed_by="y", account_holder="Anna", iban="DE89 3704 0044 0532 0130 00")
    assert again.pk == first.pk
    assert [row[0] for row in logged(promoter)] == ["x"]


def test_manual_for_a_promoter_without_a_method_is_no_change(promoter):
    payout_method_set(promoter=promoter, kind="manual", changed_by="x")
    assert logged(promoter) == []
    assert stored(promoter) == MANUAL


def test_a_batch_keeps_the_method_it_was_built_with(promoter):
    method = payout_method_set(promoter=promoter, kind="paypal", changed_by="x", paypal_email="old@example.com")
    snapshot = batches.method_snapshot(method)
    payout_method_set(promoter=promoter, kind="paypal", changed_by="x", paypal_email="new@example.com")
    assert snapshot["paypal_email"] == "old@example.com"


def test_mask_iban_shows_the_country_code_and_the_last_four_characters():
    assert mask_iban(IBAN_DE) == "DE****************3000"
    assert mask_iban(IBAN_FR) == "FR*********************2606"
    assert mask_iban("de89 3704 0044 0532 0130 00") == "DE****************3000"  # as typed
    assert mask_iban("") == ""


# --- The merchant API -------------------------------------------------------------------------


def url(promoter, tail=""):
    return f"/api/v1/promoters/{promoter.pk}/payout-method/{tail}"


def test_api_reads_the_default_then_sets_a_bank_account(api, promoter, merchant):
    assert api.get(url(promoter)).json() == {"promoter": promoter.pk, **MANUAL, "updated_at": None}
    response = api.put(url(promoter), {"kind": "bank", "account_holder": "Anna", "iban": "de89 3704 0044 0532 0130 00"}, format="json")
    assert response.status_code == 200, response.content
    method = PayoutMethod.objects.get(promoter=promoter)
    expected = {
        "promoter": promoter.pk, "kind": "bank", "paypal_email": "", "account_holder": "Anna", "iban": "DE****************3000",
        "bic": "", "updated_at": method.updated_at.isoformat(),
    }
    assert response.json() == expected
    assert api.get(url(promoter)).json() == expected
    assert method.iban == IBAN_DE  # stored whole
    change = PayoutMethodChange.objects.get(promoter=promoter)
    assert api.get(url(promoter, "changes/")).json() == {
        "count": 1, "next": None, "previous": None,
        "results": [{
            "id": change.pk,
            "changed_by": f"merchant:{merchant.pk} key:{merchant.api_key_prefix}",
            "before": MANUAL,
            "after": {"kind": "bank", "paypal_email": "", "account_holder": "Anna", "iban": "DE****************3000", "bic": ""},
            "changed_at": change.changed_at.isoformat(),
        }],
    }


def test_api_errors_have_the_contract_shape_and_write_nothing(api, promoter):
    response = api.put(url(promoter), {"kind": "bank", "account_holder": "Anna", "iban": IBAN_DE, "bic": "BNPAFRPP"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"error": {
        "code": "invalid", "message": "The request is not valid; see fields.",
        "fields": {"bic": ["The BIC is of country FR, the IBAN of DE: they must be of one country."]},
    }}
    response = api.put(url(promoter), {"kind": "paypal", "paypal_email": "a@example.com", "colour": "red"}, format="json")
    assert (response.status_code, response.json()["error"]["fields"]) == (400, {"colour": ["Unknown field."]})
    response = api.put(url(promoter), {"paypal_email": "a@example.com"}, format="json")
    assert (response.status_code, response.json()["error"]["fields"]) == (400, {"kind": ["This field is required."]})
    response = api.put(url(promoter), ["kind"], format="json")
    assert (response.status_code, response.json()["error"]["fields"]) == (400, {"non_field_errors": ["The body must be a JSON object."]})
    assert PayoutMethod.objects.count() == 0
    assert PayoutMethodChange.objects.count() == 0


def test_another_merchants_promoter_is_a_404_and_nothing_is_written(other_api, promoter):
    for response in (
        other_api.get(url(promoter)),
        other_api.put(url(promoter), {"kind": "paypal", "paypal_email": "thief@example.com"}, format="json"),
        other_api.get(url(promoter, "changes/")),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}
    assert PayoutMethod.objects.count() == 0
    assert PayoutMethodChange.objects.count() == 0


def test_without_a_key_it_is_a_401(client, promoter):
    response = client.get(url(promoter))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_the_changes_are_listed_newest_first(api, promoter):
    for email in ("a@example.com", "b@example.com", "c@example.com"):
        assert api.put(url(promoter), {"kind": "paypal", "paypal_email": email}, format="json").status_code == 200
    rows = api.get(url(promoter, "changes/")).json()["results"]
    assert [(r["before"]["paypal_email"], r["after"]["paypal_email"]) for r in rows] == [
        ("b@example.com", "c@example.com"), ("a@example.com", "b@example.com"), ("", "a@example.com"),
    ]


# --- The IBAN masked in the API, PATCH, and the SEPA export -----------------------------------

BANK_DE = {"kind": "bank", "account_holder": "Anna", "iban": IBAN_DE, "bic": "COBADEFF"}


def written(promoter):
    return list(PayoutMethod.objects.filter(promoter=promoter).values()), list(PayoutMethodChange.objects.values())


def test_a_patch_of_the_bic_alone_keeps_the_stored_iban(api, promoter, merchant):
    payout_method_set(promoter=promoter, changed_by="x", **BANK_DE)

    response = api.patch(url(promoter), {"bic": "cobadeffxxx"}, format="json")

    assert response.status_code == 200, response.content
    method = PayoutMethod.objects.get(promoter=promoter)
    assert response.json() == {
        "promoter": promoter.pk, "kind": "bank", "paypal_email": "", "account_holder": "Anna", "iban": "DE****************3000",
        "bic": "COBADEFFXXX", "updated_at": method.updated_at.isoformat(),
    }
    assert stored(promoter) == {**BANK_DE, "paypal_email": "", "bic": "COBADEFFXXX"}
    assert logged(promoter)[-1] == (
        f"merchant:{merchant.pk} key:{merchant.api_key_prefix}",
        {"kind": "bank", "paypal_email": "", "account_holder": "Anna", "iban": "DE****************3000", "bic": "COBADEFF"},
        {"kind": "bank", "paypal_email": "", "account_holder": "Anna", "iban": "DE****************3000", "bic": "COBADEFFXXX"},
    )


def test_the_answer_sent_back_with_its_masked_iban_keeps_the_stored_iban(api, promoter):
    payout_method_set(promoter=promoter, changed_by="x", **BANK_DE)
    shown = api.get(url(promoter)).json()
    assert shown["iban"] == "DE****************3000"

    patched = api.patch(url(promoter), {**shown, "account_holder": "Anna Müller"}, format="json")
    put = api.put(url(promoter), {**shown, "account_holder": "Anna M. Müller"}, format="json")

    assert (patched.status_code, put.status_code) == (200, 200)
    assert put.json()["iban"] == "DE****************3000"
    assert stored(promoter) == {**BANK_DE, "paypal_email": "", "account_holder": "Anna M. Müller"}


@pytest.mark.parametrize("method", ["patch", "put"])
def test_a_masked_iban_that_is_not_the_stored_ones_is_refused_and_nothing_written(api, promoter, method):
    payout_method_set(promoter=promoter, changed_by="x", **BANK_DE)
    before = written(promoter)

    response = getattr(api, method)(url(promoter), {**BANK_DE, "iban": "DE****************1234"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"error": {
        "code": "invalid", "message": "The request is not valid; see fields.",
        "fields": {"iban": ["Masked, but not as the stored IBAN (DE****************3000): send the full IBAN to change it."]},
    }}
    assert written(promoter) == before


def test_a_masked_iban_without_one_stored_is_refused_and_nothing_written(api, promoter):
    response = api.patch(url(promoter), {"kind": "bank", "account_holder": "Anna", "iban": "DE****************3000"}, format="json")

    assert (response.status_code, response.json()["error"]["fields"]) == (400, {"iban": ["Masked (* hides characters): send the full IBAN."]})
    assert written(promoter) == ([], [])


def test_a_patch_to_another_kind_starts_from_empty_fields(api, promoter):
    payout_method_set(promoter=promoter, changed_by="x", **BANK_DE)

    response = api.patch(url(promoter), {"kind": "paypal", "paypal_email": "anna@example.com"}, format="json")

    assert response.status_code == 200, response.content
    assert stored(promoter) == {"kind": "paypal", "paypal_email": "anna@example.com", "account_holder": "", "iban": "", "bic": ""}


def test_a_patch_refused_by_the_rules_writes_nothing(api, promoter):
    payout_method_set(promoter=promoter, changed_by="x", **BANK_DE)
    before = written(promoter)

    foreign_bic = api.patch(url(promoter), {"bic": "BNPAFRPP"}, format="json")
    unknown = api.patch(url(promoter), {"colour": "red"}, format="json")
    bad_kind = api.patch(url(promoter), {"kind": "cheque"}, format="json")

    assert (foreign_bic.status_code, foreign_bic.json()["error"]["fields"]) == (
        400, {"bic": ["The BIC is of country FR, the IBAN of DE: they must be of one country."]},
    )
    assert (unknown.status_code, unknown.json()["error"]["fields"]) == (400, {"colour": ["Unknown field."]})
    assert (bad_kind.status_code, bad_kind.json()["error"]["fields"]) == (400, {"kind": ['"cheque" is not a valid choice.']})
    assert written(promoter) == before


def test_an_empty_patch_changes_nothing(api, promoter):
    payout_method_set(promoter=promoter, changed_by="x", **BANK_DE)
    before = written(promoter)

    response = api.patch(url(promoter), {}, format="json")

    assert (response.status_code, response.json()["iban"]) == (200, "DE****************3000")
    assert written(promoter) == before


def test_the_schema_documents_the_masked_iban():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    for name in ("PayoutMethod", "PatchedPayoutMethodRequest", "PayoutMethodState"):
        assert "DE89370400440532013000 is shown DE****************3000" in components[name]["properties"]["iban"]["description"]
    assert "patch" in schema["paths"]["/api/v1/promoters/{id}/payout-method/"]


def test_the_sepa_export_carries_the_iban_whole(api, django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, currency="EUR", hold_days=0, tier_rates=[])
    PayoutPolicy.objects.update_or_create(
        program=w.program, defaults={"minimum_payout_minor": 100, "payer_name": "Acme GmbH", "payer_iban": IBAN_FR}
    )
    paula = w.promoter("Paula")
    assert w.api.put(url(paula), {**BANK_DE, "account_holder": "Paula Martin"}, format="json").json()["iban"] == "DE****************3000"
    assert w.api.patch(url(paula), {"bic": "COBADEFFXXX"}, format="json").status_code == 200
    w.send(type="purchase", customer_id="c1", order_id="o1", amount="123.45", click_id=w.journey((paula, affiliate_services.timezone.now())))
    batches.batch_build(merchant=w.merchant, currency="EUR")

    xml = exports.sepa_credit_transfer(PayoutBatch.objects.get()).decode()

    assert f"<IBAN>{IBAN_DE}</IBAN>" in xml
    assert "<BIC>COBADEFFXXX</BIC>" in xml
    assert "*" not in xml
