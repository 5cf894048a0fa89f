"""``pgchaos report``: summary.json, PNG plots and a self-contained report.html.

The page is built to be taken in at a glance: a headline banner saying what
happened to each endpoint, then one timeline figure whose stacked panels share
the time axis (throughput, errors, which server was primary, staleness), then
the tables, then the detail plots.  Long lists are cut in the page (summary.json
keeps them whole) so that a long run still gives a small page.
"""

from __future__ import annotations

import base64
import html
import importlib
import io
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import matplotlib

matplotlib.use("Agg")  # no display on lab machines or CI; must precede pyplot

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, FuncFormatter
from PIL import Image

from pgchaos import layers, rundir
from pgchaos.dsn import redact
from pgchaos.errors import UsageError
from pgchaos.events import FAULT, RECOVER, Event, legacy_kind, read_events
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
PLOTS = ("timeline.png", "latency.png")
COLORS = {"rw": "tab:red", "ro": "tab:blue", "rwr": "tab:green"}
LABELS = {"rw": "rw", "ro": "ro", "rwr": "rw reads"}
# What an endpoint's operations are, as the subject of a headline sentence.
NOUNS = {"rw": "Writes", "ro": "Reads from the replicas", "rwr": "Reads through the write port"}
CLASS_COLORS = {
    "refused": "tab:orange",
    "connection_lost": "tab:red",
    "read_only": "tab:purple",
    "timeout": "tab:brown",
    "other": "tab:gray",
}
TIMELINE_COLORS = ("tab:red", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive")
# Pixels per inch of the PNGs: sharp enough on a laptop screen, small enough that a
# ten-minute run's page stays a few hundred kilobytes.
DPI = 80
PALETTE = 128
FIG_WIDTH = 14.5
# Rows shown per table in the page; summary.json has them all.
TABLE_LIMIT = 40
# The banner's background; tests look for it in a screenshot.
BANNER_COLOR = "#1d3557"

FloatArray = npt.NDArray[np.float64]


def _color(endpoint: str) -> str:
    return COLORS.get(endpoint, "tab:gray")


def _label(endpoint: str) -> str:
    return LABELS.get(endpoint, endpoint)


def _staleness_series(data: RunData) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per reader endpoint: (seconds since start, staleness in s) of each checked read.

    pgchaos.reads computes it; runs (and checkouts) without that module have no
    staleness panel rather than no report.
    """
    try:
        reads = importlib.import_module("pgchaos.reads")
    except ImportError:
        return {}
    series = getattr(reads, "staleness_series", None)
    if series is None:
        return {}
    result: dict[str, tuple[FloatArray, FloatArray]] = series(data)
    return result


def _bin_width(data: RunData) -> float:
    """A round bin width giving at most ~300 bins, so short runs still show detail."""
    span = max(data.end - data.start, 1.0)
    for width in (0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if span / width <= 300:
            return float(width)
    return float(np.ceil(span / 300))


def _event_style(event: Event) -> tuple[str, str]:
    if event.kind == FAULT:
        return "tab:red", "-"
    if event.kind == RECOVER:
        return "tab:green", "-"
    return "dimgray", "--"


def _decorate(
    ax: Axes,
    summary: dict[str, Any],
    events: list[Event],
    start: float,
    *,
    legend: bool = True,
) -> None:
    """Shade unavailability windows and mark chaos events, on every plot alike."""
    for endpoint, figures in summary["per_endpoint"].items():
        for i, w in enumerate(figures["unavailability_windows"]):
            ax.axvspan(
                w["start_s"],
                w["end_s"],
                color=_color(endpoint),
                alpha=0.12,
                lw=0,
                label=f"{_label(endpoint)} unavailable" if i == 0 and legend else None,
            )
    for event in events:
        color, style = _event_style(event)
        ax.axvline(event.time - start, color=color, ls=style, lw=0.9)


def _event_labels(ax: Axes, events: list[Event], start: float, span: float) -> None:
    """The events' names in a strip of their own, so that no curve or title hides them."""
    ax.set_axis_off()
    ax.set_ylim(0, 1)
    lanes: list[float] = []  # the right end, in data units, of the last label of each lane
    for event in events:
        x = event.time - start
        color, _ = _event_style(event)
        width = span * (0.012 + 0.007 * len(event.label))  # roughly, at the strip's font
        lane = next((i for i, end in enumerate(lanes) if end < x), len(lanes))
        if lane == len(lanes):
            lanes.append(0.0)
        lanes[lane] = x + width
        ax.plot([x, x], [0, 0.85 - 0.3 * lane], color=color, lw=0.9)
        ax.text(x, 0.85 - 0.3 * lane, f" {event.label}", fontsize=8, color=color, va="center")


LegendLoc = Literal["upper right", "upper left", "lower left"]


def _legend(ax: Axes, loc: LegendLoc) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc=loc, fontsize=8)


