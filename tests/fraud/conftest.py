from __future__ import annotations

import pytest

from affiliate import fraud


@pytest.fixture
def fraud_rules(settings):
    """The click rules on with small figures: at most 2 clicks in 60 s, bots flagged."""
    settings.FRAUD_CLICK_FLOOD_MAX = 2
    settings.FRAUD_CLICK_FLOOD_SECONDS = 60
    settings.FRAUD_BOT_DETECTION = True
    fraud._bot_match.cache_clear()
    return settings
