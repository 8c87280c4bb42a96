from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from affiliate.models import ReferralLink
from demo.simulation import simulate
from merchants import services as merchant_services
from merchants.models import Merchant

DEMO_NAME = "Demo Shop"
DEMO_DOMAIN = "shop.example.com"
DEMO_PROMOTER_EMAIL = "promoter@example.com"
DEMO_PROMOTER_PASSWORD = "promoter"
DEMO_STAFF_EMAIL = "merchant@example.com"
DEMO_STAFF_PASSWORD = "merchant"


class Command(BaseCommand):
    help = (
        "Set up the local demo (DEBUG only): an admin/admin superuser, the merchant 'Demo Shop' with "
        "simulated traffic, and a fresh API key for it. Safe to run again: nothing is created twice."
    )

    def add_arguments(self, parser):
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Where the server answers.")
        parser.add_argument("--promoters", type=int, default=50)
        parser.add_argument("--days", type=int, default=30)
        parser.add_argument("--visitors-per-day", type=float, default=100)
        parser.add_argument("--seed", type=int, default=1)

    def handle(self, *args, base_url, promoters, days, visitors_per_day, seed, verbosity, **options):
        if not settings.DEBUG:
            raise CommandError(
                "load_demo creates a superuser admin with the password 'admin'; it runs only with DEBUG=1."
            )
        base_url = base_url.rstrip("/")
        out = self.stdout.write

        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", "admin")
            out("Created the superuser admin (password admin).")

        merchant = Merchant.objects.filter(name=DEMO_NAME).order_by("id").first()
        first_run = merchant is None
        credentials = None
        if first_run:
            with transaction.atomic():
                credentials = merchant_services.merchant_create(name=DEMO_NAME, domains=[DEMO_DOMAIN])
            merchant = credentials.merchant
            out(f"Created the merchant {DEMO_NAME} (id {merchant.pk}); simulating {days} days of traffic...")
            progress = (lambda message: self.stderr.write(message)) if verbosity >= 2 else None
            summary = simulate(
                merchant_objects=[merchant],
                promoters=promoters,
                days=days,
                visitors_per_day=visitors_per_day,
                seed=seed,
                progress=progress,
            )
            out(summary.as_text())
        api_key = merchant_services.merchant_rotate_api_key(merchant=merchant)
        demo_promoter = self._demo_promoter_login(merchant)
        self._demo_staff_login(merchant)

        link = (
            ReferralLink.objects.filter(merchant=merchant, promoter__status="active").order_by("id").first()
            or ReferralLink.objects.filter(merchant=merchant).order_by("id").first()
        )
        out("")
        out("The demo is ready:")
        out(f"  API docs (Swagger UI)  {base_url}/api/v1/docs/")
        out(f"  Django admin           {base_url}/admin/  (user admin, password admin)")
        if demo_promoter is not None:
            out(f"  Promoter portal        {base_url}/portal/  (email {DEMO_PROMOTER_EMAIL}, password "
                f"{DEMO_PROMOTER_PASSWORD}: {demo_promoter.name})")
            out(f"  Invite link            {base_url}/join/{demo_promoter.referral_code}")
        out(f"  Merchant dashboard     {base_url}/merchant/  (email {DEMO_STAFF_EMAIL}, password "
            f"{DEMO_STAFF_PASSWORD}: {DEMO_NAME}'s owner)")
        if link is not None:
            out(f"  A referral link        {base_url}/r/{link.code}  (to {link.destination_url})")
        out(f"  Merchant API key       {api_key}  (new on every run; the previous one no longer works)")
        if credentials is not None:
            out(f"  Postback URL           {base_url}/postback/{credentials.postback_token}"
                "?type=registration&customer_id=demo-1")
            out(f"  Postback secret        {credentials.postback_secret}  (shown this once)")
        out("")
        out("Try it:")
        out(f"  curl -s -H 'Authorization: Bearer {api_key}' '{base_url}/api/v1/events/?type=purchase'")

    def _demo_promoter_login(self, merchant):
        """The login promoter@example.com (email verified) for the demo's active promoter with
        the largest team, made once."""
        from allauth.account.models import EmailAddress
        from django.db.models import Count

        from promoters.models import Promoter
        from promoters.services import promoter_login_set

        User = get_user_model()
        user = User.objects.filter(email=DEMO_PROMOTER_EMAIL).first()
        if user is None:
            user = User.objects.create_user("demo-promoter", DEMO_PROMOTER_EMAIL, DEMO_PROMOTER_PASSWORD)
            EmailAddress.objects.create(user=user, email=DEMO_PROMOTER_EMAIL, primary=True, verified=True)
        linked = Promoter.objects.filter(user=user, merchant=merchant).first()
        if linked is not None:
            return linked
        promoter = (
            Promoter.objects.filter(merchant=merchant, status=Promoter.Status.ACTIVE, user__isnull=True)
            .annotate(team=Count("recruits")).order_by("-team", "id").first()
        )
        return None if promoter is None else promoter_login_set(promoter=promoter, user=user)

    def _demo_staff_login(self, merchant):
        """The login merchant@example.com (email verified), owner of the demo merchant, made once."""
        from allauth.account.models import EmailAddress

        from merchants.models import MerchantMember

        User = get_user_model()
        user = User.objects.filter(email=DEMO_STAFF_EMAIL).first()
        if user is None:
            user = User.objects.create_user("demo-merchant", DEMO_STAFF_EMAIL, DEMO_STAFF_PASSWORD)
            EmailAddress.objects.create(user=user, email=DEMO_STAFF_EMAIL, primary=True, verified=True)
        MerchantMember.objects.get_or_create(user=user, merchant=merchant, defaults={"role": MerchantMember.Role.OWNER})
        return user
