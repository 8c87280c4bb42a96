"""Forms of the promoter portal: they check input; the services decide."""

from __future__ import annotations

from django import forms

from payouts.models import Commission

SUB_IDS = ("sub1", "sub2", "sub3", "sub4", "sub5")


class JoinForm(forms.Form):
    """A logged-in person joining a sponsor's program."""

    name = forms.CharField(max_length=200, label="Your name", widget=forms.TextInput(attrs={"autocomplete": "name"}))


class LinkForm(forms.Form):
    destination_url = forms.URLField(
        max_length=2048, label="Page on the shop", assume_scheme="https",
        help_text="Where the link takes visitors: a page on one of the merchant's domains.",
    )
    channel = forms.CharField(
        max_length=100, required=False, label="Channel",
        help_text="Where you will post it, e.g. blog, youtube, newsletter.",
    )


class SubIdForm(forms.Form):
    """Sub-ids ride on the tracking URL (``?sub1=..``) and are stored with every click."""

    sub1 = forms.CharField(max_length=255, required=False, label="Sub-id 1")
    sub2 = forms.CharField(max_length=255, required=False, label="Sub-id 2")
    sub3 = forms.CharField(max_length=255, required=False, label="Sub-id 3")
    sub4 = forms.CharField(max_length=255, required=False, label="Sub-id 4")
    sub5 = forms.CharField(max_length=255, required=False, label="Sub-id 5")


class CommissionFilterForm(forms.Form):
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Commission.Status.choices])
    kind = forms.ChoiceField(
        required=False,
        choices=[("", "Any kind"), ("direct", "Own sales"), ("override", "Team overrides"), ("bounty", "Registration bounties"), ("reversal", "Reversals")],
    )
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("since") and cleaned.get("until") and cleaned["since"] > cleaned["until"]:
            self.add_error("until", "The end date is before the start date.")
        return cleaned
