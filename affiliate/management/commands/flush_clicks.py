"""Store the spooled clicks of CLICK_SPOOL_DIR (or --dir) now: before a deploy or a
shutdown, after a crash, or to see the spool empty."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from affiliate import clickspool


class Command(BaseCommand):
    help = "Store every spooled click that no running process holds, then delete its file."

    def add_arguments(self, parser):
        parser.add_argument("--dir", default=None, help="The spool directory (default: CLICK_SPOOL_DIR).")

    def handle(self, *args, dir=None, **options):
        directory = dir or settings.CLICK_SPOOL_DIR
        if not directory:
            raise CommandError("No spool directory: set CLICK_SPOOL_DIR or pass --dir.")
        stored = clickspool.flush_directory(directory)
        held = len(list(clickspool.pending_files(directory)))
        self.stdout.write(f"{stored} clicks stored; {held} spool files still held by running processes.")
