"""The merchant pages load their CSS, script and chart library from static/ (no CDN), and
render with the production storage (hashed names): every static file they name exists."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import override_settings

pytestmark = pytest.mark.django_db


def test_every_merchant_page_renders_with_the_production_storage_and_nothing_from_elsewhere(world, tmp_path, settings):
    storages = {**settings.STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
    pages = [
        "/merchant/", "/merchant/promoters/", "/merchant/channels/", "/merchant/conversions/",
        f"/merchant/conversions/{world.o2['id']}/", "/merchant/programs/",
        f"/merchant/programs/{world.program.pk}/settings/", "/merchant/approvals/",
    ]
    with override_settings(STATIC_ROOT=tmp_path, STORAGES=storages):
        call_command("collectstatic", interactive=False, verbosity=0, stdout=StringIO())
        for path in pages:
            response = world.client.get(path)
            assert response.status_code == 200, path
            html = response.content.decode()
            sources = re.findall(r'(?:src|href)="([^"#?]+)', html)
            assert all(s.startswith("/") or s == "" for s in sources), (path, [s for s in sources if not s.startswith("/")])
            assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
            assert len(assets) >= 2, path  # portal.css and merchant.css, by their hashed names
            for asset in assets:
                assert (tmp_path / asset.removeprefix("/static/")).exists(), asset
    overview = world.client.get("/merchant/").content.decode()
    assert "vendor/chartjs/chart.umd.min.js" in overview and "merchant/merchant.js" in overview and "merchant/merchant.css" in overview
