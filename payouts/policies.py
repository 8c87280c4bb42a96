"""Changing a program's payout policy (the back office edits it through here)."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from core.errors import ServiceValidationError

from . import methods
from .models import PayoutPolicy

POLICY_FIELDS = (
    "minimum_payout_minor", "guaranteed_minimum_minor", "guaranteed_months", "activity_min_clicks",
    "activity_min_conversions", "bonus_revenue_threshold_minor", "bonus_rate", "payer_name", "payer_iban", "payer_bic",
)


def policy_clean(**fields) -> dict:
    """The fields, normalised (the payer's IBAN and BIC compact, checked by schwifty)."""
    problems: dict[str, list[str]] = {}
    unknown = sorted(set(fields) - set(POLICY_FIELDS))
    for name in unknown:
        problems[name] = ["Unknown field."]
    for name in ("minimum_payout_minor", "guaranteed_minimum_minor", "bonus_revenue_threshold_minor"):
        if name in fields and (fields[name] is None or fields[name] < 0):
            problems[name] = ["Must be zero or more."]
    if "bonus_rate" in fields and not (fields["bonus_rate"] is not None and Decimal(0) <= Decimal(fields["bonus_rate"]) <= 1):
        problems["bonus_rate"] = ["Must lie between 0 and 1."]
    iban = (fields.get("payer_iban") or "").strip()
    bic = (fields.get("payer_bic") or "").strip()
    if "payer_iban" in fields or "payer_bic" in fields:
        fields["payer_iban"], fields["payer_bic"], bank = methods.bank_account_clean(iban, bic)
        problems.update({f"payer_{name}": messages for name, messages in bank.items()})
        if bic and not iban and "payer_bic" not in problems:
            problems["payer_iban"] = ["Give the payer's IBAN with the BIC."]
    if "payer_name" in fields:
        fields["payer_name"] = (fields["payer_name"] or "").strip()
    if problems:
        raise ServiceValidationError(problems)
    return fields


@transaction.atomic
def payout_policy_update(*, policy: PayoutPolicy, **fields) -> PayoutPolicy:
    """Set the given fields; they apply to batches and month closes run after the change."""
    for name, value in policy_clean(**fields).items():
        setattr(policy, name, value)
    policy.save()
    return policy