def _legend_outside(ax: Axes) -> None:
    """A legend right of the panel, so it never hides the curves."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(1.005, 1.0),
            fontsize=8,
            frameon=False,
            borderaxespad=0.0,
        )


def _save(fig: Figure, path: Path) -> None:
    """The figure as a PNG of at most PALETTE colours.

    Plots hold a dozen colours and their anti-aliased blends: a palette image looks
    the same (no colour moves by more than a few levels with this method) and is
    about three times smaller than matplotlib's RGBA one, which is what keeps a long
    run's page small.
    """
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    plt.close(fig)
    with Image.open(buffer) as image:
        palette = image.convert("RGB").quantize(
            colors=PALETTE, method=Image.Quantize.MAXCOVERAGE, dither=Image.Dither.NONE
        )
    palette.save(path, format="PNG", optimize=True)


def _note(ax: Axes, text: str) -> None:
    ax.text(
        0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="gray"
    )


def _panel_title(ax: Axes, text: str) -> None:
    ax.set_title(text, loc="left", fontsize=10, pad=3)


def _clock_formatter(start: float) -> FuncFormatter:
    """Ticks as seconds since start over the UTC wall clock, to match the logs and events."""

    def fmt(x: float, _pos: int | None) -> str:
        clock = datetime.fromtimestamp(start + x, UTC).strftime("%H:%M:%S")
        return f"{x:g} s\n{clock}"

    return FuncFormatter(fmt)


def _throughput_panel(
    ax: Axes, data: RunData, endpoints: list[str], edges: FloatArray, width: float
) -> None:
    rel = data.finish - data.start
    ops = data.kind != KINDS.index("connect")
    ok = data.outcome == OUTCOMES.index("ok")
    for endpoint in endpoints:
        mask = data.mask(endpoint) & ops
        good, _ = np.histogram(rel[mask & ok], bins=edges)
        bad, _ = np.histogram(rel[mask & ~ok], bins=edges)
        ax.step(
            edges[:-1],
            good / width,
            where="post",
            color=_color(endpoint),
            lw=1,
            label=f"{_label(endpoint)} ok",
        )
        if bad.any():
            ax.step(
                edges[:-1],
                bad / width,
                where="post",
                color=_color(endpoint),
                lw=1,
                ls=":",
                label=f"{_label(endpoint)} failed",
            )
    if not endpoints:
        _note(ax, "no operations recorded")
    ax.set_ylabel("ops/s", fontsize=8)
    ax.set_ylim(bottom=0)
    _panel_title(
        ax,
        "Throughput: successful (solid) and failed (dotted) operations per second;"
        " shaded: an endpoint unavailable (its colour)",
    )


def _errors_panel(
    ax: Axes, data: RunData, endpoint: str | None, edges: FloatArray, width: float
) -> None:
    """Errors of one endpoint stacked by class; None: the one panel of a run without errors."""
    if endpoint is None:
        _note(ax, "no errors on any endpoint")
        ax.set_ylabel("errors/s", fontsize=8)
        _panel_title(ax, "Errors per second")
        return
    rel = data.finish - data.start
    bottom = np.zeros(len(edges) - 1)
    for code, name in enumerate(CLASSES):
        if not name:
            continue
        counts, _ = np.histogram(rel[data.mask(endpoint) & (data.error_class == code)], bins=edges)
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
    ax.set_ylabel("errors/s", fontsize=8)
    _panel_title(ax, f"{_label(endpoint)}: errors per second by class")


def _primary_panel(ax: Axes, summary: dict[str, Any]) -> None:
    periods = summary["per_endpoint"].get("rw", {}).get("servers", [])
    rows: list[str] = []
    for p in periods:
        if p["server"] not in rows:
            rows.append(p["server"])
    timelines = sorted({p["timeline"] for p in periods}, key=lambda t: (len(t), t))
    span = max(float(summary["duration_s"]), 1.0)
    for p in periods:
        y = rows.index(p["server"])
        color = TIMELINE_COLORS[timelines.index(p["timeline"]) % len(TIMELINE_COLORS)]
        length = max(p["to_s"] - p["from_s"], span / 400)
        ax.broken_barh([(p["from_s"], length)], (y - 0.35, 0.7), facecolors=color, alpha=0.85)
        if length > span / 25:
            ax.text(
                p["from_s"] + length / 2,
                y,
                f"timeline {p['timeline'] or '?'}",
                ha="center",
                va="center",
                fontsize=8,
                color="white",
            )
    for o in summary.get("split_brain_overlaps") or []:
        ax.axvspan(o["start_s"], o["end_s"], fill=False, hatch="///", color="black", lw=0)
    if not rows:
        _note(ax, "no acknowledged writes")
    ax.set_yticks(range(len(rows)), [r or "?" for r in rows], fontsize=8)
    ax.set_ylim(-0.6, max(len(rows), 1) - 0.4)
    _panel_title(ax, "rw: which server acknowledged writes as primary (colour: timeline)")


def _staleness_panel(
    ax: Axes,
    series: dict[str, tuple[FloatArray, FloatArray]],
    edges: FloatArray,
) -> None:
    drawn = False
    for endpoint, (at, staleness) in series.items():
        at_s, stale = np.asarray(at, dtype=float), np.asarray(staleness, dtype=float)
        keep = ~np.isnan(stale)
        times, stale = at_s[keep], stale[keep]
        if not len(times):
            continue
        # Per bin the worst read and the median one: a 10-minute run has far too
        # many reads to draw each, and the worst is what matters.
        bins = np.clip(np.searchsorted(edges, times, side="right") - 1, 0, len(edges) - 2)
        worst = np.full(len(edges) - 1, np.nan)
        middle = np.full(len(edges) - 1, np.nan)
        order = np.argsort(bins, kind="stable")
        keys, starts = np.unique(bins[order], return_index=True)
        for key, group in zip(keys, np.split(stale[order], starts[1:]), strict=True):
            worst[key] = group.max()
            middle[key] = np.median(group)
        x = edges[:-1] + (edges[1] - edges[0]) / 2
        label = _label(endpoint)
        ax.plot(x, worst, color=_color(endpoint), lw=1, label=f"{label} max")
        ax.plot(x, middle, color=_color(endpoint), lw=0.8, ls="--", label=f"{label} median")
        drawn = True
    if not drawn:
        _note(ax, "no staleness measured (reads not checked in this run)")
    ax.set_ylabel("s", fontsize=8)
    ax.set_ylim(bottom=0)
    _panel_title(ax, "Staleness of reads: how far behind the primary each read was")


def _timeline(
    data: RunData,
    summary: dict[str, Any],
    events: list[Event],
    series: dict[str, tuple[FloatArray, FloatArray]],
    out: Path,
) -> None:
    """One figure, stacked panels on one time axis: what happened, when, to whom."""
    width = _bin_width(data)
    span = max(data.end - data.start, 1.0)
    edges = np.arange(0.0, span + width, width)
    endpoints = list(summary["per_endpoint"])
    # A panel per endpoint that had errors: empty panels would only push the rest down.
    error_panels: list[str | None] = [
        ep for ep in endpoints if summary["per_endpoint"][ep]["error_classes"]
    ] or [None]
    servers = {p["server"] for p in summary["per_endpoint"].get("rw", {}).get("servers", [])}
    heights = [0.45, 1.7, *([0.9] * len(error_panels)), 0.5 + 0.3 * max(len(servers), 1), 1.2]
    fig, axes = plt.subplots(
        len(heights),
        1,
        sharex=True,
        figsize=(FIG_WIDTH, sum(heights) + 0.9),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    strip, *panels = list(axes[:, 0])
    _event_labels(strip, events, data.start, span)
    _throughput_panel(panels[0], data, endpoints, edges, width)
    for ax, endpoint in zip(panels[1:], error_panels, strict=False):
        _errors_panel(ax, data, endpoint, edges, width)
    _primary_panel(panels[-2], summary)
    _staleness_panel(panels[-1], series, edges)
    for ax in panels:
        # The shading is named in the first panel's title: a legend entry per endpoint
        # would push the legend over the panel below.
        _decorate(ax, summary, events, data.start, legend=False)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", color="0.9", lw=0.6)
        _legend_outside(ax)
    panels[-1].set_xlim(0, span)
    panels[-1].xaxis.set_major_formatter(_clock_formatter(data.start))
    fig.tight_layout(h_pad=0.5)
    _save(fig, out)


def _latency(data: RunData, summary: dict[str, Any], events: list[Event], out: Path) -> None:
    width = _bin_width(data)
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 3.2))
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
        label = _label(endpoint)
        ax.plot(x, p50, color=_color(endpoint), lw=1, label=f"{label} p50")
        ax.plot(x, p99, color=_color(endpoint), lw=1, ls="--", label=f"{label} p99")
    _decorate(ax, summary, events, data.start)
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    ax.set_xlabel("seconds since start", fontsize=8)
    ax.set_ylabel("ms", fontsize=8)
    ax.tick_params(labelsize=8)
    _panel_title(ax, "Latency of successful operations")
    ax.set_xlim(0, max(data.end - data.start, 1))
    _legend_outside(ax)
    fig.tight_layout()
    _save(fig, out)


def render_plots(data: RunData, summary: dict[str, Any], events: list[Event]) -> list[Path]:
    plots = data.run_dir / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    paths = [plots / name for name in PLOTS]
    _timeline(data, summary, events, _staleness_series(data), paths[0])
    _latency(data, summary, events, paths[1])
    return paths


def _fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value}{unit}"


def _seconds(value: float | None) -> str:
    """A duration for a sentence: as many decimals as a reader can use."""
    if value is None:
        return "-"
    if value == 0:
        return "0 s"
    if value >= 1:
        return f"{value:.1f} s"
    return f"{value:.2f} s" if value >= 0.1 else f"{value:.3f} s"


def _clock(value: str | float | None) -> str:
    """HH:MM:SS (UTC) of an ISO time or an epoch."""
    text = _clock_ms(value)
    return text[:8] if text[8:9] == "." else text


def _clock_ms(value: str | float | None) -> str:
    """HH:MM:SS.mmm (UTC) of an ISO time or an epoch: for a cut-off, where milliseconds count."""
    if value is None:
        return "?"
    try:
        epoch = rundir.parse_time(value)
    except ValueError:
        return str(value)
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S.%f")[:-3]


def _fault_phrase(fault: Event) -> str:
    """The fault as the end of "after ...", from the event's action and target."""
    action, target = fault.action.lower(), fault.target or "the target"
    phrases: dict[str, str] = {
        "kill-postgres": f"PostgreSQL on {target} was killed",
        "kill-patroni": f"Patroni on {target} was killed",
        "kill-etcd": f"etcd on {target} was killed",
        "reboot": f"{target} was rebooted",
        "stop": f"{target} was stopped",
        "switchover": f"the switchover ({target})",
        "failover": f"the manual failover ({target})",
    }
    groups: tuple[tuple[frozenset[str], str], ...] = (
        (frozenset({"kill", "sigkill", "crash"}), f"{target} was killed"),
        (frozenset({"node", "lose", "lose-node", "poweroff"}), f"node {target} was lost"),
        (frozenset({"shutdown"}), f"node {target} was shut down"),
        (frozenset({"pause", "freeze", "sigstop"}), f"{target} was frozen"),
        (
            frozenset({"partition", "isolate", "disconnect", "block", "drop"}),
            f"{target} was cut off the network",
        ),
        (frozenset({"netem", "delay", "loss"}), f"the network of {target} was degraded"),
    )
    if action in phrases:
        return phrases[action]
    for actions, phrase in groups:
        if action in actions:
            return phrase
    return f"{fault.action} {fault.target}".strip()


