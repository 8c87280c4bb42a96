"""Train promoter segments: one merchant (--merchant ID) or every merchant with promoters."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from insights.models import SegmentModel
from insights.segments import segment_summary, segments_train
from merchants.models import Merchant
from promoters.models import Promoter


class Command(BaseCommand):
    help = "Train a new segment model per merchant and apply the segment plans."

    def add_arguments(self, parser):
        parser.add_argument("--merchant", type=int, help="Only this merchant (its id).")

    def handle(self, *args, **options):
        if options["merchant"] is not None:
            merchants = list(Merchant.objects.filter(pk=options["merchant"]))
            if not merchants:
                raise CommandError(f"No merchant with id {options['merchant']}.")
        else:
            ids = Promoter.objects.values_list("merchant_id", flat=True).distinct()
            merchants = list(Merchant.objects.filter(pk__in=ids).order_by("pk"))
        failed = []
        for merchant in merchants:
            self.stdout.write(f"Merchant {merchant.pk} ({merchant.name}): training segments...")
            model = segments_train(merchant=merchant)
            line = segment_summary(model)
            if model.status == SegmentModel.Status.FAILED:
                failed.append(merchant.pk)
                self.stderr.write(f"  {line}")
            else:
                self.stdout.write(self.style.SUCCESS(f"  {line}"))
        if failed:
            raise CommandError(f"Training failed for merchant(s) {', '.join(map(str, failed))}; the live models were kept.")
