"""Make an earlier segment model of a merchant live again and re-apply its plans."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from core.errors import ServiceValidationError
from insights.segments import segment_summary, segments_rollback
from merchants.models import Merchant


class Command(BaseCommand):
    help = "Make segment model VERSION of a merchant live again and re-apply the segment plans."

    def add_base_argument(self, parser, *args, **kwargs):
        if "--version" in args:  # Django's own --version (its release) would take our option
            return
        super().add_base_argument(parser, *args, **kwargs)

    def add_arguments(self, parser):
        parser.add_argument("--merchant", type=int, required=True, help="The merchant's id.")
        parser.add_argument("--version", type=int, required=True, dest="model_version", help="The model version to make live.")

    def handle(self, *args, **options):
        merchant = Merchant.objects.filter(pk=options["merchant"]).first()
        if merchant is None:
            raise CommandError(f"No merchant with id {options['merchant']}.")
        version = options["model_version"]
        self.stdout.write(f"Merchant {merchant.pk} ({merchant.name}): making segments v{version} live...")
        try:
            model = segments_rollback(merchant=merchant, version=version)
        except ServiceValidationError as exc:
            raise CommandError("; ".join(m for messages in exc.fields.values() for m in messages)) from exc
        self.stdout.write(self.style.SUCCESS(f"  {segment_summary(model)}"))
