"""The read-only pages read on the replica when one is configured (``DATABASE_REPLICA_URL``);
writes, and everything without a replica, stay on default.

In tests the ``replica`` alias mirrors ``default`` (the same database through another
connection), so the replica sees what the primary committed: transactional tests."""

from __future__ import annotations

import re

import pytest
from django.db import connections, router
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from core.routers import read_alias, replica_reads
from promoters.models import Promoter
from tests.merchant.world import MerchantWorld
from tests.portal.conftest import client_logged_in, make_login

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "replica"])

DATA_TABLES = re.compile(r'"(affiliate_click|attribution_credit|payouts_commission|payouts_entry|affiliate_conversionevent)"')


@pytest.fixture
def shop(django_capture_on_commit_callbacks):
    return MerchantWorld(django_capture_on_commit_callbacks).build()


def get(client, path):
    with CaptureQueriesContext(connections["default"]) as on_default, \
            CaptureQueriesContext(connections["replica"]) as on_replica:
        response = client.get(path)
    assert response.status_code == 200, path
    return response, [q["sql"] for q in on_default], [q["sql"] for q in on_replica]


def test_with_a_replica_the_merchant_overview_reads_its_figures_there(shop):
    _, off_default, off_replica = get(shop.client, "/merchant/")
    with override_settings(REPLICA_READS=True):
        response, on_default, on_replica = get(shop.client, "/merchant/")
    # The same figures (7 clicks, o1 and o2), read on the replica.
    kpis = response.context["kpis"]
    assert (kpis["clicks"], kpis["registrations"], kpis["purchases"], str(kpis["revenue"])) == (7, 1, 2, "270.00")
    # Every query that reads the data went to the replica; the primary answered only the
    # session, the login and the membership.
    assert [sql for sql in on_default if DATA_TABLES.search(sql)] == []
    assert len([sql for sql in on_replica if DATA_TABLES.search(sql)]) == len([sql for sql in off_default if DATA_TABLES.search(sql)])
    assert len([sql for sql in on_replica if DATA_TABLES.search(sql)]) >= 3
    assert len(on_default) + len(on_replica) == len(off_default)
    assert off_replica == []


def test_without_a_replica_everything_reads_the_primary(shop):
    response, on_default, on_replica = get(shop.client, "/merchant/")
    assert response.context["kpis"]["clicks"] == 7
    assert on_replica == []
    assert len([sql for sql in on_default if DATA_TABLES.search(sql)]) >= 3
    assert read_alias() == "default"
    with replica_reads() as alias:
        assert alias == "default"
        assert router.db_for_read(Promoter) == "default"


def test_the_portal_and_the_insight_pages_read_on_the_replica(shop):
    portal = client_logged_in(make_login("pia@example.com", promoter=shop.pia))
    with override_settings(REPLICA_READS=True):
        for client, path in ((portal, "/portal/"), (portal, "/portal/team/"), (portal, "/portal/commissions/"),
                             (shop.client, "/merchant/conversions/"), (shop.client, "/merchant/insights/")):
            _, on_default, on_replica = get(client, path)
            assert on_replica, path
            assert [sql for sql in on_default if DATA_TABLES.search(sql)] == [], path


def test_writes_go_to_the_primary_even_for_what_was_read_on_the_replica(shop):
    with override_settings(REPLICA_READS=True):
        assert read_alias() == "replica"
        with replica_reads() as alias:
            assert alias == "replica"
            assert router.db_for_read(Promoter) == "replica"
            assert router.db_for_write(Promoter) == "default"
            pia = Promoter.objects.get(pk=shop.pia.pk)
        assert pia._state.db == "replica"
        pia.name = "Pia Renamed"
        with CaptureQueriesContext(connections["default"]) as on_default, \
                CaptureQueriesContext(connections["replica"]) as on_replica:
            pia.save(update_fields=["name"])
    assert [q["sql"].split()[0] for q in on_default.captured_queries] == ["UPDATE"]
    assert on_replica.captured_queries == []
    assert Promoter.objects.using("default").get(pk=shop.pia.pk).name == "Pia Renamed"
    # Outside the block, reads are Django's own again.
    assert router.db_for_read(Promoter) == "default"


def test_only_the_primary_is_migrated():
    assert router.allow_migrate("default", "payouts") is True
    assert router.allow_migrate("replica", "payouts") is False
