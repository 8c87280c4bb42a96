from django.core.management.base import BaseCommand, CommandError

from affiliate import partitions


class Command(BaseCommand):
    help = (
        "Create the monthly partitions of clicks and conversion events for this month and the "
        "months ahead (what the scheduled job does), and list them."
    )

    def add_arguments(self, parser):
        parser.add_argument("--ahead", type=int, default=None, help="Months after this one (PARTITION_MONTHS_AHEAD by default).")
        parser.add_argument(
            "--list", action="store_true", dest="list_only", help="Only list the partitions and their estimated row counts."
        )

    def handle(self, *args, ahead, list_only, **options):
        if not all(partitions.is_partitioned(table) for table in partitions.TABLES):
            raise CommandError("Clicks and events are partitioned on PostgreSQL only; this database has plain tables.")
        if ahead is not None and not 0 <= ahead <= 120:
            raise CommandError("--ahead must be between 0 and 120.")
        blocked = []
        if not list_only:
            for outcome in partitions.ensure(ahead=ahead):
                self.stdout.write(str(outcome))
                if outcome.state == "blocked":
                    blocked.append(outcome)
        for table in partitions.TABLES:
            self.stdout.write(f"{table}:")
            for name, bound, rows in partitions.describe(table):
                self.stdout.write(f"  {name:<40} {rows:>12,} rows  {bound}")
        if blocked:
            raise CommandError(f"{len(blocked)} partition(s) could not be created; see above.")
