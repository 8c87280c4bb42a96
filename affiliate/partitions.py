"""Monthly partitions (PostgreSQL declarative partitioning) of the two tables that grow with
the traffic: clicks and conversion events.

Both are partitioned by RANGE of their primary key, which tells the month:

* a click's id is a UUIDv7, whose first 48 bits are the millisecond it was made;
* an event's id is ``YYYYMM * 10^10 + n``: the month it was received (UTC) and a number from
  a sequence, given by the database's ``affiliate_event_id()``. It stays an integer that
  JSON and JavaScript hold exactly (below 2^53) and in the order the events arrived.

Keyed by the id, each table keeps its one-column primary key, so every foreign key to it
(bindings, touchpoints, credits, commissions, bases, refunds to their purchase) stays as it
was. What must be unique besides the id cannot be enforced across partitions; for events it
is ``EventKey``'s to enforce (one purchase per order, one registration per customer...).

Each table has a DEFAULT partition, so an insert never fails for want of a month. The
scheduled job (``affiliate.ensure_partitions``, and ``manage.py partitions``) creates the
coming months ahead; a month whose rows already sit in the default partition (a click made
with a clock years off, a job that did not run for months) is reported and left for an
operator, since creating it would have to move those rows under a lock. Events recorded
before the id scheme keep their small ids in the ``_before`` partition.

On SQLite nothing here applies: the tables are plain tables.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import connections, transaction

log = logging.getLogger(__name__)

CLICKS = "affiliate_click"
EVENTS = "affiliate_conversionevent"
TABLES = (CLICKS, EVENTS)
# An event id is the month (YYYYMM) times this, plus a number from the sequence.
EVENT_ID_MONTH = 10**10
# The first month of the event id scheme: smaller ids are the events recorded before it.
EVENT_ID_EPOCH = date(2000, 1, 1)
EVENT_SEQUENCE = "affiliate_conversionevent_serial"
EVENT_ID_FUNCTION = f"""
CREATE OR REPLACE FUNCTION affiliate_event_id() RETURNS bigint LANGUAGE sql VOLATILE AS $$
    SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYYMM')::bigint * {EVENT_ID_MONTH}
           + nextval('{EVENT_SEQUENCE}') % {EVENT_ID_MONTH}
$$
"""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# How far back a table's first conversion creates months for the rows it holds.
MAX_MONTHS_BACK = 36


def month_start(day: date | datetime) -> date:
    return date(day.year, day.month, 1)


def add_months(month: date, count: int) -> date:
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)


def event_id_floor(month: date) -> int:
    """The smallest event id of ``month``."""
    return (month.year * 100 + month.month) * EVENT_ID_MONTH


def event_id_month(event_id: int) -> date | None:
    """The month an event id was given in, or ``None`` for an id from before the scheme."""
    if event_id < event_id_floor(EVENT_ID_EPOCH):
        return None
    yyyymm = event_id // EVENT_ID_MONTH
    return date(yyyymm // 100, yyyymm % 100, 1)


def click_id_floor(month: date) -> uuid.UUID:
    """The smallest UUIDv7 of ``month``."""
    return uuid.UUID(click_id_bound(datetime(month.year, month.month, 1, tzinfo=UTC)))


def click_id_bound(at: datetime | None, *, upper: bool = False) -> str | None:
    """The smallest (or, ``upper``, the largest) UUIDv7 of ``at``'s millisecond, as text: a
    bound on the ids of the clicks made in a time window, which tells PostgreSQL which
    months' partitions to read (a window on ``created_at`` alone reads them all)."""
    if at is None:
        return None
    millis = (at - _EPOCH) // timedelta(milliseconds=1)
    return str(uuid.UUID(int=((millis + 1) << 80) - 1 if upper else millis << 80))


def _floor(table: str, month: date) -> str:
    """The partition bound of ``month``'s first row, as SQL."""
    if table == CLICKS:
        return f"'{click_id_floor(month)}'"
    return str(event_id_floor(month))


def partition_name(table: str, month: date) -> str:
    return f"{table}_y{month.year}m{month.month:02d}"