def _relative_to_fault(window: dict[str, Any], fault: Event | None) -> str:
    if fault is None:
        return ""
    at = fault.time  # seconds since start: the events come from summary.json
    phrase = _fault_phrase(fault)
    if window["start_s"] < at <= window["end_s"] or 0 <= window["start_s"] - at < 1.0:
        return f" after {phrase}"
    if at <= window["start_s"]:
        return f", {round(window['start_s'] - at, 1)} s after {phrase}"
    return f", {round(at - window['end_s'], 1)} s before {phrase}"


def _summary_events(summary: dict[str, Any]) -> list[Event]:
    """The events of summary.json, timed in seconds since the start."""
    return [
        Event(
            float(e["at_s"]),
            e["action"],
            e["target"],
            e.get("scenario"),
            e.get("detail"),
            kind=e.get("kind") or legacy_kind(e["action"]),
            method=e.get("method"),
        )
        for e in summary["events"]
    ]


Line = tuple[str, str]  # (css class: good, warn or bad; text)

# A wait between two successful operations of one endpoint shorter than this is not news.
STALL_WORTH_SAYING_S = 1.0


def _endpoint_headline(
    endpoint: str, f: dict[str, Any], summary: dict[str, Any], fault: Event | None
) -> Line:
    noun = NOUNS.get(endpoint, f"{_label(endpoint)} operations")
    wins = f["unavailability_windows"]
    level = "good"
    if not f["operations"]:
        return "warn", f"{noun}: none recorded."
    if not wins:
        text = f"{noun} never failed ({f['ok']} successful, {f['ok_per_s']}/s)"
        # A client held without an error (a paused pooler) waited: say how long, once it is
        # longer than a client would not notice.
        stall = f.get("longest_stall_s")
        if stall is not None and stall >= STALL_WORTH_SAYING_S:
            text += f", waiting at most {_seconds(stall)} between two"
    else:
        worst = max(wins, key=lambda w: w["duration_s"])
        when = f"{_seconds(worst['duration_s'])} from {_clock(worst['start'])}"
        when += _relative_to_fault(worst, fault)
        if len(wins) == 1:
            text = f"{noun} were down {when}"
        else:
            text = (
                f"{noun} were down {len(wins)} times, {_seconds(f['total_error_time_s'])}"
                f" in all, the longest {when}"
            )
        if not worst["recovered"]:
            text += " and had not come back when the run ended"
            level = "bad"
        else:
            level = "warn"
    if endpoint == "rw":
        verify = summary.get("verify")
        if verify:
            cut = " before the cut-off" if verify.get("until") else ""
            text += f"; {verify['lost']} acknowledged writes lost{cut}{_locally_only_lost(verify)}"
            if verify["ghosts"]:
                text += f", {verify['ghosts']} ghost commits"
            if verify["lost"] or verify["ghosts"]:
                level = "bad"
        else:
            text += "; data loss not verified yet"
    stale = f.get("staleness_s")
    if stale and stale.get("reads"):
        text += (
            f"; staleness p99 {_seconds(stale.get('p99'))}, max {_seconds(stale.get('max'))}"
            f" over {stale['reads']} checked reads"
        )
    anomalies = f.get("read_anomalies")
    if anomalies:
        counts = {k: v for k, v in anomalies.items() if k != "examples" and isinstance(v, int)}
        total = sum(counts.values())
        if total:
            level = "bad"
            detail = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items() if v)
            text += f"; {total} read anomalies ({detail})"
        else:
            text += "; no read anomalies"
    return level, text + "."


