"""Promoter segments: the features by hand, the naming rule, versions, failures, roll-back and
the plan changes with their audit rows."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from affiliate.models import Click, ConversionEvent, Customer, ReferralLink, Visitor
from attribution.models import Credit
from core.errors import ServiceValidationError
from insights import segments
from insights.models import PlanChange, PromoterSegment, SegmentModel, SegmentPlan
from insights.segments import (
    FEATURES,
    cluster_name,
    cluster_names,
    promoter_features,
    segments_rollback,
    segments_train,
)
from promoters.models import Promoter
from promoters.services import promoter_update
from tests.factories import ProgramFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
GROUPS = ("stars", "novices", "risky")


class Shop:
    """Rows written directly (bulk): promoters, their links, clicks, purchases, refunds, credits."""

    def __init__(self, merchant, program, *, currency="USD"):
        self.merchant = merchant
        self.program = program
        self.currency = currency
        self.visitor = Visitor.objects.create()
        self.customer = Customer.objects.create(merchant=merchant, external_id=f"c-{merchant.pk}")
        self.orders = 0

    def promoters(self, specs):
        """specs: (name, days of tenure) pairs; returns the promoters, created in one insert."""
        made = Promoter.objects.bulk_create(
            [
                Promoter(
                    merchant=self.merchant, program=self.program, name=name, email=f"{name}@example.com",
                    referral_code=f"R{self.merchant.pk}-{name}", created_at=NOW - timedelta(days=days),
                )
                for name, days in specs
            ]
        )
        ReferralLink.objects.bulk_create(
            [
                ReferralLink(merchant=self.merchant, program=self.program, promoter=p, code=f"L{self.merchant.pk}-{p.name}",
                             destination_url="https://shop.example.com/")
                for p in made
            ]
        )
        self.links = dict(ReferralLink.objects.filter(merchant=self.merchant).values_list("promoter_id", "pk"))
        return made

    def clicks(self, rows):
        """rows: (promoter, days before NOW, is_fraud, is_duplicate)."""
        Click.objects.bulk_create(
            [
                Click(link_id=self.links[p.pk], merchant=self.merchant, program=self.program, promoter=p, visitor=self.visitor,
                      created_at=NOW - timedelta(days=days), is_fraud=fraud, is_duplicate=duplicate)
                for p, days, fraud, duplicate in rows
            ],
            batch_size=1000,
        )

    def purchases(self, rows, currency=None):
        """rows: (promoter, days before NOW, order amount, credited revenue) in minor units;
        returns the events in the same order."""
        currency = currency or self.currency
        events = []
        for _p, days, amount, _revenue in rows:
            self.orders += 1
            events.append(
                ConversionEvent(
                    merchant=self.merchant, program=self.program, customer=self.customer, type="purchase",
                    stage="repeat_purchase", status="processed", amount_minor=amount, currency=currency,
                    order_id=f"o{self.orders}", body_hash="x", occurred_at=NOW - timedelta(days=days),
                )
            )
        events = ConversionEvent.objects.bulk_create(events, batch_size=1000)
        self._credit(events, [(p, revenue) for p, _d, amount, revenue in rows], currency)
        return events

    def refunds(self, rows):
        """rows: (promoter, purchase event, days before NOW, amount, credited revenue (negative))."""
        events = ConversionEvent.objects.bulk_create(
            [
                ConversionEvent(
                    merchant=self.merchant, program=self.program, customer=self.customer, type="refund", stage="refund",
                    status="processed", amount_minor=amount, currency=purchase.currency, order_id=purchase.order_id,
                    refund_id="r", purchase=purchase, body_hash="x", occurred_at=NOW - timedelta(days=days),
                )
                for _p, purchase, days, amount, _revenue in rows
            ],
            batch_size=1000,
        )
        self._credit(events, [(p, revenue) for p, _e, _d, _a, revenue in rows], events[0].currency if events else "USD")

    def _credit(self, events, shares, currency):
        Credit.objects.bulk_create(
            [
                Credit(event=e, promoter=p, weight=Decimal("1"), weight_exact="1/1", revenue_minor=revenue,
                       currency=currency, first_position=0)
                for e, (p, revenue) in zip(events, shares, strict=True)
            ],
            batch_size=1000,
        )


def plant(merchant, per_group: int, seed: int = 7) -> dict[int, str]:
    """Three planted groups; returns promoter id -> group.

    - stars: 300-700 days old, 40-60 clean clicks, one purchase of 120-150 USD in each of
      the last 12 weeks, no refunds;
    - novices: 5-40 days old, 4-10 clean clicks and one 40-60 USD purchase in that time;
    - risky: 200-500 days old, 40-60 clicks of which 50-70% flagged (fraud or duplicate),
      a purchase of 60-80 USD in weeks 1, 5 and 9, two of them refunded in full.
    """
    rng = random.Random(seed)
    program = ProgramFactory(merchant=merchant, name="Planted")
    shop = Shop(merchant, program)
    tenure = {"stars": (300, 700), "novices": (5, 40), "risky": (200, 500)}
    specs = [(f"{g}{i}", rng.uniform(*tenure[g])) for g in GROUPS for i in range(per_group)]
    made = shop.promoters(specs)
    group_of = {p.pk: p.name.rstrip("0123456789") for p in made}
    clicks, purchases, refunded = [], [], []
    for p, (_name, days) in zip(made, specs, strict=True):
        group = group_of[p.pk]
        window = min(days, 84)
        if group == "novices":
            clicks += [(p, rng.uniform(0, window), False, False) for _ in range(rng.randint(4, 10))]
            purchases.append((p, rng.uniform(0, window), rng.randint(4000, 6000)))
        elif group == "stars":
            clicks += [(p, rng.uniform(0, window), False, False) for _ in range(rng.randint(40, 60))]
            purchases += [(p, 7 * week + rng.uniform(1, 6), rng.randint(12000, 15000)) for week in range(12)]
        else:
            n = rng.randint(40, 60)
            share = rng.uniform(0.5, 0.7)
            for j in range(n):
                flagged = j < n * share
                clicks.append((p, rng.uniform(0, window), flagged and j % 2 == 0, flagged and j % 2 == 1))
            mine = [(p, 7 * week + rng.uniform(1, 6), rng.randint(6000, 8000)) for week in (1, 5, 9)]
            purchases += mine
            refunded += [len(purchases) - 3, len(purchases) - 2]
    shop.clicks(clicks)
    events = shop.purchases([(p, d, amount, amount) for p, d, amount in purchases])
    shop.refunds([(purchases[i][0], events[i], max(purchases[i][1] - 1, 0), events[i].amount_minor, -events[i].amount_minor)
                  for i in refunded])
    return group_of


def plans(merchant) -> dict[int, str]:
    return dict(Promoter.objects.filter(merchant=merchant).values_list("pk", "payout_plan"))


# --- Features by hand -------------------------------------------------------------------------


def test_features_of_four_promoters_by_hand(merchant, program):
    shop = Shop(merchant, program)
    a, b, c, d = shop.promoters([("a", 100), ("b", 30), ("c", 400), ("d", 200)])
    shop.clicks(
        [(a, 1, False, False)] * 8 + [(a, 2, True, False), (a, 3, False, True)]  # 10 clicks, 2 flagged
        + [(b, 5, False, False)] * 4
        + [(c, 50, False, False)] * 5
        + [(d, -1, False, False)]  # after NOW: not counted, so d has no clicks
    )
    o1, _o2 = shop.purchases([(a, 3, 10000, 10000), (a, 10, 5000, 2500)])  # a's second order half credited
    shop.refunds([(a, o1, 2, 2000, -2000)])
    shop.purchases([(c, 20, 3000, 3000), (c, 100, 1000, 1000), (c, -1, 9000, 9000)], currency="JPY")  # the last after NOW

    got = promoter_features(merchant=merchant, now=NOW)

    assert list(got.index) == [a.pk, b.pk, c.pk, d.pk]
    assert list(got["clicks"]) == [10, 4, 5, 0]
    rows = got[FEATURES].to_dict("index")
    # a: 2 purchases / 10 clicks; orders 100.00 and 50.00 USD -> 75.00; refunded 20.00 of the
    # 100.00 + 25.00 credited -> 0.16; 2 of 10 clicks flagged; weeks: w0 = 100, w1 = 25, ten
    # zeros: CV = sqrt(12 * (100² + 25²) / 125² - 1) = sqrt(7.16); last purchase 3 days ago.
    assert rows[a.pk] == pytest.approx({
        "conversion_rate": 0.2, "avg_order_value": 75.0, "refund_rate": 0.16, "flagged_share": 0.2,
        "tenure_days": 100.0, "revenue_cv": math.sqrt(7.16), "recency_days": 3.0,
    })
    # b: clicks, nothing sold: no revenue -> CV sqrt(11), recency capped at 365.
    assert rows[b.pk] == pytest.approx({
        "conversion_rate": 0.0, "avg_order_value": 0.0, "refund_rate": 0.0, "flagged_share": 0.0,
        "tenure_days": 30.0, "revenue_cv": math.sqrt(11), "recency_days": 365.0,
    })
    # c: 2 purchases before NOW / 5 clicks; JPY has no minor digits: (3000 + 1000) / 2 = 2000;
    # one week with revenue (w2, 20 days ago): CV = sqrt(12 * 3000² / 3000² - 1) = sqrt(11).
    assert rows[c.pk] == pytest.approx({
        "conversion_rate": 0.4, "avg_order_value": 2000.0, "refund_rate": 0.0, "flagged_share": 0.0,
        "tenure_days": 400.0, "revenue_cv": math.sqrt(11), "recency_days": 20.0,
    })
    assert rows[d.pk] == pytest.approx({
        "conversion_rate": 0.0, "avg_order_value": 0.0, "refund_rate": 0.0, "flagged_share": 0.0,
        "tenure_days": 200.0, "revenue_cv": math.sqrt(11), "recency_days": 365.0,
    })


def test_features_of_a_merchant_without_promoters(merchant):
    got = promoter_features(merchant=merchant, now=NOW)
    assert len(got) == 0
    assert list(got.columns) == [*FEATURES, "clicks"]


# --- Naming rule ------------------------------------------------------------------------------


def _z(**given):
    return {f: given.get(f, 0.0) for f in FEATURES}


def test_naming_rule_in_order():
    # Bad traffic wins over short tenure and high conversion.
    assert cluster_name(_z(flagged_share=0.5, tenure_days=-2, conversion_rate=2)) == "at_risk"
    assert cluster_name(_z(refund_rate=0.7)) == "at_risk"
    assert cluster_name(_z(tenure_days=-0.5, conversion_rate=2)) == "novices"
    assert cluster_name(_z(conversion_rate=0.25, avg_order_value=0.0, recency_days=3)) == "stars"
    assert cluster_name(_z(conversion_rate=0.25, avg_order_value=-0.1, recency_days=0.5)) == "at_risk"
    assert cluster_name(_z(recency_days=0.49, revenue_cv=0.0)) == "steady"
    assert cluster_name(_z(revenue_cv=0.01)) == "occasional"


def test_same_names_get_suffixes_larger_cluster_first():
    star = list(_z(conversion_rate=1, avg_order_value=1).values())
    steady = list(_z(revenue_cv=-1).values())
    # Clusters 0, 1 and 3 are all stars: 3 is the largest, then 0 and 1 tie on size (lower number first).
    names = cluster_names([star, star, steady, star], sizes=[5, 5, 9, 12], features=FEATURES)
    assert names == {0: "stars_2", 1: "stars_3", 2: "steady", 3: "stars"}


def test_fit_picks_k_by_silhouette_on_a_sample_when_there_are_many(monkeypatch):
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    centres = np.array([[0.0] * 7, [10.0] * 7, [0.0, 10.0] * 3 + [0.0]])
    values = np.vstack([rng.normal(c, 0.5, size=(100, 7)) for c in centres])
    monkeypatch.setattr(segments, "SILHOUETTE_SAMPLE", 50)  # 300 promoters: more than the sample

    fit = segments.fit_segments(values)

    assert fit.k == 3
    assert sorted(np.bincount(fit.labels).tolist()) == [100, 100, 100]
    scaled = StandardScaler().fit_transform(values)
    assert fit.silhouette == silhouette_score(scaled, fit.labels, sample_size=50, random_state=0)
    assert fit.silhouette == max(fit.silhouettes.values()) and sorted(fit.silhouettes) == [2, 3, 4, 5, 6]


# --- Training, versions, failures -------------------------------------------------------------


def test_training_writes_a_live_model_assignments_default_plans_and_changes(merchant):
    group_of = plant(merchant, per_group=10)
    late = Promoter.objects.create(merchant=merchant, program=Promoter.objects.first().program, name="late",
                                   email="late@example.com", referral_code="LATE", created_at=NOW - timedelta(days=90))
    fresh = Promoter.objects.create(merchant=merchant, program=late.program, name="fresh", email="fresh@example.com",
                                    referral_code="FRESH", created_at=NOW - timedelta(days=10))

    model = segments_train(merchant=merchant, now=NOW)

    assert (model.version, model.status, model.clusters) == (1, "live", 3)
    assert model.features == FEATURES
    assert sorted(model.names.values()) == ["at_risk", "novices", "stars"]
    assert model.metrics["trained_on"] == 30 and model.metrics["untrained"] == 2
    assert set(model.metrics["silhouette_by_k"]) == {"2", "3", "4", "5", "6"}
    assert model.silhouette == max(model.metrics["silhouette_by_k"].values())
    # 10 planted novices + the fresh one without clicks; the 90-day-old one without clicks: inactive.
    assert model.metrics["sizes"] == {"at_risk": 10, "inactive": 1, "novices": 11, "stars": 10}
    assert len(model.centroids) == 3 and len(model.scaler["mean"]) == len(FEATURES)
    segment = dict(PromoterSegment.objects.filter(model=model).values_list("promoter_id", "segment"))
    expected = {"stars": "stars", "novices": "novices", "risky": "at_risk"}
    assert segment == {**{pk: expected[g] for pk, g in group_of.items()}, late.pk: "inactive", fresh.pk: "novices"}
    assert dict(SegmentPlan.objects.filter(merchant=merchant).values_list("segment", "payout_plan")) == segments.DEFAULT_PLANS
    # Everyone started on standard: 10 stars -> immediate, 11 novices -> guaranteed, audited.
    after = plans(merchant)
    assert sorted(after.values()).count("immediate") == 10 and sorted(after.values()).count("guaranteed") == 11
    changes = set(PlanChange.objects.values_list("promoter_id", "model_id", "segment", "old_plan", "new_plan"))
    assert changes == {
        (pk, model.pk, segment[pk], "standard", "immediate" if segment[pk] == "stars" else "guaranteed")
        for pk in segment if segment[pk] in ("stars", "novices")
    }
    assert len(model.applied_changes) == 21


def test_versions_count_up_and_retire_the_previous(merchant, other_merchant):
    plant(merchant, per_group=10)
    plant(other_merchant, per_group=10, seed=8)
    first = segments_train(merchant=merchant, now=NOW)
    second = segments_train(merchant=merchant, now=NOW)
    failed = segments_train(merchant=merchant, now=NOW - timedelta(days=3650))  # before any click: no one to train on
    other = segments_train(merchant=other_merchant, now=NOW)

    rows = list(SegmentModel.objects.filter(merchant=merchant).order_by("version").values_list("version", "status"))
    assert rows == [(1, "retired"), (2, "live"), (3, "failed")]
    assert (first.version, second.version, failed.version, other.version) == (1, 2, 3, 1)
    assert other.status == "live"
    # The second training found the same segments: no plan changed again.
    assert second.applied_changes == [] and PlanChange.objects.filter(model=second).count() == 0


def test_too_few_promoters_fails_and_keeps_the_live_model(merchant):
    plant(merchant, per_group=10)
    live = segments_train(merchant=merchant, now=NOW)
    before = (PromoterSegment.objects.count(), PlanChange.objects.count(), plans(merchant))

    failed = segments_train(merchant=merchant, now=NOW - timedelta(days=3650))

    assert (failed.version, failed.status) == (2, "failed")
    assert failed.error == "Too few promoters with clicks to train on: 0 (at least 10)."
    live.refresh_from_db()
    assert live.status == "live"
    assert (PromoterSegment.objects.count(), PlanChange.objects.count(), plans(merchant)) == before


def test_an_exception_while_writing_rolls_everything_back(merchant, monkeypatch):
    plant(merchant, per_group=10)

    def boom(model):
        raise RuntimeError("plans unavailable")

    monkeypatch.setattr(segments, "_apply_plans", boom)
    failed = segments_train(merchant=merchant, now=NOW)

    assert (failed.version, failed.status, failed.error) == (1, "failed", "RuntimeError: plans unavailable")
    assert list(SegmentModel.objects.values_list("version", "status")) == [(1, "failed")]
    assert PromoterSegment.objects.count() == 0
    assert SegmentPlan.objects.count() == 0
    assert PlanChange.objects.count() == 0
    assert set(plans(merchant).values()) == {"standard"}


def test_a_degenerate_clustering_fails(merchant, program):
    shop = Shop(merchant, program)
    made = shop.promoters([(f"p{i}", 100) for i in range(12)])
    shop.clicks([(p, 1, False, False) for p in made])  # twelve identical promoters

    failed = segments_train(merchant=merchant, now=NOW)

    assert failed.status == "failed"
    assert failed.error.startswith("Degenerate clustering: 1 distinct promoter(s)")
    assert PromoterSegment.objects.count() == 0 and SegmentPlan.objects.count() == 0


# --- Plans ------------------------------------------------------------------------------------


def test_segments_without_a_plan_row_are_left_alone(merchant):
    group_of = plant(merchant, per_group=10)
    SegmentPlan.objects.create(merchant=merchant, segment="stars", payout_plan="immediate")
    risky = [pk for pk, g in group_of.items() if g == "risky"]
    promoter_update(promoter=Promoter.objects.get(pk=risky[0]), payout_plan="guaranteed")

    model = segments_train(merchant=merchant, now=NOW)

    # The merchant has plan rows, so no defaults; only the 10 stars move.
    assert list(SegmentPlan.objects.values_list("segment", "payout_plan")) == [("stars", "immediate")]
    after = plans(merchant)
    assert {pk: after[pk] for pk, g in group_of.items() if g == "stars"} == {
        pk: "immediate" for pk, g in group_of.items() if g == "stars"
    }
    assert after[risky[0]] == "guaranteed"
    assert {after[pk] for pk, g in group_of.items() if g != "stars" and pk != risky[0]} == {"standard"}
    assert PlanChange.objects.filter(model=model).count() == 10
    assert set(PlanChange.objects.values_list("segment", "old_plan", "new_plan")) == {("stars", "standard", "immediate")}


# --- Roll-back --------------------------------------------------------------------------------


def test_rollback_makes_an_earlier_model_live_and_reapplies_plans(merchant, monkeypatch):
    group_of = plant(merchant, per_group=10)
    v1 = segments_train(merchant=merchant, now=NOW)
    v2 = segments_train(merchant=merchant, now=NOW)
    star = next(pk for pk, g in group_of.items() if g == "stars")
    promoter_update(promoter=Promoter.objects.get(pk=star), payout_plan="standard")  # drifted by hand
    assignments = PromoterSegment.objects.count()

    def no_training(values):
        raise AssertionError("roll-back must not recompute")

    monkeypatch.setattr(segments, "fit_segments", no_training)
    back = segments_rollback(merchant=merchant, version=1)

    assert back.pk == v1.pk
    assert dict(SegmentModel.objects.values_list("version", "status")) == {1: "live", 2: "retired"}
    assert PromoterSegment.objects.count() == assignments  # 2 x 30 assignments, kept
    assert plans(merchant)[star] == "immediate"
    assert [(c.promoter_id, c.model_id, c.segment, c.old_plan, c.new_plan) for c in back.applied_changes] == [
        (star, v1.pk, "stars", "standard", "immediate")
    ]
    assert PlanChange.objects.filter(model=v1).count() == 20 + 1  # the first training: 10 stars, 10 novices
    assert PlanChange.objects.filter(model=v2).count() == 0


def test_rollback_refuses_a_failed_or_unknown_version(merchant):
    plant(merchant, per_group=10)
    segments_train(merchant=merchant, now=NOW)
    segments_train(merchant=merchant, now=NOW - timedelta(days=3650))  # v2 failed
    changes = PlanChange.objects.count()

    with pytest.raises(ServiceValidationError) as failed:
        segments_rollback(merchant=merchant, version=2)
    assert failed.value.fields == {"version": ["A failed training cannot be made live."]}
    with pytest.raises(ServiceValidationError) as unknown:
        segments_rollback(merchant=merchant, version=9)
    assert unknown.value.fields == {"version": ["No segment model with this version."]}
    assert dict(SegmentModel.objects.values_list("version", "status")) == {1: "live", 2: "failed"}
    assert PlanChange.objects.count() == changes


# --- Commands ---------------------------------------------------------------------------------


def test_commands_print_the_result(merchant, monkeypatch):
    plant(merchant, per_group=10)
    monkeypatch.setattr(segments.timezone, "now", lambda: NOW)
    out = StringIO()
    call_command("segments_train", "--merchant", str(merchant.pk), stdout=out)
    text = out.getvalue()
    assert f"Merchant {merchant.pk} (Acme Shop): training segments..." in text
    assert "v1 live: k=3, silhouette " in text
    assert "sizes: at_risk 10, novices 10, stars 10; plan changes: 20 (standard -> guaranteed: 10, standard -> immediate: 10)" in text

    call_command("segments_train", "--merchant", str(merchant.pk), stdout=StringIO())
    out = StringIO()
    call_command("segments_rollback", "--merchant", str(merchant.pk), "--version", "1", stdout=out)
    # Read back from the database (PostgreSQL reorders JSON keys): the sizes still come sorted.
    assert "v1 live: k=3" in out.getvalue()
    assert "sizes: at_risk 10, novices 10, stars 10; plan changes: 0" in out.getvalue()

    with pytest.raises(CommandError, match="No segment model with this version."):
        call_command("segments_rollback", "--merchant", str(merchant.pk), "--version", "7", stdout=StringIO())


def test_train_command_for_every_merchant_reports_failures(merchant, other_merchant, monkeypatch):
    plant(merchant, per_group=10)
    shop = Shop(other_merchant, ProgramFactory(merchant=other_merchant))
    (lonely,) = shop.promoters([("lonely", 100)])
    shop.clicks([(lonely, 1, False, False)])
    monkeypatch.setattr(segments.timezone, "now", lambda: NOW)
    out, err = StringIO(), StringIO()

    with pytest.raises(CommandError, match=f"Training failed for merchant\\(s\\) {other_merchant.pk}; the live models were kept."):
        call_command("segments_train", stdout=out, stderr=err)

    assert "v1 live: k=3" in out.getvalue()
    assert "v1 failed: Too few promoters with clicks to train on: 1 (at least 10)." in err.getvalue()
    assert dict(SegmentModel.objects.values_list("merchant_id", "status")) == {merchant.pk: "live", other_merchant.pk: "failed"}
