"""A small merchant world whose figures are worked out by hand in the tests.

Program "Default" (USD): mixed model (first click 0.60, last 0.40), first purchase 10%,
repeat 5%, overrides 5% / 3%, no bounty, 30 days' hold. Sam sponsors Pia; Olly is alone.
Links: Pia's on "blog" and on "youtube", Olly's on "youtube". Within the last 30 days:

- c1 clicks Pia's blog link, registers, buys o1 for 100.00: Pia 10.00, Sam 5.00 (override).
- c2 clicks Olly's youtube link, Pia's blog link, then Pia's youtube link, buys o2 for
  200.00: weights 0.6 / 0 / 0.4, so Olly 120.00 and Pia 80.00 of revenue; Olly 12.00,
  Pia 8.00, Sam 4.00. Pia's last touchpoint is youtube.
- o1 is refunded 30.00: Pia's credit -30.00; reversals Pia -3.00, Sam -1.50.
- Three clicks convert nothing: two on Olly's link, one on Pia's blog link.
- Finance approves Olly's 12.00 and Sam's 5.00 override, and marks Sam's 5.00 paid.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from affiliate import services
from merchants import services as merchant_services
from merchants.models import MerchantMember
from payouts import services as payout_services
from payouts.models import Commission
from tests.factories import make_merchant
from tests.payouts.world import World
from tests.portal.conftest import client_logged_in, make_login


def recent(days_ago: float):
    return (timezone.now() - timedelta(days=days_ago)).replace(microsecond=0)


def staff_login(email: str, merchant, role: str = "staff"):
    user = make_login(email)
    MerchantMember.objects.create(user=user, merchant=merchant, role=role)
    return user


class MerchantWorld:
    def __init__(self, capture):
        self.w = World(capture, hold_days=30, tier_rates=["0.05", "0.03"], first_purchase_rate="0.10")
        self.merchant, self.program = self.w.merchant, self.w.program
        self.sam = self.w.promoter("Sam")
        self.pia = self.w.promoter("Pia", sponsor=self.sam)
        self.olly = self.w.promoter("Olly")
        self.pia_blog = self.link(self.pia, "blog")
        self.pia_yt = self.link(self.pia, "youtube")
        self.olly_yt = self.link(self.olly, "youtube")
        self.staff = staff_login("staff@acme.example.com", self.merchant)
        self.client = client_logged_in(self.staff)

    def link(self, promoter, channel):
        return services.link_create(
            merchant=self.merchant, promoter=promoter, destination_url="https://shop.example.com/", channel=channel
        )

    def click(self, link, days_ago, visitor=None):
        visitor = visitor or uuid.uuid4()
        return services.click_record(target=services.link_target(link.code), visitor_id=visitor, at=recent(days_ago))

    def build(self):
        v1, v2 = uuid.uuid4(), uuid.uuid4()
        c1 = self.click(self.pia_blog, 10.5, v1)
        self.w.send(type="registration", customer_id="c1", click_id=c1.id.hex, occurred_at=recent(10.4))
        self.o1 = self.w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", occurred_at=recent(10))
        self.click(self.olly_yt, 8.5, v2)
        self.click(self.pia_blog, 8.3, v2)
        last = self.click(self.pia_yt, 8.2, v2)
        self.o2 = self.w.send(type="purchase", customer_id="c2", order_id="o2", amount="200.00", click_id=last.id.hex, occurred_at=recent(8))
        self.refund = self.w.send(type="refund", customer_id="c1", order_id="o1", amount="30.00", occurred_at=recent(5))
        self.click(self.olly_yt, 3)
        self.click(self.olly_yt, 2)
        self.click(self.pia_blog, 1)
        olly_direct = Commission.objects.get(promoter=self.olly, kind="direct")
        sam_first = Commission.objects.get(promoter=self.sam, kind="override", event_id=self.o1["id"])
        payout_services.commissions_approve(commission_ids=[olly_direct.pk, sam_first.pk])
        payout_services.commissions_mark_paid(commission_ids=[sam_first.pk])
        return self


@pytest.fixture
def world(django_capture_on_commit_callbacks):
    return MerchantWorld(django_capture_on_commit_callbacks).build()


@pytest.fixture
def other(db):
    """Another merchant with a program, a pending promoter, an event, and its own staff."""
    merchant = make_merchant("Other Shop", ["other.example.net"])
    program = merchant_services.program_create(merchant=merchant, name="Theirs", currency="EUR")
    return merchant, program
