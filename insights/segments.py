"""Promoter segments: cluster a merchant's promoters by how they sell, name the clusters,
and map each segment to a payout plan.

Features (one row per promoter, read in bulk: three grouped queries, no per-row ORM):

- ``conversion_rate``: purchases credited to the promoter / the promoter's clicks (all
  clicks, flagged ones included: their share is its own feature).
- ``avg_order_value``: the mean order amount (``ConversionEvent.amount_minor``, in major
  units of its currency) of the purchases credited to the promoter; 0 without purchases.
- ``refund_rate``: refunded credited revenue / purchased credited revenue (refund credits
  are negative; the rate is their absolute sum over the purchase credits), capped at 1;
  0 without purchased revenue.
- ``flagged_share``: the share of the promoter's clicks flagged fraud or duplicate.
- ``tenure_days``: days since the promoter was created.
- ``revenue_cv``: the coefficient of variation (population standard deviation / mean) of
  the credited purchase revenue of each of the last 12 weeks (week ``i`` is
  ``[now - 7(i+1) days, now - 7i days)``). A promoter without revenue in those weeks gets
  ``sqrt(11)``, the largest value 12 weeks can give (all revenue in a single week): no
  revenue is treated as the least stable there is.
- ``recency_days``: days since the last credited purchase, capped at ``RECENCY_CAP_DAYS``
  (365); a promoter who never sold gets the cap.

Everything is as of ``now``: clicks before it, events that occurred before it. Money sums
are made per currency and turned into major units before they meet (a ratio or an ML
feature, never money that is paid). A merchant selling in several currencies mixes their
major units in ``avg_order_value``; the ratios are unaffected.

Promoters without a single click are left out of training (their conversion rate is
undefined) and get a segment by rule: ``novices`` when their tenure is under 60 days,
else ``inactive``. That includes promoters who sell only through coupons.

Training: the features are scaled (``StandardScaler``) and clustered with ``KMeans``
(``n_init`` and ``random_state`` fixed) for every k in 2..6; the k with the best
silhouette score wins (the smaller k on a tie; the silhouette is computed on a fixed
sample of ``SILHOUETTE_SAMPLE`` promoters when there are more). Fewer than
``MIN_PROMOTERS`` promoters with clicks, or no k giving k non-empty clusters (too few
distinct promoters), fails the training.

Naming (``cluster_names``): each centroid is read in the scaled space, so every coordinate
is a z-score against the promoters trained on. In this order, the first rule that holds
names the cluster:

1. ``at_risk`` when ``refund_rate >= 0.5`` or ``flagged_share >= 0.5`` (bad sales or bad
   traffic outweigh everything else);
2. ``novices`` when ``tenure_days <= -0.5``;
3. ``stars`` when ``conversion_rate >= 0.25`` and ``avg_order_value >= 0``;
4. ``at_risk`` when ``recency_days >= 0.5`` (lapsed: long without a sale);
5. ``steady`` when ``revenue_cv <= 0`` (steadier weekly revenue than the average);
6. ``occasional`` otherwise.

Two clusters with the same name: the larger keeps the name (the lower cluster number on a
tie), the others get ``_2``, ``_3``... in the same order.

Plans: ``SegmentPlan`` maps a segment name to a payout plan; a merchant without any gets
the defaults on its first training (stars: immediate; novices: guaranteed; every other
name of the rule: standard). A suffixed name (``stars_2``) has no row unless the merchant
adds one, and its promoters keep their plan. Plans change only through
``promoters.services.promoter_plans_set`` (all at once), each with a ``PlanChange`` row.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from django.db import transaction
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from affiliate.models import Click, ConversionEvent
from attribution.models import Credit
from core.errors import ServiceValidationError
from core.money import minor_digits
from merchants.models import Merchant
from merchants.services import merchant_lock
from promoters.models import Promoter
from promoters.services import promoter_plans_set

from .models import PlanChange, PromoterSegment, SegmentModel, SegmentPlan

logger = logging.getLogger(__name__)

FEATURES = [
    "conversion_rate",
    "avg_order_value",
    "refund_rate",
    "flagged_share",
    "tenure_days",
    "revenue_cv",
    "recency_days",
]
WEEKS = 12
NO_REVENUE_CV = math.sqrt(WEEKS - 1)
RECENCY_CAP_DAYS = 365.0
NOVICE_DAYS = 60
K_RANGE = range(2, 7)
MIN_PROMOTERS = 10
SILHOUETTE_SAMPLE = 10_000
RANDOM_STATE = 0
N_INIT = 4

NOVICES = "novices"
INACTIVE = "inactive"
DEFAULT_PLANS = {
    "stars": Promoter.PayoutPlan.IMMEDIATE,
    NOVICES: Promoter.PayoutPlan.GUARANTEED,
    "steady": Promoter.PayoutPlan.STANDARD,
    "at_risk": Promoter.PayoutPlan.STANDARD,
    "occasional": Promoter.PayoutPlan.STANDARD,
    INACTIVE: Promoter.PayoutPlan.STANDARD,
}
CHUNK = 2000


class TrainingFailed(Exception):
    """Training cannot give a usable model (too few promoters, a degenerate clustering)."""


# --- Features ---------------------------------------------------------------------------------


def promoter_features(*, merchant: Merchant, now: datetime) -> pd.DataFrame:
    """One row per promoter of ``merchant`` created before ``now`` (index: promoter id), with
    the ``FEATURES`` columns and ``clicks``; see the module docstring for the definitions."""
    promoters = pd.DataFrame.from_records(
        list(Promoter.objects.filter(merchant=merchant, created_at__lt=now).values_list("id", "created_at")),
        columns=["id", "created_at"],
    ).set_index("id")
    frame = pd.DataFrame(index=promoters.index)
    frame["tenure_days"] = [(now - created).total_seconds() / 86400 for created in promoters["created_at"]]

    clicks = pd.DataFrame.from_records(
        list(
            Click.objects.filter(merchant=merchant, created_at__lt=now)
            .values("promoter_id")
            .annotate(clicks=Count("id"), flagged=Count("id", filter=Q(is_fraud=True) | Q(is_duplicate=True)))
            .values_list("promoter_id", "clicks", "flagged")
        ),
        columns=["id", "clicks", "flagged"],
    ).set_index("id")
    frame = frame.join(clicks, how="left").fillna({"clicks": 0, "flagged": 0})

    purchase = Q(event__type=ConversionEvent.Type.PURCHASE)
    weeks = {
        f"w{i}": Sum(
            "revenue_minor",
            filter=purchase
            & Q(event__occurred_at__gte=now - timedelta(days=7 * (i + 1)), event__occurred_at__lt=now - timedelta(days=7 * i)),
        )
        for i in range(WEEKS)
    }
    week_columns = list(weeks)
    credit_columns = ["purchases", "purchased", "orders", "refunded", "last_purchase", *week_columns]
    credits = pd.DataFrame.from_records(
        list(
            Credit.objects.filter(event__merchant=merchant, event__occurred_at__lt=now)
            .values("promoter_id", "currency")
            .annotate(
                purchases=Count("event_id", filter=purchase),
                purchased=Sum("revenue_minor", filter=purchase),
                orders=Sum("event__amount_minor", filter=purchase),
                refunded=Sum("revenue_minor", filter=Q(event__type=ConversionEvent.Type.REFUND)),
                last_purchase=Max("event__occurred_at", filter=purchase),
                **weeks,
            )
            .values_list("promoter_id", "currency", *credit_columns)
        ),
        columns=["id", "currency", *credit_columns],
    )
    money = ["purchased", "orders", "refunded", *week_columns]
    if len(credits):
        credits[money] = credits[money].astype("float64").fillna(0.0)
        unit = credits["currency"].map(lambda code: 10.0 ** minor_digits(code))
        credits[money] = credits[money].div(unit, axis=0)
        credits["last_purchase"] = pd.to_datetime(credits["last_purchase"], utc=True)
        grouped = credits.groupby("id").agg(
            {"purchases": "sum", **{column: "sum" for column in money}, "last_purchase": "max"}
        )
    else:
        grouped = pd.DataFrame(columns=["purchases", *money, "last_purchase"], index=pd.Index([], name="id"))
    frame = frame.join(grouped, how="left")
    frame[["purchases", *money]] = frame[["purchases", *money]].astype("float64").fillna(0.0)

    clicks_n = frame["clicks"].to_numpy(dtype="float64")
    purchases_n = frame["purchases"].to_numpy(dtype="float64")
    purchased = frame["purchased"].to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["conversion_rate"] = np.where(clicks_n > 0, purchases_n / clicks_n, 0.0)
        frame["flagged_share"] = np.where(clicks_n > 0, frame["flagged"].to_numpy(dtype="float64") / clicks_n, 0.0)
        frame["avg_order_value"] = np.where(purchases_n > 0, frame["orders"].to_numpy(dtype="float64") / purchases_n, 0.0)
        refund = np.where(purchased > 0, -frame["refunded"].to_numpy(dtype="float64") / purchased, 0.0)
    frame["refund_rate"] = np.clip(refund, 0.0, 1.0)

    weekly = frame[week_columns].to_numpy(dtype="float64")
    mean = weekly.mean(axis=1) if len(frame) else np.zeros(0)
    std = weekly.std(axis=1) if len(frame) else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame["revenue_cv"] = np.where(mean > 0, std / mean, NO_REVENUE_CV)

    last = pd.to_datetime(frame["last_purchase"], utc=True)
    since = (pd.Timestamp(now) - last).dt.total_seconds() / 86400
    frame["recency_days"] = since.fillna(RECENCY_CAP_DAYS).clip(lower=0.0, upper=RECENCY_CAP_DAYS).astype("float64")
    frame["clicks"] = frame["clicks"].astype("int64")
    return frame[[*FEATURES, "clicks"]].sort_index()


# --- Clustering and naming (pure) -------------------------------------------------------------


@dataclass
class Fit:
    k: int
    labels: np.ndarray
    silhouette: float
    silhouettes: dict[int, float]
    inertia: float
    mean: list[float]
    scale: list[float]
    centroids: list[list[float]]
    names: dict[int, str] = field(default_factory=dict)


def fit_segments(values: np.ndarray) -> Fit:
    """Scale, cluster for k in 2..6 and keep the best silhouette; raises ``TrainingFailed``."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    n = len(values)
    if n < MIN_PROMOTERS:
        raise TrainingFailed(f"Too few promoters with clicks to train on: {n} (at least {MIN_PROMOTERS}).")
    scaler = StandardScaler().fit(values)
    scaled = scaler.transform(values)
    distinct = len(np.unique(np.round(scaled, 9), axis=0))
    sample = SILHOUETTE_SAMPLE if n > SILHOUETTE_SAMPLE else None
    best = None
    silhouettes: dict[int, float] = {}
    for k in K_RANGE:
        if k > distinct or k >= n:
            break
        kmeans = KMeans(n_clusters=k, n_init=N_INIT, random_state=RANDOM_STATE).fit(scaled)
        if len(np.unique(kmeans.labels_)) < k:
            continue
        score = float(silhouette_score(scaled, kmeans.labels_, sample_size=sample, random_state=RANDOM_STATE))
        silhouettes[k] = score
        if best is None or score > best[0]:
            best = (score, k, kmeans)
    if best is None:
        raise TrainingFailed(f"Degenerate clustering: {distinct} distinct promoter(s), no k in 2..6 gives k clusters.")
    score, k, kmeans = best
    fit = Fit(
        k=k,
        labels=kmeans.labels_.astype(int),
        silhouette=score,
        silhouettes=silhouettes,
        inertia=float(kmeans.inertia_),
        mean=[float(x) for x in scaler.mean_],
        scale=[float(x) for x in scaler.scale_],
        centroids=[[float(x) for x in row] for row in kmeans.cluster_centers_],
    )
    sizes = np.bincount(fit.labels, minlength=k).tolist()
    fit.names = cluster_names(fit.centroids, sizes, FEATURES)
    return fit


