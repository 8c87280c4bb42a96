"""The click spool: the tracking redirect writes its click to a local append-only file and
answers; a flusher moves the spooled clicks into the database in batches.

Why: committing each click before its 302 costs a database round trip and a commit per
click, which was most of the redirect's cost (bench/README.md). Appending a line to a file
costs a few microseconds, and a batch of a few hundred clicks is cheaper to store per click
than one click at a time.

Turned on by ``CLICK_SPOOL_DIR`` (PostgreSQL only); without it every click is committed
before its 302, as ``services.click_record`` does.

How no click is lost:

* Each process writes its own *segment* file, ``<host>-<pid>-<n>.spool``, with one
  ``os.write`` of a whole line per click before the 302 is sent: once the browser has its
  ``aff_click``, the line is in the operating system's file cache, and a process killed at
  any point after that leaves it there. (A power cut can lose what the kernel had not yet
  written to disk: at most the last flush interval.)
* The writing process holds an exclusive ``flock`` on its open segment. Every
  ``CLICK_SPOOL_FLUSH_SECONDS`` its flusher thread starts a new segment and closes the old
  one, which releases the lock. Any process's flusher (or ``manage.py flush_clicks``) may
  flush a file whose lock it can take: a closed segment, or the open segment of a process
  that died (the kernel releases a dead process's locks). The lock is held while flushing,
  so two flushers never store one file at once.
* A file is stored in one transaction (visitors, clicks, duplicate flags), then deleted.
  Storing it twice is harmless: clicks keep the id in their line, and both inserts do
  nothing on an existing id. A database that is down leaves the files where they are; the
  flusher tries again, and the redirect keeps answering meanwhile.

Duplicates (``duplicate_click_seconds``): a click is a duplicate when the same visitor
clicked the same link less than the window earlier. Two processes' files may reach the
database in either order, so a flush also flags the clicks already stored that one of its
clicks turns into duplicates (a repeat click that reached the database first).

An event whose ``click_id`` is a click still in the spool waits for it briefly
(``wait_for_click``): the id is a UUIDv7, so its age says whether it can still be in
flight.
"""

from __future__ import annotations

import atexit
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connections, router, transaction

log = logging.getLogger(__name__)

SUFFIX = ".spool"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# The order of a spooled line's values.
FIELDS = (
    "id",
    "visitor_id",
    "new_visitor",
    "link_id",
    "merchant_id",
    "program_id",
    "promoter_id",
    "created_us",
    "user_agent",
    "referrer",
    "ip_hash",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
    "duplicate_seconds",
)


def enabled() -> bool:
    return bool(settings.CLICK_SPOOL_DIR)


