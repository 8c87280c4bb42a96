from django.core.management.base import BaseCommand

from affiliate.events import requeue_stale_events


class Command(BaseCommand):
    help = "Queue again the conversion events still waiting to be processed."

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=0, help="Only events received this many seconds ago or more.")

    def handle(self, *args, older_than, **options):
        count = requeue_stale_events(older_than_seconds=older_than, limit=100_000)
        self.stdout.write(f"queued {count} event(s) again")
