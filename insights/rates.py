"""Dynamic commission rates: a program's ``RateRule`` turns each promoter's LTV/CAC into a
rate change within limits, through ``promoters.services.promoter_update``, with a
``RateChange`` audit row and a note to the promoter.

For each program with an active rule, each promoter is decided on (``rate_decisions``):

- not active, frozen (``RateFreeze``), or changed (by any ``RateChange``, a revert too)
  within ``cooldown_days``: left alone;
- fewer than ``min_customers`` new customers in the last ``window_days`` (the weighted
  count of ``insights.value``): left alone;
- no positive acquisition cost (LTV/CAC undefined): left alone;
- LTV/CAC ≥ ``raise_at``: the rate + ``step``, at most ``cap`` (already at or above the
  cap: left alone); LTV/CAC ≤ ``lower_at``: the rate − ``step``, at least ``floor``
  (already at or below the floor: left alone).

The current rate is the promoter's ``commission_rate``, or the program's
``first_purchase_rate`` when it has none. A new rate applies to events received from the
change on (``promoters.PromoterRateHistory``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.errors import ServiceValidationError
from merchants.models import Program
from merchants.services import merchant_lock
from promoters.models import Promoter
from promoters.services import promoter_rates_set, promoter_update

from .models import InsightRun, RateChange, RateFreeze, RateRule
from .value import value_compute

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    promoter_id: int
    name: str
    customers: Decimal
    ltv: Decimal | None
    cac: Decimal | None
    ratio: Decimal | None
    old_rate: Decimal  # the rate in effect (the program's first-purchase rate when the promoter has none)
    new_rate: Decimal | None  # None: no change
    kind: str | None  # raise, lower or None
    reason: str
    own_rate: Decimal | None = None  # the promoter's own rate as it was read (None: the program's rates)

    @property
    def changes(self) -> bool:
        return self.new_rate is not None


def rule_settings(rule: RateRule) -> dict:
    return {
        "window_days": rule.window_days, "raise_at": str(rule.raise_at), "lower_at": str(rule.lower_at),
        "min_customers": rule.min_customers, "step": str(rule.step), "floor": str(rule.floor), "cap": str(rule.cap),
        "cooldown_days": rule.cooldown_days,
    }


def active_rule(program: Program) -> RateRule | None:
    return RateRule.objects.filter(program=program, active=True).first()


def decide(*, ratio: Decimal | None, customers: Decimal, rate: Decimal, rule: RateRule) -> tuple[Decimal | None, str | None, str]:
    """The rule applied to one promoter's figures: (new rate or None, kind, why)."""
    if customers < rule.min_customers:
        return None, None, f"{customers.normalize():f} new customers, fewer than {rule.min_customers}"
    if ratio is None:
        return None, None, "no acquisition cost: LTV/CAC undefined"
    if ratio >= rule.raise_at:
        if rate >= rule.cap:
            return None, None, f"LTV/CAC {ratio} ≥ {rule.raise_at}, but the rate is at the cap {rule.cap}"
        return min(rate + rule.step, rule.cap), RateChange.Kind.RAISE, f"LTV/CAC {ratio} ≥ {rule.raise_at}"
    if ratio <= rule.lower_at:
        if rate <= rule.floor:
            return None, None, f"LTV/CAC {ratio} ≤ {rule.lower_at}, but the rate is at the floor {rule.floor}"
        return max(rate - rule.step, rule.floor), RateChange.Kind.LOWER, f"LTV/CAC {ratio} ≤ {rule.lower_at}"
    return None, None, f"LTV/CAC {ratio} between {rule.lower_at} and {rule.raise_at}"


