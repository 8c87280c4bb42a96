#!/usr/bin/env python
"""Every benchmark in turn, and one table of their figures against their targets, written at
the top of bench/README.md (between ``<!-- bench:table:start -->`` and
``<!-- bench:table:end -->``) with the machine and the date they ran on.

Runs bench/redirect.py, credit.py, close.py, insights.py and portal.py, one after the other,
each with ``--json`` into the output directory (with its log), then reads each one's JSON:

- redirect, credit: the targets each script judged itself (figure, target, met);
- close: ``close_month``'s wall time against the script's TARGET_SECONDS, the second run
  changing nothing, the ledger audit after it;
- insights: ``insights_run``'s wall time against TARGET_SECONDS;
- portal: the slowest portal page's and the slowest merchant page's p95 against TARGET_MS
  (the downloads are listed, without a target).

The targets are read from the scripts (their ``TARGET_*`` constants), so the table judges
as the scripts do. A script that wrote no JSON gets a row saying so, with its exit status.

    .venv/bin/python bench/all.py            # the full sizes: the better part of an hour
    .venv/bin/python bench/all.py --quick    # small variants of each, to try it: minutes;
                                             # the table says so, and goes to --readme only
    .venv/bin/python bench/all.py --from bench/out/<run>   # the table again from kept JSON

The machine must be otherwise quiet: each script measures CPU, and other work shows in its
figures (each reports how busy the machine was).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
README = BENCH / "README.md"
START = "<!-- bench:table:start -->"
END = "<!-- bench:table:end -->"


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    quick: tuple[str, ...]
    needs: tuple[str, ...] = ()  # programs that must be on PATH


BENCHES = [
    Bench("redirect", "redirect.py", ("--duration", "3", "--rounds", "1", "--warmup", "1", "--quiet-wait", "5"), needs=("wrk",)),
    Bench("credit", "credit.py", ("--duration", "5", "--rate", "100", "--latency-duration", "10", "--warmup", "2",
                                  "--quiet-wait", "5", "--drain-timeout", "300")),
    Bench("close", "close.py", ("--promoters", "5000", "--commissions", "50000", "--quiet-wait", "5")),
    Bench("insights", "insights.py", ("--promoters", "2000", "--events", "20000", "--contents", "1000")),
    Bench("portal", "portal.py", ("--commissions", "10000", "--downline", "800", "--others", "100", "--clicks", "20000",
                                  "-n", "5", "--downloads", "1")),
]


@dataclass(frozen=True)
class Row:
    bench: str
    figure: str
    target: str
    met: bool | None  # None: a figure without a target
    ran: str = ""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- Reading the scripts' targets and JSON -----------------------------------------------


def targets_of(script: Path) -> dict[str, float]:
    """The script's module-level ``TARGET_* = number`` constants, read without importing it."""
    out = {}
    for node in ast.parse(script.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.startswith("TARGET_") and isinstance(node.value, ast.Constant) and isinstance(node.value.value, int | float):
                out[name] = node.value.value
    return out


def _n(value: float) -> str:
    return f"{value:,.0f}"


def judged_rows(name: str, data: dict) -> list[Row]:
    """Scripts that judge their own targets: ``targets`` is a list of (target, reached, met)."""
    return [Row(name, str(reached), str(target), bool(met)) for target, reached, met in data.get("targets", [])]


def credit_rows(data: dict) -> list[Row]:
    rows = judged_rows("credit", data)
    # The capacity the CPU per event gives, whoever else used the machine: the server's
    # CPU (gunicorn, Celery, PostgreSQL, Redis) per event, over sending and draining.
    runs = [r for r in data.get("runs", []) if r.get("stored") and r.get("cpu_ms_per_event")]
    if runs:
        run = max(runs, key=lambda r: r["stored"])
        per_event = sum(v for k, v in run["cpu_ms_per_event"].items() if k != "loadgen")
        cores = data.get("cores") or os.cpu_count() or 1
        rows.append(Row("credit", f"{per_event:.1f} ms of server CPU per event: about {_n(1000 * cores / per_event)} "
                        f"events/s credited on {cores} cores", "(capacity, no target)", None))
    return rows


def close_rows(data: dict, targets: dict[str, float]) -> list[Row]:
    limit = targets.get("TARGET_SECONDS", 60.0)
    first, second = data["first"], data["second"]
    commissions = data.get("rows", {}).get("payouts.Commission", 0)
    rows = [
        Row("close", f"close_month of {_n(commissions)} commissions, {_n(data.get('promoters', 0))} promoters: "
            f"{first['wall_s']:.1f} s", f"under {limit:.0f} s", first["wall_s"] < limit and first["returncode"] == 0),
        Row("close", f"second run: {'changed nothing' if first.get('picture') == second.get('picture') else 'CHANGED ROWS'} "
            f"({second['wall_s']:.1f} s)", "a second run changes nothing", first.get("picture") == second.get("picture")),
        Row("close", f"audit_ledger after the close: {'clean' if data.get('audit_clean') else 'NOT CLEAN'}",
            "the ledger audits clean", bool(data.get("audit_clean"))),
    ]
    return rows


def insights_rows(data: dict, targets: dict[str, float]) -> list[Row]:
    limit = targets.get("TARGET_SECONDS", 120.0)
    rows = data.get("rows", {})
    return [Row(
        "insights",
        f"insights_run over {_n(rows.get('affiliate.ConversionEvent', 0))} events, {_n(rows.get('affiliate.Click', 0))} clicks: "
        f"{data['seconds']:.1f} s (peak {data.get('peak_mb', 0):.0f} MB)",
        f"under {limit:.0f} s", data["returncode"] == 0 and data["seconds"] < limit,
    )]


def portal_rows(data: dict, targets: dict[str, float]) -> list[Row]:
    limit = targets.get("TARGET_MS", 150.0)
    results = data.get("results", [])
    out = []
    for group, what in (("page", "portal pages"), ("merchant", "merchant pages")):
        pages = [r for r in results if r["group"] == group]
        if not pages:
            continue
        slowest = max(pages, key=lambda r: r["p95"])
        ok = [r for r in pages if r["p95"] < limit and r["status"] == [200]]
        out.append(Row("portal", f"{what}: {len(ok)} of {len(pages)} under; slowest {slowest['label']} "
                       f"p95 {slowest['p95']:.1f} ms", f"every page under {limit:.0f} ms (p95)", len(ok) == len(pages)))
    downloads = [r for r in results if r["group"] == "download"]
    if downloads:
        slowest = max(downloads, key=lambda r: r["p95"])
        out.append(Row("portal", f"downloads: slowest {slowest['label']} p95 {slowest['p95']:,.0f} ms",
                       "(downloads, no target)", None))
    return out


def rows_for(name: str, data: dict, targets: dict[str, float]) -> list[Row]:
    if name == "redirect":
        return judged_rows(name, data)
    if name == "credit":
        return credit_rows(data)
    if name == "close":
        return close_rows(data, targets)
    if name == "insights":
        return insights_rows(data, targets)
    if name == "portal":
        return portal_rows(data, targets)
    raise ValueError(f"unknown benchmark {name!r}")


# --- The table -----------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def machine_line(machine: dict) -> str:
    return (f"{machine.get('cpu', 'unknown CPU')}, {machine.get('cores', '?')} cores, {machine.get('memory_gib', 0):.0f} GiB, "
            f"PostgreSQL {machine.get('postgresql', 'unknown')}")


def table(rows: list[Row], *, machine: dict, started: str, finished: str, quick: bool) -> str:
    """The markdown that goes between the markers."""
    met = [r for r in rows if r.met is not None]
    lines = [
        f"All benchmarks (`make bench`, `bench/all.py{' --quick' if quick else ''}`), "
        f"{started} to {finished} UTC, on {machine_line(machine)}: "
        f"{sum(1 for r in met if r.met)} of {len(met)} targets met."
    ]
    if quick:
        lines.append("")
        lines.append("**Small variants (`--quick`)**: not the sizes the targets are set for; the verdicts say nothing.")
    lines += ["", "| benchmark | figure | target | met | ran (UTC) |", "|---|---|---|---|---|"]
    for r in rows:
        verdict = "–" if r.met is None else ("yes" if r.met else "**no**")
        lines.append(f"| {r.bench} | {_cell(r.figure)} | {_cell(r.target)} | {verdict} | {r.ran} |")
    return "\n".join(lines)


def write_between_markers(text: str, body: str) -> str:
    """``text`` with what lies between the markers replaced by ``body``; the rest unchanged."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {START} and {END} are missing or out of order")
    return text[: start + len(START)] + "\n" + body.strip("\n") + "\n" + text[end:]


# --- Running ---------------------------------------------------------------------------------


def machine_facts(pg_url: str) -> dict:
    sys.path.insert(0, str(BENCH))
    from benchlib import cpu_model

    memory = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    version = "unknown"
    try:
        import psycopg

        with psycopg.connect(f"{pg_url.rstrip('/')}/postgres", connect_timeout=3) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
    except Exception as exc:  # noqa: BLE001  (the table then says unknown)
        log(f"PostgreSQL version unknown: {exc}")
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "memory_gib": round(memory, 1), "postgresql": version}


def now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M")


def run_one(bench: Bench, out: Path, quick: bool, extra: tuple[str, ...] = ()) -> dict:
    missing = [program for program in bench.needs if shutil.which(program) is None]
    if missing:
        log(f"{bench.name}: skipped, {', '.join(missing)} not found")
        return {"started": now_text(), "finished": now_text(), "returncode": None, "skipped": f"{', '.join(missing)} not installed"}
    cmd = [sys.executable, str(BENCH / bench.script), *(bench.quick if quick else ()), *extra, "--json", str(out / f"{bench.name}.json")]
    log(f"{bench.name}: {' '.join(cmd[1:])} (log: {out / (bench.name + '.log')})")
    started, clock = now_text(), time.monotonic()
    with open(out / f"{bench.name}.log", "w") as logfile:
        code = subprocess.run(cmd, cwd=ROOT, stdout=logfile, stderr=subprocess.STDOUT).returncode
    log(f"{bench.name}: exit {code} after {time.monotonic() - clock:.0f} s")
    return {"started": started, "finished": now_text(), "returncode": code}


def collect(out: Path, summary: dict) -> list[Row]:
    """The rows of every benchmark of ``summary["runs"]``, from the JSON each wrote in ``out``."""
    rows = []
    for bench in BENCHES:
        run = summary["runs"].get(bench.name)
        if run is None:
            continue
        path = out / f"{bench.name}.json"
        if run.get("skipped"):
            rows.append(Row(bench.name, f"not run: {run['skipped']}", "–", False, run["started"]))
            continue
        if not path.exists():
            rows.append(Row(bench.name, f"no figures: the script exited {run.get('returncode')} (see {bench.name}.log)",
                            "–", False, run["started"]))
            continue
        data = json.loads(path.read_text())
        data.setdefault("cores", summary["machine"].get("cores"))
        targets = targets_of(BENCH / bench.script)
        rows += [Row(r.bench, r.figure, r.target, r.met, run["started"]) for r in rows_for(bench.name, data, targets)]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the small variants (minutes, to try it)")
    parser.add_argument("--only", default="", help="comma-separated benchmarks to run (default: all)")
    parser.add_argument("--out", help="directory for the JSON and logs (default bench/out/<date>)")
    parser.add_argument("--from", dest="source", metavar="DIR", help="no runs: the table from the JSON kept in DIR")
    parser.add_argument("--readme", help="the file whose markers get the table (default bench/README.md; "
                                         "with --quick, none unless given)")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432", help="PostgreSQL server URL (no database)")
    parser.add_argument("--db-suffix", default="", help="appended to each script's database name (bench_close...), "
                                                        "so as not to drop another run's")
    parser.add_argument("--redis", help="REDIS_URL for redirect and credit (default: theirs; credit flushes its database)")
    args = parser.parse_args()

    if args.source:
        out = Path(args.source)
        summary = json.loads((out / "all.json").read_text())
    else:
        chosen = [b for b in BENCHES if not args.only or b.name in args.only.split(",")]
        if not chosen:
            parser.error(f"--only names none of {', '.join(b.name for b in BENCHES)}")
        out = Path(args.out or BENCH / "out" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))
        out.mkdir(parents=True, exist_ok=True)
        summary = {"quick": args.quick, "machine": machine_facts(args.pg), "started": now_text(), "runs": {}}
        for bench in chosen:
            extra = ["--pg", args.pg]
            if args.db_suffix:
                extra += ["--db-name", f"bench_{bench.name}{args.db_suffix}"]
            if args.redis and bench.name in ("redirect", "credit"):
                extra += ["--redis", args.redis]
            summary["runs"][bench.name] = run_one(bench, out, args.quick, tuple(extra))
            summary["finished"] = now_text()
            (out / "all.json").write_text(json.dumps(summary, indent=2))
    rows = collect(out, summary)
    body = table(rows, machine=summary["machine"], started=summary["started"], finished=summary.get("finished", summary["started"]),
                 quick=summary["quick"])
    print(body)
    readme = Path(args.readme) if args.readme else (None if summary["quick"] else README)
    if readme is not None:
        readme.write_text(write_between_markers(readme.read_text(), body))
        log(f"table written to {readme}")
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
