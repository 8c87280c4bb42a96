"""Fixtures of the fault tests: a program paying a promoter and her sponsor, and the checks
every scenario ends with (each event processed once, the ledger audited clean)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from affiliate.models import ConversionEvent
from payouts.audit import audit_ledger
from payouts.models import Commission
from tests.factories import LinkFactory, ProgramFactory, PromoterFactory


@pytest.fixture
def program(merchant):
    """10% on a first purchase, 5% on a repeat one, 5% to the sponsor, 3.00 per registration."""
    return ProgramFactory(
        merchant=merchant,
        name="Default",
        first_purchase_rate=Decimal("0.10"),
        repeat_purchase_rate=Decimal("0.05"),
        tier_rates=["0.05"],
        registration_bounty_minor=300,
    )


@pytest.fixture
def bob(program):
    return PromoterFactory(program=program, email="bob@example.com", name="Bob")


@pytest.fixture
def anna(program, bob):
    return PromoterFactory(program=program, email="anna@example.com", name="Anna", sponsor=bob, coupon_code="ANNA10")


@pytest.fixture
def anna_link(anna):
    return LinkFactory(promoter=anna, code="annablog", destination_url="https://shop.example.com/p/1")


def commissions() -> list[tuple]:
    """Every commission as (order or customer, promoter, kind, level, amount in cents), in order."""
    return list(
        Commission.objects.order_by("event_id", "id").values_list(
            "event__order_id", "event__refund_id", "promoter__name", "kind", "level", "amount_minor"
        )
    )


def assert_processed_once(expected_events: int) -> None:
    """Every event is processed, exactly once, and the ledger audits clean."""
    rows = list(ConversionEvent.objects.values_list("status", "attempts"))
    assert len(rows) == expected_events
    assert {(status, attempts) for status, attempts in rows} == {("processed", 1)}
    assert ConversionEvent.objects.filter(processed_at__isnull=True).count() == 0
    report = audit_ledger()
    assert report.differences == []
    assert report.events == expected_events
