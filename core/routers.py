"""Reads of the read-only pages on a PostgreSQL replica (``DATABASE_REPLICA_URL``).

The merchant pages, the insight pages and the promoter portal's figures are aggregates over
many rows that a streaming replica answers as well as the primary, a fraction of a second
behind it. Their selectors read through ``read_alias()`` (raw SQL, and querysets handed back
to be evaluated later) or run inside ``replica_reads()`` (a decorator as well), which this
router honours. Everything else, and every write wherever it comes from, goes to ``default``;
without ``DATABASE_REPLICA_URL`` (``settings.REPLICA_READS`` off) everything does.

The ``replica`` alias always exists (the primary's settings when no replica is set, and a
test mirror of ``default``), so that tests can turn ``REPLICA_READS`` on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS

REPLICA = "replica"

_replica_reads: ContextVar[bool] = ContextVar("replica_reads", default=False)


def read_alias() -> str:
    """The database alias of a read-only page's queries: ``replica`` when one is configured,
    else ``default``."""
    if getattr(settings, "REPLICA_READS", False) and REPLICA in settings.DATABASES:
        return REPLICA
    return DEFAULT_DB_ALIAS


@contextmanager
def replica_reads() -> Iterator[str]:
    """Within the block (this thread or task only), the ORM's reads go to ``read_alias()``;
    writes stay on ``default``. Yields the alias. Also a decorator."""
    token = _replica_reads.set(True)
    try:
        yield read_alias()
    finally:
        _replica_reads.reset(token)


class ReplicaRouter:
    """Reads inside ``replica_reads()`` go to the replica when one is configured; every
    write goes to ``default`` (an object read from the replica is saved to the primary);
    only ``default`` is migrated."""

    def db_for_read(self, model, **hints):
        if _replica_reads.get():
            return read_alias()
        return None  # Django's default: the instance's own database, else default

    def db_for_write(self, model, **hints):
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        if {obj1._state.db, obj2._state.db} <= {DEFAULT_DB_ALIAS, REPLICA, None}:
            return True  # the same data: one is a copy of the other
        return None

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        return db == DEFAULT_DB_ALIAS
