"""A real Celery worker on a real Redis credits the events the API commits (a drainer takes
them off the event table), and the sweep re-queues an event no drainer was started for."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import redis
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from affiliate import events
from affiliate.models import ConversionEvent, Customer
from tests.realservices import (
    WORKER_REDIS_DB,
    CeleryWorker,
    celery_publishing_to,
    database_url_in_use,
    needs_postgres,
    needs_redis,
    point_broker_at,
    redis_url,
    redis_url_with_db,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis, needs_postgres, needs_redis]

# Nothing listens on port 1: publishing there fails at once, like a broker that is down.
DEAD_BROKER = "redis://127.0.0.1:1/0"


def processed(event_id: int):
    return ConversionEvent.objects.filter(pk=event_id, status="processed").first()


def test_worker_processes_events_and_the_sweep_requeues_a_lost_one(transactional_db, merchant, program):
    broker = redis_url_with_db(redis_url(), WORKER_REDIS_DB)
    broker_db = redis.Redis.from_url(broker)
    broker_db.flushdb()  # this database is the test's own: no message from an earlier run
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")
    # A drainer that gives its lease back soon after the queue empties
    worker = CeleryWorker(database_url=database_url_in_use(), broker_url=broker, env={"EVENT_DRAINER_LINGER_SECONDS": "0.3"})
    try:
        with celery_publishing_to(broker):
            worker.start()
            worker.wait_until_ready()

            # Given a worker, when a purchase is posted, the answer is 201 and still queued
            r = api.post(
                "/api/v1/events/",
                {"type": "purchase", "customer_id": "cust-w1", "order_id": "W-1", "amount": "120.00"},
                format="json",
            )
            assert r.status_code == 201, r.content
            body = r.json()
            assert (body["type"], body["stage"], body["status"], body["amount"]) == (
                "purchase", "first_purchase", "queued", "120.00",
            )  # fmt: skip

            # Then the worker processes it, once
            event = wait_for(lambda: processed(body["id"]))
            assert event is not None, f"event {body['id']} was not processed; worker log:\n{worker.log()}"
            assert (event.type, event.stage, event.status, event.amount_minor, event.order_id, event.attempts) == (
                "purchase", "first_purchase", "processed", 12000, "W-1", 1,
            )  # fmt: skip
            assert event.processed_at is not None
            read = api.get(f"/api/v1/events/{body['id']}/").json()
            assert (read["id"], read["status"], read["attribution"], read["commissions"]) == (
                body["id"], "processed", [], [],
            )  # fmt: skip

            # And the drainer gives its lease back once the queue is empty
            assert wait_for(lambda: cache.get("events:drainer:0") is None), worker.log()

            # Given the broker is unreachable when the next purchase arrives
            with point_broker_at(DEAD_BROKER):
                r = api.post(
                    "/api/v1/events/",
                    {"type": "purchase", "customer_id": "cust-w1", "order_id": "W-2", "amount": "30.00"},
                    format="json",
                )
            # Then the event is recorded all the same, and waits queued
            assert r.status_code == 201, r.content
            lost_id = r.json()["id"]
            assert (r.json()["stage"], r.json()["status"]) == ("repeat_purchase", "queued")
            lost = ConversionEvent.objects.get(pk=lost_id)
            assert (lost.status, lost.attempts, lost.processed_at) == ("queued", 0, None)
            assert broker_db.llen("events") == 0, "the lost event's message reached the broker after all"
            assert cache.get("events:drainer:0") is None, "a lease was left for a drainer that was never started"
            ConversionEvent.objects.filter(pk=lost_id).update(received_at=timezone.now() - timedelta(hours=1))

            # When the sweep runs, it queues exactly that event again, and the worker processes it
            assert events.requeue_stale_events(older_than_seconds=0) == 1
            event = wait_for(lambda: processed(lost_id))
            assert event is not None, f"event {lost_id} was not processed after the sweep; worker log:\n{worker.log()}"
            assert (event.type, event.stage, event.status, event.amount_minor, event.order_id, event.attempts) == (
                "purchase", "repeat_purchase", "processed", 3000, "W-2", 1,
            )  # fmt: skip
            # A second sweep finds nothing left
            assert events.requeue_stale_events(older_than_seconds=0) == 0
            assert list(ConversionEvent.objects.order_by("id").values_list("order_id", "status", "attempts")) == [
                ("W-1", "processed", 1),
                ("W-2", "processed", 1),
            ]
            assert list(Customer.objects.values_list("external_id", "stage")) == [("cust-w1", "repeat_purchaser")]
            # Both were processed by the worker, not in this process: the first by a drainer,
            # the second by the sweep's batch, each once
            log = worker.log()
            assert len(re.findall(r"Task affiliate\.drain_events\[[0-9a-f-]+\] received", log)) == 1, log
            assert len(re.findall(r"Task affiliate\.drain_events\[[0-9a-f-]+\] succeeded in .*: 1$", log, re.M)) == 1, log
            assert len(re.findall(r"Task affiliate\.process_events\[[0-9a-f-]+\] received", log)) == 1, log
            assert len(re.findall(r"Task affiliate\.process_events\[[0-9a-f-]+\] succeeded in .*: 1$", log, re.M)) == 1, log
            assert "Traceback" not in log, log
    finally:
        worker.close()
        broker_db.flushdb()
        broker_db.close()