class Spool:
    """One process's writer plus its flusher thread."""

    def __init__(self, directory: str | os.PathLike, flush_seconds: float = 0.2):
        self.directory = Path(directory)
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._pid = None
        self._fd = None
        self._seq = 0
        self._written = 0  # lines in the open segment
        self._thread = None
        self._stop = threading.Event()

    # --- writing (the redirect) -------------------------------------------------------

    def append(self, values: list) -> None:
        """Append one click (``FIELDS`` order). Returns once the line is in the file."""
        data = (json.dumps(values, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        with self._lock:
            if self._pid != os.getpid():
                self._start_process()
            if self._fd is None:
                self._open_segment()
            written = os.write(self._fd, data)
            if written != len(data):  # a full disk: never hand out a click we did not keep
                raise OSError(f"Short write to the click spool ({written} of {len(data)} bytes).")
            self._written += 1

    def _start_process(self) -> None:
        """First write in this process (after a fork too): a fresh segment and a flusher."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._pid = os.getpid()
        self._fd = None
        self._seq = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="click-spool-flusher", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _open_segment(self) -> None:
        self._seq += 1
        path = self.directory / f"{socket.gethostname()}-{self._pid}-{int(time.time() * 1000)}-{self._seq}{SUFFIX}"
        # Created under a name flushers do not look at, locked, and only then given its
        # name: a flusher must never find it unlocked and empty, and delete it before the
        # first click is written into it.
        hidden = path.with_suffix(".new")
        fd = os.open(hidden, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(hidden, path)
        except BaseException:
            os.close(fd)
            raise
        self._fd, self._written = fd, 0

    def rotate(self) -> bool:
        """Close the open segment if it holds clicks; the next click opens a new one."""
        with self._lock:
            if self._fd is None or self._pid != os.getpid() or not self._written:
                return False
            os.close(self._fd)  # releases its lock: the segment is now anyone's to flush
            self._fd = None
            return True

    def close(self) -> None:
        """At exit: close the open segment and flush what this process can."""
        if self._pid != os.getpid() or self._fd is None:
            return
        self._stop.set()
        with self._lock:
            fd, self._fd = self._fd, None
            os.close(fd)
        try:
            flush_directory(self.directory)
        except Exception:  # noqa: BLE001 - the files stay for the next flusher
            log.exception("Click spool: flush at exit failed; the files stay for the next flusher.")

    def stop(self) -> None:
        """Stop the flusher thread and close the open segment, flushing nothing (tests)."""
        if self._pid != os.getpid():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        self._pid = None

    # --- flushing -------------------------------------------------------------------

    def _run(self) -> None:
        backoff = self.flush_seconds
        try:
            while not self._stop.wait(backoff):
                try:
                    self.rotate()
                    flush_directory(self.directory)
                    backoff = self.flush_seconds
                except Exception:  # noqa: BLE001 - the database may be down: keep the files, try again
                    log.exception("Click spool: flush failed; retrying.")
                    backoff = min(backoff * 2, 5.0)
                finally:
                    close_old_connections()
        finally:
            connections.close_all()  # this thread's own connections


_spool: Spool | None = None
_spool_lock = threading.Lock()


def reset() -> None:
    """Stop this process's spool (its flusher and its open segment) and forget it."""
    global _spool
    with _spool_lock:
        if _spool is not None:
            _spool.stop()
        _spool = None


def spool() -> Spool:
    global _spool
    if _spool is None or str(_spool.directory) != str(settings.CLICK_SPOOL_DIR):
        with _spool_lock:
            if _spool is None or str(_spool.directory) != str(settings.CLICK_SPOOL_DIR):
                _spool = Spool(settings.CLICK_SPOOL_DIR, settings.CLICK_SPOOL_FLUSH_SECONDS)
    return _spool


# --- Storing spooled clicks -------------------------------------------------------------


def flush_directory(directory: str | os.PathLike, *, using: str | None = None) -> int:
    """Store every spool file of ``directory`` that nobody holds; return the clicks read."""
    total = 0
    for path in pending_files(directory):
        total += flush_file(path, using=using)
    return total


def pending_files(directory: str | os.PathLike) -> list[Path]:
    return sorted(Path(directory).glob(f"*{SUFFIX}"))


def flush_file(path: Path, *, using: str | None = None) -> int:
    """Store one spool file if its lock can be taken, then delete it. Return its clicks
    (0 when another process holds it, or it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # being written or flushed
        if os.fstat(fd).st_nlink == 0:
            return 0  # flushed and deleted while we opened it
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read()
        rows = parse(data, path)
        if rows:
            store(rows, using=using)
        os.unlink(path)
        return len(rows)
    finally:
        os.close(fd)


def parse(data: bytes, path: Path | None = None) -> list[list]:
    rows = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line:
            continue
        try:
            values = json.loads(line)
        except ValueError:
            # Only the last line can be cut short, by a process that died inside its write,
            # before it answered: that click was never handed out.
            log.error("Click spool: unreadable line %s of %s skipped: %r", number, path, line[:200])
            continue
        if len(values) != len(FIELDS):
            log.error(
                "Click spool: line %s of %s has %s values, not %s; skipped.", number, path, len(values), len(FIELDS)
            )
            continue
        rows.append(values)
    return rows


def store(rows: list[list], *, using: str | None = None) -> None:
    """Store spooled clicks (and their visitors) in one transaction; safe to repeat."""
    from . import fraud
    from .models import Click, Visitor

    using = using or router.db_for_write(Click)
    connection = connections[using]
    if connection.vendor != "postgresql":
        raise RuntimeError("The click spool stores into PostgreSQL only.")
    qn = connection.ops.quote_name
    click_table, visitor_table = qn(Click._meta.db_table), qn(Visitor._meta.db_table)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE IF NOT EXISTS click_spool_batch ("
            " id uuid, visitor_id uuid, new_visitor boolean, link_id bigint, merchant_id bigint,"
            " program_id bigint, promoter_id bigint, created_at timestamptz, user_agent text, referrer text,"
            " ip_hash text, sub1 text, sub2 text, sub3 text, sub4 text, sub5 text, duplicate_seconds integer,"
            " bot_reason text"
            ") ON COMMIT DELETE ROWS"
        )
        cursor.execute("DELETE FROM click_spool_batch")  # empty but inside an enclosing transaction
        # The programs' click rules, read before the COPY (no other statement may run during it).
        rules_of = fraud.program_click_rules(v[5] for v in rows)
        with cursor.cursor.copy(
            "COPY click_spool_batch (id, visitor_id, new_visitor, link_id, merchant_id, program_id, promoter_id,"
            " created_at, user_agent, referrer, ip_hash, sub1, sub2, sub3, sub4, sub5, duplicate_seconds, bot_reason)"
            " FROM STDIN"
        ) as copy:
            for v in rows:
                # A known bot (fraud.bot_reason, cached per user agent): decided here, not in
                # the redirect, so that the spool's lines keep their format.
                copy.write_row(
                    (
                        v[0], v[1], bool(v[2]), v[3], v[4], v[5], v[6], _EPOCH + dt.timedelta(microseconds=v[7]),
                        *v[8:], fraud.bot_reason(v[8], enabled=_rules(rules_of, v[5]).bots),
                    )
                )
        cursor.execute(
            f"INSERT INTO {visitor_table} (id, first_seen_at) SELECT visitor_id, min(created_at) FROM click_spool_batch "
            f"GROUP BY visitor_id ORDER BY visitor_id ON CONFLICT DO NOTHING"
        )
        # Every look-up of stored clicks is also bounded by id (a UUIDv7 of the click's time)
        # to the batch's times widened by the longest window, which keeps PostgreSQL to the
        # months' partitions those times fall in.
        ids = _id_window(rows, rules_of)
        # A click is a duplicate when its visitor clicked its link less than the window
        # before it (the first click of a new visitor never is); ties are broken by id.
        earlier = (
            f"s.id BETWEEN {ids} AND s.visitor_id = b.visitor_id AND s.link_id = b.link_id AND s.id <> b.id "
            "AND s.created_at >= b.created_at - make_interval(secs => b.duplicate_seconds) "
            "AND (s.created_at, s.id) < (b.created_at, b.id)"
        )
        duplicate = (
            f"(NOT b.new_visitor AND b.duplicate_seconds > 0 AND (EXISTS (SELECT 1 FROM {click_table} s WHERE {earlier}) "
            f"OR EXISTS (SELECT 1 FROM click_spool_batch s WHERE {earlier})))"
        )
        cursor.execute(
            f"INSERT INTO {click_table} (id, link_id, merchant_id, program_id, promoter_id, visitor_id, created_at,"
            f" user_agent, referrer, ip_hash, sub1, sub2, sub3, sub4, sub5, is_fraud, is_duplicate, flag_reason) "
            f"SELECT b.id, b.link_id, b.merchant_id, b.program_id, b.promoter_id, b.visitor_id, b.created_at,"
            f" b.user_agent, b.referrer, b.ip_hash, b.sub1, b.sub2, b.sub3, b.sub4, b.sub5, b.bot_reason <> '', d.dup,"
            f" CASE WHEN b.bot_reason <> '' THEN b.bot_reason"
            f" WHEN d.dup THEN 'repeat click within ' || b.duplicate_seconds || 's' ELSE '' END "
            f"FROM click_spool_batch b CROSS JOIN LATERAL (SELECT {duplicate} AS dup) d "
            f"ORDER BY b.created_at, b.id ON CONFLICT (id) DO NOTHING"
        )
        # Clicks stored before this batch that one of its clicks precedes within the window.
        # (A fraud reason stays: it names the fraud even on a duplicate.)
        cursor.execute(
            f"UPDATE {click_table} s SET is_duplicate = true, flag_reason = CASE WHEN s.is_fraud THEN s.flag_reason "
            f"ELSE 'repeat click within ' || b.duplicate_seconds || 's' END "
            f"FROM click_spool_batch b WHERE s.id BETWEEN {ids} "
            f"AND s.visitor_id = b.visitor_id AND s.link_id = b.link_id AND b.duplicate_seconds > 0 "
            f"AND NOT s.is_duplicate AND (s.created_at, s.id) > (b.created_at, b.id) "
            f"AND s.created_at <= b.created_at + make_interval(secs => b.duplicate_seconds)"
        )
        _flag_floods(cursor, click_table, ids, rules_of)


def _id_window(rows: list[list], rules_of: dict) -> str:
    """``'<low>'::uuid AND '<high>'::uuid``: the ids of the clicks made from the batch's first
    click less its longest window to its last click plus that window (and a second more)."""
    from . import partitions

    widest = max([*(_rules(rules_of, v[5]).flood[1] for v in rows), *(int(v[16] or 0) for v in rows)]) + 1
    first = _EPOCH + dt.timedelta(microseconds=min(v[7] for v in rows)) - dt.timedelta(seconds=widest)
    last = _EPOCH + dt.timedelta(microseconds=max(v[7] for v in rows)) + dt.timedelta(seconds=widest)
    return f"'{partitions.click_id_bound(first)}'::uuid AND '{partitions.click_id_bound(last, upper=True)}'::uuid"


def _rules(rules_of: dict, program_id):
    from . import fraud

    return rules_of.get(int(program_id)) or fraud.ClickRules()


def _flag_floods(cursor, click_table: str, ids: str, rules_of: dict) -> None:
    """The flood rule (affiliate/fraud.py) over the batch's clicks and the stored clicks that
    its clicks precede within the window (files reach the database in any order): a click is
    a flood when its visitor (first) or its IP clicked its link the limit's number of times
    within the window before it (by time, then id), as ``services.click_record`` decides one
    click at a time. A click flagged already, or cleared by hand, is left as it is."""

    programs_of: dict[tuple[int, int], list[int]] = {}
    for program_id, rules in rules_of.items():
        programs_of.setdefault(rules.flood, []).append(program_id)
    if len(programs_of) == 1:
        # Every program of the batch has the same rule (the usual case): one pass over the
        # whole batch, with no filter on the batch's programs (a temporary table has no
        # statistics; a filter on it turns the planner to a plan that takes minutes).
        ((limit, seconds),) = programs_of
        if limit:
            _flag_floods_of(cursor, click_table, ids, limit, seconds, None)
        return
    # Each program by its own rule: one pass per distinct (limit, seconds).
    for (limit, seconds), programs in sorted(programs_of.items()):
        if limit:
            _flag_floods_of(cursor, click_table, ids, limit, seconds, sorted(programs))


def _flag_floods_of(cursor, click_table: str, ids: str, limit: int, seconds: int, programs: list[int] | None) -> None:
    """One pass of the flood rule over the batch's clicks of ``programs`` (None: all of them)."""
    from . import fraud

    only = "" if programs is None else " AND b.program_id = ANY(%s)"
    for key, by, guard in (("visitor_id", "visitor", "true" + only), ("ip_hash", "IP", "b.ip_hash <> ''" + only)):
        cursor.execute(
            f"UPDATE {click_table} s SET is_fraud = true, flag_reason = %s "
            f"FROM (SELECT DISTINCT c.id FROM click_spool_batch b JOIN {click_table} c ON c.{key} = b.{key} "
            f"AND c.id BETWEEN {ids} AND c.link_id = b.link_id AND c.created_at >= b.created_at "
            f"AND c.created_at <= b.created_at + make_interval(secs => %s) WHERE {guard}) todo "
            f"WHERE s.id = todo.id AND s.id BETWEEN {ids} AND NOT s.is_fraud AND s.cleared_at IS NULL "
            f"AND (SELECT count(*) FROM (SELECT 1 FROM {click_table} e WHERE e.id BETWEEN {ids} "
            f"AND e.{key} = s.{key} AND e.link_id = s.link_id "
            f"AND e.created_at >= s.created_at - make_interval(secs => %s) AND (e.created_at, e.id) < (s.created_at, s.id) "
            f"LIMIT %s) x) >= %s",
            [
                fraud.flood_reason(by, limit, seconds), seconds, *([] if programs is None else [programs]),
                seconds, limit, limit,
            ],
        )


def record(
    *, target, visitor_id: uuid.UUID | None, ip: str, user_agent: str, referrer: str, subs: dict
) -> tuple[uuid.UUID, uuid.UUID]:
    """Spool one click for the redirect; return its id and its visitor's id."""
    from .models import uuid7
    from .services import click_browser_fields

    new_visitor = visitor_id is None
    if new_visitor:
        visitor_id = uuid.uuid4()
    micros = time.time_ns() // 1000
    click_id = uuid7(_EPOCH + dt.timedelta(microseconds=micros))  # of its created_at: its month
    browser = click_browser_fields(ip=ip, user_agent=user_agent, referrer=referrer, subs=subs)
    spool().append(
        [
            click_id.hex,
            visitor_id.hex,
            1 if new_visitor else 0,
            target.id,
            target.merchant_id,
            target.program_id,
            target.promoter_id,
            micros,
            *browser.values(),  # user_agent, referrer, ip_hash, sub1..sub5: FIELDS' order
            target.duplicate_click_seconds,
        ]
    )
    return click_id, visitor_id


# --- Waiting for a click still in flight -------------------------------------------------


def click_age_seconds(click_id: uuid.UUID) -> float | None:
    """How old a UUIDv7 click id says its click is (None for another kind of UUID)."""
    if click_id.version != 7:
        return None
    millis = click_id.int >> 80
    return time.time() - millis / 1000


def wait_for_click(click_id: uuid.UUID, lookup, *, timeout: float | None = None):
    """Look a click up; while it may still be in a spool, wait for it (polling ``lookup``)."""
    found = lookup()
    if found is not None or not enabled():
        return found
    age = click_age_seconds(click_id)
    if age is None or age < -5:
        return None
    limit = settings.CLICK_SPOOL_WAIT_SECONDS if timeout is None else timeout
    deadline = time.monotonic() + max(0.0, limit - max(age, 0.0))
    while time.monotonic() < deadline:
        time.sleep(0.05)
        found = lookup()
        if found is not None:
            return found
    return None
