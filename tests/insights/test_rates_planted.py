"""A planted signal: 40 promoters with customers, purchases, refunds and commissions, two of
them with an LTV/CAC far above the rest. The daily rule raises exactly those two; the
preview shows the same and writes nothing."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.core import mail
from django.utils import timezone

from affiliate.models import ConversionEvent, Customer
from attribution.models import Credit
from insights.models import InsightRun, RateChange, RateRule
from insights.rates import rates_apply, rates_preview
from payouts.models import Commission
from promoters.models import Promoter, PromoterRateHistory
from tests.factories import ProgramFactory

pytestmark = pytest.mark.django_db


def build(program, rng):
    """40 promoters × 12 customers. Each customer: a first purchase, for some a refund of
    part of it. The commission is a share of the purchase: 45-55% for the rest (LTV/CAC
    about 1.5 to 2.7, between the rule's 1 and 3), 8-10% for the planted two (LTV/CAC ≥ 8)."""
    when = timezone.now() - timedelta(days=20)
    promoters = Promoter.objects.bulk_create(
        Promoter(merchant_id=program.merchant_id, program=program, email=f"p{i}@example.com", name=f"P{i:02d}",
                 referral_code=f"PL{i:05d}", commission_rate=None if i % 2 else D("0.05"))
        for i in range(40)
    )
    planted = {promoters[7].pk, promoters[30].pk}
    customers = Customer.objects.bulk_create(
        Customer(merchant_id=program.merchant_id, external_id=f"{p.pk}-{j}", stage="first_purchase")
        for p in promoters for j in range(12)
    )
    owner = {c.pk: promoters[i // 12] for i, c in enumerate(customers)}
    purchases = ConversionEvent.objects.bulk_create(
        ConversionEvent(merchant_id=program.merchant_id, program=program, customer=c, type="purchase", stage="first_purchase",
                        status="processed", amount_minor=rng.randrange(5000, 20000), currency="USD", order_id=f"o{c.pk}",
                        body_hash="x", occurred_at=when, received_at=when, terms={})
        for c in customers
    )
    refunds = ConversionEvent.objects.bulk_create(
        ConversionEvent(merchant_id=program.merchant_id, program=program, customer_id=e.customer_id, type="refund",
                        stage="refund", status="processed", amount_minor=e.amount_minor // 10, currency="USD",
                        order_id=e.order_id, refund_id="r", purchase=e, body_hash="x",
                        occurred_at=when + timedelta(days=1), received_at=when + timedelta(days=1), terms={})
        for e in purchases[::5]
    )
    Credit.objects.bulk_create(
        Credit(event=e, promoter=owner[e.customer_id], weight=D(1), weight_exact="1/1", revenue_minor=e.amount_minor,
               currency="USD", first_position=0)
        for e in purchases
    )
    commissions = Commission.objects.bulk_create(
        Commission(merchant_id=program.merchant_id, program=program, event=e, promoter=owner[e.customer_id],
                   source_promoter=owner[e.customer_id], kind="direct", currency="USD", base_minor=e.amount_minor,
                   amount_minor=e.amount_minor * (rng.randrange(8, 11) if owner[e.customer_id].pk in planted else rng.randrange(45, 56)) // 100,
                   available_at=when + timedelta(days=30))
        for e in purchases
    )
    by_event = {c.event_id: c for c in commissions}
    Commission.objects.bulk_create(
        Commission(merchant_id=program.merchant_id, program=program, event=r, promoter_id=by_event[r.purchase_id].promoter_id,
                   source_promoter_id=by_event[r.purchase_id].promoter_id, kind="reversal", currency="USD",
                   amount_minor=-(by_event[r.purchase_id].amount_minor // 10), reverses=by_event[r.purchase_id],
                   available_at=when + timedelta(days=30))
        for r in refunds
    )
    return promoters, planted


def test_rates_raise_exactly_the_planted_two():
    program = ProgramFactory(first_purchase_rate=D("0.10"))
    RateRule.objects.create(program=program)  # ≥ 3 raise, ≤ 1 lower, 10 customers, ±0.01
    promoters, planted = build(program, random.Random(6))

    preview = rates_preview(program=program)
    assert (RateChange.objects.count(), InsightRun.objects.count(), PromoterRateHistory.objects.count(), len(mail.outbox)) == (0, 0, 0, 0)
    assert {d.promoter_id for d in preview if d.changes} == planted
    assert all(d.ratio >= 8 for d in preview if d.promoter_id in planted)
    assert all(D("1.4") < d.ratio < 3 for d in preview if d.promoter_id not in planted)
    assert all(d.customers == 12 for d in preview)

    changes = rates_apply(program=program)
    # P07 (the program's 0.10) → 0.11; P30 (own rate 0.05) → 0.06.
    assert {(c.promoter_id, c.kind, c.old_rate, c.new_rate) for c in changes} == {
        (promoters[7].pk, "raise", None, D("0.11")), (promoters[30].pk, "raise", D("0.05"), D("0.06")),
    }
    after = dict(Promoter.objects.filter(program=program).values_list("id", "commission_rate"))
    before = {p.pk: p.commission_rate for p in promoters}
    assert {pk for pk in after if after[pk] != before[pk]} == planted
    assert [(d.promoter_id, d.new_rate) for d in preview if d.changes] == sorted((c.promoter_id, c.new_rate) for c in changes)
    assert len(mail.outbox) == 2
