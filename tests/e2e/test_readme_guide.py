"""The README's merchant integration guide, run as written.

Every ``sh`` block of the guide is taken from README.md as it stands and run, in order, by one
bash against a live server on the embedded default (SQLite, tasks inline); only the guide's
``API=`` line is pointed at the test server's port. The figures the guide prints are then
compared with what the commands answered: the redirect's status and Location, the bot
lesson's ``click_flagged`` warning, the purchase's split and commissions (7.20, 3.60, 4.80),
the refund's reversals (a sixth of each), the balance, the postback and the error body.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.affiliate.test_sqlite_concurrency import _env, sqlite_server  # noqa: F401 - the live server fixture
from tests.realservices import BASE_DIR

pytestmark = pytest.mark.xdist_group("sqlite-server")

MARK = "@@block@@"


def guide() -> str:
    text = (BASE_DIR / "README.md").read_text()
    return text[text.index("## Merchant integration guide") : text.index("### Reference")]


def blocks(section: str) -> list[tuple[str, str]]:
    """The fenced blocks of the guide, in order: (language, content)."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"```(\w+)\n(.*?)```", section, re.S)]


def test_the_guide_gives_the_output_it_prints(sqlite_server):  # noqa: F811
    db, base, _credentials, _log = sqlite_server
    section = guide()
    shell = [code for lang, code in blocks(section) if lang == "sh"]
    assert len(shell) >= 15
    assert shell[1].count("API=http://127.0.0.1:8000") == 1
    shell[1] = shell[1].replace("API=http://127.0.0.1:8000", f"API={base}")
    script = "set -u\n" + "".join(f"echo '{MARK}'\n{code}\necho\n" for code in shell)
    env = {**_env(db), "HOME": str(db.parent)}  # the server's own settings: DEBUG, the SQLite file, the keys
    run = subprocess.run(["bash", "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    outputs = run.stdout.split(MARK + "\n")[1:]
    assert len(outputs) == len(shell), run.stderr
    by_command = dict(zip(shell, outputs, strict=True))

    def output_of(snippet: str) -> str:
        (found,) = [out for code, out in by_command.items() if snippet in code]
        return found

    def json_of(snippet: str) -> dict:
        return json.loads(output_of(snippet).split("\nHTTP ")[0])

    # 4. The redirect, as the guide's text block shows it.
    redirect = output_of("?sub1=spring-video")
    assert redirect.startswith("HTTP/1.1 302 Found"), run.stdout[:3000]
    assert re.search(r"(?im)^location: https://shop\.example\.com/p/1\?color=red&aff_click=[0-9a-f]{32}\s*$", redirect)
    assert re.search(r"(?im)^set-cookie: +aff_vid=[0-9a-f-]{36}; expires=.*HttpOnly; Max-Age=31536000; Path=/; SameSite=Lax", redirect)
    # The bot lesson: the warning the guide prints, word for word.
    printed = re.search(r'"warnings":(\[\{"code":"click_flagged".*?\}\])', section).group(1)
    assert json_of("bot-1")["warnings"] == json.loads(printed)
    assert json_of('"customer_id\\": \\"cust-42\\", \\"click_id')["warnings"] == []  # the browser's click is clean

    # 5. The purchase: the split and commissions of the guide's text block.
    purchase_out = output_of("order-A-1001")
    assert purchase_out.rstrip().endswith("HTTP 201")
    purchase = json_of("order-A-1001")
    expected = section[section.index('{"id":3,"type":"purchase"') :]
    expected = expected[: expected.index("```")]
    want_attribution = [
        json.loads(m) for m in re.findall(r'\{"promoter":\d+,"weight":"[0-9.]+","revenue":"[0-9.]+"\}', expected)
    ]
    want_commissions = [
        json.loads(m)
        for m in re.findall(r'\{"id":\d+,"promoter":\d+,"kind":"\w+","level":\d,"amount":"[0-9.]+","status":"\w+"\}', expected)
    ]
    assert len(want_commissions) == 3 and len(want_attribution) == 2
    assert (purchase["type"], purchase["stage"], purchase["status"], purchase["amount"]) == (
        "purchase", "first_purchase", "processed", "120.00"
    )
    assert purchase["attribution"] == want_attribution
    strip = lambda rows: [{k: v for k, v in row.items() if k != "id"} for row in rows]  # noqa: E731
    assert strip(purchase["commissions"]) == strip(want_commissions)
    assert [c["amount"] for c in purchase["commissions"]] == ["7.20", "3.60", "4.80"]

    # The refund of 20.00 reverses a sixth of each commission.
    refund = json_of('"refund_id": "R-1"')
    assert [(c["kind"], c["amount"], c["status"]) for c in refund["commissions"]] == [
        ("reversal", "-1.20", "pending"), ("reversal", "-0.60", "pending"), ("reversal", "-0.80", "pending"),
    ]
    # 6. Anna's balance: 3.60 + 4.80 - 0.60 - 0.80 pending.
    listed_and_balance = output_of("/balance/")
    balance = listed_and_balance[listed_and_balance.index('{"currency"') :].strip()
    assert json.loads(balance) == {"currency": "USD", "pending": "7.00", "available": "0.00", "paid": "0.00"}
    # 7. The postbacks: a new purchase, and the signed one once require_signature is on.
    assert json.loads(output_of("order_id=A-1002&amount=35.50").strip())["stage"] == "repeat_purchase"
    assert json.loads(output_of("&sig=$SIG").strip())["order_id"] == "A-1003"
    # Errors: the body the guide prints.
    printed_error = re.search(r"```json\n(.*?)```", section, re.S).group(1)
    assert json.loads(output_of('"customer_id": "cust-42"}\'').strip()) == json.loads(printed_error)
