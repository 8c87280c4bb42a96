"""A click cleared by hand says so in its own columns (``cleared_at``, ``cleared_by``) instead
of in the text of its reason: the clicks cleared before are read back from that text
("cleared by <who> <YYYY-MM-DD HH:MM> UTC (was: <reason>)"), and their reason is the rule's
again. Backwards, the text is written as it was."""

import re
from datetime import UTC, datetime

from django.db import migrations, models

CLEARED = re.compile(r"^cleared by (?P<by>.*) (?P<at>\d{4}-\d\d-\d\d \d\d:\d\d) UTC \(was: (?P<was>.*?)\)?$", re.S)


def from_the_text(apps, schema_editor):
    Click = apps.get_model("affiliate", "Click")
    for click in Click.objects.filter(flag_reason__startswith="cleared by ", cleared_at__isnull=True).iterator():
        found = CLEARED.match(click.flag_reason)
        if found is None:
            continue
        click.cleared_at = datetime.strptime(found["at"], "%Y-%m-%d %H:%M").replace(tzinfo=UTC)
        click.cleared_by = found["by"][:150]
        click.flag_reason = found["was"]
        click.save(update_fields=["cleared_at", "cleared_by", "flag_reason"])


def to_the_text(apps, schema_editor):
    Click = apps.get_model("affiliate", "Click")
    for click in Click.objects.filter(cleared_at__isnull=False).iterator():
        text = f"cleared by {click.cleared_by or 'finance'} {click.cleared_at:%Y-%m-%d %H:%M} UTC (was: {click.flag_reason})"
        click.flag_reason = text[:200]
        click.save(update_fields=["flag_reason"])


class Migration(migrations.Migration):

    dependencies = [
        ("affiliate", "0014_merchants_moved"),
    ]

    operations = [
        migrations.AddField(
            model_name="click",
            name="cleared_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="click",
            name="cleared_by",
            field=models.CharField(blank=True, db_default="", default="", max_length=150),
        ),
        migrations.RunPython(from_the_text, to_the_text),
    ]
