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