def _locally_only_lost(verify: dict[str, Any]) -> str:
    """The lost writes whose commit skipped the synchronous standby; "" when none did."""
    # None in summaries of verify.json files that predate the count.
    count = verify.get("lost_after_sync_cancel") or 0
    return f" ({count} of them after a cancelled synchronous replication wait)" if count else ""


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def until_sentence(verify: dict[str, Any]) -> str:
    """What a verify with a cut-off (--until) found, in a sentence; "" without a cut-off."""
    if not verify.get("until"):
        return ""
    lost = verify["lost"]
    text = (
        f"Verified up to {_clock_ms(verify['until'])} (the cut-off):"
        f" {_plural(lost, 'acknowledged write', 'acknowledged writes')} lost before it"
    )
    if lost and verify.get("first_lost_at"):
        text += f", the first acknowledged at {_clock_ms(verify['first_lost_at'])}"
    absent = verify.get("lost_after_until") or 0
    if absent:
        text += (
            f"; {absent} acknowledged after it {'is' if absent == 1 else 'are'} absent,"
            " as the restore intends"
        )
    else:
        text += "; none acknowledged after it is absent"
    gap = verify.get("recovered_gap_s")
    if verify.get("recovered_until") is None or gap is None:
        text += "; no acknowledged write is present"
    elif gap > 0:
        text += f"; the restored data ends {_seconds(gap)} before the cut-off"
    elif gap == 0:
        text += "; the restored data ends at the cut-off"
    else:
        text += f"; the restored data goes on {_seconds(-gap)} past the cut-off"
    return text + "."


