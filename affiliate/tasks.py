from celery import shared_task

from . import events


@shared_task(name="affiliate.process_event", acks_late=True, max_retries=5, default_retry_delay=2)
def process_event(event_id: int) -> str:
    """One event; a failure is counted against it (failed at EVENT_MAX_ATTEMPTS) and the
    sweep sends it again."""
    try:
        event = events.event_process(event_id=event_id)
    except Exception as exc:
        events.event_fail(event_id=event_id, error=exc)
        raise
    return "missing" if event is None else event.status


@shared_task(name="affiliate.process_events", acks_late=True, max_retries=5, default_retry_delay=2)
def process_events(event_ids: list[int]) -> int:
    """A batch of events, processed in one transaction; should one of them fail, each is
    then processed on its own, so that one bad event holds up no other."""
    try:
        return len(events.events_process(event_ids=event_ids))
    except Exception:
        if len(event_ids) == 1:
            raise
    for event_id in event_ids:
        process_event.delay(event_id)
    return 0


@shared_task(name="affiliate.drain_events", acks_late=True)
def drain_events(slot: int = 0) -> int:
    """Credit queued events in batches until none are left (see ``events.events_drain``)."""
    return events.events_drain(slot=slot)


@shared_task(name="affiliate.requeue_stale_events")
def requeue_stale_events() -> int:
    return events.requeue_stale_events()


@shared_task(name="affiliate.ensure_partitions")
def ensure_partitions() -> list[str]:
    """Create this month's and the coming months' partitions of clicks and events."""
    from . import partitions

    return [str(outcome) for outcome in partitions.ensure()]
