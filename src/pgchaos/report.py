"""``pgchaos report``: summary.json, PNG plots and a self-contained report.html."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # no display on lab machines or CI; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FormatStrFormatter

from pgchaos import rundir
from pgchaos.errors import UsageError
from pgchaos.events import Event, read_events
from pgchaos.summary import (
    CLASSES,
    KINDS,
    OUTCOMES,
    RunData,
    load_run_data,
    summarize,
)

SUMMARY_FILE = rundir.SUMMARY_FILE
REPORT_FILE = rundir.REPORT_FILE
PLOTS_DIR = "plots"
COLORS = {"rw": "tab:red", "ro": "tab:blue"}
CLASS_COLORS = {
    "refused": "tab:orange",
    "connection_lost": "tab:red",
    "read_only": "tab:purple",
    "timeout": "tab:brown",
    "other": "tab:gray",
}


def _bin_width(data: RunData) -> float:
    """A round bin width giving at most ~300 bins, so short runs still show detail."""
    span = max(data.end - data.start, 1.0)
    for width in (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if span / width <= 300:
            return float(width)
    return float(np.ceil(span / 300))


def _decorate(ax: Axes, summary: dict[str, Any], events: list[Event], start: float) -> None:
    """Shade unavailability windows and mark chaos events, on every plot alike."""
    for endpoint, figures in summary["per_endpoint"].items():
        for i, w in enumerate(figures["unavailability_windows"]):
            ax.axvspan(
                w["start_s"],
                w["end_s"],
                color=COLORS[endpoint],
                alpha=0.12,
                lw=0,
                label=f"{endpoint} unavailable" if i == 0 else None,
            )
    for event in events:
        x = event.time - start
        ax.axvline(x, color="black", ls="--", lw=0.8)
        ax.annotate(
            event.label,
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=7,
        )


LegendLoc = Literal["upper right", "upper left", "lower left"]


def _legend(ax: Axes, loc: LegendLoc) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc=loc, fontsize=8)


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _throughput(data: RunData, summary: dict[str, Any], events: list[Event], out: Path) -> None:
    width = _bin_width(data)
    edges = np.arange(0.0, data.end - data.start + width, width)
    fig, ax = plt.subplots(figsize=(11, 3.6))
    rel = data.finish - data.start
    ops = data.kind != KINDS.index("connect")
    ok = data.outcome == OUTCOMES.index("ok")
    for endpoint in summary["per_endpoint"]:
        mask = data.mask(endpoint) & ops
        good, _ = np.histogram(rel[mask & ok], bins=edges)
        bad, _ = np.histogram(rel[mask & ~ok], bins=edges)
        ax.step(
            edges[:-1], good / width, where="post", color=COLORS[endpoint], label=f"{endpoint} ok"
        )
        if bad.any():
            ax.step(
                edges[:-1],
                bad / width,
                where="post",
                color=COLORS[endpoint],
                ls=":",
                label=f"{endpoint} failed",
            )
    _decorate(ax, summary, events, data.start)
    ax.set(title="Throughput (operations per second)", xlabel="seconds since start", ylabel="ops/s")
    ax.set_xlim(0, max(data.end - data.start, 1))
    _legend(ax, "lower left")
    _save(fig, out)


def _errors(data: RunData, summary: dict[str, Any], events: list[Event], out: Path) -> None:
    width = _bin_width(data)
    edges = np.arange(0.0, data.end - data.start + width, width)
    endpoints = list(summary["per_endpoint"]) or ["rw"]  # an empty run still gets a plot
    fig, axes = plt.subplots(len(endpoints), 1, figsize=(11, 2.4 * len(endpoints)), squeeze=False)
    rel = data.finish - data.start
    for ax, endpoint in zip(axes[:, 0], endpoints, strict=True):
        bottom = np.zeros(len(edges) - 1)
        for code, name in enumerate(CLASSES):
            if not name:
                continue
            counts, _ = np.histogram(
                rel[data.mask(endpoint) & (data.error_class == code)], bins=edges
            )
            if counts.any():
                ax.bar(
                    edges[:-1],
                    counts / width,
                    width=width,
                    bottom=bottom,
                    align="edge",
                    color=CLASS_COLORS.get(name, "gray"),
                    label=name,
                )
                bottom += counts / width
        _decorate(ax, summary, events, data.start)
        ax.set(title=f"{endpoint}: errors per second by class", ylabel="errors/s")
        ax.set_xlim(0, max(data.end - data.start, 1))
        _legend(ax, "upper right")
    axes[-1, 0].set_xlabel("seconds since start")
    _save(fig, out)


def _latency(data: RunData, summary: dict[str, Any], events: list[Event], out: Path) -> None:
    width = _bin_width(data)
    fig, ax = plt.subplots(figsize=(11, 3.6))
    rel = data.finish - data.start
    good = (data.kind != KINDS.index("connect")) & (data.outcome == OUTCOMES.index("ok"))
    for endpoint in summary["per_endpoint"]:
        mask = data.mask(endpoint) & good
        bins = np.floor(rel[mask] / width).astype(np.int64)
        lat = data.latency_ms[mask]
        if not len(bins):
            continue
        order = np.argsort(bins, kind="stable")
        bins, lat = bins[order], lat[order]
        keys, starts = np.unique(bins, return_index=True)
        groups = np.split(lat, starts[1:])
        # Bins without a success stay NaN so the lines break across outages
        # instead of drawing a reassuring slope through them.
        nbins = int(keys.max()) + 1
        p50 = np.full(nbins, np.nan)
        p99 = np.full(nbins, np.nan)
        p50[keys] = [np.percentile(g, 50) for g in groups]
        p99[keys] = [np.percentile(g, 99) for g in groups]
        x = np.arange(nbins) * width + width / 2
        ax.plot(x, p50, color=COLORS[endpoint], lw=1, label=f"{endpoint} p50")
        ax.plot(x, p99, color=COLORS[endpoint], lw=1, ls="--", label=f"{endpoint} p99")
    _decorate(ax, summary, events, data.start)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set(title="Latency of successful operations", xlabel="seconds since start", ylabel="ms")
    ax.set_xlim(0, max(data.end - data.start, 1))
    _legend(ax, "upper left")
    _save(fig, out)


def _servers(
    summary: dict[str, Any], events: list[Event], start: float, span: float, out: Path
) -> None:
    rows: list[tuple[str, str]] = []
    for endpoint, figures in summary["per_endpoint"].items():
        for p in figures["servers"]:
            key = (endpoint, p["server"])
            if key not in rows:
                rows.append(key)
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.5 * max(len(rows), 1)))
    role_colors = {"primary": "tab:red", "replica": "tab:blue"}
    for y, (endpoint, server) in enumerate(rows):
        for p in summary["per_endpoint"][endpoint]["servers"]:
            if p["server"] != server:
                continue
            length = max(p["to_s"] - p["from_s"], span / 500)
            ax.broken_barh(
                [(p["from_s"], length)],
                (y - 0.35, 0.7),
                facecolors=role_colors.get(p["role"], "gray"),
                alpha=0.8,
            )
            ax.text(
                p["from_s"],
                y,
                f" tl {p['timeline']}" if p["timeline"] else "",
                va="center",
                fontsize=7,
                color="white",
            )
    ax.set_yticks(range(len(rows)), [f"{ep}: {server or '?'}" for ep, server in rows])
    _decorate(ax, summary, events, start)
    ax.set(
        title="Which server answered (red: primary, blue: replica)", xlabel="seconds since start"
    )
    ax.set_xlim(0, max(span, 1))
    ax.set_ylim(-0.6, max(len(rows), 1) - 0.4)
    _legend(ax, "upper right")
    _save(fig, out)


def render_plots(data: RunData, summary: dict[str, Any], events: list[Event]) -> list[Path]:
    plots = data.run_dir / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    paths = [plots / n for n in ("throughput.png", "errors.png", "latency.png", "servers.png")]
    _throughput(data, summary, events, paths[0])
    _errors(data, summary, events, paths[1])
    _latency(data, summary, events, paths[2])
    _servers(summary, events, data.start, data.end - data.start, paths[3])
    return paths


def _fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value}{unit}"


def render_html(summary: dict[str, Any], plots: list[Path]) -> str:
    esc = html.escape
    rows = []
    for endpoint, f in summary["per_endpoint"].items():
        rows.append(
            "<tr>"
            f"<td>{endpoint}</td><td>{f['operations']}</td><td>{f['ok_per_s']}</td>"
            f"<td><b>{f['longest_unavailability_s']} s</b></td><td>{f['total_error_time_s']} s</td>"
            f"<td>{f['failed_ops']}</td><td>{f['in_doubt_ops']}</td><td>{f['failed_connects']}</td>"
            f"<td>{_fmt(f['latency_ms']['p50'], ' ms')}</td>"
            f"<td>{_fmt(f['latency_ms']['p99'], ' ms')}</td>"
            f"<td>{_fmt(f['visibility_lag_ms']['p99'], ' ms')}</td>"
            "</tr>"
        )
    windows = []
    for endpoint, f in summary["per_endpoint"].items():
        for w in f["unavailability_windows"]:
            classes = ", ".join(f"{k} x{v}" for k, v in w["error_classes"].items())
            windows.append(
                f"<tr><td>{endpoint}</td><td>{esc(w['start'])}</td><td>{w['start_s']}</td>"
                f"<td>{w['end_s']}</td><td>{w['duration_s']} s</td><td>{w['failures']}</td>"
                f"<td>{'yes' if w['recovered'] else '<b>no</b>'}</td><td>{esc(classes)}</td></tr>"
            )
    servers = []
    for endpoint, f in summary["per_endpoint"].items():
        for p in f["servers"]:
            servers.append(
                f"<tr><td>{endpoint}</td><td>{esc(p['server'])}</td><td>{esc(p['role'])}</td>"
                f"<td>{esc(p['timeline'])}</td><td>{p['from_s']}</td><td>{p['to_s']}</td>"
                f"<td>{p['ops']}</td></tr>"
            )
    changes = [
        f"<tr><td>{endpoint}</td><td>{c['at_s']}</td><td>{esc(c['from'])}</td>"
        f"<td>{esc(c['to'])}</td></tr>"
        for endpoint, f in summary["per_endpoint"].items()
        for c in f["server_changes"]
    ]
    events = [
        f"<tr><td>{esc(e['time'])}</td><td>{e['at_s']}</td><td>{esc(e['action'])}</td>"
        f"<td>{esc(e['target'])}</td><td>{esc(e['scenario'] or '')}</td>"
        f"<td>{esc(e['detail'] or '')}</td></tr>"
        for e in summary["events"]
    ]
    verify = summary.get("verify")
    if verify:
        rpo = (
            f"<p class='{'bad' if verify['lost'] else 'good'}'>Writes checked: {verify['writes']}."
            f" Acknowledged and <b>lost: {verify['lost']}</b>; ghost commits: {verify['ghosts']};"
            f" in doubt: {verify['in_doubt']}.</p>"
        )
    else:
        rpo = "<p>Not verified yet: run <code>pgchaos verify RUN</code>, then report again.</p>"
    if summary["split_brain"]:
        brain = "".join(
            f"<li>{esc(' and '.join(o['servers']))} (timelines {esc(' / '.join(o['timelines']))})"
            f" both acknowledged writes from {o['start_s']} s to {o['end_s']} s"
            f" ({o['duration_s']} s; interleaved acknowledgements"
            f" {o['interleaved_acks'][0]} / {o['interleaved_acks'][1]})</li>"
            for o in summary["split_brain_overlaps"]
        )
        split = f"<p class='bad'><b>Split brain: yes.</b></p><ul>{brain}</ul>"
    else:
        terms = ", ".join(
            f"{p['server']} (timeline {p['timeline'] or '?'}, {p['acks']} acks)"
            for p in summary["primary_periods"]
        )
        split = f"<p class='good'>Split brain: no. Primary terms: {esc(terms or 'none')}.</p>"
    layers = [
        f"<tr><td>{esc(x['layer'])}</td><td>{esc(x['start'] or '-')}</td>"
        f"<td>{esc(x['end'] or '-')}</td><td>{_fmt(x['seconds'], ' s')}</td>"
        f"<td class='l'>{esc(x.get('reason') or x.get('detail') or '')}</td></tr>"
        for x in summary.get("layers") or []
    ]
    images = "".join(
        f"<h3>{esc(p.stem)}</h3><img alt='{esc(p.stem)}' "
        f"src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}'>"
        for p in plots
    )
    warnings = "".join(f"<li>{esc(w)}</li>" for w in summary["warnings"])

    def table(head: list[str], body: list[str], empty: str) -> str:
        if not body:
            return f"<p>{empty}</p>"
        cells = "".join(f"<th>{esc(h)}</th>" for h in head)
        return f"<table><tr>{cells}</tr>{''.join(body)}</table>"

    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>pgchaos run {esc(str(summary["run_id"]))}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
.bad {{ color: #b00; }} .good {{ color: #070; }} img {{ max-width: 100%; }}
td.l {{ text-align: left; }}
</style></head><body>
<h1>pgchaos run</h1>
<p>{esc(summary["started_at"])} → {esc(summary["ended_at"])} ({summary["duration_s"]} s),
status {esc(str(summary["status"]))}, {summary["records"]} records.</p>
<p>Endpoints: {esc(json.dumps(summary["endpoints"]))}</p>
<h2>Headline</h2>
{
        table(
            [
                "endpoint",
                "ops",
                "ok/s",
                "longest unavailability (RTO)",
                "total error time",
                "failed ops",
                "in doubt",
                "failed connects",
                "p50",
                "p99",
                "visibility lag p99",
            ],
            rows,
            "No operations recorded.",
        )
    }
<p>An unavailability window runs from the last successful operation before a failure
to the next successful operation (completion times; failed connection attempts count as
failures).</p>
<h2>Data loss (RPO)</h2>
{rpo}
<h2>Split brain</h2>
{split}
<p>Split brain: two servers whose acknowledged writes interleave (one server's
acknowledgement certainly committed between two commits of another server's term;
a term is a (server, timeline) pair).</p>
<h2>Failover layers</h2>
{
        table(
            ["layer", "start", "end", "seconds", "detail"],
            layers,
            "No failover layers (no fault event or no logs).",
        )
    }
<h2>Unavailability windows</h2>
{
        table(
            ["endpoint", "start", "from s", "to s", "duration", "failures", "recovered", "errors"],
            windows,
            "None: every operation succeeded.",
        )
    }
<h2>Server changes (failovers)</h2>
{table(["endpoint", "at s", "from", "to"], changes, "None: every endpoint kept its server.")}
<h2>Servers</h2>
{table(["endpoint", "server", "role", "timeline", "from s", "to s", "ops"], servers, "None.")}
<h2>Events</h2>
{table(["time", "at s", "action", "target", "scenario", "detail"], events, "No events recorded.")}
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
<h2>Plots</h2>
{images}
</body></html>
"""


