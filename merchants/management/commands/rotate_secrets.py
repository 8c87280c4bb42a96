from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS, connections

from core import crypto


class Command(BaseCommand):
    help = (
        "Re-encrypt with the newest key of FIELD_ENCRYPTION_KEYS (the first) every encrypted value that an older key "
        "encrypted, one transaction per batch of rows. Safe to run again: values already under the newest key are left."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="Rows per transaction (default 500).")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args, batch_size, database, **options):
        connection = connections[database]
        for model, field in crypto.encrypted_columns():
            table, column = model._meta.db_table, field.column
            name = f"{table}.{column}"

            def progress(read, changed, name=name):
                if read >= batch_size:  # only tables of more than one batch
                    self.stderr.write(f"{name}: {read} rows read, {changed} re-encrypted so far")

            changed = crypto.rotate_column(
                connection, table, column, model._meta.pk.column, batch_size=batch_size, progress=progress
            )
            self.stdout.write(f"{name}: {changed} value(s) re-encrypted")
