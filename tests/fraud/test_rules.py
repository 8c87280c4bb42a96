"""The fraud rules as pure functions: exact figures, no database."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from affiliate import fraud

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


def test_flood_flags_the_clicks_past_the_limit_within_the_window():
    # Limit 2 in 60 s. Earlier clicks within the 60 s before each: 0 → none, 10 → 1,
    # 20 → 2 (flagged), 30 → 3 (flagged), 75 → those at 20 and 30 (flagged), 200 → none.
    clicks = [fraud.ClickFact(f"c{t:03d}", 1, "v", "", s(t)) for t in (0, 10, 20, 30, 75, 200)]
    assert fraud.flood_flags(clicks, limit=2, seconds=60) == {
        "c020": "click flood: more than 2 clicks by one visitor on this link within 60s",
        "c030": "click flood: more than 2 clicks by one visitor on this link within 60s",
        "c075": "click flood: more than 2 clicks by one visitor on this link within 60s",
    }


def test_flood_counts_per_link_and_by_ip_across_visitors():
    # Three visitors on one IP, one link: the third click is the IP's flood. The same IP on
    # another link counts apart; clicks without an IP never make a flood.
    clicks = [
        fraud.ClickFact("a", 1, "v1", "ip1", s(0)),
        fraud.ClickFact("b", 1, "v2", "ip1", s(1)),
        fraud.ClickFact("c", 1, "v3", "ip1", s(2)),
        fraud.ClickFact("d", 2, "v4", "ip1", s(3)),
        fraud.ClickFact("e", 1, "v5", "", s(4)),
        fraud.ClickFact("f", 1, "v6", "", s(5)),
        fraud.ClickFact("g", 1, "v7", "", s(6)),
    ]
    assert fraud.flood_flags(clicks, limit=2, seconds=60) == {
        "c": "click flood: more than 2 clicks by one IP on this link within 60s"
    }
    assert fraud.flood_flags(clicks, limit=0, seconds=60) == {}


def test_bot_reason_names_the_crawler_and_caches_per_user_agent():
    fraud._bot_match.cache_clear()
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"
    assert fraud.bot_reason(googlebot) == "known bot: Googlebot"
    assert fraud.bot_reason(googlebot) == "known bot: Googlebot"
    assert fraud.bot_reason("curl/8.5.0") == "known bot: curl"
    assert fraud.bot_reason(chrome) == ""
    assert fraud.bot_reason("") == ""
    info = fraud._bot_match.cache_info()
    assert (info.hits, info.misses) == (1, 3)
    assert fraud.bot_reason(googlebot, enabled=False) == ""


RULES = fraud.ConversionRules(self_referral_email=True, min_click_seconds=30, ip_max_promoters=2, ip_window_seconds=3600)


def facts(event_id, *, credited=(1,), customer="c", email="", click_at=None, ip="", at=None, merchant=1, amount_minor=None):
    return fraud.ConversionFacts(
        event_id=event_id,
        merchant_id=merchant,
        occurred_at=at or s(1000),
        customer_id=customer,
        payload_email=email,
        amount_minor=amount_minor,
        credited=credited,
        last_click_at=click_at,
        last_click_ip=ip,
        click_ips=frozenset({ip} - {""}),
    )


def test_self_referral_by_email_is_case_insensitive_and_reads_the_payload():
    emails = {1: "Anna@Example.com", 2: "bob@example.com"}
    reasons = fraud.conversion_reasons(
        [
            facts(10, customer=" anna@example.COM "),
            facts(11, customer="cust-7", email="BOB@example.com", credited=(1, 2)),
            facts(12, customer="bob@example.com", credited=(1,)),  # bob is not credited
        ],
        emails=emails,
        history=[],
        rules_of=defaultdict(lambda: RULES),
    )
    assert reasons == {
        10: ("self_referral", "self-referral: the customer is promoter 1 (Anna@Example.com)"),
        11: ("self_referral", "self-referral: the customer is promoter 2 (bob@example.com)"),
    }


def test_fast_click_to_conversion():
    reasons = fraud.conversion_reasons(
        [facts(20, click_at=s(1000 - 29.5)), facts(21, click_at=s(1000 - 30)), facts(22, click_at=None)],
        emails={},
        history=[],
        rules_of=defaultdict(lambda: RULES),
    )
    assert reasons == {20: ("fast_conversion", "click to conversion in 29.5s, under 30s")}


def test_one_ip_behind_many_promoters_counts_history_and_the_batch_in_order():
    # Already behind ip1 within the hour: promoters 1 and 2 (3 is too old, 4 another
    # merchant's). Event 30 (promoter 3): 2 promoters, not more than 2 → earns, and counts.
    # Event 31 (promoter 5): 1, 2, 3 → flagged, and does not count. Event 32 on ip2: earns.
    history = [
        fraud.IpConversion("ip1", 1, s(1000 - 3000), 1),
        fraud.IpConversion("ip1", 1, s(1000 - 10), 2),
        fraud.IpConversion("ip1", 1, s(1000 - 3601), 3),
        fraud.IpConversion("ip1", 2, s(1000 - 10), 4),
    ]
    reasons = fraud.conversion_reasons(
        [
            facts(31, credited=(5,), ip="ip1", at=s(1001)),
            facts(30, credited=(3,), ip="ip1"),
            facts(32, credited=(6,), ip="ip2"),
        ],
        emails={},
        history=history,
        rules_of=defaultdict(lambda: RULES),
    )
    assert reasons == {31: ("shared_ip", "one IP behind the conversions of 3 promoters within 3600s (more than 2)")}


def test_rules_off_flag_nothing():
    off = fraud.ConversionRules(self_referral_email=False)
    assert not off.any
    assert fraud.conversion_reasons(
        [facts(1, customer="a@x.com", click_at=s(999), ip="ip1")], emails={1: "a@x.com"}, history=[], rules_of=defaultdict(lambda: off)
    ) == {}


def test_an_order_above_max_order_amount_is_flagged_and_the_rules_come_from_the_terms():
    # The program's terms as stored with each event: max_order_amount 5000.00 USD, the
    # fast-conversion rule at 30 s; the defaults for an event stored before programs had rules.
    terms = {"currency": "USD", "fraud": {"max_order_amount": "5000.00", "min_click_to_conversion_seconds": 30}}
    rules = fraud.ConversionRules.from_terms(terms)
    assert rules == fraud.ConversionRules(
        self_referral_email=True, min_click_seconds=30, ip_max_promoters=0, ip_window_seconds=0, max_order_minor=500000
    )
    assert fraud.ConversionRules.from_terms({"currency": "USD"}) == fraud.ConversionRules(self_referral_email=True)
    reasons = fraud.conversion_reasons(
        [facts(40, amount_minor=500001), facts(41, amount_minor=500000), facts(42, amount_minor=None)],
        emails={},
        history=[],
        rules_of=defaultdict(lambda: rules),
    )
    assert reasons == {40: ("order_amount", "order of 5000.01 above the program's max_order_amount of 5000.00")}
    jpy = fraud.ConversionRules.from_terms({"currency": "JPY", "fraud": {"max_order_amount": "100000"}})
    assert jpy.max_order_minor == 100000
