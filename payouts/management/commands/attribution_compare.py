from django.core.management.base import BaseCommand, CommandError

from attribution.engine import MODELS
from core import money
from payouts.compare import compare_models


class Command(BaseCommand):
    help = (
        "Print, per promoter, how attributed revenue and commissions on the purchases of the last "
        "--days would differ under another attribution model. Recomputed from the stored journeys; "
        "nothing is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", required=True, choices=MODELS)
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--merchant", type=int)
        parser.add_argument("--program", type=int)
        parser.add_argument("--limit", type=int, default=50, help="Rows to print (largest changes first).")

    def handle(self, *args, model, days, merchant, program, limit, **options):
        if days < 1:
            raise CommandError("--days must be at least 1")
        result = compare_models(model=model, days=days, merchant_id=merchant, program_id=program)
        currency = result.currency if "," not in result.currency else "USD"

        def fmt(minor: int) -> str:
            return money.format_minor(minor, currency)

        def signed(minor: int) -> str:
            return ("+" if minor > 0 else "") + fmt(minor)

        self.stdout.write(
            f"{result.events} purchases of the last {days} days recomputed under {model} "
            f"(currency {result.currency}; gross of refunds; nothing written)"
        )
        header = f"{'promoter':>8}  {'name':<24} {'revenue now':>14} {'under ' + model:>16} {'change':>12} {'commission now':>15} {'under ' + model:>16} {'change':>12}"
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        totals = [0, 0, 0, 0]
        for row in result.rows:
            totals = [totals[0] + row.revenue_now, totals[1] + row.revenue_then, totals[2] + row.commission_now, totals[3] + row.commission_then]
        for row in result.rows[:limit]:
            self.stdout.write(
                f"{row.promoter_id:>8}  {row.name[:24]:<24} {fmt(row.revenue_now):>14} {fmt(row.revenue_then):>16} "
                f"{signed(row.revenue_then - row.revenue_now):>12} {fmt(row.commission_now):>15} "
                f"{fmt(row.commission_then):>16} {signed(row.commission_then - row.commission_now):>12}"
            )
        if len(result.rows) > limit:
            self.stdout.write(f"... {len(result.rows) - limit} more promoter(s)")
        self.stdout.write("-" * len(header))
        self.stdout.write(
            f"{'total':>8}  {'':<24} {fmt(totals[0]):>14} {fmt(totals[1]):>16} {signed(totals[1] - totals[0]):>12} "
            f"{fmt(totals[2]):>15} {fmt(totals[3]):>16} {signed(totals[3] - totals[2]):>12}"
        )
