"""``pgchaos matrix-report``: the resilience matrix, scenarios by configuration profiles.

``scripts/matrix.py`` runs every chosen failure scenario (``scripts/scenarios.txt``)
under every chosen configuration profile (``inventory/profiles/*.yml``), a few times
each, into one matrix folder::

    DIR/matrix.json                  the plan: scenarios, profiles, repeat, commit, times
    DIR/<profile>/<run folders>      what the chaos playbooks leave (one per run)
    DIR/<profile>/matrix-runs.jsonl  one line per attempt: scenario, repetition, exit
                                     status, the run folder it made (if any), its log

This module turns that into one figure set per run (:class:`RunFigures`), one cell per
scenario and profile (:class:`Cell`: min / median / max of each figure, runs passed, any
loss, any split brain) and three files in DIR: ``results.json``, ``index.html`` (the
grid, colour-graded by the median write gap, and one plot per scenario comparing the
profiles) and ``matrix.md`` (the same grid as a Markdown table, for the README).

A run's *write gap* is the longest rw unavailability window that belongs to the first
injected fault (``faults[0].per_endpoint.rw.longest_gap_s``, see :mod:`pgchaos.faults`),
or, in a run without fault events, the run's longest rw unavailability; the *read gap*
is the same on ro.  A run passes when its playbook exited 0 and recorded at least one
expectation, all of them passed.  An attempt that made no run folder is a failed run
when its playbook failed, and *skipped* when it exited 0 (a set-up the inventory cannot
have, ``chaos_skip_unfit``).  Run folders under DIR/<profile>/ without a line in the
manifest count too, named after their expectations' scenario (or folder name).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import statistics
import time
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgchaos import rundir
from pgchaos.errors import UsageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The run figures (pgchaos.combine, pgchaos.summary: numpy, psycopg) and the plots
# (matplotlib) are imported where they are used: scripts/matrix.py only reads the
# scenarios and profiles before it starts ansible-playbook, and its --dry-run stays quick.
NO_EXPECTATIONS = "no expectations recorded"  # pgchaos.combine's words

PLAN_FILE = "matrix.json"
MANIFEST_FILE = "matrix-runs.jsonl"
RESULTS_FILE = "results.json"
INDEX_FILE = "index.html"
MARKDOWN_FILE = "matrix.md"
REFERENCE_PROFILE = "textbook"
# (key, label, unit) of each figure aggregated per cell.
FIGURES: tuple[tuple[str, str, str], ...] = (
    ("write_gap_s", "write gap", "s"),
    ("read_gap_s", "read gap", "s"),
    ("failed_ops", "failed operations", ""),
    ("in_doubt_ops", "in-doubt operations", ""),
    ("lost", "lost writes", ""),
    ("ghosts", "ghost writes", ""),
)
# The grid's colour scale over the cells' median write gaps (low → high), and the colour
# of a cell with a lost write, a split brain or a failed run; tests look for them.
SCALE = ("#8fd19e", "#ffd166", "#f4978e")
PROBLEM_COLOR = "#c62828"
EMPTY_COLOR = "#eeeeee"
REFERENCE_COLOR = "#1d3557"
BANNER_COLOR = REFERENCE_COLOR
DASH = "\N{EM DASH}"
EN_DASH = "\N{EN DASH}"
TIMES = "\N{MULTIPLICATION SIGN}"
# Plots: the same resolution and palette reduction as the run reports.
DPI = 80
PALETTE = 128
RUN_STAMP = re.compile(r"-\d{8}T\d{6}Z$")


# --- the inputs: scenarios and profiles -------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One line of scripts/scenarios.txt: a name, a playbook, its -e variables."""

    name: str
    playbook: str
    variables: tuple[str, ...] = ()