def _first_lost_sentence(verify: dict[str, Any]) -> str:
    """When the first lost write was acknowledged (the sentence with a cut-off says it)."""
    if not verify.get("lost") or not verify.get("first_lost_at") or verify.get("until"):
        return ""
    return f" The first lost write was acknowledged at {_clock_ms(verify['first_lost_at'])}."


def _locally_only_acknowledged(verify: dict[str, Any]) -> str:
    count = verify.get("acknowledged_unreplicated") or 0
    if not count:
        return ""
    return (
        f" {count} writes were acknowledged after their wait for the synchronous standby was"
        " cancelled (committed on the primary only)."
    )


def headline(summary: dict[str, Any]) -> list[Line]:
    """What happened, one sentence per endpoint, then split brain, failover and warnings."""
    fault = layers.find_fault(_summary_events(summary))
    lines = [
        _endpoint_headline(endpoint, f, summary, fault)
        for endpoint, f in summary["per_endpoint"].items()
    ]
    verify = summary.get("verify")
    if verify and verify.get("until"):
        lines.append(("bad" if verify["lost"] else "good", until_sentence(verify)))
    if summary["split_brain"]:
        overlaps = summary["split_brain_overlaps"]
        o = overlaps[0]
        text = (
            f"Split brain: {' and '.join(o['servers'])} both acknowledged writes for"
            f" {o['duration_s']} s from {_clock(o['start'])}"
        )
        if len(overlaps) > 1:
            text += f" ({len(overlaps) - 1} more overlapping pairs)"
        lines.append(("bad", text + "."))
    elif summary["primary_periods"]:
        terms = " → ".join(
            f"{p['server']} (timeline {p['timeline'] or '?'})" for p in summary["primary_periods"]
        )
        lines.append(("good", f"No split brain: one primary at a time, {terms}."))
    measured = [x for x in summary.get("layers") or [] if x["seconds"] is not None]
    if measured:
        steps = ", ".join(f"{x['layer']} {x['seconds']} s" for x in measured)
        lines.append(("info", f"Failover: {steps}."))
    if summary["warnings"]:
        n = len(summary["warnings"])
        lines.append(("warn", f"{n} warning{'s' if n > 1 else ''}: see the end of the page."))
    return lines


