#!/usr/bin/env python
"""Benchmark of crediting: purchase events in, commissions readable out.

Runs gunicorn (bench/gunicorn.conf.py) and real Celery workers on a fresh PostgreSQL
database and Redis, seeds a merchant with a 5-level sponsor tree and pre-recorded journeys
of 1-5 clicks each, then sends purchase events (each carrying a journey's ``click_id``)
from an open-loop, constant-rate load generator (asyncio, a minimal keep-alive HTTP/1.1 client, in this process):

1. a high offered rate (default 700/s for 20 s): how many events/s the API accepts;
2. a moderate offered rate (default 100/s for 60 s): the credit latency, i.e. the time
   from sending the POST to the event's commissions being readable.

Credit latency is measured without polling: the send time of each POST is recorded here
(wall clock) and, once the queue has drained, compared with the event's ``processed_at``,
which the Celery worker stamps inside the transaction that writes the commissions (one
machine, one clock; the commit follows within milliseconds).

Afterwards it waits for the queue to drain and checks that nothing was lost: every event
accepted is processed, and ``manage.py audit_ledger`` finds the ledger clean.
See bench/README.md, "Credit latency".

    .venv/bin/python bench/credit.py [--duration 20] [--rate 700] [--latency-rate 100] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from benchlib import (
    Proc,
    checkpoint,
    cpu_model,
    free_port,
    log,
    percentile,
    recreate_database,
    wait_drained,
    wait_for_quiet,
    wait_http,
)
from benchlib import proc_cpu_seconds as _proc_cpu_seconds
from benchlib import system_busy as _system_busy

ROOT = Path(__file__).resolve().parent.parent


BENCH = ROOT / "bench"
GUNICORN_CONF = BENCH / "gunicorn.conf.py"

TARGET_ACCEPTED = 500  # events/s accepted
TARGET_LATENCY_RATE = 100  # events/s offered for the latency target
TARGET_P99_S = 1.0  # p99 credit latency

TIER_RATES = ["0.05", "0.03", "0.02", "0.01", "0.005"]  # every one of the 5 sponsor levels earns


# --- CPU accounting (who used the two cores during a run) -----------------------------


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            todo.extend(int(p) for p in Path(f"/proc/{current}/task/{current}/children").read_text().split())
        except OSError:
            continue
    return pids


def _pids_named(name: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


class CpuMeter:
    """CPU seconds of gunicorn, the Celery workers, PostgreSQL (the bench database's backends
    and the server's own processes), Redis and this load generator over one run, as shares
    of the whole machine (100% = both cores). "other" is everything else: the kernel's own
    work and whatever else runs on the machine."""

    parts = ("gunicorn", "celery", "postgres", "redis", "loadgen")

    def __init__(self, gunicorn_pid: int, celery_pids: list[int], db_name: str):
        self.gunicorn_pid, self.celery_pids, self.db_name = gunicorn_pid, celery_pids, db_name

    def _postgres_pids(self) -> list[int]:
        pids = []
        for pid in _pids_named("postgres"):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            # A backend reads "postgres: user database host(port) state"; the server's own
            # processes (postmaster, checkpointer, walwriter...) name no database.
            if f" {self.db_name} " in cmdline or "127.0.0.1(" not in cmdline and "[local]" not in cmdline:
                pids.append(pid)
        return pids

    def _sample(self) -> tuple[dict, dict]:
        per_pid = {
            "gunicorn": {p: _proc_cpu_seconds(p) for p in _tree(self.gunicorn_pid)},
            "celery": {p: _proc_cpu_seconds(p) for root in self.celery_pids for p in _tree(root)},
            "postgres": {p: _proc_cpu_seconds(p) for p in self._postgres_pids()},
            "redis": {p: _proc_cpu_seconds(p) for p in _pids_named("redis-server")},
        }
        own = resource.getrusage(resource.RUSAGE_SELF)
        busy, total = _system_busy()
        return per_pid, {"loadgen": own.ru_utime + own.ru_stime, "busy": busy, "total": total}

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> dict:
        (pids0, totals0), (pids1, totals1) = self.before, self._sample()
        # Per process: one that ended during the run counts for nothing, one that started
        # counts from zero.
        delta = {part: sum(cpu - pids0[part].get(pid, 0.0) for pid, cpu in pids1[part].items()) for part in pids1}
        delta.update({k: totals1[k] - totals0[k] for k in totals1})
        self.seconds = delta
        share = {k: round(100 * delta[k] / max(delta["total"], 1e-9), 1) for k in (*self.parts, "busy")}
        share["other"] = round(share["busy"] - sum(share[k] for k in self.parts), 1)
        return share


# --- Database and seed ----------------------------------------------------------------


@dataclass
class Journey:
    customer_id: str
    order_id: str
    click_id: str
    amount: str
    touchpoints: int


def seed(*, roots: int, fanout: int, leaves_per: int, journeys: int, rng: random.Random) -> tuple[str, list[Journey], dict]:
    """A merchant, a program paying all 5 upline levels, a tree of ``roots`` x ``fanout``^4
    chains of 5 sponsors with ``leaves_per`` leaf promoters under each bottom sponsor, a
    link per leaf, and ``journeys`` journeys: a new visitor's 1-5 clicks on leaves' links,
    made in the last 25 days. Everything through the services."""
    from django.db import transaction
    from django.utils import timezone

    from affiliate.services import click_record, link_create, link_target
    from merchants.services import merchant_create, program_create
    from promoters.services import promoter_create

    creds = merchant_create(name="Bench credit shop", domains=["shop.example.com"])
    merchant = creds.merchant
    program = program_create(merchant=merchant, name="Bench", tier_rates=TIER_RATES)
    n = 0

    def promoter(sponsor, **extra):
        nonlocal n
        n += 1
        return promoter_create(
            merchant=merchant, email=f"p{n}@example.com", name=f"Promoter {n}", program=program, sponsor=sponsor, **extra
        )

    level = [promoter(None) for _ in range(roots)]
    sponsors = len(level)
    for _ in range(4):  # levels 2..5 of sponsors
        level = [promoter(s) for s in level for _ in range(fanout)]
        sponsors += len(level)
    leaves = []
    for s in level:
        for _ in range(leaves_per):
            # One leaf in five is paid at once (immediate plan): its commissions are approved
            # as they are written, so the approval postings are exercised too.
            leaves.append(promoter(s, payout_plan="immediate" if len(leaves) % 5 == 4 else "standard"))
    targets = []
    for leaf in leaves:
        link = link_create(merchant=merchant, promoter=leaf, destination_url="https://shop.example.com/p/1", channel="bench")
        targets.append(link_target(link.code))

    now = timezone.now()
    out: list[Journey] = []
    counts = [0] * 6
    started = time.monotonic()
    for start in range(0, journeys, 1000):
        with transaction.atomic():
            for j in range(start, min(journeys, start + 1000)):
                visitor = uuid.uuid4()
                k = rng.randint(1, 5)
                counts[k] += 1
                at = now - timedelta(days=rng.uniform(5, 25))
                click = None
                for _ in range(k):
                    click = click_record(target=rng.choice(targets), visitor_id=visitor, at=at)
                    at += timedelta(hours=rng.uniform(1, 72))
                amount = f"{rng.randint(500, 50000) / 100:.2f}"
                out.append(Journey(f"bench-cust-{j}", f"bench-order-{j}", click.id.hex, amount, k))
        if start and start % 10000 == 0:
            log(f"  {start} journeys seeded ({time.monotonic() - started:.0f} s)")
    shape = {
        "sponsors": sponsors,
        "leaves": len(leaves),
        "journeys": journeys,
        "clicks": sum(k * c for k, c in enumerate(counts)),
        "touchpoints_histogram": {k: counts[k] for k in range(1, 6)},
    }
    return creds.api_key, out, shape


# --- Load -----------------------------------------------------------------------------


@dataclass
class Run:
    name: str
    rate: int
    duration: float
    journeys: list[Journey] = field(default_factory=list)
    # filled in by the run
    sent_wall: list[float] = field(default_factory=list)  # scheduled send time (epoch s) per request
    latency: list[float | None] = field(default_factory=list)  # POST latency (s), None: no answer
    status: list[int] = field(default_factory=list)
    event_id: list[int | None] = field(default_factory=list)
    errors: dict = field(default_factory=dict)
    max_lag: float = 0.0  # how late the generator sent a request after its slot (s)
    elapsed: float = 0.0  # from the first slot to the last answer (s)
    in_window: int = 0  # 2xx answered within the offered window
    cpu: dict = field(default_factory=dict)  # shares of the machine while sending
    cpu_ms_per_event: dict = field(default_factory=dict)  # CPU per stored event, sending and draining
    stored: int = 0  # events stored by the run (answered or not)
    busy_before: float = 0.0
    drain_seconds: float = 0.0
    processed_rate: float = 0.0
    credit: list[float] = field(default_factory=list)
    unprocessed: int = 0  # events answered 2xx that are not processed (or not stored)

    @property
    def accepted(self) -> int:
        return sum(1 for s in self.status if 200 <= s < 300)

    @property
    def created(self) -> int:
        return sum(1 for s in self.status if s == 201)

    @property
    def non2xx(self) -> int:
        return len(self.status) - self.accepted

    @property
    def accepted_rate(self) -> float:
        return self.in_window / self.duration

    @property
    def post_latencies(self) -> list[float]:
        return [lat for lat, s in zip(self.latency, self.status, strict=True) if lat is not None and 200 <= s < 300]


async def _drive(port: int, api_key: str, run: Run, connections: int, timeout: float) -> None:
    """The open-loop generator: request *i* is due at ``start + i / rate`` whatever the
    server does; it waits for a free connection of the pool (``connections`` keep-alive
    HTTP/1.1 connections) and that wait counts in its latency.

    A minimal HTTP/1.1 client on asyncio streams (pre-built requests; a response is its
    status line, headers and Content-Length body) instead of a general one: aiohttp took
    1-1.7 ms of CPU per request on this machine, which at 500 requests/s is most of a core
    taken from the server being measured."""
    n = len(run.journeys)
    run.sent_wall = [0.0] * n
    run.latency = [None] * n
    run.status = [0] * n
    run.event_id = [None] * n
    head = (
        f"POST /api/v1/events/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {api_key}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: "
    )
    requests = []
    for j in run.journeys:
        body = json.dumps(
            {"type": "purchase", "customer_id": j.customer_id, "click_id": j.click_id, "order_id": j.order_id, "amount": j.amount}
        ).encode()
        requests.append(f"{head}{len(body)}\r\n\r\n".encode() + body)
    due: asyncio.Queue = asyncio.Queue()
    window_end = 0.0

    def failed(i: int, name: str) -> None:
        run.errors[name] = run.errors.get(name, 0) + 1
        run.status[i] = -1

    async def exchange(reader, writer, i: int) -> tuple[int, bytes]:
        writer.write(requests[i])
        header = await reader.readuntil(b"\r\n\r\n")
        status = int(header[9:12])
        length = 0
        for line in header.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await reader.readexactly(length)

    async def connection() -> None:
        reader = writer = None
        while True:
            item = await due.get()
            if item is None:
                break
            i, slot = item
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                status, payload = await asyncio.wait_for(exchange(reader, writer, i), timeout - (time.perf_counter() - slot))
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                failed(i, "TimeoutError" if isinstance(exc, TimeoutError) else type(exc).__name__)
                if writer is not None:
                    writer.close()
                reader = writer = None
                continue
            done = time.perf_counter()
            run.status[i] = status
            run.latency[i] = done - slot
            if status in (200, 201):
                run.event_id[i] = json.loads(payload)["id"]
                if done <= window_end:
                    run.in_window += 1
            else:
                run.errors[f"http {status}"] = run.errors.get(f"http {status}", 0) + 1
        if writer is not None:
            writer.close()

    workers = [asyncio.create_task(connection()) for _ in range(connections)]
    loop_started = time.perf_counter()
    wall_started = time.time()
    window_end = loop_started + run.duration
    interval = 1.0 / run.rate
    for i in range(n):
        slot = loop_started + i * interval
        delay = slot - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            run.max_lag = max(run.max_lag, -delay)
        run.sent_wall[i] = wall_started + (slot - loop_started)
        due.put_nowait((i, slot))
    for _ in workers:
        due.put_nowait(None)
    await asyncio.gather(*workers)
    run.elapsed = time.perf_counter() - loop_started


def drive(port: int, api_key: str, run: Run, connections: int, timeout: float) -> None:
    asyncio.run(_drive(port, api_key, run, connections, timeout))


# --- Queue, latency and checks -------------------------------------------------------


def credit_latencies(run: Run) -> None:
    """processed_at (stamped by the worker in the crediting transaction) minus the send time."""
    from django.db import connection

    from affiliate.models import ConversionEvent

    ids = {eid: i for i, eid in enumerate(run.event_id) if eid is not None}
    processed = dict(ConversionEvent.objects.filter(pk__in=list(ids)).values_list("id", "processed_at"))
    run.credit = []
    last = 0.0
    for eid, i in ids.items():
        at = processed.get(eid)
        if at is None:
            run.unprocessed += 1
        else:
            run.credit.append(at.timestamp() - run.sent_wall[i])
            last = max(last, at.timestamp())
    if last and run.sent_wall:
        run.processed_rate = len(run.credit) / (last - run.sent_wall[0])
    connection.close()


def audit(env: dict) -> tuple[bool, str]:
    done = subprocess.run(
        [sys.executable, "manage.py", "audit_ledger"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    text = (done.stdout + done.stderr).strip()
    return done.returncode == 0, text


def event_counts() -> dict:
    from django.db import connection
    from django.db.models import Count

    from affiliate.models import ConversionEvent
    from payouts.models import Commission

    counts = dict(ConversionEvent.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    result = {
        "events": sum(counts.values()),
        "processed": counts.get("processed", 0),
        "queued": counts.get("queued", 0),
        "commissions": Commission.objects.count(),
    }
    connection.close()
    return result


# --- Report ---------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def table(runs: list[Run], header: str) -> str:
    lines = [header, ""]
    cols = (
        f"{'run':<22} {'offered':>8} {'sent':>6} {'accepted/s':>10} {'non-2xx':>7} "
        f"{'POST ms p50/p95/p99':>20} {'credit ms p50/p95/p99':>22} {'processed/s':>11}  cpu %: gunicorn/celery/postgres/redis/loadgen/other/idle"
    )
    lines += [cols, "-" * len(cols)]
    for r in runs:
        post = r.post_latencies
        post_text = "/".join(ms(percentile(post, p)) for p in (50, 95, 99)) if post else "-"
        credit_text = "/".join(ms(percentile(r.credit, p)) for p in (50, 95, 99)) if r.credit else "-"
        cpu = r.cpu
        cpu_text = (
            "/".join(f"{cpu[k]:.0f}" for k in (*CpuMeter.parts, "other")) + f"/{100 - cpu['busy']:.0f}" if cpu else ""
        )
        lines.append(
            f"{r.name:<22} {r.rate:>6}/s {len(r.status):>6} {r.accepted_rate:>10.0f} {r.non2xx:>7} "
            f"{post_text:>20} {credit_text:>22} {r.processed_rate:>11.0f}  {cpu_text}"
        )
        extras = [
            f"{r.accepted} accepted ({r.created} new), {r.in_window} answered within the {r.duration:.0f} s window; "
            f"last answer after {r.elapsed:.1f} s; generator at most {r.max_lag * 1000:.0f} ms behind its schedule"
        ]
        if r.credit:
            extras.append(
                f"credit latency max {ms(max(r.credit))} ms; queue drained {r.drain_seconds:.1f} s after the last answer"
            )
        if r.cpu_ms_per_event:
            per = r.cpu_ms_per_event
            server = per["gunicorn"] + per["celery"] + per["postgres"] + per["redis"]
            extras.append(
                "CPU per event, sending and draining: "
                + ", ".join(f"{k} {per[k]:.1f} ms" for k in CpuMeter.parts)
                + f"; the server's share ({server:.1f} ms) fills both cores at {2000 / server:.0f} events/s"
            )
        if r.errors:
            extras.append(f"errors: {r.errors}")
        if r.busy_before > 15:
            extras.append(f"the machine was {r.busy_before:.0f}% busy with other work just before this run")
        for extra in extras:
            lines.append(f"{'':<24}{extra}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20, help="seconds of the high-rate run (default 20)")
    parser.add_argument("--rate", type=int, default=700, help="events/s offered in the high-rate run (default 700)")
    parser.add_argument("--latency-duration", type=float, default=60, help="seconds of the latency run (default 60)")
    parser.add_argument("--latency-rate", type=int, default=TARGET_LATENCY_RATE, help="events/s offered in the latency run (default 100)")
    parser.add_argument("--warmup", type=float, default=4, help="seconds of warm-up at 50 events/s (default 4)")
    parser.add_argument("--skip-max", action="store_true", help="only the latency run")
    parser.add_argument("--connections", type=int, default=64, help="the generator's connection pool (default 64)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds before a POST counts as failed (default 30)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--worker-class", default="gthread", help="gunicorn worker class (default gthread)")
    parser.add_argument("--worker-threads", type=int, default=4, help="gunicorn threads per worker (gthread; default 4)")
    parser.add_argument("--celery-pool", choices=("prefork", "solo"), default="prefork", help="Celery pool (default prefork)")
    parser.add_argument(
        "--celery-concurrency", type=int, default=2,
        help="Celery processes working tasks (default 2): the prefork pool's size, or how many solo workers",
    )
    parser.add_argument("--celery-prefetch", type=int, default=4, help="Celery prefetch multiplier (default 4)")
    parser.add_argument("--celery-nice", type=int, default=0, help="nice level of the Celery workers (default 0: none)")
    parser.add_argument("--roots", type=int, default=2, help="top sponsors (default 2)")
    parser.add_argument("--fanout", type=int, default=3, help="children per sponsor, levels 1-4 (default 3)")
    parser.add_argument("--leaves", type=int, default=2, help="leaf promoters per bottom sponsor (default 2)")
    parser.add_argument("--seed", type=int, default=42, help="random seed of the journeys")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL (no database)")
    parser.add_argument("--db-name", default="bench_credit", help="database to (re)create (default bench_credit)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11", help="REDIS_URL (its database is flushed)")
    parser.add_argument("--drain-timeout", type=float, default=900, help="seconds to wait for the queue to drain (default 900)")
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for an idle machine before each run")
    parser.add_argument("--py-spy", metavar="DIR", help="record py-spy profiles of a gunicorn and a Celery worker per run")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()

    port = free_port()
    database_url = f"{args.pg.rstrip('/')}/{args.db_name}"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url,
        REDIS_URL=args.redis,
        SECRET_KEY="bench-" + secrets.token_hex(32),
        DEBUG="0",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS=str(args.workers),
        GUNICORN_WORKER_CLASS=args.worker_class,
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

    redis.Redis.from_url(args.redis).flushdb()

    runs = [Run("warm-up", 50, args.warmup)]
    if not args.skip_max:
        runs.append(Run("max accepted", args.rate, args.duration))
    runs.append(Run("credit latency", args.latency_rate, args.latency_duration))
    needed = sum(round(r.rate * r.duration) for r in runs)
    rng = random.Random(args.seed)
    log(f"Seeding the tree and {needed} journeys through the services")
    started = time.monotonic()
    api_key, journeys, shape = seed(roots=args.roots, fanout=args.fanout, leaves_per=args.leaves, journeys=needed, rng=rng)
    log(f"  seeded in {time.monotonic() - started:.0f} s: {shape}")
    # A database in service has statistics for its tables; one just loaded has none until
    # autovacuum gets to it, and the planner then guesses one row everywhere.
    with connections["default"].cursor() as cursor:
        cursor.execute("ANALYZE")
    offset = 0
    for run in runs:
        count = round(run.rate * run.duration)
        run.journeys = journeys[offset : offset + count]
        offset += count
    connections.close_all()

    workdir = Path(os.environ.get("BENCH_WORKDIR") or f"/tmp/bench-credit-{port}")
    workdir.mkdir(parents=True, exist_ok=True)
    gunicorn = Proc(
        "gunicorn", [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "config.wsgi:application"], env, workdir / "gunicorn.log"
    )
    celeries = []
    for n in range(args.celery_concurrency if args.celery_pool == "solo" else 1):
        cmd = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "events,default", "-P", args.celery_pool,
            *(["-c", str(args.celery_concurrency)] if args.celery_pool == "prefork" else []),
            "--prefetch-multiplier", str(args.celery_prefetch),
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "warning", "-n", f"bench-credit-{port}-{n}@%h",
        ]
        if args.celery_nice:
            cmd = ["nice", "-n", str(args.celery_nice), *cmd]
        celeries.append(Proc("celery", cmd, env, workdir / f"celery-{n}.log"))
    celery = celeries[0]
    failed = False
    try:
        log(f"Starting gunicorn on 127.0.0.1:{port} and the Celery workers (logs in {workdir})")
        gunicorn.start()
        for proc in celeries:
            proc.start()
        wait_http(port, gunicorn)
        meter = CpuMeter(gunicorn.pid, [proc.pid for proc in celeries], args.db_name)
        whole = CpuMeter(gunicorn.pid, [proc.pid for proc in celeries], args.db_name)
        for run in runs:
            checkpoint(database_url)
            run.busy_before = round(wait_for_quiet(args.quiet_wait if run.name != "warm-up" else 0), 1)
            log(f"Running {run.name}: {run.rate} events/s offered for {run.duration:.0f} s")
            spies = start_py_spy(args.py_spy, run, gunicorn, celery) if args.py_spy and run.name != "warm-up" else []
            stored_before = event_counts()["events"]
            meter.start()
            whole.start()
            drive(port, api_key, run, args.connections, args.timeout)
            run.cpu = meter.stop()
            for spy in spies:
                spy.wait()
            drained, run.drain_seconds = wait_drained(args.drain_timeout)
            whole.stop()
            run.stored = event_counts()["events"] - stored_before
            run.cpu_ms_per_event = {k: 1000 * whole.seconds[k] / max(run.stored, 1) for k in CpuMeter.parts}
            credit_latencies(run)
            post = run.post_latencies
            log(
                f"  accepted {run.accepted_rate:.0f}/s, non-2xx {run.non2xx}, POST p99 {ms(percentile(post, 99)) if post else '-'} ms, "
                f"credit p50 {ms(percentile(run.credit, 50)) if run.credit else '-'} ms p99 {ms(percentile(run.credit, 99)) if run.credit else '-'} ms, "
                f"drained in {run.drain_seconds:.1f} s"
            )
            if not drained:
                failed = True
                break
            if run.name == "warm-up":
                # The tables the warm-up wrote (customers, events, commissions, the ledger)
                # were empty at the ANALYZE after seeding: a database in service has their
                # statistics, and plans made for empty tables (kept in the servers'
                # connections) would walk whole tables until autovacuum got to them.
                with connections["default"].cursor() as cursor:
                    cursor.execute("ANALYZE")
                connections.close_all()
    finally:
        gunicorn.stop()
        for proc in celeries:
            proc.stop(timeout=60)
        log("gunicorn and Celery stopped")

    counts = event_counts()
    log("Auditing the ledger (manage.py audit_ledger)")
    clean, audit_text = audit(env)
    connections.close_all()

    header = (
        f"Credit benchmark: {os.cpu_count()} CPUs ({cpu_model()}); gunicorn {args.workers} x {args.worker_class}"
        + (f" ({args.worker_threads} threads)" if args.worker_class == "gthread" else "")
        + (f"; Celery prefork -c {args.celery_concurrency}" if args.celery_pool == "prefork" else f"; Celery {args.celery_concurrency} x solo")
        + f" (prefetch {args.celery_prefetch}"
        + (f", nice {args.celery_nice}" if args.celery_nice else "")
        + f"); PostgreSQL + Redis; asyncio open-loop generator ({args.connections} connections) on the same machine"
    )
    print(table(runs, header))
    print(
        f"\n  tree: {shape['sponsors']} sponsors in 5 levels, {shape['leaves']} leaves; {shape['journeys']} journeys, "
        f"{shape['clicks']} clicks (1-5 touchpoints: {shape['touchpoints_histogram']}); tier rates {TIER_RATES}"
    )
    print("  credit latency = processed_at (stamped in the crediting transaction) - the POST's scheduled send time\n")

    accepted_total = sum(r.accepted for r in runs)
    created_total = sum(r.created for r in runs)
    max_run = next((r for r in runs if r.name == "max accepted"), None)
    lat_run = runs[-1]
    results = []
    if max_run is not None:
        results.append(
            (f"accepted >= {TARGET_ACCEPTED} events/s", f"{max_run.accepted_rate:.0f}/s at {max_run.rate}/s offered", max_run.accepted_rate >= TARGET_ACCEPTED)
        )
    p99 = percentile(lat_run.credit, 99) if lat_run.credit else float("inf")
    results.append(
        (
            f"p99 credit latency < {TARGET_P99_S:.0f} s at {lat_run.rate} events/s offered",
            f"p99 {ms(p99)} ms (p50 {ms(percentile(lat_run.credit, 50)) if lat_run.credit else '-'} ms) at "
            f"{lat_run.accepted_rate:.0f}/s accepted, {lat_run.non2xx} non-2xx",
            p99 < TARGET_P99_S and lat_run.non2xx == 0 and lat_run.rate == TARGET_LATENCY_RATE,
        )
    )
    unprocessed = sum(r.unprocessed for r in runs)
    # A POST that timed out at the client may still have been stored (and then processed):
    # it counts as stored, not as accepted.
    unanswered = counts["events"] - created_total
    nothing_lost = (
        clean and counts["queued"] == 0 and unprocessed == 0 and counts["processed"] == counts["events"]
        and unanswered >= 0 and not failed
    )
    results.append(
        (
            "nothing lost",
            ("" if not failed else f"the queue did not drain within {args.drain_timeout:.0f} s, so this is unproven; ")
            + f"{created_total} events accepted as new ({accepted_total} 2xx), {counts['events']} stored"
            + (f" ({unanswered} of them for POSTs that got no answer in time)" if unanswered else "")
            + f", {counts['processed']} processed, {counts['queued']} queued, {unprocessed} accepted but unprocessed, "
            f"{counts['commissions']} commissions; audit_ledger {'clean' if clean else 'NOT CLEAN'}",
            nothing_lost,
        )
    )
    for target, reached, met in results:
        print(f"  [{'met' if met else 'MISSED'}] {target}: {reached}")
    if not clean:
        print("\n" + audit_text[-3000:])
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "header": header,
                    "shape": shape,
                    "runs": [
                        {
                            "name": r.name, "offered": r.rate, "duration": r.duration, "sent": len(r.status),
                            "accepted": r.accepted, "accepted_rate": r.accepted_rate, "non2xx": r.non2xx, "errors": r.errors,
                            "post_ms": {p: percentile(r.post_latencies, p) * 1000 for p in (50, 95, 99)} if r.post_latencies else None,
                            "credit_ms": {p: percentile(r.credit, p) * 1000 for p in (50, 95, 99)} if r.credit else None,
                            "processed_rate": r.processed_rate, "cpu": r.cpu, "max_lag_ms": r.max_lag * 1000,
                            "stored": r.stored, "cpu_ms_per_event": r.cpu_ms_per_event,
                        }
                        for r in runs
                    ],
                    "counts": counts,
                    "targets": results,
                },
                indent=2,
            )
        )
    return 0 if all(met for _, _, met in results) else 1


def start_py_spy(directory: str, run: Run, gunicorn: Proc, celery: Proc) -> list[subprocess.Popen]:
    """Sample one gunicorn worker and one Celery worker process for the run's duration."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for proc in (gunicorn, celery):
        children = [p for p in _tree(proc.pid) if p != proc.pid]
        target = children[-1] if children else proc.pid  # a solo worker works in its own process
        name = run.name.replace(" ", "-")
        spies.append(
            subprocess.Popen(
                [str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(target), "-d", str(int(run.duration)),
                 "-r", "50", "-f", "speedscope", "-o", str(out / f"{name}-{proc.name}.json"), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )
    return spies


if __name__ == "__main__":
    sys.exit(main())
