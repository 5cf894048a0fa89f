"""Benchmark ``pgchaos load`` against pgbench doing the same statements on the same server.

Starts a throwaway PostgreSQL (as the postgres user when run as root) on
127.0.0.1, runs ``pgchaos load`` at full speed, then pgbench with the same
number of clients for the same time, and prints recorded ops/s, peak RSS and
the ratio.  Usage: .venv/bin/python scripts/bench_load.py [--duration 20] ...
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pgchaos.localpg import PG_BIN, LocalPostgres
from pgchaos.rundir import parse_time

HERE = Path(__file__).resolve().parent


@dataclass
class Measure:
    scenario: str
    tool: str
    clients: str
    ops_per_s: float
    peak_rss_mb: float | None = None
    cpu_percent: float | None = None
    rss_samples_mb: tuple[float, ...] = ()


def _rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else None


def run_pgchaos(
    pg: LocalPostgres, scenario: str, writers: int, readers: int, duration: float, out: Path
) -> Measure:
    cmd = [
        sys.executable, "-m", "pgchaos", "load",
        "--rw", pg.dsn(), "--ro", pg.dsn(),
        "--writers", str(writers), "--readers", str(readers), "--rw-readers", "0",
        "--rate", "0", "--duration", str(duration), "--out", str(out), "--quiet",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd)
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        # RSS over time shows whether memory stays flat while records pile up;
        # the first seconds are interpreter start-up, not the workload.
        # Never poll() here: that could reap the child before os.wait4 gets its rusage.
        time.sleep(2.0)
        while not done.is_set():
            rss = _rss_mb(proc.pid)
            if rss is not None:
                samples.append(rss)
            done.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    done.set()
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"pgchaos load failed with exit status {proc.returncode}")
    meta = json.loads((out / "run.json").read_text())
    elapsed = parse_time(meta["ended_at"]) - parse_time(meta["started_at"])
    with (out / "records.csv").open(newline="") as handle:
        ops = sum(1 for row in csv.DictReader(handle) if row["kind"] in ("read", "write"))
    cpu = (usage.ru_utime + usage.ru_stime) / elapsed * 100
    picks = (
        tuple(samples[i] for i in sorted({0, len(samples) // 2, len(samples) - 1}))
        if samples
        else ()
    )
    return Measure(
        scenario,
        "pgchaos",
        f"{writers}w+{readers}r",
        ops / elapsed,
        peak_rss_mb=usage.ru_maxrss / 1024,
        cpu_percent=cpu,
        rss_samples_mb=picks,
    )


def run_pgbench(
    pg: LocalPostgres, scenario: str, writers: int, readers: int, duration: float
) -> Measure:
    """Writers and readers as two concurrent pgbench processes, like pgchaos's two pools.

    (One pgbench with weighted scripts would make every client alternate between
    inserts and reads, so reads would wait behind commits, unlike pgchaos readers.)
    """
    pools = [(n, HERE / "bench" / name) for n, name in ((writers, "insert.sql"), (readers,
             "select.sql")) if n]  # fmt: skip
    env = {**os.environ, "PGPASSWORD": pg.password}
    procs = []
    for clients, script in pools:
        cmd = [
            str(PG_BIN / "pgbench"), "-n", "-M", "prepared", "-f", str(script),
            "-c", str(clients), "-j", str(min(2, clients)), "-T", str(round(duration)),
            # the readers look for as many writers as pgchaos's readers do
            "-D", f"writers={writers}",
            "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, pg.dbname,
        ]  # fmt: skip
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
        )
    total = 0.0
    for proc in procs:
        out, err = proc.communicate()
        match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
        if proc.returncode != 0 or not match:
            raise SystemExit(f"pgbench failed: {err.strip() or out.strip()}")
        total += float(match.group(1))
    return Measure(scenario, "pgbench", f"{writers}w+{readers}r", total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--readers", type=int, default=4)
    parser.add_argument(
        "--fsync", choices=("on", "off"), default="on",
        help="server fsync (default on: durable commits, as in the lab)",
    )  # fmt: skip
    parser.add_argument(
        "--scenarios", default="mixed,writes", help="comma-separated: mixed, writes"
    )
    args = parser.parse_args()
    plans = {"mixed": (args.writers, args.readers), "writes": (args.writers, 0)}
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in plans]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")

    results: list[Measure] = []
    settings = {"fsync": args.fsync, "max_connections": "100", "shared_buffers": "256MB"}
    with (
        tempfile.TemporaryDirectory(prefix="pgchaos-bench-") as scratch,
        LocalPostgres(settings=settings) as pg,
    ):
        print(
            f"PostgreSQL on 127.0.0.1:{pg.port} (fsync={args.fsync}), {args.duration:.0f} s per run"
        )
        for scenario in chosen:
            writers, readers = plans[scenario]
            pg.superuser_sql("checkpoint")
            results.append(
                run_pgchaos(pg, scenario, writers, readers, args.duration, Path(scratch) / scenario)
            )
            pg.superuser_sql("checkpoint")
            results.append(run_pgbench(pg, scenario, writers, readers, args.duration))

    row = "{:<9} {:<8} {:>8} {:>9} {:>9} {:>6}  {}"
    print()
    print(row.format("scenario", "tool", "clients", "ops/s", "peak RSS", "CPU", "RSS over time"))
    for m in results:
        rss = f"{m.peak_rss_mb:.0f} MB" if m.peak_rss_mb is not None else "-"
        cpu = f"{m.cpu_percent:.0f}%" if m.cpu_percent is not None else "-"
        trend = " -> ".join(f"{s:.0f}" for s in m.rss_samples_mb)
        trend += " MB" if trend else ""
        print(row.format(m.scenario, m.tool, m.clients, f"{m.ops_per_s:.0f}", rss, cpu, trend))
    print()
    for scenario in chosen:
        ours = next(m for m in results if m.scenario == scenario and m.tool == "pgchaos")
        theirs = next(m for m in results if m.scenario == scenario and m.tool == "pgbench")
        print(
            f"{scenario}: pgchaos/pgbench = {ours.ops_per_s / theirs.ops_per_s:.2f}"
            f" ({ours.ops_per_s:.0f} vs {theirs.ops_per_s:.0f} ops/s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
