"""Forms of the merchant dashboards: they check what a browser can get wrong; the services
decide everything else (and their refusals are shown on the same fields)."""

from __future__ import annotations

from datetime import timedelta

from django import forms

from affiliate.models import ConversionEvent
from merchants.models import Program

from .selectors import CHART_DAYS, Range

MAX_RANGE_DAYS = 366


class RangeForm(forms.Form):
    """A program of the merchant and a range of days (both included, UTC)."""

    program = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Program")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To (included)", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, data, *, programs: list[Program]):
        super().__init__(data or None)
        self.fields["program"].choices = [(p.pk, f"{p.name} ({p.currency})") for p in programs]
        if programs:
            self.fields["program"].initial = programs[0].pk
        default = Range.last_days(CHART_DAYS)
        self.fields["since"].initial = default.since
        self.fields["until"].initial = default.until

    def clean(self):
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until:
            if since > until:
                self.add_error("until", "The end of the range comes before its start.")
            elif (until - since).days >= MAX_RANGE_DAYS:
                self.add_error("until", f"At most {MAX_RANGE_DAYS} days at a time.")
        return cleaned

    def span(self) -> Range:
        """The chosen range (the last 30 days where nothing valid was given)."""
        default = Range.last_days(CHART_DAYS)
        if not self.is_bound or not self.is_valid():
            return default
        since = self.cleaned_data.get("since")
        until = self.cleaned_data.get("until")
        if since and not until:
            until = min(since + timedelta(days=CHART_DAYS - 1), default.until) if since <= default.until else since
        if until and not since:
            since = until - timedelta(days=CHART_DAYS - 1)
        return Range(since or default.since, until or default.until)


class ConversionFilterForm(forms.Form):
    program = forms.TypedChoiceField(coerce=int, required=False, empty_value=None, label="Program")
    type = forms.ChoiceField(required=False, label="Type", choices=[("", "Any type"), *ConversionEvent.Type.choices])
    q = forms.CharField(
        required=False, max_length=255, label="Event, order or customer id",
        help_text="The event's number, the order id or the customer id the shop sent.",
    )

    def __init__(self, data, *, programs: list[Program]):
        super().__init__(data or None)
        self.fields["program"].choices = [("", "All programs"), *[(p.pk, p.name) for p in programs]]


TIER_HELP = "Override rates for the sponsors above, level 1 first, separated by commas (e.g. 0.05, 0.03). Empty: no overrides."


class ProgramSettingsForm(forms.Form):
    """The program's fields of the contract (``merchants.services.PROGRAM_FIELDS``)."""

    name = forms.CharField(max_length=200, label="Name")
    currency = forms.CharField(max_length=3, label="Currency", help_text="ISO 4217, e.g. USD. Fixed once the program has events.")
    attribution_model = forms.ChoiceField(choices=Program.Model.choices, label="Attribution model")
    first_click_share = forms.CharField(max_length=20, label="First click share", help_text="Mixed model: 0 to 1.")
    last_click_share = forms.CharField(max_length=20, label="Last click share", help_text="Mixed model: 0 to 1; with the first click share at most 1.")
    lookback_days = forms.IntegerField(label="Lookback window (days)", min_value=1, max_value=3650)
    registration_bounty = forms.CharField(max_length=20, label="Registration bounty", help_text="Paid per attributed registration, in the program's currency.")
    first_purchase_rate = forms.CharField(max_length=20, label="First purchase rate", help_text="Share of the first order, 0 to 1 (0.10 is 10%).")
    repeat_purchase_rate = forms.CharField(max_length=20, label="Repeat purchase rate", help_text="Share of later orders, 0 to 1.")
    tier_rates = forms.CharField(max_length=200, required=False, label="Upline override rates", help_text=TIER_HELP)
    compress_inactive = forms.BooleanField(required=False, label="Skip inactive sponsors (compression)")
    duplicate_click_seconds = forms.IntegerField(
        label="Duplicate click window (seconds)", min_value=0, max_value=86_400 * 30,
        help_text="A second click of the same visitor on the same link within this time is a duplicate. 0: off.",
    )
    hold_days = forms.IntegerField(label="Hold (days)", min_value=0, max_value=3650, help_text="Commissions stay pending this long (the return period).")
    # The fraud rules ("fraud" in the API): a flagged conversion's commissions are held for review.
    fraud_bots = forms.BooleanField(required=False, label="Flag clicks from known bots")
    fraud_click_flood_max = forms.IntegerField(
        label="Click flood: clicks allowed", min_value=0, max_value=100_000,
        help_text="A visitor's or an IP's clicks on one link beyond this many within the window are flagged. 0: off.",
    )
    fraud_click_flood_seconds = forms.IntegerField(label="Click flood: window (seconds)", min_value=0, max_value=86_400)
    fraud_self_referral_email = forms.BooleanField(required=False, label="Flag self-referral (the customer is the promoter, by email)")
    fraud_min_click_to_conversion_seconds = forms.IntegerField(
        label="Flag a sale sooner than this after its click (seconds)", min_value=0, max_value=86_400,
        help_text="0: off. Fast buyers are honest too: 5 is a careful value.",
    )
    fraud_ip_max_promoters = forms.IntegerField(
        label="Flag an IP behind more promoters' sales than this in a day", min_value=0, max_value=100_000,
        help_text="0: off. Many people share one address behind a mobile carrier.",
    )
    fraud_max_order_amount = forms.CharField(
        max_length=20, required=False, label="Review orders above",
        help_text="In the program's currency; empty: off. Such a purchase's commissions are held for review.",
    )

    FRAUD_FIELDS = (
        "bots", "click_flood_max", "click_flood_seconds", "self_referral_email", "min_click_to_conversion_seconds",
        "ip_max_promoters", "max_order_amount",
    )

    FIELD_ORDER = (
        "name", "currency", "attribution_model", "first_click_share", "last_click_share", "lookback_days",
        "registration_bounty", "first_purchase_rate", "repeat_purchase_rate", "tier_rates", "compress_inactive",
        "duplicate_click_seconds", "hold_days",
    )

    @classmethod
    def initial_for(cls, program: Program) -> dict:
        from core.validation import format_rate

        return {
            "name": program.name,
            "currency": program.currency,
            "attribution_model": program.attribution_model,
            "first_click_share": format_rate(program.first_click_share),
            "last_click_share": format_rate(program.last_click_share),
            "lookback_days": program.lookback_days,
            "registration_bounty": str(program.registration_bounty),
            "first_purchase_rate": format_rate(program.first_purchase_rate),
            "repeat_purchase_rate": format_rate(program.repeat_purchase_rate),
            "tier_rates": ", ".join(format_rate(r) for r in program.tier_rate_decimals),
            "compress_inactive": program.compress_inactive,
            "duplicate_click_seconds": program.duplicate_click_seconds,
            "hold_days": program.hold_days,
            **{f"fraud_{name}": value if value is not None else "" for name, value in program.fraud_rules.items()},
        }

    def service_fields(self) -> dict:
        """The cleaned values as ``program_update`` takes them."""
        data = dict(self.cleaned_data)
        data["currency"] = data["currency"].strip().upper()
        raw = data["tier_rates"].strip()
        data["tier_rates"] = [part.strip() for part in raw.split(",")] if raw else []
        fraud = {name: data[f"fraud_{name}"] for name in self.FRAUD_FIELDS}
        fraud["max_order_amount"] = (fraud["max_order_amount"] or "").strip() or None
        return {**{name: data[name] for name in self.FIELD_ORDER}, "fraud": fraud}
