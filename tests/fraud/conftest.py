from __future__ import annotations

import pytest

from affiliate import fraud


def set_rules(program, **rules):
    """Change a program's fraud rules (the others keep their value)."""
    program.fraud = {**program.fraud_rules, **rules}
    program.save(update_fields=["fraud"])
    return program


@pytest.fixture
def fraud_rules(program):
    """The program's click rules with small figures: at most 2 clicks in 60 s, bots flagged."""
    fraud._bot_match.cache_clear()
    return set_rules(program, click_flood_max=2, click_flood_seconds=60, bots=True)
