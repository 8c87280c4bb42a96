"""Content intelligence: which keywords and topics, formats, posting hours and weekdays
convert best, and best per unit of commission paid.

``content_insights_run`` reads, in bulk, the content a merchant's promoters published in the
last ``days`` days (and the material drafts handed out as ``MaterialAssignment``s, each
with its own tracking link, so the loop closes), joins each piece to the conversions of the
link it carries, ranks the keywords, formats, hours, weekdays and hour x weekday cells, and
keeps the tables in an ``InsightRun(kind="content")``.

How a click or a purchase finds its content
    A click on a link, or a purchase's touchpoint on it (``Touchpoint.link``; ``at`` is
    the click's time), goes to the latest piece of content carrying that link published at
    or before it (``pandas.merge_asof`` by link); a click before any content on its link
    counts for none. Fraud and duplicate clicks are left out. Purchases are purchase
    events (refunds are not subtracted); a purchase counts once per content even when the
    journey clicked the same content twice. A purchase's revenue is its touchpoints'
    ``revenue_minor``; its commission is what the purchase earned from the touchpoint's
    promoter's share (the direct commission and the uplines' overrides, any status: the
    commission the merchant pays for it), split between that promoter's touchpoints by
    weight and rounded to the minor unit.

Money
    Revenue and commission are summed in minor units of the merchant's currency (the
    default program's; purchases in another currency count as purchases but add no money)
    and shown as decimal strings. "Per unit of commission" figures are ratios (floats):
    purchases per 1.00 of commission and revenue per 1.00 of commission.

The confidence bound (documented so that a reader can check the ranking)
    A group's (a term's, a format's, an hour's...) conversion rate is purchases / clicks,
    its lift that rate divided by the overall rate of all the content in the window. The
    ranking uses the lift's lower bound: the lower end of the 95% Wilson score interval of
    the group's rate (z = 1.96; purchases capped at clicks, since a rate above one is not a
    proportion) divided by the overall rate. A group with few clicks gets a wide interval
    and a low bound, so a term seen on two lucky posts does not outrank one seen on two
    hundred. Ties: lift, then clicks, then the key.

Keywords
    scikit-learn's ``TfidfVectorizer`` over title + text (English stop words, unigrams and
    bigrams, ``min_df``), fitted on the window's content. A content "contains" a term when
    its TF-IDF weight is positive; the term's figures are the sums over the contents that
    contain it (one sparse matrix product for all the terms); ``tfidf`` is the term's mean
    weight where it occurs (how characteristic it is of those contents).

Times are UTC: ``hour`` 0-23 and ``weekday`` 0 (Monday) - 6 of ``published_at``.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from decimal import Decimal

import numpy as np
import pandas as pd
from django.db import connection, transaction
from django.utils import timezone

from affiliate.models import Click, ConversionEvent, ReferralLink
from attribution.models import Credit, Touchpoint
from core import money
from core.errors import ServiceValidationError
from merchants.models import Merchant, Program
from payouts.models import Commission

from .models import Content, InsightRun, MaterialAssignment

Z = 1.96
TOP_KEYWORDS = 50
MIN_DF = 2
MAX_FEATURES = 20000
HOUR_WINDOW = 3
COMMISSION_KINDS = (Commission.Kind.DIRECT, Commission.Kind.OVERRIDE)


# --- Pure pieces: the figures -------------------------------------------------------------


def wilson_lower(successes: float, trials: float, z: float = Z) -> float:
    """The lower end of the Wilson score interval of a proportion (0 without trials)."""
    if trials <= 0:
        return 0.0
    p = min(successes, trials) / trials
    z2 = z * z
    centre = p + z2 / (2 * trials)
    spread = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, (centre - spread) / (1 + z2 / trials))


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 6) if b else None


def group_row(key, *, contents: int, clicks: int, purchases: int, revenue_minor: int, commission_minor: int,
              overall_rate: float | None, currency: str) -> dict:
    """One ranked group's figures, JSON-safe (money as decimal strings, ratios as floats)."""
    clicks, purchases, contents = int(clicks), int(purchases), int(contents)
    rate = purchases / clicks if clicks else None
    lift = rate / overall_rate if rate is not None and overall_rate else None
    lower = wilson_lower(purchases, clicks) / overall_rate if clicks and overall_rate else None
    commission = float(money.from_minor(int(commission_minor), currency))
    revenue = float(money.from_minor(int(revenue_minor), currency))
    return {
        "key": key,
        "contents": int(contents),
        "clicks": int(clicks),
        "purchases": int(purchases),
        "conversion_rate": None if rate is None else round(rate, 6),
        "lift": None if lift is None else round(lift, 6),
        "lift_lower": None if lower is None else round(lower, 6),
        "revenue": money.format_minor(int(revenue_minor), currency),
        "commission": money.format_minor(int(commission_minor), currency),
        "purchases_per_commission": _ratio(purchases, commission),
        "revenue_per_commission": _ratio(revenue, commission),
    }