def rate_decisions(*, program: Program, rule: RateRule, now: datetime | None = None, value_tables=None) -> list[Decision]:
    """What the rule decides for every promoter of the program (reads only), by promoter id.
    ``value_tables``: the merchant's LTV/CAC tables over the rule's window, just computed
    (``insights_run`` computes them once for both jobs); otherwise computed here."""
    now = now or timezone.now()
    if value_tables is not None:
        table = value_tables.promoters[value_tables.promoters["program_id"] == program.pk]
    else:
        table = value_compute(program=program, window_days=rule.window_days, now=now).promoters
    figures = {row.promoter_id: row for row in table.itertuples(index=False)}
    frozen = set(RateFreeze.objects.filter(promoter__program=program).values_list("promoter_id", flat=True))
    last_change = dict(
        RateChange.objects.filter(program=program).values("promoter_id").annotate(last=Max("created_at")).values_list("promoter_id", "last")
    )
    cooldown_since = now - timedelta(days=rule.cooldown_days)
    decisions = []
    for pk, name, status, own_rate in (
        Promoter.objects.filter(program=program).order_by("id").values_list("id", "name", "status", "commission_rate")
    ):
        rate = own_rate if own_rate is not None else program.first_purchase_rate
        row = figures.get(pk)
        customers = row.customers if row is not None else Decimal(0)
        ltv, cac, ratio = (row.ltv, row.cac, row.ltv_cac) if row is not None else (None, None, None)
        new_rate, kind = None, None
        if status != Promoter.Status.ACTIVE:
            reason = f"not active ({status})"
        elif pk in frozen:
            reason = "rate frozen"
        elif pk in last_change and last_change[pk] > cooldown_since:
            reason = f"changed on {last_change[pk]:%Y-%m-%d}, within the {rule.cooldown_days}-day cool-down"
        else:
            new_rate, kind, reason = decide(ratio=ratio, customers=customers, rate=rate, rule=rule)
        decisions.append(Decision(pk, name, customers, ltv, cac, ratio, rate, new_rate, kind, reason, own_rate))
    return decisions


def rates_preview(*, program: Program, now: datetime | None = None) -> list[Decision]:
    """The decisions ``rates_apply`` would take now, writing nothing (empty without an active rule)."""
    rule = active_rule(program)
    return rate_decisions(program=program, rule=rule, now=now) if rule else []


def rates_apply(*, program: Program, now: datetime | None = None, value_tables=None) -> list[RateChange]:
    """Apply the program's active rule (on ``value_tables`` when given: the merchant's
    LTV/CAC tables over the rule's window, just computed): every change at once, in one transaction, through
    ``promoters.services.promoter_rates_set`` (the rates and their history) with a
    ``RateChange`` row each; then a note to each promoter. A promoter whose rate or status
    changed since it was decided on is left alone. Returns the changes (in promoter order)."""
    rule = active_rule(program)
    if rule is None:
        return []
    began = time.monotonic()
    decisions = rate_decisions(program=program, rule=rule, now=now, value_tables=value_tables)
    settings_now = rule_settings(rule)
    wanted = {d.promoter_id: d for d in decisions if d.changes}
    changes: list[RateChange] = []
    if wanted:
        with transaction.atomic():
            changed = promoter_rates_set(
                merchant=program.merchant,
                expected={pk: d.own_rate for pk, d in wanted.items()},
                rates={pk: d.new_rate for pk, d in wanted.items()},
            )
            skipped = set(wanted) - set(changed)
            if skipped:
                logger.info("rates of promoters %s changed meanwhile: left alone", sorted(skipped))
            changes = RateChange.objects.bulk_create(
                [
                    RateChange(
                        program=program, promoter_id=pk, kind=wanted[pk].kind, old_rate=wanted[pk].own_rate,
                        new_rate=wanted[pk].new_rate, metrics=_metrics(wanted[pk]), rule=settings_now, reason=wanted[pk].reason,
                    )
                    for pk in changed
                ],
                batch_size=5000,
            )
    _notify_many(changes)
    InsightRun.objects.create(
        merchant_id=program.merchant_id, kind=InsightRun.Kind.RATES, window_days=rule.window_days,
        # The changes in full; the promoters left alone only counted (a program has up to 100,000).
        results={"program": program.pk, "rule": settings_now, "considered": len(decisions),
                 "decisions": [decision_json(d) for d in decisions if d.changes], "changes": [c.pk for c in changes]},
        seconds=time.monotonic() - began,
    )
    return changes


