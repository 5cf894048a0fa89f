"""``pgchaos combine``: one page and one JSON file over many runs (a chaos campaign).

Each run contributes one row: its scenario and expectations from
``RUN/expectations.json`` (written by the chaos playbooks)::

    {"scenario": "patroni-leader-node",
     "expectations": [{"name": "...", "expected": "...", "observed": "...", "passed": true}]}

and its headline figures from ``RUN/summary.json`` (computed afresh when the run
has no report yet).  A run passes when it has at least one expectation and all
of them passed; without the file its verdict is "no expectations recorded".
Failing scenarios are results, not errors: the exit status is 0 unless the input
is bad (a RUN that is not a run folder, no run at all, an unusable OUT).
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path
from typing import Any

from pgchaos import rundir
from pgchaos.errors import UsageError
from pgchaos.events import read_events
from pgchaos.summary import summarize

EXPECTATIONS_FILE = "expectations.json"
INDEX_FILE = "index.html"
RESULTS_FILE = "results.json"
NO_EXPECTATIONS = "no expectations recorded"
TRUE_WORDS = {"true", "yes", "1", "pass", "passed"}
FALSE_WORDS = {"false", "no", "0", "fail", "failed"}


def find_runs(runs_dir: Path) -> list[Path]:
    """Run folders directly under ``runs_dir`` (those with a run.json), oldest first."""
    if not runs_dir.is_dir():
        raise UsageError(f"--runs-dir {runs_dir}: not a directory")
    found = []
    for child in runs_dir.iterdir():
        if child.is_dir() and (child / rundir.RUN_FILE).is_file():
            meta = rundir.open_run(child)
            found.append((str(meta.get("started_at")), child.name, child))
    return [path for _, _, path in sorted(found)]


def _passed(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    return None


def read_expectations(run_dir: Path) -> tuple[str | None, list[dict[str, Any]] | None, list[str]]:
    """(scenario, expectations, warnings); expectations is None when nothing usable was recorded."""
    path = run_dir / EXPECTATIONS_FILE
    if not path.exists():
        return None, None, []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, None, [f"{EXPECTATIONS_FILE} unreadable: {exc}"]
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        return None, None, [f"{EXPECTATIONS_FILE}: no list of expectations"]
    warnings = []
    expectations = []
    for n, item in enumerate(data["expectations"], 1):
        if not isinstance(item, dict):
            warnings.append(f"{EXPECTATIONS_FILE}: expectation {n} is not an object")
            continue
        passed = _passed(item.get("passed"))
        if passed is None:
            warnings.append(
                f"{EXPECTATIONS_FILE}: expectation {n} has no true/false 'passed'; counted failed"
            )
        expectations.append(
            {
                "name": str(item.get("name", f"expectation {n}")),
                "expected": str(item.get("expected", "")),
                "observed": str(item.get("observed", "")),
                "passed": bool(passed),
            }
        )
    scenario = data.get("scenario")
    return (str(scenario) if scenario else None), expectations, warnings


def _summary(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    path = run_dir / rundir.SUMMARY_FILE
    if path.exists():
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(summary, dict) and "per_endpoint" in summary:
                return summary, []
        except (OSError, ValueError):
            pass
        return summarize(run_dir), [f"{rundir.SUMMARY_FILE} damaged: recomputed"]
    return summarize(run_dir), []


def run_row(run_dir: Path, out: Path) -> dict[str, Any]:
    meta = rundir.open_run(run_dir)
    summary, warnings = _summary(run_dir)
    scenario, expectations, expectation_warnings = read_expectations(run_dir)
    warnings += expectation_warnings
    if scenario is None:
        events, _ = read_events(run_dir)
        scenario = next((e.scenario for e in events if e.scenario), None) or run_dir.name
    per = summary.get("per_endpoint") or {}

    def longest(endpoint: str) -> float | None:
        figures = per.get(endpoint)
        return None if figures is None else figures.get("longest_unavailability_s")

    verify = summary.get("verify") or {}
    if expectations:
        passed: bool | None = all(e["passed"] for e in expectations)
        verdict = "pass" if passed else "fail"
    else:
        passed, verdict = None, NO_EXPECTATIONS
    report = run_dir / rundir.REPORT_FILE
    return {
        "run": str(run_dir),
        "run_id": meta.get("run_id"),
        "started_at": meta.get("started_at"),
        "scenario": scenario,
        "expectations": expectations or [],
        "expectation": "; ".join(f"{e['name']}: {e['expected']}" for e in expectations or [])
        or NO_EXPECTATIONS,
        "observed": "; ".join(f"{e['name']}: {e['observed']}" for e in expectations or [])
        or NO_EXPECTATIONS,
        "passed": passed,
        "verdict": verdict,
        "write_unavailability_s": longest("rw"),
        "read_unavailability_s": longest("ro"),
        "failed_ops": sum(int(f.get("failed_ops", 0)) for f in per.values()),
        "in_doubt_ops": sum(int(f.get("in_doubt_ops", 0)) for f in per.values()),
        "lost": verify.get("lost"),
        "ghosts": verify.get("ghosts"),
        "in_doubt": verify.get("in_doubt"),
        "verified": bool(verify),
        "split_brain": summary.get("split_brain"),
        "report": os.path.relpath(report, out) if report.exists() else None,
        "warnings": warnings,
    }


def _cell(value: object, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return html.escape(f"{value}{unit}")


def _label(row: dict[str, Any]) -> str:
    verdict = str(row["verdict"])
    return verdict.upper() if row["passed"] is not None else verdict


def render_index(results: dict[str, Any]) -> str:
    esc = html.escape
    rows = []
    for r in results["runs"]:
        cls = {"pass": "good", "fail": "bad"}.get(r["verdict"], "none")
        expected = "".join(
            f"<li>{esc(e['name'])}: {esc(e['expected'])}</li>" for e in r["expectations"]
        )
        observed = "".join(
            f"<li class='{'good' if e['passed'] else 'bad'}'>{esc(e['name'])}:"
            f" {esc(e['observed'])}</li>"
            for e in r["expectations"]
        )
        link = (
            f"<a href='{esc(r['report'])}'>report</a>"
            if r["report"]
            else "<span class='none'>no report.html</span>"
        )
        verify = (
            (_cell(r["lost"]), _cell(r["ghosts"]), _cell(r["in_doubt"]))
            if r["verified"]
            else ("not verified", "-", "-")
        )
        brain = r["split_brain"]
        rows.append(
            f"<tr class='{cls}'><td class='l'>{esc(r['scenario'])}<br>"
            f"<small>{esc(Path(r['run']).name)}</small></td>"
            f"<td class='l'>{f'<ul>{expected}</ul>' if expected else esc(NO_EXPECTATIONS)}</td>"
            f"<td class='l'>{f'<ul>{observed}</ul>' if observed else esc(NO_EXPECTATIONS)}</td>"
            f"<td class='verdict {cls}'>{esc(_label(r))}</td>"
            f"<td>{_cell(r['write_unavailability_s'], ' s')}</td>"
            f"<td>{_cell(r['read_unavailability_s'], ' s')}</td>"
            f"<td>{r['failed_ops']}</td>"
            f"<td>{verify[0]}</td><td>{verify[1]}</td><td>{verify[2]}</td>"
            f"<td class='{'bad' if brain else ''}'>{_cell(brain)}</td>"
            f"<td>{link}</td></tr>"
        )
    head = "".join(
        f"<th>{esc(h)}</th>"
        for h in (
            "scenario",
            "expected",
            "observed",
            "result",
            "write unavailability",
            "read unavailability",
            "failed ops",
            "lost writes",
            "ghost writes",
            "in-doubt writes",
            "split brain",
            "report",
        )
    )
    totals = results["totals"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>pgchaos results</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; vertical-align: top; }}
td.l {{ text-align: left; }} ul {{ margin: 0; padding-left: 1.2em; }}
.bad {{ color: #b00; }} .good {{ color: #070; }} .none {{ color: #777; }}
td.verdict {{ font-weight: bold; }}
</style></head><body>
<h1>pgchaos results</h1>
<p>{totals["runs"]} runs: {totals["passed"]} passed, {totals["failed"]} failed,
{totals["no_expectations"]} without expectations. Generated {esc(results["generated_at"])}.</p>
<p>Unavailability: the longest window without a successful operation on the endpoint
(client-observed RTO). Lost: acknowledged writes missing afterwards; ghost: writes
reported failed or in doubt that committed anyway.</p>
<table><tr>{head}</tr>
{"".join(rows)}
</table>
</body></html>
"""


