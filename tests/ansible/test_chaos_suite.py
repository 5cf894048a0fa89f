"""scripts/chaos-suite.sh's flow with stand-ins for ansible-playbook and pgchaos: a failed
scenario is followed by chaos-reset, and the suite stops when chaos-reset fails too (the
cluster stays unhealthy), instead of every later scenario waiting out its timeout.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_suite(
    tmp_path: Path, failing: set[str]
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    # Fails for the playbooks named in FAILING (chaos-reset.yml included), records every call.
    (bin_dir / "ansible-playbook").write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> "{calls}"\n'
        'for f in $FAILING; do [ "$(basename "$1")" = "$f" ] && exit 2; done\n'
        "exit 0\n"
    )
    (bin_dir / "pgchaos").write_text("#!/bin/sh\nexit 0\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    scenarios = tmp_path / "scenarios.txt"
    scenarios.write_text(
        "# name playbook vars\none chaos-one.yml\ntwo chaos-two.yml\nthree chaos-three.yml\n"
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CHAOS_LIST": str(scenarios),
        "FAILING": " ".join(sorted(failing)),
    }
    env.pop("CHAOS_SCENARIOS", None)
    # A copy of the scripts in a directory of its own: the suite links runs/latest-suite in
    # the checkout it runs from, and this one must not touch the real one.
    repo = tmp_path / "repo" / "scripts"
    repo.mkdir(parents=True)
    for script in ("chaos-suite.sh", "failure-lines.sh"):
        copy = repo / script
        copy.write_text((ROOT / "scripts" / script).read_text())
        copy.chmod(0o755)
    result = subprocess.run(
        [str(repo / "chaos-suite.sh"), str(tmp_path / "runs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ran = [Path(line).name for line in calls.read_text().split()] if calls.exists() else []
    return result, ran


def test_a_failure_is_reset_and_the_suite_goes_on(tmp_path: Path) -> None:
    result, ran = run_suite(tmp_path, {"chaos-two.yml"})
    assert result.returncode == 1
    assert ran == ["chaos-one.yml", "chaos-two.yml", "chaos-reset.yml", "chaos-three.yml"]
    assert "failed: two" in result.stdout


def test_the_suite_stops_when_the_reset_cannot_heal_the_cluster(tmp_path: Path) -> None:
    result, ran = run_suite(tmp_path, {"chaos-one.yml", "chaos-reset.yml"})
    assert result.returncode == 1
    assert ran == ["chaos-one.yml", "chaos-reset.yml"]
    assert "the cluster is not healthy after one and chaos-reset: the rest not run" in result.stdout
    assert "not run: every scenario after one" in result.stdout


def test_a_clean_suite_passes(tmp_path: Path) -> None:
    result, ran = run_suite(tmp_path, set())
    assert result.returncode == 0, result.stdout
    assert ran == ["chaos-one.yml", "chaos-two.yml", "chaos-three.yml"]
