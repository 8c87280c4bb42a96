"""Planted signal: three groups of promoters that behave clearly differently come out as three
segments, and the high converting stable sellers get the immediate plan."""

from __future__ import annotations

import pytest
from sklearn.metrics import adjusted_rand_score

from insights.models import PromoterSegment
from insights.segments import segments_train
from promoters.models import Promoter
from tests.insights.test_segments import NOW, plant

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("seed", [7, 11])
def test_planted_groups_are_found(merchant, seed):
    # 30 stars (old, clean traffic, a 120-150 USD sale every week), 30 novices (days old, a few
    # clicks, one small sale), 30 risky (flagged traffic, two of three sales refunded).
    group_of = plant(merchant, per_group=30, seed=seed)

    model = segments_train(merchant=merchant, now=NOW)

    assert model.status == "live", model.error
    found = dict(PromoterSegment.objects.filter(model=model).values_list("promoter_id", "segment"))
    ids = sorted(group_of)
    assert adjusted_rand_score([group_of[i] for i in ids], [found[i] for i in ids]) >= 0.8
    stars = [i for i in ids if group_of[i] == "stars"]
    # Most of the star group is in one segment, named stars, and that segment's plan is immediate.
    majority = max(set(found[i] for i in stars), key=[found[i] for i in stars].count)
    assert majority == "stars"
    plans = dict(Promoter.objects.filter(pk__in=stars).values_list("pk", "payout_plan"))
    assert sum(plan == "immediate" for plan in plans.values()) >= 27
    assert all(plans[i] == "immediate" for i in stars if found[i] == "stars")
