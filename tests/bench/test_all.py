"""bench/all.py: the table of every benchmark's figures against its targets, from the JSON
the scripts write (canned here: nothing is run), and its place in bench/README.md."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_all():
    spec = importlib.util.spec_from_file_location("bench_all", ROOT / "bench" / "all.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_all"] = module
    spec.loader.exec_module(module)
    return module


bench_all = load_all()

MACHINE = {"cpu": "AMD EPYC 7B13", "cores": 2, "memory_gib": 23.5, "postgresql": "15.14"}

REDIRECT = {"header": "Redirect benchmark", "kinds": [], "targets": [
    ["tracked redirects/s >= 1500", "2524/s", True],
    ["p99 < 25 ms at 500 req/s offered", "2.35 ms at 500 req/s achieved (worst round 3.10 ms)", True],
]}
CREDIT = {"header": "Credit benchmark", "runs": [
    {"name": "warm-up", "stored": 200, "cpu_ms_per_event": {"gunicorn": 10.0, "celery": 20.0, "postgres": 4.0, "redis": 0.5, "loadgen": 2.0}},
    {"name": "max accepted", "stored": 2038, "cpu_ms_per_event": {"gunicorn": 9.2, "celery": 18.3, "postgres": 3.8, "redis": 0.5, "loadgen": 1.6}},
], "counts": {}, "targets": [
    ["accepted >= 500 events/s", "41/s at 700/s offered", False],
    ["nothing lost", "9390 stored | 9390 processed", True],
]}
CLOSE = {"promoters": 100_000, "rows": {"payouts.Commission": 1_000_000},
         "first": {"wall_s": 41.26, "returncode": 0, "picture": {"lines": 7}},
         "second": {"wall_s": 3.04, "returncode": 0, "picture": {"lines": 7}}, "audit_clean": True}
INSIGHTS = {"seconds": 131.5, "returncode": 0, "peak_mb": 812.4, "cpu_seconds": 90.0,
            "rows": {"affiliate.ConversionEvent": 1_000_000, "affiliate.Click": 1_200_000}, "load_seconds": 80}
PORTAL = {"results": [
    {"group": "page", "label": "dashboard", "p95": 9.7, "status": [200]},
    {"group": "page", "label": "team", "p95": 64.7, "status": [200]},
    {"group": "merchant", "label": "merchant channels", "p95": 206.1, "status": [200]},
    {"group": "merchant", "label": "merchant overview", "p95": 54.6, "status": [200]},
    {"group": "download", "label": "commissions CSV (all)", "p95": 3668.0, "status": [200]},
], "rows": {}, "load_s": 40}

EXPECTED = """\
All benchmarks (`make bench`, `bench/all.py`), 2026-11-25 22:30 to 2026-11-25 23:41 UTC, on AMD EPYC 7B13, 2 cores, 24 GiB, PostgreSQL 15.14: 7 of 10 targets met.

