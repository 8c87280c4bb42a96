"""Every merchant page runs a fixed number of queries, however much data the merchant has."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from promoters import services as promoter_services
from tests.portal.conftest import make_login

pytestmark = pytest.mark.django_db

MAX_QUERIES = 14  # the overview counts what waits for review and the failed events


def pages(world):
    return [
        "/merchant/",
        f"/merchant/?program={world.program.pk}&since=2000-01-01&until=2000-12-31",
        "/merchant/promoters/",
        "/merchant/channels/",
        "/merchant/conversions/",
        "/merchant/conversions/?type=purchase&q=o1",
        "/merchant/conversions/?page=2",
        f"/merchant/conversions/{world.o2['id']}/",
        "/merchant/programs/",
        f"/merchant/programs/{world.program.pk}/settings/",
        "/merchant/approvals/",
    ]


def count(client, path) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200, path
    return len(queries)


def grow(world, n: int):
    """n more promoters on new channels, each with clicks and a sale (some shared), and n
    more promoters awaiting approval; a second program."""
    world.program.join_requires_approval = True
    world.program.save()
    for i in range(n):
        promoter = world.w.promoter(f"G{n}-{i}", sponsor=world.pia)
        link = world.link(promoter, f"ch-{n}-{i}")
        world.click(link, 3 + i % 5)
        last = world.click(link, 2 + i % 5)
        world.w.send(type="purchase", customer_id=f"g{n}-{i}", order_id=f"g{n}-{i}", amount="10.00",
                     click_id=last.id.hex, occurred_at=last.created_at)
        promoter_services.promoter_join(sponsor=promoter, user=make_login(f"wait-{n}-{i}@example.com"), name=f"W{n}-{i}")
    from merchants import services

    services.program_create(merchant=world.merchant, name=f"Second {n}", currency="EUR")


def test_query_counts_do_not_grow_with_the_data(world, django_assert_max_num_queries):
    grow(world, 1)
    before = {path: count(world.client, path) for path in pages(world)}
    grow(world, 60)
    after = {path: count(world.client, path) for path in pages(world)}
    assert after == before
    for path in pages(world):
        with django_assert_max_num_queries(MAX_QUERIES):
            assert world.client.get(path).status_code == 200
