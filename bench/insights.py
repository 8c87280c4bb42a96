#!/usr/bin/env python
"""Benchmark of the insight jobs at scale: a million events, a hundred thousand promoters.

1. Creates a fresh PostgreSQL database (default ``bench_insights``), migrates it, creates
   one merchant, its USD program and the program's rate rule through the services.
2. Bulk-loads with COPY, never through the API, the last 90 days of a busy program:
   promoters in a 5-level tree (10 + 90 + 900 + 9,000 + 90,000 by default), a link each on
   one of 8 channels, visitors and their clicks (a share flagged fraud or duplicate),
   customers who register, buy a first time, some again, and a few refund (1,000,000
   events by default, processed), a touchpoint and a credit for each, the direct
   commission of the selling promoter and its sponsor's override (reversed in proportion
   on a refund), a few merchant products, and the content promoters published in the last
   30 days (titles and text from a vocabulary, formats, posting times), each carrying its
   promoter's link. Then VACUUM ANALYZE.
3. Times ``manage.py insights_run --merchant ID`` in a subprocess: every insight job in the
   order the daily schedule runs them (LTV/CAC, dynamic rates, segments, content and
   materials), with each job's time from the command's progress lines, the subprocess's
   CPU and its peak memory (VmHWM, sampled from /proc).

Target: under 2 minutes on the 2-core machine. See bench/README.md, "Insights".

    .venv/bin/python bench/insights.py [--promoters 100000 --events 1000000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from benchlib import (
    Copier,
    cpu_model,
    drop_database,
    level_sizes,
    log,
    make_partitions,
    monthly_event_id,
    recreate_database,
    vacuum_analyze,
)
from benchlib import proc_cpu_seconds as _proc_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

TARGET_SECONDS = 120.0
CHANNELS = ["blog", "youtube", "instagram", "tiktok", "newsletter", "podcast", "facebook", "reddit"]
FORMATS = ["article", "video", "social_post", "email"]
WORDS = (
    "running shoes trail marathon recovery socks hydration vest training plan beginner guide review budget premium "
    "comfort cushioning lightweight waterproof winter summer sale discount unboxing comparison tips mistakes injury "
    "stretching strength nutrition gels pacing watch tracker road ultra city"
).split()


def load(*, promoters: int, events: int, contents: int, rng: random.Random) -> dict:
    """Everything in one transaction, ids given here; returns the merchant and row counts."""
    from django.core.management.color import no_style
    from django.db import connection, transaction
    from django.utils import timezone

    from affiliate.models import Click, ConversionEvent, Customer, CustomerVisitor, ReferralLink, Visitor, uuid7
    from attribution.models import Credit, Touchpoint
    from insights.models import Content, Product, RateRule
    from merchants.services import merchant_create, program_create
    from payouts.models import Commission
    from promoters.models import Promoter

    now = timezone.now().replace(microsecond=0)
    start = now - timedelta(days=90)
    merchant = merchant_create(name="Bench insights shop", domains=["shop.example.com"]).merchant
    program = program_create(merchant=merchant, name="Bench", currency="USD", tier_rates=["0.05"], hold_days=14)
    # 10% direct and a 5% override: most promoters' LTV/CAC lies near 6-7, so the rule raises
    # the best and lowers the worst, leaving the many in between.
    RateRule.objects.create(program=program, min_customers=5, raise_at=Decimal("8.00"), lower_at=Decimal("5.00"))
    terms = json.dumps(program.terms())
    m_id, pg_id, cur = merchant.pk, program.pk, "USD"

    # The tree: ids level by level, each node's sponsor spread evenly over the level above.
    sponsor = [0] * (promoters + 1)
    first, previous = 1, None
    for size in level_sizes(promoters):
        ids = range(first, first + size)
        if previous is not None:
            for index, pid in enumerate(ids):
                sponsor[pid] = previous[index * len(previous) // size]
        previous, first = ids, first + size
    # How good each promoter is: most are ordinary, a few excellent, some poor.
    quality = [0.0] + [rng.choice((0.02, 0.04, 0.04, 0.05, 0.06, 0.12)) for _ in range(promoters)]
    channel_of = [""] + [CHANNELS[pid % len(CHANNELS)] for pid in range(1, promoters + 1)]
    span = int((now - start).total_seconds())

    # Customers and their events: registration, a first purchase, repeats, a few refunds.
    customers = events * 36 // 100  # about 2.8 events each: enough for the events asked
    weights = quality[1:]
    leaf_of = [0] + rng.choices(range(1, promoters + 1), weights=weights, k=customers)
    timings: dict[str, float] = {}
    made = make_partitions(start, now)
    if made:
        log(f"partitions for the months loaded: {len(made)}")
    started = time.monotonic()
    with transaction.atomic(), connection.cursor() as django_cursor:
        raw = django_cursor.cursor
        raw.execute("SET LOCAL session_replication_role = replica")  # consistent by construction
        copy = Copier(raw)
        old = now - timedelta(days=720)
        copy(Promoter, ["id", "merchant", "program", "email", "name", "sponsor", "referral_code", "customer_id",
                        "coupon_code", "commission_rate", "payout_plan", "status", "created_at", "updated_at"],
             ((pid, m_id, pg_id, f"p{pid}@bench.example", f"Promoter {pid}", sponsor[pid] or None, f"I{pid:09d}", None,
               None, None, "standard", "active", old + timedelta(seconds=rng.randrange(700 * 86400)), now)
              for pid in range(1, promoters + 1)))
        copy(ReferralLink, ["id", "merchant", "program", "promoter", "code", "destination_url", "channel", "created_at"],
             ((pid, m_id, pg_id, pid, f"L{pid:09d}", "https://shop.example.com/", channel_of[pid], old)
              for pid in range(1, promoters + 1)))
        timings["promoters, links"] = time.monotonic() - started

        started = time.monotonic()
        visitors, clicks, bindings, customer_rows, event_rows, touch_rows, credit_rows, commission_rows = ([] for _ in range(8))
        event_id = commission_id = 0
        made = 0
        for c in range(1, customers + 1):
            leaf = leaf_of[c]
            visitor = uuid.UUID(int=rng.getrandbits(128))
            at = start + timedelta(seconds=rng.randrange(span - 86400))
            visitors.append((visitor, at))
            click = uuid7(at)
            clicks.append((click, leaf, m_id, pg_id, leaf, visitor, at, rng.random() < 0.01, rng.random() < 0.02))
            bindings.append((c, visitor, click, at))
            purchases = 1 + (rng.random() < quality[leaf] * 8) + (rng.random() < 0.2)
            stage = "repeat_purchaser" if purchases > 1 else "first_purchase"
            customer_rows.append((c, m_id, f"cust-{c}", stage, at, at))
            registered = at + timedelta(minutes=5)
            event_id += 1
            event_rows.append((monthly_event_id(event_id, registered), c, "registration", "registration", None, "", "", None,
                               registered))
            made += 1
            when = registered
            for k in range(purchases):
                if made >= events:
                    break
                when = min(when + timedelta(hours=rng.randint(1, 500)), now - timedelta(minutes=1))
                amount = rng.randint(2000, 30000)
                event_id += 1
                made += 1
                order = f"o{event_id}"
                purchase_id = monthly_event_id(event_id, when)
                event_rows.append((purchase_id, c, "purchase", "first_purchase" if k == 0 else "repeat_purchase", amount, order, "",
                                   None, when))
                touch_rows.append((purchase_id, 0, "click", leaf, click, leaf, channel_of[leaf], at, "1.000000000000", amount))
                credit_rows.append((purchase_id, leaf, "1.000000000000", "1/1", amount, cur, 0))
                direct = amount // 10 if k == 0 else amount // 20
                commission_id += 1
                commission_rows.append((commission_id, purchase_id, leaf, leaf, "direct", 0, direct, amount, "0.100000", None,
                                        when))
                parents = [(commission_id, leaf, 0, direct)]
                if sponsor[leaf]:
                    commission_id += 1
                    override = amount // 20
                    commission_rows.append((commission_id, purchase_id, sponsor[leaf], leaf, "override", 1, override, amount,
                                            "0.050000", None, when))
                    parents.append((commission_id, sponsor[leaf], 1, override))
                if rng.random() < 0.03 + (0.15 if quality[leaf] < 0.03 else 0) and made < events:
                    refund_at = min(when + timedelta(days=2), now)
                    event_id += 1
                    made += 1
                    refund_id = monthly_event_id(event_id, refund_at)
                    event_rows.append((refund_id, c, "refund", "refund", amount, order, "", purchase_id, refund_at))
                    credit_rows.append((refund_id, leaf, "1.000000000000", "1/1", -amount, cur, 0))
                    for parent, promoter, level, value in parents:
                        commission_id += 1
                        commission_rows.append((commission_id, refund_id, promoter, leaf, "reversal", level, -value, amount,
                                                "0.100000", parent, refund_at))
            if made >= events:
                break
        # Clicks that bought nothing, on every promoter's link.
        for _ in range(len(clicks) * 2):
            leaf = rng.randrange(1, promoters + 1)
            visitor = uuid.UUID(int=rng.getrandbits(128))
            at = start + timedelta(seconds=rng.randrange(span))
            visitors.append((visitor, at))
            clicks.append((uuid7(at), leaf, m_id, pg_id, leaf, visitor, at,
                           rng.random() < 0.01 + (0.1 if quality[leaf] < 0.03 else 0), rng.random() < 0.02))
        timings["computing"] = time.monotonic() - started

        started = time.monotonic()
        copy(Visitor, ["id", "first_seen_at"], visitors)
        copy(Click, ["id", "link", "merchant", "program", "promoter", "visitor", "created_at", "is_fraud", "is_duplicate",
                     "user_agent", "referrer", "ip_hash", "sub1", "sub2", "sub3", "sub4", "sub5", "flag_reason"],
             (row + ("", "", "", "", "", "", "", "", "") for row in clicks))
        copy(Customer, ["id", "merchant", "external_id", "stage", "created_at", "updated_at"], customer_rows)
        copy(CustomerVisitor, ["customer", "visitor", "click", "bound_at"], bindings)
        del visitors, clicks, bindings, customer_rows
        copy(ConversionEvent, ["id", "merchant", "program", "customer", "type", "stage", "status", "amount_minor", "currency",
                               "order_id", "refund_id", "purchase", "payload", "terms", "occurred_at", "received_at",
                               "processed_at", "click_ref", "coupon", "body_hash", "source", "warnings", "attempts"],
             ((e, m_id, pg_id, c, kind, stage, "processed", amount, cur, order, refund, purchase, "{}", terms, when, when, when,
               "", "", "", "api", "[]", 1) for e, c, kind, stage, amount, order, refund, purchase, when in event_rows))
        copy(Touchpoint, ["event", "position", "kind", "promoter", "click", "link", "channel", "at", "weight", "revenue_minor"],
             touch_rows)
        copy(Credit, ["event", "promoter", "weight", "weight_exact", "revenue_minor", "currency", "first_position"], credit_rows)
        copy(Commission, ["id", "merchant", "program", "event", "promoter", "source_promoter", "kind", "level", "amount_minor",
                          "currency", "base_minor", "rate", "status", "reverses", "available_at", "created_at", "reason"],
             ((cid, m_id, pg_id, e, p, src, kind, level, value, cur, base, rate, "pending", parent, when + timedelta(days=14),
               when, "") for cid, e, p, src, kind, level, value, base, rate, parent, when in commission_rows))
        timings["events, touchpoints, credits, commissions"] = time.monotonic() - started

        started = time.monotonic()
        copy(Product, ["id", "merchant", "name", "url", "description", "active"],
             ((i, m_id, f"Product {i}", f"https://shop.example.com/p/{i}", " ".join(rng.sample(WORDS, 8)), True)
              for i in range(1, 21)))
        recent = now - timedelta(days=30)
        copy(Content, ["merchant", "promoter", "link", "title", "text", "format", "channel", "published_at", "created_at"],
             ((m_id, pid, pid, " ".join(rng.sample(WORDS, 5)).capitalize(), " ".join(rng.choices(WORDS, k=40)),
               rng.choice(FORMATS), channel_of[pid], recent + timedelta(seconds=rng.randrange(30 * 86400 - 3600)), now)
              for pid in (rng.randrange(1, promoters + 1) for _ in range(contents))))
        timings["products, content"] = time.monotonic() - started

        for sql in connection.ops.sequence_reset_sql(
            no_style(), [Promoter, ReferralLink, Customer, ConversionEvent, Commission, Product, Content, Touchpoint, Credit]
        ):
            raw.execute(sql)
    return {"merchant": merchant, "program": program, "rows": copy.counts, "timings": timings}


class PeakMemory(threading.Thread):
    """Samples a process's VmHWM (its peak resident memory) until it ends."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self.cpu = pid, 0, 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                self.cpu = _proc_cpu_seconds(self.pid)
            except (OSError, ValueError):
                return
            time.sleep(0.2)