def cluster_name(centroid: dict[str, float]) -> str:
    """The name of one scaled centroid (feature -> z-score); the rule is in the module docstring."""
    if centroid["refund_rate"] >= 0.5 or centroid["flagged_share"] >= 0.5:
        return "at_risk"
    if centroid["tenure_days"] <= -0.5:
        return NOVICES
    if centroid["conversion_rate"] >= 0.25 and centroid["avg_order_value"] >= 0:
        return "stars"
    if centroid["recency_days"] >= 0.5:
        return "at_risk"
    if centroid["revenue_cv"] <= 0:
        return "steady"
    return "occasional"


def cluster_names(centroids: list[list[float]], sizes: list[int], features: list[str]) -> dict[int, str]:
    """Distinct names for the clusters: the larger of two same-named clusters (the lower
    number on a tie) keeps the name, the others get ``_2``, ``_3``..."""
    base = {i: cluster_name(dict(zip(features, centroid, strict=True))) for i, centroid in enumerate(centroids)}
    names: dict[int, str] = {}
    for name in sorted(set(base.values())):
        members = sorted((i for i in base if base[i] == name), key=lambda i: (-sizes[i], i))
        for rank, i in enumerate(members, start=1):
            names[i] = name if rank == 1 else f"{name}_{rank}"
    return dict(sorted(names.items()))


