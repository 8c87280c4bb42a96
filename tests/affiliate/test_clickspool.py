"""The click spool (CLICK_SPOOL_DIR): the redirect appends its click to a local file, a
flusher stores the files in batches. PostgreSQL only, as the spool itself."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection
from django.test import Client

from affiliate import clickspool
from affiliate.models import Click, ConversionEvent, CustomerVisitor, Visitor, uuid7
from affiliate.services import hash_ip
from tests.factories import LinkFactory
from tests.realservices import BASE_DIR, database_url_in_use, needs_postgres

pytestmark = [pytest.mark.postgres, needs_postgres]

UTC = dt.UTC


@pytest.fixture
def spool_dir(tmp_path, settings):
    settings.CLICK_SPOOL_DIR = str(tmp_path / "spool")
    settings.CLICK_SPOOL_FLUSH_SECONDS = 3600  # tests flush by hand unless they say otherwise
    clickspool.reset()
    yield tmp_path / "spool"
    clickspool.reset()


def click_id_from(location: str) -> str:
    return location.rsplit("aff_click=", 1)[1]


def spooled_row(
    link, *, visitor: uuid.UUID, new: bool, at: dt.datetime, click: uuid.UUID | None = None, window: int = 0
):
    return [
        (click or uuid7(at)).hex,  # as the spool writes it: the id of its created_at
        visitor.hex,
        1 if new else 0,
        link.pk,
        link.merchant_id,
        link.program_id,
        link.promoter_id,
        int((at - dt.datetime(1970, 1, 1, tzinfo=UTC)) / dt.timedelta(microseconds=1)),
        "UA",
        "",
        "",
        "",
        "",
        "",
        "",
        "",
        window,
    ]


@pytest.mark.django_db
def test_the_redirect_spools_the_click_and_the_flush_stores_it_exactly(spool_dir, link):
    response = Client().get(
        f"/r/{link.code}?sub1=a&sub5=e",
        HTTP_USER_AGENT="Mozilla/5.0 test",
        HTTP_REFERER="https://blog.example.org/post",
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 302
    click_hex = click_id_from(response["Location"])
    assert response["Location"] == f"https://shop.example.com/p/1?color=red&aff_click={click_hex}"
    visitor_id = uuid.UUID(response.cookies["aff_vid"].value)
    # Answered, spooled, not yet stored.
    assert Click.objects.count() == 0 and Visitor.objects.count() == 0
    assert len(clickspool.pending_files(spool_dir)) == 1

    clickspool.spool().rotate()
    assert clickspool.flush_directory(spool_dir) == 1
    assert clickspool.pending_files(spool_dir) == []
    click = Click.objects.get()
    assert click.id.hex == click_hex and click.id.version == 7
    assert click.visitor_id == visitor_id
    assert Visitor.objects.get().pk == visitor_id
    assert (click.link_id, click.promoter_id, click.program_id, click.merchant_id) == (
        link.pk,
        link.promoter_id,
        link.program_id,
        link.merchant_id,
    )
    assert (click.user_agent, click.referrer, click.ip_hash) == (
        "Mozilla/5.0 test",
        "https://blog.example.org/post",
        hash_ip("203.0.113.9"),
    )
    assert [click.sub1, click.sub2, click.sub3, click.sub4, click.sub5] == ["a", "", "", "", "e"]
    assert (click.is_fraud, click.is_duplicate, click.flag_reason) == (False, False, "")
    # created_at to the microsecond of when it was spooled, and the id's own millisecond.
    assert abs(click.created_at.timestamp() * 1000 - (click.id.int >> 80)) < 5


@pytest.mark.django_db
def test_a_file_being_written_is_not_flushed_until_rotated(spool_dir, link):
    Client().get(f"/r/{link.code}")
    assert clickspool.flush_directory(spool_dir) == 0  # the writer holds its open segment
    assert Click.objects.count() == 0
    assert clickspool.spool().rotate() is True
    assert clickspool.spool().rotate() is False  # nothing written since
    assert clickspool.flush_directory(spool_dir) == 1
    assert Click.objects.count() == 1


@pytest.mark.django_db
def test_a_flusher_never_sees_a_new_segment_before_its_writer_locks_it(spool_dir, link, monkeypatch):
    """Another process's flusher scanning the directory between the segment's creation and
    its lock must not find it (unlocked and empty, it would delete it, and the clicks
    written next would go into a file nobody can see)."""
    real_flock = clickspool.fcntl.flock
    scans = []

    def flock_after_a_scan(fd, operation):
        if operation == clickspool.fcntl.LOCK_EX:  # the writer locking its new segment
            scans.append(sorted(p.name for p in spool_dir.iterdir()))
            clickspool.flush_directory(spool_dir)
        return real_flock(fd, operation)

    monkeypatch.setattr(clickspool.fcntl, "flock", flock_after_a_scan)
    response = Client().get(f"/r/{link.code}")
    monkeypatch.setattr(clickspool.fcntl, "flock", real_flock)
    assert len(scans) == 1 and len(scans[0]) == 1 and scans[0][0].endswith(".new")
    assert clickspool.spool().rotate() is True
    assert clickspool.flush_directory(spool_dir) == 1
    assert Click.objects.get().id.hex == click_id_from(response["Location"])


@pytest.mark.django_db
def test_storing_a_batch_twice_stores_it_once(link):
    visitor = uuid.uuid4()
    base = dt.datetime(2026, 11, 20, 12, tzinfo=UTC)
    rows = [
        spooled_row(link, visitor=visitor, new=i == 0, at=base + dt.timedelta(seconds=i), window=60) for i in range(3)
    ]
    clickspool.store(rows)
    clickspool.store(rows)
    stored = list(Click.objects.order_by("created_at").values_list("is_duplicate", "flag_reason"))
    assert stored == [(False, ""), (True, "repeat click within 60s"), (True, "repeat click within 60s")]
    assert Visitor.objects.filter(pk=visitor).count() == 1
    assert Visitor.objects.get(pk=visitor).first_seen_at == base


@pytest.mark.django_db
def test_duplicates_do_not_depend_on_the_order_files_are_stored(link, promoter):
    """The same visitor's clicks spooled by two processes can reach the database in either
    order; the flags end up as if stored in click order."""
    other_link = LinkFactory(promoter=promoter, destination_url="https://shop.example.com/")
    visitor = uuid.uuid4()
    base = dt.datetime(2026, 11, 20, 12, tzinfo=UTC)
    first = spooled_row(link, visitor=visitor, new=False, at=base, window=60)
    second = spooled_row(link, visitor=visitor, new=False, at=base + dt.timedelta(seconds=59), window=60)
    third = spooled_row(link, visitor=visitor, new=False, at=base + dt.timedelta(seconds=121), window=60)
    elsewhere = spooled_row(other_link, visitor=visitor, new=False, at=base + dt.timedelta(seconds=1), window=60)
    clickspool.store([third])
    clickspool.store([second, elsewhere])
    clickspool.store([first])
    flags = {c.id.hex: (c.is_duplicate, c.flag_reason) for c in Click.objects.all()}
    assert flags == {
        first[0]: (False, ""),
        second[0]: (True, "repeat click within 60s"),  # 59 s after the first
        third[0]: (False, ""),  # 62 s after the second: outside the window
        elsewhere[0]: (False, ""),  # another link
    }


@pytest.mark.django_db
def test_window_zero_and_new_visitors_never_make_duplicates(link):
    visitor = uuid.uuid4()
    base = dt.datetime(2026, 11, 20, 12, tzinfo=UTC)
    clickspool.store(
        [
            spooled_row(link, visitor=visitor, new=True, at=base, window=0),
            spooled_row(link, visitor=visitor, new=False, at=base + dt.timedelta(seconds=1), window=0),
        ]
    )
    assert list(Click.objects.values_list("is_duplicate", flat=True)) == [False, False]


@pytest.mark.django_db
def test_a_failed_store_keeps_the_file_and_writes_nothing(spool_dir, link):
    Client().get(f"/r/{link.code}")
    clickspool.spool().rotate()

    def fail_on_the_last_statement(execute, sql, params, many, context):
        if sql.startswith("UPDATE"):  # the visitors and clicks are inserted by then
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(fail_on_the_last_statement), pytest.raises(OperationalError):
        clickspool.flush_directory(spool_dir)
    assert Click.objects.count() == 0 and Visitor.objects.count() == 0
    assert len(clickspool.pending_files(spool_dir)) == 1
    assert clickspool.flush_directory(spool_dir) == 1
    assert Click.objects.count() == 1


@pytest.mark.django_db
def test_a_cut_last_line_is_skipped_and_the_rest_stored(spool_dir, link):
    visitor = uuid.uuid4()
    row = spooled_row(link, visitor=visitor, new=True, at=dt.datetime(2026, 11, 20, tzinfo=UTC))
    spool_dir.mkdir()
    import json

    (spool_dir / f"host-1-1-1{clickspool.SUFFIX}").write_bytes((json.dumps(row) + "\n" + '["abc", "de').encode())
    assert clickspool.flush_directory(spool_dir) == 1
    assert list(Click.objects.values_list("id", flat=True)) == [uuid.UUID(row[0])]
    assert clickspool.pending_files(spool_dir) == []


@pytest.mark.django_db
def test_flush_clicks_command(spool_dir, link, capsys):
    Client().get(f"/r/{link.code}")
    Client().get(f"/r/{link.code}")
    call_command("flush_clicks")
    assert capsys.readouterr().out == "0 clicks stored; 1 spool files still held by running processes.\n"
    clickspool.spool().rotate()
    call_command("flush_clicks")
    assert capsys.readouterr().out == "2 clicks stored; 0 spool files still held by running processes.\n"
    assert Click.objects.count() == 2


WRITER = """
import os, sys, django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()
from affiliate import clickspool
from affiliate.services import LinkTarget
target = LinkTarget(*[int(x) for x in sys.argv[1:5]], "https://shop.example.com/", 0)
click_id, visitor_id = clickspool.record(target=target, visitor_id=None, ip="", user_agent="killed", referrer="", subs={})
print(click_id.hex, flush=True)
sys.stdin.read()  # wait to be killed, holding the open segment
"""


@pytest.mark.django_db(transaction=True)
def test_the_clicks_of_a_killed_process_are_flushed_by_another(spool_dir, link):
    env = dict(
        os.environ,
        DATABASE_URL=database_url_in_use(),
        CLICK_SPOOL_DIR=str(spool_dir),
        CLICK_SPOOL_FLUSH_SECONDS="3600",
        DEBUG="1",
    )
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            str(link.pk),
            str(link.merchant_id),
            str(link.program_id),
            str(link.promoter_id),
        ],
        cwd=BASE_DIR,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        click_hex = writer.stdout.readline().strip()
        assert len(click_hex) == 32
        assert clickspool.flush_directory(spool_dir) == 0  # its writer is alive and holds it
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert clickspool.flush_directory(spool_dir) == 1
    click = Click.objects.get()
    assert (click.id.hex, click.user_agent) == (click_hex, "killed")


@pytest.mark.django_db(transaction=True)
def test_the_flusher_thread_stores_clicks_within_its_interval(spool_dir, link, settings):
    settings.CLICK_SPOOL_FLUSH_SECONDS = 0.05
    clickspool.reset()
    response = Client().get(f"/r/{link.code}")
    click_hex = click_id_from(response["Location"])
    deadline = time.monotonic() + 10
    while not Click.objects.filter(pk=uuid.UUID(click_hex)).exists():
        assert time.monotonic() < deadline, "the flusher thread never stored the click"
        time.sleep(0.02)
    clickspool.reset()
    assert clickspool.pending_files(spool_dir) == []


@pytest.mark.django_db(transaction=True)
def test_an_event_waits_for_its_click_still_in_the_spool(spool_dir, link, merchant, settings):
    settings.CLICK_SPOOL_WAIT_SECONDS = 10
    response = Client().get(f"/r/{link.code}")
    click_hex = click_id_from(response["Location"])
    visitor_id = uuid.UUID(response.cookies["aff_vid"].value)
    clickspool.spool().rotate()

    def flush_later():
        time.sleep(0.3)
        clickspool.flush_directory(spool_dir)

    flusher = threading.Thread(target=flush_later)
    flusher.start()
    api = Client(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")
    answer = api.post(
        "/api/v1/events/",
        {"type": "registration", "customer_id": "c-1", "click_id": click_hex},
        content_type="application/json",
    )
    flusher.join()
    assert answer.status_code == 201, answer.content
    assert answer.json()["warnings"] == []
    event = ConversionEvent.objects.get()
    assert event.click_id == uuid.UUID(click_hex)
    assert list(CustomerVisitor.objects.values_list("visitor_id", flat=True)) == [visitor_id]


@pytest.mark.django_db
def test_an_old_unknown_click_is_not_waited_for(spool_dir, link, settings, api, monkeypatch):
    settings.CLICK_SPOOL_WAIT_SECONDS = 5
    old = uuid.UUID(int=((int(time.time() * 1000) - 60_000) << 80) | (0x7 << 76) | (0b10 << 62) | 12345)
    waited = []
    real_sleep = time.sleep
    monkeypatch.setattr(clickspool.time, "sleep", lambda s: (waited.append(s), real_sleep(s)))
    answer = api.post(
        "/api/v1/events/", {"type": "registration", "customer_id": "c-2", "click_id": old.hex}, format="json"
    )
    assert answer.status_code == 201
    assert [w["code"] for w in answer.json()["warnings"]] == ["unknown_click_id"]
    assert waited == []  # a minute old: long stored if it ever existed
    assert ConversionEvent.objects.get().click_id is None
