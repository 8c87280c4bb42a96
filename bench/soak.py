#!/usr/bin/env python
"""Soak benchmark: mixed traffic at a steady rate for a long while, nothing lost, no leak.

Runs gunicorn (bench/gunicorn.conf.py) and a Celery worker on a fresh PostgreSQL database
and a Redis of its own (a ``redis-server`` on a free port, unless ``--redis`` names one),
seeds a merchant with a small sponsor tree and a link per promoter, then drives a steady,
open-loop mix of requests for ``--duration`` seconds (default 600):

* clicks on ``/r/<code>`` (new visitors, and returning ones with their ``aff_vid`` cookie),
  each visitor from an address of its own (``X-Forwarded-For``);
* registrations of new customers naming a click (201);
* purchases (201): a returning customer's next order, or a guest's first with a click, some
  under an ``Idempotency-Key``;
* refunds (201): a whole order (no ``refund_id``) or a part of it (with one);
* repeats (200): a registration, purchase or refund sent again, byte for byte (with its
  ``Idempotency-Key`` when it had one).

Every request has one expected status; anything else counts as an error (there must be
none). It then reports the throughput of each kind, the latency of each, the resident
memory (RSS, from /proc) of every gunicorn and Celery process at the start and the end of
the traffic and its peak, waits for the queue to drain, and checks that every event is
processed exactly once and that ``audit_ledger`` finds the ledger clean.
See bench/README.md, "Soak".

    .venv/bin/python bench/soak.py [--duration 600] [--rate 30] ...
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import Proc, cpu_model, free_port, log, percentile, recreate_database, wait_drained, wait_http

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "bench" / "gunicorn.conf.py"

KINDS = ("click", "registration", "purchase", "refund", "repeat")
EXPECTED = {"click": 302, "registration": 201, "purchase": 201, "refund": 201, "repeat": 200}
DEFAULT_MIX = "click=45,registration=10,purchase=25,refund=8,repeat=12"
TIER_RATES = ["0.05", "0.03"]


# --- Processes and memory ---------------------------------------------------------------


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Memory:
    """RSS of each process of gunicorn (master, workers) and Celery (main, pool children),
    sampled at the start, every few seconds, and at the end."""

    def __init__(self, roots: dict[str, int], warm_after: float):
        self.roots = roots
        self.started = time.monotonic()
        self.warm_after = warm_after
        self.first: dict[str, int] = {}
        self.warm: dict[str, int] = {}  # once the first requests have filled the caches
        self.last: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def processes(self) -> dict[str, int]:
        named = {}
        for name, pid in self.roots.items():
            named[f"{name} {pid}"] = pid
            for n, child in enumerate(children(pid)):
                named[f"{name} {'worker' if name == 'gunicorn' else 'child'} {n + 1} ({child})"] = child
        return named

    def sample(self) -> None:
        for name, pid in self.processes().items():
            kib = rss_kib(pid)
            if kib is None:
                continue
            self.first.setdefault(name, kib)
            if time.monotonic() - self.started >= self.warm_after:
                self.warm.setdefault(name, kib)
            self.last[name] = kib
            self.peak[name] = max(self.peak.get(name, 0), kib)


# --- Traffic ----------------------------------------------------------------------------


@dataclass
class Request:
    kind: str
    method: str
    path: str
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    on_done: object = None  # called with (status, headers, body) when the status is the expected one


@dataclass
class Tally:
    sent: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    ok: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    latency: dict = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: dict = field(default_factory=dict)  # "kind status" -> count
    samples: list = field(default_factory=list)  # a few unexpected answers, to show
    max_lag: float = 0.0


class Traffic:
    """The generator's state: what it has seen answered, to build the next requests on."""

    def __init__(self, *, api_key: str, codes: list[str], rng: random.Random, mix: dict[str, int]):
        self.api_key, self.codes, self.rng = api_key, codes, rng
        self.kinds, self.weights = list(mix), list(mix.values())
        self.lock = threading.Lock()
        self.visitors: list[tuple[str, str]] = []  # (aff_vid, address)
        self.fresh_clicks: list[str] = []  # click ids not yet named by an event
        self.customers: list[str] = []  # customers with an accepted event
        self.orders: list[tuple[str, str, int]] = []  # (customer, order, cents) not yet refunded
        self.done: list[Request] = []  # accepted events, to repeat
        self.n = 0

    def _next_id(self) -> int:
        self.n += 1
        return self.n

    def _event(self, kind: str, payload: dict, on_done, key: str | None = None) -> Request:
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        request = Request(kind, "POST", "/api/v1/events/", json.dumps(payload).encode(), headers)

        def done(status, response_headers, body):
            with self.lock:
                self.done.append(request)
            on_done(status, response_headers, body)

        request.on_done = done
        return request

    def next(self) -> Request:
        with self.lock:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            if kind == "registration" and not self.fresh_clicks:
                kind = "click"
            if kind == "refund" and not self.orders:
                kind = "purchase"
            if kind == "repeat" and not self.done:
                kind = "click"
            return getattr(self, f"_{kind}")()

    def _click(self) -> Request:
        headers = {}
        if self.visitors and self.rng.random() < 0.3:
            vid, address = self.rng.choice(self.visitors)
            headers["Cookie"] = f"aff_vid={vid}"
        else:
            vid, n = None, self._next_id()
            address = f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
        headers["X-Forwarded-For"] = address
        code = self.rng.choice(self.codes)

        def done(status, response_headers, body):
            click = response_headers.get("location", "").rsplit("aff_click=", 1)[-1]
            cookie = response_headers.get("set-cookie", "")
            visitor = cookie.split("aff_vid=", 1)[1].split(";", 1)[0] if "aff_vid=" in cookie else vid
            with self.lock:
                if vid is None and visitor:
                    self.visitors.append((visitor, address))
                self.fresh_clicks.append(click)

        return Request("click", "GET", f"/r/{code}?sub1=soak", headers=headers, on_done=done)

    def _registration(self) -> Request:
        customer = f"soak-c{self._next_id()}"
        click = self.fresh_clicks.pop(self.rng.randrange(len(self.fresh_clicks)))

        def done(status, headers, body):
            with self.lock:
                self.customers.append(customer)

        return self._event("registration", {"type": "registration", "customer_id": customer, "click_id": click}, done)

    def _purchase(self) -> Request:
        order = f"soak-o{self._next_id()}"
        payload = {"type": "purchase", "order_id": order}
        if self.customers and self.rng.random() < 0.5:
            customer = self.rng.choice(self.customers)
        else:
            customer = f"soak-c{self._next_id()}"
            if self.fresh_clicks:
                payload["click_id"] = self.fresh_clicks.pop(self.rng.randrange(len(self.fresh_clicks)))
        cents = self.rng.randint(500, 50000)
        payload.update(customer_id=customer, amount=f"{cents / 100:.2f}")
        key = f"soak-k{self.n}" if self.rng.random() < 0.2 else None

        def done(status, headers, body):
            with self.lock:
                self.customers.append(customer)
                self.orders.append((customer, order, cents))

        return self._event("purchase", payload, done, key)

    def _refund(self) -> Request:
        customer, order, cents = self.orders.pop(self.rng.randrange(len(self.orders)))
        payload = {"type": "refund", "customer_id": customer, "order_id": order}
        if self.rng.random() < 0.5:  # a part, under a refund id
            payload.update(refund_id="R1", amount=f"{self.rng.randint(1, cents - 1) / 100:.2f}")
        return self._event("refund", payload, lambda *_: None)

    def _repeat(self) -> Request:
        original = self.rng.choice(self.done)
        return Request("repeat", original.method, original.path, original.body, original.headers, lambda *_: None)


