"""The embedded default under concurrent writers: SQLite, tasks inline, a real threaded server.

Two gunicorn processes of eight threads each serve one SQLite file (``make run``'s defaults:
no DATABASE_URL, no REDIS_URL). Ten identical postbacks, fifteen new purchases and fifteen
refunds arrive at once; afterwards every event is processed exactly once, with the
commissions worked out by hand, and ``audit_ledger`` is clean.

The program is the default one: first purchase 10%, override level 1 5%. Anna (coupon
ANNA10) sells under Sam. A 40.00 order with her coupon: Anna 4.00, Sam 2.00. A 10.00 refund
of such an order reverses a quarter: Anna -1.00, Sam -0.50.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from tests.realservices import BASE_DIR, free_port, wait_for

pytestmark = pytest.mark.xdist_group("sqlite-server")


def _env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "DJANGO_", "PYTEST"))}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", DEBUG="1", SQLITE_PATH=str(db), PYTHONUNBUFFERED="1")
    return env


def at_once(calls: list) -> list:
    """Run the calls in threads released together; their results in order (no database here:
    the server's)."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index, call):
        barrier.wait()
        results[index] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _manage(db: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=BASE_DIR, env=_env(db), capture_output=True, text=True, timeout=300
    )


class Client:
    def __init__(self, base: str, key: str):
        self.base, self.key = base, key

    def call(self, method: str, path: str, payload: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(
            self.base + path,
            data=None if payload is None else json.dumps(payload).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def sqlite_server(tmp_path):
    db = tmp_path / "db.sqlite3"
    migrated = _manage(db, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    created = _manage(db, "create_merchant", "--name", "Acme", "--domain", "shop.example.com")
    assert created.returncode == 0, created.stderr
    credentials = json.loads(created.stdout)
    port = free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "-b", f"127.0.0.1:{port}", "-w", "2", "-k", "gthread",
         "--threads", "8", "--timeout", "120"],
        cwd=BASE_DIR, env=_env(db), stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            urllib.request.urlopen(base + "/api/v1/schema/", timeout=2)
            return True
        except OSError:  # not listening yet, or slow to answer on a loaded machine
            return False

    try:
        wait_for(up, timeout=60)
        yield db, base, credentials, tmp_path / "server.log"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_concurrent_postbacks_purchases_and_refunds_are_processed_once(sqlite_server):
    db, base, credentials, log_path = sqlite_server
    api = Client(base, credentials["api_key"])
    status, program = api.call("POST", "/api/v1/programs/", {"name": "Default"})
    assert status == 201
    status, sam = api.call("POST", "/api/v1/promoters/", {"email": "sam@example.com", "name": "Sam", "program": program["id"]})
    assert status == 201
    status, anna = api.call(
        "POST", "/api/v1/promoters/",
        {"email": "anna@example.com", "name": "Anna", "program": program["id"], "sponsor": sam["id"], "coupon_code": "ANNA10"},
    )
    assert status == 201
    # Fifteen orders first, so that their refunds can arrive with the rest.
    for i in range(15):
        status, body = api.call(
            "POST", "/api/v1/events/",
            {"type": "purchase", "customer_id": f"old-{i}", "order_id": f"O-{i}", "amount": "40.00", "coupon": "ANNA10"},
        )
        assert (status, body["status"]) == (201, "processed")

    token = credentials["postback_token"]
    repeat = f"/postback/{token}?type=purchase&customer_id=dup&order_id=D-1&amount=40.00&coupon=ANNA10"
    calls = [lambda: api.call("GET", repeat) for _ in range(10)]
    calls += [
        (lambda i=i: api.call(
            "POST", "/api/v1/events/",
            {"type": "purchase", "customer_id": f"new-{i}", "order_id": f"N-{i}", "amount": "40.00", "coupon": "ANNA10"},
        ))
        for i in range(15)
    ]
    calls += [
        (lambda i=i: api.call("GET", f"/postback/{token}?type=refund&customer_id=old-{i}&order_id=O-{i}&amount=10.00"))
        for i in range(15)
    ]
    answers = at_once(calls)

    statuses = Counter(status for status, _ in answers)
    assert statuses == {201: 31, 200: 9}, answers
    assert len({body["id"] for _, body in answers[:10]}) == 1
    log = log_path.read_text()
    assert "database is locked" not in log

    # Every event processed (inline right after its commit, or by the in-process retry).
    def all_processed():
        status, page = api.call("GET", "/api/v1/events/?page_size=100")
        return page if status == 200 and all(e["status"] == "processed" for e in page["results"]) else None

    page = wait_for(all_processed, timeout=60)
    assert page["count"] == 46
    assert Counter(e["type"] for e in page["results"]) == {"purchase": 31, "refund": 15}
    for event in page["results"]:
        amounts = sorted((c["promoter"], c["kind"], c["level"], c["amount"]) for c in event["commissions"])
        if event["type"] == "purchase":
            assert amounts == sorted([(anna["id"], "direct", 0, "4.00"), (sam["id"], "override", 1, "2.00")])
        else:
            assert amounts == sorted([(anna["id"], "reversal", 0, "-1.00"), (sam["id"], "reversal", 1, "-0.50")])
    assert api.call("GET", f"/api/v1/promoters/{anna['id']}/balance/") == (
        200, {"currency": "USD", "pending": "109.00", "available": "0.00", "paid": "0.00"}
    )
    assert api.call("GET", f"/api/v1/promoters/{sam['id']}/balance/") == (
        200, {"currency": "USD", "pending": "54.50", "available": "0.00", "paid": "0.00"}
    )
    audit = _manage(db, "audit_ledger")
    assert audit.returncode == 0, audit.stdout + audit.stderr
