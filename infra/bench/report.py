"""The bench report: report.json (BenchReport), report.md, latency.png, and the summary the console prints."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.artifacts import atomic_write
from infra.bench.locust_stats import RouteResult

SPREAD_ROWS = (
    ("p50_ms", "client p50, ms"),
    ("p95_ms", "client p95, ms"),
    ("p99_ms", "client p99, ms"),
    ("rps", "achieved req/s"),
    ("server_p50_ms", "server p50, ms (/stats)"),
    ("server_p95_ms", "server p95, ms (/stats)"),
    ("server_p99_ms", "server p99, ms (/stats)"),
    ("server_cpu_ms_per_request", "server CPU ms / request"),
    ("locust_cpu_ms_per_request", "locust CPU ms / request"),
    ("locust_cpu_share", "locust CPU, share of one core"),
)
RUN_COLUMNS = (
    "run", "asked req/s", "users", "req/s", "failures", "p50", "p95", "p99",
    "server p50", "server p99", "server CPU ms/req", "locust CPU ms/req", "locust core",
)  # fmt: skip
CONSOLE_COLUMNS = (
    "run", "asked", "users", "req/s", "fail", "p50", "p95", "p99",
    "srv p50", "srv p99", "srv CPU ms/req", "locust CPU ms/req", "locust core",
)  # fmt: skip


@dataclass
class BenchReport:
    """What report.json holds; the keys are documented in infra/bench/harness.py."""

    system: str
    route: str
    slo_p99_ms: float
    target_p99_ms: float | None
    slo_percentile: str
    rate_asked: float
    users: int
    duration_s: int
    routes: dict[str, RouteResult]  # the median run's locust rows
    stages: dict[str, Any]  # the median run's /stats
    ratio_to_floor: dict[str, float]
    passed: bool
    verdict: str
    started_at: str
    extra: dict[str, Any] = field(default_factory=dict)
    verdict_kind: str = ""
    exit_code: int = 0
    runs_counted: int = 0
    warmup_s: int = 0
    median_run: str = ""
    spread: dict[str, dict[str, float]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    floor: dict[str, Any] | None = None
    layout: dict[str, Any] = field(default_factory=dict)
    knee: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def write_json(out: Path, report: dict[str, Any], echo: bool = True) -> None:
    """An offline benchmark's report.json: written whole (write-then-rename), and printed when `echo`."""
    text = json.dumps(report, indent=2) + "\n"
    with atomic_write(out, "w") as f:
        f.write(text)
    if echo:
        print(text, end="")


