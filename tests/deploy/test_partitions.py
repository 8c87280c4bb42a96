"""Clicks and conversion events partitioned by month on PostgreSQL (affiliate/partitions.py):
the migration's partitions, rows landing in their month, the scheduled job creating months
ahead (and refusing a month whose rows sit in the default partition), the event ids that
tell their month, and the event keys that keep what must be unique unique across months."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test import override_settings

from affiliate import partitions, services
from affiliate.models import Click, ConversionEvent, EventKey, uuid7
from affiliate.tasks import ensure_partitions
from tests.realservices import needs_postgres

pytestmark = [pytest.mark.postgres, needs_postgres]

CLICKS, EVENTS = partitions.CLICKS, partitions.EVENTS


def this_month() -> date:
    return partitions.month_start(datetime.now(UTC))


def month_names(table: str, first: date, count: int) -> list[str]:
    return [partitions.partition_name(table, partitions.add_months(first, n)) for n in range(count)]


def partition_of(table: str, pk) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT tableoid::regclass::text FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_month_arithmetic_and_bounds():
    assert partitions.add_months(date(2026, 11, 1), 3) == date(2027, 2, 1)
    assert partitions.add_months(date(2027, 1, 1), -1) == date(2026, 12, 1)
    assert partitions.event_id_floor(date(2026, 12, 1)) == 2026120000000000
    assert partitions.event_id_month(2026120000000042) == date(2026, 12, 1)
    assert partitions.event_id_month(41) is None  # an event from before the scheme
    # A UUIDv7 of the first millisecond of December 2026 (1796083200000 ms) is the bound itself
    floor = partitions.click_id_floor(date(2026, 12, 1))
    assert floor == uuid.UUID(int=1796083200000 << 80)
    assert str(floor) == "01a22ee6-b000-0000-0000-000000000000"
    first = uuid7(datetime(2026, 12, 1, tzinfo=UTC))
    assert floor < first < partitions.click_id_floor(date(2027, 1, 1))
    assert uuid7(datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=UTC)) < floor


def test_the_migration_left_both_tables_partitioned_by_month(db):
    ahead = 3  # PARTITION_MONTHS_AHEAD when the test database was migrated
    assert partitions.is_partitioned(CLICKS) and partitions.is_partitioned(EVENTS)
    clicks, events = partitions.partitions(CLICKS), partitions.partitions(EVENTS)
    assert sorted(clicks) == sorted([f"{CLICKS}_default", *month_names(CLICKS, this_month(), ahead + 1)])
    assert sorted(events) == sorted([f"{EVENTS}_before", f"{EVENTS}_default", *month_names(EVENTS, this_month(), ahead + 1)])
    month = this_month()
    low, high = partitions.event_id_floor(month), partitions.event_id_floor(partitions.add_months(month, 1))
    assert events[partitions.partition_name(EVENTS, month)] == f"FOR VALUES FROM ('{low}') TO ('{high}')"
    assert events[f"{EVENTS}_before"] == "FOR VALUES FROM (MINVALUE) TO ('2000010000000000')"
    assert clicks[f"{CLICKS}_default"] == "DEFAULT"
    # The foreign keys to the two tables are still there, on the partitioned tables
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f' AND conparentid = 0 AND confrelid IN (%s::regclass, %s::regclass) ORDER BY 1, 2",
            [CLICKS, EVENTS],
        )
        assert cursor.fetchall() == [
            (CLICKS.replace("click", "conversionevent"), CLICKS),
            (EVENTS, EVENTS),  # a refund's purchase
            ("affiliate_customervisitor", CLICKS),
            ("affiliate_eventkey", EVENTS),
            ("attribution_credit", EVENTS),
            ("attribution_touchpoint", CLICKS),
            ("attribution_touchpoint", EVENTS),
            ("payouts_basis", EVENTS),
            ("payouts_commission", EVENTS),
        ]


def test_a_click_lands_in_the_partition_of_its_month_and_one_without_a_partition_in_the_default(link):
    target = services.link_target(link.code)
    now = services.click_record(target=target, visitor_id=None)
    assert partition_of(CLICKS, now.id) == partitions.partition_name(CLICKS, this_month())
    assert partitions.partition_name(CLICKS, partitions.month_start(now.created_at)) == partition_of(CLICKS, now.id)
    later = services.click_record(target=target, visitor_id=None, at=datetime(2031, 5, 17, 9, 30, tzinfo=UTC))
    assert partition_of(CLICKS, later.id) == f"{CLICKS}_default"
    assert Click.objects.filter(link=link).count() == 2


def test_an_event_id_tells_the_month_it_was_received_and_the_event_sits_in_that_partition(api, link):
    r = api.post("/api/v1/events/", {"type": "purchase", "customer_id": "c-1", "order_id": "o-1", "amount": "10.00"}, format="json")
    assert r.status_code == 201, r.content
    event_id = r.json()["id"]
    assert partitions.event_id_month(event_id) == this_month()
    assert event_id < 2**53  # what JSON readers in JavaScript hold exactly
    assert partition_of(EVENTS, event_id) == partitions.partition_name(EVENTS, this_month())
    assert api.get(f"/api/v1/events/{event_id}/").json()["id"] == event_id


def test_the_job_creates_the_months_ahead_once(db):
    start = date(2032, 1, 1)
    outcomes = partitions.ensure(ahead=2, today=date(2032, 1, 20))
    assert [(o.table, o.month, o.state) for o in outcomes] == [
        (table, partitions.add_months(start, n), "created") for table in (CLICKS, EVENTS) for n in range(3)
    ]
    assert partitions.partitions(CLICKS)[f"{CLICKS}_y2032m02"] == (
        "FOR VALUES FROM ('01c829cd-3000-0000-0000-000000000000') TO ('01c8bf25-9c00-0000-0000-000000000000')"
    )
    assert partitions.partitions(EVENTS)[f"{EVENTS}_y2032m03"] == (
        "FOR VALUES FROM ('2032030000000000') TO ('2032040000000000')"
    )
    again = partitions.ensure(ahead=2, today=date(2032, 1, 1))
    assert [o.state for o in again] == ["present"] * 6
    assert str(again[0]) == f"{CLICKS}_y2032m01: present"


def test_a_month_whose_rows_sit_in_the_default_partition_is_reported_not_created(link):
    target = services.link_target(link.code)
    stray = services.click_record(target=target, visitor_id=None, at=datetime(2033, 4, 2, tzinfo=UTC))
    before = partitions.partitions(CLICKS)
    outcomes = partitions.ensure(ahead=1, today=date(2033, 3, 5))
    assert [str(o) for o in outcomes] == [
        f"{CLICKS}_y2033m03: created",
        f"{CLICKS}_y2033m04: blocked (1 rows of that month are in {CLICKS}_default; move them to create it)",
        f"{EVENTS}_y2033m03: created",
        f"{EVENTS}_y2033m04: created",
    ]
    assert set(partitions.partitions(CLICKS)) - set(before) == {f"{CLICKS}_y2033m03"}
    assert partition_of(CLICKS, stray.id) == f"{CLICKS}_default"


def test_the_command_creates_and_lists_and_fails_on_a_blocked_month(link):
    out = io.StringIO()
    call_command("partitions", "--ahead", "0", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[:2] == [
        f"{CLICKS}_y{this_month().year}m{this_month().month:02d}: present",
        f"{EVENTS}_y{this_month().year}m{this_month().month:02d}: present",
    ]
    assert lines[2] == f"{CLICKS}:" and lines[3].startswith(f"  {CLICKS}_default ")
    assert f"  {EVENTS}_before" in out.getvalue()
    with pytest.raises(CommandError, match="--ahead must be between 0 and 120"):
        call_command("partitions", "--ahead", "121", stdout=io.StringIO())
    # The last month ahead gone (as if the job had not run), and a click of that month made
    # meanwhile: it went to the default partition, and the month cannot be created now
    last = partitions.add_months(this_month(), 3)
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE {CLICKS} DETACH PARTITION "{partitions.partition_name(CLICKS, last)}"')
        cursor.execute(f'DROP TABLE "{partitions.partition_name(CLICKS, last)}"')
    services.click_record(target=services.link_target(link.code), visitor_id=None, at=datetime(last.year, last.month, 2, tzinfo=UTC))
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"^1 partition\(s\) could not be created; see above\.$"):
        call_command("partitions", "--ahead", "3", stdout=out)
    assert f"{partitions.partition_name(CLICKS, last)}: blocked (1 rows of that month are in {CLICKS}_default; move them to create it)" in out.getvalue().splitlines()
    assert partitions.partition_name(CLICKS, last) not in partitions.partitions(CLICKS)


def test_the_scheduled_task_reports_each_month(db):
    with override_settings(PARTITION_MONTHS_AHEAD=1):
        assert ensure_partitions() == [
            f"{table}_y{month.year}m{month.month:02d}: present"
            for table in (CLICKS, EVENTS)
            for month in (this_month(), partitions.add_months(this_month(), 1))
        ]


def test_event_keys_are_written_with_the_event_and_refuse_a_twin_in_any_month(api, merchant, link):
    r = api.post(
        "/api/v1/events/",
        {"type": "purchase", "customer_id": "c-9", "order_id": "o-9", "amount": "25.00"},
        format="json",
        headers={"Idempotency-Key": "idem-9"},
    )
    assert r.status_code == 201, r.content
    event = ConversionEvent.objects.get(pk=r.json()["id"])
    assert sorted(EventKey.objects.filter(event=event).values_list("merchant_id", "kind", "key", "refund_id")) == [
        (merchant.pk, "idempotency", "idem-9", ""),
        (merchant.pk, "purchase", "o-9", ""),
    ]
    # A copy of the event in next month's partition still cannot take the order's key
    twin_id = partitions.event_id_floor(partitions.add_months(this_month(), 1)) + 7
    twin = ConversionEvent.objects.get(pk=event.pk)
    twin.pk = twin_id
    twin.idempotency_key = None
    twin.save(force_insert=True)
    assert partition_of(EVENTS, twin_id) == partitions.partition_name(EVENTS, partitions.add_months(this_month(), 1))
    with pytest.raises(IntegrityError), transaction.atomic():
        EventKey.objects.bulk_create(EventKey.of(twin))
    assert EventKey.objects.filter(event_id=twin_id).count() == 0
    # And through the API the repeat is answered as one, the first event's
    r = api.post("/api/v1/events/", {"type": "purchase", "customer_id": "c-9", "order_id": "o-9", "amount": "25.00"}, format="json")
    assert (r.status_code, r.json()["id"]) == (200, event.pk)


def test_the_migration_goes_back_to_plain_tables_and_forth_again_keeping_every_row(api, link):
    """``unconvert`` then ``convert`` (the migration's two directions) on a database with
    traffic: the same rows, the same foreign keys under the same names, partitioned again."""
    target = services.link_target(link.code)
    click = services.click_record(target=target, visitor_id=None)
    for payload in (
        {"type": "registration", "customer_id": "c-5", "click_id": click.id.hex},
        {"type": "purchase", "customer_id": "c-5", "order_id": "o-5", "amount": "80.00"},
        {"type": "refund", "customer_id": "c-5", "order_id": "o-5", "amount": "30.00"},
    ):
        assert api.post("/api/v1/events/", payload, format="json").status_code == 201

    def state():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT conrelid::regclass::text, conname FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 "
                "AND confrelid IN (%s::regclass, %s::regclass) ORDER BY 1, 2",
                [CLICKS, EVENTS],
            )
            keys = cursor.fetchall()
        events = list(ConversionEvent.objects.order_by("id").values_list("id", "type", "amount_minor", "purchase_id"))
        return keys, events, list(Click.objects.values_list("id", flat=True)), EventKey.objects.count()

    before = state()
    assert len(before[1]) == 3 and before[3] == 3
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # this test's own writes are checked now, not at its end
    with connection.schema_editor() as editor:
        partitions.unconvert(editor, EVENTS)
        partitions.unconvert(editor, CLICKS)
    assert not partitions.is_partitioned(CLICKS) and not partitions.is_partitioned(EVENTS)
    assert state() == before
    with connection.schema_editor() as editor:
        partitions.convert(editor, CLICKS)
        partitions.convert(editor, EVENTS)
    assert partitions.is_partitioned(CLICKS) and partitions.is_partitioned(EVENTS)
    assert state() == before
    assert {partition_of(EVENTS, pk) for pk, *_ in before[1]} == {partitions.partition_name(EVENTS, this_month())}
    # And it still works: a new event gets the month's id, and a repeat is still refused
    r = api.post("/api/v1/events/", {"type": "purchase", "customer_id": "c-5", "order_id": "o-6", "amount": "5.00"}, format="json")
    assert r.status_code == 201 and partitions.event_id_month(r.json()["id"]) == this_month()
    r = api.post("/api/v1/events/", {"type": "purchase", "customer_id": "c-5", "order_id": "o-5", "amount": "80.00"}, format="json")
    assert (r.status_code, r.json()["id"]) == (200, before[1][1][0])
