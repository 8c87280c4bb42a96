"""What the benchmark scripts share: logging, the machine's description, CPU accounting
from /proc and waiting for a quiet machine, percentiles, the processes a benchmark starts
(gunicorn, Celery, Redis) and waiting for them, and the benchmark databases' lifecycle.
Each script runs as ``python bench/<name>.py``, so this folder is on its import path."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK = os.sysconf("SC_CLK_TCK")
# The scripts run the app with DEBUG off, which needs FIELD_ENCRYPTION_KEYS: a fresh key for
# the run (each one makes its database anew), unless one is set. The scripts copy os.environ
# into the environment of the processes they start, so all of them share it.
if not os.environ.get("FIELD_ENCRYPTION_KEYS"):
    from cryptography.fernet import Fernet

    os.environ["FIELD_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()


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


def proc_cpu_and_start(pid: int) -> tuple[float, int]:
    """(utime + stime in seconds, start time in ticks: with the pid, names the process)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0
    return (int(fields[11]) + int(fields[12])) / CLK, int(fields[19])


def proc_cpu_seconds(pid: int) -> float:
    return proc_cpu_and_start(pid)[0]


def system_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts) - idle) / CLK, sum(parts) / CLK


def wait_for_quiet(
    limit_seconds: float,
    busy_percent: float = 15.0,
    *,
    warning: str = "the machine is {busy:.0f}% busy before the run (other work); figures will suffer",
) -> float:
    """Other work on the same two cores skews every figure: wait (up to ``limit_seconds``)
    for a second in which the machine is mostly idle. Returns the busy share last seen, in %
    of all cores. ``warning`` (formatted with ``busy``) is logged if the machine stayed busy."""
    deadline = time.monotonic() + limit_seconds
    while True:
        busy0, total0 = system_busy()
        time.sleep(1)
        busy1, total1 = system_busy()
        busy = 100 * (busy1 - busy0) / max(total1 - total0, 1e-9)
        if busy <= busy_percent or time.monotonic() >= deadline:
            if busy > busy_percent:
                log("  warning: " + warning.format(busy=busy))
            return busy


def percentile(values: list[float], p: float | None = None, *, share: float | None = None) -> float:
    """Nearest-rank percentile of ``values``: ``p`` in percent (0-100), or ``share`` as a
    fraction (0-1). NaN when there are no values."""
    if (p is None) == (share is None):
        raise TypeError("percentile() takes either p (percent) or share (a fraction), not both or neither")
    if not values:
        return float("nan")
    ordered = sorted(values)
    fraction = p / 100 if share is None else share
    k = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))  # nearest rank
    return ordered[k]


class Proc:
    """A process a benchmark starts (gunicorn, Celery, Redis) in its own process group, its
    output in ``log_path``; stopped with SIGTERM (a warm shutdown), then SIGKILL."""

    def __init__(self, name: str, cmd: list[str], env: dict, log_path: Path):
        self.name, self.cmd, self.env, self.log_path = name, cmd, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.log_file = open(self.log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=ROOT,
            env=self.env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole below
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)  # warm shutdown: finish the task at hand
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.log_file.close()


def wait_http(port: int, proc: Proc, seconds: float = 30) -> None:
    """Wait until the app on ``port`` answers ``/healthz`` with 200 (``proc`` serves it)."""
    import http.client

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited; see {proc.log_path}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} did not answer /healthz within {seconds:.0f} s; see {proc.log_path}")


def recreate_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def checkpoint(database_url: str) -> None:
    """Start each run from a clean WAL state, so runs compare."""
    import psycopg

    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    except psycopg.Error as exc:
        log(f"  (CHECKPOINT skipped: {exc})")


def vacuum_analyze() -> float:
    """``VACUUM (ANALYZE)`` the database Django is connected to; returns the seconds taken."""
    from django.db import connection

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")
    return time.monotonic() - started


def wait_drained(limit_seconds: float) -> tuple[bool, float]:
    """Wait until no event is left queued; returns (drained, seconds waited)."""
    from django.db import connection

    from affiliate.models import ConversionEvent

    started = time.monotonic()
    while True:
        left = ConversionEvent.objects.filter(status=ConversionEvent.Status.QUEUED).count()
        if left == 0:
            connection.close()
            return True, time.monotonic() - started
        if time.monotonic() - started > limit_seconds:
            log(f"  {left} events still queued after {limit_seconds:.0f} s")
            connection.close()
            return False, time.monotonic() - started
        time.sleep(0.5)


class Copier:
    """``COPY`` rows into a model's table (the columns named by field), counting them."""

    def __init__(self, cursor):
        self.cursor = cursor
        self.counts: dict[str, int] = {}

    def __call__(self, model, fields: list[str], rows) -> int:
        opts = model._meta
        columns = ", ".join(f'"{opts.get_field(f).column}"' for f in fields)
        n = 0
        with self.cursor.copy(f'COPY "{opts.db_table}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
                n += 1
        self.counts[opts.label] = self.counts.get(opts.label, 0) + n
        return n


def level_sizes(promoters: int) -> list[int]:
    """5 levels in the issues' proportions (10 + 90 + 900 + 9,000 + 90,000 for 100,000)."""
    if promoters < 5:
        raise SystemExit("--promoters must be at least 5 (a 5-level tree)")
    sizes = [max(1, round(promoters * share)) for share in (0.0001, 0.0009, 0.009, 0.09)]
    sizes.append(promoters - sum(sizes))
    if sizes[-1] < 1:
        raise SystemExit("--promoters too small for a 5-level tree")
    return sizes


def monthly_event_id(n: int, received_at) -> int:
    """The ``n``-th loaded event's id, received at ``received_at``, as the database gives it
    (``YYYYMM * 10^10 + n``): each event lands in its month's partition (affiliate/partitions.py)."""
    from affiliate import partitions

    return partitions.event_id_floor(partitions.month_start(received_at)) + n


def make_partitions(first, last) -> list[str]:
    """The monthly partitions of clicks and events from ``first``'s month to ``last``'s, for
    the rows a loader is about to copy (PostgreSQL; the migration made only this month's and
    the months ahead)."""
    from affiliate import partitions

    start, end = partitions.month_start(first), partitions.month_start(last)
    months = (end.year - start.year) * 12 + end.month - start.month
    return [str(o) for o in partitions.ensure(today=start, ahead=max(months, 0)) if o.state != "present"]
