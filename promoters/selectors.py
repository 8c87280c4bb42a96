from __future__ import annotations

from django.db.models.functions import Upper

from .models import Promoter


def promoter_by_coupon(merchant_id: int, coupon: str) -> Promoter | None:
    return (
        Promoter.objects.annotate(coupon_key=Upper("coupon_code"))
        .filter(merchant_id=merchant_id, coupon_key=coupon.strip().upper())
        .first()
    )


def promoters_for_merchant(merchant_id: int):
    return Promoter.objects.filter(merchant_id=merchant_id)


def upline(promoter: Promoter, *, limit: int = 50) -> list[Promoter]:
    """The sponsors above a promoter, nearest first."""
    chain: list[Promoter] = []
    seen = {promoter.pk}
    current = promoter
    while current.sponsor_id is not None and len(chain) < limit:
        current = Promoter.objects.get(pk=current.sponsor_id)
        if current.pk in seen:  # a loop can only come from a hand edit of the database
            break
        seen.add(current.pk)
        chain.append(current)
    return chain


def sponsor_for_invite(referral_code: str) -> Promoter | None:
    """The active promoter whose invite link this is (codes are matched as printed, upper case)."""
    code = (referral_code or "").strip().upper()
    if not code or len(code) > 32:
        return None
    return (
        Promoter.objects.select_related("program", "merchant")
        .filter(referral_code=code, status=Promoter.Status.ACTIVE)
        .first()
    )


def promoters_of_user(user) -> list[Promoter]:
    """The promoters a login opens, oldest first, with their program and merchant."""
    if not getattr(user, "is_authenticated", False):
        return []
    return list(Promoter.objects.select_related("program", "merchant").filter(user=user).order_by("id"))


MAX_TEAM_LEVELS = 10
MAX_TEAM_MEMBERS = 5000


def downline(promoter: Promoter, *, levels: int = MAX_TEAM_LEVELS, limit: int = MAX_TEAM_MEMBERS) -> list[dict]:
    """The promoters below ``promoter``, depth first (each recruit right after their sponsor),
    at most ``levels`` deep and ``limit`` long: one query per level. Each row is
    ``{"id", "name", "status", "created_at", "sponsor_id", "level", "recruits"}``, no emails."""
    by_sponsor: dict[int, list[dict]] = {}
    frontier = [promoter.pk]
    seen = {promoter.pk}
    total = 0
    for level in range(1, levels + 1):
        if not frontier or total >= limit:
            break
        rows = list(
            Promoter.objects.filter(sponsor_id__in=frontier)
            .order_by("id")
            .values("id", "name", "status", "created_at", "sponsor_id")[: limit - total]
        )
        frontier = []
        for row in rows:
            if row["id"] in seen:  # a loop can only come from a hand edit of the database
                continue
            seen.add(row["id"])
            row["level"] = level
            row["recruits"] = 0
            by_sponsor.setdefault(row["sponsor_id"], []).append(row)
            frontier.append(row["id"])
            total += 1
    ordered: list[dict] = []
    stack = list(reversed(by_sponsor.get(promoter.pk, [])))
    while stack:
        row = stack.pop()
        children = by_sponsor.get(row["id"], [])
        row["recruits"] = len(children)
        ordered.append(row)
        stack.extend(reversed(children))
    return ordered
