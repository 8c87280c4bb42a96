"""The customer journey: an explicit state machine, decided by the platform.

visitor → registered → first_purchase → repeat_purchaser. A customer may buy without
registering (guest checkout) and may register after buying (the journey does not go
back). Anything not in the table is illegal and raises ``IllegalTransition``.
"""

from __future__ import annotations


class Stage:
    VISITOR = "visitor"
    REGISTERED = "registered"
    FIRST_PURCHASE = "first_purchase"
    REPEAT_PURCHASER = "repeat_purchaser"

    CHOICES = [
        (VISITOR, "Visitor"),
        (REGISTERED, "Registered"),
        (FIRST_PURCHASE, "First purchase"),
        (REPEAT_PURCHASER, "Repeat purchaser"),
    ]
    ALL = tuple(value for value, _ in CHOICES)


class Action:
    REGISTER = "registration"
    PURCHASE = "purchase"
    REFUND = "refund"

    ALL = (REGISTER, PURCHASE, REFUND)


class IllegalTransition(Exception):
    def __init__(self, stage: str, action: str):
        super().__init__(f"A customer at stage {stage!r} cannot take a {action!r}.")
        self.stage = stage
        self.action = action


# (stage, action) -> (next stage, the event's stage label)
TRANSITIONS: dict[tuple[str, str], tuple[str, str]] = {
    (Stage.VISITOR, Action.REGISTER): (Stage.REGISTERED, "registration"),
    (Stage.VISITOR, Action.PURCHASE): (Stage.FIRST_PURCHASE, "first_purchase"),
    (Stage.REGISTERED, Action.PURCHASE): (Stage.FIRST_PURCHASE, "first_purchase"),
    (Stage.FIRST_PURCHASE, Action.PURCHASE): (Stage.REPEAT_PURCHASER, "repeat_purchase"),
    (Stage.FIRST_PURCHASE, Action.REGISTER): (Stage.FIRST_PURCHASE, "registration"),
    (Stage.FIRST_PURCHASE, Action.REFUND): (Stage.FIRST_PURCHASE, "refund"),
    (Stage.REPEAT_PURCHASER, Action.PURCHASE): (Stage.REPEAT_PURCHASER, "repeat_purchase"),
    (Stage.REPEAT_PURCHASER, Action.REGISTER): (Stage.REPEAT_PURCHASER, "registration"),
    (Stage.REPEAT_PURCHASER, Action.REFUND): (Stage.REPEAT_PURCHASER, "refund"),
}
# Not in the table, on purpose:
# - registered + registration: a second registration of one customer is a repeat of the
#   first event (idempotency), never a transition;
# - visitor/registered + refund: there is no purchase to refund.

EVENT_STAGES = ("registration", "first_purchase", "repeat_purchase", "refund")


def advance(stage: str, action: str) -> tuple[str, str]:
    """Return ``(next_stage, event_stage)`` or raise ``IllegalTransition``."""
    try:
        return TRANSITIONS[(stage, action)]
    except KeyError:
        raise IllegalTransition(stage, action) from None