def _f(value: Any, fmt: str = "g") -> str:
    """A number for a table; NaN and None as '-'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def run_cells(row: dict[str, Any]) -> list[str]:
    return [
        row["label"], _f(row["rate_asked"]), str(row["users"]), _f(row["rps"], ".1f"), str(row["failures"]),
        _f(row["p50_ms"]), _f(row["p95_ms"]), _f(row["p99_ms"]),
        _f(row["server_p50_ms"], ".2f"), _f(row["server_p99_ms"], ".2f"),
        _f(row["server_cpu_ms_per_request"], ".3f"), _f(row["locust_cpu_ms_per_request"], ".3f"),
        _f(row["locust_cpu_share"], ".0%"),
    ]  # fmt: skip


def _table(columns: tuple[str, ...] | list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    return lines + ["| " + " | ".join(cells) + " |" for cells in rows]


def render_markdown(report: BenchReport, extra_md: str = "") -> str:
    machine = report.extra.get("machine", {})
    layout = report.layout
    caps = ", ".join(f"{k}={v}" for k, v in layout.get("thread_caps", {}).items())
    how = (
        f"{report.runs_counted} runs x {report.duration_s} s after a {report.warmup_s} s warm-up"
        if report.knee is None
        else f"knee mode: {len(report.knee['steps'])} steps x {report.duration_s} s after a {report.warmup_s} s warm-up"
    )
    lines = [
        f"# mlsd bench {report.system}",
        "",
        f"- started: {report.started_at}; {how}; {report.users} locust users (1 on /floor); "
        f"asked {report.rate_asked:g} req/s on `{report.route}`",
        f"- SLO: {report.slo_percentile} <= {report.slo_p99_ms:g} ms (client side; "
        + ("the first step, the asked rate)" if report.knee is not None else "the median of the runs)")
        + (f"; target p99 <= {report.target_p99_ms:g} ms" if report.target_p99_ms else ""),
        f"- verdict: **{report.verdict}** (exit code {report.exit_code})",
        "- machine: {} CPUs, load average {} before / {} after the bench".format(
            machine.get("cpus", "?"),
            _f(machine.get("loadavg_1m_before"), ".2f"),
            _f(machine.get("loadavg_1m_after"), ".2f"),
        ),
        f"- CPUs: {layout.get('note', '?')}"
        + (f" ({caps})" if caps else "")
        + (f"; the kernel shows the server on {layout['server_affinity_seen']}" if layout.get("server_affinity_seen") else ""),
    ]  # fmt: skip
    lines += [f"- note: {n}" for n in report.notes]
    if report.floor:
        fl = report.floor
        lines += [
            "",
            f"## Floor phase: the empty /floor route alone, {fl['rate_asked']:g} req/s, {fl['users']} users, "
            f"{fl['duration_s']} s, before the runs",
            "",
            *_table(
                ("", "requests", "req/s", "p50", "p95", "p99", "server p50", "server p99", "limit on p99"),
                [[
                    "floor", str(fl["requests"]), _f(fl["rps"], ".1f"), _f(fl["p50_ms"]), _f(fl["p95_ms"]),
                    _f(fl["p99_ms"]), _f(fl["server_p50_ms"], ".2f"), _f(fl["server_p99_ms"], ".2f"),
                    f"{fl['limit_ms']:g} ms ({fl['noise_fraction']:g} x SLO): "
                    + ("**too noisy**" if fl["too_noisy"] else "ok"),
                ]],
            ),
        ]  # fmt: skip
    if report.knee is not None:
        lines += ["", *knee_markdown(report.knee, report.slo_percentile)]
    if report.spread and report.knee is None:
        lines += [
            "",
            f"## Spread across {report.runs_counted} runs on `{report.route}` (client: locust; server: /stats)",
            "",
            "Locust rounds response times (to whole ms under 100 ms, to 10 ms under 1 s), so the client columns"
            " have that resolution; the server's own /stats percentiles are timed in the app to the microsecond"
            " and shown to 0.01 ms.",
            "",
            *_table(
                ("figure", "min", "median", "max"),
                [
                    [label, *(_f(report.spread[key][m], _fmt(key)) for m in ("min", "median", "max"))]
                    for key, label in SPREAD_ROWS
                    if key in report.spread
                ],
            ),
        ]
    if report.runs and report.knee is None:
        lines += ["", "## Runs", "", *_table(RUN_COLUMNS, [run_cells(r) for r in report.runs])]
    lines += [
        "",
        f"## Client-side latency of the median run ({report.median_run}; locust CSV, whole ms under 100 ms)",
        "",
        "| route | requests | failures | req/s | mean ms | p50 | p95 | p99 | p99.9 | max |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report.routes.items():
        lines.append(
            f"| {name} | {r.requests} | {r.failures} | {r.rps:.1f} | {r.mean_ms:.2f} | {r.p50_ms:g} | "
            f"{r.p95_ms:g} | {r.p99_ms:g} | {r.p999_ms:g} | {r.max_ms:.1f} |"
        )
    if report.ratio_to_floor:
        lines += [
            "",
            "Ratio to the empty floor route in the same run: "
            + ", ".join(f"{k} x{v:.2f}" for k, v in report.ratio_to_floor.items()),
        ]
    for route, entries in report.stages.items():
        # /stats may carry other counters beside the routes' stage timings (ctr's serving_log): tables only here
        stages = {n: s for n, s in entries.items() if isinstance(s, dict) and "p50_ms" in s}
        if not stages:
            continue
        lines += [
            "",
            f"## Server-side stages for `{route}` in the median run (ms, from /stats)",
            "",
            "| stage | count | mean | p50 | p95 | p99 | max |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, s in stages.items():
            lines.append(
                f"| {name} | {s['count']} | {s['mean_ms']:.3f} | {s['p50_ms']:.3f} | {s['p95_ms']:.3f} | "
                f"{s['p99_ms']:.3f} | {s['max_ms']:.3f} |"
            )
    if extra_md:
        lines += ["", extra_md.strip()]
    lines += ["", "![latency over time](latency.png)", ""]
    return "\n".join(lines)


def _fmt(key: str) -> str:
    if key == "locust_cpu_share":
        return ".0%"
    if "cpu" in key:
        return ".3f"
    if key == "rps":
        return ".1f"
    return ".2f" if key.startswith("server") else "g"


def knee_markdown(knee: dict[str, Any], pct: str) -> list[str]:
    lines = [
        f"## Knee: the rate stepped up until {pct} broke the SLO or achieved fell under 90% of the asked",
        "",
        *_table(
            (*RUN_COLUMNS, "held"), [[*run_cells(r), "yes" if r["held"] else r["why"]] for r in knee["steps"]]
        ),
        "",
    ]
    if knee["held_rate"] is None:
        lines.append(f"No step held: {knee['why_stopped']}. Ask a lower `--rate` to start the ramp below it.")
    else:
        lines.append(
            f"Highest rate that held: **{knee['held_rate']:g} req/s** (achieved {knee['held_achieved_rps']:.1f}, "
            f"{pct} {knee['held_slo_ms']:g} ms); stopped {knee['why_stopped']}. Per-core throughput at the SLO: "
            f"**{knee['per_core_rps_at_slo']:.1f} req/s per core** ({knee['server_cores']} server core"
            f"{'s' if knee['server_cores'] != 1 else ''}); the step factor is the resolution."
        )
    return lines


# locust's percentiles over time are over a rolling 10 s window: the first 10 s of a run show the window filling
# (a 0 -> full-rate "ramp" in req/s that is not traffic), so the time series start after it.
LOCUST_WINDOW_S = 10.0


def steady_points(
    points: list[dict[str, float]], window_s: float = LOCUST_WINDOW_S
) -> list[dict[str, float]]:
    """The history rows of a run once locust's window is full: `window_s` after its first row, answered ones."""
    answered = [p for p in points if p["p99"] > 0]  # rows written before the first answer
    if not answered:
        return []
    t0 = answered[0]["t"]
    return [p for p in answered if p["t"] - t0 >= window_s]


