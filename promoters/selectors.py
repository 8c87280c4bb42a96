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