def build_report(run_dir: Path) -> dict[str, Any]:
    data = load_run_data(run_dir)
    summary = summarize(run_dir, data)
    events, _ = read_events(run_dir)
    try:
        rundir.write_json(run_dir / SUMMARY_FILE, summary)
        plots = render_plots(data, summary, events)
        (run_dir / REPORT_FILE).write_text(render_html(summary, plots), encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write the report into {run_dir}: {exc.strerror or exc}") from None
    return summary


def run_report(run_dir: Path, *, quiet: bool = False) -> int:
    summary = build_report(run_dir)
    if not quiet:
        for endpoint, f in summary["per_endpoint"].items():
            p50, p99 = f["latency_ms"]["p50"], f["latency_ms"]["p99"]
            for change in f["server_changes"]:
                print(f"{endpoint}: at {change['at_s']} s {change['from']} -> {change['to']}")
            print(
                f"{endpoint}: {f['operations']} ops, longest unavailability "
                f"{f['longest_unavailability_s']} s, error time {f['total_error_time_s']} s, "
                f"{f['failed_ops']} failed, {f['in_doubt_ops']} in doubt, "
                f"p50 {_fmt(p50, ' ms')}, p99 {_fmt(p99, ' ms')}"
            )
        verify = summary.get("verify")
        if verify:
            print(
                f"verify: {verify['lost']} lost, {verify['ghosts']} ghosts, "
                f"{verify['in_doubt']} in doubt"
            )
        print(f"split brain: {'YES' if summary['split_brain'] else 'no'}")
        measured = [x for x in summary["layers"] if x["seconds"] is not None]
        if measured:
            print("layers: " + ", ".join(f"{x['layer']} {x['seconds']} s" for x in measured))
        for warning in summary["warnings"]:
            print(f"warning: {warning}")
        print(f"-> {run_dir / REPORT_FILE}")
    return 0
