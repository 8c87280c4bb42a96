"""From an invite link to a commission, in a real browser against a live server.

Given a sponsor (Sam) with a login, in a program paying 10% on a first purchase and a 5%
level-1 override; when a new person (Pia) signs up through Sam's invite link, confirms her
email, logs in, makes a link, a visitor follows it to the shop and the shop's signed
postback reports the visitor's purchase of 87.40; then Pia's open dashboard shows 8.74
pending without a reload, her commissions list the sale, and Sam's team page shows a
level-1 override of 4.37; and the merchant's owner sees the sale in the merchant pages
(87.40 of revenue, 13.11 of commissions, the conversion credited to Pia). Every page is
saved as a screenshot under tests/artifacts/.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core import mail

from merchants import services as merchants_services
from merchants.models import MerchantMember
from promoters import services as promoters

SHOPPER_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"

PASSWORD = "Browser-test-passw0rd!"
SHOP = "shop.example.com"
AMOUNT = "87.40"
DIRECT = "8.74"  # 10% first-purchase rate on the whole order (one click: all credit to Pia)
OVERRIDE = "4.37"  # Sam's 5% level-1 override on Pia's 87.40
BOTH = "13.11"  # what the order costs the merchant in commissions
POLL_WAIT_MS = 12_000  # the dashboard polls every 5 s


def signed_postback_url(base: str, token: str, secret: str, params: dict[str, str]) -> str:
    """As the README tells merchants: HMAC-SHA256 of the sorted ``name=value`` pairs."""
    message = "&".join(f"{name}={params[name]}" for name in sorted(params))
    sig = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return f"{base}/postback/{token}?{urlencode({**params, 'sig': sig})}"


def http_get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (the live server)
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def hand_over_redirect(route, answers: list):
    """The tracking redirect, for the visitor's browser.

    Playwright does not route the hops of a redirect (by design), so a 302 to the shop
    would leave the browser on the real network. The request for ``/r/<code>`` is therefore
    sent to the live server by Playwright itself, with the browser's headers and cookies
    and without following redirects; the server's answer is recorded, its cookies are kept
    by the browser, and the browser is sent on to the ``Location`` as a fresh navigation,
    which the shop's route then serves.
    """
    response = route.fetch(max_redirects=0)
    location = response.headers.get("location", "")
    answers.append((response.status, location))
    headers = {k: v for k, v in response.headers.items() if k.lower() not in ("location", "content-length", "content-type")}
    route.fulfill(
        status=200, headers=headers, content_type="text/html",
        body=f"<!doctype html><script>location.replace({json.dumps(location)})</script>",
    )


class Shots:
    """Full-page screenshots, numbered in the order the pages were visited."""

    def __init__(self, directory):
        self.directory = directory
        self.n = 0

    def __call__(self, page, name: str, **kwargs):
        self.n += 1
        page.screenshot(path=str(self.directory / f"{self.n:02d}-{name}.png"), full_page=True, **kwargs)


@pytest.fixture
def shop_world(transactional_db):
    """A merchant whose postbacks must be signed, a program, and Sam with a verified login."""
    credentials = merchants_services.merchant_create(name="Acme Shop", domains=[SHOP])
    merchant = merchants_services.merchant_update(merchant=credentials.merchant, require_signature=True)
    program = merchants_services.program_create(
        merchant=merchant, name="Partners", first_purchase_rate="0.10", repeat_purchase_rate="0.05",
        tier_rates=["0.05", "0.03"],
    )
    sam = promoters.promoter_create(merchant=merchant, program=program, email="sam@example.com", name="Sam Sponsor")
    user = get_user_model().objects.create_user(username="sam", email="sam@example.com", password=PASSWORD)
    EmailAddress.objects.create(user=user, email="sam@example.com", primary=True, verified=True)
    promoters.promoter_login_set(promoter=sam, user=user)
    staff = get_user_model().objects.create_user(username="owner", email="owner@acme.example", password=PASSWORD)
    EmailAddress.objects.create(user=staff, email="owner@acme.example", primary=True, verified=True)
    MerchantMember.objects.create(user=staff, merchant=merchant, role=MerchantMember.Role.OWNER)
    return {"credentials": credentials, "program": program, "sam": sam}


def log_in(page, base: str, email: str, shots: Shots | None = None, then: str = "/portal/"):
    page.goto(f"{base}/accounts/login/?next={then}")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    if shots:
        shots(page, "login")
    page.get_by_role("button", name=re.compile("sign in|log in", re.I)).click()
    page.wait_for_url(f"{base}{then}")


def test_invite_signup_link_click_postback_commission_and_override(live_server, shop_world, artifacts, browser):
    # `browser` comes last: the data is written before Playwright opens its loop (see conftest).
    from playwright.sync_api import expect  # here: without Playwright the module must still import (and skip)

    base = live_server.url
    shots = Shots(artifacts)
    sam = shop_world["sam"]
    credentials = shop_world["credentials"]
    mail.outbox = []

    pia_context = browser.new_context(viewport={"width": 1280, "height": 900})
    pia_context.set_default_timeout(10_000)
    page = pia_context.new_page()

    # Pia opens Sam's invite link and signs up.
    page.goto(f"{base}/join/{sam.referral_code}")
    assert page.get_by_role("heading", level=1).inner_text() == "Join Acme Shop"
    page.get_by_label("Your name").fill("Pia Newcomer")
    page.get_by_label("Email").fill("pia@example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label(re.compile(r"Password \(again\)", re.I)).fill(PASSWORD)
    shots(page, "join")
    page.get_by_role("button", name="Create my account").click()
    page.wait_for_url(re.compile(r"/accounts/confirm-email/$"))
    shots(page, "verification-sent")

    # The confirmation email (locmem backend) holds the link; she opens it and confirms.
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["pia@example.com"]
    confirm_url = re.search(r"https?://\S+/accounts/confirm-email/\S+/", mail.outbox[0].body).group(0)
    page.goto(confirm_url)
    shots(page, "email-confirmation")
    page.get_by_role("button", name="Confirm").click()

    # Confirming in the browser she signed up in logs her in; she logs out and back in
    # (as she would on another day) to go through the login page too.
    page.wait_for_url(f"{base}/portal/")
    page.goto(f"{base}/accounts/logout/")
    page.get_by_role("button", name=re.compile("sign out|log out", re.I)).click()
    page.wait_for_url(re.compile(r"/accounts/login/$"))
    log_in(page, base, "pia@example.com", shots)
    assert page.get_by_role("heading", level=1).inner_text() == "Hello, Pia Newcomer"

    # She makes a link for her blog, then adds a sub-id on the link's page.
    page.get_by_role("link", name="Links", exact=True).click()
    page.get_by_label("Page on the shop").fill(f"https://{SHOP}/p/42?color=red")
    page.get_by_label("Channel").fill("blog")
    shots(page, "links")
    page.get_by_role("button", name="Make the link").click()
    page.wait_for_url(re.compile(r"/portal/links/[^/]+/$"))
    page.get_by_label("Sub-id 1").fill("spring-post")
    page.get_by_role("button", name="Update the link").click()
    page.wait_for_url(re.compile(r"\?.*sub1=spring-post"))
    tracking_url = page.locator("#link-url").input_value()
    assert re.fullmatch(re.escape(base) + r"/r/[A-Za-z0-9]+\?sub1=spring-post", tracking_url), tracking_url
    assert page.locator("svg.qr").count() == 1
    shots(page, "link-detail")

    # Her dashboard stays open while the rest happens.
    page.get_by_role("link", name="Dashboard", exact=True).click()
    pending = page.locator('[data-field="balance.pending"]')
    assert pending.inner_text() == "0.00"
    page.wait_for_function("() => window.Chart !== undefined")

    # A visitor, in a browser of their own, follows the link and lands on the shop, with the
    # click id in the URL. The shop is served here by Playwright (no network needed).
    # A shopper's browser says so: headless Chromium announces itself as "HeadlessChrome",
    # which the bot rule flags (a flagged click earns nothing).
    visitor = browser.new_context(user_agent=SHOPPER_USER_AGENT)
    tracker_answers = []
    visitor.route(f"{base}/r/**", lambda route: hand_over_redirect(route, tracker_answers))
    visitor.route(f"https://{SHOP}/**", lambda route: route.fulfill(
        status=200, content_type="text/html", body="<!doctype html><title>Acme Shop</title><h1>Acme Shop</h1>",
    ))
    shop_page = visitor.new_page()
    shop_page.goto(tracking_url)
    shop_page.wait_for_url(f"https://{SHOP}/**")
    assert [status for status, _ in tracker_answers] == [302]
    assert tracker_answers[0][1] == shop_page.url
    assert shop_page.get_by_role("heading", level=1).inner_text() == "Acme Shop"
    landed = urlsplit(shop_page.url)
    assert (landed.scheme, landed.netloc, landed.path) == ("https", SHOP, "/p/42")
    query = parse_qs(landed.query)
    assert query["color"] == ["red"]
    click_id = query["aff_click"][0]
    assert re.fullmatch(r"[0-9a-f]{32}", click_id)
    assert [c["name"] for c in visitor.cookies(base)] == ["aff_vid"]
    visitor.close()

    # The shop reports the visitor's purchase with a signed postback.
    status, body = http_get(signed_postback_url(base, credentials.postback_token, credentials.postback_secret, {
        "type": "purchase", "customer_id": "cust-browser-1", "click_id": click_id,
        "order_id": "B-1001", "amount": AMOUNT,
    }))
    assert status == 201, body
    assert body["stage"] == "first_purchase" and body["status"] == "processed"
    assert sorted((c["kind"], c["level"], c["amount"]) for c in body["commissions"]) == [
        ("direct", 0, DIRECT), ("override", 1, OVERRIDE),
    ]

    # Pia's open dashboard shows the money within seconds, without a reload.
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    expect(pending).to_have_text(DIRECT, timeout=POLL_WAIT_MS)
    expect(page.locator('[data-field="totals.earned"]')).to_have_text(DIRECT)
    expect(page.locator('[data-field="totals.clicks"]')).to_have_text("1")
    expect(page.locator('[data-field="totals.purchases"]')).to_have_text("1")
    assert navigations == []
    shots(page, "dashboard")
    page.set_viewport_size({"width": 390, "height": 844})
    shots(page, "dashboard-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    # Her commissions list the sale.
    page.get_by_role("link", name="Commissions", exact=True).click()
    row = page.locator("tbody tr").filter(has_text="Own sale")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(DIRECT)
    shots(page, "commissions")

    page.get_by_role("link", name="Team", exact=True).click()
    shots(page, "team-pia")
    page.get_by_role("link", name="Payouts", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    shots(page, "payouts")
    page.get_by_role("link", name="Payout details", exact=True).click()
    page.get_by_label(re.compile("PayPal")).first.check()
    page.locator("#paypal_email").fill("pia@example.com")
    page.get_by_role("button", name=re.compile("save", re.I)).click()
    expect(page.get_by_text("Your payout details are saved.")).to_be_visible()
    shots(page, "payout-details")
    pia_context.close()

    # Sam logs in and sees Pia in his team, with the level-1 override.
    sam_context = browser.new_context(viewport={"width": 1280, "height": 900})
    sam_context.set_default_timeout(10_000)
    sam_page = sam_context.new_page()
    log_in(sam_page, base, "sam@example.com")
    sam_page.get_by_role("link", name="Team", exact=True).click()
    level_1 = sam_page.locator("tbody tr").filter(has=sam_page.locator("th", has_text=re.compile(r"^1$")))
    expect(level_1.locator("td").nth(0)).to_have_text(OVERRIDE)  # earned
    expect(level_1.locator("td").nth(1)).to_have_text("1")  # members
    expect(level_1.locator("td").nth(2)).to_have_text("5%")  # rate
    expect(level_1.locator("td").nth(3)).to_have_text("1")  # overrides
    expect(sam_page.locator("ul.tree li")).to_contain_text("Pia Newcomer")
    shots(sam_page, "team-sponsor")
    sam_page.get_by_role("link", name="Dashboard", exact=True).click()
    expect(sam_page.locator('[data-field="balance.pending"]')).to_have_text(OVERRIDE)
    shots(sam_page, "dashboard-sponsor")
    sam_context.close()

    # The merchant's owner sees the sale in the merchant pages: the conversion's journey
    # credits Pia with the whole order, and it made both commissions.
    owner_context = browser.new_context(viewport={"width": 1280, "height": 900})
    owner_context.set_default_timeout(10_000)
    owner = owner_context.new_page()
    log_in(owner, base, "owner@acme.example", then="/merchant/")
    expect(owner.get_by_role("heading", level=1)).to_have_text("Partners: overview")
    expect(owner.locator('[data-kpi="clicks"]')).to_have_text("1")
    expect(owner.locator('[data-kpi="purchases"]')).to_have_text("1")
    expect(owner.locator('[data-kpi="revenue"]')).to_have_text(AMOUNT)
    expect(owner.locator('[data-kpi="pending"]')).to_have_text(BOTH)
    shots(owner, "merchant-overview")
    owner.get_by_role("link", name="Top promoters", exact=True).click()
    pia_row = owner.locator("tbody tr").filter(has_text="Pia Newcomer").first
    expect(pia_row).to_contain_text(AMOUNT)
    shots(owner, "merchant-top-promoters")
    owner.get_by_role("link", name="Channels", exact=True).click()
    expect(owner.locator("main")).to_contain_text("blog")
    shots(owner, "merchant-channels")
    owner.get_by_role("link", name="Conversions", exact=True).click()
    shots(owner, "merchant-conversions")
    owner.get_by_role("link", name=f"#{body['id']}", exact=True).click()
    owner.wait_for_url(f"{base}/merchant/conversions/{body['id']}/")
    credits = owner.locator("section", has=owner.locator("h2#credits")).locator("tbody tr")
    expect(credits).to_have_count(1)
    expect(credits.locator("th")).to_have_text("Pia Newcomer")
    expect(credits.locator("td").nth(1)).to_have_text(AMOUNT)
    made = owner.locator("section", has=owner.locator("h2#commissions")).locator("tbody tr")
    expect(made).to_have_count(2)
    expect(made.filter(has_text="Pia Newcomer")).to_contain_text(f"{DIRECT} USD")
    expect(made.filter(has_text="Sam Sponsor")).to_contain_text(f"{OVERRIDE} USD")
    shots(owner, "merchant-conversion")
    owner.get_by_role("link", name="Programs", exact=True).click()
    shots(owner, "merchant-programs")
    owner.get_by_role("link", name="Settings of Partners").click()
    owner.wait_for_url(re.compile(r"/merchant/programs/\d+/settings/$"))
    shots(owner, "merchant-program-settings")
    owner.get_by_role("link", name="Approvals", exact=True).click()
    shots(owner, "merchant-approvals")
    owner_context.close()
