import pytest

from affiliate.journey import TRANSITIONS, Action, IllegalTransition, Stage, advance

LEGAL = [
    (Stage.VISITOR, Action.REGISTER, Stage.REGISTERED, "registration"),
    (Stage.VISITOR, Action.PURCHASE, Stage.FIRST_PURCHASE, "first_purchase"),
    (Stage.REGISTERED, Action.PURCHASE, Stage.FIRST_PURCHASE, "first_purchase"),
    (Stage.FIRST_PURCHASE, Action.PURCHASE, Stage.REPEAT_PURCHASER, "repeat_purchase"),
    (Stage.FIRST_PURCHASE, Action.REGISTER, Stage.FIRST_PURCHASE, "registration"),
    (Stage.FIRST_PURCHASE, Action.REFUND, Stage.FIRST_PURCHASE, "refund"),
    (Stage.REPEAT_PURCHASER, Action.PURCHASE, Stage.REPEAT_PURCHASER, "repeat_purchase"),
    (Stage.REPEAT_PURCHASER, Action.REGISTER, Stage.REPEAT_PURCHASER, "registration"),
    (Stage.REPEAT_PURCHASER, Action.REFUND, Stage.REPEAT_PURCHASER, "refund"),
]
ILLEGAL = [
    (Stage.VISITOR, Action.REFUND),
    (Stage.REGISTERED, Action.REGISTER),
    (Stage.REGISTERED, Action.REFUND),
]


@pytest.mark.parametrize(("stage", "action", "next_stage", "event_stage"), LEGAL)
def test_every_legal_transition(stage, action, next_stage, event_stage):
    assert advance(stage, action) == (next_stage, event_stage)


@pytest.mark.parametrize(("stage", "action"), ILLEGAL)
def test_every_illegal_transition_raises(stage, action):
    with pytest.raises(IllegalTransition) as caught:
        advance(stage, action)
    assert (caught.value.stage, caught.value.action) == (stage, action)


def test_the_table_is_exactly_the_legal_and_illegal_cases():
    every_pair = {(s, a) for s in Stage.ALL for a in Action.ALL}
    assert set(TRANSITIONS) == {(s, a) for s, a, _, _ in LEGAL}
    assert every_pair - set(TRANSITIONS) == set(ILLEGAL)


def test_unknown_stage_or_action_is_illegal():
    with pytest.raises(IllegalTransition):
        advance("vip", Action.PURCHASE)
    with pytest.raises(IllegalTransition):
        advance(Stage.VISITOR, "chargeback")
