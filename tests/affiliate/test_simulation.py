"""The traffic simulator and the demo set-up."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum

from affiliate.models import Click, ConversionEvent, Customer, ReferralLink
from demo.simulation import simulate
from merchants.auth import digest
from merchants.models import Merchant, Program
from promoters.models import Promoter

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SMALL = {"merchants": 1, "promoters": 8, "days": 4, "visitors_per_day": 40, "refund_rate": 0.3, "seed": 3}


@pytest.fixture
def run(transactional_db):
    """One small simulated run, committed for real so that every event is processed."""
    return simulate(now=NOW, **SMALL)


def test_summary_has_the_expected_shape(run):
    # The plan depends on the seed and sizes alone, so these numbers are fixed.
    assert run.merchants == 1
    assert run.programs == 1
    assert run.promoters == 8
    assert run.sponsor_depth == 6
    assert run.inactive_promoters == 2
    assert run.promoters_with_coupon == 3
    assert run.links == 12
    assert (run.visitors, run.clicks, run.customers) == (154, 183, 44)
    assert run.events == {"registration": 36, "purchase": 22, "refund": 6}
    assert run.stages == {"first_purchase": 20, "refund": 6, "registration": 36, "repeat_purchase": 2}
    assert run.coupon_only_purchases == 1
    assert run.revenue == {"USD": "1530.22"}
    assert run.refunded == {"USD": "421.23"}
    assert run.rejected == 0
    assert run.processed == 64


def test_database_matches_the_summary(run):
    (merchant_id,) = run.merchant_ids
    events = ConversionEvent.objects.filter(merchant_id=merchant_id)
    clicks = Click.objects.filter(merchant_id=merchant_id)

    assert Merchant.objects.filter(pk=merchant_id).count() == 1
    program = Program.objects.get(merchant_id=merchant_id)
    assert program.is_default
    assert program.tier_rates == ["0.05", "0.03", "0.02", "0.01"]
    assert Promoter.objects.filter(merchant_id=merchant_id).count() == run.promoters
    assert Promoter.objects.filter(merchant_id=merchant_id, status="inactive").count() == run.inactive_promoters
    assert Promoter.objects.filter(merchant_id=merchant_id, coupon_code__isnull=False).count() == run.promoters_with_coupon
    links = ReferralLink.objects.filter(merchant_id=merchant_id)
    assert links.count() == run.links
    assert sorted(set(links.values_list("channel", flat=True))) == run.channels
    assert clicks.count() == run.clicks
    assert clicks.values("visitor_id").distinct().count() == run.visitors
    assert Customer.objects.filter(merchant_id=merchant_id).count() == run.customers
    assert dict(Counter(events.values_list("type", flat=True))) == {k: v for k, v in run.events.items() if v}
    assert dict(Counter(events.values_list("stage", flat=True))) == run.stages
    assert events.filter(status="processed").count() == run.total_events
    assert events.filter(source="internal").count() == run.total_events
    purchases = events.filter(type="purchase").aggregate(total=Sum("amount_minor"))["total"]
    refunds = events.filter(type="refund").aggregate(total=Sum("amount_minor"))["total"]
    assert run.revenue == {"USD": f"{purchases / 100:.2f}"}
    assert run.refunded == {"USD": f"{refunds / 100:.2f}"}
    coupon_only = events.filter(type="purchase", click__isnull=True, coupon_promoter__isnull=False)
    assert coupon_only.count() >= run.coupon_only_purchases


def test_traffic_lies_in_the_window_and_visitors_come_back(run):
    (merchant_id,) = run.merchant_ids
    clicks = Click.objects.filter(merchant_id=merchant_id)
    start = NOW - timedelta(days=SMALL["days"])
    assert not clicks.filter(created_at__lt=start).exists()
    assert not clicks.filter(created_at__gt=NOW).exists()
    assert not ConversionEvent.objects.filter(merchant_id=merchant_id, occurred_at__gt=NOW).exists()
    promoters_per_visitor = defaultdict(set)
    clicks_per_visitor = Counter()
    for visitor_id, promoter_id in clicks.values_list("visitor_id", "promoter_id"):
        promoters_per_visitor[visitor_id].add(promoter_id)
        clicks_per_visitor[visitor_id] += 1
    assert any(n > 1 for n in clicks_per_visitor.values())  # returning visitors reuse their id
    assert any(len(p) > 1 for p in promoters_per_visitor.values())  # several promoters' links


def test_every_event_click_belongs_to_the_merchant_and_precedes_the_event(run):
    (merchant_id,) = run.merchant_ids
    with_click = ConversionEvent.objects.filter(merchant_id=merchant_id, click__isnull=False).select_related("click")
    assert with_click.exists()
    for event in with_click:
        assert event.click.merchant_id == event.merchant_id
        assert event.click.created_at < event.occurred_at
        assert event.click_ref == event.click.id.hex
    # Every click id sent was known: no event warns about an unknown click or coupon.
    assert not ConversionEvent.objects.filter(merchant_id=merchant_id).exclude(warnings=[]).exists()
    assert not ConversionEvent.objects.filter(merchant_id=merchant_id, click__isnull=True).exclude(click_ref="").exists()


def test_journey_stages_are_consistent(run):
    (merchant_id,) = run.merchant_ids
    by_customer = defaultdict(list)
    for event in ConversionEvent.objects.filter(merchant_id=merchant_id).order_by("id"):
        by_customer[event.customer_id].append(event)
    for events in by_customer.values():
        stages = [e.stage for e in events]
        assert stages.count("first_purchase") <= 1
        assert stages.count("registration") <= 1
        purchases = [e for e in events if e.type == "purchase"]
        if purchases:
            assert purchases[0].stage == "first_purchase"
            assert all(e.stage == "repeat_purchase" for e in purchases[1:])
            assert all(a.occurred_at < b.occurred_at for a, b in zip(purchases, purchases[1:], strict=False))
        first_id = next((e.id for e in events if e.stage == "first_purchase"), None)
        for event in events:
            if event.stage in ("repeat_purchase", "refund"):
                assert first_id is not None and first_id < event.id


def test_refunds_never_exceed_their_order(run):
    (merchant_id,) = run.merchant_ids
    purchases = ConversionEvent.objects.filter(merchant_id=merchant_id, type="purchase")
    refunded_orders = 0
    for purchase in purchases:
        refunds = list(purchase.refunds.all())
        if refunds:
            refunded_orders += 1
        assert sum(r.amount_minor for r in refunds) <= purchase.amount_minor
        for refund in refunds:
            assert refund.order_id == purchase.order_id
            assert refund.customer_id == purchase.customer_id
            assert refund.occurred_at > purchase.occurred_at
    assert refunded_orders > 0


def test_sponsor_tree_has_no_loops_and_depth(run):
    (merchant_id,) = run.merchant_ids
    sponsor_of = dict(Promoter.objects.filter(merchant_id=merchant_id).values_list("id", "sponsor_id"))
    depths = []
    for promoter_id in sponsor_of:
        seen, current = set(), promoter_id
        while current is not None:
            assert current not in seen, "a loop in the sponsor tree"
            assert current in sponsor_of, "a sponsor of another merchant"
            seen.add(current)
            current = sponsor_of[current]
        depths.append(len(seen))
    assert max(depths) == run.sponsor_depth
    assert max(depths) >= 2


def test_the_same_seed_gives_the_same_numbers(transactional_db):
    first = simulate(now=NOW, **SMALL)
    second = simulate(**SMALL)  # another database state and another clock: the same plan
    other = simulate(now=NOW, **{**SMALL, "seed": 4})
    assert first.numbers() == second.numbers()
    assert set(first.merchant_ids).isdisjoint(second.merchant_ids)
    assert other.numbers() != first.numbers()


def test_simulate_traffic_command_prints_a_summary(transactional_db):
    out, err = StringIO(), StringIO()
    call_command("simulate_traffic", "--promoters", "3", "--days", "2", "--visitors-per-day", "5", "--seed", "9",
                 stdout=out, stderr=err)
    assert "day 1/2" in err.getvalue() and "day 2/2" in err.getvalue()
    text = out.getvalue()
    assert text.startswith("Simulated 2 days of traffic (seed 9)")
    assert "promoters   3 " in text
    assert Promoter.objects.count() == 3


def test_simulate_traffic_rejects_bad_sizes(db):
    with pytest.raises(CommandError):
        call_command("simulate_traffic", "--days", "0", stdout=StringIO(), stderr=StringIO())
    assert not Merchant.objects.exists()


# --- load_demo ------------------------------------------------------------------------

DEMO_ARGS = ("--promoters", "4", "--days", "2", "--visitors-per-day", "5")


def test_load_demo_is_idempotent_and_prints_what_to_open(db, settings):
    settings.DEBUG = True
    first, second = StringIO(), StringIO()

    call_command("load_demo", *DEMO_ARGS, stdout=first)
    call_command("load_demo", *DEMO_ARGS, stdout=second)

    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff and admin.check_password("admin")
    assert Merchant.objects.filter(name="Demo Shop").count() == 1
    merchant = Merchant.objects.get(name="Demo Shop")
    assert merchant.domains == ["shop.example.com"]
    assert Promoter.objects.filter(merchant=merchant).count() == 4  # simulated once, not twice
    for text in (first.getvalue(), second.getvalue()):
        assert "http://127.0.0.1:8000/api/v1/docs/" in text
        assert "http://127.0.0.1:8000/admin/" in text
        assert "http://127.0.0.1:8000/r/" in text
        assert "curl -s -H 'Authorization: Bearer mk_live_" in text
    # The postback URL is printed only when its token is made, on the first run.
    assert "/postback/" in first.getvalue() and "/postback/" not in second.getvalue()
    # Each run rotates the key; only the last one printed works.
    key = second.getvalue().split("Merchant API key")[1].split()[0]
    old_key = first.getvalue().split("Merchant API key")[1].split()[0]
    assert key != old_key
    assert merchant.api_key_hash == digest(key)
    code = second.getvalue().split("http://127.0.0.1:8000/r/")[1].split()[0]
    assert ReferralLink.objects.filter(merchant=merchant, code=code).exists()


def test_load_demo_refuses_without_debug(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DEBUG"):
        call_command("load_demo", *DEMO_ARGS, stdout=StringIO())
    assert not get_user_model().objects.exists()
    assert not Merchant.objects.exists()