def untrained_segment(tenure_days: float) -> str:
    return NOVICES if tenure_days < NOVICE_DAYS else INACTIVE


# --- Services ---------------------------------------------------------------------------------


def _next_version(merchant: Merchant) -> int:
    last = SegmentModel.objects.filter(merchant=merchant).aggregate(v=Max("version"))["v"]
    return (last or 0) + 1


def _ensure_default_plans(merchant: Merchant) -> None:
    if not SegmentPlan.objects.filter(merchant=merchant).exists():
        SegmentPlan.objects.bulk_create(
            [SegmentPlan(merchant=merchant, segment=s, payout_plan=p) for s, p in DEFAULT_PLANS.items()]
        )


def _apply_plans(model: SegmentModel) -> list[PlanChange]:
    """Give each promoter of ``model`` its segment's plan where it differs (through the
    promoters service, all at once), with a ``PlanChange`` row each. Segments without a plan
    row: untouched."""
    merchant = model.merchant
    plans = dict(SegmentPlan.objects.filter(merchant=merchant).values_list("segment", "payout_plan"))
    todo = [
        (promoter_id, segment, old, plans[segment])
        for promoter_id, segment, old in model.assignments.values_list("promoter_id", "segment", "promoter__payout_plan")
        if segment in plans and plans[segment] != old
    ]
    # All at once through the promoters service (a first training changes thousands); a
    # promoter whose plan already is the new one by now is not changed and gets no row.
    before = promoter_plans_set(merchant=merchant, plans={promoter_id: new for promoter_id, _, _, new in todo})
    changes = [
        PlanChange(promoter_id=promoter_id, model=model, segment=segment, old_plan=before[promoter_id], new_plan=new)
        for promoter_id, segment, _, new in todo
        if promoter_id in before
    ]
    PlanChange.objects.bulk_create(changes, batch_size=CHUNK)
    return changes


