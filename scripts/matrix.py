"""The resilience matrix: failure scenarios x configuration profiles x repetitions.

For each profile (inventory/profiles/NAME.yml) the deployed cluster is switched to it once
(playbooks/profile.yml), then every scenario of scripts/scenarios.txt runs REPEAT times,
each its own ansible-playbook process, into OUT/<profile>/.  A failed run is a result: the
matrix goes on (after playbooks/chaos-reset.yml).  After every run the page is rebuilt
(``pgchaos matrix-report OUT``), so an interrupted matrix still has one; at the end
playbooks/profile.yml with the profile ``inventory`` puts the inventory's own configuration
back, the same quick way the profiles were applied.

  .venv/bin/python scripts/matrix.py [--scenarios "node switchover"] [--profiles async]
      [--repeat 3] [-i INVENTORY] [--out runs/matrix-<UTC time>] [--dry-run]
  .venv/bin/python scripts/matrix.py --resume runs/matrix-<UTC time>

--resume carries on an interrupted matrix (Ctrl-C, a session or a machine that ended) in its
own folder, with its own plan: the runs that ended are kept, the rest are run, and the wall
time adds up.  MATRIX_SCENARIOS, MATRIX_PROFILES, MATRIX_REPEAT and MATRIX_RESUME stand in for
the options (`make matrix`).  Exit status: 0 when every run passed, 1 otherwise, 2 for bad options.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgchaos import matrix, rundir
from pgchaos.errors import UsageError

try:  # rich draws the progress when the venv has it (pgchaos depends on it); else plain lines
    from rich.console import Console
except ImportError:  # pragma: no cover
    Console = None  # type: ignore[assignment,misc]

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS_FILE = ROOT / "scripts" / "scenarios.txt"
PROFILES_DIR = ROOT / "inventory" / "profiles"
DEFAULT_REPEAT = 3
TIMES = "\N{MULTIPLICATION SIGN}"


@dataclass(frozen=True)
class Step:
    """One cell of the plan: a scenario under a profile, ``repeat`` times."""

    number: int
    profile: str
    scenario: matrix.Scenario


@dataclass
class Options:
    scenarios: list[matrix.Scenario]
    profiles: list[str]
    repeat: int
    inventory: str | None
    out: Path
    dry_run: bool
    resume: bool = False

    @property
    def steps(self) -> list[Step]:
        pairs = [(p, s) for p in self.profiles for s in self.scenarios]
        return [Step(n, p, s) for n, (p, s) in enumerate(pairs, 1)]


# --- options --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/matrix.py",
        description="Run failure scenarios under configuration profiles, a few times each, "
        "and draw one page (OUT/index.html) and one Markdown table (OUT/matrix.md).",
    )
    parser.add_argument(
        "--scenarios",
        default=os.environ.get("MATRIX_SCENARIOS"),
        help="names from scripts/scenarios.txt, space- or comma-separated "
        "(env MATRIX_SCENARIOS; default: all of them)",
    )
    parser.add_argument(
        "--profiles",
        default=os.environ.get("MATRIX_PROFILES"),
        help="names of inventory/profiles/*.yml (env MATRIX_PROFILES; default: all, textbook "
        "first)",
    )
    parser.add_argument(
        "--repeat",
        default=os.environ.get("MATRIX_REPEAT") or str(DEFAULT_REPEAT),
        help=f"runs per cell (env MATRIX_REPEAT; default {DEFAULT_REPEAT})",
    )
    parser.add_argument(
        "-i", "--inventory", help="passed to every ansible-playbook (default: ansible.cfg's)"
    )
    parser.add_argument("--out", type=Path, help="matrix folder (default runs/matrix-<UTC time>)")
    parser.add_argument(
        "--resume",
        type=Path,
        default=os.environ.get("MATRIX_RESUME") or None,
        metavar="OUT",
        help="carry on the matrix in OUT with its own plan: only the runs that have no result "
        "yet are run (env MATRIX_RESUME)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan (cells, order) and run nothing"
    )
    return parser.parse_args(argv)


def resumed_options(args: argparse.Namespace) -> Options:
    """The options an earlier matrix was started with, read from its matrix.json."""
    out = Path(args.resume).resolve()
    try:
        plan = json.loads((out / matrix.PLAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resume {out}: no readable {matrix.PLAN_FILE} ({exc})") from None
    given = {
        "--scenarios": args.scenarios and matrix.split_names(args.scenarios),
        "--profiles": args.profiles and matrix.split_names(args.profiles),
        "--out": args.out,
        "-i": args.inventory,
    }
    if args.repeat != str(DEFAULT_REPEAT) and str(args.repeat) != str(plan.get("repeat")):
        given["--repeat"] = args.repeat
    clashes = [name for name, value in given.items() if value]
    if clashes:
        raise UsageError(
            f"--resume takes the matrix's own plan from {out / matrix.PLAN_FILE}: "
            f"drop {', '.join(clashes)} (or the MATRIX_* variables)"
        )
    by_name = {s.name: s for s in matrix.read_scenarios(SCENARIOS_FILE)}
    scenarios = matrix.choose(list(plan.get("scenarios") or []), list(by_name), "scenario")
    profiles = matrix.choose(
        list(plan.get("profiles") or []), matrix.known_profiles(PROFILES_DIR), "profile"
    )
    repeat = int(plan.get("repeat") or DEFAULT_REPEAT)
    inventory = plan.get("inventory")
    return Options(
        [by_name[n] for n in scenarios], profiles, repeat, inventory, out, args.dry_run, True
    )


def options(args: argparse.Namespace) -> Options:
    if args.resume:
        return resumed_options(args)
    scenarios = matrix.read_scenarios(SCENARIOS_FILE)
    by_name = {s.name: s for s in scenarios}
    chosen = matrix.choose(matrix.split_names(args.scenarios), list(by_name), "scenario")
    profiles = matrix.choose(
        matrix.split_names(args.profiles), matrix.known_profiles(PROFILES_DIR), "profile"
    )
    try:
        repeat = int(args.repeat)
    except ValueError:
        repeat = 0
    if repeat < 1:
        raise UsageError(f"--repeat / MATRIX_REPEAT: not a positive number: {args.repeat!r}")
    inventory = args.inventory
    if inventory and Path(inventory).exists():
        inventory = str(Path(inventory).resolve())  # ansible-playbook runs from the project root
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = (args.out or ROOT / "runs" / f"matrix-{stamp}").resolve()
    return Options([by_name[n] for n in chosen], profiles, repeat, inventory, out, args.dry_run)


# --- commands -------------------------------------------------------------------------------


def ansible_playbook() -> str:
    beside = Path(sys.executable).parent / "ansible-playbook"  # the venv's, not resolved
    return (
        str(beside) if beside.exists() else shutil.which("ansible-playbook") or "ansible-playbook"
    )


def playbook(opts: Options, path: str, *extra: str) -> list[str]:
    command = [ansible_playbook()]
    if opts.inventory:
        command += ["-i", opts.inventory]
    command.append(path)
    for variable in extra:
        command += ["-e", variable]
    return command


def profile_command(opts: Options, profile: str) -> list[str]:
    return playbook(opts, "playbooks/profile.yml", f"pgchaos_profile={profile}")


def restore_command(opts: Options) -> list[str]:
    """The inventory's own configuration, applied like a profile (no full site.yml run)."""
    return profile_command(opts, "inventory")