def _table(
    head: list[str], body: list[str], empty: str, *, limit: int = TABLE_LIMIT, more: str = ""
) -> str:
    esc = html.escape
    if not body:
        return f"<p>{esc(empty)}</p>"
    cells = "".join(f"<th>{esc(h)}</th>" for h in head)
    rows = "".join(body[:limit])
    cut = ""
    if len(body) > limit:
        cut = (
            f"<p class='note'>… and {len(body) - limit} more rows"
            f"{esc(more) or ' in summary.json'}.</p>"
        )
    return f"<table><tr>{cells}</tr>{rows}</table>{cut}"


def _cells(values: Iterable[object], left: Iterable[int] = ()) -> str:
    lefts = set(left)
    cells = "".join(
        f"<td{' class=l' if i in lefts else ''}>{html.escape(str(v))}</td>"
        for i, v in enumerate(values)
    )
    return f"<tr>{cells}</tr>"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<img alt='{html.escape(path.stem)}' src='data:image/png;base64,{data}'>"


def _endpoint_rows(summary: dict[str, Any]) -> tuple[list[str], list[str]]:
    per = summary["per_endpoint"]
    lag = any((f.get("visibility_lag_ms") or {}).get("p99") is not None for f in per.values())
    stale = any(f.get("staleness_s") for f in per.values())
    anomalies = any(f.get("read_anomalies") for f in per.values())
    head = ["endpoint", "ops", "ok/s", "longest unavailability (RTO)", "total error time"]
    head += ["failed ops", "in doubt", "failed connects", "latency p50", "latency p99"]
    # Columns only where some endpoint has a figure: an empty column says nothing.
    if stale:
        head += ["staleness p99", "staleness max"]
    if lag:
        head += ["visibility lag p99"]
    if anomalies:
        head += ["read anomalies"]
    rows = []
    for endpoint, f in per.items():
        values: list[object] = [
            _label(endpoint),
            f["operations"],
            f["ok_per_s"],
            f"{f['longest_unavailability_s']} s",
            f"{f['total_error_time_s']} s",
            f["failed_ops"],
            f["in_doubt_ops"],
            f["failed_connects"],
            _fmt(f["latency_ms"]["p50"], " ms"),
            _fmt(f["latency_ms"]["p99"], " ms"),
        ]
        if stale:
            s = f.get("staleness_s") or {}
            values += [_fmt(s.get("p99"), " s"), _fmt(s.get("max"), " s")]
        if lag:
            values.append(_fmt((f.get("visibility_lag_ms") or {}).get("p99"), " ms"))
        if anomalies:
            a = f.get("read_anomalies")
            values.append(
                "-"
                if not a
                else sum(v for k, v in a.items() if k != "examples" and isinstance(v, int))
            )
        rows.append(_cells(values, left=[0]))
    return head, rows


