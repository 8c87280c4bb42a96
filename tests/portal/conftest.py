from __future__ import annotations

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.test import Client

PASSWORD = "a-Long-passw0rd-for-tests"


def make_login(email: str, *, promoter=None, verified: bool = True, password: str = PASSWORD):
    """A login with a (verified) primary email, optionally opening ``promoter``'s portal."""
    user = get_user_model().objects.create_user(username=email.split("@")[0] + "-" + str(abs(hash(email)) % 10_000), email=email, password=password)
    EmailAddress.objects.create(user=user, email=email, primary=True, verified=verified)
    if promoter is not None:
        type(promoter).objects.filter(pk=promoter.pk).update(user=user)
        promoter.user = user
    return user


def client_logged_in(user) -> Client:
    client = Client()
    client.force_login(user, backend="allauth.account.auth_backends.AuthenticationBackend")
    return client


@pytest.fixture
def anna_login(promoter):
    return make_login("anna@example.com", promoter=promoter)


@pytest.fixture
def anna_client(anna_login):
    return client_logged_in(anna_login)


from tests.portal.world import sold, world  # noqa: E402,F401  (fixtures for the page tests)
