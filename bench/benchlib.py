"""What the benchmark scripts share: logging, the machine's description, CPU accounting
from /proc, and the benchmark databases' lifecycle. Each script runs as
``python bench/<name>.py``, so this folder is on its import path."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

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