def scenario_command(opts: Options, step: Step) -> list[str]:
    runs_dir = opts.out / step.profile
    path = f"playbooks/{step.scenario.playbook}"
    return playbook(opts, path, f"chaos_runs_dir={runs_dir}", *step.scenario.variables)


def reset_command(opts: Options, profile: str) -> list[str]:
    # chaos_runs_dir: where the pid files of a load left running are.
    return playbook(opts, "playbooks/chaos-reset.yml", f"chaos_runs_dir={opts.out / profile}")


def environment() -> dict[str, str]:
    """What `make` gives ansible: the venv's tools first on PATH, the project's ansible.cfg."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("ANSIBLE_CONFIG", str(ROOT / "ansible.cfg"))
    return env


class Interrupted(Exception):
    def __init__(self, rc: int | None) -> None:
        super().__init__("interrupted")
        self.rc = rc


def run_logged(command: list[str], log: Path) -> int:
    """Run from the project root, output appended to ``log``; Ctrl-C lets the child stop."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"=== {rundir.iso(time.time())} {shlex.join(command)}\n")
        handle.flush()
        # stdin from /dev/null: nothing of ours for ansible-playbook to read.
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=environment(),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            # The child had the same SIGINT: give it time to stop its load and clean up.
            try:
                rc = proc.wait(timeout=120)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                proc.kill()
                rc = proc.wait()
            raise Interrupted(rc) from None
        handle.write(f"=== exit status {rc}\n")
        return rc


