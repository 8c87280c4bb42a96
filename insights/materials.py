"""Material drafts written from a content run's winners, handed to the promoters they fit.

``materials_write(run=...)`` takes the run's winning topics (the top keywords by the lift's
lower bound whose lift is above one) and winning formats (the top formats the same way, at
least one), and the merchant's active products, and writes ``VARIANTS`` drafts per product
(headline and copy from templates + the topics + the product's name, description and url),
the formats going round the winning formats.

Who gets them (``materials_assign``), the rule:
  - a promoter fits when they are active and their past content (any time up to the run)
    used one of the winning formats or mentions one of the winning topics in its title or
    text;
  - when the merchant's live ``SegmentModel`` has ``PromoterSegment`` rows, fitting
    promoters in the segments ``stars`` or ``steady`` come first; then the others, each
    group by how many of their pieces fit (most first), then by id; at most
    ``max_promoters`` promoters;
  - each gets up to ``per_promoter`` drafts, those in a format they used first, spread over
    the products; each ``MaterialAssignment`` carries a NEW link of the promoter's own,
    made by ``affiliate.services.link_create`` with ``channel="material-<id>"``, so the
    draft's clicks and purchases are tracked and the next content run counts them.

Both steps are idempotent per run: a second call finds the run's drafts (by product,
variant and format) and the existing assignments (unique per draft and promoter), and
makes no new draft, assignment or link.
"""

from __future__ import annotations

import re
from collections import defaultdict

from django.db import transaction

from affiliate.services import link_create
from core.errors import ServiceValidationError
from promoters.models import Promoter

from .models import Content, InsightRun, Material, MaterialAssignment, Product, PromoterSegment, SegmentModel

VARIANTS = 3
TOP_TOPICS = 5
TOP_FORMATS = 2
MAX_PRODUCTS = 5
PREFERRED_SEGMENTS = ("stars", "steady")

HEADLINES = (
    "{product}: {topic_title}, done right",
    "Why {topic} fans are switching to {product}",
    "{topic_title} in 5 minutes with {product}",
    "The honest {product} review: {topic} and more",
)
BODIES = (
    "{description}\n\nIf {topic} matters to you, {product} is worth a look. {also}\n\nSee it here: {url}",
    "I have been testing {product} for {topic}. {description}\n\n{also}\n\nTry it: {url}",
    "{product} makes {topic} simple. {description}\n\nWhat I like: {also_list}.\n\nGet it: {url}",
    "Three things about {product}: {also_list}. {description}\n\nLink: {url}",
)


def winners(run: InsightRun) -> tuple[list[str], list[str]]:
    """The run's winning topics and formats (see the module's docstring)."""
    results = run.results or {}
    topics = [r["key"] for r in results.get("keywords", []) if (r.get("lift") or 0) > 1][:TOP_TOPICS]
    formats = [r["key"] for r in results.get("formats", []) if (r.get("lift") or 0) >= 1][:TOP_FORMATS]
    if not formats:
        formats = [r["key"] for r in results.get("formats", [])][:1] or [Content.Format.SOCIAL]
    return topics, formats


def draft_text(*, product: Product, topics: list[str], variant: int) -> tuple[str, str]:
    """The headline and copy of one variant (1-based): templates filled with the topics."""
    topic = topics[(variant - 1) % len(topics)] if topics else product.name
    others = [t for t in topics if t != topic][:3] or [topic]
    values = {
        "product": product.name,
        "topic": topic,
        "topic_title": topic[:1].upper() + topic[1:],
        "description": (product.description or "").strip(),
        "url": product.url,
        "also": "People also ask about " + ", ".join(others) + ".",
        "also_list": ", ".join(others),
    }
    headline = HEADLINES[(variant - 1) % len(HEADLINES)].format(**values)[:300]
    body = BODIES[(variant - 1) % len(BODIES)].format(**values).replace("\n\n\n", "\n\n").strip()
    return headline, body


@transaction.atomic
def materials_write(*, run: InsightRun, variants: int = VARIANTS, max_products: int = MAX_PRODUCTS) -> list[Material]:
    """The run's drafts: ``variants`` per active product (at most ``max_products``)."""
    topics, formats = winners(run)
    products = list(Product.objects.filter(merchant_id=run.merchant_id, active=True).order_by("id")[:max_products])
    existing = {(m.product_id, m.variant): m for m in Material.objects.filter(run=run)}
    drafts, new = [], []
    for product in products:
        for variant in range(1, variants + 1):
            material = existing.get((product.pk, variant))
            if material is None:
                headline, body = draft_text(product=product, topics=topics, variant=variant)
                material = Material(
                    merchant_id=run.merchant_id, run=run, product=product, headline=headline, body=body,
                    format=formats[(variant - 1) % len(formats)], topics=topics, variant=variant,
                )
                new.append(material)
            drafts.append(material)
    Material.objects.bulk_create(new)
    if any(m.pk is None for m in new):  # backends that do not return ids on bulk insert
        existing = {(m.product_id, m.variant): m for m in Material.objects.filter(run=run)}
        drafts = [existing[(m.product_id, m.variant)] for m in drafts]
    return drafts


