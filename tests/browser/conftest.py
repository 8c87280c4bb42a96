"""Browser tests: Playwright's sync API driving Debian's Chromium against a live server.

Playwright's own browser builds are never downloaded (no ``playwright install``): the tests
launch the system Chromium (``CHROMIUM_PATH``, default ``/usr/bin/chromium``; ``.ci/run``
installs it when missing). Without it they are skipped, except in CI (``CI`` set), where
a missing browser is an error: the suite must not go green there without having run them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -r requirements-dev.txt)"
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH); .ci/run installs it"
    return None


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    reason = _missing()
    in_ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    for item in items:
        if here not in Path(str(item.fspath)).resolve().parents:
            continue
        item.add_marker(pytest.mark.browser)
        # One live server and one Chromium per xdist worker is plenty on two cores.
        item.add_marker(pytest.mark.xdist_group("browser"))
        if reason and not in_ci:
            item.add_marker(pytest.mark.skip(reason=f"browser test skipped: {reason}"))


@pytest.fixture
def browser(live_server, transactional_db):
    """A headless Chromium for one test.

    Playwright's sync API runs an asyncio loop in the test's thread while it is open, and
    Django refuses database work on a thread with a running loop. So the browser is opened
    after the database and the live server are set up, closed before they are torn down,
    and the test makes its own database writes before it drives the browser (the live
    server answers on its own thread, where no loop runs).
    """
    reason = _missing()
    if reason:
        pytest.fail(f"browser tests must run in CI: {reason}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Screenshots go to ``tests/artifacts/`` (ignored by git but for its README)."""
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS

