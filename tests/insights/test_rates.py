"""Dynamic commission rates: decisions, limits, freezes, cool-down, notes, reverts, the
preview command and the daily task."""

from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from affiliate.models import ConversionEvent, Customer
from attribution.models import Credit
from core.errors import ServiceValidationError
from insights import tasks
from insights.models import InsightRun, RateChange, RateFreeze, RateRule
from insights.rates import rate_change_revert, rate_freeze, rate_unfreeze, rates_apply, rates_preview
from payouts.models import Commission
from promoters.models import Promoter, PromoterRateHistory
from tests.factories import ProgramFactory, PromoterFactory

pytestmark = pytest.mark.django_db


def bring(program, promoter, *, customers: int, revenue_minor: int, cost_minor: int, when=None) -> None:
    """``customers`` new customers of ``promoter``, each with one first purchase of
    ``revenue_minor`` and one direct commission of ``cost_minor`` (bulk-written)."""
    when = when or timezone.now() - timedelta(days=10)
    made = Customer.objects.bulk_create(
        Customer(merchant_id=program.merchant_id, external_id=f"p{promoter.pk}-c{i}", stage="first_purchase") for i in range(customers)
    )
    events = ConversionEvent.objects.bulk_create(
        ConversionEvent(
            merchant_id=program.merchant_id, program=program, customer=c, type="purchase", stage="first_purchase",
            status="processed", amount_minor=revenue_minor, currency=program.currency, order_id=f"o-{c.external_id}",
            body_hash="x", occurred_at=when, received_at=when, terms=program.terms(),
        )
        for c in made
    )
    Credit.objects.bulk_create(
        Credit(event=e, promoter=promoter, weight=D(1), weight_exact="1/1", revenue_minor=revenue_minor,
               currency=program.currency, first_position=0)
        for e in events
    )
    Commission.objects.bulk_create(
        Commission(merchant_id=program.merchant_id, program=program, event=e, promoter=promoter, source_promoter=promoter,
                   kind="direct", amount_minor=cost_minor, currency=program.currency, base_minor=revenue_minor,
                   available_at=when + timedelta(days=30))
        for e in events
    )


def rule_for(program, **fields) -> RateRule:
    # raise at LTV/CAC ≥ 3, lower at ≤ 1, 10 customers, ±0.01 within [0.02, 0.25], 30 days apart.
    return RateRule.objects.create(program=program, **fields)


@pytest.fixture
def program(merchant):
    return ProgramFactory(merchant=merchant, first_purchase_rate=D("0.10"))


def test_raise_lower_and_limits(program):
    rule_for(program)
    star = PromoterFactory(program=program, name="Star")  # program rate 0.10
    weak = PromoterFactory(program=program, name="Weak", commission_rate=D("0.08"))
    capped = PromoterFactory(program=program, name="Capped", commission_rate=D("0.245"))
    floored = PromoterFactory(program=program, name="Floored", commission_rate=D("0.025"))
    at_floor = PromoterFactory(program=program, name="AtFloor", commission_rate=D("0.02"))
    middling = PromoterFactory(program=program, name="Middling")
    few = PromoterFactory(program=program, name="Few")
    bring(program, star, customers=10, revenue_minor=10000, cost_minor=1000)  # 100.00 / 10.00 = 10
    bring(program, weak, customers=10, revenue_minor=5000, cost_minor=6000)  # 50 / 60 = 0.8333
    bring(program, capped, customers=10, revenue_minor=10000, cost_minor=2500)  # 4
    bring(program, floored, customers=10, revenue_minor=1000, cost_minor=1000)  # 1: lowered
    bring(program, at_floor, customers=10, revenue_minor=1000, cost_minor=2000)  # 0.5
    bring(program, middling, customers=10, revenue_minor=2000, cost_minor=1000)  # 2
    bring(program, few, customers=9, revenue_minor=10000, cost_minor=1000)  # 10, but 9 customers

    changes = rates_apply(program=program)
    got = {c.promoter.name: (c.kind, c.old_rate, c.new_rate) for c in changes}
    assert got == {
        "Star": ("raise", None, D("0.11")),  # 0.10 + 0.01
        "Weak": ("lower", D("0.08"), D("0.07")),
        "Capped": ("raise", D("0.245"), D("0.25")),  # min(0.255, 0.25)
        "Floored": ("lower", D("0.025"), D("0.02")),  # max(0.015, 0.02)
    }
    rates = dict(Promoter.objects.filter(program=program).values_list("name", "commission_rate"))
    assert rates == {"Star": D("0.11"), "Weak": D("0.07"), "Capped": D("0.25"), "Floored": D("0.02"),
                     "AtFloor": D("0.02"), "Middling": None, "Few": None}
    star_change = next(c for c in changes if c.promoter.name == "Star")
    assert star_change.metrics == {"customers": "10.0000", "ltv": "100.00", "cac": "10.00", "ltv_cac": "10.0000", "old_rate": "0.10"}
    assert star_change.rule["raise_at"] == "3.00" and star_change.rule["step"] == "0.010000"
    assert star_change.reason == "LTV/CAC 10.0000 ≥ 3.00"
    # The new rate is in the rate history, so events received from now on use it.
    assert list(PromoterRateHistory.objects.filter(promoter=star).values_list("rate", flat=True)) == [None, D("0.11")]
    # One note per change, to the promoter; notified_at set.
    assert sorted(m.to[0] for m in mail.outbox) == sorted(p.email for p in (star, weak, capped, floored))
    assert "from the program's rates to 11.00%" in next(m.body for m in mail.outbox if m.to == [star.email])
    assert RateChange.objects.filter(notified_at__isnull=True).count() == 0
    why = {d.name: d.reason for d in rates_preview(program=program)}
    assert why["Few"] == "9 new customers, fewer than 10"
    assert why["AtFloor"] == "LTV/CAC 0.5000 ≤ 1.00, but the rate is at the floor 0.020000"
    assert why["Middling"] == "LTV/CAC 2.0000 between 1.00 and 3.00"
    assert why["Star"].endswith("within the 30-day cool-down")


def test_frozen_inactive_and_cooldown(program):
    rule_for(program)
    frozen = PromoterFactory(program=program, name="Frozen")
    gone = PromoterFactory(program=program, name="Gone", status="inactive")
    star = PromoterFactory(program=program, name="Star")
    for p in (frozen, gone, star):
        bring(program, p, customers=10, revenue_minor=10000, cost_minor=1000)
    rate_freeze(promoter=frozen, reason="finance review")
    assert [c.promoter.name for c in rates_apply(program=program)] == ["Star"]
    # Within the cool-down: nothing; after it (31 days on), Star is raised again: 0.11 → 0.12.
    assert rates_apply(program=program, now=timezone.now() + timedelta(days=1)) == []
    later = rates_apply(program=program, now=timezone.now() + timedelta(days=31))
    assert [(c.promoter.name, c.old_rate, c.new_rate) for c in later] == [("Star", D("0.11"), D("0.12"))]
    assert rate_unfreeze(promoter=frozen) is True
    assert RateFreeze.objects.count() == 0
    assert [c.promoter.name for c in rates_apply(program=program)] == ["Frozen"]
    assert Promoter.objects.get(pk=gone.pk).commission_rate is None


def test_revert_once_and_only_while_the_rate_stands(program, django_user_model):
    rule_for(program, cooldown_days=0)
    star = PromoterFactory(program=program, name="Star")
    bring(program, star, customers=10, revenue_minor=10000, cost_minor=1000)
    (first,) = rates_apply(program=program)
    (second,) = rates_apply(program=program)  # no cool-down: 0.11 → 0.12
    assert (second.old_rate, second.new_rate) == (D("0.11"), D("0.12"))
    finance = django_user_model.objects.create_user("finance", "finance@example.com", "x")

    counts = lambda: (RateChange.objects.count(), PromoterRateHistory.objects.count())  # noqa: E731
    before = counts()
    with pytest.raises(ServiceValidationError) as refused:
        rate_change_revert(change=first, actor=finance)  # 0.12 stands, not first's 0.11
    assert "a later change stands" in refused.value.fields["change"][0]
    assert counts() == before and Promoter.objects.get(pk=star.pk).commission_rate == D("0.12")

    undo_second = rate_change_revert(change=second, actor=finance)
    assert (undo_second.kind, undo_second.old_rate, undo_second.new_rate, undo_second.reverts, undo_second.actor) == (
        "revert", D("0.12"), D("0.11"), second, finance
    )
    undo_first = rate_change_revert(change=first, actor=finance)
    assert (undo_first.old_rate, undo_first.new_rate) == (D("0.11"), None)  # back to the program's rates
    assert Promoter.objects.get(pk=star.pk).commission_rate is None
    before = counts()
    for change, message in ((first, "already reverted"), (undo_first, "cannot be reverted")):
        with pytest.raises(ServiceValidationError) as refused:
            rate_change_revert(change=change, actor=finance)
        assert message in refused.value.fields["change"][0]
    assert counts() == before


