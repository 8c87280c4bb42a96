#!/usr/bin/env python
"""Benchmark of the tracking redirect ``/r/<code>`` against a bare Django 302.

Runs gunicorn (bench/gunicorn.conf.py) on PostgreSQL and Redis, drives it with wrk
(bench/redirect.lua) and prints requests/s, p50 and p99 for:

* the bare 302 view (``/bare302``, the ceiling: Django answering 302 and nothing else);
* ``/r/<code>`` from new browsers (no cookie: a visitor and a click per request), flat out;
* ``/r/<code>`` from new browsers at a constant offered rate (default 500 req/s);
* ``/r/<code>`` from returning browsers (an ``aff_vid`` cookie), flat out (``--no-returning`` skips it);

then checks, run by run, that every ``aff_click`` id handed out in a 302 is a Click row in
the database ("clicks lost"). What the rate limiter costs: ``hit_wsgi`` timed in this process
(µs per call, the buckets shared in Redis against the in-process ones, one IP and a new IP a
call), and ``/r/<code>`` from new browsers on a second gunicorn whose redirect limit is off,
in every round right after the same traffic on the first (``--no-limiter-off`` skips it).
See bench/README.md.

    .venv/bin/python bench/redirect.py [--rounds 3] [--duration 10] [--rate 500] [--workers 4] ...
"""

from __future__ import annotations

import argparse
import glob
import http.client
import json
import os
import re
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchlib import checkpoint, cpu_model, free_port, log, recreate_database, wait_for_quiet
from benchlib import proc_cpu_seconds as _proc_cpu_seconds
from benchlib import system_busy as _system_busy

ROOT = Path(__file__).resolve().parent.parent


BENCH = ROOT / "bench"
LUA = BENCH / "redirect.lua"
GUNICORN_CONF = BENCH / "gunicorn.conf.py"

TARGET_RPS = 1500
TARGET_RATIO = 0.70
TARGET_P99_MS = 25.0
# A run is "disturbed" when the machine was busier than this before it started, or when
# processes other than ours (and the kernel) took more than this share of it during the run.
QUIET_BUSY_PERCENT = 15.0
OTHER_LIMIT_PERCENT = 10.0


@dataclass
class Run:
    """One wrk execution."""

    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    n302: int = 0
    n404: int = 0
    nother: int = 0
    errors: dict = field(default_factory=dict)
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    cpu: dict = field(default_factory=dict)
    busy_before: float | None = None  # % of the machine busy just before the run

    @property
    def disturbed(self) -> bool:
        """Other work shared the two cores: before the run, or during it (CPU time that is
        neither gunicorn, our PostgreSQL processes nor wrk, beyond the kernel's usual share)."""
        return (self.busy_before or 0) > QUIET_BUSY_PERCENT or self.cpu.get("other", 0) > OTHER_LIMIT_PERCENT


@dataclass
class Kind:
    """One kind of traffic, measured once per round."""

    name: str
    path: str
    connections: int
    duration: int
    rate: int = 0  # 0: as fast as possible
    cookies: int = 0  # returning browsers per wrk thread; 0: no cookie
    server: str = "main"  # "off": the server whose redirect rate limit is off
    link_id: int | None = None
    runs: list[Run] = field(default_factory=list)
    # the click check, over all rounds
    clicks_stored: int | None = None
    clicks_lost: int | None = None
    clicks_in_flight: int | None = None
    ids_missing: int | None = None

    @property
    def counted(self) -> list[Run]:
        """The runs the figures are taken from: the undisturbed ones, or all if none is."""
        return [r for r in self.runs if not r.disturbed] or self.runs

    def median(self, attribute: str) -> float:
        return statistics.median(getattr(r, attribute) for r in self.counted)

    def median_cpu(self, key: str) -> float:
        return statistics.median(r.cpu.get(key, 0) for r in self.counted)

    @property
    def n302(self) -> int:
        return sum(r.n302 for r in self.runs)

    @property
    def clean(self) -> bool:
        return all(not r.errors and not r.nother and not r.n404 for r in self.runs)