def _example(example: object) -> str:
    if isinstance(example, dict):
        return ", ".join(f"{k}={v}" for k, v in example.items())
    return str(example)


def render_html(summary: dict[str, Any], plots: list[Path]) -> str:
    esc = html.escape
    per = summary["per_endpoint"]
    banner = "".join(f"<li class='{cls}'>{esc(text)}</li>" for cls, text in headline(summary))
    dsns = summary.get("endpoints") or {}
    order = [*per, *(ep for ep in dsns if ep not in per)]
    endpoints = "".join(
        f"<div><b>{esc(_label(ep))}</b> <code>{esc(redact(dsns[ep]) if dsns[ep] else '-')}</code>"
        "</div>"
        for ep in order
        if ep in dsns
    )
    head, rows = _endpoint_rows(summary)
    windows = [
        _cells(
            [
                _label(ep),
                _clock(w["start"]),
                w["start_s"],
                w["end_s"],
                f"{w['duration_s']} s",
                w["failures"],
                "yes" if w["recovered"] else "NO",
                ", ".join(f"{k} x{v}" for k, v in w["error_classes"].items()),
            ],
            left=[7],
        )
        for ep, f in per.items()
        for w in f["unavailability_windows"]
    ]
    start = rundir.parse_time(summary["started_at"])
    changes = [
        _cells([_label(ep), _clock(start + c["at_s"]), c["at_s"], c["from"], c["to"]], left=[3, 4])
        for ep, f in per.items()
        for c in f["server_changes"]
    ]
    shares = [
        _cells(
            [
                _label(ep),
                s["server"] or "?",
                s["role"] or "?",
                ", ".join(t or "?" for t in s["timelines"]),
                f"{s['share_pct']} %",
                s["ops"],
                s["first_s"],
                s["last_s"],
            ],
            left=[1],
        )
        for ep, f in per.items()
        for s in f.get("server_share") or []
    ]
    periods = [
        _cells(
            [
                _label(ep),
                p["server"] or "?",
                p["role"],
                p["timeline"],
                p["from_s"],
                p["to_s"],
                p["ops"],
            ],
            left=[1],
        )
        for ep, f in per.items()
        for p in f["servers"]
    ]
    events = [
        _cells(
            [
                _clock(e["time"]),
                e["at_s"],
                e["action"],
                e["target"],
                e["scenario"] or "",
                e["detail"] or "",
            ],
            left=[5],
        )
        for e in summary["events"]
    ]
    verify = summary.get("verify")
    if verify:
        cut = " before the cut-off" if verify.get("until") else ""
        rpo = (
            f"<p class='{'bad' if verify['lost'] else 'good'}'>Writes checked: {verify['writes']}."
            f" Acknowledged{cut} and <b>lost: {verify['lost']}</b>{_locally_only_lost(verify)};"
            f" ghost commits: {verify['ghosts']}; in doubt: {verify['in_doubt']}."
            f"{_locally_only_acknowledged(verify)}{esc(_first_lost_sentence(verify))}</p>"
        )
        if verify.get("until"):
            rpo += f"<p>{esc(until_sentence(verify))}</p>"
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
    failover = [
        _cells(
            [
                x["layer"],
                _clock(x["start"]) if x["start"] else "-",
                _clock(x["end"]) if x["end"] else "-",
                _fmt(x["seconds"], " s"),
                x.get("reason") or x.get("detail") or "",
            ],
            left=[0, 4],
        )
        for x in summary.get("layers") or []
    ]
    anomaly_rows = []
    for ep, f in per.items():
        a = f.get("read_anomalies") or {}
        for example in a.get("examples") or []:
            anomaly_rows.append(_cells([_label(ep), _example(example)], left=[1]))
    anomalies = ""
    if any(f.get("read_anomalies") for f in per.values()):
        anomalies = "<h2>Read anomalies</h2>" + _table(
            ["endpoint", "example"], anomaly_rows, "None found.", limit=10
        )
    warnings = "".join(f"<li>{esc(w)}</li>" for w in summary["warnings"])
    images = {p.name: p for p in plots}
    timeline = _image(images["timeline.png"]) if "timeline.png" in images else ""
    details = "".join(_image(p) for name, p in images.items() if name != "timeline.png")
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>pgchaos run {esc(str(summary["run_id"]))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0 auto; padding: 12px 16px;
  max-width: 1240px; color: #222; }}
#headline {{ background: {BANNER_COLOR}; color: #fff; border-radius: 6px;
  padding: 10px 16px 10px; margin-bottom: 8px; }}