def read_scenarios(path: Path) -> list[Scenario]:
    """The scenarios of a scenarios.txt file, in file order (``#`` starts a comment)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    scenarios: list[Scenario] = []
    for number, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) < 2 or any("=" not in w for w in words[2:]):
            raise UsageError(f"{path}:{number}: expected 'name playbook k=v ...', got {line!r}")
        if any(s.name == words[0] for s in scenarios):
            raise UsageError(f"{path}:{number}: scenario {words[0]!r} listed twice")
        scenarios.append(Scenario(words[0], words[1], tuple(words[2:])))
    return scenarios


def order_profiles(names: Iterable[str]) -> list[str]:
    """The reference profile first, the others in the order given, each once."""
    unique = list(dict.fromkeys(names))
    return sorted(unique, key=lambda name: name != REFERENCE_PROFILE)


def known_profiles(profiles_dir: Path) -> list[str]:
    """The profiles of inventory/profiles/*.yml: the reference first, then by name."""
    return order_profiles(sorted(p.stem for p in profiles_dir.glob("*.yml")))


def choose(wanted: Sequence[str], known: Sequence[str], kind: str) -> list[str]:
    """``wanted`` in its own order, each once, or every known one when empty.

    An unknown name is refused with the list of known ones (``kind``: "scenario"...).
    """
    if not wanted:
        return list(known)
    unknown = [name for name in wanted if name not in known]
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        plural = "s" if len(unknown) > 1 else ""
        raise UsageError(f"unknown {kind}{plural} {names}: known {kind}s are {', '.join(known)}")
    return list(dict.fromkeys(wanted))


def split_names(text: str | None) -> list[str]:
    """Names separated by spaces or commas (``MATRIX_SCENARIOS="node switchover"``)."""
    return [name for name in re.split(r"[\s,]+", text or "") if name]


# --- the manifest: one line per attempt -------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    """One ansible-playbook run of a scenario under a profile, as scripts/matrix.py saw it."""

    scenario: str
    repetition: int
    rc: int | None  # None: never started (e.g. the profile could not be applied)
    runs: tuple[str, ...] = ()  # the run folders it made, names relative to the profile dir
    log: str | None = None
    started_at: str | None = None
    duration_s: float | None = None
    note: str | None = None


def append_attempt(profile_dir: Path, attempt: Attempt) -> None:
    profile_dir.mkdir(parents=True, exist_ok=True)
    with (profile_dir / MANIFEST_FILE).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(attempt)) + "\n")


def read_attempts(profile_dir: Path) -> list[Attempt]:
    """The manifest's attempts; lines that do not parse (a crash mid-write) are skipped."""
    path = profile_dir / MANIFEST_FILE
    if not path.is_file():
        return []
    attempts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            data = json.loads(line)
            attempts.append(
                Attempt(
                    scenario=str(data["scenario"]),
                    repetition=int(data["repetition"]),
                    rc=None if data.get("rc") is None else int(data["rc"]),
                    runs=tuple(str(r) for r in data.get("runs") or ()),
                    log=data.get("log"),
                    started_at=data.get("started_at"),
                    duration_s=data.get("duration_s"),
                    note=data.get("note"),
                )
            )
        except (ValueError, KeyError, TypeError):
            continue
    return attempts


# --- one run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFigures:
    """The headline figures of one run (or of an attempt that made no run folder)."""

    scenario: str
    profile: str
    run: str | None = None  # the run folder
    report: str | None = None  # its report.html, when there is one
    log: str | None = None  # the ansible-playbook log of the attempt
    repetition: int | None = None
    started_at: str | None = None
    write_gap_s: float | None = None
    read_gap_s: float | None = None
    failed_ops: int | None = None
    in_doubt_ops: int | None = None
    lost: int | None = None
    ghosts: int | None = None
    split_brain: bool | None = None
    passed: bool = False
    skipped: bool = False
    reason: str | None = None  # why it did not pass (or was skipped)
    rc: int | None = None

    def figure(self, key: str) -> float | None:
        value = getattr(self, key)
        return None if value is None else float(value)


def _summary(run_dir: Path) -> dict[str, Any]:
    """summary.json, or computed afresh when it is missing or damaged."""
    from pgchaos.summary import summarize  # noqa: PLC0415 (see the imports)

    path = run_dir / rundir.SUMMARY_FILE
    if path.exists():
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(summary, dict) and "per_endpoint" in summary:
                return summary
        except (OSError, ValueError):
            pass
    return summarize(run_dir)


def gap(summary: dict[str, Any], endpoint: str) -> float | None:
    """The first fault's longest gap on ``endpoint``, else the run's longest unavailability."""
    faults = summary.get("faults") or []
    if faults:
        cost = (faults[0].get("per_endpoint") or {}).get(endpoint) or {}
        if cost.get("longest_gap_s") is not None:
            return float(cost["longest_gap_s"])
    figures = (summary.get("per_endpoint") or {}).get(endpoint) or {}
    value = figures.get("longest_unavailability_s")
    return None if value is None else float(value)


def _ops(summary: dict[str, Any], key: str) -> int:
    per = summary.get("per_endpoint") or {}
    return sum(int((per.get(endpoint) or {}).get(key) or 0) for endpoint in ("rw", "ro"))


def _optional_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def read_expectations(run_dir: Path) -> tuple[str | None, list[dict[str, Any]] | None, list[str]]:
    """pgchaos.combine's reading of expectations.json: (scenario, expectations, warnings)."""
    from pgchaos import combine  # noqa: PLC0415 (see the imports)

    return combine.read_expectations(run_dir)


def scenario_of(run_dir: Path) -> str:
    """The scenario a run folder belongs to: its expectations' name, else its folder's."""
    scenario, _, _ = read_expectations(run_dir)
    return scenario or RUN_STAMP.sub("", run_dir.name)


def _verdict(run_dir: Path) -> tuple[bool, str | None]:
    _, expectations, warnings = read_expectations(run_dir)
    if expectations is None:
        return False, "; ".join(warnings) or NO_EXPECTATIONS
    if not expectations:
        return False, NO_EXPECTATIONS
    failed = [e["name"] for e in expectations if not e["passed"]]
    if failed:
        return False, "failed: " + "; ".join(failed)
    return True, None


def run_figures(
    run_dir: Path,
    *,
    scenario: str | None = None,
    profile: str = "",
    repetition: int | None = None,
    log: str | None = None,
    rc: int | None = None,
) -> RunFigures:
    """The figures of one run folder; ``rc`` is its playbook's exit status when known."""
    base = RunFigures(
        scenario=scenario or scenario_of(run_dir),
        profile=profile,
        run=str(run_dir),
        log=log,
        repetition=repetition,
        rc=rc,
    )
    try:
        summary = _summary(run_dir)
    except (UsageError, OSError, ValueError) as exc:
        return replace(base, reason=f"no summary: {exc}")
    passed, reason = _verdict(run_dir)
    if rc not in (0, None):
        reason = f"ansible-playbook exited {rc}" + (f"; {reason}" if reason else "")
        passed = False
    verify = summary.get("verify") or {}
    report = run_dir / rundir.REPORT_FILE
    return replace(
        base,
        report=str(report) if report.exists() else None,
        started_at=summary.get("started_at"),
        write_gap_s=gap(summary, "rw"),
        read_gap_s=gap(summary, "ro"),
        failed_ops=_ops(summary, "failed_ops"),
        in_doubt_ops=_ops(summary, "in_doubt_ops"),
        lost=_optional_int(verify.get("lost")),
        ghosts=_optional_int(verify.get("ghosts")),
        split_brain=summary.get("split_brain"),
        passed=passed,
        reason=reason,
    )


def attempt_figures(profile_dir: Path, attempt: Attempt) -> list[RunFigures]:
    """The figures of an attempt: one per run folder it made, or one without figures."""
    profile = profile_dir.name
    log = str(profile_dir / attempt.log) if attempt.log else None
    folders = [profile_dir / name for name in attempt.runs if (profile_dir / name).is_dir()]
    if folders:
        return [
            run_figures(
                folder,
                scenario=attempt.scenario,
                profile=profile,
                repetition=attempt.repetition,
                log=log,
                rc=attempt.rc,
            )
            for folder in folders
        ]
    base = RunFigures(
        attempt.scenario,
        profile,
        log=log,
        repetition=attempt.repetition,
        started_at=attempt.started_at,
        rc=attempt.rc,
    )
    if attempt.rc == 0:
        reason = attempt.note or "no run folder: the scenario does not apply to this inventory"
        return [replace(base, skipped=True, reason=reason)]
    if attempt.rc is None:
        return [replace(base, reason=attempt.note or "not run")]
    reason = f"ansible-playbook exited {attempt.rc} before a run folder was made"
    return [replace(base, reason=f"{reason}; {attempt.note}" if attempt.note else reason)]


def latest_attempts(attempts: Iterable[Attempt]) -> list[Attempt]:
    """The last attempt of each (scenario, repetition), in the order they were last made.

    A resumed matrix runs an interrupted attempt again: its later line replaces the first.
    """
    latest: dict[tuple[str, int], Attempt] = {}
    for attempt in attempts:
        latest.pop((attempt.scenario, attempt.repetition), None)
        latest[(attempt.scenario, attempt.repetition)] = attempt
    return list(latest.values())


def finished_attempts(profile_dir: Path) -> set[tuple[str, int]]:
    """(scenario, repetition) pairs this profile folder has a result for: every attempt that
    ended (passed, failed, skipped), not one cut short by an interruption."""
    return {
        (a.scenario, a.repetition)
        for a in latest_attempts(read_attempts(profile_dir))
        if a.note != "interrupted" and a.rc is not None
    }


def _is_run(path: Path) -> bool:
    return path.is_dir() and (path / rundir.RUN_FILE).is_file()


def profile_runs(profile_dir: Path) -> list[RunFigures]:
    """Every attempt of the manifest, then the run folders it does not name."""
    attempts = read_attempts(profile_dir)
    # Folders of superseded attempts count as named: they are not results of their own.
    named = {name for attempt in attempts for name in attempt.runs}
    figures = [
        f for attempt in latest_attempts(attempts) for f in attempt_figures(profile_dir, attempt)
    ]
    for folder in sorted(profile_dir.iterdir()):
        if folder.name not in named and _is_run(folder):
            figures.append(run_figures(folder, profile=profile_dir.name))
    return figures


def collect(matrix_dir: Path) -> list[RunFigures]:
    """The runs of every profile folder of the matrix (DIR/<profile>/)."""
    if not matrix_dir.is_dir():
        raise UsageError(f"{matrix_dir}: not a directory")
    runs = []
    for child in sorted(matrix_dir.iterdir()):
        if child.is_dir() and not child.name.startswith("."):
            runs += profile_runs(child)
    return runs


# --- cells ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stats:
    min: float
    median: float
    max: float
    n: int


def stats(values: Iterable[float | None]) -> Stats | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return Stats(min(present), float(statistics.median(present)), max(present), len(present))


@dataclass(frozen=True)
class Cell:
    """Every run of one scenario under one profile."""

    scenario: str
    profile: str
    runs: tuple[RunFigures, ...] = ()

    @property
    def measured(self) -> list[RunFigures]:
        return [r for r in self.runs if not r.skipped]

    @property
    def n_runs(self) -> int:
        return len(self.measured)

    @property
    def n_passed(self) -> int:
        return sum(r.passed for r in self.measured)

    @property
    def n_failed(self) -> int:
        return self.n_runs - self.n_passed

    @property
    def n_skipped(self) -> int:
        return len(self.runs) - self.n_runs

    @property
    def lost(self) -> int:
        return sum(r.lost or 0 for r in self.measured)

    @property
    def any_loss(self) -> bool:
        return self.lost > 0

    @property
    def split_brains(self) -> int:
        return sum(bool(r.split_brain) for r in self.measured)

    @property
    def any_split_brain(self) -> bool:
        return self.split_brains > 0

    @property
    def unverified(self) -> int:
        """Runs with figures but no verification (their loss is unknown)."""
        return sum(r.run is not None and r.lost is None for r in self.measured)

    @property
    def problem(self) -> bool:
        return self.any_loss or self.any_split_brain or self.n_failed > 0

    def stats(self, key: str) -> Stats | None:
        return stats(r.figure(key) for r in self.measured)


@dataclass
class Matrix:
    scenarios: list[str]
    profiles: list[str]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)

    def cell(self, scenario: str, profile: str) -> Cell:
        return self.cells.get((scenario, profile)) or Cell(scenario, profile)

    @property
    def all_runs(self) -> list[RunFigures]:
        return [r for c in self.cells.values() for r in c.runs]


def aggregate(
    runs: Sequence[RunFigures], scenarios: Sequence[str] = (), profiles: Sequence[str] = ()
) -> Matrix:
    """Cells of the runs; rows and columns: the planned ones, then any others seen."""
    rows = list(dict.fromkeys([*scenarios, *(r.scenario for r in runs)]))
    columns = order_profiles([*profiles, *(r.profile for r in runs)])
    grouped: dict[tuple[str, str], list[RunFigures]] = {}
    for run in runs:
        grouped.setdefault((run.scenario, run.profile), []).append(run)
    cells = {key: Cell(*key, runs=tuple(group)) for key, group in grouped.items()}
    return Matrix(rows, columns, cells)


# --- metadata -------------------------------------------------------------------------------


def read_plan(matrix_dir: Path) -> dict[str, Any]:
    """matrix.json (written by scripts/matrix.py), or {} when there is none."""
    path = matrix_dir / PLAN_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable: {exc}") from None
    return data if isinstance(data, dict) else {}


def _date(value: object) -> str | None:
    try:
        return datetime.fromtimestamp(rundir.parse_time(value), UTC).strftime("%Y-%m-%d")
    except (ValueError, OverflowError, OSError):
        return None


def measured_on(matrix: Matrix, plan: dict[str, Any]) -> str:
    """The UTC date(s) the runs were made, e.g. "2026-12-02" or "2026-12-02 to 2026-12-03"."""
    dates = sorted({d for d in (_date(r.started_at) for r in matrix.all_runs) if d})
    if not dates:
        plan_date = _date(plan.get("started_at"))
        return plan_date or "an unknown date"
    return dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"


def metadata(matrix: Matrix, plan: dict[str, Any], commit: str | None) -> dict[str, Any]:
    return {
        "commit": commit or plan.get("commit") or "unknown",
        "dirty": bool(plan.get("dirty")),
        "measured_on": measured_on(matrix, plan),
        "started_at": plan.get("started_at"),
        "finished_at": plan.get("finished_at"),
        "wall_time_s": plan.get("wall_time_s"),
        "scenarios": matrix.scenarios,
        "profiles": matrix.profiles,
        "repeat": plan.get("repeat"),
        "inventory": plan.get("inventory"),
    }


def _duration(seconds: object) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "unknown"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min" if minutes else f"{round(seconds)} s"
    return f"{minutes // 60} h {minutes % 60} min"


def stamp(meta: dict[str, Any]) -> str:
    """The stamp: measured on DATE at commit C [(with uncommitted changes)]."""
    commit = meta["commit"] + (" (with uncommitted changes)" if meta.get("dirty") else "")
    return f"measured on {meta['measured_on']} at commit {commit}"


# --- results.json -------------------------------------------------------------------------


def _relative(path: str | None, base: Path) -> str | None:
    return None if path is None else os.path.relpath(path, base)


def cell_dict(cell: Cell, base: Path) -> dict[str, Any]:
    figures = {}
    for key, _, _ in FIGURES:
        s = cell.stats(key)
        figures[key] = None if s is None else asdict(s)
    return {
        "scenario": cell.scenario,
        "profile": cell.profile,
        "runs": cell.n_runs,
        "passed": cell.n_passed,
        "failed": cell.n_failed,
        "skipped": cell.n_skipped,
        "any_loss": cell.any_loss,
        "lost": cell.lost,
        "any_split_brain": cell.any_split_brain,
        "split_brain_runs": cell.split_brains,
        "unverified_runs": cell.unverified,
        "figures": figures,
        "run_folders": [_relative(r.run, base) for r in cell.runs if r.run],
        "results": [
            {
                **asdict(r),
                "run": _relative(r.run, base),
                "report": _relative(r.report, base),
                "log": _relative(r.log, base),
            }
            for r in cell.runs
        ],
    }


def results(matrix: Matrix, meta: dict[str, Any], base: Path) -> dict[str, Any]:
    runs = [r for r in matrix.all_runs if not r.skipped]
    return {
        "tool": "pgchaos",
        "kind": "matrix",
        "generated_at": rundir.iso(time.time()),
        "metadata": meta,
        "totals": {
            "runs": len(runs),
            "passed": sum(r.passed for r in runs),
            "failed": sum(not r.passed for r in runs),
            "skipped": len(matrix.all_runs) - len(runs),
            "cells": len(matrix.scenarios) * len(matrix.profiles),
            "cells_measured": len(matrix.cells),
        },
        "figures": {key: {"label": label, "unit": unit} for key, label, unit in FIGURES},
        "cells": [
            cell_dict(matrix.cells[s, p], base)
            for s in matrix.scenarios
            for p in matrix.profiles
            if (s, p) in matrix.cells
        ],
    }


# --- wording shared by the page and the Markdown ----------------------------------------


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _num(value: float) -> str:
    return f"{value:.1f}"


def problems(cell: Cell) -> list[str]:
    """What went wrong in a cell, with counts ("lost 12", "split brain 1/3", "failed 1/3")."""
    words = []
    if cell.any_loss:
        words.append(f"lost {cell.lost}")
    if cell.any_split_brain:
        words.append(f"split brain {cell.split_brains}/{cell.n_runs}")
    if cell.n_failed:
        words.append(f"failed {cell.n_failed}/{cell.n_runs}")
    return words


def markdown_cell(cell: Cell) -> str:
    """The median write gap (min to max), then what went wrong; DASH without runs."""
    if not cell.runs:
        return DASH
    if not cell.n_runs:
        return "skipped"
    parts = []
    s = cell.stats("write_gap_s")
    if s is not None:
        value = f"{_num(s.median)} s"
        parts.append(value if s.n == 1 else f"{value} ({_num(s.min)}{EN_DASH}{_num(s.max)})")
    parts += problems(cell)
    if cell.unverified:
        parts.append(f"unverified {cell.unverified}/{cell.n_runs}")
    return ", ".join(parts) or DASH


def _profile_title(profile: str) -> str:
    return f"{profile} (reference)" if profile == REFERENCE_PROFILE else profile


def render_markdown(matrix: Matrix, meta: dict[str, Any]) -> str:
    head = ["scenario", *(_profile_title(p) for p in matrix.profiles)]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for scenario in matrix.scenarios:
        cells = [markdown_cell(matrix.cell(scenario, p)) for p in matrix.profiles]
        lines.append("| " + " | ".join([f"`{scenario}`", *cells]) + " |")
    repeat = meta.get("repeat")
    runs = f", {_count(repeat, 'run')} per cell" if repeat else ""
    return (
        f"Resilience matrix, {stamp(meta)}{runs}: the median write gap (min{EN_DASH}max) over the"
        " runs, i.e. the longest time without an acknowledged write after the fault;"
        " lost: acknowledged writes missing afterwards; failed: runs whose expectations"
        f" failed; {DASH}: not run.  Produced by `make matrix` (scripts/matrix.py).\n\n"
        + "\n".join(lines)
        + "\n"
    )


# --- index.html -------------------------------------------------------------------------------


def _rgb(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    red, green, blue = (int(value[i : i + 2], 16) for i in (0, 2, 4))
    return red, green, blue


def grade(value: float, low: float, high: float) -> str:
    """The colour of ``value`` on the scale green (low) → amber → red (high)."""
    t = 0.0 if high <= low else min(max((value - low) / (high - low), 0.0), 1.0)
    stops = [_rgb(c) for c in SCALE]
    segment = min(int(t * (len(stops) - 1)), len(stops) - 2)
    local = t * (len(stops) - 1) - segment
    a, b = stops[segment], stops[segment + 1]
    mixed = (round(x + (y - x) * local) for x, y in zip(a, b, strict=True))
    return "#" + "".join(f"{c:02x}" for c in mixed)


def _href(path: str, base: Path) -> str:
    return html.escape(urllib.parse.quote(os.path.relpath(path, base)))


def _run_links(cell: Cell, base: Path) -> str:
    links = []
    for n, run in enumerate(cell.runs, 1):
        target = run.report or run.log or run.run
        label = str(run.repetition or n)
        cls = "skip" if run.skipped else "ok" if run.passed else "fail"
        tip = "passed" if run.passed else run.reason or "failed"
        if run.write_gap_s is not None:
            tip = f"write gap {_num(run.write_gap_s)} s; {tip}"
        if target is None:
            links.append(f"<span class='{cls}' title='{html.escape(tip)}'>{label}</span>")
        else:
            links.append(
                f"<a class='{cls}' href='{_href(target, base)}' title='{html.escape(tip)}'>"
                f"{label}</a>"
            )
    return " ".join(links)


def _grid_cell(cell: Cell, scale: tuple[float, float], base: Path) -> str:
    ref = " ref" if cell.profile == REFERENCE_PROFILE else ""
    if not cell.runs:
        return f"<td class='cell empty{ref}'>{DASH}</td>"
    if not cell.n_runs:
        return (
            f"<td class='cell empty{ref}'>skipped<div class='runs'>"
            f"{_run_links(cell, base)}</div></td>"
        )
    write, read = cell.stats("write_gap_s"), cell.stats("read_gap_s")
    color = PROBLEM_COLOR if cell.problem else EMPTY_COLOR
    if not cell.problem and write is not None:
        color = grade(write.median, *scale)
    value = f"{_num(write.median)} s" if write is not None else DASH
    details = []
    if write is not None and write.n > 1:
        details.append(f"{_num(write.min)}{EN_DASH}{_num(write.max)} s")
    if read is not None:
        details.append(f"reads {_num(read.median)} s")
    if cell.unverified:
        details.append(f"{cell.unverified} unverified")
    runs = f"runs {_run_links(cell, base)}"
    lines = [f"<div class='v'>{value}</div>", f"<div class='d'>{' · '.join(details)}</div>"]
    if cell.problem:
        lines.append(f"<div class='p'>{html.escape(' · '.join(problems(cell)))}</div>")
        lines.append(f"<div class='runs'>{runs}</div>")
    else:
        lines.append(f"<div class='runs'>{cell.n_passed}/{cell.n_runs} passed · {runs}</div>")
    cls = f"cell{' bad' if cell.problem else ''}{ref}"
    return f"<td class='{cls}' style='background:{color}'>{''.join(lines)}</td>"


def _scale(matrix: Matrix) -> tuple[float, float]:
    medians = [s.median for c in matrix.cells.values() if (s := c.stats("write_gap_s")) is not None]
    return (min(medians), max(medians)) if medians else (0.0, 0.0)


def _pyplot() -> Any:
    import matplotlib  # noqa: PLC0415 (see the imports)

    matplotlib.use("Agg")  # no display on lab machines or CI; must precede pyplot
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _png(fig: Figure) -> bytes:
    """The figure as a PNG of at most PALETTE colours (as the run reports are)."""
    from PIL import Image  # noqa: PLC0415 (see the imports)

    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(
            colors=PALETTE, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE
        )
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def scenario_plot(matrix: Matrix, scenario: str) -> bytes:
    """Each profile's write gaps, one dot per run and a bar at the median."""
    fig, ax = _pyplot().subplots(figsize=(7.4, 2.7))
    reference: float | None = None
    top = 0.0
    for x, profile in enumerate(matrix.profiles):
        cell = matrix.cell(scenario, profile)
        runs = [r for r in cell.measured if r.write_gap_s is not None]
        if profile == REFERENCE_PROFILE:
            ax.axvspan(x - 0.5, x + 0.5, color="#dde3ec", lw=0, zorder=0)
        if not runs:
            ax.text(x, 0.02, "skipped" if cell.runs else "not run", ha="center", va="bottom",
                    fontsize=8, color="gray", transform=ax.get_xaxis_transform())  # fmt: skip
            continue
        for i, run in enumerate(runs):
            value = float(run.write_gap_s or 0.0)
            offset = (i - (len(runs) - 1) / 2) * min(0.5 / len(runs), 0.12)
            bad = not run.passed or bool(run.lost) or bool(run.split_brain)
            ax.plot(x + offset, value, "x" if bad else "o", ms=6 if bad else 5,
                    mew=2 if bad else 1, color="#d62728" if bad else "#1f77b4",
                    alpha=0.9, zorder=3)  # fmt: skip
            top = max(top, value)
        s = cell.stats("write_gap_s")
        assert s is not None
        ax.plot([x - 0.28, x + 0.28], [s.median, s.median], color="black", lw=2, zorder=2)
        if profile == REFERENCE_PROFILE:
            reference = s.median
    if reference is not None:
        ax.axhline(reference, color=REFERENCE_COLOR, ls="--", lw=0.8, zorder=1)
    ax.set_xticks(
        range(len(matrix.profiles)),
        [f"{p}\n(reference)" if p == REFERENCE_PROFILE else p for p in matrix.profiles],
        fontsize=9,
    )
    ax.set_xlim(-0.5, len(matrix.profiles) - 0.5)
    ax.set_ylim(0, top * 1.15 or 1.0)
    ax.set_ylabel("write gap, s", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", color="0.9", lw=0.6)
    ax.set_axisbelow(True)
    ax.set_title(scenario, loc="left", fontsize=10, fontweight="bold")
    fig.tight_layout()
    return _png(fig)


def _legend(scale: tuple[float, float]) -> str:
    low, high = scale
    stops = ", ".join(SCALE)
    return (
        "<div class='legend'>"
        f"<span>median write gap</span><span class='v'>{_num(low)} s</span>"
        f"<span class='bar' style='background:linear-gradient(to right, {stops})'></span>"
        f"<span class='v'>{_num(high)} s</span>"
        f"<span class='sw' style='background:{PROBLEM_COLOR}'></span>"
        "<span>lost writes, split brain or a failed run (with counts)</span>"
        f"<span class='sw' style='background:{EMPTY_COLOR}'></span><span>{DASH} not run</span>"
        "</div>"
    )


def render_index(matrix: Matrix, meta: dict[str, Any], base: Path) -> str:
    esc = html.escape
    scale = _scale(matrix)
    head = "".join(
        f"<th class='ref'>{esc(p)}<div class='tag'>reference</div></th>"
        if p == REFERENCE_PROFILE
        else f"<th>{esc(p)}</th>"
        for p in matrix.profiles
    )
    rows = "".join(
        f"<tr><th class='s'><a href='#plot-{esc(s)}'>{esc(s)}</a></th>"
        + "".join(_grid_cell(matrix.cell(s, p), scale, base) for p in matrix.profiles)
        + "</tr>"
        for s in matrix.scenarios
    )
    plots = "".join(
        f"<figure id='plot-{esc(s)}'><img alt='{esc(s)}' src='data:image/png;base64,"
        f"{base64.b64encode(scenario_plot(matrix, s)).decode()}'></figure>"
        for s in matrix.scenarios
        if any(c.stats("write_gap_s") for c in (matrix.cell(s, p) for p in matrix.profiles))
    )
    runs = [r for r in matrix.all_runs if not r.skipped]
    passed = sum(r.passed for r in runs)
    shape = f"{_count(len(matrix.scenarios), 'scenario')} {TIMES} "
    shape += _count(len(matrix.profiles), "profile")
    if meta.get("repeat"):
        shape += f" {TIMES} {_count(meta['repeat'], 'run')}"
    wall = f" · wall time {_duration(meta['wall_time_s'])}" if meta.get("wall_time_s") else ""
    skipped = len(matrix.all_runs) - len(runs)
    skip_note = f", {skipped} skipped" if skipped else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>pgchaos resilience matrix</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0 auto; padding: 12px 16px;
  max-width: 1240px; color: #222; }}
#headline {{ background: {BANNER_COLOR}; color: #fff; border-radius: 6px;
  padding: 10px 16px; margin-bottom: 10px; }}
#headline h1 {{ font-size: 20px; margin: 0 0 4px; }}
#headline p {{ margin: 0; font-size: 14px; opacity: .9; }}
.legend {{ display: flex; align-items: center; gap: 6px; font-size: 12px; margin: 6px 0; }}
.legend .bar {{ width: 160px; height: 12px; border-radius: 2px; }}
.legend .sw {{ width: 14px; height: 12px; margin-left: 14px; border-radius: 2px; }}
table.grid {{ border-collapse: collapse; font-size: 13px; }}
.grid th {{ background: #f3f3f3; border: 1px solid #ccc; padding: 4px 8px; }}
.grid th.s {{ text-align: left; font-family: ui-monospace, monospace; font-size: 12px; }}
.grid th.s a {{ color: #222; text-decoration: none; }}
.grid th.ref {{ background: {REFERENCE_COLOR}; color: #fff; }}
.grid th .tag {{ font-size: 10px; font-weight: normal; opacity: .85; }}
td.cell {{ border: 1px solid #fff; padding: 3px 8px; min-width: 124px; text-align: center;
  vertical-align: top; }}
td.cell.ref {{ border-left: 3px solid {REFERENCE_COLOR}; border-right: 3px solid
  {REFERENCE_COLOR}; }}
td.cell.empty {{ background: {EMPTY_COLOR}; color: #888; vertical-align: middle; }}
td.cell .v {{ font-size: 17px; font-weight: 600; line-height: 1.2; }}
td.cell .d {{ font-size: 11px; color: #333; }}
td.cell .p {{ font-size: 12px; font-weight: 700; }}
td.cell.bad, td.cell.bad .d, td.cell.bad a {{ color: #fff; }}
td.cell .runs {{ font-size: 11px; }}
td.cell .runs a {{ color: #1d3557; padding: 0 2px; }}
td.cell .runs a.fail {{ font-weight: 700; }}
td.cell.bad .runs a {{ color: #fff; }}
h2 {{ font-size: 17px; margin: 18px 0 6px; border-bottom: 1px solid #ddd; }}
.plots {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(592px, 1fr));
  gap: 6px; }}
figure {{ margin: 0; }} img {{ max-width: 100%; display: block; }}
.note {{ color: #555; font-size: 13px; max-width: 1000px; }}
</style></head><body>
<header id="headline">
<h1>pgchaos resilience matrix</h1>
<p>{esc(shape)} · {esc(stamp(meta))}{esc(wall)} · {passed}/{len(runs)} runs
passed{skip_note}</p>
</header>
{_legend(scale)}
<table class="grid"><tr><th>scenario</th>{head}</tr>
{rows}
</table>
<p class="note">Each cell: the median <b>write gap</b> over its runs (the longest time
without an acknowledged write after the first fault: pgchaos.faults), its range, how many
runs passed their expectations, the median read gap, and links to each run's report.
Colours grade the median write gap over the whole grid; red marks lost acknowledged writes,
a split brain or a failed run, whatever the gap. Profiles: inventory/profiles/README.md;
{esc(REFERENCE_PROFILE)} (Patroni's defaults) is the reference column.</p>
<h2>Write gap per scenario, profile by profile</h2>
<p class="note">One dot per run (a red cross: the run failed, lost writes or had a split
brain), a black bar at each profile's median; the dashed line is the reference profile's
median, its column shaded.</p>
<div class="plots">{plots or "<p>No run measured yet.</p>"}</div>
</body></html>
"""


# --- writing it all -----------------------------------------------------------------------


def build(matrix_dir: Path, *, commit: str | None = None) -> tuple[Matrix, dict[str, Any]]:
    plan = read_plan(matrix_dir)
    runs = collect(matrix_dir)
    if not runs and not plan:
        raise UsageError(
            f"no runs under {matrix_dir} (expected {matrix_dir}/<profile>/<run folders>)"
        )
    matrix = aggregate(runs, plan.get("scenarios") or (), plan.get("profiles") or ())
    return matrix, metadata(matrix, plan, commit)


def write_matrix(matrix_dir: Path, *, commit: str | None = None) -> Matrix:
    """Re-aggregate DIR's runs into DIR/results.json, DIR/index.html and DIR/matrix.md."""
    matrix, meta = build(matrix_dir, commit=commit)
    try:
        rundir.write_json(matrix_dir / RESULTS_FILE, results(matrix, meta, matrix_dir))
        for name, text in (
            (INDEX_FILE, render_index(matrix, meta, matrix_dir)),
            (MARKDOWN_FILE, render_markdown(matrix, meta)),
        ):
            tmp = matrix_dir / f".{name}.tmp"
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(matrix_dir / name)
    except OSError as exc:
        raise UsageError(f"cannot write into {matrix_dir}: {exc.strerror or exc}") from None
    return matrix


def run_matrix_report(matrix_dir: Path, *, commit: str | None = None) -> int:
    """The CLI's ``matrix-report``: failing runs are results, so the status is 0."""
    matrix = write_matrix(matrix_dir, commit=commit)
    for scenario in matrix.scenarios:
        cells = (f"{p}: {markdown_cell(matrix.cell(scenario, p))}" for p in matrix.profiles)
        print(f"{scenario}: " + "; ".join(cells))
    print(f"-> {matrix_dir / INDEX_FILE}")
    return 0