# --- CPU accounting (who used the two cores during a run) -----------------------------


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _postgres_pids(database: str) -> list[int]:
    """PostgreSQL's shared processes and the backends of our database; other databases'
    backends (other people's work on the same server) count as "other"."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() != "postgres":
                    continue
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            client = re.search(r"\(\d+\)|\[local\]|autovacuum worker", title)
            if not client or f" {database} " in f"{title} ":
                pids.append(int(entry.name))
    return pids


class CpuMeter:
    """CPU seconds of gunicorn's processes, PostgreSQL's processes and wrk over one run."""

    def __init__(self, gunicorn_pid: int, database: str):
        self.gunicorn_pid, self.database = gunicorn_pid, database

    def _sample(self) -> dict:
        busy, total = _system_busy()
        wrk = resource.getrusage(resource.RUSAGE_CHILDREN)
        return {
            "gunicorn": {p: _proc_cpu_seconds(p) for p in [self.gunicorn_pid, *_children(self.gunicorn_pid)]},
            "postgres": {p: _proc_cpu_seconds(p) for p in _postgres_pids(self.database)},
            "wrk": wrk.ru_utime + wrk.ru_stime,
            "busy": busy,
            "total": total,
        }

    def start(self) -> None:
        self.before = self._sample()

    def stop(self, requests: int) -> dict:
        after, before = self._sample(), self.before
        delta = {k: after[k] - before[k] for k in ("wrk", "busy", "total")}
        for group in ("gunicorn", "postgres"):  # processes that exited during the run are not counted
            delta[group] = sum(seconds - before[group].get(pid, 0.0) for pid, seconds in after[group].items())
        # Share of the whole machine (100% = every core busy for the whole run).
        share = {k: round(100 * delta[k] / delta["total"], 1) for k in ("gunicorn", "postgres", "wrk", "busy")}
        # The kernel's own work (interrupts, TCP) and any other process on the machine.
        share["other"] = round(share["busy"] - share["gunicorn"] - share["postgres"] - share["wrk"], 1)
        # CPU time per answered request, in microseconds: less sensitive to other work than req/s.
        for group in ("gunicorn", "postgres", "wrk"):
            share[f"{group}_us"] = round(1e6 * delta[group] / requests) if requests else 0
        return share


# --- Database -------------------------------------------------------------------------


def seed(run_names: list[str]) -> dict[str, str]:
    """One merchant, program and promoter, and a link per run; returns run name -> code."""
    from affiliate.services import link_create
    from merchants.services import merchant_create, program_create
    from promoters.services import promoter_create

    merchant = merchant_create(name="Bench shop", domains=["shop.example.com"]).merchant
    program = program_create(merchant=merchant, name="Bench", duplicate_click_seconds=30)
    promoter = promoter_create(merchant=merchant, email="bench@example.com", name="Bench promoter", program=program)
    codes = {}
    for name in run_names:
        link = link_create(
            merchant=merchant,
            promoter=promoter,
            destination_url="https://shop.example.com/p/42?utm_source=aff&color=red",
            channel=f"bench-{name}",
        )
        codes[name] = link.code
    return codes


def link_id(code: str) -> int:
    from affiliate.models import ReferralLink

    return ReferralLink.objects.get(code=code).pk


def stored_click_ids(link: int) -> set[str]:
    from affiliate.models import Click

    return {uuid.hex for uuid in Click.objects.filter(link_id=link).values_list("id", flat=True)}


# --- Server ---------------------------------------------------------------------------


class Server:
    def __init__(self, env: dict, port: int, log_path: Path):
        self.env, self.port, self.log_path = env, port, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_file = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "config.wsgi:application"],
            cwd=ROOT,
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.proc.returncode}); see {self.log_path}")
            try:
                status, _, _ = http_get(self.port, "/healthz")
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer /healthz within 30 s; see {self.log_path}")

    def worker_count(self) -> int:
        return len(_children(self.proc.pid)) if self.proc else 0

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)  # graceful: workers finish their request
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        finally:
            self.log_file.close()


def http_get(port: int, path: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def check_contract(port: int, code: str) -> None:
    """One request by hand before the load: the redirect answers as the contract says."""
    status, headers, _ = http_get(port, f"/r/{code}?sub1=check")
    location, cookie = headers.get("Location", ""), headers.get("Set-Cookie", "")
    problems = []
    if status != 302:
        problems.append(f"status {status}")
    if not re.fullmatch(r"https://shop\.example\.com/p/42\?utm_source=aff&color=red&aff_click=[0-9a-f]{32}", location):
        problems.append(f"Location {location!r}")
    if not re.search(r"aff_vid=[0-9a-f-]{36}", cookie) or "HttpOnly" not in cookie or "SameSite=Lax" not in cookie:
        problems.append(f"Set-Cookie {cookie!r}")
    status404, _, _ = http_get(port, "/r/no-such-code")
    if status404 != 404:
        problems.append(f"unknown code answered {status404}")
    status, _, _ = http_get(port, "/bare302")
    if status != 302:
        problems.append(f"/bare302 answered {status} (is BENCH_BARE_REDIRECT=1 reaching the server?)")
    if problems:
        raise RuntimeError("The redirect does not answer as the contract says: " + "; ".join(problems))


# --- Load -----------------------------------------------------------------------------


def run_wrk(port: int, kind: Kind, threads: int, ids_prefix: str | None, meter: CpuMeter | None, duration: int | None = None) -> Run:
    env = dict(os.environ)
    env.update(BENCH_RATE=str(kind.rate), BENCH_THREADS=str(threads), BENCH_COOKIES=str(kind.cookies))
    env["BENCH_IDS"] = ids_prefix or ""
    cmd = [
        "wrk", "-t", str(threads), "-c", str(kind.connections), "-d", f"{duration or kind.duration}s",
        "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}{kind.path}",
    ]
    if meter:
        meter.start()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=BENCH)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.split(" ", 1)[1])
    run = Run(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        n302=data["n302"],
        n404=data["n404"],
        nother=data["nother"],
        errors={k[4:]: v for k, v in data.items() if k.startswith("err_") and v},
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )
    run.rps = run.requests / run.seconds
    if meter:
        run.cpu = meter.stop(run.requests)
    return run


def read_ids(pattern: str) -> list[str]:
    ids = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as fh:
            ids.extend(line.strip() for line in fh if line.strip())
    return ids


def verify_clicks(kind: Kind, pattern: str) -> None:
    """Every aff_click id handed out must be a stored click; more stored than handed out is
    only possible for requests still in flight when wrk stopped (at most one per connection)."""
    handed_out = read_ids(pattern)
    kind.ids_missing = handed_out.count("-")  # a 302 without an aff_click id
    stored = stored_click_ids(kind.link_id)
    kind.clicks_stored = len(stored)
    kind.clicks_lost = len(set(handed_out) - stored - {"-"})
    kind.clicks_in_flight = len(stored - set(handed_out))


# --- The rate limiter, in this process -----------------------------------------------


def limiter_costs(redis_url: str, calls: int) -> list[dict]:
    """CPU and wall µs per ``ratelimit.hit_wsgi`` call as the redirect's fast path makes it
    (the default limits), and Redis round trips per 1,000 calls, in each way of counting."""
    from django.test import override_settings

    from affiliate import ratelimit

    ips = [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(calls)]
    one = ["203.0.113.77"] * calls
    def timed(name: str, keys: list[str], hit) -> dict:
        asked = ratelimit.round_trips()
        cpu, wall = time.process_time(), time.perf_counter()
        for key in keys:
            hit(key)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        asked = ratelimit.round_trips() - asked
        return {"case": name, "cpu_us": 1e6 * cpu / len(keys), "wall_us": 1e6 * wall / len(keys), "round_trips_per_1000": 1000 * asked / len(keys)}

    def hit_wsgi(key: str) -> None:
        ratelimit.hit_wsgi({}, [("redirect", key)])

    results = []
    try:
        for name, redis in (("in-process bucket", ""), ("shared in Redis", redis_url)):
            with override_settings(REDIS_URL=redis):
                ratelimit.reset()
                hit_wsgi(one[0])  # the first call makes the buckets (and connects)
                results.append(timed(f"{name}, one IP", one, hit_wsgi))
                results.append(timed(f"{name}, a new IP a call", ips, hit_wsgi))
                results.append(timed(f"{name}, each IP again", ips, hit_wsgi))
        with override_settings(REDIS_URL=redis_url, RATE_LIMIT_REDIRECT_PER_IP=0):
            ratelimit.reset()
            results.insert(0, timed("limit off (0)", one, hit_wsgi))
        with override_settings(REDIS_URL=redis_url):
            # The design it replaces: a round trip for every request (no allotment, no credit).
            naive = ratelimit.SharedBuckets(300_000, 60, scope=f"bench-{secrets.token_hex(4)}", store=ratelimit._store(redis_url))
            naive.most, naive.credit = 1, False
            results.append(timed("a Redis round trip a call, one IP", one, naive.take))
    finally:
        ratelimit.reset()
    return results


def limiter_table(costs: list[dict], calls: int) -> str:
    lines = [
        f"Rate limiter: ratelimit.hit_wsgi in the bench's own process, {calls} calls a case, the default limits; "
        "Redis on the same machine",
        "",
        f"{'case':<40} {'cpu us/call':>11} {'wall us/call':>12} {'round trips/1000':>16}",
    ]
    lines.append("-" * len(lines[-1]))
    for c in costs:
        lines.append(f"{c['case']:<40} {c['cpu_us']:>11.2f} {c['wall_us']:>12.2f} {c['round_trips_per_1000']:>16.1f}")
    return "\n".join(lines)


def limiter_ratio(on: Kind, off: Kind) -> str:
    pairs = [(a, b) for a, b in zip(on.runs, off.runs, strict=True) if b.rps]
    quiet = [(a, b) for a, b in pairs if not a.disturbed and not b.disturbed] or pairs
    ratios = [a.rps / b.rps for a, b in quiet]
    ratio = statistics.median(ratios) if ratios else 0
    return (
        f"rate limiter: /r/ new browsers {on.median('rps'):.0f}/s with the redirect's limit on (shared in Redis), "
        f"{off.median('rps'):.0f}/s with it off: {ratio:.0%} (rounds: {', '.join(f'{x:.0%}' for x in ratios)}); "
        f"gunicorn CPU per request {on.median_cpu('gunicorn_us'):.0f} us on, {off.median_cpu('gunicorn_us'):.0f} us off"
    )


# --- Report ---------------------------------------------------------------------------


def table(kinds: list[Kind], header: str) -> str:
    lines = [header, ""]
    cols = (
        f"{'traffic':<30} {'conns':>5} {'offered':>7} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'302s':>7} {'stored':>7} {'lost':>4}  {'cpu us/req gunicorn+postgres':>28}  req/s by round"
    )
    lines += [cols, "-" * len(cols)]
    for k in kinds:
        offered = f"{k.rate}/s" if k.rate else "max"
        stored = "-" if k.clicks_stored is None else str(k.clicks_stored)
        lost = "-" if k.clicks_lost is None else str(k.clicks_lost)
        cpu = f"{k.median_cpu('gunicorn_us'):.0f} + {k.median_cpu('postgres_us'):.0f}"
        rounds = " ".join(f"{r.rps:.0f}" + ("*" if r.disturbed else "") for r in k.runs)
        lines.append(
            f"{k.name:<30} {k.connections:>5} {offered:>7} {k.median('rps'):>6.0f} {k.median('p50_ms'):>7.2f} "
            f"{k.median('p99_ms'):>7.2f} {k.n302:>7} {stored:>7} {lost:>4}  {cpu:>28}  {rounds}"
        )
        extras = []
        n404, nother = sum(r.n404 for r in k.runs), sum(r.nother for r in k.runs)
        if n404 or nother:
            extras.append(f"non-302 answers: {n404} x 404, {nother} other")
        errors = [r.errors for r in k.runs if r.errors]
        if errors:
            extras.append(f"socket errors: {errors}")
        if k.clicks_in_flight:
            extras.append(f"+{k.clicks_in_flight} clicks stored for requests in flight when wrk stopped")
        if k.ids_missing:
            extras.append(f"{k.ids_missing} 302s carried no aff_click id")
        disturbed = [r for r in k.runs if r.disturbed]
        if disturbed:
            left = "left out of the medians" if len(disturbed) < len(k.runs) else "all rounds disturbed: figures are low"
            extras.append(
                f"* {len(disturbed)} of {len(k.runs)} rounds disturbed by other work on the machine ({left}; "
                + ", ".join(f"{r.busy_before:.0f}% busy before, {r.cpu.get('other', 0):.0f}% other during" for r in disturbed)
                + ")"
            )
        for extra in extras:
            lines.append(f"{'':<32}{extra}")
    return "\n".join(lines)


def verdicts(bare: Kind, new: Kind, paced: Kind, tracked: list[Kind]) -> list[tuple[str, str, bool]]:
    # The share of the bare 302 is taken round by round (the two runs of a round follow each
    # other), from the rounds where neither run was disturbed, then the median.
    pairs = [(b, r) for b, r in zip(bare.runs, new.runs, strict=True) if b.rps]
    pairs = [(b, r) for b, r in pairs if not b.disturbed and not r.disturbed] or pairs
    ratios = [r.rps / b.rps for b, r in pairs]
    ratio = statistics.median(ratios) if ratios else 0
    sent = sum(k.n302 for k in tracked)
    stored = sum(k.clicks_stored or 0 for k in tracked)
    lost = sum((k.clicks_lost or 0) + (k.ids_missing or 0) for k in tracked)
    clean = all(k.clean for k in tracked)
    paced_rps, paced_p99 = paced.median("rps"), paced.median("p99_ms")
    worst_p99 = max(r.p99_ms for r in paced.counted)
    return [
        (f"tracked redirects/s >= {TARGET_RPS}", f"{new.median('rps'):.0f}/s", new.median("rps") >= TARGET_RPS),
        (
            f"share of the bare 302 >= {TARGET_RATIO:.0%}",
            f"{ratio:.0%} (rounds: {', '.join(f'{x:.0%}' for x in ratios)})",
            ratio >= TARGET_RATIO,
        ),
        (
            f"p99 < {TARGET_P99_MS:.0f} ms at {paced.rate} req/s offered",
            f"{paced_p99:.2f} ms at {paced_rps:.0f} req/s achieved (worst round {worst_p99:.2f} ms)",
            paced_p99 < TARGET_P99_MS and paced_rps >= 0.97 * paced.rate,
        ),
        (
            "no click lost",
            f"{lost} lost; {sent} 302s handed out, {stored} clicks stored; every request answered 302: {'yes' if clean else 'NO'}",
            lost == 0 and clean,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of each run (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs every kind of traffic once (default 3)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up per path (default 3)")
    parser.add_argument("--rate", type=int, default=500, help="offered req/s of the constant-rate run (default 500)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections of the flat-out runs (default 32)")
    parser.add_argument("--paced-connections", type=int, default=32, help="wrk connections of the constant-rate run (default 32)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: wrk shares the 2 cores with the server)")
    parser.add_argument("--returning", action=argparse.BooleanOptionalAction, default=True, help="also run returning browsers (cookie)")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: bench/gunicorn.conf.py)")
    parser.add_argument("--worker-class", default=None, help="gunicorn worker class (default: bench/gunicorn.conf.py)")
    parser.add_argument("--worker-threads", type=int, default=None, help="gunicorn threads per worker (gthread)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL (no database)")
    parser.add_argument("--db-name", default="bench_redirect", help="database to (re)create (default bench_redirect)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="REDIS_URL for the server")
    parser.add_argument("--quiet-wait", type=float, default=60, help="seconds to wait for an idle machine before each run (default 60)")
    parser.add_argument(
        "--spool", action=argparse.BooleanOptionalAction, default=True,
        help="clicks through the click spool (CLICK_SPOOL_DIR, the default); --no-spool commits each click before its 302",
    )
    parser.add_argument(
        "--limiter-off", action=argparse.BooleanOptionalAction, default=True,
        help="also run /r/ new browsers on a second gunicorn with the redirect's rate limit off (default on)",
    )
    parser.add_argument("--limiter-calls", type=int, default=20000, help="hit_wsgi calls per case of the limiter's timing (0: none)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()

    def stop(signum, frame):  # SIGTERM (e.g. timeout) or SIGHUP: still stop gunicorn in the finally below
        raise SystemExit(f"stopped by signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)

    if not shutil.which("wrk"):
        log("wrk is not installed: apt-get install -y wrk")
        return 2

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
        BENCH_BARE_REDIRECT="1",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        LOG_LEVEL="WARNING",
    )
    for option, var in (("workers", "GUNICORN_WORKERS"), ("worker_class", "GUNICORN_WORKER_CLASS"), ("worker_threads", "GUNICORN_THREADS")):
        if getattr(args, option) is not None:
            env[var] = str(getattr(args, option))

    workdir = Path(tempfile.mkdtemp(prefix="bench-redirect-"))
    spool_dir = workdir / "spool"
    if args.spool:
        env["CLICK_SPOOL_DIR"] = str(spool_dir)
    else:
        env.pop("CLICK_SPOOL_DIR", None)

    log(f"Database {database_url}: recreating and migrating")
    recreate_database(args.pg, args.db_name)
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if migrate.returncode != 0:
        log(migrate.stdout + migrate.stderr)
        return 1

    # Seed in this process, with the server's settings.
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS")})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connections

    bare = Kind("bare 302 (ceiling)", "/bare302", args.connections, args.duration)
    new = Kind("/r/ new browsers", "", args.connections, args.duration)
    paced = Kind(f"/r/ new browsers @{args.rate}/s", "", args.paced_connections, args.duration, rate=args.rate)
    kinds = [bare, new, paced]
    if args.limiter_off:
        kinds.insert(2, Kind("/r/ new browsers, limit off", "", args.connections, args.duration, server="off"))
    if args.returning:
        kinds.append(Kind("/r/ returning browsers (cookie)", "", args.connections, args.duration, cookies=500))
    tracked = [k for k in kinds if k is not bare]
    codes = seed(["warmup", *[k.name for k in tracked]])
    for kind in tracked:
        kind.path = f"/r/{codes[kind.name]}?sub1=bench&sub2={secrets.token_hex(4)}"
        kind.link_id = link_id(codes[kind.name])
    costs = []
    if args.limiter_calls:
        log(f"Timing the rate limiter: {args.limiter_calls} hit_wsgi calls a case")
        costs = limiter_costs(args.redis, args.limiter_calls)
        log(limiter_table(costs, args.limiter_calls))
    connections.close_all()

    servers = {"main": Server(env, port, workdir / "gunicorn.log")}
    if args.limiter_off:
        off_port = free_port()
        off_env = {**env, "GUNICORN_BIND": f"127.0.0.1:{off_port}", "RATE_LIMIT_REDIRECT_PER_IP": "0"}
        servers["off"] = Server(off_env, off_port, workdir / "gunicorn-limit-off.log")
    try:
        for name, server in servers.items():
            log(f"Starting gunicorn ({name}) on 127.0.0.1:{server.port} (log: {server.log_path})")
            server.start()
            check_contract(server.port, codes["warmup"])
        meters = {name: CpuMeter(server.proc.pid, args.db_name) for name, server in servers.items()}
        workers = servers["main"].worker_count()
        log(f"  {workers} workers up; warming up {args.warmup} s per path")
        warm = Kind("warm-up", f"/r/{codes['warmup']}", args.connections, args.warmup)
        for server in servers.values():
            for path in ("/bare302", f"/r/{codes['warmup']}"):
                warm.path = path
                run_wrk(server.port, warm, args.threads, None, None)
        for round_no in range(1, args.rounds + 1):
            for kind in kinds:
                checkpoint(database_url)
                busy = wait_for_quiet(
                    args.quiet_wait,
                    QUIET_BUSY_PERCENT,
                    warning="the machine is {busy:.0f}% busy before the run (other work); figures will be low",
                )
                log(f"Round {round_no}/{args.rounds}, {kind.name}: {kind.connections} connections, {kind.duration} s")
                prefix = str(workdir / f"ids-{kinds.index(kind)}-{round_no}") if kind.link_id else None
                run = run_wrk(servers[kind.server].port, kind, args.threads, prefix, meters[kind.server])
                run.busy_before = round(busy, 1)
                kind.runs.append(run)
                log(f"  {run.rps:.0f} req/s, p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms; cpu {run.cpu}")
    finally:
        for server in servers.values():
            server.stop()
            log(f"gunicorn stopped (log kept in {server.log_path})")
    spool_note = "clicks committed before each 302 (no spool)"
    if args.spool:
        # The workers flush what they hold as they exit; anything left (a worker killed by
        # the stop's timeout) is a file any process may store.
        from affiliate import clickspool

        left = clickspool.flush_directory(spool_dir) if spool_dir.exists() else 0
        spool_note = f"click spool ({env['CLICK_SPOOL_DIR']}); {left} clicks were left in it after gunicorn stopped"
        log(spool_note)
    for kind in tracked:
        verify_clicks(kind, str(workdir / f"ids-{kinds.index(kind)}-*"))
    connections.close_all()

    conf = {k: env.get(f"GUNICORN_{k.upper()}") for k in ("workers", "worker_class", "threads")}
    gunicorn_desc = (
        f"gunicorn {workers} workers"
        + (f", class {conf['worker_class']}" if conf["worker_class"] else " (bench/gunicorn.conf.py)")
        + (f", {conf['threads']} threads" if conf["threads"] else "")
    )
    header = (
        f"Redirect benchmark: {os.cpu_count()} CPUs ({cpu_model()}), {gunicorn_desc}, PostgreSQL + Redis, "
        f"wrk -t{args.threads} on the same machine; {args.rounds} rounds of {args.duration} s per kind, "
        f"medians of the undisturbed rounds; {spool_note}"
    )
    print(table(kinds, header))
    print()
    limiter = ""
    if args.limiter_off:
        limiter = limiter_ratio(new, next(k for k in kinds if k.server == "off"))
        print(f"  {limiter}")
    results = verdicts(bare, new, paced, tracked)
    for target, reached, met in results:
        print(f"  [{'met' if met else 'MISSED'}] {target}: {reached}")
    if costs:
        print()
        print(limiter_table(costs, args.limiter_calls))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"header": header, "kinds": [asdict(k) for k in kinds], "targets": results, "limiter": {"ratio": limiter, "calls": costs}},
                indent=2,
            )
        )
    return 0 if all(met for _, _, met in results) else 1


if __name__ == "__main__":
    sys.exit(main())