def test_preview_writes_nothing_and_the_command_prints_it(program):
    rule_for(program)
    star = PromoterFactory(program=program, name="Star")
    bring(program, star, customers=10, revenue_minor=10000, cost_minor=1000)
    (decision,) = rates_preview(program=program)
    assert (decision.old_rate, decision.new_rate, decision.kind) == (D("0.10"), D("0.11"), "raise")
    out = io.StringIO()
    call_command("rates_preview", "--program", str(program.pk), stdout=out)
    line = next(x for x in out.getvalue().splitlines() if "Star" in x)
    assert line.split()[2:9] == ["10", "100.00", "10.00", "10.0000", "0.1", "->", "0.11"]
    assert line.endswith("LTV/CAC 10.0000 ≥ 3.00")
    assert (RateChange.objects.count(), InsightRun.objects.count(), PromoterRateHistory.objects.count(), len(mail.outbox)) == (0, 0, 0, 0)
    assert Promoter.objects.get(pk=star.pk).commission_rate is None


def test_daily_task_applies_active_rules_only(program, merchant):
    other = ProgramFactory(merchant=merchant)
    rule_for(program)
    rule_for(other, active=False)
    star, other_star = PromoterFactory(program=program), PromoterFactory(program=other)
    bring(program, star, customers=10, revenue_minor=10000, cost_minor=1000)
    bring(other, other_star, customers=10, revenue_minor=10000, cost_minor=1000)
    assert tasks.apply_rates.delay().get() == 1
    assert Promoter.objects.get(pk=star.pk).commission_rate == D("0.11")
    assert Promoter.objects.get(pk=other_star.pk).commission_rate is None
    (run,) = InsightRun.objects.filter(kind="rates")
    assert (run.results["considered"], [d["promoter_id"] for d in run.results["decisions"]]) == (1, [star.pk])
    run_ids = tasks.compute_value.delay(merchant.pk).get()
    assert InsightRun.objects.get(pk=run_ids[0]).results["promoters"][0]["ltv_cac"] == "10.0000"


def test_admin_reverts_a_change_and_shows_the_insights(program, admin_client):
    rule_for(program)
    star = PromoterFactory(program=program, name="Star")
    bring(program, star, customers=10, revenue_minor=10000, cost_minor=1000)
    (change,) = rates_apply(program=program)
    response = admin_client.post(
        "/admin/insights/ratechange/", {"action": "revert_changes", "_selected_action": [change.pk]}, follow=True
    )
    assert response.status_code == 200 and "Reverted 1 change(s)." in response.content.decode()
    assert Promoter.objects.get(pk=star.pk).commission_rate is None
    assert RateChange.objects.get(reverts=change).actor.username == "admin"
    # A second revert is refused, with the reason shown, and writes nothing.
    response = admin_client.post(
        "/admin/insights/ratechange/", {"action": "revert_changes", "_selected_action": [change.pk]}, follow=True
    )
    assert "already reverted" in response.content.decode() and RateChange.objects.count() == 2
    for model in ("raterule", "ratefreeze", "ratechange", "segmentmodel", "promotersegment", "segmentplan", "planchange",
                  "content", "product", "insightrun", "material", "materialassignment"):
        assert admin_client.get(f"/admin/insights/{model}/").status_code == 200, model
    assert admin_client.get(f"/admin/insights/ratechange/{change.pk}/change/").status_code == 200
