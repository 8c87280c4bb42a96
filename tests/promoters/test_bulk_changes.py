"""Many promoters' rates or plans changed at once (the insight jobs' services): the same rows
as one change at a time, the stale ones left alone, nothing written for a bad plan."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.errors import ServiceValidationError
from promoters.models import Promoter, PromoterRateHistory
from promoters.services import promoter_create, promoter_plans_set, promoter_rates_set, promoter_update

pytestmark = pytest.mark.django_db


def make(merchant, program, name, **fields):
    return promoter_create(merchant=merchant, program=program, email=f"{name}@example.com", name=name, **fields)


def test_rates_set_changes_the_expected_ones_with_their_history(merchant, program):
    ann = make(merchant, program, "ann")  # on the program's rates
    bob = make(merchant, program, "bob", commission_rate="0.12")
    cat = make(merchant, program, "cat", commission_rate="0.12")
    promoter_update(promoter=cat, commission_rate="0.13")  # changed after the caller read 0.12
    dan = make(merchant, program, "dan", commission_rate="0.05")
    promoter_update(promoter=dan, status="inactive")
    left_alone = list(PromoterRateHistory.objects.filter(promoter__in=[cat, dan]).order_by("id").values_list("pk", "rate"))
    assert [rate for _, rate in left_alone] == [Decimal("0.120000"), Decimal("0.130000")]  # Cat's own change only

    changed = promoter_rates_set(
        merchant=merchant,
        expected={ann.pk: None, bob.pk: Decimal("0.12"), cat.pk: Decimal("0.12"), dan.pk: Decimal("0.05")},
        rates={ann.pk: Decimal("0.11"), bob.pk: Decimal("0.13"), cat.pk: Decimal("0.13"), dan.pk: Decimal("0.06")},
    )

    # Ann and Bob changed; Cat's rate is no longer what was read, Dan is inactive: left alone
    assert changed == [ann.pk, bob.pk]
    rates = dict(Promoter.objects.values_list("name", "commission_rate"))
    assert rates == {"ann": Decimal("0.110000"), "bob": Decimal("0.130000"), "cat": Decimal("0.130000"), "dan": Decimal("0.050000")}
    # The history as promoter_update writes it: the rate until now (from creation), then the new one
    history = list(PromoterRateHistory.objects.filter(promoter__in=[ann, bob]).order_by("promoter_id", "id").values_list("promoter__name", "rate"))
    assert history == [("ann", None), ("ann", Decimal("0.110000")), ("bob", Decimal("0.120000")), ("bob", Decimal("0.130000"))]
    # Nothing written for the two left alone
    assert list(PromoterRateHistory.objects.filter(promoter__in=[cat, dan]).order_by("id").values_list("pk", "rate")) == left_alone
    first = PromoterRateHistory.objects.filter(promoter=ann).order_by("id").first()
    assert first.effective_from == ann.created_at


def test_plans_set_changes_only_what_differs_and_refuses_a_bad_plan(merchant, program, other_merchant):
    ann = make(merchant, program, "ann")
    bob = make(merchant, program, "bob", payout_plan="immediate")
    before = promoter_plans_set(merchant=merchant, plans={ann.pk: "guaranteed", bob.pk: "immediate"})
    assert before == {ann.pk: "standard"}  # Bob already had it
    assert dict(Promoter.objects.values_list("name", "payout_plan")) == {"ann": "guaranteed", "bob": "immediate"}

    with pytest.raises(ServiceValidationError) as refused:
        promoter_plans_set(merchant=merchant, plans={ann.pk: "standard", bob.pk: "weekly"})
    assert refused.value.fields == {"payout_plan": ["Choose one of: standard, immediate, guaranteed."]}
    assert dict(Promoter.objects.values_list("name", "payout_plan")) == {"ann": "guaranteed", "bob": "immediate"}

    # Another merchant's call cannot touch these promoters
    assert promoter_plans_set(merchant=other_merchant, plans={ann.pk: "standard"}) == {}
    assert Promoter.objects.get(pk=ann.pk).payout_plan == "guaranteed"
