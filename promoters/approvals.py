"""Rejecting a promoter who joined a program that wants the merchant's approval.

The companion of ``services.promoter_approve`` (kept in its own module while the portal's
``services.py`` is being worked on; it belongs beside it). A rejected promoter becomes
inactive: they keep their login and see their portal, and earn nothing.
"""

from __future__ import annotations

from django.db import transaction

from affiliate.errors import ServiceValidationError

from .models import Promoter


@transaction.atomic
def promoter_reject(*, promoter: Promoter) -> Promoter:
    """A promoter awaiting approval becomes inactive (refused); anyone else is left alone."""
    promoter = Promoter.objects.select_for_update().get(pk=promoter.pk)
    if promoter.status != Promoter.Status.PENDING:
        raise ServiceValidationError({"status": ["Only a promoter awaiting approval can be rejected."]})
    promoter.status = Promoter.Status.INACTIVE
    promoter.save(update_fields=["status", "updated_at"])
    return promoter