def _legend_outside(ax: Any) -> None:
    """The legend to the right of the plot, clear of the data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def runs_figure(
    runs: list[tuple[str, dict[str, list[dict[str, float]]]]],
    floor: dict[str, list[dict[str, float]]] | None,
    route: str,
    title: str,
) -> Any:
    """p50/p99 (linear ms) and req/s over time, one colour per counted run, locust's warm-up window left out;
    the floor phase's p99 in grey."""
    import matplotlib  # here, not at the top: matplotlib's import is slow and only the report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use (a headless backend)

    # runs shorter than the window (the harness's self-tests) are drawn whole rather than not at all
    window = LOCUST_WINDOW_S if any(steady_points(series.get(route, [])) for _, series in runs) else 0.0
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    for i, (label, series) in enumerate(runs):
        pts = steady_points(series.get(route, []), window)
        if not pts:
            continue
        t, color = [p["t"] for p in pts], f"C{i}"
        ax1.plot(t, [p["p50"] for p in pts], color=color, label=f"{label} p50")
        ax1.plot(t, [p["p99"] for p in pts], color=color, linestyle="--", label=f"{label} p99")
        ax2.plot(t, [p["rps"] for p in pts], color=color, label=label)
    if floor and (pts := steady_points(floor.get("floor", []), window)):
        ax1.plot(
            [p["t"] for p in pts],
            [p["p99"] for p in pts],
            color="grey",
            linestyle=":",
            label="floor phase p99",
        )
    ax1.set_ylabel(f"{route} latency, ms\n(locust, 10 s window)")
    ax1.set_ylim(bottom=0)
    _legend_outside(ax1)
    ax1.set_title(title)
    ax2.set_ylabel("requests/s")
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel(
        f"seconds into the run (the first {window:g} s, locust's window filling, left out)"
        if window
        else f"seconds into the run (runs shorter than locust's {LOCUST_WINDOW_S:g} s window: drawn whole)"
    )
    _legend_outside(ax2)
    fig.tight_layout()
    return fig


