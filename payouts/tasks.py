from celery import shared_task

from . import services


@shared_task(name="payouts.approve_due")
def approve_due() -> int:
    """Approve what has come out of its hold; runs until nothing is left."""
    total = 0
    while True:
        done = services.approve_due()
        total += done
        if done == 0:
            return total


@shared_task(name="payouts.close_last_month")
def close_last_month() -> int:
    """Scheduled on the first of each month: close the month that just ended."""
    from django.utils import timezone

    from merchants.models import Merchant

    from .closing import close_month

    today = timezone.now().date()
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    period = f"{year:04d}-{month:02d}"
    for merchant in Merchant.objects.order_by("id"):
        close_month(merchant=merchant, period=period)
    return Merchant.objects.count()


@shared_task(name="payouts.deliver_webhook")
def deliver_webhook(delivery_id: int, expected_attempts: int | None = None) -> str | None:
    """One attempt at one webhook delivery; a duplicate message finds nothing to do."""
    from . import webhooks

    delivery = webhooks.deliver(delivery_id, expected_attempts=expected_attempts)
    return delivery.status if delivery else None


@shared_task(name="payouts.sweep_webhooks")
def sweep_webhooks() -> int:
    """Queue every webhook delivery whose next attempt is due (retries, lost messages)."""
    from . import webhooks

    return webhooks.sweep()
