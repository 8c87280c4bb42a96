"""End to end over HTTP, as a merchant integrates: bootstrap, program, promoters, links,
the redirect in a browser-like client, events by JSON and by signed postback, read-back.

Every figure here is worked out by hand in the comments.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
import requests
from django.core.management import call_command

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.xdist_group("e2e")]


BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


class Merchant:
    def __init__(self, base: str, credentials: dict):
        self.base = base
        self.credentials = credentials
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {credentials['api_key']}"

    def post(self, path, payload, **headers):
        return self.http.post(self.base + path, json=payload, headers=headers, timeout=10)

    def patch(self, path, payload):
        return self.http.patch(self.base + path, json=payload, timeout=10)

    def get(self, path):
        return self.http.get(self.base + path, timeout=10)

    def postback(self, params: dict, *, sign: bool = False):
        if sign:
            message = "&".join(f"{k}={params[k]}" for k in sorted(params))
            secret = self.credentials["postback_secret"].encode()
            params = {**params, "sig": hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()}
        query = urlencode(params, quote_via=quote)
        return requests.get(f"{self.base}/postback/{self.credentials['postback_token']}?{query}", timeout=10)


def bootstrap(live_server, name: str, domain: str) -> Merchant:
    out = io.StringIO()
    call_command("create_merchant", "--name", name, "--domain", domain, stdout=out)
    return Merchant(live_server.url, json.loads(out.getvalue()))


def test_a_merchant_integrates_end_to_end(live_server):
    shop = bootstrap(live_server, "Acme", "shop.example.com")

    # A program with the contract's defaults; its first program becomes the default.
    program = shop.post("/api/v1/programs/", {"name": "Default"})
    assert program.status_code == 201
    program = program.json()
    assert (program["is_default"], program["first_purchase_rate"], program["tier_rates"]) == (True, "0.10", ["0.05", "0.03", "0.02", "0.01"])

    # A sponsor and her recruit, who has a coupon.
    sponsor = shop.post("/api/v1/promoters/", {"email": "sara@example.com", "name": "Sara", "program": program["id"]}).json()
    anna = shop.post(
        "/api/v1/promoters/",
        {"email": "anna@example.com", "name": "Anna", "program": program["id"], "sponsor": sponsor["id"], "coupon_code": "ANNA10"},
    )
    assert anna.status_code == 201
    anna = anna.json()
    assert anna["sponsor"] == sponsor["id"]

    # Anna's link, on a channel nobody coded for.
    link = shop.post("/api/v1/links/", {"promoter": anna["id"], "destination_url": "https://shop.example.com/p/1?ref=x", "channel": "tiktok"})
    assert link.status_code == 201
    link = link.json()
    assert link["url"] == f"{live_server.url}/r/{link['code']}"

    # A visitor's browser follows the link: 302 to the shop with aff_click, cookie set.
    browser = requests.Session()
    browser.headers["User-Agent"] = BROWSER  # a person's browser: a bot's click is flagged and earns nothing
    hop = browser.get(link["url"] + "?sub1=bio", allow_redirects=False, timeout=10)
    assert hop.status_code == 302
    location = urlsplit(hop.headers["Location"])
    assert (location.scheme, location.netloc, location.path) == ("https", "shop.example.com", "/p/1")
    query = parse_qs(location.query)
    assert query["ref"] == ["x"]
    click_id = query["aff_click"][0]
    assert "aff_vid" in browser.cookies
    visitor = browser.cookies["aff_vid"]
    # The same browser clicks again later: the same journey (same visitor cookie).
    browser.get(link["url"], allow_redirects=False, timeout=10)
    assert browser.cookies["aff_vid"] == visitor

    # The shop reports the registration with the click, then a purchase by JSON.
    registration = shop.post("/api/v1/events/", {"type": "registration", "customer_id": "cust-42", "click_id": click_id})
    assert registration.status_code == 201
    assert (registration.json()["stage"], registration.json()["warnings"]) == ("registration", [])
    purchase = shop.post(
        "/api/v1/events/",
        {"type": "purchase", "customer_id": "cust-42", "order_id": "A-1001", "amount": "120.00", "currency": "USD"},
        **{"Idempotency-Key": "order-A-1001"},
    )
    assert purchase.status_code == 201
    body = purchase.json()
    # Tasks run inline after the commit: the answer already shows the processed event.
    assert (body["type"], body["stage"], body["status"], body["amount"]) == ("purchase", "first_purchase", "processed", "120.00")

    # The shop's retry loop fires the same request again: 200 and the same body.
    retry = shop.post(
        "/api/v1/events/",
        {"type": "purchase", "customer_id": "cust-42", "order_id": "A-1001", "amount": "120.00", "currency": "USD"},
        **{"Idempotency-Key": "order-A-1001"},
    )
    assert retry.status_code == 200
    assert retry.json() == body

    # A second order arrives by postback, with Anna's coupon: a repeat purchase.
    second = shop.postback({"type": "purchase", "customer_id": "cust-42", "order_id": "A-1002", "amount": "80.50", "coupon": "ANNA10"})
    assert second.status_code == 201
    assert (second.json()["stage"], second.json()["amount"]) == ("repeat_purchase", "80.50")

    # Signing is switched on: an unsigned postback is refused, a signed one accepted.
    assert shop.patch("/api/v1/merchant/", {"require_signature": True}).json()["require_signature"] is True
    unsigned = shop.postback({"type": "refund", "customer_id": "cust-42", "order_id": "A-1002", "refund_id": "R-1", "amount": "30.50"})
    assert unsigned.status_code == 403
    assert unsigned.json()["error"]["code"] == "invalid_signature"
    refund = shop.postback({"type": "refund", "customer_id": "cust-42", "order_id": "A-1002", "refund_id": "R-1", "amount": "30.50"}, sign=True)
    assert refund.status_code == 201
    # Refunding the rest without an amount: 80.50 − 30.50 = 50.00.
    rest = shop.postback({"type": "refund", "customer_id": "cust-42", "order_id": "A-1002", "refund_id": "R-2"}, sign=True)
    assert (rest.status_code, rest.json()["amount"]) == (201, "50.00")
    # Nothing is left: one more cent is a 400 that records nothing.
    extra = shop.postback({"type": "refund", "customer_id": "cust-42", "order_id": "A-1002", "refund_id": "R-3", "amount": "0.01"}, sign=True)
    assert extra.status_code == 400
    assert shop.get("/api/v1/events/?order_id=A-1002").json()["count"] == 3  # the purchase and two refunds

    # Read-back of an event is the same body the POST gave.
    assert shop.get(f"/api/v1/events/{body['id']}/").json() == body


def test_merchants_cannot_see_each_other(live_server):
    acme = bootstrap(live_server, "Acme", "shop.example.com")
    rival = bootstrap(live_server, "Rival", "rival.example.org")
    program = acme.post("/api/v1/programs/", {"name": "Default"}).json()
    promoter = acme.post("/api/v1/promoters/", {"email": "a@example.com", "name": "A", "program": program["id"]}).json()
    link = acme.post("/api/v1/links/", {"promoter": promoter["id"], "destination_url": "https://shop.example.com/"}).json()
    event = acme.post("/api/v1/events/", {"type": "registration", "customer_id": "c1"}).json()
    for path in (f"/api/v1/programs/{program['id']}/", f"/api/v1/promoters/{promoter['id']}/", f"/api/v1/links/{link['id']}/", f"/api/v1/events/{event['id']}/"):
        response = rival.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"error": {"code": "not_found", "message": "Not found.", "fields": {}}}
    # The rival cannot link to Acme's promoter or to Acme's shop either.
    stolen = rival.post("/api/v1/links/", {"promoter": promoter["id"], "destination_url": "https://shop.example.com/"})
    assert stolen.status_code == 400
    assert acme.get("/api/v1/links/").json()["count"] == 1


def test_unknown_link_is_a_page_and_records_nothing(live_server):
    response = requests.get(f"{live_server.url}/r/nope", allow_redirects=False, timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert "aff_vid" not in response.cookies
