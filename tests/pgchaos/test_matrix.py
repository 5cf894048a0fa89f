"""The resilience matrix: run figures, cells, results.json, matrix.md, index.html, the scripts."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from chaoshelpers import CliRunner, assert_one_line_error, read_json
from matplotlib.image import imread
from test_report_browser import HEIGHT, WIDTH, chromium
from test_split_brain import acks, write_run

from pgchaos import matrix, rundir
from pgchaos.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]
EN, X = "\N{EN DASH}", "\N{MULTIPLICATION SIGN}"
MATRIX_SCRIPT = ROOT / "scripts" / "matrix.py"
README_SCRIPT = ROOT / "scripts" / "readme_matrix.py"
A = "10.0.0.1:5432"
B = "10.0.0.2:5432"


def fake_run(
    profile_dir: Path,
    scenario: str,
    n: int,
    *,
    gap: float,
    read_gap: float = 1.5,
    passed: bool = True,
    lost: int = 0,
    split_brain: bool = False,
) -> Path:
    """A run folder as a chaos playbook leaves it: run.json, summary.json, expectations.json."""
    start = 1_795_000_000.0 + 3600 * n  # 2026-11-18, UTC
    run = profile_dir / f"{scenario}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(start))}"
    run.mkdir(parents=True)
    (run / "run.json").write_text(
        json.dumps(
            {"tool": "pgchaos", "run_id": f"{scenario}-{n}", "started_at": rundir.iso(start)}
        )
    )

    def endpoint(longest: float, failed: int, in_doubt: int) -> dict[str, object]:
        window = {"start_s": 10.0, "end_s": 10.0 + longest, "first_failure_s": 10.2}
        return {
            "longest_unavailability_s": longest,
            "failed_ops": failed,
            "in_doubt_ops": in_doubt,
            "unavailability_windows": [{**window, "duration_s": longest, "recovered": True}],
        }

    def cost(longest: float) -> dict[str, object]:
        return {"first_failure_s": 0.2, "longest_gap_s": longest, "back_s": longest + 0.2}

    summary = {
        "run": str(run),
        "started_at": rundir.iso(start),
        "per_endpoint": {
            # the run's longest windows are a later fault's: the first fault's count
            "rw": endpoint(gap + 30, 2, 1),
            "ro": endpoint(read_gap + 30, 3, 0),
            "rwr": endpoint(99.0, 100, 100),  # not counted: rw + ro only
        },
        "faults": [
            {
                "at_s": 10.0,
                "action": "node",
                "per_endpoint": {"rw": cost(gap), "ro": cost(read_gap)},
            },
            {"at_s": 60.0, "action": "node", "per_endpoint": {"rw": cost(gap + 30)}},
        ],
        "verify": {"lost": lost, "ghosts": 1, "in_doubt": 1, "writes": 1000},
        "split_brain": split_brain,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "expectations.json").write_text(
        json.dumps(
            {
                "scenario": f"playbook-{scenario}",
                "expectations": [
                    {"name": "a new leader", "expected": "<= 20 s", "observed": "ok",
                     "passed": True},
                    {"name": "no acknowledged write lost", "expected": "0 lost",
                     "observed": f"{lost} lost", "passed": passed},
                ],
            }
        )
    )  # fmt: skip
    (run / "report.html").write_text("<html>report</html>")
    return run


def attempt(profile_dir: Path, scenario: str, n: int, run: Path | None, rc: int = 0) -> None:
    matrix.append_attempt(
        profile_dir,
        matrix.Attempt(
            scenario, n, rc, runs=(run.name,) if run else (), log=f"ansible-{scenario}-{n}.log"
        ),
    )


@pytest.fixture
def matrix_dir(tmp_path: Path) -> Path:
    """2 scenarios x 2 profiles x 2 runs: one failed run, one with lost writes, one cell empty."""
    out = tmp_path / "matrix"
    textbook, asynchronous = out / "textbook", out / "async"
    runs = [
        (textbook, "node", 1, {"gap": 17.0}, 0),
        (textbook, "node", 2, {"gap": 19.0}, 0),
        (textbook, "switchover", 1, {"gap": 2.0}, 0),
        (textbook, "switchover", 2, {"gap": 4.0, "passed": False}, 2),  # failed
        (asynchronous, "node", 1, {"gap": 7.0, "read_gap": 3.0}, 0),
        (asynchronous, "node", 2, {"gap": 9.0, "lost": 3, "passed": False}, 2),  # lost writes
        # async x switchover: never run
    ]
    for profile_dir, scenario, n, figures, rc in runs:
        run = fake_run(profile_dir, scenario, n, **figures)
        attempt(profile_dir, scenario, n, run, rc)
        (profile_dir / f"ansible-{scenario}-{n}.log").write_text("PLAY RECAP\n")
    (out / matrix.PLAN_FILE).write_text(
        json.dumps(
            {
                "commit": "abc1234",
                "started_at": "2026-11-18T00:00:00Z",
                "scenarios": ["node", "switchover"],
                "profiles": ["textbook", "async"],
                "repeat": 2,
                "wall_time_s": 3720,
            }
        )
    )
    return out


# --- figures and cells ----------------------------------------------------------------------


def test_run_figures_take_the_first_fault_and_rw_plus_ro(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "p", "node", 1, gap=7.0, read_gap=3.0, lost=3, passed=False)
    figures = matrix.run_figures(run, profile="p", rc=2)
    assert figures.scenario == "playbook-node"  # from expectations.json
    assert (figures.write_gap_s, figures.read_gap_s) == (7.0, 3.0)
    assert (figures.failed_ops, figures.in_doubt_ops) == (5, 1)
    assert (figures.lost, figures.ghosts, figures.split_brain) == (3, 1, False)
    assert figures.passed is False
    assert figures.reason == "ansible-playbook exited 2; failed: no acknowledged write lost"
    assert figures.report == str(run / "report.html")


def test_without_fault_events_the_longest_unavailability_counts(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "p", "node", 1, gap=7.0)
    summary = read_json(run / "summary.json")
    summary["faults"] = []
    (run / "summary.json").write_text(json.dumps(summary))
    assert matrix.run_figures(run).write_gap_s == 37.0


def test_the_verdict_words_are_combine_s() -> None:
    from pgchaos import combine

    assert matrix.NO_EXPECTATIONS == combine.NO_EXPECTATIONS


def test_no_expectations_is_not_passed_with_a_reason(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "p", "node", 1, gap=7.0)
    (run / "expectations.json").unlink()
    figures = matrix.run_figures(run)
    assert figures.passed is False
    assert figures.reason == "no expectations recorded"
    assert figures.scenario == "node"  # the folder's name without its time stamp


def test_a_run_without_summary_is_summarized(tmp_path: Path) -> None:
    writes = [*acks(A, "1", 1001.0, 1005.0), (1005.5, 2.0, "failed", A, ""),
              *acks(B, "2", 1010.0, 1012.0)]  # fmt: skip
    run = write_run(tmp_path / "node-20261118T010000Z", writes, start=1000.0, end=1015.0)
    figures = matrix.run_figures(run, scenario="node")
    assert not (run / "summary.json").exists()
    assert figures.write_gap_s == pytest.approx(5.1, abs=0.05)  # 1004.905 .. 1010.005
    assert figures.failed_ops == 1
    assert figures.lost is None  # never verified
    assert figures.reason == "no expectations recorded"


def test_attempts_without_a_run_folder(tmp_path: Path) -> None:
    failed = matrix.attempt_figures(tmp_path, matrix.Attempt("node", 1, 4, log="a.log"))
    skipped = matrix.attempt_figures(tmp_path, matrix.Attempt("haproxy-vip", 1, 0))
    never = matrix.attempt_figures(tmp_path, matrix.Attempt("node", 2, None, note="no profile"))
    assert [(f.passed, f.skipped, f.reason) for f in failed + skipped + never] == [
        (False, False, "ansible-playbook exited 4 before a run folder was made"),
        (False, True, "no run folder: the scenario does not apply to this inventory"),
        (False, False, "no profile"),
    ]
    cell = matrix.Cell("node", "p", tuple(failed + skipped + never))
    assert (cell.n_runs, cell.n_passed, cell.n_failed, cell.n_skipped) == (2, 0, 2, 1)


def test_the_manifest_survives_a_torn_line(tmp_path: Path) -> None:
    matrix.append_attempt(tmp_path, matrix.Attempt("node", 1, 0, runs=("node-x",)))
    with (tmp_path / matrix.MANIFEST_FILE).open("a") as handle:
        handle.write('{"scenario": "node", "repet')
    assert matrix.read_attempts(tmp_path) == [matrix.Attempt("node", 1, 0, runs=("node-x",))]


def test_aggregation(matrix_dir: Path) -> None:
    m, meta = matrix.build(matrix_dir)
    assert m.scenarios == ["node", "switchover"]
    assert m.profiles == ["textbook", "async"]
    assert set(m.cells) == {("node", "textbook"), ("switchover", "textbook"), ("node", "async")}
    node = m.cell("node", "textbook")
    assert node.stats("write_gap_s") == matrix.Stats(17.0, 18.0, 19.0, 2)
    assert (node.n_runs, node.n_passed, node.any_loss, node.problem) == (2, 2, False, False)
    switchover = m.cell("switchover", "textbook")
    assert (switchover.n_passed, switchover.n_failed, switchover.any_loss) == (1, 1, False)
    lossy = m.cell("node", "async")
    assert lossy.stats("write_gap_s") == matrix.Stats(7.0, 8.0, 9.0, 2)
    assert lossy.stats("lost") == matrix.Stats(0.0, 1.5, 3.0, 2)
    assert (lossy.n_passed, lossy.lost, lossy.any_loss, lossy.problem) == (1, 3, True, True)
    assert m.cell("switchover", "async").runs == ()
    assert meta["commit"] == "abc1234"
    assert meta["measured_on"] == "2026-11-18"


def test_results_json(matrix_dir: Path) -> None:
    matrix.write_matrix(matrix_dir)
    results = read_json(matrix_dir / "results.json")
    assert results["metadata"]["repeat"] == 2
    assert results["metadata"]["wall_time_s"] == 3720
    assert results["totals"] == {
        "runs": 6, "passed": 4, "failed": 2, "skipped": 0, "cells": 4, "cells_measured": 3,
    }  # fmt: skip
    cells = {(c["scenario"], c["profile"]): c for c in results["cells"]}
    lossy = cells["node", "async"]
    assert lossy["figures"]["write_gap_s"] == {"min": 7.0, "median": 8.0, "max": 9.0, "n": 2}
    assert lossy["figures"]["failed_ops"] == {"min": 5.0, "median": 5.0, "max": 5.0, "n": 2}
    assert (lossy["runs"], lossy["passed"], lossy["any_loss"], lossy["lost"]) == (2, 1, True, 3)
    assert lossy["run_folders"] == [
        "async/node-20261118T120640Z",
        "async/node-20261118T130640Z",
    ]
    assert lossy["results"][1]["report"] == "async/node-20261118T130640Z/report.html"
    assert lossy["results"][1]["log"] == "async/ansible-node-2.log"


def test_markdown_table(matrix_dir: Path) -> None:
    matrix.write_matrix(matrix_dir)
    text = (matrix_dir / "matrix.md").read_text()
    intro, table = text.split("\n\n")
    assert intro.startswith("Resilience matrix, measured on 2026-11-18 at commit abc1234, 2 runs")
    assert table.splitlines() == [
        "| scenario | textbook (reference) | async |",
        "|---|---|---|",
        f"| `node` | 18.0 s (17.0{EN}19.0) | 8.0 s (7.0{EN}9.0), lost 3, failed 1/2 |",
        f"| `switchover` | 3.0 s (2.0{EN}4.0), failed 1/2 | — |",
    ]


def _cells(page: str) -> dict[tuple[str, str], str]:
    """The grid's cells by (scenario, profile), in the page's order."""
    header = re.search(r"<table class=\"grid\"><tr>(.*?)</tr>", page)
    assert header
    profiles = re.findall(r"<th[^>]*>([^<]+)", header.group(1))[1:]
    found = {}
    for scenario, row in re.findall(r"<tr><th class='s'><a [^>]*>([^<]+)</a></th>(.*?)</tr>", page):
        tds = re.findall(r"<td.*?</td>", row)
        assert len(tds) == len(profiles)
        found.update({(scenario, p): td for p, td in zip(profiles, tds, strict=True)})
    return found


def test_index_html(matrix_dir: Path) -> None:
    matrix.write_matrix(matrix_dir)
    page = (matrix_dir / "index.html").read_text()
    cells = _cells(page)
    assert list(cells) == [
        ("node", "textbook"), ("node", "async"),
        ("switchover", "textbook"), ("switchover", "async"),
    ]  # fmt: skip
    node = cells["node", "textbook"]
    assert "href='textbook/node-20261118T120640Z/report.html'" in node
    assert "href='textbook/node-20261118T130640Z/report.html'" in node
    assert "18.0 s" in node
    assert matrix.PROBLEM_COLOR not in node
    assert " ref'" in node  # the reference column
    lossy = cells["node", "async"]
    assert f"background:{matrix.PROBLEM_COLOR}" in lossy
    assert "lost 3 · failed 1/2" in lossy
    assert "href='async/node-20261118T130640Z/report.html'" in lossy
    assert f"background:{matrix.PROBLEM_COLOR}" in cells["switchover", "textbook"]
    assert "empty" in cells["switchover", "async"]
    assert "—" in cells["switchover", "async"]
    # One plot per scenario, embedded.
    assert page.count("<img alt=") == 2
    assert "data:image/png;base64," in page


def test_the_grade_runs_green_amber_red() -> None:
    assert matrix.grade(0.0, 0.0, 10.0) == matrix.SCALE[0]
    assert matrix.grade(5.0, 0.0, 10.0) == matrix.SCALE[1]
    assert matrix.grade(10.0, 0.0, 10.0) == matrix.SCALE[2]
    assert matrix.grade(4.0, 4.0, 4.0) == matrix.SCALE[0]


def test_matrix_report_command(matrix_dir: Path, cli: CliRunner) -> None:
    for name in ("results.json", "index.html", "matrix.md"):
        assert not (matrix_dir / name).exists()
    result = cli("matrix-report", str(matrix_dir), "--commit", "fedcba9")
    assert result.returncode == 0, result.stderr
    line = f"node: textbook: 18.0 s (17.0{EN}19.0); async: 8.0 s (7.0{EN}9.0), lost 3, failed 1/2"
    assert line in result.stdout.splitlines()
    assert "at commit fedcba9" in (matrix_dir / "matrix.md").read_text()
    empty = matrix_dir.parent / "nothing"
    empty.mkdir()
    result = cli("matrix-report", str(empty))
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert "no runs under" in result.stderr


def test_choose_refuses_unknown_names() -> None:
    assert matrix.choose([], ["a", "b"], "profile") == ["a", "b"]
    assert matrix.choose(["b", "a", "b"], ["a", "b"], "profile") == ["b", "a"]
    with pytest.raises(UsageError, match=r"unknown profile 'c': known profiles are a, b"):
        matrix.choose(["c"], ["a", "b"], "profile")


def test_the_project_scenarios_and_profiles_read() -> None:
    scenarios = matrix.read_scenarios(ROOT / "scripts" / "scenarios.txt")
    node = next(s for s in scenarios if s.name == "node")
    assert node == matrix.Scenario("node", "chaos-patroni-leader.yml", ("chaos_method=node",))
    profiles = matrix.known_profiles(ROOT / "inventory" / "profiles")
    assert profiles[0] == "textbook"
    assert set(profiles) >= {"async", "sync"}


# --- scripts/matrix.py --dry-run -------------------------------------------------------------


def dry_run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MATRIX_")}
    return subprocess.run(
        [sys.executable, str(MATRIX_SCRIPT), "--dry-run", "--out", str(tmp_path / "m"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
        check=False,
        cwd=tmp_path,
    )


def test_dry_run_plan(tmp_path: Path) -> None:
    result = dry_run(
        tmp_path, MATRIX_SCENARIOS="switchover node", MATRIX_PROFILES="async,textbook",
        MATRIX_REPEAT="2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    out = tmp_path / "m"
    assert lines[0] == f"matrix: 2 scenarios {X} 2 profiles {X} 2 runs = 8 runs, into {out}"
    pattern = re.compile(
        rf"  cell (\d)/4: (\S+) {X} (\S+), runs 1-2: \S+ (\S+) -e chaos_runs_dir=(\S+)(.*)"
    )
    cells = [m.groups() for line in lines if (m := pattern.fullmatch(line))]
    leader, switchover = "playbooks/chaos-patroni-leader.yml", "playbooks/chaos-switchover.yml"
    assert cells == [
        ("1", "switchover", "async", switchover, f"{out}/async", ""),
        ("2", "node", "async", leader, f"{out}/async", " -e chaos_method=node"),
        ("3", "switchover", "textbook", switchover, f"{out}/textbook", ""),
        ("4", "node", "textbook", leader, f"{out}/textbook", " -e chaos_method=node"),
    ]
    profiles = [line for line in lines if line.startswith("profile ")]
    assert [p.split(":")[0] for p in profiles] == ["profile async", "profile textbook"]
    assert profiles[0].endswith("playbooks/profile.yml -e pgchaos_profile=async")
    assert lines[-2].startswith("then: ")
    assert lines[-2].endswith(
        "playbooks/profile.yml -e pgchaos_profile=inventory (the inventory's own configuration)"
    )
    assert lines[-1] == "dry run: nothing was run"
    assert not out.exists()


def test_dry_run_defaults_and_inventory(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text("all: {}\n")
    result = dry_run(tmp_path, "-i", "hosts.yml")
    assert result.returncode == 0, result.stderr
    scenarios = matrix.read_scenarios(ROOT / "scripts" / "scenarios.txt")
    profiles = matrix.known_profiles(ROOT / "inventory" / "profiles")
    cells = [line for line in result.stdout.splitlines() if line.startswith("  cell ")]
    assert len(cells) == len(scenarios) * len(profiles)
    assert cells[0].startswith(
        f"  cell 1/{len(cells)}: {scenarios[0].name} {X} textbook, runs 1-3:"
    )
    assert all(f"-i {inventory} " in line for line in cells)


def test_unknown_names_are_refused_with_the_known_ones(tmp_path: Path) -> None:
    result = dry_run(tmp_path, "--profiles", "async bogus")
    assert result.returncode == 2
    known = ", ".join(matrix.known_profiles(ROOT / "inventory" / "profiles"))
    assert result.stderr.strip() == (
        f"scripts/matrix.py: error: unknown profile 'bogus': known profiles are {known}"
    )
    result = dry_run(tmp_path, MATRIX_SCENARIOS="node nodes")
    assert result.returncode == 2
    assert "unknown scenario 'nodes': known scenarios are leader-stop, node," in result.stderr
    result = dry_run(tmp_path, MATRIX_REPEAT="0")
    assert result.returncode == 2
    assert "not a positive number" in result.stderr


def _matrix_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("matrix_script", MATRIX_SCRIPT)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_matrix_runs_on_past_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/matrix.py's run loop, with every ansible-playbook replaced by a fake."""
    script = _matrix_script()
    commands: list[tuple[str, str]] = []

    def fake_run_logged(command: list[str], log: Path) -> int:
        # Nothing is executed: each "playbook" makes the run folder a chaos playbook would.
        path = command[command.index("-i") + 2]
        commands.append((path, log.name))
        variables = dict(c.split("=", 1) for c in command if "=" in c)
        if path == "playbooks/chaos-patroni-leader.yml":
            runs_dir = Path(variables["chaos_runs_dir"])
            fake_run(runs_dir, "patroni-leader-node", len(list(runs_dir.glob("p*"))) + 1, gap=6.0)
        if path == "playbooks/chaos-switchover.yml":
            fake_run(Path(variables["chaos_runs_dir"]), "switchover", 1, gap=2.0, passed=False)
            return 2
        return 0

    monkeypatch.setattr(script, "run_logged", fake_run_logged)
    monkeypatch.setattr(script, "git", lambda *args: "abc1234" if "rev-parse" in args else "")
    out = tmp_path / "m"
    args = script.parse_args(
        ["--scenarios", "node switchover haproxy-vip", "--profiles", "async", "--repeat", "1",
         "-i", "inv.yml", "--out", str(out)]
    )  # fmt: skip
    opts = script.options(args)
    assert [s.name for s in opts.scenarios] == ["node", "switchover", "haproxy-vip"]

    assert script.Runner(opts, script.Say()).run() == 1  # a run failed
    assert commands == [
        ("playbooks/profile.yml", "ansible-profile.log"),
        ("playbooks/chaos-patroni-leader.yml", "ansible-node-1.log"),
        ("playbooks/chaos-switchover.yml", "ansible-switchover-1.log"),
        ("playbooks/chaos-reset.yml", "ansible-switchover-1.log"),  # after the failure
        ("playbooks/chaos-haproxy.yml", "ansible-haproxy-vip-1.log"),  # no folder: skipped
        ("playbooks/profile.yml", "ansible-restore.log"),  # the inventory's own settings
    ]
    printed = capsys.readouterr().out
    assert f"cell 1/3: node {X} async, run 1/1, eta unknown" in printed
    assert f"cell 2/3: switchover {X} async, run 1/1, eta <1 min" in printed
    assert "FAILED, write gap 2.0 s" in printed
    assert "putting the inventory's own configuration back: " in printed
    plan = read_json(out / "matrix.json")
    assert plan["commit"] == "abc1234"
    assert plan["finished_at"]
    results = read_json(out / "results.json")
    assert results["totals"] == {
        "runs": 2, "passed": 1, "failed": 1, "skipped": 1, "cells": 3, "cells_measured": 3,
    }  # fmt: skip
    cells = {c["scenario"]: c for c in results["cells"]}
    assert cells["node"]["run_folders"] == ["async/patroni-leader-node-20261118T120640Z"]
    assert cells["node"]["passed"] == 1
    assert cells["haproxy-vip"]["skipped"] == 1
    assert "| `haproxy-vip` | skipped |" in (out / "matrix.md").read_text()


