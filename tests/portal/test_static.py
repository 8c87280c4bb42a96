"""The portal's CSS and JavaScript are served from static/ (no CDN), and collect cleanly
with the production storage (hashed names, compressed)."""

from __future__ import annotations

import json
from io import StringIO

from django.core.management import call_command
from django.test import override_settings


def test_collectstatic_with_the_production_storage_hashes_the_portal_files(tmp_path, settings):
    storages = {**settings.STORAGES, "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"}}
    with override_settings(STATIC_ROOT=tmp_path, STORAGES=storages):
        call_command("collectstatic", interactive=False, verbosity=0, stdout=StringIO())
    paths = json.loads((tmp_path / "staticfiles.json").read_text())["paths"]
    for name in ("vendor/chartjs/chart.umd.min.js", "portal/portal.css", "portal/portal.js"):
        assert name in paths
        assert (tmp_path / paths[name]).exists()
        assert (tmp_path / (paths[name] + ".gz")).exists()