@dataclass(frozen=True)
class Outcome:
    table: str
    month: date
    state: str  # "created", "present" or "blocked"
    detail: str = ""

    def __str__(self) -> str:
        text = f"{partition_name(self.table, self.month)}: {self.state}"
        return f"{text} ({self.detail})" if self.detail else text


def is_partitioned(table: str, using: str = "default") -> bool:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


def partitions(table: str, using: str = "default") -> dict[str, str]:
    """The partitions of ``table``: name -> bound, as PostgreSQL states it."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s) ORDER BY c.relname",
            [table],
        )
        return dict(cursor.fetchall())


def describe(table: str, using: str = "default") -> list[tuple[str, str, int]]:
    """Each partition of ``table`` with its bound and its number of rows (the planner's
    estimate: exact counts would read every row)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), greatest(c.reltuples, 0)::bigint FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s) ORDER BY c.relname",
            [table],
        )
        return cursor.fetchall()


def ensure(*, ahead: int | None = None, today: date | None = None, using: str = "default") -> list[Outcome]:
    """Create the partitions of this month and the ``ahead`` months after it (the setting
    ``PARTITION_MONTHS_AHEAD`` by default) for both tables; return what was found and done.

    A month is created in a transaction of its own, waiting at most ``PARTITION_LOCK_TIMEOUT``
    for the table's lock: a busy table is tried again at the next run."""
    if not all(is_partitioned(table, using) for table in TABLES):
        return []
    ahead = settings.PARTITION_MONTHS_AHEAD if ahead is None else ahead
    first = month_start(today or datetime.now(UTC))
    months = [add_months(first, n) for n in range(ahead + 1)]
    outcomes = []
    for table in TABLES:
        present = partitions(table, using)
        for month in months:
            if partition_name(table, month) in present:
                outcomes.append(Outcome(table, month, "present"))
                continue
            outcomes.append(_create(table, month, using))
    return outcomes


def _create(table: str, month: date, using: str) -> Outcome:
    low, high = _floor(table, month), _floor(table, add_months(month, 1))
    name = partition_name(table, month)
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{settings.PARTITION_LOCK_TIMEOUT}s"])
        cursor.execute(f'SELECT count(*) FROM "{table}_default" WHERE id >= {low} AND id < {high}')
        stray = cursor.fetchone()[0]
        if stray:
            detail = f"{stray} rows of that month are in {table}_default; move them to create it"
            log.error("Partition %s not created: %s.", name, detail)
            return Outcome(table, month, "blocked", detail)
        cursor.execute(f'CREATE TABLE "{name}" PARTITION OF "{table}" FOR VALUES FROM ({low}) TO ({high})')
    log.info("Partition %s created.", name)
    return Outcome(table, month, "created")


# --- The conversion of a plain table, for the migrations ---------------------------------


def _definitions(cursor, table: str) -> tuple[list, list, list[str]]:
    """What a rewrite of ``table`` must put back, as PostgreSQL states it: the foreign keys
    to it from other tables (table, name, definition), its own constraints (name,
    definition; the primary key first, foreign keys last) and its other indexes."""
    cursor.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE confrelid = %s::regclass AND conrelid <> confrelid AND contype = 'f' AND conparentid = 0 ORDER BY conname",
        [table],
    )
    incoming = cursor.fetchall()
    cursor.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
        "AND contype IN ('p', 'u', 'c', 'f') AND conparentid = 0 ORDER BY contype = 'f', contype <> 'p', conname",
        [table],
    )
    own = cursor.fetchall()
    cursor.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i WHERE i.indrelid = %s::regclass "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) "
        "ORDER BY i.indexrelid::regclass::text",
        [table],
    )
    return incoming, own, [row[0] for row in cursor.fetchall()]


def _restore(cursor, table: str, own, indexes, incoming) -> None:
    """Put back what ``_definitions`` read, on the rewritten ``table``, under the same names."""
    for name, definition in own:
        cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    for definition in indexes:
        cursor.execute(definition)
    for source, name, definition in incoming:
        cursor.execute(f'ALTER TABLE {source} ADD CONSTRAINT "{name}" {definition}')


