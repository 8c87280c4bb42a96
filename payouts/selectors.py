"""Reads of commissions and balances."""

from __future__ import annotations

from fractions import Fraction

from django.db.models import Sum

from affiliate.models import ConversionEvent
from attribution.engine import weight_string
from attribution.models import Credit
from core import money
from promoters.models import Promoter

from .models import Account, Commission, Entry


def promoter_balance(promoter: Promoter) -> dict[str, str]:
    """``{"currency", "pending", "available", "paid"}`` from the running balances."""
    currency = promoter.program.currency
    balances = dict(
        Account.objects.filter(promoter=promoter, currency=currency).values_list("kind", "balance_minor")
    )
    return balance_from(balances, currency)


def balance_from(balances: dict[str, int], currency: str) -> dict[str, str]:
    """What ``promoter_balance`` answers, from ``{account kind: balance_minor}`` already read."""
    # Money locked in a payout line not yet confirmed is still approved and unpaid: available.
    available = balances.get("available", 0) + balances.get("processing", 0)
    return {
        "currency": currency,
        "pending": money.format_minor(balances.get("pending", 0), currency),
        "available": money.format_minor(available, currency),
        "paid": money.format_minor(balances.get("paid", 0), currency),
    }


def account_balance_from_entries(account: Account) -> int:
    return Entry.objects.filter(account=account).aggregate(total=Sum("amount_minor"))["total"] or 0


def event_attribution(event: ConversionEvent) -> list[dict]:
    return [
        {
            "promoter": promoter_id,
            "weight": weight_string(Fraction(exact)),
            "revenue": money.format_minor(revenue, currency),
        }
        for promoter_id, exact, revenue, currency in Credit.objects.filter(event=event)
        .order_by("first_position")
        .values_list("promoter_id", "weight_exact", "revenue_minor", "currency")
    ]


def commission_row(c: Commission, *, for_people: bool = False) -> dict:
    """A commission as the contract shows it in an event's body; ``for_people`` adds what a
    page shows beside it (the promoter's name, the currency, the amount in minor units),
    and then ``c.promoter`` should come with the query (``select_related``)."""
    row = {
        "id": c.pk,
        "promoter": c.promoter_id,
        "kind": c.kind,
        "level": c.level,
        "amount": money.format_minor(c.amount_minor, c.currency),
        "status": c.status,
    }
    if for_people:
        row.update(name=c.promoter.name, currency=c.currency, amount_minor=c.amount_minor)
    return row


def event_commissions(event: ConversionEvent, *, for_people: bool = False) -> list[dict]:
    """The commissions an event made, in the order they were written: one query."""
    commissions = Commission.objects.filter(event=event).order_by("id")
    if for_people:
        commissions = commissions.select_related("promoter")
    return [commission_row(c, for_people=for_people) for c in commissions]
