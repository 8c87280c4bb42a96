"""A small portal world: Sam sponsors Pia; Pia brings a customer who registers and buys;
both have logins. Times sit in the dashboard's 30-day window."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.payouts.world import World
from tests.portal.conftest import client_logged_in, make_login


def recent(days_ago: float):
    return (timezone.now() - timedelta(days=days_ago)).replace(microsecond=0)


class PortalWorld:
    def __init__(self, capture):
        self.w = World(capture, hold_days=30, tier_rates=["0.05", "0.03"], first_purchase_rate="0.10")
        self.sam = self.w.promoter("Sam")
        self.pia = self.w.promoter("Pia", sponsor=self.sam)
        self.sam_user = make_login("sam@example.com", promoter=self.sam)
        self.pia_user = make_login("pia@example.com", promoter=self.pia)
        self.sam_client = client_logged_in(self.sam_user)
        self.pia_client = client_logged_in(self.pia_user)

    def sale(self, customer="c1", order="o1", amount="100.00", days_ago=10):
        click = self.w.journey((self.pia, recent(days_ago + 0.5)))
        self.w.send(type="registration", customer_id=customer, click_id=click, occurred_at=recent(days_ago + 0.4))
        self.w.send(type="purchase", customer_id=customer, order_id=order, amount=amount, occurred_at=recent(days_ago))


@pytest.fixture
def world(django_capture_on_commit_callbacks):
    return PortalWorld(django_capture_on_commit_callbacks)


@pytest.fixture
def sold(world):
    world.sale()
    return world
