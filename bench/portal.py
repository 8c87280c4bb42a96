#!/usr/bin/env python
"""Benchmark of the promoter portal (and the merchant pages) for a big promoter.

1. Creates a fresh PostgreSQL database (default ``bench_portal``), migrates it, creates one
   merchant and its program through the services, then bulk-loads with COPY (never the
   API): a promoter P with a login, a 2,000-member downline under P in 5 levels, 1,000
   other promoters, P's links and clicks, customers, 100,000 commissions of P over the last
   12 months (own sales and overrides from every level of the downline; pending, approved
   or paid by age) with their events, credits and touchpoints, the downline's own
   commissions on the same sales, the ledger as the services write it (a journal per
   commission, approval, batch-lock and batch-paid journals per promoter and month, the
   running balances), closed payout batches with their lines, and P's statements for the
   last 6 months (written by ``statement_write``). Then VACUUM ANALYZE.
2. Serves it with gunicorn (``bench/gunicorn.conf.py``, DEBUG=0) and, with a session made by
   ``django.contrib.auth`` (``Client.force_login``), requests each page N times in sequence
   after a warm-up: p50 / p95 / max in ms. Beside each page, the SQL queries it runs, counted
   in-process through ``django.test.Client`` and ``CaptureQueriesContext`` on the same
   database, and how busy the machine was while the page was measured.

Target: every portal page under 150 ms (p95). Downloads (the commissions CSV of all 100,000
rows, a statement's PDF and CSV) are measured and listed apart. See bench/README.md,
"Portal pages".

    .venv/bin/python bench/portal.py [--commissions 100000 --downline 2000] [-n 30] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import (  # noqa: E402
    cpu_model,
    drop_database,
    log,
    make_partitions,
    monthly_event_id,
    percentile,
    recreate_database,
    vacuum_analyze,
)
from benchlib import proc_cpu_seconds as _proc_cpu_seconds  # noqa: E402
from benchlib import system_busy as _system_busy  # noqa: E402
from close import BackendMeter, Copier, micro, times_rate  # noqa: E402  (bench/close.py: the COPY loader and its rules)

TARGET_MS = 150.0
HOLD_DAYS = 30
TIER_RATES = ["0.05", "0.03", "0.02", "0.01", "0.005"]
DIRECT_RATE = "0.10"
LEVELS = (5, 30, 150, 600)  # + the rest of the downline on level 5
CHANNELS = ["blog", "youtube", "newsletter", "instagram", "tiktok", "podcast"]
PASSWORD = "bench-portal-password"


def month_start(dt: datetime) -> datetime:
    return dt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(dt: datetime, n: int) -> datetime:
    y, m = divmod(dt.month - 1 + n, 12)
    return dt.replace(year=dt.year + y, month=m + 1)


# --- Loading ----------------------------------------------------------------------------


def load(*, commissions: int, downline: int, others: int, clicks: int, rng: random.Random) -> dict:
    from django.contrib.auth import get_user_model
    from django.core.management.color import no_style
    from django.db import connection, transaction

    from affiliate.models import Click, ConversionEvent, Customer, ReferralLink, Visitor, uuid7
    from attribution.models import Credit, Touchpoint
    from merchants.models import MerchantMember
    from merchants.services import merchant_create, program_create
    from payouts.models import Account, Commission, Entry, Journal, PayoutBatch, PayoutLine, PayoutMethod
    from promoters.models import Promoter

    now = datetime.now(UTC).replace(microsecond=0)
    year_ago = now - timedelta(days=365)
    this_month = month_start(now)
    last_month = add_months(this_month, -1)

    merchant = merchant_create(name="Bench portal shop", domains=["shop.example.com"]).merchant
    program = program_create(
        merchant=merchant, name="Bench", currency="USD", hold_days=HOLD_DAYS, tier_rates=TIER_RATES,
        first_purchase_rate=DIRECT_RATE, repeat_purchase_rate=DIRECT_RATE,
    )
    User = get_user_model()
    p_user = User.objects.create_user(username="p@bench.example", email="p@bench.example", password=PASSWORD)
    m_user = User.objects.create_user(username="owner@bench.example", email="owner@bench.example", password=PASSWORD)
    MerchantMember.objects.create(user=m_user, merchant=merchant, role=MerchantMember.Role.OWNER)
    terms = json.dumps(program.terms())
    m_id, pg_id, cur = merchant.pk, program.pk, "USD"
    timings: dict[str, float] = {}
    started = time.monotonic()

    # The tree: P (id 1) at the top; its downline level by level, each sponsor's recruits
    # spread evenly over the level above; then other promoters in a tree of their own.
    sizes = list(LEVELS) + [downline - sum(LEVELS)]
    if sizes[-1] < 1:
        raise SystemExit("--downline must be larger than 785")
    sponsor = {1: None}
    depth = {1: 0}
    previous = [1]
    next_id = 2
    for level, size in enumerate(sizes, start=1):
        ids = list(range(next_id, next_id + size))
        for index, pid in enumerate(ids):
            sponsor[pid] = previous[index * len(previous) // size]
            depth[pid] = level
        previous, next_id = ids, next_id + size
    members = [pid for pid in sponsor if pid != 1]
    other_root = next_id
    for pid in range(next_id, next_id + others):
        sponsor[pid] = None if pid == other_root else other_root + (pid - other_root - 1) // 10
        depth[pid] = -1
    n_promoters = next_id + others - 1

    rates = {0: micro(DIRECT_RATE)} | {lvl: micro(r) for lvl, r in enumerate(TIER_RATES, start=1)}

    # Links: 30 for P on several channels, one for each of 400 downline members and 100 others.
    link_rows = []
    link_of: dict[int, list[tuple[int, str]]] = defaultdict(list)
    link_owners = [1] * 30 + rng.sample(members, 400) + list(range(other_root, other_root + 100))
    for lid, owner in enumerate(link_owners, start=1):
        channel = CHANNELS[lid % len(CHANNELS)] if owner == 1 else rng.choice(CHANNELS)
        created = year_ago + timedelta(seconds=rng.randrange(60 * 86400))
        link_rows.append((lid, m_id, pg_id, owner, f"L{lid:07d}", "https://shop.example.com/", channel, created))
        link_of[owner].append((lid, channel))

    # Events in time order (ids follow time): P's own purchases, purchases of the downline
    # (P's overrides), and registrations credited to P.
    direct_n = int(commissions * 0.35)
    override_n = commissions - direct_n
    registrations = max(1, commissions // 20)
    customers = max(registrations, commissions * 6 // 10)
    span = int((now - year_ago).total_seconds()) - 600
    plan = []  # (second, seller, type)
    for _ in range(direct_n):
        plan.append((rng.randrange(span), 1, "purchase"))
    for _ in range(override_n):
        plan.append((rng.randrange(span), rng.choice(members), "purchase"))
    for _ in range(registrations):
        plan.append((rng.randrange(span), 1, "registration"))
    plan.sort()

    event_rows, credit_rows, touch_rows, commission_rows = [], [], [], []
    registered = 0
    bought: set[int] = set()
    for n, (second, seller, kind) in enumerate(plan, start=1):
        occurred = year_ago + timedelta(seconds=second)
        event_id = monthly_event_id(n, occurred + timedelta(seconds=1))
        processed = occurred + timedelta(seconds=2)
        lid, channel = rng.choice(link_of.get(seller) or [(None, "")])
        if kind == "registration":
            registered += 1
            customer = registered  # one registration per customer
            payload = {"type": "registration", "customer_id": f"cust-{customer}"}
            event_rows.append((event_id, m_id, pg_id, customer, "registration", "registration", "processed", None, cur, "", "",
                               None, json.dumps(payload), terms, occurred, occurred + timedelta(seconds=1), processed))
            credit_rows.append((event_id, seller, "1.000000000000", "1/1", 0, cur, 0))
            touch_rows.append((event_id, 0, "click", seller, lid, channel, occurred - timedelta(minutes=5), "1.000000000000", 0))
            continue
        customer = rng.randint(1, customers)
        stage = "repeat_purchase" if customer in bought else "first_purchase"
        bought.add(customer)
        amount = rng.randint(2000, 40000)
        order = f"o{n}"
        payload = {"type": "purchase", "customer_id": f"cust-{customer}", "order_id": order,
                   "amount": f"{amount // 100}.{amount % 100:02d}", "currency": cur}
        event_rows.append((event_id, m_id, pg_id, customer, "purchase", stage, "processed", amount, cur, order, "",
                           None, json.dumps(payload), terms, occurred, occurred + timedelta(seconds=1), processed))
        credit_rows.append((event_id, seller, "1.000000000000", "1/1", amount, cur, 0))
        touch_rows.append((event_id, 0, "click", seller, lid, channel, occurred - timedelta(minutes=30), "1.000000000000", amount))
        available = processed + timedelta(days=HOLD_DAYS)
        # The seller's own commission; P's override when the seller is in P's downline.
        shares = [(seller, 0, "direct")]
        if seller != 1:
            shares.append((1, depth[seller], "override"))
        for promoter, level, ckind in shares:
            commission_rows.append([
                0, m_id, pg_id, event_id, promoter, seller, ckind, level, times_rate(amount, rates[level], cur), cur, amount,
                f"0.{rates[level]:06d}", "pending", None, available, processed, None, None, None,
            ])
    timings["generated"] = time.monotonic() - started

    # Status by age: this month pending; last month approved once the hold is over; older
    # months paid by the batch of the month (closed 30 days after the month's end).
    lines: dict[tuple[int, datetime], int] = {}  # (promoter, month) -> line id
    line_rows, batch_rows = [], []
    batch_of: dict[datetime, int] = {}
    groups: dict[tuple[int, datetime, str], int] = defaultdict(int)
    balances: dict[tuple[int, str], int] = defaultdict(int)
    for cid, row in enumerate(commission_rows, start=1):
        row[0] = cid
        created, promoter, value = row[15], row[4], row[8]
        month = month_start(created)
        if month < last_month:
            status = "paid"
            pay_at = min(add_months(month, 1) + timedelta(days=HOLD_DAYS), now - timedelta(hours=2))
            if month not in batch_of:
                batch_of[month] = len(batch_rows) + 1
                batch_rows.append((batch_of[month], m_id, cur, f"{month:%Y-%m}", "closed", pay_at, pay_at + timedelta(days=1)))
            key = (promoter, month)
            if key not in lines:
                lines[key] = len(line_rows) + 1
                line_rows.append([lines[key], batch_of[month], promoter, 0, cur, "{}", "paid", "", pay_at + timedelta(days=1)])
            line_rows[lines[key] - 1][3] += value
            row[12], row[16], row[17], row[18] = status, lines[key], pay_at - timedelta(hours=1), pay_at + timedelta(days=1)
        elif row[14] <= now - timedelta(hours=1):
            status = "approved"
            row[12], row[17] = status, row[14]
        else:
            status = "pending"
        groups[(promoter, month, status)] += value
        balances[(promoter, {"pending": "pending", "approved": "available", "paid": "paid"}[status])] += value

    # The ledger: accounts of every promoter with commissions, the merchant's expense
    # account; a journal per commission (pending +, expense -), then per promoter and month
    # an approval (pending → available), a batch lock (available → processing) and a batch
    # paid (processing → paid), as the services write them.
    earners = sorted({row[4] for row in commission_rows})
    account_rows, account_of = [], {}
    for promoter in earners:
        for kind in ("pending", "available", "processing", "paid"):
            account_of[(promoter, kind)] = len(account_rows) + 1
            account_rows.append((len(account_rows) + 1, m_id, promoter, kind, cur, balances.get((promoter, kind), 0), True))
    expense = len(account_rows) + 1
    account_rows.append((expense, m_id, None, "expense", cur, -sum(r[8] for r in commission_rows), False))
    journal_rows, entry_rows = [], []

    def journal(kind, commission, memo, at, moves):
        jid = len(journal_rows) + 1
        journal_rows.append((jid, m_id, kind, commission, memo, at))
        for account, amount in moves:
            entry_rows.append((len(entry_rows) + 1, jid, account, amount, at))

    for row in commission_rows:
        journal("commission", row[0], f"{row[6]} on event {row[3]}", row[15],
                [(account_of[(row[4], "pending")], row[8]), (expense, -row[8])])
    for (promoter, month, status), total in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        if status == "pending":
            continue
        if status == "approved":
            at = now - timedelta(hours=1)
        else:
            line = line_rows[lines[(promoter, month)] - 1]
            at = line[8] - timedelta(days=1, hours=1)
        journal("approval", None, f"approved {month:%Y-%m}", at,
                [(account_of[(promoter, "pending")], -total), (account_of[(promoter, "available")], total)])
        if status == "paid":
            journal("batch_lock", None, f"line {line[0]}", at + timedelta(hours=1),
                    [(account_of[(promoter, "available")], -total), (account_of[(promoter, "processing")], total)])
            journal("batch_paid", None, f"line {line[0]}", line[8],
                    [(account_of[(promoter, "processing")], -total), (account_of[(promoter, "paid")], total)])
    timings["statuses and ledger"] = time.monotonic() - started - timings["generated"]
    made = make_partitions(year_ago - timedelta(days=1), now)
    if made:
        log(f"partitions for the months loaded: {len(made)}")

    with transaction.atomic(), connection.cursor() as django_cursor:
        raw = django_cursor.cursor
        raw.execute("SET LOCAL session_replication_role = replica")  # consistent by construction
        copy = Copier(raw)
        copy_started = time.monotonic()
        old = year_ago - timedelta(days=200)

        def promoter_rows():
            for pid in range(1, n_promoters + 1):
                created = old + timedelta(days=30 * max(depth[pid], 0), seconds=rng.randrange(100 * 86400))
                yield (pid, m_id, pg_id, f"p{pid}@bench.example", "P (bench)" if pid == 1 else f"Promoter {pid}",
                       sponsor[pid], f"B{pid:09d}", "standard", "active", created, created, p_user.pk if pid == 1 else None)

        copy(Promoter, ["id", "merchant", "program", "email", "name", "sponsor", "referral_code", "payout_plan", "status",
                        "created_at", "updated_at", "user"], promoter_rows())
        copy(PayoutMethod, ["id", "promoter", "kind", "paypal_email", "account_holder", "iban", "bic", "updated_at"],
             [(1, 1, "bank", "", "P (bench)", "DE89370400440532013000", "COBADEFFXXX", year_ago)])
        copy(ReferralLink, ["id", "merchant", "program", "promoter", "code", "destination_url", "channel", "created_at"], link_rows)

        # Clicks: most of them P's, over the year (more recently), the rest on other links.
        p_links = [lid for lid, _ in link_of[1]]
        other_links = [(r[0], r[3]) for r in link_rows if r[3] != 1]
        visitors = max(1, clicks // 2)
        visitor_ids = [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(visitors)]
        copy(Visitor, ["id", "first_seen_at"], ((v, year_ago) for v in visitor_ids))

        def click_rows():
            for i in range(clicks):
                if i % 4:
                    lid, owner = rng.choice(p_links), 1
                else:
                    lid, owner = rng.choice(other_links)
                at = now - timedelta(seconds=int(span * rng.random() ** 1.5))
                yield (uuid7(at), lid, m_id, pg_id, owner, rng.choice(visitor_ids), at,
                       "Mozilla/5.0 (bench)", "", hashlib.md5(str(i % 5000).encode()).hexdigest(), "", "", "", "", "",
                       False, False, "")

        copy(Click, ["id", "link", "merchant", "program", "promoter", "visitor", "created_at", "user_agent", "referrer", "ip_hash",
                     "sub1", "sub2", "sub3", "sub4", "sub5", "is_fraud", "is_duplicate", "flag_reason"], click_rows())
        copy(Customer, ["id", "merchant", "external_id", "stage", "created_at", "updated_at"],
             ((c, m_id, f"cust-{c}", "repeat_purchaser" if c in bought else "registered", year_ago, now)
              for c in range(1, customers + 1)))
        event_fields = ["id", "merchant", "program", "customer", "type", "stage", "status", "amount_minor", "currency",
                        "order_id", "refund_id", "purchase", "payload", "terms", "occurred_at", "received_at", "processed_at",
                        "click_ref", "coupon", "body_hash", "source", "warnings", "attempts"]
        copy(ConversionEvent, event_fields,
             (r + ("", "", hashlib.sha256(r[12].encode()).hexdigest(), "api", "[]", 1) for r in event_rows))
        copy(Credit, ["event", "promoter", "weight", "weight_exact", "revenue_minor", "currency", "first_position"], credit_rows)
        copy(Touchpoint, ["event", "position", "kind", "promoter", "link", "channel", "at", "weight", "revenue_minor"], touch_rows)
        copy(PayoutBatch, ["id", "merchant", "currency", "period", "status", "created_at", "closed_at"], batch_rows)
        copy(PayoutLine, ["id", "batch", "promoter", "amount_minor", "currency", "method", "status", "failure_reason",
                          "settled_at"], line_rows)
        copy(Commission, ["id", "merchant", "program", "event", "promoter", "source_promoter", "kind", "level", "amount_minor",
                          "currency", "base_minor", "rate", "status", "reverses", "available_at", "created_at", "payout_line",
                          "approved_at", "paid_at", "reason"],
             (tuple(c) + ("",) for c in commission_rows))
        copy(Account, ["id", "merchant", "promoter", "kind", "currency", "balance_minor", "tracks_balance"], account_rows)
        copy(Journal, ["id", "merchant", "kind", "commission", "memo", "created_at"], journal_rows)
        copy(Entry, ["id", "journal", "account", "amount_minor", "created_at"], entry_rows)
        models = [Promoter, PayoutMethod, ReferralLink, Customer, ConversionEvent, Credit, Touchpoint, PayoutBatch, PayoutLine,
                  Commission, Account, Journal, Entry]
        for sql in connection.ops.sequence_reset_sql(no_style(), models):
            raw.execute(sql)
        timings["COPY"] = time.monotonic() - copy_started

    # P's statements for the last 6 closed months, through the service (from the ledger).
    from payouts.statements import statement_write

    p = Promoter.objects.select_related("program").get(pk=1)
    started = time.monotonic()
    for back in range(6, 0, -1):
        statement_write(promoter=p, period=f"{add_months(this_month, -back):%Y-%m}")
    timings["statements"] = time.monotonic() - started
    p_commissions = sum(1 for r in commission_rows if r[4] == 1)
    return {
        "rows": copy.counts, "timings": timings, "p_commissions": p_commissions, "p_user": p_user, "m_user": m_user,
        "link_code": link_rows[0][4], "downline": len(members), "levels": sizes,
    }


# --- Measuring ----------------------------------------------------------------------------


def pages(loaded: dict) -> list[tuple[str, str, str, str]]:
    """(who, label, path, group): group "page" is held to the target, "download" is listed apart."""
    from django.db.models import Max

    from affiliate.models import ConversionEvent
    from payouts.models import Statement

    statement = Statement.objects.filter(promoter_id=1).order_by("-period").first()
    event = ConversionEvent.objects.aggregate(m=Max("id"))["m"]
    code = loaded["link_code"]
    return [
        ("P", "dashboard", "/portal/", "page"),
        ("P", "summary.json", "/portal/summary.json", "page"),
        ("P", "links", "/portal/links/", "page"),
        ("P", "link detail (QR)", f"/portal/links/{code}/?sub1=spring", "page"),
        ("P", "commissions", "/portal/commissions/", "page"),
        ("P", "commissions page 2", "/portal/commissions/?page=2", "page"),
        ("P", "commissions filtered", "/portal/commissions/?status=paid&kind=override&since=2000-01-01", "page"),
        ("P", "commissions last page", f"/portal/commissions/?page={max(1, -(-loaded['p_commissions'] // 50))}", "page"),
        ("P", "team", "/portal/team/", "page"),
        ("P", "payouts and statements", "/portal/payouts/", "page"),
        ("P", "payout details", "/portal/payout-details/", "page"),
        ("P", "api key", "/portal/api-key/", "page"),
        ("P", "statement PDF", f"/portal/statements/{statement.pk}.pdf", "download"),
        ("P", "statement CSV", f"/portal/statements/{statement.pk}.csv", "download"),
        ("P", "commissions CSV (all)", "/portal/commissions.csv", "download"),
        ("M", "merchant overview", "/merchant/", "merchant"),
        ("M", "merchant top promoters", "/merchant/promoters/", "merchant"),
        ("M", "merchant channels", "/merchant/channels/", "merchant"),
        ("M", "merchant conversions", "/merchant/conversions/", "merchant"),
        ("M", "merchant conversion", f"/merchant/conversions/{event}/", "merchant"),
        ("M", "merchant programs", "/merchant/programs/", "merchant"),
        ("M", "merchant approvals", "/merchant/approvals/", "merchant"),
    ]


def count_queries(client, path: str) -> tuple[int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
        if response.streaming:
            b"".join(response.streaming_content)
    return response.status_code, len(queries)


def fetch(port: int, path: str, cookie: str) -> tuple[int, int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path, headers={"Cookie": cookie, "Host": "127.0.0.1"})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, len(body)


def wait_for_port(port: int, proc, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("gunicorn exited")
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not start")


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                out.append(int(entry.name))
    return out


def measure(args, env: dict, loaded: dict) -> list[dict]:
    from django.db import connections
    from django.test import Client

    clients = {}
    cookies = {}
    for who, user in (("P", loaded["p_user"]), ("M", loaded["m_user"])):
        client = Client()
        client.force_login(user)  # a session row made by django.contrib.auth, like a login
        clients[who] = client
        cookies[who] = f"sessionid={client.cookies['sessionid'].value}"
    listing = pages(loaded)

    # The query counts, in-process on the same database.
    queries = {}
    for who, label, path, _ in listing:
        status, n = count_queries(clients[who], path)
        queries[label] = (status, n)
    connections.close_all()

    gunicorn_env = dict(env, GUNICORN_BIND=f"127.0.0.1:{args.port}", GUNICORN_WORKERS=str(args.workers))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "bench/gunicorn.conf.py", "config.wsgi"], cwd=ROOT, env=gunicorn_env,
    )
    results = []
    try:
        wait_for_port(args.port, proc)
        for who, label, path, group in listing:
            n = args.downloads if group == "download" else args.n
            for _ in range(args.warmup if group != "download" else 1):
                fetch(args.port, path, cookies[who])
            ours = [proc.pid, *children(proc.pid)]  # the master binds before it forks: ask each time
            # Our CPU: gunicorn's processes, this process, and our database's backends
            # (sampled while they live: Django reconnects after CONN_MAX_AGE).
            meter = BackendMeter(args.db_name)
            meter.start()
            cpu0 = sum(_proc_cpu_seconds(pid) for pid in ours) + time.process_time()
            busy0, total0 = _system_busy()
            times, sizes, statuses = [], set(), set()
            for _ in range(n):
                started = time.perf_counter()
                status, size = fetch(args.port, path, cookies[who])
                times.append(1000 * (time.perf_counter() - started))
                statuses.add(status)
                sizes.add(size)
            busy1, total1 = _system_busy()
            cpu1 = sum(_proc_cpu_seconds(pid) for pid in ours) + time.process_time()
            stopped = meter.stop()  # (backends' CPU, [how many, their parallel workers' CPU,] machine CPU)
            backend_cpu = stopped[0] + (stopped[2] if len(stopped) == 4 else 0.0)
            wall = max(total1 - total0, 1e-9)
            machine = busy1 - busy0
            mine = max(0.0, cpu1 - cpu0) + backend_cpu
            results.append({
                "who": who, "label": label, "path": path, "group": group, "n": n,
                "p50": statistics.median(times), "p95": percentile(times, share=0.95), "max": max(times),
                "status": sorted(statuses), "bytes": max(sizes), "queries": queries[label][1],
                "query_status": queries[label][0],
                "busy_percent": 100 * machine / wall,
                "other_percent": 100 * max(0.0, machine - mine) / wall,
            })
            r = results[-1]
            log(f"  {label:<28} p50 {r['p50']:7.1f}  p95 {r['p95']:7.1f}  max {r['max']:7.1f} ms  "
                f"{r['queries']:>3} queries  status {r['status']}  other {r['other_percent']:.0f}%")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return results


def report(args, loaded: dict, results: list[dict], load_s: float, busy_before: float) -> bool:
    from django.db import connections

    print()
    print(f"Portal pages: {os.cpu_count()} CPUs ({cpu_model()}); gunicorn {args.workers} sync workers (bench/gunicorn.conf.py), "
          f"DEBUG=0, PostgreSQL {connections['default'].pg_version // 10000} on the same machine")
    print(f"  P: {loaded['p_commissions']:,} commissions, a downline of {loaded['downline']:,} in 5 levels "
          f"({' + '.join(f'{n:,}' for n in loaded['levels'])}); loaded in {load_s:.0f} s")
    print(f"  {args.n} sequential requests per page after {args.warmup} warm-up ({args.downloads} per download); "
          f"the machine was {busy_before:.0f}% busy just before")
    print()
    header = f"  {'page':<28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'queries':>8} {'KB':>7} {'busy %':>7} {'other %':>8}  target"
    print(header)
    print("  " + "-" * (len(header) - 2))
    met_all = True
    for r in results:
        if r["group"] == "download":
            verdict = "(download)"
        else:
            ok = r["p95"] < TARGET_MS and r["status"] == [200]
            met_all &= ok or r["group"] == "merchant"
            verdict = "met" if ok else "MISSED"
        print(f"  {r['label']:<28} {r['p50']:>8.1f} {r['p95']:>8.1f} {r['max']:>8.1f} {r['queries']:>8} {r['bytes'] / 1024:>7.0f} "
              f"{r['busy_percent']:>7.0f} {r['other_percent']:>8.0f}  {verdict}")
    others = [r["other_percent"] for r in results]
    print()
    print(f"  other work on the machine while measuring: {statistics.median(others):.0f}% of both cores (median over pages, "
          f"max {max(others):.0f}%)")
    print(f"  [{'met' if met_all else 'MISSED'}] every portal page under {TARGET_MS:.0f} ms (p95)")
    return met_all


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commissions", type=int, default=100_000, help="P's commissions (default 100,000)")
    parser.add_argument("--downline", type=int, default=2_000, help="members under P, 5 levels (default 2,000)")
    parser.add_argument("--others", type=int, default=1_000, help="promoters outside P's tree (default 1,000)")
    parser.add_argument("--clicks", type=int, default=200_000, help="clicks, three in four on P's links (default 200,000)")
    parser.add_argument("-n", type=int, default=30, help="requests per page (default 30)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--downloads", type=int, default=5, help="requests per download (default 5)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL (no database)")
    parser.add_argument("--db-name", default="bench_portal")
    parser.add_argument("--reuse", action="store_true", help="measure the kept database again, without reloading")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()

    database_url = f"{args.pg.rstrip('/')}/{args.db_name}"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL=database_url, SECRET_KEY="bench-" + secrets.token_hex(32),
        DEBUG="0", ALLOWED_HOSTS="127.0.0.1,localhost,testserver", SECURE_SSL_REDIRECT="0", PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    env.pop("REDIS_URL", None)  # sessions live in the database; nothing is queued
    total_started = time.monotonic()
    started = time.monotonic()
    if not args.reuse:
        log(f"Database {database_url}: recreating and migrating")
        recreate_database(args.pg, args.db_name)
        migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                                 capture_output=True, text=True)
        if migrate.returncode != 0:
            log(migrate.stdout + migrate.stderr)
            return 1
    static = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=ROOT, env=env,
                            capture_output=True, text=True)  # DEBUG=0 serves the hashed names (whitenoise)
    if static.returncode != 0:
        log(static.stdout + static.stderr)
        return 1
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS",
                                           "SECURE_SSL_REDIRECT")})
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connections

    if args.reuse:
        from django.db.models import Count

        from payouts.models import Commission
        from promoters.models import Promoter

        User = get_user_model()
        link = Promoter.objects.get(pk=1).links.order_by("id").first()
        loaded = {
            "p_user": User.objects.get(username="p@bench.example"), "m_user": User.objects.get(username="owner@bench.example"),
            "link_code": link.code, "p_commissions": Commission.objects.filter(promoter_id=1).count(),
            "downline": args.downline, "levels": [], "rows": dict(Commission.objects.values("status").annotate(n=Count("id")).values_list("status", "n")),
        }
        load_s = 0.0
    else:
        log(f"Bulk-loading: P with {args.commissions:,} commissions and a downline of {args.downline:,}")
        loaded = load(commissions=args.commissions, downline=args.downline, others=args.others, clicks=args.clicks,
                      rng=random.Random(args.seed))
        for step, seconds in loaded["timings"].items():
            log(f"  {step}: {seconds:.1f} s")
        for label, n in loaded["rows"].items():
            log(f"  {label:<28} {n:>10,}")
        log(f"VACUUM (ANALYZE): {vacuum_analyze():.1f} s")
        load_s = time.monotonic() - started
    connections.close_all()

    busy0, total0 = _system_busy()
    time.sleep(1)
    busy1, total1 = _system_busy()
    busy_before = 100 * (busy1 - busy0) / max(total1 - total0, 1e-9)
    log(f"Measuring (the machine is {busy_before:.0f}% busy)")
    results = measure(args, env, loaded)
    met = report(args, loaded, results, load_s, busy_before)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "rows": loaded["rows"], "load_s": load_s}, indent=2,
                                              default=str))
    connections.close_all()
    if args.keep or args.reuse:
        log(f"Database kept: {database_url}")
    else:
        drop_database(args.pg, args.db_name)
    log(f"bench/portal.py done in {time.monotonic() - total_started:.0f} s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
