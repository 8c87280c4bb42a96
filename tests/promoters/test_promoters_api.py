import pytest

from promoters.models import Promoter
from tests.factories import ProgramFactory, PromoterFactory

pytestmark = pytest.mark.django_db


def create(api, **payload):
    return api.post("/api/v1/promoters/", payload, format="json")


def test_create_returns_id_and_referral_code(api, program):
    response = create(api, email="anna@example.com", name="Anna", program=program.pk, coupon_code="ANNA10", customer_id="cust-7")
    assert response.status_code == 201
    promoter = Promoter.objects.get()
    assert response.json() == {
        "id": promoter.pk, "email": "anna@example.com", "name": "Anna", "program": program.pk, "sponsor": None,
        "customer_id": "cust-7", "coupon_code": "ANNA10", "commission_rate": None, "payout_plan": "standard",
        "status": "active", "referral_code": promoter.referral_code, "created_at": promoter.created_at.isoformat(),
    }
    assert len(promoter.referral_code) == 8


def test_sponsor_and_own_rate(api, program):
    sponsor = create(api, email="s@example.com", name="S", program=program.pk).json()
    body = create(api, email="r@example.com", name="R", program=program.pk, sponsor=sponsor["id"], commission_rate="0.2", payout_plan="immediate").json()
    assert (body["sponsor"], body["commission_rate"], body["payout_plan"]) == (sponsor["id"], "0.20", "immediate")


def test_a_sponsor_that_would_make_a_loop_is_400(api, program):
    a = PromoterFactory(program=program)
    b = PromoterFactory(program=program, sponsor=a)
    c = PromoterFactory(program=program, sponsor=b)
    for sponsor in (c, b, a):
        response = api.patch(f"/api/v1/promoters/{a.pk}/", {"sponsor": sponsor.pk}, format="json")
        assert response.status_code == 400
        assert response.json()["error"]["fields"] == {"sponsor": ["This sponsor would make a loop in the sponsor tree."]}
    a.refresh_from_db()
    assert a.sponsor_id is None
    # Moving a leaf elsewhere is fine.
    assert api.patch(f"/api/v1/promoters/{c.pk}/", {"sponsor": a.pk}, format="json").json()["sponsor"] == a.pk


def test_a_sponsor_of_another_merchant_is_400(api, program, other_merchant):
    foreign = PromoterFactory(program=ProgramFactory(merchant=other_merchant))
    response = create(api, email="x@example.com", name="X", program=program.pk, sponsor=foreign.pk)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"sponsor": ["No promoter with this id."]}
    assert Promoter.objects.filter(merchant=program.merchant).count() == 0


def test_a_program_of_another_merchant_is_400(api, program, other_merchant):
    foreign = ProgramFactory(merchant=other_merchant)
    response = create(api, email="x@example.com", name="X", program=foreign.pk)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"program": ["No object with this id."]}


def test_coupon_codes_are_unique_per_merchant_whatever_the_case(api, program, other_merchant):
    create(api, email="a@example.com", name="A", program=program.pk, coupon_code="SPRING")
    clash = create(api, email="b@example.com", name="B", program=program.pk, coupon_code="spring")
    assert clash.status_code == 400
    assert clash.json()["error"]["fields"] == {"coupon_code": ["Another promoter of this merchant has this coupon code."]}
    assert Promoter.objects.count() == 1
    # Another merchant may use the same code.
    PromoterFactory(program=ProgramFactory(merchant=other_merchant), coupon_code="SPRING")


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({"name": "A"}, {"email": ["This field is required."], "program": ["This field is required."]}),
        ({"email": "not-an-email", "name": "A"}, {"email": ["Give a valid email address."]}),
        ({"email": "a@example.com", "name": "A", "payout_plan": "weekly"}, {"payout_plan": ["Choose one of: standard, immediate, guaranteed."]}),
        ({"email": "a@example.com", "name": "A", "status": "paused"}, {"status": ["Choose active or inactive."]}),
        ({"email": "a@example.com", "name": "A", "commission_rate": "1.5"}, {"commission_rate": ["The commission rate must lie between 0 and 1."]}),
        ({"email": "a@example.com", "name": "A", "sponsor": "abc"}, {"sponsor": ["Must be an integer id."]}),
        ({"email": "a@example.com", "name": "A", "sponsor": 999999}, {"sponsor": ["No promoter with this id."]}),
        ({"email": "a@example.com", "name": "A", "customer_id": "c" * 256}, {"customer_id": ["At most 255 characters."]}),
    ],
)
def test_invalid_promoters_are_400_and_nothing_is_written(api, program, payload, fields):
    if "program" not in fields:
        payload = {**payload, "program": program.pk}
    response = create(api, **payload)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == fields
    assert Promoter.objects.count() == 0


def test_same_email_twice_in_one_program_is_400(api, program):
    create(api, email="a@example.com", name="A", program=program.pk)
    response = create(api, email="A@example.com", name="A2", program=program.pk)
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"email": ["A promoter with this email is already in the program."]}


def test_list_is_paginated_and_filtered(api, program):
    sponsor = PromoterFactory(program=program)
    for _ in range(3):
        PromoterFactory(program=program, sponsor=sponsor)
    PromoterFactory(program=program, status="inactive")
    page = api.get("/api/v1/promoters/?page_size=2").json()
    assert (page["count"], len(page["results"]), page["previous"]) == (5, 2, None)
    assert page["next"].endswith("/api/v1/promoters/?page=2&page_size=2")
    assert api.get(f"/api/v1/promoters/?sponsor={sponsor.pk}").json()["count"] == 3
    assert api.get("/api/v1/promoters/?status=inactive").json()["count"] == 1


def test_patch_and_isolation(api, other_api, promoter):
    assert api.patch(f"/api/v1/promoters/{promoter.pk}/", {"status": "inactive"}, format="json").json()["status"] == "inactive"
    assert other_api.get(f"/api/v1/promoters/{promoter.pk}/").status_code == 404
    assert other_api.patch(f"/api/v1/promoters/{promoter.pk}/", {"status": "active"}, format="json").status_code == 404
    promoter.refresh_from_db()
    assert promoter.status == "inactive"
