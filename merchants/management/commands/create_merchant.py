import json

from django.core.management.base import BaseCommand, CommandError

from core.errors import ServiceValidationError
from merchants.services import merchant_create


class Command(BaseCommand):
    help = (
        "Create a merchant. Prints one JSON line with merchant_id, api_key, postback_token and "
        "postback_secret; the key and token are shown this once and stored hashed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--name", required=True)
        parser.add_argument(
            "--domain", action="append", required=True, dest="domains",
            help="A host that referral links may point to (subdomains included); repeat for more.",
        )

    def handle(self, *args, name, domains, **options):
        try:
            credentials = merchant_create(name=name, domains=domains)
        except ServiceValidationError as exc:
            problems = "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in exc.fields.items())
            raise CommandError(problems) from None
        self.stdout.write(json.dumps(credentials.as_dict()))