def git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


# --- output ---------------------------------------------------------------------------------


class Say:
    """Lines on the terminal: with rich when the venv has it, else plain prints."""

    def __init__(self) -> None:
        self.console: Any = None if Console is None else Console(highlight=False, soft_wrap=True)

    def __call__(self, text: str, style: str | None = None) -> None:
        if self.console is None:
            print(text, flush=True)
        else:
            self.console.print(text, style=style, markup=False)

    def waiting(self, text: str) -> Any:
        """A spinner with ``text`` while a run goes on (only on a terminal)."""
        if self.console is not None and self.console.is_terminal:
            return self.console.status(text)
        return _Nothing()


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def minutes(seconds: float) -> str:
    if seconds < 60:
        return "<1 min"
    value = round(seconds / 60)
    return f"{value} min" if value < 120 else f"{value // 60} h {value % 60} min"


# --- the plan -------------------------------------------------------------------------------


def count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def print_plan(opts: Options, say: Say) -> None:
    cells = len(opts.steps)
    say(
        f"matrix: {count(len(opts.scenarios), 'scenario')} {TIMES} "
        f"{count(len(opts.profiles), 'profile')} {TIMES} {count(opts.repeat, 'run')} = "
        f"{count(cells * opts.repeat, 'run')}, into {opts.out}"
    )
    runs = "run 1" if opts.repeat == 1 else f"runs 1-{opts.repeat}"
    for profile in opts.profiles:
        say(f"profile {profile}: {shlex.join(profile_command(opts, profile))}")
        for step in (s for s in opts.steps if s.profile == profile):
            say(
                f"  cell {step.number}/{cells}: {step.scenario.name} {TIMES} {profile}, "
                f"{runs}: {shlex.join(scenario_command(opts, step))}"
            )
    say(f"then: {shlex.join(restore_command(opts))} (the inventory's own configuration)")


# --- the matrix -----------------------------------------------------------------------------


