"""How django-allauth's accounts meet promoters: the adapter and the invite sign-up form."""

from __future__ import annotations

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import SignupForm
from django import forms
from django.db import transaction
from django.urls import reverse

from merchants.models import MerchantMember
from promoters import services
from promoters.models import Promoter


class AccountAdapter(DefaultAccountAdapter):
    def get_login_redirect_url(self, request) -> str:
        """Merchant staff who promote nothing land on the merchant pages, not on an empty portal."""
        user = request.user
        if (
            user.is_authenticated
            and not Promoter.objects.filter(user=user).exists()
            and MerchantMember.objects.filter(user=user).exists()
        ):
            return reverse("merchant:dashboard")
        return super().get_login_redirect_url(request)

    def confirm_email(self, request, email_address) -> bool:
        """A verified email also opens the portal of promoters the merchant created for it."""
        verified = super().confirm_email(request, email_address)
        if verified and email_address.user_id:
            services.promoters_claim(user=email_address.user, email=email_address.email)
        return verified


class JoinSignupForm(SignupForm):
    """allauth's sign-up, plus the promoter's name; saving also joins the sponsor's program."""

    name = forms.CharField(
        max_length=200, label="Your name", widget=forms.TextInput(attrs={"autocomplete": "name"}),
        help_text="Shown to the merchant and on your statements.",
    )

    field_order = ["name", "email", "password1", "password2"]

    def __init__(self, *args, sponsor: Promoter, **kwargs):
        self.sponsor = sponsor
        super().__init__(*args, **kwargs)

    def clean(self):
        cleaned = super().clean()
        email = cleaned.get("email")
        if email and Promoter.objects.filter(program_id=self.sponsor.program_id, email__iexact=email).exists():
            self.add_error(
                "email",
                "This email is already registered with this program. Sign up without the invite link and "
                "confirm your email: your promoter account will be waiting.",
            )
        return cleaned

    def save(self, request):
        """The login and the promoter are made together or not at all: a refusal of the
        service (``ServiceValidationError``) rolls the login back, for the view to report."""
        with transaction.atomic():
            user = super().save(request)
            services.promoter_join(sponsor=self.sponsor, user=user, name=self.cleaned_data["name"])
        return user
