import sys

from django.core.management.base import BaseCommand

from payouts.audit import audit_ledger


class Command(BaseCommand):
    help = (
        "Recompute every commission from the events and prove the ledger: balanced journals, "
        "running balances, accounts against commissions. Exits 0 when clean, 1 naming each difference."
    )

    def add_arguments(self, parser):
        parser.add_argument("--merchant", type=int, help="Audit one merchant only.")
        parser.add_argument("--quiet", action="store_true", help="No progress lines.")

    def handle(self, *args, merchant=None, quiet=False, **options):
        progress = None if quiet else (lambda line: self.stderr.write(f"  {line}"))
        report = audit_ledger(merchant_id=merchant, progress=progress)
        summary = (
            f"{report.events} events, {report.commissions} commissions, {report.journals} journals, "
            f"{report.accounts} accounts"
        )
        if report.clean:
            self.stdout.write(f"ledger audit clean: {summary}")
            return
        for difference in report.differences:
            self.stdout.write(f"DIFFERENCE {difference}")
        self.stdout.write(f"ledger audit found {len(report.differences)} difference(s): {summary}")
        sys.exit(1)
