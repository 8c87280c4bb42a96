"""Bulk builders for the content tests (no tests here): content with its link, clicks on the
link and purchases credited to it (touchpoint, credit and commissions), written with one
insert per table."""

from __future__ import annotations

import itertools
from datetime import datetime

from affiliate.models import Click, ConversionEvent, Customer, ReferralLink, Visitor
from attribution.models import Credit, Touchpoint
from insights.models import Content
from payouts.models import Commission

_orders = itertools.count(1)


def make_links(promoters: list, codes: list[str]) -> list[ReferralLink]:
    return ReferralLink.objects.bulk_create([
        ReferralLink(merchant_id=p.merchant_id, program_id=p.program_id, promoter=p, code=code,
                     destination_url="https://shop.example.com/", channel="blog")
        for p, code in zip(promoters, codes, strict=True)
    ])


def make_contents(specs: list[dict]) -> list[Content]:
    """specs: promoter, link, title, text, format, published_at (channel optional)."""
    return Content.objects.bulk_create([
        Content(merchant_id=s["promoter"].merchant_id, promoter=s["promoter"], link=s["link"], title=s["title"],
                text=s.get("text", ""), format=s["format"], channel=s.get("channel", "blog"),
                published_at=s["published_at"])
        for s in specs
    ])


def make_clicks(link: ReferralLink | None = None, times: list[datetime] | None = None, *, pairs=None,
                **flags) -> list[Click]:
    """Clicks at ``times`` on ``link`` (or ``pairs`` of (link, time))."""
    pairs = pairs if pairs is not None else [(link, t) for t in times]
    visitor = Visitor.objects.create()
    return Click.objects.bulk_create([
        Click(link=lk, merchant_id=lk.merchant_id, program_id=lk.program_id, promoter_id=lk.promoter_id,
              visitor=visitor, created_at=t, **flags)
        for lk, t in pairs
    ])


def make_purchases(sales: list[dict]) -> list[ConversionEvent]:
    """sales: click (the touchpoint's click), amount_minor, commissions [(promoter, kind,
    level, amount_minor)], currency (default USD), and optionally more touchpoints
    ``extra`` [(click, weight)] of the same promoter (the first one's weight: ``weight``)."""
    customers = Customer.objects.bulk_create([
        Customer(merchant_id=s["click"].merchant_id, external_id=f"c-{next(_orders)}") for s in sales
    ])
    events = ConversionEvent.objects.bulk_create([
        ConversionEvent(
            merchant_id=s["click"].merchant_id, program_id=s["click"].program_id, customer=c, type="purchase",
            stage="first_purchase", status="processed", amount_minor=s["amount_minor"],
            currency=s.get("currency", "USD"), order_id=f"o-{next(_orders)}", body_hash="x",
            occurred_at=s["click"].created_at, click=s["click"],
        )
        for s, c in zip(sales, customers, strict=True)
    ])
    touchpoints, credits, commissions = [], [], []
    for s, e in zip(sales, events, strict=True):
        click = s["click"]
        parts = [(click, s.get("weight", 1))] + list(s.get("extra", []))
        for position, (k, weight) in enumerate(parts):
            touchpoints.append(Touchpoint(
                event=e, position=position, kind="click", promoter_id=k.promoter_id, click=k, link_id=k.link_id,
                channel="blog", at=k.created_at, weight=weight,
                revenue_minor=round(s["amount_minor"] * weight),
            ))
        credits.append(Credit(event=e, promoter_id=click.promoter_id, weight=sum(w for _, w in parts),
                              weight_exact="1/1", revenue_minor=s["amount_minor"], currency=e.currency,
                              first_position=0))
        for promoter, kind, level, amount in s.get("commissions", []):
            commissions.append(Commission(
                merchant_id=e.merchant_id, program_id=e.program_id, event=e, promoter=promoter,
                source_promoter_id=click.promoter_id, kind=kind, level=level, amount_minor=amount,
                currency=e.currency, available_at=e.occurred_at,
            ))
    Touchpoint.objects.bulk_create(touchpoints)
    Credit.objects.bulk_create(credits)
    Commission.objects.bulk_create(commissions)
    return events