def convert(schema_editor, table: str) -> None:
    """Turn the plain ``table`` into one partitioned by month of its id, keeping its rows,
    columns, defaults, constraints, indexes and the foreign keys to it, under their names.
    Run inside the migration's transaction: it all happens, or none of it."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql" or is_partitioned(table, connection.alias):
        return
    old = f"{table}_unpartitioned"
    with connection.cursor() as cursor:
        incoming, own, indexes = _definitions(cursor, table)
        cursor.execute(
            f"SELECT min(created_at) FROM {table}"
            if table == CLICKS
            else f"SELECT min(received_at) FROM {table} WHERE id >= {event_id_floor(EVENT_ID_EPOCH)}"
        )
        earliest = cursor.fetchone()[0]

        for source, name, _ in incoming:
            cursor.execute(f'ALTER TABLE {source} DROP CONSTRAINT "{name}"')
        cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{old}"')
        cursor.execute(f'CREATE TABLE "{table}" (LIKE "{old}" INCLUDING DEFAULTS) PARTITION BY RANGE (id)')
        cursor.execute(f'CREATE TABLE "{table}_default" PARTITION OF "{table}" DEFAULT')
        if table == EVENTS:
            low = event_id_floor(EVENT_ID_EPOCH)
            cursor.execute(f'CREATE TABLE "{table}_before" PARTITION OF "{table}" FOR VALUES FROM (MINVALUE) TO ({low})')
            cursor.execute(f"CREATE SEQUENCE IF NOT EXISTS {EVENT_SEQUENCE} OWNED BY {table}.id")
            cursor.execute(EVENT_ID_FUNCTION)
            cursor.execute(f'ALTER TABLE "{table}" ALTER COLUMN id SET DEFAULT affiliate_event_id()')
        now = month_start(datetime.now(UTC))
        start = now if earliest is None else max(month_start(earliest), add_months(now, -MAX_MONTHS_BACK))
        month = start
        while month <= add_months(now, settings.PARTITION_MONTHS_AHEAD):
            low, high = _floor(table, month), _floor(table, add_months(month, 1))
            cursor.execute(
                f'CREATE TABLE "{partition_name(table, month)}" PARTITION OF "{table}" FOR VALUES FROM ({low}) TO ({high})'
            )
            month = add_months(month, 1)
        cursor.execute(f'INSERT INTO "{table}" SELECT * FROM "{old}"')
        cursor.execute(f'DROP TABLE "{old}"')
        _restore(cursor, table, own, indexes, incoming)
        cursor.execute(f'ANALYZE "{table}"')


def unconvert(schema_editor, table: str) -> None:
    """The reverse of ``convert``: the same table, plain again."""
    connection = schema_editor.connection
    if connection.vendor != "postgresql" or not is_partitioned(table, connection.alias):
        return
    with connection.cursor() as cursor:
        incoming, own, indexes = _definitions(cursor, table)
        old = f"{table}_partitioned"
        for source, name, _ in incoming:
            cursor.execute(f'ALTER TABLE {source} DROP CONSTRAINT "{name}"')
        cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{old}"')
        cursor.execute(f'CREATE TABLE "{table}" (LIKE "{old}" INCLUDING DEFAULTS)')
        cursor.execute(f'INSERT INTO "{table}" SELECT * FROM "{old}"')
        cursor.execute(f'DROP TABLE "{old}" CASCADE')
        if table == EVENTS:
            cursor.execute(f'ALTER TABLE "{table}" ALTER COLUMN id DROP DEFAULT')
            cursor.execute(f"DROP SEQUENCE IF EXISTS {EVENT_SEQUENCE}")
            cursor.execute("DROP FUNCTION IF EXISTS affiliate_event_id()")
            cursor.execute(f'ALTER TABLE "{table}" ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY')
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), coalesce(max(id), 0) + 1, false) FROM {table}")
        _restore(cursor, table, own, indexes, incoming)
