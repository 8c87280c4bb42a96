from django.core.management.base import BaseCommand, CommandError

from insights.rates import active_rule, programs_with_rules, rates_preview
from merchants.models import Program


def _rate(value) -> str:
    return "-" if value is None else f"{value.normalize():f}"


class Command(BaseCommand):
    help = "Show what the rate rules would change now (writes nothing): promoter, customers, LTV, CAC, LTV/CAC, old -> new, why."

    def add_arguments(self, parser):
        parser.add_argument("--program", type=int, help="Only this program (by id).")

    def handle(self, *args, program=None, **options):
        if program is not None:
            programs = list(Program.objects.filter(pk=program))
            if not programs:
                raise CommandError(f"No program {program}.")
            if active_rule(programs[0]) is None:
                raise CommandError(f"Program {program} has no active rate rule.")
        else:
            programs = list(programs_with_rules())
        header = f"{'promoter':<32} {'customers':>10} {'LTV':>12} {'CAC':>12} {'LTV/CAC':>9}  {'old -> new':<22} why"
        for prog in programs:
            self.stdout.write(f"Program {prog.pk} {prog.name} ({prog.currency})")
            self.stdout.write(header)
            for d in rates_preview(program=prog):
                change = f"{_rate(d.old_rate)} -> {_rate(d.new_rate)}" if d.changes else f"{_rate(d.old_rate)} (kept)"
                self.stdout.write(
                    f"{f'{d.promoter_id} {d.name}'[:32]:<32} {d.customers.normalize():>10f} {str(d.ltv or '-'):>12} "
                    f"{str(d.cac or '-'):>12} {str(d.ratio or '-'):>9}  {change:<22} {d.reason}"
                )