| benchmark | figure | target | met | ran (UTC) |
|---|---|---|---|---|
| redirect | 2524/s | tracked redirects/s >= 1500 | yes | 2026-11-25 22:30 |
| redirect | 2.35 ms at 500 req/s achieved (worst round 3.10 ms) | p99 < 25 ms at 500 req/s offered | yes | 2026-11-25 22:30 |
| credit | 41/s at 700/s offered | accepted >= 500 events/s | **no** | 2026-11-25 22:33 |
| credit | 9390 stored \\| 9390 processed | nothing lost | yes | 2026-11-25 22:33 |
| credit | 31.8 ms of server CPU per event: about 63 events/s credited on 2 cores | (capacity, no target) | – | 2026-11-25 22:33 |
| close | close_month of 1,000,000 commissions, 100,000 promoters: 41.3 s | under 60 s | yes | 2026-11-25 23:01 |
| close | second run: changed nothing (3.0 s) | a second run changes nothing | yes | 2026-11-25 23:01 |
| close | audit_ledger after the close: clean | the ledger audits clean | yes | 2026-11-25 23:01 |
| insights | insights_run over 1,000,000 events, 1,200,000 clicks: 131.5 s (peak 812 MB) | under 120 s | **no** | 2026-11-25 23:20 |
| portal | portal pages: 2 of 2 under; slowest team p95 64.7 ms | every page under 150 ms (p95) | yes | 2026-11-25 23:30 |
| portal | merchant pages: 1 of 2 under; slowest merchant channels p95 206.1 ms | every page under 150 ms (p95) | **no** | 2026-11-25 23:30 |
| portal | downloads: slowest commissions CSV (all) p95 3,668 ms | (downloads, no target) | – | 2026-11-25 23:30 |"""


def canned(directory: Path, *, quick: bool = False, skip: tuple[str, ...] = ()) -> Path:
    starts = {"redirect": "22:30", "credit": "22:33", "close": "23:01", "insights": "23:20", "portal": "23:30"}
    runs = {}
    for name, data in (("redirect", REDIRECT), ("credit", CREDIT), ("close", CLOSE), ("insights", INSIGHTS), ("portal", PORTAL)):
        runs[name] = {"started": f"2026-11-25 {starts[name]}", "finished": "", "returncode": 0}
        if name not in skip:
            (directory / f"{name}.json").write_text(json.dumps(data))
    summary = {"quick": quick, "machine": MACHINE, "started": "2026-11-25 22:30", "finished": "2026-11-25 23:41", "runs": runs}
    (directory / "all.json").write_text(json.dumps(summary))
    return directory


def render(directory: Path) -> str:
    summary = json.loads((directory / "all.json").read_text())
    rows = bench_all.collect(directory, summary)
    return bench_all.table(rows, machine=summary["machine"], started=summary["started"], finished=summary["finished"],
                           quick=summary["quick"])


def test_the_table_holds_each_figure_its_target_and_whether_it_was_met(tmp_path):
    assert render(canned(tmp_path)) == EXPECTED


def test_the_targets_are_the_scripts_own():
    assert bench_all.targets_of(ROOT / "bench" / "close.py") == {"TARGET_SECONDS": 60.0}
    assert bench_all.targets_of(ROOT / "bench" / "insights.py") == {"TARGET_SECONDS": 120.0}
    assert bench_all.targets_of(ROOT / "bench" / "portal.py") == {"TARGET_MS": 150.0}


def test_a_benchmark_without_figures_is_a_row_that_says_so(tmp_path):
    table = render(canned(tmp_path, skip=("insights",)))
    assert "| insights | no figures: the script exited 0 (see insights.log) | – | **no** | 2026-11-25 23:20 |" in table
    assert "7 of 10 targets met" in table


def test_a_quick_run_says_its_verdicts_say_nothing(tmp_path):
    table = render(canned(tmp_path, quick=True))
    assert table.splitlines()[0].startswith("All benchmarks (`make bench`, `bench/all.py --quick`), ")
    assert table.splitlines()[2] == (
        "**Small variants (`--quick`)**: not the sizes the targets are set for; the verdicts say nothing."
    )


README = """# Benchmarks

| command | what |
|---|---|
| x | y |

<!-- bench:table:start -->
the old table
<!-- bench:table:end -->

## Redirect
unchanged
"""


def test_the_table_replaces_only_what_is_between_the_markers():
    out = bench_all.write_between_markers(README, "| a | b |\n")
    assert out == README.replace("the old table", "| a | b |")
    assert bench_all.write_between_markers(out, "new") == README.replace("the old table", "new")


def test_without_the_markers_the_readme_is_refused():
    with pytest.raises(ValueError, match="markers"):
        bench_all.write_between_markers("# Benchmarks\n", "table")


def test_from_kept_json_the_command_writes_the_readme_and_fails_on_a_missed_target(tmp_path, monkeypatch, capsys):
    (tmp_path / "run").mkdir()
    source = canned(tmp_path / "run")
    readme = tmp_path / "README.md"
    readme.write_text(README)
    monkeypatch.setattr(sys, "argv", ["all.py", "--from", str(source), "--readme", str(readme)])
    assert bench_all.main() == 1
    assert readme.read_text() == README.replace("the old table", EXPECTED)
    assert capsys.readouterr().out == EXPECTED + "\n"


def test_the_readme_of_the_repository_has_the_markers_once():
    text = (ROOT / "bench" / "README.md").read_text()
    assert text.count(bench_all.START) == 1 and text.count(bench_all.END) == 1
    assert text.index(bench_all.START) < text.index(bench_all.END) < text.index("## Redirect")
