"""The house rule (CONTRIBUTING.md): each app imports only the apps below it, the faces on top
never import each other, no circle of imports between the modules of an app, and every
model's relations point down. The import rule is `.importlinter`, checked by import-linter;
these tests run it on the tree, prove on a small tree that it fails on an upward import and on
a circle, and hold the models to the same order."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.apps import apps

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".importlinter"
LINT = Path(sys.executable).with_name("lint-imports")


def contract_config() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return parser


def layers() -> list[list[str]]:
    """The layers, bottom first; each a list of the apps side by side in it."""
    rows = [row.strip() for row in contract_config()["importlinter:contract:layers"]["layers"].splitlines() if row.strip()]
    return [[name.strip("() ") for name in row.split("|")] for row in reversed(rows)]


def rank() -> dict[str, int]:
    return {app: level for level, row in enumerate(layers()) for app in row}


def lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(cwd / ".importlinter")],
        cwd=cwd, env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_tree_keeps_the_layers_and_has_no_circles():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Apps import only the apps below them KEPT" in result.stdout
    assert "No circle of imports between the modules of an app KEPT" in result.stdout
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_the_layers_are_the_documented_order():
    assert layers() == [
        ["core"], ["merchants"], ["promoters"], ["affiliate"], ["attribution"], ["payouts"], ["insights"],
        ["integrations"], ["portal", "dashboards", "demo"], ["config"],
    ]  # fmt: skip
    documented = (ROOT / "CONTRIBUTING.md").read_text()
    assert "core → merchants → promoters → affiliate → attribution → payouts → insights → integrations" in documented


@pytest.fixture
def small_tree(tmp_path):
    """Every root package of the contract, empty, beside a copy of `.importlinter`."""
    shutil.copy(CONFIG, tmp_path / ".importlinter")
    for package in contract_config()["importlinter"]["root_packages"].split():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")

    def write(module: str, source: str) -> None:
        path = tmp_path.joinpath(*module.split(".")).with_suffix(".py")
        path.write_text(textwrap.dedent(source))

    return tmp_path, write


def test_the_rule_fails_on_an_import_that_runs_upward(small_tree):
    tree, write = small_tree
    write("merchants.models", "")
    write("affiliate.models", "")
    write("merchants.services", "def f():\n    from affiliate import models  # inside a function counts too\n")
    result = lint(tree)
    assert result.returncode == 1
    assert "Apps import only the apps below them BROKEN" in result.stdout
    assert "merchants.services -> affiliate.models" in result.stdout


def test_the_rule_fails_on_faces_that_import_each_other(small_tree):
    tree, write = small_tree
    write("portal.views", "")
    write("dashboards.views", "from portal import views\n")
    result = lint(tree)
    assert result.returncode == 1
    assert "dashboards.views -> portal.views" in result.stdout


def test_the_rule_fails_on_a_circle_inside_an_app(small_tree):
    tree, write = small_tree
    write("affiliate.events", "from affiliate import tasks\n")
    write("affiliate.tasks", "from affiliate import events\n")
    result = lint(tree)
    assert result.returncode == 1
    assert "Apps import only the apps below them KEPT" in result.stdout
    assert "No circle of imports between the modules of an app BROKEN" in result.stdout
    assert "No cycles are allowed in affiliate." in result.stdout


def test_the_small_tree_without_the_fault_passes(small_tree):
    tree, write = small_tree
    write("merchants.models", "")
    write("affiliate.models", "from merchants import models\n")
    write("portal.views", "from affiliate import models\nfrom merchants import models as m\n")
    result = lint(tree)
    assert result.returncode == 0, result.stdout


def test_every_relation_between_models_points_down():
    """A foreign key, one-to-one or many-to-many of an app's model targets its own app or one
    below (the models tied the apps in a knot before merchants and programs moved down)."""
    order = rank()
    upward = [
        f"{model._meta.label}.{field.name} -> {field.related_model._meta.label}"
        for model in apps.get_models()
        if model._meta.app_label in order
        for field in model._meta.get_fields()
        if field.is_relation and field.concrete and field.related_model is not None
        and order.get(field.related_model._meta.app_label, -1) > order[model._meta.app_label]
    ]  # fmt: skip
    assert upward == []
    assert apps.get_model("merchants", "Program")._meta.db_table == "affiliate_program"  # moved, the table kept


TASK_NAME = re.compile(r"""\btask\(\s*["']([\w.]+)["']""")


def test_every_task_found_by_name_exists():
    """The tasks queued by name (core.tasks.task) are registered: a misspelt name would only
    log a warning at run time."""
    from core.tasks import task

    names = sorted({
        name
        for path in ROOT.glob("*/**/*.py") if path.relative_to(ROOT).parts[0] not in {"tests", "bench", ".venv"}
        for name in TASK_NAME.findall(path.read_text())
    })  # fmt: skip
    assert names == ["affiliate.drain_events", "affiliate.process_events", "payouts.deliver_webhook"]
    assert [task(name).name for name in names] == names