def plot_runs(
    runs: list[tuple[str, dict[str, list[dict[str, float]]]]],
    floor: dict[str, list[dict[str, float]]] | None,
    route: str,
    out: Path,
    title: str,
) -> None:
    """latency.png of a bench: runs_figure, saved."""
    import matplotlib.pyplot as plt  # runs_figure has chosen the headless backend

    fig = runs_figure(runs, floor, route, title)
    fig.savefig(out, dpi=110, bbox_inches="tight")  # the legends beside the plots included
    plt.close(fig)


def knee_figure(knee: dict[str, Any], slo_ms: float, pct: str, title: str) -> Any:
    """Latency percentiles (linear ms) and achieved rate against the asked rate, with the SLO line: the knee."""
    import matplotlib  # here, not at the top: matplotlib's import is slow and only the report needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after matplotlib.use (a headless backend)

    steps = knee["steps"]
    asked = [s["rate_asked"] for s in steps]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        ax1.plot(asked, [s[key] for s in steps], marker="o", label=f"client {key.removesuffix('_ms')}")
    ax1.plot(asked, [s["server_p99_ms"] for s in steps], marker=".", linestyle=":", label="server p99")
    ax1.axhline(slo_ms, color="red", linewidth=1, label=f"SLO ({pct})")
    if knee["held_rate"] is not None:
        for ax in (ax1, ax2):
            ax.axvline(knee["held_rate"], color="green", linewidth=1, linestyle="--")
    ax1.set_ylim(bottom=0)
    ax1.set_ylabel("latency, ms")
    _legend_outside(ax1)
    ax1.set_title(title)
    ax2.plot(asked, asked, color="grey", linestyle=":", label="asked")
    ax2.plot(asked, [s["rps"] for s in steps], marker="o", label="achieved")
    ax2.set_xlabel("asked requests/s")
    ax2.set_ylabel("requests/s")
    _legend_outside(ax2)
    fig.tight_layout()
    return fig


def plot_knee(knee: dict[str, Any], slo_ms: float, pct: str, out: Path, title: str) -> None:
    """latency.png of a `--ramp` bench: knee_figure, saved."""
    import matplotlib.pyplot as plt  # knee_figure has chosen the headless backend

    fig = knee_figure(knee, slo_ms, pct, title)
    fig.savefig(out, dpi=110, bbox_inches="tight")  # the legends beside the plots included
    plt.close(fig)


def print_summary(console: Any, report: BenchReport, out: Path) -> None:
    """The short table a finished bench prints: one row per run (or ramp step), then the verdict."""
    from rich.table import Table  # here, not at the top: rich's table only for the console summary

    rows = report.knee["steps"] if report.knee is not None else report.runs
    table = Table(
        title=f"mlsd bench {report.system}: {report.route} (client ms from locust, server ms from /stats)"
    )
    for col in RUN_COLUMNS:
        table.add_column(col, justify="left" if col == "run" else "right")
    for row in rows:
        table.add_row(*run_cells(row))
    console.print(table)
    if report.floor:
        fl = report.floor
        console.print(
            f"floor phase: p50 {_f(fl['p50_ms'])}, p95 {_f(fl['p95_ms'])}, p99 {_f(fl['p99_ms'])} ms at "
            f"{fl['rate_asked']:g} req/s (limit {fl['limit_ms']:g} ms)"
        )
    if report.knee is not None and report.knee["held_rate"] is not None:
        k = report.knee
        console.print(
            f"knee: held {k['held_rate']:g} req/s ({k['per_core_rps_at_slo']:.1f} req/s per server core); "
            f"stopped {k['why_stopped']}"
        )
    console.print(f"CPUs: {report.layout.get('note', '?')}")
    style = {"PASS": "green", "FAIL": "red"}.get(report.verdict_kind, "yellow")
    console.print(f"[{style}]{report.verdict}[/] (exit {report.exit_code}); report: {out / 'report.md'}")