class Runner:
    def __init__(self, opts: Options, say: Say) -> None:
        self.opts = opts
        self.say = say
        self.started = time.time()
        self.durations: list[float] = []
        self.all_passed = True
        self.plan: dict[str, Any] = {
            "tool": "pgchaos",
            "kind": "matrix",
            "commit": git("rev-parse", "--short", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "started_at": rundir.iso(self.started),
            "finished_at": None,
            "wall_time_s": 0.0,
            "scenarios": [s.name for s in opts.scenarios],
            "profiles": opts.profiles,
            "repeat": opts.repeat,
            "inventory": opts.inventory,
            "command": sys.argv,
        }
        # Wall time of the sessions before this one (a resumed matrix adds them up).
        self.earlier_wall_s = 0.0
        if opts.resume:
            self.resume_plan()

    def resume_plan(self) -> None:
        earlier = json.loads((self.opts.out / matrix.PLAN_FILE).read_text(encoding="utf-8"))
        self.earlier_wall_s = float(earlier.get("wall_time_s") or 0.0)
        sessions = list(earlier.get("resumed") or [])
        sessions.append(
            {
                "at": self.plan["started_at"],
                "commit": self.plan["commit"],
                "dirty": self.plan["dirty"],
                "wall_time_before_s": self.earlier_wall_s,
            }
        )
        self.plan = {**earlier, "finished_at": None, "resumed": sessions}
        # A matrix measured on two commits says so: the first one stays its "commit".
        if self.plan["commit"] != sessions[-1]["commit"] or sessions[-1]["dirty"]:
            dirty = " (with uncommitted changes)" if sessions[-1]["dirty"] else ""
            self.say(
                f"note: started on commit {earlier.get('commit')}, resumed on "
                f"{sessions[-1]['commit']}{dirty}",
                "yellow",
            )

    def save_plan(self, *, finished: bool = False) -> None:
        self.plan["wall_time_s"] = round(self.earlier_wall_s + time.time() - self.started, 1)
        if finished:
            self.plan["finished_at"] = rundir.iso(time.time())
        rundir.write_json(self.opts.out / matrix.PLAN_FILE, self.plan)

    def aggregate(self) -> None:
        self.save_plan()
        try:
            matrix.write_matrix(self.opts.out)
        except Exception as exc:  # a bad run folder must not end the matrix
            self.say(f"  (the page could not be rebuilt: {type(exc).__name__}: {exc})", "yellow")

    def eta(self, done: int) -> str:
        if not self.durations:
            return "eta unknown"
        remaining = len(self.opts.steps) * self.opts.repeat - done
        mean = sum(self.durations) / len(self.durations)
        return f"eta {minutes(mean * remaining)}"

    def record(self, step: Step, attempt: matrix.Attempt) -> None:
        profile_dir = self.opts.out / step.profile
        matrix.append_attempt(profile_dir, attempt)
        for figures in matrix.attempt_figures(profile_dir, attempt):
            gap = "" if figures.write_gap_s is None else f", write gap {figures.write_gap_s} s"
            if figures.skipped:
                self.say(f"  skipped: {figures.reason}", "dim")
                continue
            took = f"{attempt.duration_s or 0:.0f} s"
            if figures.passed:
                self.say(f"  passed{gap} ({took})", "green")
            else:
                self.all_passed = False
                log = f"; log {profile_dir / attempt.log}" if attempt.log else ""
                self.say(f"  FAILED{gap} ({took}): {figures.reason}{log}", "bold red")

    def todo(self) -> dict[str, list[tuple[Step, int]]]:
        """Per profile, the (cell, repetition) runs without a result yet (all of them unless
        resuming)."""
        plan: dict[str, list[tuple[Step, int]]] = {}
        for profile in self.opts.profiles:
            finished = matrix.finished_attempts(self.opts.out / profile)
            plan[profile] = [
                (step, n)
                for step in self.opts.steps
                if step.profile == profile
                for n in range(1, self.opts.repeat + 1)
                if (step.scenario.name, n) not in finished
            ]
        return plan

    def earlier_runs_passed(self) -> bool:
        figures = matrix.collect(self.opts.out)
        return all(f.passed or f.skipped for f in figures)

    def switch(self, profile: str, runs: list[tuple[Step, int]]) -> bool:
        log = self.opts.out / profile / "ansible-profile.log"
        self.say(f"profile {profile}: switching the cluster (log {log})", "bold")
        if run_logged(profile_command(self.opts, profile), log) == 0:
            return True
        self.say(f"profile {profile} could not be applied: its cells count as failed", "bold red")
        run_logged(reset_command(self.opts, profile), log)
        for step, n in runs:
            note = "the profile could not be applied (see ansible-profile.log)"
            self.record(step, matrix.Attempt(step.scenario.name, n, None, note=note))
        return False

    def run_one(self, step: Step, n: int, done: int) -> None:
        profile_dir = self.opts.out / step.profile
        name = f"ansible-{step.scenario.name}-{n}.log"
        cells = len(self.opts.steps)
        line = (
            f"cell {step.number}/{cells}: {step.scenario.name} {TIMES} {step.profile}, "
            f"run {n}/{self.opts.repeat}, {self.eta(done)}"
        )
        self.say(line, "bold")
        before = {p.name for p in profile_dir.iterdir()}
        started = time.time()
        interrupted: Interrupted | None = None
        with self.say.waiting(line):
            try:
                rc: int | None = run_logged(scenario_command(self.opts, step), profile_dir / name)
            except Interrupted as exc:
                interrupted, rc = exc, exc.rc
        duration = time.time() - started
        self.durations.append(duration)
        made = sorted(p.name for p in profile_dir.iterdir() if p.is_dir() and p.name not in before)
        attempt = matrix.Attempt(
            scenario=step.scenario.name,
            repetition=n,
            rc=rc,
            runs=tuple(made),
            log=name,
            started_at=rundir.iso(started),
            duration_s=round(duration, 1),
            note="interrupted" if interrupted else None,
        )
        self.record(step, attempt)
        if interrupted:
            raise interrupted
        if rc != 0:
            # A scenario that failed half-way may have left a fault behind.
            self.say("  undoing what it may have left: playbooks/chaos-reset.yml", "dim")
            if run_logged(reset_command(self.opts, step.profile), profile_dir / name) != 0:
                self.say(f"  chaos-reset failed too: see {profile_dir / name}", "bold red")
        self.aggregate()

    def run(self) -> int:
        self.opts.out.mkdir(parents=True, exist_ok=True)
        self.save_plan()
        todo = self.todo()
        left = sum(len(runs) for runs in todo.values())
        done = len(self.opts.steps) * self.opts.repeat - left
        if self.opts.resume:
            self.say(f"resuming: {count(done, 'run')} with a result, {left} to go", "bold")
        for profile in self.opts.profiles:
            if not todo[profile]:
                continue
            (self.opts.out / profile).mkdir(exist_ok=True)
            if not self.switch(profile, todo[profile]):
                self.all_passed = False
                done += len(todo[profile])
                self.aggregate()
                continue
            for step, n in todo[profile]:
                self.run_one(step, n, done)
                done += 1
        # A resumed matrix's verdict covers the runs of every session, not only this one's.
        if self.opts.resume:
            self.all_passed = self.all_passed and self.earlier_runs_passed()
        log = self.opts.out / "ansible-restore.log"
        self.say(
            f"putting the inventory's own configuration back: "
            f"{shlex.join(restore_command(self.opts))} (log {log})",
            "bold",
        )
        restored = run_logged(restore_command(self.opts), log) == 0
        if not restored:
            self.say(
                f"the restore FAILED: the cluster may still run a profile; see {log}", "bold red"
            )
        self.save_plan(finished=True)
        matrix.write_matrix(self.opts.out)
        return 0 if self.all_passed and restored else 1

    def interrupted(self) -> int:
        self.aggregate()
        restore = " && ".join(
            shlex.join(c)
            for c in (
                playbook(self.opts, "playbooks/chaos-reset.yml"),
                restore_command(self.opts),
            )
        )
        self.say(
            "interrupted: the cluster may still run a profile (and a fault); put the "
            f"inventory's configuration back with: {restore}",
            "bold red",
        )
        return 130


def refuse_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out}: exists and is not an empty folder; choose another")


def main(argv: Sequence[str]) -> int:
    say = Say()
    try:
        opts = options(parse_args(argv))
        if opts.dry_run:
            print_plan(opts, say)
            say("dry run: nothing was run")
            return 0
        if not opts.resume:
            refuse_out(opts.out)
    except UsageError as exc:
        print(f"scripts/matrix.py: error: {exc}", file=sys.stderr)
        return 2
    print_plan(opts, say)
    runner = Runner(opts, say)
    try:
        status = runner.run()
    except (Interrupted, KeyboardInterrupt):
        return runner.interrupted()
    index = opts.out / matrix.INDEX_FILE
    summary = json.loads((opts.out / matrix.RESULTS_FILE).read_text(encoding="utf-8"))["totals"]
    say(
        f"{summary['passed']}/{summary['runs']} runs passed"
        + (f", {summary['skipped']} skipped" if summary["skipped"] else "")
    )
    say(f"matrix: {index}", "bold")
    say(f"README table: {opts.out / matrix.MARKDOWN_FILE} (scripts/readme_matrix.py {opts.out})")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
