"""Every portal page runs a fixed number of queries, however much data the promoter has."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from payouts import statements
from payouts.models import PayoutBatch, PayoutLine

pytestmark = pytest.mark.django_db

MAX_QUERIES = 12


def pages(world):
    code = world.w.links[world.pia.pk].code
    return [
        (world.pia_client, "/portal/"),
        (world.pia_client, "/portal/summary.json"),
        (world.pia_client, "/portal/links/"),
        (world.pia_client, f"/portal/links/{code}/?sub1=x"),
        (world.pia_client, "/portal/commissions/"),
        (world.pia_client, "/portal/commissions/?status=pending&kind=direct&since=2020-01-01&page=2"),
        (world.pia_client, "/portal/commissions.csv"),
        (world.sam_client, "/portal/team/"),
        (world.pia_client, "/portal/payouts/"),
        (world.pia_client, "/portal/payout-details/"),
        (world.pia_client, "/portal/api-key/"),
    ]


def count(client, path) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
        if response.streaming:
            b"".join(response.streaming_content)
    assert response.status_code == 200, path
    return len(queries)


def grow(world, n: int):
    """n more sales, links, statements and payout lines for Pia; a 3-level team under Sam."""
    for i in range(n):
        world.sale(customer=f"more-{n}-{i}", order=f"more-{n}-{i}", amount="10.00", days_ago=i % 25)
        world.pia_client.post("/portal/links/", {"destination_url": "https://shop.example.com/", "channel": f"ch{i}"})
        recruit = world.w.promoter(f"R{n}-{i}", sponsor=world.pia)
        for j in range(2):
            world.w.promoter(f"R{n}-{i}-{j}", sponsor=recruit)
    for month in range(1, n + 1):
        period = f"{2000 + n}-{month:02d}"
        statements.statement_write(promoter=world.pia, period=period)
        batch = PayoutBatch.objects.create(merchant=world.pia.merchant, currency="USD", period=period)
        PayoutLine.objects.create(batch=batch, promoter=world.pia, amount_minor=100 * month, currency="USD", settled_at=timezone.now())


def test_query_counts_do_not_grow_with_the_data(sold, django_assert_max_num_queries):
    grow(sold, 1)
    before = {path: count(client, path) for client, path in pages(sold)}
    grow(sold, 6)
    after = {path: count(client, path) for client, path in pages(sold)}
    assert after == before
    for client, path in pages(sold):
        with django_assert_max_num_queries(MAX_QUERIES):
            response = client.get(path)
            if response.streaming:
                b"".join(response.streaming_content)
