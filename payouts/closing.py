"""The month-end close: apply the plans, approve what is due and build the batch, write the
statements and a reconciliation report. Idempotent: a second run changes nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.db import IntegrityError, connections, transaction
from django.db.models import Sum
from django.utils import timezone

from affiliate.models import ConversionEvent
from core import money
from merchants.models import Merchant, Program

from . import plans, services
from .audit import AuditReport, audit_commissions, audit_ledger
from .batches import batch_build
from .models import Account, Commission, Entry, MonthClose, PayoutLine, Statement
from .statements import LedgerMismatch, month_bounds, statements_write_all


@dataclass
class CloseResult:
    merchant: Merchant
    period: str
    approved: int = 0
    adjustments: int = 0
    batches: list[int] = field(default_factory=list)
    lines: int = 0
    payable_minor: dict[str, int] = field(default_factory=dict)
    statements_written: int = 0
    report: dict = field(default_factory=dict)
    already_closed: bool = False

    @property
    def clean(self) -> bool:
        return not self.report.get("differences")


def close_month(*, merchant: Merchant, period: str, now=None, progress: Callable[[str], None] | None = None) -> CloseResult:
    say = progress or (lambda line: None)
    start, end = month_bounds(period)
    now = now or timezone.now()
    if end > now:
        raise ValueError(f"{period} has not ended yet; close it from {end:%Y-%m-%d}.")
    result = CloseResult(merchant=merchant, period=period)
    previous = MonthClose.objects.filter(merchant=merchant, period=period).first()
    if previous is not None:
        result.already_closed = True
        result.report = previous.report
        say(f"{merchant.name}: {period} was closed on {previous.created_at:%Y-%m-%d %H:%M}; nothing to do")
        return result

    # The statements only read entries from before the month's end, which nothing below
    # writes (every entry is stamped with the time it is written): where a second
    # connection can see what this one has committed, they are written there, alongside.
    alongside = StatementsAlongside(merchant.pk, period) if _alongside_possible(end) else None
    try:
        # The plans read the month's commissions whatever their status, so they come first;
        # the batch then approves what is due with the very update that claims it (a
        # month-end's million commissions are each written once), and the rest is approved
        # after it.
        say(f"{merchant.name}: applying payout plans (guaranteed minimum, bonus)")
        if alongside is not None:
            say("  the statements are being written meanwhile, on a second connection")
        result.adjustments = len(plans.apply_plans(merchant=merchant, period=period))
        say(f"  {result.adjustments} top-up(s) and bonus(es)")

        currencies = sorted(set(Program.objects.filter(merchant=merchant).values_list("currency", flat=True)))
        for currency in currencies:
            say(f"building the {currency} payout batch, approving with it the commissions whose hold has ended")
            with _roomy():
                built = batch_build(merchant=merchant, currency=currency, period=period, progress=say, approve_due_at=now)
            result.approved += built.approved
            if built.batch is not None:
                result.batches.append(built.batch.pk)
                result.lines += built.lines
                result.payable_minor[currency] = built.total_minor
                say(f"  batch {built.batch.pk}: {built.lines} line(s), {money.format_minor(built.total_minor, currency)} {currency}")

        say("approving the other commissions whose hold has ended")
        while True:
            done = services.approve_due(now=now)
            result.approved += done
            if done == 0:
                break
        say(f"  approved {result.approved}")
    except BaseException:
        if alongside is not None:
            alongside.finish(commit=False)  # as if never started: nothing of the close is kept
        raise

    say("writing statements")
    mismatches = []
    if alongside is not None:
        waited = time.monotonic()
        alongside.finish(commit=True)
        for line in alongside.lines:
            say(line)
        say(
            f"  (written alongside in {alongside.seconds:.1f} s, then the reconciliation's figures of the month in "
            f"{alongside.facts_seconds:.1f} s; waited {time.monotonic() - waited:.1f} s for them)"
        )
        result.statements_written = alongside.written
        if alongside.mismatch is not None:
            mismatches.append(str(alongside.mismatch))
    else:
        try:
            with _roomy():
                result.statements_written = statements_write_all(merchant_id=merchant.pk, period=period, progress=say)
        except LedgerMismatch as exc:
            mismatches.append(str(exc))
    say(f"  {result.statements_written} statement(s) written")

    say("reconciling events, commissions, ledger and payouts")
    with _roomy():
        result.report = reconciliation(
            merchant=merchant, period=period, extra=mismatches, facts=alongside.facts if alongside is not None else None
        )
    try:
        with transaction.atomic():
            MonthClose.objects.create(merchant=merchant, period=period, report=result.report)
    except IntegrityError:
        result.already_closed = True  # a concurrent run closed it first
    return result


def _alongside_possible(end) -> bool:
    """A second connection sees what this one has committed, and writes the same statements,
    only on PostgreSQL, outside any transaction (a test's, a caller's: a second connection
    would not see inside it), and once the month's end has passed on the clock that stamps
    the entries (before it, the batch's entries would fall inside the month)."""
    connection = transaction.get_connection()
    return connection.vendor == "postgresql" and not connection.in_atomic_block and timezone.now() >= end


class _RollBack(Exception):
    pass


class StatementsAlongside:
    """``statements_write_all`` for the month in a thread, on that thread's own connection,
    in a transaction held open until ``finish``: committed if the close got through its
    batch, rolled back if not (so that a failed close leaves no statement behind, as when
    they are written after the batch)."""

    def __init__(self, merchant_id: int, period: str):
        self.merchant_id, self.period = merchant_id, period
        self.lines: list[str] = []
        self.written = 0
        self.seconds = self.facts_seconds = 0.0
        self.facts: MonthFacts | None = None
        self.mismatch: LedgerMismatch | None = None
        self._failure: BaseException | None = None
        self._commit = False
        self._decided = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"statements {period}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            try:
                with _roomy():
                    with transaction.get_connection().cursor() as cursor:
                        # One core: the batch has the other (no parallel workers taken from it).
                        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                        # The statements' foreign keys checked as they are inserted, here, not
                        # when the close commits them.
                        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
                    written = 0
                    try:
                        with transaction.atomic():
                            written = statements_write_all(
                                merchant_id=self.merchant_id, period=self.period, progress=self.lines.append
                            )
                    except LedgerMismatch as exc:  # nothing written
                        self.mismatch = exc
                    self.seconds = time.monotonic() - started
                    # Then what the reconciliation reads that nothing the close writes changes.
                    self.facts = month_facts(merchant_id=self.merchant_id, period=self.period)
                    self.facts_seconds = time.monotonic() - started - self.seconds
                    self._decided.wait()
                    if not self._commit:
                        raise _RollBack
                self.written = written
            except _RollBack:
                pass
        except BaseException as exc:  # handed to the close in finish()
            self._failure = exc
        finally:
            connections.close_all()  # this thread's connections only

    def finish(self, *, commit: bool) -> None:
        self._commit = commit
        self._decided.set()
        self._thread.join()
        if commit and self._failure is not None:
            raise self._failure


@contextmanager
def _roomy():
    """A transaction whose grouped queries over millions of ledger rows may hash in memory:
    at PostgreSQL's default ``work_mem`` (4 MB) a month-end's joins and aggregates spill to
    disk. ``SET LOCAL``: for this transaction only."""
    with transaction.atomic():
        connection = transaction.get_connection()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL work_mem = '128MB'")
        yield


@dataclass
class MonthFacts:
    """What the reconciliation reads that nothing the close writes can change, so that it
    may be read alongside the batch: the month's commissions (how many, their sum) and what
    their creation journals put on promoters' accounts (once the month has ended, its
    commissions and their journals are all written: every one is stamped with the time it
    is written), and the commissions' own checks of the audit (the close writes no
    commission and no commission's journal)."""

    commission_count: int
    commission_total: int
    ledger_total: int
    commissions_checked: AuditReport


def month_facts(*, merchant_id: int, period: str) -> MonthFacts:
    start, end = month_bounds(period)
    commissions = Commission.objects.filter(merchant_id=merchant_id, created_at__gte=start, created_at__lt=end)
    # What the month's commissions put on promoters' accounts: their creation journals.
    ledger_total = (
        Entry.objects.filter(
            journal__commission__in=commissions, journal__kind__in=["commission", "reversal", "clawback"],
            account__promoter__isnull=False,
        ).aggregate(total=Sum("amount_minor"))["total"]
        or 0
    )
    return MonthFacts(
        commission_count=commissions.count(),
        commission_total=commissions.aggregate(total=Sum("amount_minor"))["total"] or 0,
        ledger_total=ledger_total,
        commissions_checked=audit_commissions(merchant_id=merchant_id),
    )


def reconciliation(*, merchant: Merchant, period: str, extra=(), facts: MonthFacts | None = None) -> dict:
    """Events vs commissions vs ledger vs payouts for the month, every difference named.
    ``facts``: ``month_facts``, read alongside the batch (or here when not given)."""
    start, end = month_bounds(period)
    events = ConversionEvent.objects.filter(merchant=merchant, occurred_at__gte=start, occurred_at__lt=end)
    queued = events.filter(status=ConversionEvent.Status.QUEUED).count()
    facts = facts or month_facts(merchant_id=merchant.pk, period=period)
    commission_total, ledger_total = facts.commission_total, facts.ledger_total
    lines = PayoutLine.objects.filter(batch__merchant=merchant, batch__period=period)
    # The ledger-wide checks; the event-by-event recomputation is audit_ledger's (nightly).
    audit = audit_ledger(merchant_id=merchant.pk, recompute=False, commissions_checked=facts.commissions_checked)
    differences = list(audit.differences) + list(extra)
    if queued:
        differences.append(f"{queued} event(s) of {period} are still queued: not yet computed")
    if commission_total != ledger_total:
        differences.append(
            f"commissions of {period} sum to {commission_total} minor units but their ledger entries to {ledger_total}"
        )
    balances = dict(
        Account.objects.filter(merchant=merchant, promoter__isnull=False).values("kind")
        .annotate(total=Sum("balance_minor")).values_list("kind", "total")
    )
    return {
        "period": period,
        "events": {"received": events.count(), "queued": queued,
                   "purchases_minor": events.filter(type="purchase").aggregate(t=Sum("amount_minor"))["t"] or 0,
                   "refunds_minor": events.filter(type="refund").aggregate(t=Sum("amount_minor"))["t"] or 0},
        "commissions": {"count": facts.commission_count, "total_minor": commission_total},
        "ledger": {"commission_entries_minor": ledger_total, "balances_minor": balances},
        "payouts": {"lines": lines.count(), "total_minor": lines.aggregate(t=Sum("amount_minor"))["t"] or 0},
        "statements": Statement.objects.filter(promoter__merchant=merchant, period=period).count(),
        "audit": {"events": audit.events, "commissions": audit.commissions, "journals": audit.journals},
        "differences": differences,
    }
