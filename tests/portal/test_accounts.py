"""Accounts: sign-up through an invite link, email verification, log in and out, password
reset, the rate limit on failed logins, and claiming a promoter by a verified email."""

from __future__ import annotations

import re

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from promoters.models import Promoter
from tests.factories import PromoterFactory
from tests.portal.conftest import PASSWORD, client_logged_in, make_login

pytestmark = pytest.mark.django_db
User = get_user_model()


def signup(client, code, **overrides):
    data = {"name": "Ben Jones", "email": "ben@example.com", "password1": PASSWORD, "password2": PASSWORD, **overrides}
    return client.post(f"/join/{code}", data)


def confirmation_link(message) -> str:
    return re.search(r"https?://[^/\s]+(/accounts/confirm-email/[^\s]+/)", message.body).group(1)


def test_the_invite_page_names_the_sponsor_and_the_merchant(promoter):
    response = Client().get(f"/join/{promoter.referral_code}")
    assert response.status_code == 200
    assert b"Anna invites you to promote Acme Shop (Default)" in response.content


def test_sign_up_through_an_invite_link_places_the_promoter_under_the_sponsor(promoter):
    client = Client()
    response = signup(client, promoter.referral_code)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    user = User.objects.get(email="ben@example.com")
    ben = Promoter.objects.get(user=user)
    assert (ben.name, ben.email, ben.sponsor_id, ben.program_id, ben.merchant_id, ben.status) == (
        "Ben Jones", "ben@example.com", promoter.pk, promoter.program_id, promoter.merchant_id, "active",
    )
    assert list(EmailAddress.objects.filter(user=user).values_list("email", "verified", "primary")) == [
        ("ben@example.com", False, True)
    ]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ben@example.com"]


