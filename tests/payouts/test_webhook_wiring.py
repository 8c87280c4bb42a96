"""Money events reach the merchant's (and the promoter's own) webhook endpoints."""

from __future__ import annotations

import pytest
import time_machine

from payouts import batches, services
from payouts.finance import commission_reverse
from payouts.models import Commission, PayoutPolicy, WebhookDelivery
from payouts.webhooks import webhook_endpoint_create
from tests.payouts.world import World, at

pytestmark = pytest.mark.django_db

EVERYTHING = ["commission.created", "commission.approved", "commission.reversed", "payout.paid"]


def deliveries(endpoint):
    return sorted(WebhookDelivery.objects.filter(endpoint=endpoint).values_list("event_type", "event_id"))


def test_the_life_of_a_commission_is_sent_to_the_endpoints(django_capture_on_commit_callbacks, settings):
    settings.DEBUG = True  # plain-http localhost endpoints
    w = World(django_capture_on_commit_callbacks, hold_days=30, tier_rates=["0.05"])
    PayoutPolicy.objects.update_or_create(program=w.program, defaults={"minimum_payout_minor": 100})
    s = w.promoter("S")
    p = w.promoter("P", sponsor=s)
    merchant_wide, _ = webhook_endpoint_create(merchant=w.merchant, url="http://127.0.0.1:9/crm", events=EVERYTHING)
    own, _ = webhook_endpoint_create(merchant=w.merchant, url="http://127.0.0.1:9/p", events=["commission.created"], promoter=p)
    with time_machine.travel(at(0), tick=True):
        click = w.journey((p, at(0)))
        w.send(type="purchase", customer_id="c1", order_id="o1", amount="100.00", click_id=click, occurred_at=at(0))
    direct = Commission.objects.get(kind="direct")
    override = Commission.objects.get(kind="override")
    assert deliveries(own) == [("commission.created", f"commission.created:{direct.pk}")]
    assert deliveries(merchant_wide) == sorted(
        [("commission.created", f"commission.created:{direct.pk}"), ("commission.created", f"commission.created:{override.pk}")]
    )
    with time_machine.travel(at(31), tick=True):
        assert services.approve_due() == 2
        reversal = commission_reverse(commission_id=override.pk, reason="duplicate account", by="finance")
        built = batches.batch_build(merchant=w.merchant, currency="USD")
        line = built.batch.lines.get()
        batches.lines_settle(line_ids=[line.pk], paid=True)
    assert deliveries(merchant_wide) == sorted(
        [
            ("commission.created", f"commission.created:{direct.pk}"),
            ("commission.created", f"commission.created:{override.pk}"),
            ("commission.approved", f"commission.approved:{direct.pk}"),
            ("commission.approved", f"commission.approved:{override.pk}"),
            ("commission.reversed", f"commission.reversed:{reversal.pk}"),
            ("payout.paid", f"payout.paid:{line.pk}"),
        ]
    )
    assert deliveries(own) == [("commission.created", f"commission.created:{direct.pk}")]
    paid = WebhookDelivery.objects.get(event_type="payout.paid")
    assert (paid.payload["data"]["promoter"], paid.payload["data"]["amount"]) == (p.pk, "10.00")


def test_no_endpoint_no_delivery(django_capture_on_commit_callbacks):
    w = World(django_capture_on_commit_callbacks, hold_days=0, tier_rates=[])
    p = w.promoter("P")
    w.send(type="purchase", customer_id="c1", order_id="o1", amount="10.00", click_id=w.journey((p, at(0))), occurred_at=at(1))
    assert WebhookDelivery.objects.count() == 0
