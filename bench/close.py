#!/usr/bin/env python
"""Benchmark of the month-end close at scale: ``manage.py close_month`` on a month of a
million commissions for a hundred thousand promoters.

1. Creates a fresh PostgreSQL database (default ``bench_close``), migrates it, creates one
   merchant and one USD program through the services (hold 14 days, tier rates 5/3/2/1%)
   and its payout policy (minimum payout, a guaranteed minimum and a bonus for a few
   hundred recent promoters on the guaranteed plan).
2. Bulk-loads October 2026 with COPY, never through the API: promoters in a 5-level tree
   (10 + 90 + 900 + 9,000 + 90,000 by default), customers, purchase events spread over the
   month (processed, with their stage and terms snapshot), their credits, a direct
   commission for the selling leaf and overrides for its 4 sponsors (integer arithmetic,
   half-up, as the rules compute them; all pending, available 14 days after the sale), a
   few refunds with their credits and reversals, payout methods for half the promoters,
   and the ledger as the services write it: four accounts per promoter, the merchant's
   expense account, one journal per commission with its two entries at the commission's
   time, and the running balances. Then VACUUM ANALYZE, and ``audit_ledger(recompute=False)``
   must be clean before anything is timed.
3. Times ``manage.py close_month 2026-10`` in a subprocess: total wall time, each phase (from
   the progress lines on stderr, timestamped here as they arrive), rows written and the
   subprocess's peak memory (its VmHWM: ``wait4``'s maxrss would count this process's own,
   forked). Runs it a second time and checks it changes nothing; runs the audit again.

Target: the close in under 60 s on the 2-core machine. See bench/README.md, "Month-end close".

    .venv/bin/python bench/close.py [--promoters 100000 --commissions 1000000] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from benchlib import (
    Copier,
    checkpoint,
    cpu_model,
    drop_database,
    level_sizes,
    log,
    make_partitions,
    monthly_event_id,
    recreate_database,
    vacuum_analyze,
    wait_for_quiet,
)
from benchlib import proc_cpu_and_start as _proc_cpu_and_start
from benchlib import proc_cpu_seconds as _proc_cpu_seconds
from benchlib import system_busy as _system_busy

ROOT = Path(__file__).resolve().parent.parent


TARGET_SECONDS = 60.0
PERIOD = "2026-10"
MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 11, 1, tzinfo=UTC)
HOLD_DAYS = 14
TIER_RATES = ["0.05", "0.03", "0.02", "0.01"]
FIRST_RATE, REPEAT_RATE = "0.10", "0.05"  # the program defaults, stated here for the arithmetic
MICRO = 1_000_000

# The close's progress lines (payouts/closing.py) that open each phase.
PHASES = [
    ("plans (guaranteed minimum, bonus)", "applying payout plans"),
    ("batch: approve what is due + claim it, lock lines", "payout batch"),
    ("approve the rest (promoters without a line)", "approving the other commissions"),
    ("statements (alongside the batch: the wait for them)", "writing statements"),
    ("reconciliation (with the ledger-wide audit)", "reconciling events"),
]


def mem_total_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def micro(rate: str) -> int:
    whole, _, frac = rate.partition(".")
    return int(whole) * MICRO + int((frac + "000000")[:6])


def times_rate(base_minor: int, rate_micro: int, currency: str = "USD") -> int:
    """base × rate in minor units, rounded by the money helper as the rules round."""
    from core import money

    base = money.from_minor(base_minor, currency)
    return money.to_minor(money.multiply(base, Decimal(rate_micro).scaleb(-6), currency), currency)


def prorate(amount: int, part: int, whole: int, currency: str = "USD") -> int:
    """money.prorate in minor units: amount × part / whole."""
    from core import money

    a, p, w = (money.from_minor(x, currency) for x in (amount, part, whole))
    return money.to_minor(money.prorate(a, p, w, currency), currency)


# --- CPU accounting (the machine is shared: say how busy it was) ----------------------


def _backends(database: str) -> tuple[list[int], list[int]]:
    """PostgreSQL backends connected to our database (other databases are other work), and
    the parallel workers of those backends (their title names the backend, not the database)."""
    pids, titles = [], {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() != "postgres":
                    continue
                titles[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    pids = [pid for pid, title in titles.items() if f" {database} " in title]
    workers = [
        pid for pid, title in titles.items()
        if any(title.rstrip().endswith(f"parallel worker for PID {backend}") for backend in pids)
    ]
    return pids, workers


def _peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory since it exec'd (VmHWM). Not ``ru_maxrss`` from
    ``wait4``: a child's counts the high-water mark of the memory it was forked with, this
    benchmark's own (the generated month, several hundred MB), before it exec'd."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class BackendMeter(threading.Thread):
    """Samples the CPU seconds of our database's backends and of their parallel workers
    while the close runs (every 0.2 s: the last fraction of a second of a process before it
    exits is not seen)."""

    def __init__(self, database: str):
        super().__init__(daemon=True)
        self.database, self.seen, self.workers, self.done = database, {}, {}, threading.Event()
        self.start_busy = _system_busy()
        self.child, self.peak_rss_mb = None, 0.0

    def sample_child(self) -> None:
        if self.child is not None:
            self.peak_rss_mb = max(self.peak_rss_mb, _peak_rss_mb(self.child))

    def run(self) -> None:
        while not self.done.is_set():
            backends, workers = _backends(self.database)
            for pid in backends:
                self.seen.setdefault(pid, [_proc_cpu_seconds(pid), 0.0])[1] = _proc_cpu_seconds(pid)
            for pid in workers:  # born for one query: all of its CPU is ours
                cpu, started = _proc_cpu_and_start(pid)
                if started:
                    self.workers[(pid, started)] = cpu
            self.sample_child()
            self.done.wait(0.2)

    def stop(self) -> tuple[float, float, int, float]:
        """(CPU seconds of our backends, how many there were, CPU seconds of their parallel
        workers, CPU seconds used by the whole machine)."""
        self.done.set()
        self.join()
        busy1, _ = _system_busy()
        return (
            sum(last - first for first, last in self.seen.values()), len(self.seen), sum(self.workers.values()),
            busy1 - self.start_busy[0],
        )


# --- Database -------------------------------------------------------------------------


# --- The month, generated --------------------------------------------------------------


class Month:
    """Everything to load, in plain lists (ids are assigned here, 1-based)."""

    def __init__(self, *, promoters: int, commissions: int, guaranteed: int, refund_share: float, rng: random.Random):
        self.sizes = level_sizes(promoters)
        self.promoters = promoters
        # The tree: ids level by level; each node's sponsor spreads evenly over the level above.
        self.sponsor = [0] * (promoters + 1)  # 0: none
        self.level_of = [0] * (promoters + 1)
        first = 1
        previous: range | None = None
        for level, size in enumerate(self.sizes, start=1):
            ids = range(first, first + size)
            for index, pid in enumerate(ids):
                self.level_of[pid] = level
                if previous is not None:
                    self.sponsor[pid] = previous[index * len(previous) // size]
            previous = ids
            first += size
        self.leaves = previous
        self.guaranteed = set(rng.sample(list(self.leaves), min(guaranteed, len(self.leaves))))

        # Purchases: one direct + 4 overrides each.
        purchases = max(1, commissions // 5)
        customers = max(1, purchases * 3 // 4)
        self.customer_leaf = [0] + [rng.choice(self.leaves) for _ in range(customers)]  # 1-based
        span = int((MONTH_END - MONTH_START).total_seconds()) - 120
        p_customer = [0] * purchases
        p_second = [0] * purchases
        p_amount = [0] * purchases
        for i in range(purchases):
            p_customer[i] = i + 1 if i < customers else rng.randint(1, customers)
            p_second[i] = rng.randrange(span)
            p_amount[i] = rng.randint(6000, 60000)  # 60.00 .. 600.00
        # The first purchase of each customer (in time) is their first_purchase.
        first_of: dict[int, int] = {}
        for i in range(purchases):
            c = p_customer[i]
            if c not in first_of or p_second[i] < p_second[first_of[c]]:
                first_of[c] = i
        p_first = [False] * purchases
        for i in first_of.values():
            p_first[i] = True
        self.customer_stage = ["" for _ in range(customers + 1)]
        for i in range(purchases):
            c = p_customer[i]
            self.customer_stage[c] = "repeat_purchaser" if self.customer_stage[c] else "first_purchase"

        # Refunds: a share of the purchases, 1 hour to 5 days later within the month; half
        # refund the whole order, half a part of it.
        refunds = []
        for i in rng.sample(range(purchases), int(purchases * refund_share)):
            room = span - p_second[i]
            if room < 3600:
                continue
            later = p_second[i] + rng.randint(3600, min(room, 5 * 86400))
            amount = p_amount[i] if rng.random() < 0.5 else max(1, p_amount[i] * rng.randint(10, 90) // 100)
            refunds.append((later, i, amount))

        # Events in the order they happened: ids follow time.
        events = [(p_second[i], 0, i) for i in range(purchases)] + [(s, 1, r) for r, (s, _, _) in enumerate(refunds)]
        events.sort()
        self.events = events  # (second, is_refund, index)
        self.p_customer, self.p_second, self.p_amount, self.p_first = p_customer, p_second, p_amount, p_first
        self.refunds = refunds
        self.customers = customers
        self.purchases = purchases
        self.rates = [micro(FIRST_RATE), micro(REPEAT_RATE)]
        self.tiers = [micro(r) for r in TIER_RATES]

    def chain(self, leaf: int) -> list[int]:
        out = [leaf]
        while self.sponsor[out[-1]] and len(out) < 1 + len(self.tiers):
            out.append(self.sponsor[out[-1]])
        return out


def at(second: int) -> datetime:
    return MONTH_START + timedelta(seconds=second)


# --- Loading ---------------------------------------------------------------------------


def load(month: Month, *, policy: dict, rng: random.Random) -> dict:
    from django.core.management.color import no_style
    from django.db import connection, transaction

    from affiliate.models import ConversionEvent, Customer
    from attribution.models import Credit
    from merchants.services import merchant_create, program_create
    from payouts.models import Account, Commission, Entry, Journal, PayoutMethod, PayoutPolicy
    from promoters.models import Promoter

    merchant = merchant_create(name="Bench close shop", domains=["shop.example.com"]).merchant
    program = program_create(
        merchant=merchant, name="Bench", currency="USD", hold_days=HOLD_DAYS, tier_rates=TIER_RATES,
        first_purchase_rate=FIRST_RATE, repeat_purchase_rate=REPEAT_RATE,
    )
    PayoutPolicy.objects.update_or_create(program=program, defaults=policy)
    terms = json.dumps(program.terms())
    m_id, pg_id, cur = merchant.pk, program.pk, "USD"
    timings: dict[str, float] = {}
    made = make_partitions(MONTH_START, MONTH_END - timedelta(seconds=1))
    if made:
        log(f"partitions for the month: {', '.join(made)}")

    with transaction.atomic(), connection.cursor() as django_cursor:
        raw = django_cursor.cursor
        # The rows are consistent by construction; skip the per-row foreign-key triggers.
        raw.execute("SET LOCAL session_replication_role = replica")
        copy = Copier(raw)

        started = time.monotonic()
        old = datetime(2025, 1, 1, tzinfo=UTC)
        recent = datetime(2026, 8, 15, tzinfo=UTC)

        def promoter_rows():
            for pid in range(1, month.promoters + 1):
                guaranteed = pid in month.guaranteed
                if guaranteed:  # joined in the last 2.5 months: in their guaranteed months
                    created = recent + timedelta(seconds=rng.randrange(66 * 86400))
                else:
                    created = old + timedelta(seconds=rng.randrange(590 * 86400)) - timedelta(days=40 * (5 - month.level_of[pid]))
                yield (
                    pid, m_id, pg_id, f"p{pid}@bench.example", f"Promoter {pid}", month.sponsor[pid] or None,
                    f"B{pid:09d}", None, None, None, "guaranteed" if guaranteed else "standard", "active", created, created,
                )

        copy(Promoter, ["id", "merchant", "program", "email", "name", "sponsor", "referral_code", "customer_id",
                        "coupon_code", "commission_rate", "payout_plan", "status", "created_at", "updated_at"],
             promoter_rows())

        def method_rows():
            for pid in range(1, month.promoters + 1, 2):
                if pid % 4 == 1:
                    yield (pid, pid, "paypal", f"p{pid}@bench.example", "", "", "", MONTH_START)
                else:
                    yield (pid, pid, "bank", "", f"Promoter {pid}", f"DE{pid:020d}", "COBADEFFXXX", MONTH_START)

        copy(PayoutMethod, ["id", "promoter", "kind", "paypal_email", "account_holder", "iban", "bic", "updated_at"], method_rows())

        copy(Customer, ["id", "merchant", "external_id", "stage", "created_at", "updated_at"],
             ((c, m_id, f"cust-{c}", month.customer_stage[c] or "visitor", MONTH_START, MONTH_END - timedelta(hours=1))
              for c in range(1, month.customers + 1)))
        timings["promoters, payout methods, customers"] = time.monotonic() - started

        # Events, credits, commissions, journals, entries: one pass over the events in time
        # order to give everything its id, then a COPY per table.
        started = time.monotonic()
        event_id_of_purchase = [0] * month.purchases
        first_commission_of_purchase = [0] * month.purchases
        event_rows, credit_rows, commission_rows = [], [], []
        balances = [0] * (month.promoters + 1)
        commission_id = 0
        for n, (second, is_refund, index) in enumerate(month.events, start=1):
            occurred = at(second)
            event_id = monthly_event_id(n, occurred + timedelta(seconds=1))
            processed = occurred + timedelta(seconds=2)
            if not is_refund:
                i = index
                event_id_of_purchase[i] = event_id
                customer = month.p_customer[i]
                leaf = month.customer_leaf[customer]
                amount = month.p_amount[i]
                stage = "first_purchase" if month.p_first[i] else "repeat_purchase"
                order = f"o{i + 1}"
                payload = {"type": "purchase", "customer_id": f"cust-{customer}", "order_id": order,
                           "amount": f"{amount // 100}.{amount % 100:02d}", "currency": cur}
                event_rows.append((event_id, m_id, pg_id, customer, "purchase", stage, "processed", amount, cur, order, "",
                                   None, json.dumps(payload), terms, occurred, occurred + timedelta(seconds=1), processed))
                credit_rows.append((event_id, leaf, "1.000000000000", "1/1", amount, cur, 0))
                first_commission_of_purchase[i] = commission_id + 1
                available = occurred + timedelta(days=HOLD_DAYS)
                for level, promoter in enumerate(month.chain(leaf)):
                    rate = month.rates[0 if month.p_first[i] else 1] if level == 0 else month.tiers[level - 1]
                    value = times_rate(amount, rate, cur)
                    commission_id += 1
                    commission_rows.append((
                        commission_id, m_id, pg_id, event_id, promoter, leaf, "direct" if level == 0 else "override", level,
                        value, cur, amount, f"0.{rate:06d}", "pending", None, available, processed,
                    ))
                    balances[promoter] += value
            else:
                later, i, refund = month.refunds[index]
                customer = month.p_customer[i]
                leaf = month.customer_leaf[customer]
                order = f"o{i + 1}"
                whole = month.p_amount[i]
                completes = refund >= whole
                payload = {"type": "refund", "customer_id": f"cust-{customer}", "order_id": order,
                           "amount": f"{refund // 100}.{refund % 100:02d}", "currency": cur}
                event_rows.append((event_id, m_id, pg_id, customer, "refund", "refund", "processed", refund, cur, order,
                                   f"r{i + 1}", event_id_of_purchase[i], json.dumps(payload), terms, occurred,
                                   occurred + timedelta(seconds=1), processed))
                credit_rows.append((event_id, leaf, "1.000000000000", "1/1", -refund, cur, 0))
                first = first_commission_of_purchase[i]
                for parent in range(first, first + len(month.chain(leaf))):
                    p = commission_rows[parent - 1]
                    value = p[8]
                    take = value if completes else min(prorate(value, refund, whole, cur), value)
                    if take <= 0:
                        continue
                    commission_id += 1
                    commission_rows.append((
                        commission_id, m_id, pg_id, event_id, p[4], p[5], "reversal", p[7], -take, cur, p[10], p[11],
                        "pending", parent, p[14], processed,
                    ))
                    balances[p[4]] += -take
        timings["computing the month"] = time.monotonic() - started

        started = time.monotonic()
        event_fields = ["id", "merchant", "program", "customer", "type", "stage", "status", "amount_minor", "currency",
                        "order_id", "refund_id", "purchase", "payload", "terms", "occurred_at", "received_at", "processed_at",
                        "click_ref", "coupon", "body_hash", "source", "warnings", "attempts"]
        copy(ConversionEvent, event_fields,
             (r + ("", "", hashlib.sha256(r[12].encode()).hexdigest(), "api", "[]", 1) for r in event_rows))
        copy(Credit, ["event", "promoter", "weight", "weight_exact", "revenue_minor", "currency", "first_position"],
             credit_rows)
        del event_rows, credit_rows
        timings["events, credits"] = time.monotonic() - started

        started = time.monotonic()
        copy(Commission, ["id", "merchant", "program", "event", "promoter", "source_promoter", "kind", "level", "amount_minor",
                          "currency", "base_minor", "rate", "status", "reverses", "available_at", "created_at", "reason"],
             (c + ("",) for c in commission_rows))
        timings["commissions"] = time.monotonic() - started

        # The ledger, as _write → ledger.creation → ledger.post writes it.
        started = time.monotonic()
        expense_id = 4 * month.promoters + 1

        def account_rows():
            for pid in range(1, month.promoters + 1):
                base = 4 * (pid - 1)
                yield (base + 1, m_id, pid, "pending", cur, balances[pid], True)
                yield (base + 2, m_id, pid, "available", cur, 0, True)
                yield (base + 3, m_id, pid, "processing", cur, 0, True)
                yield (base + 4, m_id, pid, "paid", cur, 0, True)
            yield (expense_id, m_id, None, "expense", cur, 0, False)

        copy(Account, ["id", "merchant", "promoter", "kind", "currency", "balance_minor", "tracks_balance"], account_rows())
        copy(Journal, ["id", "merchant", "kind", "commission", "memo", "created_at"],
             ((c[0], m_id, "reversal" if c[6] == "reversal" else "commission", c[0], f"{c[6]} on event {c[3]}", c[15])
              for c in commission_rows))

        def entry_rows():
            for c in commission_rows:
                j, promoter, value, created = c[0], c[4], c[8], c[15]
                yield (2 * j - 1, j, 4 * (promoter - 1) + 1, value, created)
                yield (2 * j, j, expense_id, -value, created)

        copy(Entry, ["id", "journal", "account", "amount_minor", "created_at"], entry_rows())
        timings["ledger"] = time.monotonic() - started

        models = [Promoter, PayoutMethod, Customer, ConversionEvent, Credit, Commission, Account, Journal, Entry]
        for sql in connection.ops.sequence_reset_sql(no_style(), models):
            raw.execute(sql)
    return {"merchant": merchant, "program": program, "rows": copy.counts, "timings": timings}


# --- The close --------------------------------------------------------------------------


def picture() -> dict:
    """Counts and sums that a second close must leave exactly as they are."""
    from django.db.models import Count, Sum

    from payouts.models import (
        Account,
        Adjustment,
        Commission,
        Entry,
        Journal,
        MonthClose,
        PayoutBatch,
        PayoutLine,
        Statement,
    )

    return {
        "commissions": dict(Commission.objects.values("status").annotate(n=Count("id")).values_list("status", "n")),
        "commissions_in_lines": Commission.objects.filter(payout_line__isnull=False).count(),
        "journals": dict(Journal.objects.values("kind").annotate(n=Count("id")).values_list("kind", "n")),
        "entries": Entry.objects.count(),
        "balances": dict(
            Account.objects.filter(promoter__isnull=False).values("kind").annotate(t=Sum("balance_minor")).values_list("kind", "t")
        ),
        "adjustments": Adjustment.objects.count(),
        "batches": PayoutBatch.objects.count(),
        "lines": PayoutLine.objects.count(),
        "lines_total_minor": PayoutLine.objects.aggregate(t=Sum("amount_minor"))["t"] or 0,
        "statements": Statement.objects.count(),
        "month_closes": MonthClose.objects.count(),
    }


def run_close(env: dict, database: str) -> dict:
    """manage.py close_month in a subprocess; its stderr lines timestamped as they arrive."""
    meter = BackendMeter(database)
    meter.start()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "close_month", PERIOD], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
    )
    meter.child = proc.pid
    lines: list[tuple[float, str]] = []
    out: list[str] = []

    def read_out():
        out.extend(proc.stdout)

    reader = threading.Thread(target=read_out, daemon=True)
    reader.start()
    for line in proc.stderr:
        meter.sample_child()  # "done in" is its last line
        lines.append((time.monotonic() - started, line.rstrip("\n")))
        log(f"    [{lines[-1][0]:7.2f} s] {lines[-1][1].strip()}")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    backend_cpu, backends, workers_cpu, machine_cpu = meter.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    phases: dict[str, float] = {}
    marks = []
    for name, needle in PHASES:
        hit = next((t for t, text in lines if needle in text), None)
        if hit is not None:
            marks.append((name, hit))
    ends = [t for _, t in marks[1:]] + [next((t for t, text in lines if "done in" in text), wall)]
    for (name, begin), end in zip(marks, ends[: len(marks)], strict=True):
        phases[name] = end - begin
    if marks:
        phases["start-up (Django, before the first line)"] = marks[0][1]
    # "(written alongside in X s, then the reconciliation's figures of the month in Y s; ...)"
    alongside = next((text for _, text in lines if "written alongside in" in text), None)
    alongside_s = None
    if alongside is not None:
        words = alongside.replace(",", " ").replace(";", " ").split()
        alongside_s = {"statements": float(words[words.index("in") + 1]), "figures": float(words[words.index("month") + 2])}
    return {
        "alongside_s": alongside_s,
        "returncode": proc.returncode,
        "wall_s": wall,
        "phases_s": phases,
        "stdout": "".join(out).strip(),
        "stderr": [text for _, text in lines],
        "peak_rss_mb": meter.peak_rss_mb,
        "maxrss_mb": usage.ru_maxrss / 1024,  # includes this benchmark's own memory, forked (see _peak_rss_mb)
        "cpu_user_s": usage.ru_utime,
        "cpu_sys_s": usage.ru_stime,
        "backend_cpu_s": backend_cpu,
        "backends": backends,
        "parallel_workers_cpu_s": workers_cpu,
        # CPU the rest of the machine used meanwhile (other people's work, PostgreSQL's own
        # background processes, the kernel), in cores on average.
        "other_cores": max(0.0, machine_cpu - usage.ru_utime - usage.ru_stime - backend_cpu - workers_cpu) / wall,
    }


def audit() -> tuple[object, float]:
    from payouts.audit import audit_ledger

    started = time.monotonic()
    report = audit_ledger(recompute=False)
    return report, time.monotonic() - started


def show_audit(label: str, report, seconds: float) -> None:
    state = "clean" if report.clean else f"{len(report.differences)} DIFFERENCE(S)"
    print(f"{label}: {state} ({report.journals:,} journals, {report.accounts:,} accounts, "
          f"{report.commissions:,} commissions; {seconds:.1f} s)")
    for difference in report.differences[:10]:
        print(f"  {difference}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--promoters", type=int, default=100_000, help="promoters in the 5-level tree (default 100,000)")
    parser.add_argument("--commissions", type=int, default=1_000_000, help="commissions of the month (default 1,000,000)")
    parser.add_argument("--guaranteed", type=int, default=300, help="recent leaf promoters on the guaranteed plan (default 300)")
    parser.add_argument("--refunds", type=float, default=0.01, help="share of purchases refunded (default 0.01)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL (no database)")
    parser.add_argument("--db-name", default="bench_close", help="database to (re)create (default bench_close)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    parser.add_argument("--quiet-wait", type=float, default=120, help="seconds to wait for an idle machine before each close (default 120)")
    parser.add_argument("--load-only", action="store_true", help="load and check, then stop and keep the database (to profile the close)")
    args = parser.parse_args()

    if datetime.now(UTC) < MONTH_END:
        log(f"{PERIOD} has not ended yet on this clock; close_month would refuse it.")
        return 2
    rng = random.Random(args.seed)
    database_url = f"{args.pg.rstrip('/')}/{args.db_name}"
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings", DATABASE_URL=database_url, SECRET_KEY="bench-" + secrets.token_hex(32),
        DEBUG="0", ALLOWED_HOSTS="127.0.0.1,localhost", PYTHONUNBUFFERED="1", LOG_LEVEL="WARNING",
    )
    env.pop("REDIS_URL", None)  # nothing here is queued; the close runs in its own process

    total_started = time.monotonic()
    log(f"Database {database_url}: recreating and migrating")
    recreate_database(args.pg, args.db_name)
    started = time.monotonic()
    migrate = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True)
    if migrate.returncode != 0:
        log(migrate.stdout + migrate.stderr)
        return 1
    migrate_s = time.monotonic() - started

    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS")})
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connections

    policy = {
        "minimum_payout_minor": 2000, "guaranteed_minimum_minor": 5000, "guaranteed_months": 3,
        "activity_min_clicks": 0, "activity_min_conversions": 1,
        "bonus_revenue_threshold_minor": 50000, "bonus_rate": "0.02",
    }
    log(f"Generating {args.promoters:,} promoters and ~{args.commissions:,} commissions for {PERIOD}")
    started = time.monotonic()
    month = Month(promoters=args.promoters, commissions=args.commissions, guaranteed=args.guaranteed,
                  refund_share=args.refunds, rng=rng)
    generate_s = time.monotonic() - started
    log(f"  tree {' + '.join(f'{n:,}' for n in month.sizes)}; {month.purchases:,} purchases, "
        f"{len(month.refunds):,} refunds, {month.customers:,} customers ({generate_s:.1f} s)")
    log("Bulk-loading with COPY")
    started = time.monotonic()
    loaded = load(month, policy=policy, rng=rng)
    load_s = time.monotonic() - started
    for step, seconds in loaded["timings"].items():
        log(f"  {step}: {seconds:.1f} s")
    log("VACUUM (ANALYZE)")
    vacuum_s = vacuum_analyze()
    print(f"Loaded in {load_s:.1f} s (+ migrate {migrate_s:.1f} s, generate {generate_s:.1f} s, VACUUM ANALYZE {vacuum_s:.1f} s):")
    for label, n in loaded["rows"].items():
        print(f"  {label:<28} {n:>10,}")
    before_audit, before_audit_s = audit()
    show_audit("audit_ledger(recompute=False) before the close", before_audit, before_audit_s)
    if not before_audit.clean:
        return 1
    before = picture()
    connections.close_all()
    if args.load_only:
        log(f"Loaded and kept: {database_url}")
        return 0

    results = {}
    for run in ("first", "second"):
        checkpoint(database_url)
        busy = wait_for_quiet(
            args.quiet_wait, warning="the machine is {busy:.0f}% busy with other work; the times will be longer"
        )
        log(f"manage.py close_month {PERIOD} ({run} run; the machine was {busy:.0f}% busy just before)")
        results[run] = run_close(env, args.db_name)
        results[run]["busy_before_percent"] = busy
        if results[run]["returncode"] not in (0, 1):
            log("\n".join(results[run]["stderr"][-30:]))
            return 1
        results[run]["picture"] = picture()
        connections.close_all()
    first, second = results["first"], results["second"]
    after_audit, after_audit_s = audit()

    print()
    print(
        f"Month-end close: {os.cpu_count()} CPUs ({cpu_model()}), {mem_total_gb():.0f} GB RAM, PostgreSQL "
        f"{connections['default'].pg_version // 10000} on the same machine; {args.promoters:,} promoters, "
        f"{loaded['rows'].get('payouts.Commission', 0):,} commissions"
    )
    print(f"  first run:  {first['stdout'].splitlines()[0] if first['stdout'] else '(no output)'}")
    print(f"  {'phase':<50} {'seconds':>8}")
    for name, seconds in first["phases_s"].items():
        print(f"  {name:<50} {seconds:>8.1f}")
    print(f"  {'total wall time (subprocess)':<50} {first['wall_s']:>8.1f}")
    if first["alongside_s"]:
        print(f"  on the second connection, alongside the plans and the batch: statements {first['alongside_s']['statements']:.1f} s, "
              f"then the reconciliation's figures of the month {first['alongside_s']['figures']:.1f} s")
    print(f"  peak memory of the close_month process (VmHWM): {first['peak_rss_mb']:.0f} MB "
          f"(ru_maxrss {first['maxrss_mb']:.0f} MB counts this benchmark's own, forked)")
    print(f"  CPU: close_month process {first['cpu_user_s'] + first['cpu_sys_s']:.1f} s, its PostgreSQL backends "
          f"({first['backends']}) {first['backend_cpu_s']:.1f} s and their parallel workers {first['parallel_workers_cpu_s']:.1f} s; "
          f"other work on the machine meanwhile: {first['other_cores']:.2f} cores on average "
          f"({first['busy_before_percent']:.0f}% busy just before)")
    p0, p1, p2 = before, first["picture"], second["picture"]
    approved = p1["commissions"].get("approved", 0) - p0["commissions"].get("approved", 0)
    print(f"  rows written: {approved:,} commissions approved, {p1['adjustments']:,} adjustments, {p1['lines']:,} payout lines "
          f"({p1['lines_total_minor'] / 100:,.2f} USD), {p1['statements']:,} statements, "
          f"{sum(p1['journals'].values()) - sum(p0['journals'].values()):,} journals, {p1['entries'] - p0['entries']:,} entries")
    met = first["wall_s"] < TARGET_SECONDS and first["returncode"] == 0
    print(f"  [{'met' if met else 'MISSED'}] close_month under {TARGET_SECONDS:.0f} s: {first['wall_s']:.1f} s")
    unchanged = p1 == p2
    print(f"  second run: {second['stdout'].splitlines()[0] if second['stdout'] else '(no output)'}")
    print(f"  second run changed nothing: {'yes' if unchanged else 'NO'} ({second['wall_s']:.1f} s)")
    if not unchanged:
        for key in p1:
            if p1[key] != p2[key]:
                print(f"    {key}: {p1[key]} -> {p2[key]}")
    show_audit("audit_ledger(recompute=False) after the close", after_audit, after_audit_s)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "promoters": args.promoters, "rows": loaded["rows"], "load_s": load_s, "loader_steps_s": loaded["timings"],
            "first": {k: v for k, v in first.items() if k != "stderr"}, "second": {k: v for k, v in second.items() if k != "stderr"},
            "before": before, "audit_clean": after_audit.clean,
        }, indent=2, default=str))
    connections.close_all()
    if args.keep:
        log(f"Database kept: {database_url}")
    else:
        drop_database(args.pg, args.db_name)
    log(f"bench/close.py done in {time.monotonic() - total_started:.0f} s")
    return 0 if met and unchanged and after_audit.clean else 1


if __name__ == "__main__":
    sys.exit(main())
