import json
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from core import money
from merchants.models import Merchant
from payouts.closing import close_month
from payouts.statements import PeriodError, month_bounds


class Command(BaseCommand):
    help = (
        "Close a month: approve what is due, apply payout plans, build the payout batch, write "
        "statements and a reconciliation report. Running it again changes nothing. Exits 1 when "
        "the reconciliation names a difference."
    )

    def add_arguments(self, parser):
        parser.add_argument("period", help="The month, YYYY-MM.")
        parser.add_argument("--merchant", type=int, help="One merchant only (default: every merchant).")
        parser.add_argument("--report", action="store_true", help="Print the reconciliation report as JSON.")

    def handle(self, *args, period, merchant=None, report=False, **options):
        try:
            month_bounds(period)
        except PeriodError as exc:
            raise CommandError(str(exc)) from None
        merchants = Merchant.objects.order_by("id")
        if merchant:
            merchants = merchants.filter(pk=merchant)
            if not merchants.exists():
                raise CommandError(f"No merchant {merchant}.")
        dirty = False
        started = time.monotonic()
        for m in merchants:
            try:
                result = close_month(merchant=m, period=period, progress=lambda line: self.stderr.write(f"  {line}"))
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            payable = ", ".join(f"{money.format_minor(v, c)} {c}" for c, v in result.payable_minor.items()) or "nothing"
            state = "already closed" if result.already_closed else "closed"
            differences = result.report.get("differences", [])
            self.stdout.write(
                f"{m.name} {period}: {state}; approved {result.approved}, adjustments {result.adjustments}, "
                f"batch lines {result.lines} ({payable}), statements {result.statements_written}, "
                f"differences {len(differences)}"
            )
            for difference in differences:
                self.stdout.write(f"  DIFFERENCE {difference}")
            if report:
                self.stdout.write(json.dumps(result.report, indent=2, default=str))
            dirty = dirty or bool(differences)
        self.stderr.write(f"  done in {time.monotonic() - started:.1f} s")
        if dirty:
            sys.exit(1)