def drive(port: int, traffic: Traffic, *, rate: float, duration: float, connections: int, tally: Tally,
          memory: Memory) -> float:
    """Open loop: request *i* is due at ``start + i / rate`` whatever the server does; a pool
    of threads with a keep-alive connection each sends them (the wait for a free one counts
    in the latency). A request is built when it is due, from what has been answered so far."""
    due: queue.Queue = queue.Queue()
    stop = object()

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while (item := due.get()) is not stop:
            request, slot = item
            try:
                conn.request(request.method, request.path, body=request.body or None, headers=request.headers)
                response = conn.getresponse()
                body = response.read()
                status, headers = response.status, {k.lower(): v for k, v in response.getheaders()}
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                status, headers, body = -1, {}, type(exc).__name__.encode()
            elapsed = time.perf_counter() - slot
            with traffic.lock:
                tally.latency[request.kind].append(elapsed)
                if status == EXPECTED[request.kind]:
                    tally.ok[request.kind] += 1
                else:
                    name = f"{request.kind} {status}"
                    tally.errors[name] = tally.errors.get(name, 0) + 1
                    if len(tally.samples) < 5:
                        tally.samples.append(f"{request.method} {request.path} {request.body[:200]!r} -> {status} {body[:300]!r}")
            if status == EXPECTED[request.kind]:
                request.on_done(status, headers, body)
        conn.close()

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    interval, i, next_sample = 1.0 / rate, 0, started
    while True:
        slot = started + i * interval
        if slot - started >= duration:
            break
        delay = slot - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        else:
            tally.max_lag = max(tally.max_lag, -delay)
        request = traffic.next()
        tally.sent[request.kind] += 1
        due.put((request, slot))
        i += 1
        if time.perf_counter() >= next_sample:
            memory.sample()
            next_sample += 5
    for _ in threads:
        due.put(stop)
    for thread in threads:
        thread.join(60)
    return time.perf_counter() - started