def run_combine(out: Path, runs: list[Path], runs_dir: Path | None) -> int:
    paths = list(runs)
    if runs_dir is not None:
        paths += find_runs(runs_dir)
    unique: list[Path] = []
    for path in paths:
        if path.resolve() not in {p.resolve() for p in unique}:
            unique.append(path)
    if not unique:
        where = f" in {runs_dir}" if runs_dir is not None else ""
        raise UsageError(f"no run folders{where}: give RUN folders or --runs-dir")
    for path in unique:
        rundir.open_run(path)  # every run is checked before anything is written
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror or exc}") from None
    rows = [run_row(path, out) for path in unique]
    results = {
        "tool": "pgchaos",
        "generated_at": rundir.iso(time.time()),
        "totals": {
            "runs": len(rows),
            "passed": sum(r["passed"] is True for r in rows),
            "failed": sum(r["passed"] is False for r in rows),
            "no_expectations": sum(r["passed"] is None for r in rows),
        },
        "runs": rows,
    }
    try:
        rundir.write_json(out / RESULTS_FILE, results)
        (out / INDEX_FILE).write_text(render_index(results), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write into {out}: {exc.strerror or exc}") from None
    for r in rows:
        print(f"{_label(r)}: {r['scenario']} ({r['run']})")
    print(f"-> {out / INDEX_FILE}")
    return 0