def _write(merchant: Merchant, features: pd.DataFrame, trained: pd.DataFrame, fit: Fit, seconds: float) -> SegmentModel:
    segments = {}
    for promoter_id, label in zip(trained.index, fit.labels, strict=True):
        segments[int(promoter_id)] = fit.names[int(label)]
    for promoter_id, tenure in features.loc[features["clicks"] == 0, "tenure_days"].items():
        segments[int(promoter_id)] = untrained_segment(float(tenure))
    sizes = pd.Series(list(segments.values()), dtype="object").value_counts().sort_index()
    untrained = features.index[features["clicks"] == 0]
    with transaction.atomic():
        merchant_lock(merchant.pk)
        SegmentModel.objects.filter(merchant=merchant, status=SegmentModel.Status.LIVE).update(
            status=SegmentModel.Status.RETIRED
        )
        model = SegmentModel.objects.create(
            merchant=merchant,
            version=_next_version(merchant),
            status=SegmentModel.Status.LIVE,
            clusters=fit.k,
            silhouette=fit.silhouette,
            metrics={
                "silhouette_by_k": {str(k): v for k, v in fit.silhouettes.items()},
                "sizes": {str(name): int(n) for name, n in sizes.items()},
                "cluster_sizes": {str(i): int(n) for i, n in enumerate(np.bincount(fit.labels, minlength=fit.k))},
                "inertia": fit.inertia,
                "trained_on": len(trained),
                "untrained": len(untrained),
                "seconds": round(seconds, 3),
            },
            features=list(FEATURES),
            scaler={"mean": fit.mean, "scale": fit.scale},
            centroids=fit.centroids,
            names={str(i): name for i, name in fit.names.items()},
        )
        records = features[FEATURES].round(6).to_dict("index")
        PromoterSegment.objects.bulk_create(
            [
                PromoterSegment(model=model, promoter_id=pid, segment=segment, features=records[pid])
                for pid, segment in segments.items()
            ],
            batch_size=CHUNK,
        )
        _ensure_default_plans(merchant)
        model.applied_changes = _apply_plans(model)
    return model