# --- Seed and checks --------------------------------------------------------------------


def seed(*, roots: int, fanout: int) -> tuple[str, list[str], int]:
    """A merchant, a program paying two upline levels, ``roots`` sponsors with ``fanout``
    recruits each and ``fanout`` below each of those, and a link per promoter."""
    from affiliate.services import link_create
    from merchants.services import merchant_create, program_create
    from promoters.services import promoter_create

    creds = merchant_create(name="Soak shop", domains=["shop.example.com"])
    merchant = creds.merchant
    program = program_create(merchant=merchant, name="Soak", tier_rates=TIER_RATES, registration_bounty="1.50")
    promoters = []

    def promoter(sponsor):
        n = len(promoters) + 1
        made = promoter_create(merchant=merchant, email=f"p{n}@example.com", name=f"Promoter {n}", program=program, sponsor=sponsor)
        promoters.append(made)
        return made

    for _ in range(roots):
        top = promoter(None)
        for _ in range(fanout):
            middle = promoter(top)
            for _ in range(fanout):
                promoter(middle)
    codes = [
        link_create(merchant=merchant, promoter=p, destination_url="https://shop.example.com/p/1", channel="soak").code
        for p in promoters
    ]
    return creds.api_key, codes, len(promoters)


def ledger_checks() -> dict:
    from django.db import connection
    from django.db.models import Count

    from affiliate.models import Click, ConversionEvent
    from payouts.audit import audit_ledger
    from payouts.models import Commission

    by_status = dict(ConversionEvent.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    report = audit_ledger()
    result = {
        "clicks": Click.objects.count(),
        "events": sum(by_status.values()),
        "by_type": dict(ConversionEvent.objects.values_list("type").annotate(n=Count("id")).values_list("type", "n")),
        "processed": by_status.get("processed", 0),
        "queued": by_status.get("queued", 0),
        "not_once": ConversionEvent.objects.exclude(attempts=1).count(),
        "commissions": Commission.objects.count(),
        "audit_clean": report.clean,
        "audit_events": report.events,
        "differences": report.differences[:20],
    }
    connection.close()
    return result


# --- Main -------------------------------------------------------------------------------


def parse_mix(text: str) -> dict[str, int]:
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in KINDS:
            raise SystemExit(f"--mix: unknown kind {name!r} (one of {', '.join(KINDS)})")
        mix[name.strip()] = int(weight)
    return mix


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600, help="seconds of traffic (default 600)")
    parser.add_argument("--rate", type=float, default=30, help="requests/s offered, all kinds together (default 30)")
    parser.add_argument("--mix", default=DEFAULT_MIX, help=f"weights of the kinds (default {DEFAULT_MIX})")
    parser.add_argument("--connections", type=int, default=16, help="the generator's keep-alive connections (default 16)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--worker-threads", type=int, default=4, help="gunicorn gthread threads per worker (default 4)")
    parser.add_argument("--celery-concurrency", type=int, default=2, help="Celery prefork processes (default 2)")
    parser.add_argument("--roots", type=int, default=3, help="top sponsors (default 3)")
    parser.add_argument("--fanout", type=int, default=3, help="recruits per sponsor, two levels (default 3)")
    parser.add_argument("--seed", type=int, default=7, help="random seed of the traffic")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL (no database)")
    parser.add_argument("--db-name", default="bench_soak", help="database to (re)create (default bench_soak)")
    parser.add_argument("--redis", help="REDIS_URL to use (its database is flushed); default: a redis-server of its own")
    parser.add_argument("--drain-timeout", type=float, default=300, help="seconds to wait for the queue to drain (default 300)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    mix = parse_mix(args.mix)

    workdir = Path(os.environ.get("BENCH_WORKDIR") or tempfile.mkdtemp(prefix="bench-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    own_redis = None
    if args.redis:
        redis_url = args.redis
    else:
        binary = shutil.which("redis-server")
        if not binary:
            raise SystemExit("redis-server not found: install it or pass --redis URL")
        redis_port = free_port()
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
        own_redis = Proc(
            "redis", [binary, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            dict(os.environ), workdir / "redis.log",
        )  # fmt: skip
        own_redis.start()

    port = free_port()
    database_url = f"{args.pg.rstrip('/')}/{args.db_name}"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        SECRET_KEY="bench-" + secrets.token_hex(32),
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        TRUSTED_PROXY_COUNT="1",  # each visitor's address comes in X-Forwarded-For
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS=str(args.workers),
        GUNICORN_WORKER_CLASS="gthread",
        GUNICORN_THREADS=str(args.worker_threads),
        LOG_LEVEL="WARNING",
        # No periodic sweep runs here: an event left queued shows up as lost.
        EVENT_REQUEUE_AFTER_SECONDS="3600",
    )

    log(f"Database {database_url}: recreating and migrating")
    recreate_database(args.pg, args.db_name)
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True)
    if migrate.returncode != 0:
        log(migrate.stdout + migrate.stderr)
        return 1
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS")})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import redis
    from django.db import connections

    redis.Redis.from_url(redis_url).flushdb()
    api_key, codes, promoters = seed(roots=args.roots, fanout=args.fanout)
    with connections["default"].cursor() as cursor:
        cursor.execute("ANALYZE")
    connections.close_all()

    gunicorn = Proc(
        "gunicorn", [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "config.wsgi:application"], env, workdir / "gunicorn.log"
    )
    celery = Proc(
        "celery",
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "events,default", "-P", "prefork",
         "-c", str(args.celery_concurrency), "--without-gossip", "--without-mingle", "--without-heartbeat",
         "-l", "warning", "-n", f"bench-soak-{port}@%h"],
        env, workdir / "celery.log",
    )  # fmt: skip
    tally = Tally()
    traffic = Traffic(api_key=api_key, codes=codes, rng=random.Random(args.seed), mix=mix)
    failed = False
    try:
        log(f"Starting gunicorn on 127.0.0.1:{port} and a Celery worker (logs in {workdir})")
        gunicorn.start()
        celery.start()
        wait_http(port, gunicorn)
        time.sleep(2)  # the Celery worker's pool up
        memory = Memory({"gunicorn": gunicorn.pid, "celery": celery.pid}, warm_after=min(30.0, args.duration / 4))
        memory.sample()
        log(f"Driving {args.rate:g} requests/s for {args.duration:.0f} s ({args.mix})")
        elapsed = drive(port, traffic, rate=args.rate, duration=args.duration, connections=args.connections, tally=tally, memory=memory)
        memory.sample()
        drained, drain_seconds = wait_drained(args.drain_timeout)
        failed = not drained
    finally:
        gunicorn.stop()
        celery.stop(timeout=60)
        if own_redis is not None:
            own_redis.stop()
        log("gunicorn, Celery and Redis stopped")

    log("Checking the events and auditing the ledger")
    checks = ledger_checks()
    errors = sum(tally.errors.values())

    print(
        f"Soak: {os.cpu_count()} CPUs ({cpu_model()}); gunicorn {args.workers} x gthread ({args.worker_threads} threads); "
        f"Celery prefork -c {args.celery_concurrency}; PostgreSQL + Redis; {args.rate:g} requests/s offered for "
        f"{args.duration:.0f} s ({args.mix}); {promoters} promoters in 3 levels, tier rates {TIER_RATES}"
    )
    print()
    print(f"{'kind':<19} {'sent':>7} {'as expected':>11} {'per s':>7} {'ms p50/p99/max':>18}")
    for kind in KINDS:
        lat = tally.latency[kind]
        ms = "/".join(f"{percentile(lat, p) * 1000:.0f}" for p in (50, 99)) + f"/{max(lat) * 1000:.0f}" if lat else "-"
        print(f"{kind + f' ({EXPECTED[kind]})':<19} {tally.sent[kind]:>7} {tally.ok[kind]:>11} {tally.ok[kind] / elapsed:>7.1f} {ms:>18}")
    total_ok = sum(tally.ok.values())
    print(f"{'all':<19} {sum(tally.sent.values()):>7} {total_ok:>11} {total_ok / elapsed:>7.1f}")
    print(f"\nerrors (not the expected status): {errors}" + (f" {tally.errors}" if errors else ""))
    for sample in tally.samples:
        print(f"  {sample}")
    print(f"generator at most {tally.max_lag * 1000:.0f} ms behind its schedule; queue drained {drain_seconds:.1f} s after the last answer")
    print(f"\nresident memory (RSS, MiB): start, after {memory.warm_after:.0f} s, end, peak; growth start->end and after {memory.warm_after:.0f} s->end")
    for name in memory.first:
        first, last, peak = memory.first[name], memory.last[name], memory.peak[name]
        warm = memory.warm.get(name, first)
        print(
            f"  {name:<30} {first / 1024:7.1f} {warm / 1024:7.1f} {last / 1024:7.1f} {peak / 1024:7.1f}"
            f"  {(last - first) / 1024:+6.1f} {(last - warm) / 1024:+6.1f}"
        )
    print(
        f"\nstored: {checks['clicks']} clicks, {checks['events']} events {checks['by_type']}; {checks['processed']} processed, "
        f"{checks['queued']} queued, {checks['not_once']} not processed exactly once; {checks['commissions']} commissions; "
        f"audit_ledger {'clean' if checks['audit_clean'] else 'NOT CLEAN'} ({checks['audit_events']} events recomputed)"
    )
    for difference in checks["differences"]:
        print(f"  {difference}")
    ok = (
        not failed and errors == 0 and checks["audit_clean"] and checks["queued"] == 0 and checks["not_once"] == 0
        and checks["processed"] == checks["events"]
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "args": vars(args), "elapsed": elapsed, "sent": tally.sent, "ok": tally.ok, "errors": tally.errors,
                    "rss_kib": {n: [memory.first[n], memory.warm.get(n), memory.last[n], memory.peak[n]] for n in memory.first},
                    "checks": checks, "passed": ok,
                },
                indent=2,
            )
        )
    print(f"\n[{'met' if ok else 'MISSED'}] no errors, every event processed exactly once, audit_ledger clean")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
