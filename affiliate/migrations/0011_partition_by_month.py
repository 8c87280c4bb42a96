"""Clicks and conversion events partitioned by month on PostgreSQL (affiliate/partitions.py)."""

from django.db import migrations

from affiliate import partitions


def forwards(apps, schema_editor):
    partitions.convert(schema_editor, partitions.CLICKS)
    partitions.convert(schema_editor, partitions.EVENTS)


def backwards(apps, schema_editor):
    partitions.unconvert(schema_editor, partitions.EVENTS)
    partitions.unconvert(schema_editor, partitions.CLICKS)


class Migration(migrations.Migration):

    dependencies = [
        ("affiliate", "0010_event_keys"),
        ("attribution", "0001_initial"),
        ("payouts", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
