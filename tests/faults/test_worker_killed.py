"""A Celery worker killed (SIGKILL) in the middle of a backlog: the batch it was crediting
rolls back with it, its drainer's lease lapses, and another worker credits every event
exactly once."""

from __future__ import annotations

import os
import signal
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.test import override_settings
from rest_framework.test import APIClient

from affiliate.models import ConversionEvent
from payouts.models import Commission
from tests.faults.conftest import assert_processed_once
from tests.realservices import (
    CeleryWorker,
    RedisServer,
    celery_publishing_to,
    database_url_in_use,
    needs_postgres,
    needs_redis,
    needs_redis_server,
    wait_for,
)

pytestmark = [
    pytest.mark.postgres, pytest.mark.redis, needs_postgres, needs_redis, needs_redis_server,
    pytest.mark.xdist_group("faults"),
]  # fmt: skip

EVENTS = 200
LEASE_SECONDS = 2
# Small batches so that the backlog takes many transactions, and a quick lease.
WORKER_ENV = {
    "EVENT_BATCH_SIZE": "5",
    "EVENT_DRAINERS": "1",
    "EVENT_DRAINER_LEASE_SECONDS": str(LEASE_SECONDS),
    "EVENT_DRAINER_LINGER_SECONDS": "0.3",
}


def amount(i: int) -> Decimal:
    return Decimal(10 + i)  # 10.00, 11.00, ... 209.00


def test_a_worker_killed_mid_backlog_leaves_every_event_to_the_next_one_once(transactional_db, merchant, anna, bob):
    redis_server = RedisServer()
    redis_server.start()
    broker = redis_server.url()
    database_url = database_url_in_use()
    first = CeleryWorker(database_url=database_url, broker_url=broker, env=WORKER_ENV)
    second = CeleryWorker(database_url=database_url, broker_url=broker, env=WORKER_ENV)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")
    try:
        with celery_publishing_to(broker), override_settings(EVENT_DRAINER_LEASE_SECONDS=LEASE_SECONDS):
            # Given a backlog of purchases, each by a new customer with Anna's coupon, and no worker yet
            for i in range(EVENTS):
                r = api.post(
                    "/api/v1/events/",
                    {"type": "purchase", "customer_id": f"kill-{i}", "order_id": f"K-{i}", "amount": f"{amount(i)}.00",
                     "coupon": "ANNA10"},
                    format="json",
                )  # fmt: skip
                assert r.status_code == 201, r.content
                assert (r.json()["stage"], r.json()["status"]) == ("first_purchase", "queued")
            assert ConversionEvent.objects.filter(status="queued").count() == EVENTS

            # When a worker starts crediting them and is killed once some but not all are done
            first.start()
            done = wait_for(lambda: ConversionEvent.objects.filter(status="processed").count() >= 20, interval=0.01)
            assert done, f"the first worker processed nothing; its log:\n{first.log()}"
            os.killpg(first.process.pid, signal.SIGKILL)
            first.process.wait(timeout=10)
            processed_by_first = ConversionEvent.objects.filter(status="processed").count()
            assert 20 <= processed_by_first < EVENTS, first.log()
            # (what it was in the middle of rolled back: a processed event has all its commissions)
            assert Commission.objects.count() == 2 * processed_by_first

            # Then its lease lapses, and with another worker the next event starts a drainer
            second.start()
            second.wait_until_ready()
            assert wait_for(lambda: cache.get("events:drainer:0") is None, timeout=LEASE_SECONDS + 5), "the lease did not lapse"
            r = api.post(
                "/api/v1/events/",
                {"type": "purchase", "customer_id": "kill-0", "order_id": "K-next", "amount": "40.00", "coupon": "ANNA10"},
                format="json",
            )
            assert r.status_code == 201, r.content
            assert r.json()["stage"] == "repeat_purchase"
            everything = wait_for(lambda: not ConversionEvent.objects.filter(status="queued").exists(), timeout=60)
            assert everything, f"events left queued; the second worker's log:\n{second.log()}"
            assert "Traceback" not in second.log(), second.log()

        # Each event was credited once: Anna 10% of a first purchase (5% of the repeat one),
        # Bob 5% as her sponsor
        assert_processed_once(EVENTS + 1)
        expected = []
        for i in range(EVENTS):
            cents = 100 * amount(i)
            expected += [(f"K-{i}", "Anna", "direct", 0, int(cents / 10)), (f"K-{i}", "Bob", "override", 1, int(cents / 20))]
        expected += [("K-next", "Anna", "direct", 0, 200), ("K-next", "Bob", "override", 1, 200)]
        got = list(
            Commission.objects.order_by("event_id", "id").values_list("event__order_id", "promoter__name", "kind", "level", "amount_minor")
        )
        assert got == expected
        # The backlog's orders add up to 10.00 + 11.00 + ... + 209.00 = 21,900.00: Anna earned
        # 2,190.00 on them and Bob 1,095.00, and 2.00 each on the repeat purchase
        totals = {name: sum(a for _, n, *_, a in got if n == name) for name in ("Anna", "Bob")}
        assert totals == {"Anna": 219000 + 200, "Bob": 109500 + 200}
    finally:
        first.close()
        second.close()
        redis_server.close()
