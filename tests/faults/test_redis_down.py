"""Redis (cache and Celery broker) stopped: the tracking redirect still answers and stores
its click, events are still accepted and stored queued, and once Redis is back they are
credited, each exactly once."""

from __future__ import annotations

import pytest
import redis
from django.core.cache import cache
from rest_framework.test import APIClient

from affiliate.models import Click, ConversionEvent, Customer
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

WORKER_ENV = {"EVENT_DRAINER_LEASE_SECONDS": "2", "EVENT_DRAINER_LINGER_SECONDS": "0.3"}


def processed(event_id: int) -> bool:
    return ConversionEvent.objects.filter(pk=event_id, status="processed").exists()


def test_with_redis_stopped_clicks_and_events_are_kept_and_credited_once_it_is_back(
    transactional_db, merchant, anna, bob, anna_link
):
    redis_server = RedisServer()
    redis_server.start()
    broker = redis_server.url()
    worker = CeleryWorker(database_url=database_url_in_use(), broker_url=broker, env=WORKER_ENV)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")
    try:
        with celery_publishing_to(broker):
            worker.start()
            worker.wait_until_ready()
            # Given a worker crediting events through this Redis
            r = api.post(
                "/api/v1/events/",
                {"type": "purchase", "customer_id": "up-1", "order_id": "U-1", "amount": "50.00", "coupon": "ANNA10"},
                format="json",
            )
            assert r.status_code == 201, r.content
            assert wait_for(lambda: processed(r.json()["id"])), worker.log()
            # (and its drainer, idle, has given its lease back: a drainer at work when Redis
            # goes fails on its lease, leaving its events queued for the next one)
            assert wait_for(lambda: cache.get("events:drainer:0") is None), worker.log()

            # When Redis stops
            redis_server.stop()
            with pytest.raises(redis.exceptions.ConnectionError):
                cache.get("events:drainer:0")

            # Then the tracking redirect still answers and stores its click
            r = api.get("/r/annablog")
            assert r.status_code == 302
            click_id = r["Location"].rsplit("aff_click=", 1)[1]
            assert r["Location"] == f"https://shop.example.com/p/1?aff_click={click_id}"
            click = Click.objects.get()
            assert (click.id.hex, click.link_id, click.promoter_id) == (click_id, anna_link.pk, anna.pk)

            # And events are accepted and stored, queued
            accepted = []
            for payload in (
                {"type": "registration", "customer_id": "down-1", "click_id": click_id},
                {"type": "purchase", "customer_id": "down-1", "order_id": "D-1", "amount": "120.00"},
                {"type": "purchase", "customer_id": "down-1", "order_id": "D-2", "amount": "30.00"},
            ):
                r = api.post("/api/v1/events/", payload, format="json")
                assert r.status_code == 201, r.content
                accepted.append((r.json()["id"], r.json()["stage"], r.json()["status"]))
            assert [(stage, status) for _, stage, status in accepted] == [
                ("registration", "queued"), ("first_purchase", "queued"), ("repeat_purchase", "queued"),
            ]  # fmt: skip
            assert list(ConversionEvent.objects.filter(status="queued").order_by("id").values_list("id", "attempts")) == [
                (event_id, 0) for event_id, *_ in accepted
            ]
            assert Commission.objects.filter(event__customer__external_id="down-1").count() == 0

            # When Redis is back (empty: no lease, no message survived), the next event starts
            # a drainer, which credits the waiting ones too
            redis_server.start()
            r = api.post(
                "/api/v1/events/",
                {"type": "purchase", "customer_id": "down-1", "order_id": "D-3", "amount": "10.00"},
                format="json",
            )
            assert r.status_code == 201, r.content
            assert r.json()["stage"] == "repeat_purchase"
            drained = wait_for(lambda: not ConversionEvent.objects.filter(status="queued").exists(), timeout=60)
            assert drained, f"events left queued; worker log:\n{worker.log()}"

        # Then each was credited once: the click binds down-1 to Anna's link; 3.00 for the
        # registration, 10% of the first purchase, 5% of the repeat ones, 5% to Bob on purchases
        assert_processed_once(5)
        assert list(Customer.objects.order_by("id").values_list("external_id", "stage")) == [
            ("up-1", "first_purchase"), ("down-1", "repeat_purchaser"),
        ]  # fmt: skip
        assert list(
            Commission.objects.order_by("event_id", "id").values_list("event__type", "event__order_id", "promoter__name", "kind", "level", "amount_minor")
        ) == [
            ("purchase", "U-1", "Anna", "direct", 0, 500),
            ("purchase", "U-1", "Bob", "override", 1, 250),
            ("registration", "", "Anna", "bounty", 0, 300),
            ("purchase", "D-1", "Anna", "direct", 0, 1200),
            ("purchase", "D-1", "Bob", "override", 1, 600),
            ("purchase", "D-2", "Anna", "direct", 0, 150),
            ("purchase", "D-2", "Bob", "override", 1, 150),
            ("purchase", "D-3", "Anna", "direct", 0, 50),
            ("purchase", "D-3", "Bob", "override", 1, 50),
        ]
        # No task failed (the worker only lost its broker for a while)
        assert "raised unexpected" not in worker.log(), worker.log()
    finally:
        worker.close()
        redis_server.close()