def test_a_resumed_matrix_runs_only_what_has_no_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Interrupted on its second run, then resumed: the first run is kept, the second run
    again, the third for the first time; the wall time adds up and the plan says when."""
    script = _matrix_script()
    commands: list[str] = []
    interrupt = {"switchover": True}

    def fake_run_logged(command: list[str], log: Path) -> int:
        path = command[command.index("-i") + 2]
        commands.append(path.removeprefix("playbooks/"))
        variables = dict(c.split("=", 1) for c in command if "=" in c)
        runs_dir = Path(variables.get("chaos_runs_dir", tmp_path))
        if path == "playbooks/chaos-patroni-leader.yml":
            fake_run(runs_dir, "patroni-leader-node", len(list(runs_dir.glob("p*"))) + 1, gap=6.0)
        if path == "playbooks/chaos-switchover.yml":
            n = len(list(runs_dir.glob("s*"))) + 1
            fake_run(runs_dir, "switchover", n, gap=2.0)
            if interrupt["switchover"]:
                raise script.Interrupted(130)
        return 0

    monkeypatch.setattr(script, "run_logged", fake_run_logged)
    monkeypatch.setattr(script, "git", lambda *args: "abc1234" if "rev-parse" in args else "")
    out = tmp_path / "m"
    args = ["--scenarios", "node switchover", "--profiles", "async", "--repeat", "2",
            "-i", "inv.yml", "--out", str(out)]  # fmt: skip
    first = script.Runner(script.options(script.parse_args(args)), script.Say())
    with pytest.raises(script.Interrupted):
        first.run()
    first.interrupted()
    assert commands == ["profile.yml", "chaos-patroni-leader.yml", "chaos-patroni-leader.yml",
                        "chaos-switchover.yml"]  # fmt: skip
    wall_before = read_json(out / "matrix.json")["wall_time_s"]

    refused = script.main(["--resume", str(out), "--profiles", "sync"])
    assert refused == 2
    assert "drop --profiles" in capsys.readouterr().err

    commands.clear()
    interrupt["switchover"] = False
    monkeypatch.setattr(script, "git", lambda *args: "def5678" if "rev-parse" in args else "")
    resumed = script.options(script.parse_args(["--resume", str(out)]))
    assert (resumed.repeat, resumed.profiles, resumed.inventory) == (2, ["async"], "inv.yml")
    assert script.Runner(resumed, script.Say()).run() == 0
    assert commands == ["profile.yml", "chaos-switchover.yml", "chaos-switchover.yml",
                        "profile.yml"]  # fmt: skip
    printed = capsys.readouterr().out
    assert "resuming: 2 runs with a result, 2 to go" in printed
    assert "started on commit abc1234, resumed on def5678" in printed
    plan = read_json(out / "matrix.json")
    assert plan["commit"] == "abc1234"
    assert plan["finished_at"]
    assert plan["wall_time_s"] >= wall_before
    assert [r["commit"] for r in plan["resumed"]] == ["def5678"]
    results = read_json(out / "results.json")
    # The interrupted switchover run is replaced by its rerun, not counted beside it.
    assert results["totals"]["runs"] == 4
    assert results["totals"]["passed"] == 4


def test_latest_attempts_replace_interrupted_ones(tmp_path: Path) -> None:
    for attempt in [
        matrix.Attempt("node", 1, 0, runs=("a",)),
        matrix.Attempt("node", 2, 130, runs=("b",), note="interrupted"),
        matrix.Attempt("switchover", 1, None, note="the profile could not be applied"),
        matrix.Attempt("node", 2, 0, runs=("c",)),
    ]:
        matrix.append_attempt(tmp_path, attempt)
    latest = matrix.latest_attempts(matrix.read_attempts(tmp_path))
    assert [(a.scenario, a.repetition, a.runs) for a in latest] == [
        ("node", 1, ("a",)),
        ("switchover", 1, ()),
        ("node", 2, ("c",)),
    ]
    assert matrix.finished_attempts(tmp_path) == {("node", 1), ("node", 2)}


# --- scripts/readme_matrix.py ----------------------------------------------------------------


def readme_matrix(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(README_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_readme_section_replaced(matrix_dir: Path, tmp_path: Path) -> None:
    matrix.write_matrix(matrix_dir)
    readme = tmp_path / "README.md"
    readme.write_text(
        "# title\n\n## Resilience\n\n<!-- matrix:start -->\nold table\n"
        "<!-- matrix:end -->\n\nafter\n"
    )
    result = readme_matrix(str(matrix_dir), "--readme", str(readme))
    assert result.returncode == 0, result.stderr
    table = (matrix_dir / "matrix.md").read_text()
    assert readme.read_text() == (
        "# title\n\n## Resilience\n\n<!-- matrix:start -->\n\n"
        f"{table}\n<!-- matrix:end -->\n\nafter\n"
    )
    again = readme_matrix(str(matrix_dir), "--readme", str(readme))
    assert again.returncode == 0
    assert "already up to date" in again.stdout


def test_readme_without_markers_is_refused(matrix_dir: Path, tmp_path: Path) -> None:
    matrix.write_matrix(matrix_dir)
    readme = tmp_path / "README.md"
    for text in (
        "# title\n",
        "<!-- matrix:start -->\nno end\n",
        "<!-- matrix:end -->\n<!-- matrix:start -->\n",
    ):
        readme.write_text(text)
        result = readme_matrix(str(matrix_dir), "--readme", str(readme))
        assert result.returncode == 2
        assert result.stderr.startswith("scripts/readme_matrix.py: error: ")
        assert "nothing written" in result.stderr
        assert readme.read_text() == text
    assert "<!-- matrix:end -->" in result.stderr


# --- the page as a person sees it --------------------------------------------------------------


def _near(pixels: np.ndarray, color: str, tolerance: int = 6) -> np.ndarray:
    rgb = np.array(matrix._rgb(color))
    return np.abs(pixels - rgb).max(axis=2) <= tolerance


def test_the_grid_on_the_first_screen(matrix_dir: Path, tmp_path: Path) -> None:
    matrix.write_matrix(matrix_dir)
    shot = tmp_path / "shot.png"
    result = chromium(matrix_dir / "index.html", tmp_path / "profile", f"--screenshot={shot}")
    assert result.returncode == 0, result.stderr[-2000:]
    pixels = np.round(imread(shot)[:, :, :3] * 255).astype(int)
    assert pixels.shape[:2] == (HEIGHT, WIDTH)
    # The banner at the top, then the grid: red cells (the loss, the failed run) and the
    # clean cell in the scale's colour of the highest median (it is the grid's maximum).
    banner = np.flatnonzero(_near(pixels, matrix.BANNER_COLOR, 0).sum(axis=1) > WIDTH * 0.5)
    assert len(banner), "no banner"
    assert banner[0] < 60, banner
    assert banner[-1] < 150, banner
    below = pixels[banner[-1] + 1 :]
    assert _near(below, matrix.PROBLEM_COLOR).sum() > 2 * 100 * 40
    assert _near(below, matrix.SCALE[-1]).sum() > 100 * 40
    # The reference column: its header in the reference colour, below the banner.
    assert _near(below, matrix.REFERENCE_COLOR, 0).sum() > 80 * 20
    dom = chromium(matrix_dir / "index.html", tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "textbook/node-20261118T120640Z/report.html" in dom.stdout
