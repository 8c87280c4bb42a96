#!/usr/bin/env python
"""Benchmark of the tracking redirect ``/r/<code>`` against a bare Django 302.

Runs gunicorn (bench/gunicorn.conf.py) on PostgreSQL and Redis, drives it with wrk
(bench/redirect.lua) and prints requests/s, p50 and p99 for:

* the bare 302 view (``/bare302``, the ceiling: Django answering 302 and nothing else);
* ``/r/<code>`` from new browsers (no cookie: a visitor and a click per request), flat out;
* ``/r/<code>`` from new browsers at a constant offered rate (default 500 req/s);
* ``/r/<code>`` from returning browsers (an ``aff_vid`` cookie), flat out (``--no-returning`` skips it);

then checks, run by run, that every ``aff_click`` id handed out in a 302 is a Click row in
the database ("clicks lost"). See bench/README.md.

    .venv/bin/python bench/redirect.py [--duration 20] [--rate 500] [--workers 4] ...
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
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "redirect.lua"
GUNICORN_CONF = BENCH / "gunicorn.conf.py"

TARGET_RPS = 1500
TARGET_RATIO = 0.70
TARGET_P99_MS = 25.0


@dataclass
class Run:
    name: str
    path: str
    connections: int
    duration: int
    rate: int = 0  # 0: as fast as possible
    cookies: int = 0  # returning browsers per wrk thread; 0: no cookie
    link_id: int | None = None
    # filled in by the run
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
    clicks_stored: int | None = None
    clicks_lost: int | None = None
    clicks_in_flight: int | None = None
    ids_missing: int | None = None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


# --- CPU accounting (who used the two cores during a run) -----------------------------

_CLK = os.sysconf("SC_CLK_TCK")


def _proc_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK  # utime + stime


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _postgres_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _system_busy() -> tuple[float, float]:
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts) - idle) / _CLK, sum(parts) / _CLK


class CpuMeter:
    """CPU seconds of gunicorn's workers, PostgreSQL's processes and wrk over one run."""

    def __init__(self, gunicorn_pid: int):
        self.gunicorn_pid = gunicorn_pid

    def _sample(self) -> dict:
        workers = _children(self.gunicorn_pid)
        busy, total = _system_busy()
        return {
            "gunicorn": sum(_proc_cpu_seconds(p) for p in [self.gunicorn_pid, *workers]),
            "postgres": sum(_proc_cpu_seconds(p) for p in _postgres_pids()),
            "wrk": resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_stime,
            "busy": busy,
            "total": total,
        }

    def start(self) -> None:
        self.before = self._sample()

    def stop(self, seconds: float) -> dict:
        after = self._sample()
        delta = {k: after[k] - self.before[k] for k in after}
        cores = delta["total"] / seconds if seconds else 1
        # Share of the whole machine (100% = every core busy for the whole run).
        share = {k: round(100 * delta[k] / delta["total"], 1) for k in ("gunicorn", "postgres", "wrk", "busy")}
        share["cores"] = round(cores, 1)
        return share


# --- Database -------------------------------------------------------------------------


def recreate_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def checkpoint(database_url: str) -> None:
    """Start each run from a clean WAL state, so runs compare."""
    import psycopg

    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error as exc:  # not a superuser: not essential
        log(f"  (CHECKPOINT skipped: {exc})")


def seed(run_names: list[str]) -> dict[str, str]:
    """One merchant, program and promoter, and a link per run; returns run name -> code."""
    from affiliate.services import link_create, merchant_create, program_create
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


def run_wrk(port: int, run: Run, threads: int, ids_prefix: str | None, meter: CpuMeter | None) -> Run:
    env = dict(os.environ)
    env.update(BENCH_RATE=str(run.rate), BENCH_THREADS=str(threads), BENCH_COOKIES=str(run.cookies))
    env["BENCH_IDS"] = ids_prefix or ""
    cmd = [
        "wrk", "-t", str(threads), "-c", str(run.connections), "-d", f"{run.duration}s",
        "--timeout", "10s", "-s", str(LUA), f"http://127.0.0.1:{port}{run.path}",
    ]
    if meter:
        meter.start()
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=BENCH)
    elapsed = time.monotonic() - started
    if meter:
        run.cpu = meter.stop(elapsed)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data = json.loads(line.split(" ", 1)[1])
    run.requests = data["requests"]
    run.seconds = data["duration_us"] / 1e6
    run.rps = run.requests / run.seconds
    run.n302, run.n404, run.nother = data["n302"], data["n404"], data["nother"]
    run.errors = {k[4:]: v for k, v in data.items() if k.startswith("err_") and v}
    run.p50_ms, run.p90_ms, run.p99_ms = data["p50_us"] / 1000, data["p90_us"] / 1000, data["p99_us"] / 1000
    run.max_ms = data["max_us"] / 1000
    return run


def read_ids(prefix: str) -> list[str]:
    ids = []
    for path in sorted(glob.glob(prefix + ".*")):
        with open(path) as fh:
            ids.extend(line.strip() for line in fh if line.strip())
    return ids


def verify_clicks(run: Run, prefix: str) -> None:
    """Every aff_click id handed out must be a stored click; more stored than handed out is
    only possible for requests still in flight when wrk stopped (at most one per connection)."""
    handed_out = read_ids(prefix)
    run.ids_missing = handed_out.count("-")  # a 302 without an aff_click id
    stored = stored_click_ids(run.link_id)
    run.clicks_stored = len(stored)
    run.clicks_lost = len(set(handed_out) - stored - {"-"})
    run.clicks_in_flight = len(stored - set(handed_out))


# --- Report ---------------------------------------------------------------------------


def table(runs: list[Run], header: str) -> str:
    lines = [header, ""]
    cols = f"{'run':<34} {'conns':>5} {'offered':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'302s':>7} {'stored':>7} {'lost':>5}  cpu: gunicorn/postgres/wrk/idle %"
    lines += [cols, "-" * len(cols)]
    for r in runs:
        offered = f"{r.rate}/s" if r.rate else "max"
        stored = "-" if r.clicks_stored is None else str(r.clicks_stored)
        lost = "-" if r.clicks_lost is None else str(r.clicks_lost)
        cpu = r.cpu
        cpu_text = f"{cpu.get('gunicorn', 0):.0f}/{cpu.get('postgres', 0):.0f}/{cpu.get('wrk', 0):.0f}/{100 - cpu.get('busy', 0):.0f}" if cpu else ""
        lines.append(
            f"{r.name:<34} {r.connections:>5} {offered:>8} {r.rps:>7.0f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} "
            f"{r.n302:>7} {stored:>7} {lost:>5}  {cpu_text}"
        )
        extras = []
        if r.n404 or r.nother:
            extras.append(f"non-302 answers: {r.n404} x 404, {r.nother} other")
        if r.errors:
            extras.append(f"socket errors: {r.errors}")
        if r.clicks_in_flight:
            extras.append(f"{r.clicks_in_flight} stored clicks were still in flight when wrk stopped")
        if r.ids_missing:
            extras.append(f"{r.ids_missing} 302s carried no aff_click id")
        for extra in extras:
            lines.append(f"{'':<36}{extra}")
    return "\n".join(lines)


def verdicts(bare: Run, new_max: Run, paced: Run, r_runs: list[Run]) -> list[tuple[str, str, bool]]:
    ratio = new_max.rps / bare.rps if bare.rps else 0
    sent = sum(r.n302 for r in r_runs)
    stored = sum(r.clicks_stored or 0 for r in r_runs)
    lost = sum(r.clicks_lost or 0 for r in r_runs) + sum(r.ids_missing or 0 for r in r_runs)
    clean = all(not r.errors and not r.nother and not r.n404 for r in r_runs)
    return [
        (f"tracked redirects/s >= {TARGET_RPS}", f"{new_max.rps:.0f}/s", new_max.rps >= TARGET_RPS),
        (f"share of the bare 302 >= {TARGET_RATIO:.0%}", f"{ratio:.0%} ({new_max.rps:.0f} / {bare.rps:.0f})", ratio >= TARGET_RATIO),
        (
            f"p99 < {TARGET_P99_MS:.0f} ms at {paced.rate} req/s offered",
            f"{paced.p99_ms:.2f} ms at {paced.rps:.0f} req/s achieved",
            paced.p99_ms < TARGET_P99_MS and paced.rps >= 0.97 * paced.rate,
        ),
        (
            "no click lost",
            f"{lost} lost; {sent} 302s handed out, {stored} clicks stored; every request answered 302: {'yes' if clean else 'NO'}",
            lost == 0 and clean,
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20, help="seconds of each flat-out run (default 20)")
    parser.add_argument("--paced-duration", type=int, default=None, help="seconds of the constant-rate run (default: --duration)")
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
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args()
    paced_duration = args.paced_duration or args.duration

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

    runs = [
        Run("bare 302 (ceiling)", "/bare302", args.connections, args.duration),
        Run("/r/ new browsers", "", args.connections, args.duration),
        Run(f"/r/ new browsers @{args.rate}/s", "", args.paced_connections, paced_duration, rate=args.rate),
    ]
    if args.returning:
        runs.append(Run("/r/ returning browsers (cookie)", "", args.connections, args.duration, cookies=500))
    codes = seed(["warmup", *[r.name for r in runs[1:]]])
    for run in runs[1:]:
        run.path = f"/r/{codes[run.name]}?sub1=bench&sub2={secrets.token_hex(4)}"
        run.link_id = link_id(codes[run.name])
    connections.close_all()

    workdir = Path(tempfile.mkdtemp(prefix="bench-redirect-"))
    server = Server(env, port, workdir / "gunicorn.log")
    try:
        log(f"Starting gunicorn on 127.0.0.1:{port} (log: {server.log_path})")
        server.start()
        check_contract(port, codes["warmup"])
        meter = CpuMeter(server.proc.pid)
        workers = server.worker_count()
        log(f"  {workers} workers up; warming up {args.warmup} s per path")
        for path in ("/bare302", f"/r/{codes['warmup']}"):
            run_wrk(port, Run("warmup", path, args.connections, args.warmup), args.threads, None, None)
        for run in runs:
            checkpoint(database_url)
            log(f"Running {run.name}: {run.connections} connections, {run.duration} s, " + (f"{run.rate} req/s offered" if run.rate else "flat out"))
            prefix = str(workdir / f"ids-{runs.index(run)}") if run.link_id else None
            run_wrk(port, run, args.threads, prefix, meter)
            if prefix:
                verify_clicks(run, prefix)
            log(f"  {run.rps:.0f} req/s, p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms")
        connections.close_all()
    finally:
        server.stop()
        log(f"gunicorn stopped (log kept in {server.log_path})")

    conf = {k: env.get(f"GUNICORN_{k.upper()}") for k in ("workers", "worker_class", "threads")}
    gunicorn_desc = (
        f"gunicorn {workers} workers"
        + (f", class {conf['worker_class']}" if conf["worker_class"] else " (bench/gunicorn.conf.py)")
        + (f", {conf['threads']} threads" if conf["threads"] else "")
    )
    header = (
        f"Redirect benchmark: {os.cpu_count()} CPUs ({cpu_model()}), {gunicorn_desc}, "
        f"PostgreSQL + Redis, wrk -t{args.threads} on the same machine"
    )
    print(table(runs, header))
    print()
    r_runs = [r for r in runs if r.link_id]
    results = verdicts(runs[0], runs[1], runs[2], r_runs)
    for target, reached, met in results:
        print(f"  [{'met' if met else 'MISSED'}] {target}: {reached}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"header": header, "runs": [asdict(r) for r in runs], "targets": results}, indent=2)
        )
    return 0 if all(met for _, _, met in results) else 1


if __name__ == "__main__":
    sys.exit(main())
