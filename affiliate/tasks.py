from celery import shared_task

from . import events


@shared_task(name="affiliate.process_event", acks_late=True, max_retries=5, default_retry_delay=2)
def process_event(event_id: int) -> str:
    event = events.event_process(event_id=event_id)
    return "missing" if event is None else event.status


@shared_task(name="affiliate.requeue_stale_events")
def requeue_stale_events() -> int:
    return events.requeue_stale_events()