def run_jobs(env: dict, merchant_id: int) -> dict:
    """``manage.py insights_run`` in a subprocess: wall time, job times, CPU, peak memory."""
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "insights_run", "--merchant", str(merchant_id)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    meter = PeakMemory(process.pid)
    meter.start()
    lines = []
    for line in process.stdout:
        stamp = time.monotonic() - started
        lines.append((stamp, line.rstrip()))
        log(f"  [{stamp:6.1f} s] {line.rstrip()}")
    process.wait()
    meter.done.set()
    meter.join()
    return {
        "seconds": time.monotonic() - started,
        "returncode": process.returncode,
        "peak_mb": meter.peak_kb / 1024,
        "cpu_seconds": meter.cpu,
        "lines": lines,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--promoters", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--contents", type=int, default=50_000, help="content published in the last 30 days (default 50,000)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL (no database)")
    parser.add_argument("--db-name", default="bench_insights")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()

    database_url = f"{args.pg.rstrip('/')}/{args.db_name}"
    env = dict(os.environ)
    env.update(DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL=database_url, SECRET_KEY="bench-" + secrets.token_hex(32),
               DEBUG="0", ALLOWED_HOSTS="127.0.0.1", EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
    env.pop("REDIS_URL", None)  # the jobs run in the command, inline
    log(f"Database {database_url}: recreating and migrating")
    recreate_database(args.pg, args.db_name)
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True)
    if migrate.returncode != 0:
        log(migrate.stdout + migrate.stderr)
        return 1
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS")})
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    log(f"Loading {args.promoters:,} promoters and {args.events:,} events (COPY)")
    started = time.monotonic()
    loaded = load(promoters=args.promoters, events=args.events, contents=args.contents, rng=random.Random(args.seed))
    load_seconds = time.monotonic() - started
    for name, seconds in loaded["timings"].items():
        log(f"  {name}: {seconds:.1f} s")
    log("  rows: " + ", ".join(f"{label} {n:,}" for label, n in loaded["rows"].items()))
    analyze = vacuum_analyze()
    log(f"Loaded in {load_seconds:.1f} s, VACUUM ANALYZE {analyze:.1f} s")

    from django.db import connections

    connections.close_all()
    log("Running manage.py insights_run")
    result = run_jobs(env, loaded["merchant"].pk)
    met = result["returncode"] == 0 and result["seconds"] < TARGET_SECONDS
    print()
    print(f"Insights benchmark: {os.cpu_count()} CPUs ({cpu_model()}); PostgreSQL; {args.promoters:,} promoters, "
          f"{loaded['rows'].get('affiliate.ConversionEvent', 0):,} events, {loaded['rows'].get('affiliate.Click', 0):,} clicks, "
          f"{loaded['rows'].get('payouts.Commission', 0):,} commissions, {loaded['rows'].get('insights.Content', 0):,} contents")
    for stamp, line in result["lines"]:
        print(f"  [{stamp:6.1f} s] {line}")
    print(f"  total {result['seconds']:.1f} s, CPU of the command {result['cpu_seconds']:.1f} s, peak memory {result['peak_mb']:.0f} MB, "
          f"exit code {result['returncode']}")
    print(f"  [{'met' if met else 'MISSED'}] insight jobs under {TARGET_SECONDS:.0f} s: {result['seconds']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({**{k: v for k, v in result.items() if k != "lines"}, "rows": loaded["rows"],
                                               "load_seconds": load_seconds}, indent=2))
    if not args.keep:
        drop_database(args.pg, args.db_name)
    return 0 if result["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