#headline .run {{ font-size: 13px; opacity: .85; margin: 0 0 4px; }}
#headline ul {{ margin: 0; padding: 0; list-style: none; font-size: 17px; line-height: 1.45; }}
#headline li {{ padding-left: 1.1em; text-indent: -1.1em; color: #fff; }}
#headline li::before {{ content: "●"; margin-right: .4em; }}
#headline li.good::before {{ color: #7ddc8b; }} #headline li.warn::before {{ color: #ffcf5c; }}
#headline li.bad::before {{ color: #ff6b5e; }} #headline li.info::before {{ color: #9db8ff; }}
#headline li.bad {{ font-weight: 600; }}
#headline .endpoints {{ font-size: 12px; margin-top: 6px; opacity: .85; }}
#headline code {{ color: #fff; }}
h2 {{ font-size: 17px; margin: 18px 0 6px; border-bottom: 1px solid #ddd; }}
table {{ border-collapse: collapse; margin-bottom: 6px; font-size: 13px; }}
td, th {{ border: 1px solid #ccc; padding: 2px 7px; text-align: right; }}
th {{ background: #f3f3f3; }}
.bad {{ color: #b00; }} .good {{ color: #070; }} img {{ max-width: 100%; display: block; }}
td.l {{ text-align: left; }} .note {{ color: #666; font-size: 13px; }}
</style></head><body>
<header id="headline">
<p class="run">pgchaos run {esc(str(summary["run_id"]))} · {esc(summary["started_at"])} →
{esc(summary["ended_at"])} ({summary["duration_s"]} s) · status {esc(str(summary["status"]))}
· {summary["records"]} records · times UTC</p>
<ul>{banner or "<li class='warn'>No operations recorded.</li>"}</ul>
<div class="endpoints">{endpoints}</div>
</header>
{timeline}
<h2>Endpoints</h2>
{_table(head, rows, "No operations recorded.")}
<p class="note">An unavailability window runs from the last successful operation before a
failure to the next successful operation (completion times; failed connection attempts count
as failures).</p>
<h2>Data loss (RPO)</h2>
{rpo}
<h2>Split brain</h2>
{split}
<h2>Failover layers</h2>
{
        _table(
            ["layer", "start", "end", "seconds", "detail"],
            failover,
            "No failover layers (no fault event or no logs).",
        )
    }
<h2>Unavailability windows</h2>
{
        _table(
            ["endpoint", "start", "from s", "to s", "duration", "failures", "recovered", "errors"],
            windows,
            "None: every operation succeeded.",
        )
    }
<h2>Server changes (failovers)</h2>
<p class="note">rw: a new primary (server or timeline). ro: a server answering with a new role
or timeline. The balancer going round the replicas is no change: see who answered below.</p>
{_table(["endpoint", "time", "at s", "from", "to"], changes, "None: no failover seen.")}
<h2>Who answered</h2>
{
        _table(
            ["endpoint", "server", "role", "timelines", "share", "ops", "first s", "last s"],
            shares,
            "No successful operation.",
        )
    }
<h2>Periods</h2>
<p class="note">Stretches of successful operations, split by an outage; on ro one per role
and timeline, whichever replicas answered.</p>
{_table(["endpoint", "servers", "role", "timeline", "from s", "to s", "ops"], periods, "None.")}
{anomalies}
<h2>Events</h2>
{
        _table(
            ["time", "at s", "action", "target", "scenario", "detail"],
            events,
            "No events recorded.",
            limit=100,
        )
    }
{f"<h2>Warnings</h2><ul>{warnings}</ul>" if warnings else ""}
<h2>Details</h2>
{details}
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
        for _, text in headline(summary):
            print(text)
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
            cut = ""
            if verify.get("until"):
                cut = (
                    f" before the cut-off {_clock_ms(verify['until'])}"
                    f" ({verify.get('lost_after_until') or 0} absent after it)"
                )
            print(
                f"verify: {verify['lost']} lost{cut}{_locally_only_lost(verify)}, "
                f"{verify['ghosts']} ghosts, {verify['in_doubt']} in doubt"
            )
        print(f"split brain: {'YES' if summary['split_brain'] else 'no'}")
        measured = [x for x in summary["layers"] if x["seconds"] is not None]
        if measured:
            print("layers: " + ", ".join(f"{x['layer']} {x['seconds']} s" for x in measured))
        for warning in summary["warnings"]:
            print(f"warning: {warning}")
        print(f"-> {run_dir / REPORT_FILE}")
    return 0
