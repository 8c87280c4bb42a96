"""Click floods and known bots through ``services.click_record`` (the redirect's path when
there is no spool): on SQLite through the ORM, on PostgreSQL in its one statement."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from affiliate import services
from affiliate.models import Click

from .conftest import set_rules

pytestmark = pytest.mark.django_db

GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
VISITOR_FLOOD = "click flood: more than 2 clicks by one visitor on this link within 60s"
IP_FLOOD = "click flood: more than 2 clicks by one IP on this link within 60s"


def flags():
    return [(c.is_fraud, c.flag_reason) for c in Click.objects.order_by("created_at", "id")]


def test_a_visitor_flood_flags_the_clicks_past_the_limit(fraud_rules, link):
    # Clicks at 0, 10, 20, 30, 75 and 200 s: 20 and 30 have 2 and 3 before them within 60 s,
    # 75 has those at 20 and 30; 200 none. A new IP each time: only the visitor floods.
    target, visitor, t0 = services.link_target(link.code), uuid.uuid4(), timezone.now() - timedelta(hours=1)
    returned = [
        services.click_record(target=target, visitor_id=visitor, ip=f"198.51.100.{n}", user_agent=FIREFOX, at=t0 + timedelta(seconds=t))
        for n, t in enumerate((0, 10, 20, 30, 75, 200))
    ]
    expected = [(False, ""), (False, ""), (True, VISITOR_FLOOD), (True, VISITOR_FLOOD), (True, VISITOR_FLOOD), (False, "")]
    assert flags() == expected
    assert [(c.is_fraud, c.flag_reason) for c in returned] == expected


def test_an_ip_flood_across_new_visitors(fraud_rules, link, promoter):
    # Five new browsers behind one IP, 5 s apart: the third, fourth and fifth are flagged.
    # The same IP on another link of the promoter counts apart.
    target, t0 = services.link_target(link.code), timezone.now() - timedelta(hours=1)
    for t in (0, 5, 10, 15, 20):
        services.click_record(target=target, visitor_id=None, ip="203.0.113.7", user_agent=FIREFOX, at=t0 + timedelta(seconds=t))
    other = services.link_create(merchant=link.merchant, promoter=promoter, destination_url="https://shop.example.com/")
    services.click_record(
        target=services.link_target(other.code), visitor_id=None, ip="203.0.113.7", user_agent=FIREFOX, at=t0 + timedelta(seconds=25)
    )
    assert flags() == [(False, ""), (False, ""), (True, IP_FLOOD), (True, IP_FLOOD), (True, IP_FLOOD), (False, "")]


def test_a_known_bot_is_flagged_through_the_redirect(fraud_rules, link):
    response = Client().get(f"/r/{link.code}", HTTP_USER_AGENT=GOOGLEBOT, REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 302  # the bot is answered as anyone, and its click earns nothing
    human = Client().get(f"/r/{link.code}", HTTP_USER_AGENT=FIREFOX, REMOTE_ADDR="203.0.113.10")
    assert human.status_code == 302
    assert sorted(Click.objects.values_list("user_agent", "is_fraud", "flag_reason")) == [
        (FIREFOX, False, ""),
        (GOOGLEBOT, True, "known bot: Googlebot"),
    ]


def test_a_fraud_reason_wins_over_a_duplicate(fraud_rules, link):
    # A 3600 s duplicate window: the second click is a duplicate; the third is also the
    # visitor's flood, and its reason says so.
    link.program.duplicate_click_seconds = 3600
    link.program.save()
    target, visitor, t0 = services.link_target(link.code), uuid.uuid4(), timezone.now() - timedelta(hours=1)
    for t in (0, 1, 2):
        services.click_record(target=target, visitor_id=visitor, ip="", user_agent=FIREFOX, at=t0 + timedelta(seconds=t))
    assert list(Click.objects.order_by("created_at").values_list("is_duplicate", "is_fraud", "flag_reason")) == [
        (False, False, ""),
        (True, False, "repeat click within 3600s"),
        (True, True, VISITOR_FLOOD),
    ]


def test_rules_off_flag_nothing(link):
    set_rules(link.program, click_flood_max=0, bots=False)
    target, visitor, t0 = services.link_target(link.code), uuid.uuid4(), timezone.now() - timedelta(hours=1)
    for t in range(4):
        services.click_record(target=target, visitor_id=visitor, ip="203.0.113.7", user_agent=GOOGLEBOT, at=t0 + timedelta(seconds=t))
    assert flags() == [(False, "")] * 4


def test_each_program_has_its_own_click_rules(fraud_rules, link, merchant):
    # The same bot and the same flood on a second program of the merchant whose rules are
    # off: its clicks are clean, while the first program's are flagged.
    from tests.factories import LinkFactory, ProgramFactory, PromoterFactory

    relaxed = set_rules(ProgramFactory(merchant=merchant, name="Relaxed"), bots=False, click_flood_max=0)
    other = LinkFactory(promoter=PromoterFactory(program=relaxed, email="ben@example.com"), destination_url="https://shop.example.com/")
    t0 = timezone.now() - timedelta(hours=1)
    for code in (link.code, other.code):
        target = services.link_target(code)
        for t in range(3):
            services.click_record(target=target, visitor_id=None, ip="203.0.113.8", user_agent=GOOGLEBOT, at=t0 + timedelta(seconds=t))
    assert sorted(Click.objects.values_list("program_id", "is_fraud", "flag_reason")) == sorted(
        [(link.program_id, True, "known bot: Googlebot")] * 3 + [(relaxed.pk, False, "")] * 3
    )
