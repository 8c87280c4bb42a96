"""Factories for the whole suite. Merchants come with their secrets kept on the object."""

from __future__ import annotations

import factory

from affiliate.models import ReferralLink
from merchants import services as merchant_services
from merchants.models import Program
from promoters.models import Promoter


def make_merchant(name: str = "Shop", domains=("shop.example.com",)):
    """A merchant through the real service; the clear secrets ride along as attributes."""
    credentials = merchant_services.merchant_create(name=name, domains=list(domains))
    merchant = credentials.merchant
    merchant.test_api_key = credentials.api_key
    merchant.test_postback_token = credentials.postback_token
    merchant.test_postback_secret = credentials.postback_secret
    return merchant


class ProgramFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Program

    merchant = factory.LazyFunction(make_merchant)
    name = factory.Sequence(lambda n: f"Program {n}")
    tier_rates = ["0.05", "0.03", "0.02", "0.01"]
    is_default = factory.LazyAttribute(lambda o: not Program.objects.filter(merchant=o.merchant).exists())


class PromoterFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Promoter

    program = factory.SubFactory(ProgramFactory)
    merchant = factory.SelfAttribute("program.merchant")
    email = factory.Sequence(lambda n: f"promoter{n}@example.com")
    name = factory.Sequence(lambda n: f"Promoter {n}")
    referral_code = factory.Sequence(lambda n: f"REF{n:05d}")


class LinkFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ReferralLink

    promoter = factory.SubFactory(PromoterFactory)
    merchant = factory.SelfAttribute("promoter.merchant")
    program = factory.SelfAttribute("promoter.program")
    code = factory.Sequence(lambda n: f"code{n:05d}")
    destination_url = "https://shop.example.com/p/1"
    channel = "blog"