def _metrics(decision: Decision) -> dict:
    figures = decision_json(decision)
    return {"customers": figures["customers"], "ltv": figures["ltv"], "cac": figures["cac"],
            "ltv_cac": figures["ratio"], "old_rate": figures["old_rate"]}


def _note(change: RateChange, promoter: Promoter, program: Program) -> EmailMessage:
    shown = lambda rate: "the program's rates" if rate is None else f"{rate * 100:.2f}%"  # noqa: E731
    body = (
        f"Hello {promoter.name},\n\nYour commission rate in {program.name} changes from {shown(change.old_rate)} "
        f"to {shown(change.new_rate)}, for conversions received from now on.\nWhy: {change.reason}.\n"
    )
    return EmailMessage("Your commission rate has changed", body, settings.DEFAULT_FROM_EMAIL, [promoter.email])


def _notify(change: RateChange) -> None:
    _notify_many([change])


def _notify_many(changes: list[RateChange]) -> None:
    """Tell each promoter, over one mail connection; ``notified_at`` is set once the notes
    went out (a failure is logged: the changes stand, the notes can be sent again)."""
    if not changes:
        return
    promoters = Promoter.objects.in_bulk([c.promoter_id for c in changes])
    programs = Program.objects.in_bulk({c.program_id for c in changes})
    messages = [_note(c, promoters[c.promoter_id], programs[c.program_id]) for c in changes]
    try:
        get_connection(fail_silently=False).send_messages(messages)
    except Exception:
        logger.exception("could not notify the promoters of %s rate change(s)", len(changes))
        return
    notified_at = timezone.now()
    for change in changes:
        change.notified_at = notified_at
    RateChange.objects.filter(pk__in=[c.pk for c in changes]).update(notified_at=notified_at)


def decision_json(decision: Decision) -> dict:
    data = asdict(decision)
    return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in data.items()}


def rate_change_revert(*, change: RateChange, actor=None) -> RateChange:
    """Put back the rate a change replaced, with a ``RateChange(kind="revert")``. Refused
    (nothing written) for a revert, a change already reverted, or when the promoter's rate
    is no longer the change's new rate (a later change stands: revert that one first)."""
    with transaction.atomic():
        merchant_lock(change.promoter.merchant_id)
        change = RateChange.objects.select_for_update().select_related("promoter", "program").get(pk=change.pk)
        if change.kind == RateChange.Kind.REVERT:
            raise ServiceValidationError({"change": ["A revert cannot be reverted; change the rate instead."]})
        if RateChange.objects.filter(reverts=change).exists():
            raise ServiceValidationError({"change": ["This change was already reverted."]})
        promoter = Promoter.objects.select_for_update().get(pk=change.promoter_id)
        if promoter.commission_rate != change.new_rate:
            raise ServiceValidationError({"change": [
                f"The promoter's rate is now {promoter.commission_rate}, not this change's {change.new_rate}: "
                "a later change stands; revert that one first."
            ]})
        promoter_update(promoter=promoter, commission_rate=None if change.old_rate is None else str(change.old_rate))
        revert = RateChange.objects.create(
            program=change.program, promoter=promoter, kind=RateChange.Kind.REVERT, old_rate=change.new_rate,
            new_rate=change.old_rate, metrics={}, rule={}, reason=f"revert of change {change.pk}", reverts=change, actor=actor,
        )
    _notify(revert)
    return revert


@transaction.atomic
def rate_freeze(*, promoter: Promoter, reason: str = "", actor=None) -> RateFreeze:
    """Keep the daily job's hands off the promoter's rate (a second freeze updates the reason)."""
    freeze, _ = RateFreeze.objects.update_or_create(promoter=promoter, defaults={"reason": reason[:200], "frozen_by": actor})
    return freeze


@transaction.atomic
def rate_unfreeze(*, promoter: Promoter, actor=None) -> bool:
    deleted, _ = RateFreeze.objects.filter(promoter=promoter).delete()
    return bool(deleted)


def programs_with_rules():
    return Program.objects.filter(rate_rule__active=True).order_by("id")