def _fail(merchant: Merchant, error: str, metrics: dict) -> SegmentModel:
    with transaction.atomic():
        merchant_lock(merchant.pk)
        return SegmentModel.objects.create(
            merchant=merchant,
            version=_next_version(merchant),
            status=SegmentModel.Status.FAILED,
            metrics=metrics,
            features=list(FEATURES),
            error=error[:5000],
        )


def segments_train(*, merchant: Merchant, now: datetime | None = None) -> SegmentModel:
    """Train a new segment model for ``merchant`` as of ``now`` and apply its plans.

    Success: a live ``SegmentModel`` (the next version), its ``PromoterSegment`` rows, the
    default plans if the merchant had none, the plan changes with their ``PlanChange`` rows,
    the previous live model retired, all in one transaction. The changes made are on
    ``model.applied_changes`` (not stored).
    Failure (any exception, too few promoters, a degenerate clustering): a ``failed``
    model with the error, and nothing else changed; it is returned, not raised.
    """
    now = now or timezone.now()
    started = time.monotonic()
    metrics: dict = {}
    try:
        features = promoter_features(merchant=merchant, now=now)
        trained = features[features["clicks"] > 0]
        metrics = {"promoters": len(features), "trained_on": len(trained)}
        fit = fit_segments(trained[FEATURES].to_numpy(dtype="float64"))
        return _write(merchant, features, trained, fit, time.monotonic() - started)
    except TrainingFailed as exc:
        logger.warning("Segment training for merchant %s failed: %s", merchant.pk, exc)
        error = str(exc)
    except Exception as exc:  # noqa: BLE001 - a failed training is recorded, the live model kept
        logger.exception("Segment training for merchant %s failed", merchant.pk)
        error = f"{type(exc).__name__}: {exc}"
    model = _fail(merchant, error, metrics)
    model.applied_changes = []
    return model


@transaction.atomic
def segments_rollback(*, merchant: Merchant, version: int) -> SegmentModel:
    """Make an earlier successful model of ``merchant`` live again (its assignments were kept)
    and re-apply the plans; the changes made are on ``model.applied_changes``."""
    merchant_lock(merchant.pk)
    target = SegmentModel.objects.select_for_update().filter(merchant=merchant, version=version).first()
    if target is None:
        raise ServiceValidationError({"version": ["No segment model with this version."]})
    if target.status == SegmentModel.Status.FAILED:
        raise ServiceValidationError({"version": ["A failed training cannot be made live."]})
    SegmentModel.objects.filter(merchant=merchant, status=SegmentModel.Status.LIVE).exclude(pk=target.pk).update(
        status=SegmentModel.Status.RETIRED
    )
    if target.status != SegmentModel.Status.LIVE:
        target.status = SegmentModel.Status.LIVE
        target.save(update_fields=["status"])
    target.applied_changes = _apply_plans(target)
    return target


def segment_summary(model: SegmentModel) -> str:
    """One paragraph for the commands: version, k, silhouette, sizes by name, plan changes."""
    if model.status == SegmentModel.Status.FAILED:
        return f"v{model.version} failed: {model.error}"
    sizes = ", ".join(f"{name} {n}" for name, n in sorted(model.metrics.get("sizes", {}).items()))
    changes = getattr(model, "applied_changes", [])
    moves: dict[tuple[str, str], int] = {}
    for change in changes:
        moves[(change.old_plan, change.new_plan)] = moves.get((change.old_plan, change.new_plan), 0) + 1
    moved = ", ".join(f"{old} -> {new}: {n}" for (old, new), n in sorted(moves.items()))
    silhouette = "-" if model.silhouette is None else f"{model.silhouette:.3f}"
    return (
        f"v{model.version} {model.status}: k={model.clusters}, silhouette {silhouette}; sizes: {sizes}; "
        f"plan changes: {len(changes)}" + (f" ({moved})" if moved else "")
    )
