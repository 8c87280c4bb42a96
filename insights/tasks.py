"""Insight jobs (queue ``insights``): each takes ids and calls a service."""

from __future__ import annotations

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


def _merchants(merchant_id: int | None):
    from merchants.models import Merchant

    merchants = Merchant.objects.order_by("id")
    return merchants.filter(pk=merchant_id) if merchant_id is not None else merchants


@shared_task(name="insights.apply_rates")
def apply_rates(program_id: int | None = None) -> int:
    """Daily: apply the rate rule of every program that has an active one (or of one
    program). A program that fails is logged and the others go on. Returns the changes made."""
    from .rates import programs_with_rules, rates_apply

    programs = programs_with_rules()
    if program_id is not None:
        programs = programs.filter(pk=program_id)
    changed = 0
    for program in programs:
        try:
            changed += len(rates_apply(program=program))
        except Exception:
            logger.exception("rates of program %s not applied", program.pk)
    return changed


@shared_task(name="insights.compute_value")
def compute_value(merchant_id: int | None = None, window_days: int = 90) -> list[int]:
    """LTV, CAC and LTV/CAC of every merchant's (or one merchant's) promoters and channels,
    kept as insight runs. Returns the runs' ids."""
    from .value import value_run

    return [value_run(merchant=merchant, window_days=window_days).pk for merchant in _merchants(merchant_id)]


@shared_task(name="insights.train_segments")
def train_segments(merchant_id: int | None = None) -> int:
    """Train the promoter segments of every merchant (or one). Returns how many were trained."""
    from .segments import segments_train

    done = 0
    for merchant in _merchants(merchant_id):
        try:
            segments_train(merchant=merchant)
            done += 1
        except Exception:
            logger.exception("segments of merchant %s not trained", merchant.pk)
    return done


@shared_task(name="insights.run_content")
def run_content(merchant_id: int | None = None, days: int = 30) -> int:
    """Content insights of every merchant (or one) over the last ``days``, and the material
    drafts written from them and handed to the promoters who fit."""
    from .content import content_insights_run
    from .materials import materials_run

    done = 0
    for merchant in _merchants(merchant_id):
        try:
            materials_run(run=content_insights_run(merchant=merchant, days=days))
            done += 1
        except Exception:
            logger.exception("content insights of merchant %s not run", merchant.pk)
    return done
