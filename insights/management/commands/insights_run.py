"""Run every insight job now, for one merchant or all, in the order the schedule runs them.

    manage.py insights_run [--merchant ID] [--window-days 90] [--content-days 30]

LTV/CAC first (the rates read the same figures), then the dynamic rates of each program
with an active rule, then the promoter segments (a failed training keeps the live model
and is reported, the other jobs go on), then content intelligence and the materials
written from it. Each job prints a line when it starts and one with its result and time.
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from insights.content import content_insights_run
from insights.materials import materials_run
from insights.models import SegmentModel
from insights.rates import programs_with_rules, rates_apply
from insights.segments import segments_train
from insights.value import value_run
from merchants.models import Merchant


class Command(BaseCommand):
    help = "Run every insight job now (LTV/CAC, rates, segments, content and materials) for one merchant or all."

    def add_arguments(self, parser):
        parser.add_argument("--merchant", type=int, help="only this merchant (id)")
        parser.add_argument("--window-days", type=int, default=90, help="LTV/CAC window (default 90)")
        parser.add_argument("--content-days", type=int, default=30, help="content window (default 30)")

    def handle(self, *args, merchant=None, window_days=90, content_days=30, **options):
        merchants = Merchant.objects.order_by("id")
        if merchant is not None:
            merchants = merchants.filter(pk=merchant)
            if not merchants.exists():
                raise CommandError(f"No merchant with id {merchant}.")
        started = time.monotonic()
        for shop in merchants:
            self._merchant(shop, window_days, content_days)
        self.stdout.write(f"all insight jobs done in {time.monotonic() - started:.1f} s")

    def _step(self, name: str, job):
        self.stdout.write(f"{name}: running")
        self.stdout.flush()
        started = time.monotonic()
        outcome = job()
        self.stdout.write(f"{name}: {outcome} ({time.monotonic() - started:.1f} s)")
        self.stdout.flush()

    def _merchant(self, merchant: Merchant, window_days: int, content_days: int) -> None:
        self.stdout.write(f"merchant {merchant.pk} ({merchant.name})")

        computed = {}

        def value():
            run = value_run(merchant=merchant, window_days=window_days)
            computed["tables"] = run.tables
            results = run.results
            return f"run {run.pk}: {len(results.get('promoters', []))} promoters, {len(results.get('channels', []))} channels"

        def rates():
            # On the tables just computed when the rule looks over the same window.
            changes = [
                change
                for program in programs_with_rules().filter(merchant=merchant).select_related("rate_rule")
                for change in rates_apply(
                    program=program, value_tables=computed.get("tables") if program.rate_rule.window_days == window_days else None
                )
            ]
            raised = sum(1 for change in changes if change.kind == "raise")
            return f"{len(changes)} rate changes ({raised} raised, {len(changes) - raised} lowered)"

        def segments():
            model = segments_train(merchant=merchant)
            if model.status == SegmentModel.Status.FAILED:
                return f"training failed, the live model kept: {model.error}"
            sizes = model.metrics.get("sizes", {})
            return f"version {model.version}, k={model.clusters}, silhouette {model.silhouette:.3f}, sizes {sizes}"

        def content():
            run = content_insights_run(merchant=merchant, days=content_days)
            made = materials_run(run=run)
            keywords = run.results.get("keywords", [])[:3]
            top = ", ".join(str(row.get("key", row.get("term", ""))) for row in keywords)
            return f"run {run.pk}: top keywords {top or '(none)'}; materials {made}"

        self._step("LTV/CAC", value)
        self._step("dynamic rates", rates)
        self._step("segments", segments)
        self._step("content and materials", content)
