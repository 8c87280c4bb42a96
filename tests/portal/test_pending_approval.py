"""A promoter who joined a program that wants approval waits, earning nothing, until approved."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from core.errors import ServiceValidationError
from merchants.models import MerchantMember
from payouts.models import Commission
from promoters import services
from promoters.models import Promoter
from tests.payouts.world import World, at
from tests.portal.conftest import make_login

pytestmark = pytest.mark.django_db


def names(commissions, world_names):
    return sorted((world_names[c.promoter_id], c.kind, c.level, c.amount_minor) for c in commissions)


@pytest.fixture
def world(django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, hold_days=30, tier_rates=["0.05", "0.03"], first_purchase_rate="0.10")
    w.program.join_requires_approval = True
    w.program.save()
    return w


def join(world, sponsor, email, name):
    return services.promoter_join(sponsor=sponsor, user=make_login(email), name=name)


def test_a_pending_promoter_earns_nothing_and_their_sale_gives_the_sponsor_nothing(world):
    s = world.promoter("S")
    p = join(world, s, "p@example.com", "P")
    assert p.status == "pending"
    click = world.journey((p, at(1)))
    world.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(2))
    # Rule 7: only active promoters earn, and a share that earns nothing gives its sponsors
    # nothing either (payouts/rules.py purchase_lines).
    assert Commission.objects.count() == 0


def test_a_pending_sponsor_earns_no_override(world):
    top = world.promoter("Top")
    mid = join(world, top, "mid@example.com", "Mid")
    mid = services.promoter_approve(promoter=mid)
    low = join(world, mid, "low@example.com", "Low")
    Promoter.objects.filter(pk=mid.pk).update(status="pending")  # Mid waits again (hand edit, for the rule)
    services.promoter_approve(promoter=low)
    click = world.journey((low, at(1)))
    world.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(2))
    # Without compression Mid's level is lost; Top keeps level 2.
    assert names(Commission.objects.all(), {top.pk: "Top", mid.pk: "Mid", low.pk: "Low"}) == [
        ("Low", "direct", 0, 1000), ("Top", "override", 2, 300),
    ]


def test_approval_makes_the_promoter_earn_on_later_events(world):
    s = world.promoter("S")
    p = join(world, s, "p@example.com", "P")
    approved = services.promoter_approve(promoter=p)
    assert approved.status == "active"
    assert Promoter.objects.get(pk=p.pk).status == "active"
    click = world.journey((p, at(1)))
    world.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(2))
    assert names(Commission.objects.all(), {s.pk: "S", p.pk: "P"}) == [("P", "direct", 0, 1000), ("S", "override", 1, 500)]


def test_only_a_pending_promoter_can_be_approved(world):
    s = world.promoter("S")
    with pytest.raises(ServiceValidationError) as exc:
        services.promoter_approve(promoter=s)
    assert exc.value.fields == {"status": ["Only a promoter awaiting approval can be approved."]}
    assert Promoter.objects.get(pk=s.pk).status == "active"


def test_the_merchant_api_cannot_set_pending(world):
    s = world.promoter("S")
    response = world.api.patch(f"/api/v1/promoters/{s.pk}/", {"status": "pending"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"status": ["Choose active or inactive."]}
    assert Promoter.objects.get(pk=s.pk).status == "active"


def test_the_merchant_api_approves_a_pending_promoter_by_setting_it_active(world):
    s = world.promoter("S")
    p = join(world, s, "p@example.com", "P")
    response = world.api.patch(f"/api/v1/promoters/{p.pk}/", {"status": "active"}, format="json")
    assert (response.status_code, response.json()["status"]) == (200, "active")


def test_the_database_refuses_an_unknown_status_and_a_second_login_in_one_program(world):
    s = world.promoter("S")
    t = world.promoter("T")
    user = make_login("s@example.com", promoter=s)
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Promoter.objects.filter(pk=t.pk).update(user=user)
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            Promoter.objects.filter(pk=t.pk).update(status="paused")
    assert Promoter.objects.get(pk=t.pk).user_id is None


def test_a_merchant_member_links_a_login_to_a_merchant_once(world):
    user = make_login("staff@example.com")
    MerchantMember.objects.create(user=user, merchant=world.merchant, role="owner")
    with pytest.raises(IntegrityError):
        with transaction.atomic():
            MerchantMember.objects.create(user=user, merchant=world.merchant)
    assert list(user.merchant_memberships.values_list("merchant_id", "role")) == [(world.merchant.pk, "owner")]


def test_the_admin_shows_the_program_setting_and_approves_pending_promoters(world, admin_client):
    page = admin_client.get(f"/admin/merchants/program/{world.program.pk}/change/")
    assert page.status_code == 200
    assert b'name="join_requires_approval"' in page.content
    s = world.promoter("S")
    p = join(world, s, "p@example.com", "P")
    response = admin_client.post(
        "/admin/promoters/promoter/", {"action": "approve_pending", "_selected_action": [p.pk, s.pk]}
    )
    assert response.status_code == 302
    assert dict(Promoter.objects.values_list("pk", "status")) == {s.pk: "active", p.pk: "active"}


def test_joining_twice_with_one_login_is_refused_and_writes_nothing(world):
    s = world.promoter("S")
    user = make_login("p@example.com")
    services.promoter_join(sponsor=s, user=user, name="P")
    with pytest.raises(ServiceValidationError) as exc:
        services.promoter_join(sponsor=s, user=user, name="P again")
    assert exc.value.fields == {"program": ["You are already a promoter in this program."]}
    assert Promoter.objects.filter(user=user).count() == 1


def test_a_join_that_loses_a_race_on_the_login_constraint_is_refused(world, monkeypatch):
    s = world.promoter("S")
    first = world.promoter("First")
    user = make_login("p@example.com", promoter=first)
    # The existence check saw nothing (as a concurrent join would); the constraint decides.
    monkeypatch.setattr(services.Promoter.objects, "filter", _filter_missing_user(services.Promoter.objects.filter))
    with pytest.raises(ServiceValidationError) as exc:
        services.promoter_join(sponsor=s, user=user, name="P")
    assert exc.value.fields == {"program": ["You are already a promoter in this program."]}
    monkeypatch.undo()
    assert Promoter.objects.count() == 2


def _filter_missing_user(original):
    def filter_(*args, **kwargs):
        if "user" in kwargs and "program" in kwargs:
            return Promoter.objects.none()
        return original(*args, **kwargs)

    return filter_