def _mentions(topics: list[str]):
    if not topics:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(t) for t in sorted(topics, key=len, reverse=True)) + r")\b",
                      re.IGNORECASE)


def fitting_promoters(*, run: InsightRun, topics: list[str], formats: list[str],
                      max_promoters: int) -> list[tuple[int, set[str], str]]:
    """(promoter id, formats they used, why) of the promoters the drafts fit, in order."""
    pattern = _mentions(topics)
    active = Promoter.objects.filter(merchant_id=run.merchant_id, status=Promoter.Status.ACTIVE).values("id")
    rows = Content.objects.filter(
        merchant_id=run.merchant_id, promoter_id__in=active, published_at__lte=run.created_at,
    ).values_list("promoter_id", "format", "title", "text")
    fits: dict[int, int] = defaultdict(int)
    used: dict[int, set[str]] = defaultdict(set)
    hit_topics: dict[int, set[str]] = defaultdict(set)
    for promoter_id, fmt, title, text in rows.iterator(chunk_size=5000):
        used[promoter_id].add(fmt)
        found = pattern.findall(f"{title} {text}") if pattern else []
        if fmt in formats or found:
            fits[promoter_id] += 1
            hit_topics[promoter_id].update(f.lower() for f in found)
    live = SegmentModel.objects.filter(merchant_id=run.merchant_id, status=SegmentModel.Status.LIVE).first()
    preferred = set()
    if live is not None:
        preferred = set(
            PromoterSegment.objects.filter(model=live, segment__in=PREFERRED_SEGMENTS).values_list("promoter_id", flat=True)
        )
    order = sorted(fits, key=lambda p: (p not in preferred, -fits[p], p))[:max_promoters]
    out = []
    for p in order:
        why = []
        if p in preferred:
            why.append("segment stars/steady")
        if used[p] & set(formats):
            why.append("posted " + "/".join(sorted(used[p] & set(formats))))
        if hit_topics[p]:
            why.append("wrote about " + ", ".join(sorted(hit_topics[p])[:3]))
        out.append((p, used[p], "; ".join(why)[:300]))
    return out


def _destination(product: Product | None, merchant) -> str:
    domains = list(merchant.domains or [])
    return product.url if product is not None else (f"https://{domains[0]}/" if domains else "")


def materials_assign(*, run: InsightRun, materials: list[Material] | None = None, per_promoter: int = VARIANTS,
                     max_promoters: int = 200) -> list[MaterialAssignment]:
    """Hand the run's drafts to the promoters they fit, each with a new tracking link."""
    materials = materials if materials is not None else list(Material.objects.filter(run=run).order_by("product_id", "variant"))
    if not materials:
        return []
    topics, formats = winners(run)
    merchant = run.merchant
    promoters = fitting_promoters(run=run, topics=topics, formats=formats, max_promoters=max_promoters)
    by_id = Promoter.objects.in_bulk([p for p, _, _ in promoters])
    done = set(
        MaterialAssignment.objects.filter(material__in=materials).values_list("material_id", "promoter_id")
    )
    made = []
    for n, (promoter_id, used, why) in enumerate(promoters):
        # Drafts in a format they used first; a rotation spreads the products over promoters.
        rotated = materials[n % len(materials):] + materials[: n % len(materials)]
        chosen = sorted(rotated, key=lambda m: m.format not in used)[:per_promoter]
        for material in chosen:
            if (material.pk, promoter_id) in done:
                continue
            made.append(_assign(material=material, promoter=by_id[promoter_id], merchant=merchant, reason=why))
    return [a for a in made if a is not None]


@transaction.atomic
def _assign(*, material: Material, promoter: Promoter, merchant, reason: str) -> MaterialAssignment | None:
    try:
        link = link_create(merchant=merchant, promoter=promoter, destination_url=_destination(material.product, merchant),
                           channel=f"material-{material.pk}")
    except ServiceValidationError:  # the product's url is off the merchant's domains: the shop's home
        link = link_create(merchant=merchant, promoter=promoter, destination_url=_destination(None, merchant),
                           channel=f"material-{material.pk}")
    assignment, created = MaterialAssignment.objects.get_or_create(
        material=material, promoter=promoter, defaults={"link": link, "reason": reason},
    )
    if not created:  # assigned meanwhile by another run of this job: drop the spare link
        link.delete()
        return None
    return assignment


def materials_run(*, run: InsightRun, **options) -> dict:
    """Write the run's drafts and assign them: what the task after a content run calls."""
    materials = materials_write(run=run)
    assignments = materials_assign(run=run, materials=materials, **options)
    return {"materials": len(materials), "assignments": len(assignments)}
