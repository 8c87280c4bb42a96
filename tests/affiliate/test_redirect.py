"""GET /r/<code>: the tracking redirect."""

from __future__ import annotations

import uuid

import pytest
import time_machine
from django.test import Client

from affiliate.models import Click, Visitor
from tests.factories import LinkFactory

pytestmark = pytest.mark.django_db


def click_id_from(location: str) -> str:
    return location.rsplit("aff_click=", 1)[1].split("#")[0]


def test_redirect_appends_the_click_and_keeps_the_query(link):
    response = Client().get(f"/r/{link.code}", HTTP_USER_AGENT="Mozilla/5.0 test", HTTP_REFERER="https://blog.example.org/post", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 302
    click = Click.objects.get()
    assert response["Location"] == f"https://shop.example.com/p/1?color=red&aff_click={click.id.hex}"
    assert (click.link_id, click.promoter_id, click.program_id, click.merchant_id) == (
        link.pk, link.promoter_id, link.program_id, link.merchant_id,
    )
    assert (click.user_agent, click.referrer) == ("Mozilla/5.0 test", "https://blog.example.org/post")
    assert len(click.ip_hash) == 32 and "203.0.113.9" not in click.ip_hash
    assert (click.is_fraud, click.is_duplicate) == (False, False)


def test_destination_without_query_and_with_fragment(promoter):
    plain = LinkFactory(promoter=promoter, destination_url="https://shop.example.com/p/2")
    fragment = LinkFactory(promoter=promoter, destination_url="https://shop.example.com/p/3?a=1#reviews")
    first = Client().get(f"/r/{plain.code}")["Location"]
    second = Client().get(f"/r/{fragment.code}")["Location"]
    assert first == f"https://shop.example.com/p/2?aff_click={click_id_from(first)}"
    assert second == f"https://shop.example.com/p/3?a=1&aff_click={click_id_from(second)}#reviews"


def test_cookie_is_set_for_a_year_httponly_lax(link):
    response = Client().get(f"/r/{link.code}")
    cookie = response.cookies["aff_vid"]
    click = Click.objects.get()
    assert cookie.value == str(click.visitor_id)
    assert cookie["max-age"] == 365 * 24 * 3600
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert Visitor.objects.filter(pk=click.visitor_id).exists()


def test_one_browser_is_one_journey(link, promoter):
    browser = Client()
    other_link = LinkFactory(promoter=promoter, destination_url="https://shop.example.com/")
    browser.get(f"/r/{link.code}")
    browser.get(f"/r/{other_link.code}")
    Client().get(f"/r/{link.code}")  # another browser
    visitors = list(Click.objects.order_by("created_at").values_list("visitor_id", flat=True))
    assert visitors[0] == visitors[1] != visitors[2]
    assert Visitor.objects.count() == 2


def test_a_cookie_from_elsewhere_is_reused_and_a_broken_one_replaced(link):
    sent = uuid.uuid4()
    browser = Client()
    browser.cookies["aff_vid"] = str(sent)
    response = browser.get(f"/r/{link.code}")
    assert response.cookies["aff_vid"].value == str(sent)
    assert Click.objects.get().visitor_id == sent
    broken = Client()
    broken.cookies["aff_vid"] = "garbage"
    replaced = broken.get(f"/r/{link.code}").cookies["aff_vid"].value
    assert replaced != "garbage" and uuid.UUID(replaced)


def test_sub_ids_are_stored(link):
    Client().get(f"/r/{link.code}?sub1=spring&sub2=banner-a&sub3=x&sub4=&sub5=" + "z" * 300 + "&other=1")
    click = Click.objects.get()
    assert (click.sub1, click.sub2, click.sub3, click.sub4, click.sub5) == ("spring", "banner-a", "x", "", "z" * 255)


def test_trailing_slash_works(link):
    assert Client().get(f"/r/{link.code}/").status_code == 302
    assert Click.objects.count() == 1


def test_unknown_code_is_a_404_page_and_no_click(link):
    response = Client().get("/r/doesnotexist")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"This link does not exist" in response.content
    assert Click.objects.count() == 0
    assert Visitor.objects.count() == 0


def test_head_answers_without_counting_a_click(link):
    response = Client().head(f"/r/{link.code}")
    assert response.status_code == 302
    assert Click.objects.count() == 0


def test_post_is_not_allowed(link):
    assert Client().post(f"/r/{link.code}").status_code == 405
    assert Click.objects.count() == 0


def test_duplicate_clicks_are_flagged_within_the_window(link):
    program = link.program
    program.duplicate_click_seconds = 60
    program.save()
    browser = Client()
    with time_machine.travel("2026-11-01T10:00:00Z", tick=False) as clock:
        browser.get(f"/r/{link.code}")
        clock.shift(59)
        browser.get(f"/r/{link.code}")
        clock.shift(61)
        browser.get(f"/r/{link.code}")
        Client().get(f"/r/{link.code}")  # another visitor is never a duplicate of this one
    flags = list(Click.objects.order_by("created_at", "id").values_list("is_duplicate", flat=True))
    assert flags == [False, True, False, False]
    assert Click.objects.filter(is_duplicate=True).get().flag_reason == "repeat click within 60s"


def test_with_zero_window_every_redirect_counts(link):
    browser = Client()
    for _ in range(3):
        browser.get(f"/r/{link.code}")
    assert list(Click.objects.values_list("is_duplicate", flat=True)) == [False, False, False]


def test_nul_characters_from_the_browser_are_dropped(link):
    response = Client().get(f"/r/{link.code}?sub1=a%00b", HTTP_USER_AGENT="bot\x00x", HTTP_REFERER="https://r.example/\x00")
    assert response.status_code == 302
    click = Click.objects.get()
    assert (click.sub1, click.user_agent, click.referrer) == ("ab", "botx", "https://r.example/")
