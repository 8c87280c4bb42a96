"""Create the "Finance" group, or set its permissions back to exactly what finance needs."""

from django.core.management.base import BaseCommand

from payouts.finance_group import GROUP_NAME, finance_group_refresh


class Command(BaseCommand):
    help = 'Create or refresh the "Finance" group (read the money apps; approve, reverse, batches, policies).'

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default")

    def handle(self, *args, database, **options):
        group = finance_group_refresh(using=database)
        count = group.permissions.count()
        self.stdout.write(f'Group "{GROUP_NAME}" has {count} permissions. Add finance staff to it (is_staff, not superuser).')
