"""Reads for the merchant's insight pages: what the insight jobs found, as the pages show it.

The jobs (``insights``) keep their tables in ``InsightRun`` rows; these pages read the latest
run of each kind for the merchant and never recompute: a page costs a few indexed reads
whatever the size of the program. Every read is filtered by the merchant.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from django.db.models import Count

from core import money
from core.routers import replica_reads
from insights.models import InsightRun, Material, PromoterSegment, RateChange, SegmentModel, SegmentPlan
from promoters.models import Promoter

WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
SCATTER_POINTS = 2000  # a scatter of more points says nothing more and weighs the page down
TOP = 20


@replica_reads()
def latest_run(merchant, kind: str) -> InsightRun | None:
    return InsightRun.objects.filter(merchant=merchant, kind=kind).order_by("-created_at", "-id").first()


def _names(ids) -> dict[int, str]:
    return dict(Promoter.objects.filter(pk__in=set(ids)).values_list("id", "name")) if ids else {}


def _ratio(value) -> float | None:
    return None if value in (None, "") else float(value)


@replica_reads()
def value_page(merchant, program) -> dict:
    """LTV, CAC and LTV/CAC of the program's channels and best promoters, from the latest
    value run, and the chart's series."""
    run = latest_run(merchant, InsightRun.Kind.VALUE)
    if run is None:
        return {"run": None}
    channels = [row for row in run.results.get("channels", []) if row.get("program_id") == program.pk]
    promoters = [row for row in run.results.get("promoters", []) if row.get("program_id") == program.pk]
    # The best by LTV/CAC first; those without a cost (nothing paid yet) after, by revenue.
    promoters.sort(key=lambda r: (r.get("ltv_cac") is None, -Decimal(r.get("ltv_cac") or 0), -Decimal(r.get("revenue") or 0)))
    top = promoters[:TOP]
    names = _names(row["promoter_id"] for row in top)
    for row in top:
        row["name"] = names.get(row["promoter_id"], f"#{row['promoter_id']}")
    channels.sort(key=lambda r: (r.get("channel") or ""))
    chart = {
        "labels": [row.get("channel") or "(none)" for row in channels],
        "ltv": [_ratio(row.get("ltv")) for row in channels],
        "cac": [_ratio(row.get("cac")) for row in channels],
        "ratio": [_ratio(row.get("ltv_cac")) for row in channels],
    }
    return {"run": run, "channels": channels, "promoters": top, "promoter_count": len(promoters), "chart": chart}


@replica_reads()
def rate_log(merchant, limit: int = 50) -> list[RateChange]:
    return list(
        RateChange.objects.filter(program__merchant=merchant).select_related("promoter", "program").order_by("-created_at", "-id")[:limit]
    )


@replica_reads()
def segments_page(merchant) -> dict:
    """The live segment model, its segments' sizes and plans, a scatter of its promoters
    (conversion rate against average order value, a sample when there are many), and
    every version for roll-back."""
    models = list(SegmentModel.objects.filter(merchant=merchant).order_by("-version")[:20])
    live = next((m for m in models if m.status == SegmentModel.Status.LIVE), None)
    if live is None:
        return {"live": None, "models": models}
    plans = dict(SegmentPlan.objects.filter(merchant=merchant).values_list("segment", "payout_plan"))
    sizes = Counter(dict(PromoterSegment.objects.filter(model=live).values("segment").annotate(n=Count("id")).values_list("segment", "n")))
    rows = list(PromoterSegment.objects.filter(model=live).order_by("promoter_id").values_list("segment", "features")[:SCATTER_POINTS])
    points: dict[str, list] = {}
    for segment, features in rows:
        x, y = features.get("conversion_rate"), features.get("avg_order_value")
        if x is not None and y is not None:
            points.setdefault(segment, []).append({"x": round(float(x), 6), "y": round(float(y), 2)})
    segments = [
        {"name": name, "size": sizes[name], "plan": plans.get(name, "")} for name in sorted(sizes, key=lambda n: (-sizes[n], n))
    ]
    return {
        "live": live, "models": models, "segments": segments, "sampled": len(rows), "total": sum(sizes.values()),
        "scatter": {"segments": [{"name": name, "points": pts} for name, pts in sorted(points.items())]},
    }


@replica_reads()
def content_page(merchant) -> dict:
    """The latest content run: keywords, formats, posting times (an hour by weekday grid)
    and the materials' performance."""
    run = latest_run(merchant, InsightRun.Kind.CONTENT)
    if run is None:
        return {"run": None}
    results = run.results
    keywords = results.get("keywords", [])[:TOP]
    grid_rows = results.get("grid", [])
    cells = {(int(r["key"][0]), int(r["key"][1])): r for r in grid_rows}
    rates = [r["conversion_rate"] for r in grid_rows if r.get("conversion_rate") is not None]
    top_rate = max(rates) if rates else 0
    grid = []
    for weekday, day in enumerate(WEEKDAYS):
        row = []
        for hour in range(24):
            cell = cells.get((weekday, hour))
            rate = cell.get("conversion_rate") if cell else None
            # Five shades, by the cell's rate against the best cell's; no clicks: no shade.
            shade = 0 if not rate or not top_rate else min(5, 1 + int(4 * rate / top_rate))
            row.append({"hour": hour, "rate": rate, "clicks": cell["clicks"] if cell else 0, "shade": shade,
                        "purchases": cell["purchases"] if cell else 0})
        grid.append({"day": day, "cells": row})
    material_rows = {int(r["key"]): r for r in results.get("materials", [])}
    materials = list(
        Material.objects.filter(merchant=merchant).annotate(assigned=Count("assignments")).order_by("-created_at", "-id")[:TOP]
    )
    currency = results.get("currency", "")
    nothing = {"clicks": 0, "purchases": 0, "revenue": money.format_minor(0, currency) if currency else "0"}
    for material in materials:
        material.figures = material_rows.get(material.pk, nothing)
    chart = {
        "labels": [str(r["key"]) for r in keywords],
        "lift": [r.get("lift") for r in keywords],
        "lift_lower": [r.get("lift_lower") for r in keywords],
    }
    return {
        "run": run, "totals": results.get("totals", {}), "keywords": keywords, "formats": results.get("formats", []),
        "hour_windows": results.get("hour_windows", [])[:5], "grid": grid, "hours": list(range(24)),
        "materials": materials, "chart": chart, "currency": currency,
    }
