"""Click floods and known bots through the click spool's set-based flush: the same flags as
``services.click_record`` gives one click at a time, whatever order the files arrive in.
PostgreSQL only, as the spool itself."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from affiliate import clickspool, services
from affiliate.models import Click, uuid7
from tests.fraud.test_clicks import FIREFOX, GOOGLEBOT, IP_FLOOD, VISITOR_FLOOD
from tests.realservices import needs_postgres

pytestmark = [pytest.mark.postgres, needs_postgres, pytest.mark.django_db]


def row(link, *, visitor, at, new=False, ip="", ua=FIREFOX, window=0):
    micros = int((at - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) / dt.timedelta(microseconds=1))
    return [
        uuid7(at).hex, visitor.hex, 1 if new else 0, link.pk, link.merchant_id, link.program_id, link.promoter_id, micros,
        ua, "", services.hash_ip(ip), "", "", "", "", "", window,
    ]


def flags():
    return [(c.is_fraud, c.flag_reason) for c in Click.objects.order_by("created_at", "id")]


def test_a_visitor_flood_in_one_batch(fraud_rules, link):
    visitor, t0 = uuid.uuid4(), timezone.now() - timedelta(hours=1)
    rows = [row(link, visitor=visitor, at=t0 + timedelta(seconds=t), ip=f"198.51.100.{n}") for n, t in enumerate((0, 10, 20, 30, 75, 200))]
    clickspool.store(rows[::-1])  # the order of the lines does not matter
    assert flags() == [(False, ""), (False, ""), (True, VISITOR_FLOOD), (True, VISITOR_FLOOD), (True, VISITOR_FLOOD), (False, "")]


def test_files_in_the_wrong_order_flag_the_stored_clicks_they_precede(fraud_rules, link):
    # The later file (30, 75, 200 s) reaches the database first: alone, nothing in it is a
    # flood. The earlier file (0, 10, 20 s) then turns 20, 30 and 75 into floods: the same
    # as one click at a time.
    visitor, t0 = uuid.uuid4(), timezone.now() - timedelta(hours=1)
    rows = [row(link, visitor=visitor, at=t0 + timedelta(seconds=t), ip=f"198.51.100.{n}") for n, t in enumerate((0, 10, 20, 30, 75, 200))]
    clickspool.store(rows[3:])
    assert flags() == [(False, "")] * 3
    clickspool.store(rows[:3])
    assert flags() == [(False, ""), (False, ""), (True, VISITOR_FLOOD), (True, VISITOR_FLOOD), (True, VISITOR_FLOOD), (False, "")]
    clickspool.store(rows)  # stored again (a flusher retrying): nothing changes
    assert flags() == [(False, ""), (False, ""), (True, VISITOR_FLOOD), (True, VISITOR_FLOOD), (True, VISITOR_FLOOD), (False, "")]


def test_an_ip_flood_and_a_bot_in_the_spool(fraud_rules, link):
    # A click stored by click_record at -1 s, then new visitors behind the same IP at 0, 5,
    # 10 and 15 s in one batch: the -1 s click counts, so 5, 10 and 15 s are floods. A bot
    # from another IP at 7 s is flagged as a bot.
    t0 = timezone.now() - timedelta(hours=1)
    services.click_record(
        target=services.link_target(link.code), visitor_id=None, ip="203.0.113.7", user_agent=FIREFOX, at=t0 - timedelta(seconds=1)
    )
    clickspool.store(
        [row(link, visitor=uuid.uuid4(), new=True, at=t0 + timedelta(seconds=t), ip="203.0.113.7") for t in (0, 5, 10, 15)]
        + [row(link, visitor=uuid.uuid4(), new=True, at=t0 + timedelta(seconds=7), ip="192.0.2.1", ua=GOOGLEBOT)]
    )
    assert flags() == [
        (False, ""),  # -1 s, stored by click_record
        (False, ""),  # 0 s
        (True, IP_FLOOD),  # 5 s
        (True, "known bot: Googlebot"),  # 7 s
        (True, IP_FLOOD),  # 10 s
        (True, IP_FLOOD),  # 15 s
    ]


def test_a_cleared_click_stays_cleared_when_a_late_file_arrives(fraud_rules, link):
    from affiliate import fraud

    visitor, t0 = uuid.uuid4(), timezone.now() - timedelta(hours=1)
    rows = [row(link, visitor=visitor, at=t0 + timedelta(seconds=t)) for t in (0, 10, 20, 30)]
    clickspool.store(rows[1:])  # 10, 20, 30: the 30 s click is flagged
    flagged = Click.objects.get(is_fraud=True)
    assert fraud.clicks_clear(click_ids=[flagged.pk], by="fin") == 1
    clickspool.store(rows[:1])  # 0 s arrives late: 20 s is now a flood; 30 s stays cleared
    got = list(Click.objects.order_by("created_at").values_list("is_fraud", "flag_reason", "cleared_by"))
    assert got == [(False, "", ""), (False, "", ""), (True, VISITOR_FLOOD, ""), (False, VISITOR_FLOOD, "fin")]


def test_programs_with_other_rules_in_one_batch_are_each_judged_by_their_own(fraud_rules, link, merchant):
    # The same visitor floods a link of the strict program (2 clicks in 60 s) and a link of a
    # relaxed one (flood rule and bots off) in one batch: only the strict program's third and
    # fourth clicks are floods, and only its bot is flagged.
    from tests.factories import LinkFactory, ProgramFactory, PromoterFactory

    from .conftest import set_rules

    relaxed = set_rules(ProgramFactory(merchant=merchant, name="Relaxed"), bots=False, click_flood_max=0)
    other = LinkFactory(promoter=PromoterFactory(program=relaxed, email="ben@example.com"), destination_url="https://shop.example.com/")
    visitor, t0 = uuid.uuid4(), timezone.now() - timedelta(hours=1)
    rows = [row(target, visitor=visitor, at=t0 + timedelta(seconds=t)) for target in (link, other) for t in (0, 1, 2, 3)]
    rows += [row(target, visitor=uuid.uuid4(), new=True, at=t0 + timedelta(seconds=9), ua=GOOGLEBOT) for target in (link, other)]
    clickspool.store(rows)
    got = sorted(Click.objects.values_list("program_id", "created_at", "is_fraud", "flag_reason"))
    strict = [(link.program_id, t0 + timedelta(seconds=t), t >= 2, VISITOR_FLOOD if t >= 2 else "") for t in (0, 1, 2, 3)]
    strict.append((link.program_id, t0 + timedelta(seconds=9), True, "known bot: Googlebot"))
    loose = [(relaxed.pk, t0 + timedelta(seconds=t), False, "") for t in (0, 1, 2, 3, 9)]
    assert got == sorted(strict + loose)