def test_email_verification_is_mandatory_before_the_first_login(promoter):
    signup(Client(), promoter.referral_code)
    client = Client()
    response = client.post("/accounts/login/", {"login": "ben@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/confirm-email/"
    assert client.get("/portal/").status_code == 302  # still not logged in
    response = client.post(confirmation_link(mail.outbox[-1]))
    assert response.status_code == 302
    assert EmailAddress.objects.get(email="ben@example.com").verified is True
    response = client.post("/accounts/login/", {"login": "ben@example.com", "password": PASSWORD})
    assert response["Location"] == "/portal/"
    page = client.get("/portal/")
    assert page.status_code == 200
    assert b"Hello, Ben Jones" in page.content


def test_a_program_that_wants_approval_makes_the_new_promoter_wait(promoter):
    program = promoter.program
    program.join_requires_approval = True
    program.save()
    signup(Client(), promoter.referral_code)
    ben = Promoter.objects.get(email="ben@example.com")
    assert (ben.status, ben.sponsor_id) == ("pending", promoter.pk)


@pytest.mark.parametrize("status", ["inactive", "pending"])
def test_an_invite_link_of_a_promoter_who_is_not_active_is_refused(promoter, status):
    Promoter.objects.filter(pk=promoter.pk).update(status=status)
    client = Client()
    assert client.get(f"/join/{promoter.referral_code}").status_code == 404
    response = signup(client, promoter.referral_code)
    assert response.status_code == 404
    assert not User.objects.exists()
    assert Promoter.objects.count() == 1
    assert mail.outbox == []


def test_an_unknown_invite_code_is_a_404_and_writes_nothing(promoter):
    response = signup(Client(), "NOSUCH99")
    assert response.status_code == 404
    assert b"This invite link is not valid" in response.content
    assert not User.objects.exists()
    assert Promoter.objects.count() == 1


def test_an_email_already_in_the_program_is_refused_and_nothing_is_written(promoter):
    response = signup(Client(), promoter.referral_code, email="ANNA@example.com")
    assert response.status_code == 200
    assert b"This email is already registered with this program" in response.content
    assert not User.objects.exists()
    assert Promoter.objects.count() == 1
    assert mail.outbox == []


def test_a_refusal_by_the_service_rolls_the_login_back(promoter, monkeypatch):
    from core.errors import ServiceValidationError
    from promoters import services

    def refuse(**kwargs):
        raise ServiceValidationError({"sponsor": ["This invite link is no longer valid."]})

    monkeypatch.setattr(services, "promoter_join", refuse)
    response = signup(Client(), promoter.referral_code)
    assert response.status_code == 200
    assert b"This invite link is no longer valid." in response.content
    assert not User.objects.exists()
    assert not EmailAddress.objects.exists()
    assert Promoter.objects.count() == 1


def test_a_logged_in_person_joins_another_program_with_the_same_login(promoter, other_merchant):
    other = PromoterFactory(program__merchant=other_merchant, name="Olga", email="olga@example.net")
    user = make_login("anna@example.com", promoter=promoter)
    client = client_logged_in(user)
    page = client.get(f"/join/{other.referral_code}")
    assert page.status_code == 200
    assert b"Join as anna@example.com" in page.content
    response = client.post(f"/join/{other.referral_code}", {"name": "Anna A."})
    assert response.status_code == 302
    assert response["Location"] == "/portal/"
    joined = Promoter.objects.get(user=user, program=other.program)
    assert (joined.name, joined.email, joined.sponsor_id, joined.status) == ("Anna A.", "anna@example.com", other.pk, "active")
    assert b"Hello, Anna A." in client.get("/portal/").content  # the new program is the one shown


def test_joining_a_program_twice_adds_nothing(promoter):
    ben = PromoterFactory(program=promoter.program, sponsor=promoter, email="ben@example.com", name="Ben")
    user = make_login("ben@example.com", promoter=ben)
    response = client_logged_in(user).post(f"/join/{promoter.referral_code}", {"name": "Ben again"})
    assert response.status_code == 302
    assert Promoter.objects.filter(user=user).count() == 1
    assert Promoter.objects.count() == 2


def test_a_verified_email_claims_the_promoters_the_merchant_made_for_it(promoter, other_merchant):
    # Anna was signed up by the merchant (no login); she signs up herself and confirms.
    other = PromoterFactory(program__merchant=other_merchant, email="Anna@Example.com")
    client = Client()
    client.post("/accounts/signup/", {"email": "anna@example.com", "password1": PASSWORD, "password2": PASSWORD})
    user = User.objects.get(email="anna@example.com")
    assert Promoter.objects.filter(user=user).count() == 0  # nothing before the email is proven
    client.post(confirmation_link(mail.outbox[-1]))
    assert sorted(Promoter.objects.filter(user=user).values_list("pk", flat=True)) == sorted([promoter.pk, other.pk])


def test_log_in_and_log_out(promoter):
    make_login("anna@example.com", promoter=promoter)
    client = Client()
    response = client.post("/accounts/login/", {"login": "anna@example.com", "password": PASSWORD})
    assert (response.status_code, response["Location"]) == (302, "/portal/")
    assert client.get("/portal/").status_code == 200
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    response = client.get("/portal/")
    assert (response.status_code, response["Location"]) == (302, "/accounts/login/?next=/portal/")


def test_merchant_staff_land_on_the_merchant_pages_and_a_promoter_on_the_portal(promoter, merchant):
    from merchants.models import MerchantMember

    staff = make_login("owner@example.com")
    MerchantMember.objects.create(user=staff, merchant=merchant, role=MerchantMember.Role.OWNER)
    response = Client().post("/accounts/login/", {"login": "owner@example.com", "password": PASSWORD})
    assert (response.status_code, response["Location"]) == (302, "/merchant/")
    # Someone who is both a promoter and merchant staff lands on the portal.
    both = make_login("anna@example.com", promoter=promoter)
    MerchantMember.objects.create(user=both, merchant=merchant)
    response = Client().post("/accounts/login/", {"login": "anna@example.com", "password": PASSWORD})
    assert (response.status_code, response["Location"]) == (302, "/portal/")


def test_failed_logins_are_rate_limited(promoter, settings):
    make_login("anna@example.com", promoter=promoter)
    client = Client()
    for _ in range(5):
        response = client.post("/accounts/login/", {"login": "anna@example.com", "password": "wrong"})
        assert response.status_code == 200
    # The sixth attempt is refused even with the right password.
    response = client.post("/accounts/login/", {"login": "anna@example.com", "password": PASSWORD})
    assert response.status_code in (200, 429)
    assert b"Too many failed login attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_password_reset_sends_a_link_that_sets_a_new_password(promoter):
    make_login("anna@example.com", promoter=promoter)
    client = Client()
    response = client.post("/accounts/password/reset/", {"email": "anna@example.com"})
    assert response.status_code == 302
    assert len(mail.outbox) == 1
    link = re.search(r"https?://[^/\s]+(/accounts/password/reset/key/[^\s]+/)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    action = form_page.redirect_chain[-1][0] if form_page.redirect_chain else link
    new = "another-Long-passw0rd"
    response = client.post(action, {"password1": new, "password2": new})
    assert response.status_code == 302
    assert User.objects.get(email="anna@example.com").check_password(new)


def test_the_email_backend_is_the_console_unless_an_smtp_host_is_set(monkeypatch):
    import importlib

    import config.settings as settings_module

    monkeypatch.delenv("EMAIL_HOST", raising=False)
    monkeypatch.delenv("EMAIL_BACKEND", raising=False)
    assert importlib.reload(settings_module).EMAIL_BACKEND == "django.core.mail.backends.console.EmailBackend"
    monkeypatch.setenv("EMAIL_HOST", "smtp.example.com")
    monkeypatch.setenv("EMAIL_PORT", "465")
    reloaded = importlib.reload(settings_module)
    assert (reloaded.EMAIL_BACKEND, reloaded.EMAIL_HOST, reloaded.EMAIL_USE_SSL, reloaded.EMAIL_USE_TLS) == (
        "django.core.mail.backends.smtp.EmailBackend", "smtp.example.com", True, False,
    )
    monkeypatch.delenv("EMAIL_HOST")
    monkeypatch.delenv("EMAIL_PORT")
    importlib.reload(settings_module)