def _rank(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (-(r["lift_lower"] or 0), -(r["lift"] or 0), -r["clicks"], str(r["key"])))


def _per_commission(rows: list[dict], field: str) -> list:
    """The keys ordered by a per-commission figure (groups without commission last)."""
    return [r["key"] for r in sorted(rows, key=lambda r: (r[field] is None, -(r[field] or 0), str(r["key"])))]


def rank_groups(frame: pd.DataFrame, by: str | list[str], *, overall_rate, currency: str, keyfn=None) -> list[dict]:
    """Sum the content frame's figures per ``by`` and rank the groups."""
    sums = frame.groupby(by, sort=True).agg(
        contents=("clicks", "size"), clicks=("clicks", "sum"), purchases=("purchases", "sum"),
        revenue_minor=("revenue_minor", "sum"), commission_minor=("commission_minor", "sum"),
    )
    rows = [
        group_row(keyfn(key) if keyfn else key, overall_rate=overall_rate, currency=currency, **rec)
        for key, rec in zip(sums.index, sums.to_dict("records"), strict=True)
    ]
    return _rank(rows)


def keyword_table(frame: pd.DataFrame, *, overall_rate, currency: str, min_df: int = MIN_DF,
                  top: int = TOP_KEYWORDS) -> list[dict]:
    """The terms of the contents' title + text, ranked by the lift's lower bound."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    docs = (frame["title"].fillna("") + " " + frame["text"].fillna("")).tolist()
    if len(docs) < max(min_df, 1):
        return []
    vectorizer = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), min_df=min_df, max_features=MAX_FEATURES)
    try:
        weights = vectorizer.fit_transform(docs)
    except ValueError:  # no term left (every word a stop word, or under min_df)
        return []
    terms = vectorizer.get_feature_names_out()
    present = (weights > 0).astype(np.int64).tocsc()
    columns = {
        name: present.T @ frame[name].to_numpy(dtype=np.int64)
        for name in ("clicks", "purchases", "revenue_minor", "commission_minor")
    }
    contents = np.asarray(present.sum(axis=0)).ravel()
    tfidf_sum = np.asarray(weights.sum(axis=0)).ravel()
    # Only the best ``top`` terms become rows: the bound and the lift for all of them at once.
    n = columns["clicks"].astype(float)
    p = np.minimum(columns["purchases"], columns["clicks"]).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        phat = np.where(n > 0, p / np.where(n > 0, n, 1), 0.0)
        z2 = Z * Z
        safe = np.where(n > 0, n, 1)
        lower = (phat + z2 / (2 * safe) - Z * np.sqrt(phat * (1 - phat) / safe + z2 / (4 * safe * safe))) / (1 + z2 / safe)
        lower = np.where(n > 0, np.maximum(lower, 0), 0)
        lift = np.where(n > 0, columns["purchases"] / safe, 0)
    candidates = np.lexsort((-columns["clicks"], -lift, -lower))[: top * 2]
    rows = []
    for i in candidates:
        row = group_row(
            str(terms[i]), contents=contents[i], clicks=columns["clicks"][i], purchases=columns["purchases"][i],
            revenue_minor=columns["revenue_minor"][i], commission_minor=columns["commission_minor"][i],
            overall_rate=overall_rate, currency=currency,
        )
        row["tfidf"] = round(float(tfidf_sum[i] / contents[i]), 6) if contents[i] else 0.0
        rows.append(row)
    return _rank(rows)[:top]


def hour_windows(frame: pd.DataFrame, *, overall_rate, currency: str, width: int = HOUR_WINDOW) -> list[dict]:
    """Windows of ``width`` consecutive posting hours (wrapping past midnight), ranked."""
    sums = frame.groupby("hour").agg(
        contents=("clicks", "size"), clicks=("clicks", "sum"), purchases=("purchases", "sum"),
        revenue_minor=("revenue_minor", "sum"), commission_minor=("commission_minor", "sum"),
    ).reindex(range(24), fill_value=0)
    values = sums.to_numpy(dtype=np.int64)
    rows = []
    for start in range(24):
        hours = [(start + k) % 24 for k in range(width)]
        total = values[hours].sum(axis=0)
        row = group_row(
            f"{hours[0]:02d}-{hours[-1]:02d}", overall_rate=overall_rate, currency=currency,
            **dict(zip(sums.columns, (int(v) for v in total), strict=True)),
        )
        row["hours"] = hours
        rows.append(row)
    return _rank([r for r in rows if r["contents"]])


def content_tables(frame: pd.DataFrame, *, currency: str, min_df: int = MIN_DF) -> dict:
    """Every table of a content run from the per-content frame (columns: id, kind, title,
    text, format, published_at, clicks, purchases, revenue_minor, commission_minor)."""
    clicks = int(frame["clicks"].sum()) if len(frame) else 0
    purchases = int(frame["purchases"].sum()) if len(frame) else 0
    overall = purchases / clicks if clicks else None
    totals = group_row(
        "all", contents=len(frame), clicks=clicks, purchases=purchases,
        revenue_minor=int(frame["revenue_minor"].sum()) if len(frame) else 0,
        commission_minor=int(frame["commission_minor"].sum()) if len(frame) else 0,
        overall_rate=overall, currency=currency,
    )
    if not len(frame):
        return {"totals": totals, "keywords": [], "formats": [], "hours": [], "weekdays": [], "grid": [],
                "hour_windows": [], "materials": [], "per_commission": {}}
    published = pd.to_datetime(frame["published_at"], utc=True)
    frame = frame.assign(hour=published.dt.hour, weekday=published.dt.day_of_week)
    kw = dict(overall_rate=overall, currency=currency)
    tables = {
        "totals": totals,
        "keywords": keyword_table(frame, min_df=min_df, **kw),
        "formats": rank_groups(frame, "format", **kw),
        "hours": rank_groups(frame, "hour", keyfn=int, **kw),
        "weekdays": rank_groups(frame, "weekday", keyfn=int, **kw),
        "grid": rank_groups(frame, ["weekday", "hour"], keyfn=lambda k: [int(k[0]), int(k[1])], **kw),
        "hour_windows": hour_windows(frame, **kw),
    }
    materials = frame[frame["kind"] == "material"]
    tables["materials"] = (
        rank_groups(materials, "material_id", keyfn=int, **kw) if len(materials) else []
    )
    tables["per_commission"] = {
        name: {
            "purchases": _per_commission(tables[name], "purchases_per_commission"),
            "revenue": _per_commission(tables[name], "revenue_per_commission"),
        }
        for name in ("keywords", "formats", "hours", "weekdays")
    }
    return tables


# --- Bulk reads ---------------------------------------------------------------------------


def _frame(queryset, columns: list[str]) -> pd.DataFrame:
    """A values_list queryset read into a DataFrame in one query, without model objects."""
    sql, params = queryset.values_list(*columns).query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return pd.DataFrame.from_records(rows, columns=columns)


def _utc(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True)


def _merchant_currency(merchant: Merchant) -> str:
    row = (
        Program.objects.filter(merchant=merchant).order_by("-is_default", "id").values_list("currency", flat=True).first()
    )
    return row or "USD"


def content_frame(*, merchant: Merchant, since, until) -> tuple[pd.DataFrame, str]:
    """One row per content (and per material assignment) published in [since, until], with
    its clicks, purchases, revenue and commission (see the module's docstring)."""
    currency = _merchant_currency(merchant)
    contents = _frame(
        Content.objects.filter(merchant=merchant, published_at__gte=since, published_at__lte=until),
        ["id", "link_id", "title", "text", "format", "published_at", "promoter_id"],
    ).assign(kind="content", material_id=None)
    assignments = _frame(
        MaterialAssignment.objects.filter(
            material__merchant=merchant, created_at__gte=since, created_at__lte=until, link__isnull=False,
        ).exclude(link_id__in=Content.objects.filter(merchant=merchant, link__isnull=False).values("link_id")),
        ["id", "link_id", "material__headline", "material__body", "material__format", "created_at", "promoter_id",
         "material_id"],
    ).rename(columns={"material__headline": "title", "material__body": "text", "material__format": "format",
                      "created_at": "published_at"}).assign(kind="material")
    parts = [p for p in (contents, assignments) if len(p)]
    if not parts:
        empty = pd.DataFrame(columns=["id", "kind", "material_id", "link_id", "title", "text", "format", "published_at",
                                      "clicks", "purchases", "revenue_minor", "commission_minor"])
        return empty, currency
    items = pd.concat(parts, ignore_index=True)
    items["published_at"] = _utc(items["published_at"])
    items["key"] = np.arange(len(items))
    linked = items.dropna(subset=["link_id"]).astype({"link_id": np.int64}).sort_values("published_at")
    start = items["published_at"].min()

    link_filter = (
        Content.objects.filter(merchant=merchant, published_at__gte=since, published_at__lte=until,
                               link__isnull=False).values("link_id")
    )
    material_links = MaterialAssignment.objects.filter(
        material__merchant=merchant, created_at__gte=since, created_at__lte=until, link__isnull=False,
    ).values("link_id")

    def on_links(qs, field):
        return qs.filter(**{f"{field}__in": link_filter}) | qs.filter(**{f"{field}__in": material_links})

    clicks = _frame(
        on_links(Click.objects.filter(merchant=merchant, created_at__gte=start, created_at__lte=until,
                                      is_fraud=False, is_duplicate=False), "link_id"),
        ["link_id", "created_at"],
    )
    touch = _frame(
        on_links(Touchpoint.objects.filter(at__gte=start, at__lte=until, event__merchant=merchant,
                                           event__type=ConversionEvent.Type.PURCHASE), "link_id"),
        ["event_id", "promoter_id", "link_id", "at", "weight", "revenue_minor", "event__currency"],
    ).rename(columns={"event__currency": "currency"})

    # Clicks and touchpoints to the latest content on their link at their time.
    def to_content(frame: pd.DataFrame, at: str) -> pd.DataFrame:
        if not len(frame) or not len(linked):
            return frame.assign(key=pd.Series(dtype="float64"))
        frame = frame.assign(**{at: _utc(frame[at])}).astype({"link_id": np.int64}).sort_values(at)
        merged = pd.merge_asof(frame, linked[["published_at", "link_id", "key"]], left_on=at,
                               right_on="published_at", by="link_id", direction="backward")
        return merged.dropna(subset=["key"])

    clicks = to_content(clicks, "created_at")
    per_key_clicks = clicks.groupby("key").size() if len(clicks) else pd.Series(dtype="int64")

    touch = to_content(touch, "at")
    purchases = pd.Series(dtype="int64")
    revenue = pd.Series(dtype="int64")
    commission = pd.Series(dtype="int64")
    if len(touch):
        touch = touch.astype({"revenue_minor": np.int64})
        purchases = touch.groupby("key")["event_id"].nunique()
        own = touch[touch["currency"] == currency]
        revenue = own.groupby("key")["revenue_minor"].sum()
        events = on_links(Touchpoint.objects.filter(at__gte=start, at__lte=until, event__merchant=merchant,
                                                    event__type=ConversionEvent.Type.PURCHASE), "link_id").values("event_id")
        paid = _frame(
            Commission.objects.filter(event_id__in=events, kind__in=COMMISSION_KINDS, currency=currency),
            ["event_id", "source_promoter_id", "amount_minor"],
        )
        credits = _frame(Credit.objects.filter(event_id__in=events), ["event_id", "promoter_id", "weight"])
        if len(paid) and len(own):
            paid = paid.groupby(["event_id", "source_promoter_id"], as_index=False)["amount_minor"].sum()
            paid = paid.rename(columns={"source_promoter_id": "promoter_id"})
            share = own.merge(credits.rename(columns={"weight": "credit_weight"}), on=["event_id", "promoter_id"])
            share = share.merge(paid, on=["event_id", "promoter_id"])
            commission = _commission_by_key(share, currency)

    items = items.set_index("key")
    items["clicks"] = per_key_clicks.reindex(items.index, fill_value=0).astype(np.int64)
    items["purchases"] = purchases.reindex(items.index, fill_value=0).astype(np.int64)
    items["revenue_minor"] = revenue.reindex(items.index, fill_value=0).astype(np.int64)
    items["commission_minor"] = commission.reindex(items.index, fill_value=0).astype(np.int64)
    return items.reset_index(drop=True), currency


# --- The job -----------------------------------------------------------------------------


def content_insights_run(*, merchant: Merchant, days: int = 30, now=None, min_df: int = MIN_DF) -> InsightRun:
    """Rank what converts in the content of the last ``days`` days and keep the tables."""
    started = time.monotonic()
    now = now or timezone.now()
    since = now - timedelta(days=days)
    frame, currency = content_frame(merchant=merchant, since=since, until=now)
    results = {
        "window": {"days": days, "since": since.isoformat(), "until": now.isoformat()},
        "currency": currency,
        "method": {
            "bound": "95% Wilson lower bound of purchases/clicks divided by the overall rate",
            "z": Z, "min_df": min_df, "ngram_range": [1, 2], "hour_window": HOUR_WINDOW, "timezone": "UTC",
        },
        **content_tables(frame, currency=currency, min_df=min_df),
    }
    return InsightRun.objects.create(
        merchant=merchant, kind=InsightRun.Kind.CONTENT, window_days=days, results=results,
        seconds=round(time.monotonic() - started, 3),
    )


def _commission_by_key(share: pd.DataFrame, currency: str) -> pd.Series:
    """The commission each content key earned: every (event, promoter) commission split over
    that promoter's touchpoints by their exact weights, the part outside content (its other
    touchpoints) left out, by ``money.split``, so the parts of a commission add up to it."""
    parts: dict = {}
    for (_, _), rows in share.groupby(["event_id", "promoter_id"], sort=False):
        weights = [Decimal(str(w)) for w in rows["weight"]]
        rest = Decimal(str(rows["credit_weight"].iloc[0])) - sum(weights, Decimal(0))
        amount = money.from_minor(int(rows["amount_minor"].iloc[0]), currency)
        pieces = money.split(amount, [*weights, max(rest, Decimal(0))], currency)
        for key, piece in zip(rows["key"], pieces, strict=False):
            parts[key] = parts.get(key, 0) + money.to_minor(piece, currency)
    return pd.Series(parts, dtype="int64")


# --- Registration ------------------------------------------------------------------------

CONTENT_FIELDS = ("title", "text", "format", "channel", "published_at", "link")


def content_problems(*, promoter, title, text, format, channel, published_at, link_id, now=None) -> dict:
    """What is wrong with a piece of content a promoter registers (empty: nothing)."""
    problems: dict[str, list[str]] = {}
    if not isinstance(title, str) or not title.strip():
        problems["title"] = ["A title is required."]
    elif len(title.strip()) > 300:
        problems["title"] = ["At most 300 characters."]
    if text is not None and not isinstance(text, str):
        problems["text"] = ["Must be text."]
    if format not in Content.Format.values:
        problems["format"] = [f"One of: {', '.join(Content.Format.values)}."]
    if channel is not None and (not isinstance(channel, str) or len(channel.strip()) > 64):
        problems["channel"] = ["Free text of at most 64 characters."]
    if published_at is None:
        problems["published_at"] = ["When it was published is required."]
    elif published_at > (now or timezone.now()):
        problems["published_at"] = ["Must not be in the future."]
    if link_id is None:
        problems["link"] = ["The referral link the content carries is required."]
    elif not ReferralLink.objects.filter(pk=link_id, promoter=promoter).exists():
        problems["link"] = ["None of your links has this id."]
    return problems


@transaction.atomic
def content_create(*, promoter, title: str, format: str, published_at, link_id: int, text: str = "",
                   channel: str = "") -> Content:
    """Register a promoter's content; a ``ServiceValidationError`` (and nothing written) if
    the link is not theirs, the format unknown or the time in the future."""
    problems = content_problems(promoter=promoter, title=title, text=text, format=format, channel=channel,
                                published_at=published_at, link_id=link_id)
    if problems:
        raise ServiceValidationError(problems)
    return Content.objects.create(
        merchant_id=promoter.merchant_id, promoter=promoter, link_id=link_id, title=title.strip(),
        text=text or "", format=format, channel=(channel or "").strip(), published_at=published_at,
    )
