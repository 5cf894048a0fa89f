"""``pgchaos combine``: one row per run, verdicts from expectations.json, links to reports."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from chaoshelpers import CliRunner, assert_one_line_error, read_json
from test_split_brain import acks, write_run

A = "10.0.0.1:5432"
B = "10.0.0.2:5432"


def _expect(run: Path, scenario: str, *passed: object) -> None:
    (run / "expectations.json").write_text(
        json.dumps(
            {
                "scenario": scenario,
                "expectations": [
                    {
                        "name": f"check {n}",
                        "expected": f"want {n}",
                        "observed": f"got {n}",
                        "passed": p,
                    }
                    for n, p in enumerate(passed, 1)
                ],
            }
        )
    )


def _verified(run: Path, lost: int, ghosts: int, in_doubt: int) -> None:
    (run / "verify.json").write_text(
        json.dumps(
            {
                "lost": lost,
                "ghosts": ghosts,
                "in_doubt_total": in_doubt,
                "acknowledged": {"present": 10},
                "writes": 12,
            }
        )
    )


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from pgchaos.cli import main

    root = tmp_path_factory.mktemp("campaign") / "runs"
    root.mkdir()
    # A clean failover with a 5 s write gap, verified, reported, all expectations met.
    good = write_run(
        root / "a-good",
        [*acks(A, "1", 1001.0, 1005.0), (1005.5, 2.0, "failed", A, ""),
         *acks(B, "2", 1010.0, 1012.0)],
        start=1000.0,
    )  # fmt: skip
    _verified(good, 0, 1, 2)
    _expect(good, "leader-kill", True, True)
    # A split brain whose second expectation failed (passed as Ansible may write it).
    bad = write_run(
        root / "b-bad",
        [*acks(A, "1", 2001.0, 2006.0), *acks(B, "1", 2003.0, 2008.0)],
        start=2000.0,
        end=2010.0,
    )
    _expect(bad, "net-partition", "True", "False")
    # No expectations, never reported.
    bare = write_run(root / "c-bare", acks(A, "1", 3001.0, 3002.0), start=3000.0, end=3005.0)
    for run in (good, bad):
        assert main(["report", "-q", str(run)]) == 0
    return [good, bad, bare]


@pytest.fixture
def runs(campaign: list[Path], tmp_path: Path) -> list[Path]:
    """A private copy of the campaign, so tests may change it."""
    root = tmp_path / "runs"
    shutil.copytree(campaign[0].parent, root)
    return [root / run.name for run in campaign]


def test_combine_runs(runs: list[Path], cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "site" / "campaign"
    result = cli("combine", str(out), *map(str, runs))
    assert result.returncode == 0, result.stderr
    assert "PASS: leader-kill" in result.stdout
    assert "FAIL: net-partition" in result.stdout
    assert "no expectations recorded: c-bare" in result.stdout
    results = read_json(out / "results.json")
    assert results["totals"] == {"runs": 3, "passed": 1, "failed": 1, "no_expectations": 1}
    good, bad, bare = results["runs"]
    assert good["scenario"] == "leader-kill"
    assert good["passed"] is True
    assert good["verdict"] == "pass"
    assert good["expectation"] == "check 1: want 1; check 2: want 2"
    assert good["observed"] == "check 1: got 1; check 2: got 2"
    assert good["write_unavailability_s"] == pytest.approx(1010.005 - 1004.905)
    assert good["read_unavailability_s"] is None  # no readers in this run
    assert good["failed_ops"] == 1
    assert (good["lost"], good["ghosts"], good["in_doubt"]) == (0, 1, 2)
    assert good["split_brain"] is False
    assert bad["passed"] is False
    assert bad["verdict"] == "fail"
    assert [e["passed"] for e in bad["expectations"]] == [True, False]
    assert bad["split_brain"] is True
    assert bad["lost"] is None
    assert bad["verified"] is False
    assert bare["passed"] is None
    assert bare["verdict"] == "no expectations recorded"
    assert bare["scenario"] == "c-bare"
    assert bare["report"] is None
    assert bare["split_brain"] is False
    # Links are relative to OUT and lead to each run's report.
    page = (out / "index.html").read_text()
    links = re.findall(r"href='([^']+)'", page)
    assert links == ["../../runs/a-good/report.html", "../../runs/b-bad/report.html"]
    assert [(out / link).resolve() for link in links] == [
        (r / "report.html").resolve() for r in runs[:2]
    ]
    assert page.count("<tr class=") == 3
    assert "net-partition" in page
    assert "no expectations recorded" in page
    assert "not verified" in page


def test_combine_runs_dir(runs: list[Path], cli: CliRunner, tmp_path: Path) -> None:
    (runs[0].parent / "not-a-run").mkdir()
    out = tmp_path / "out"
    result = cli("combine", str(out), "--runs-dir", str(runs[0].parent))
    assert result.returncode == 0, result.stderr
    rows = read_json(out / "results.json")["runs"]
    assert [Path(r["run"]).name for r in rows] == ["a-good", "b-bad", "c-bare"]


def test_damaged_expectations_are_reported_not_fatal(
    runs: list[Path], cli: CliRunner, tmp_path: Path
) -> None:
    (runs[0] / "expectations.json").write_text("{not json")
    _expect(runs[1], "x", "maybe")
    result = cli("combine", str(tmp_path / "out"), str(runs[0]), str(runs[1]))
    assert result.returncode == 0, result.stderr
    first, second = read_json(tmp_path / "out" / "results.json")["runs"]
    assert first["verdict"] == "no expectations recorded"
    assert first["warnings"][0].startswith("expectations.json unreadable")
    assert second["passed"] is False
    assert "counted failed" in second["warnings"][0]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["OUT"], "no run folders"),
        (["OUT", "missing"], "does not exist"),
        (["OUT", "--runs-dir", "empty"], "no run folders in"),
        (["OUT", "--runs-dir", "nope"], "not a directory"),
        (["afile", "RUN"], "not a directory"),
    ],
)
def test_bad_input(cli: CliRunner, tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "afile").write_text("")
    write_run(tmp_path / "RUN", acks(A, "1", 1001.0, 1002.0))
    result = cli("combine", *args)
    assert result.returncode == 2
    assert_one_line_error(result.stderr)
    assert needle in result.stderr
    assert not (tmp_path / "OUT").exists()
