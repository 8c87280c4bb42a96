from django.core.management.base import BaseCommand, CommandError

from demo.simulation import simulate


def positive(kind):
    def parse(raw):
        value = kind(raw)
        if value < 0:
            raise ValueError(raw)
        return value

    parse.__name__ = kind.__name__
    return parse


class Command(BaseCommand):
    help = (
        "Create merchants, a sponsor tree of promoters, referral links and DAYS days of clicks, "
        "registrations, purchases and refunds ending now, all through the platform's services. "
        "The same --seed gives the same numbers. Progress goes to stderr, the summary to stdout."
    )

    def add_arguments(self, parser):
        parser.add_argument("--merchants", type=positive(int), default=1, help="Merchants to create (default 1).")
        parser.add_argument("--promoters", type=positive(int), default=50, help="Promoters per merchant (default 50).")
        parser.add_argument("--days", type=positive(int), default=30, help="Days of traffic, ending now (default 30).")
        parser.add_argument(
            "--visitors-per-day", type=positive(float), default=100,
            help="New visitors per merchant and day, on average (default 100).",
        )
        parser.add_argument(
            "--refund-rate", type=positive(float), default=0.07,
            help="Share of purchases refunded in full or in part (default 0.07).",
        )
        parser.add_argument("--seed", type=int, default=1, help="Random seed (default 1).")

    def handle(self, *args, merchants, promoters, days, visitors_per_day, refund_rate, seed, verbosity, **options):
        if merchants < 1 or promoters < 1 or days < 1:
            raise CommandError("--merchants, --promoters and --days must be at least 1.")
        if refund_rate > 1:
            raise CommandError("--refund-rate lies between 0 and 1.")
        progress = None
        if verbosity >= 1:
            def progress(message: str) -> None:
                self.stderr.write(message)
                self.stderr.flush()
        summary = simulate(
            merchants=merchants,
            promoters=promoters,
            days=days,
            visitors_per_day=visitors_per_day,
            refund_rate=refund_rate,
            seed=seed,
            progress=progress,
        )
        self.stdout.write(summary.as_text())
