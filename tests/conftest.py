from __future__ import annotations

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from affiliate.views import clear_link_cache
from tests.factories import LinkFactory, ProgramFactory, PromoterFactory, make_merchant


@pytest.fixture(autouse=True)
def _fresh_caches():
    clear_link_cache()
    cache.clear()
    yield
    clear_link_cache()


@pytest.fixture
def merchant(db):
    return make_merchant("Acme Shop", ["shop.example.com"])


@pytest.fixture
def other_merchant(db):
    return make_merchant("Other Shop", ["other.example.net"])


@pytest.fixture
def program(merchant):
    return ProgramFactory(merchant=merchant, name="Default")


@pytest.fixture
def promoter(program):
    return PromoterFactory(program=program, email="anna@example.com", name="Anna")


@pytest.fixture
def link(promoter):
    return LinkFactory(promoter=promoter, code="annablog", destination_url="https://shop.example.com/p/1?color=red")


def client_for(merchant) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {merchant.test_api_key}")
    return client


@pytest.fixture
def api(merchant):
    return client_for(merchant)


@pytest.fixture
def other_api(other_merchant):
    return client_for(other_merchant)
