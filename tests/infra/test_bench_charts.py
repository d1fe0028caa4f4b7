"""latency.png a person can read: linear ms, the legend beside the plot, locust's warm-up window left out."""

from __future__ import annotations

from infra.bench.report import LOCUST_WINDOW_S, knee_figure, runs_figure, steady_points


def _history(seconds: int, p99: float = 5.0) -> list[dict[str, float]]:
    rows = [{"t": 0.0, "p50": 0.0, "p99": 0.0, "rps": 0.0}]  # a row before the first answer
    rows += [{"t": float(t), "p50": 2.0, "p99": p99, "rps": min(300.0, 30.0 * t)} for t in range(1, seconds)]
    return rows


def test_the_warm_up_window_is_left_out() -> None:
    pts = steady_points(_history(30))
    assert pts[0]["t"] == 1 + LOCUST_WINDOW_S and all(p["rps"] == 300.0 for p in pts)
    assert steady_points(_history(5)) == []


def test_run_chart_is_linear_from_zero_with_the_legend_clear_of_the_data() -> None:
    fig = runs_figure([("run 1", {"/score": _history(40)}), ("run 2", {"/score": _history(40, 6.0)})],
                      {"floor": _history(40, 1.0)}, "/score", "t")  # fmt: skip
    latency, rate = fig.axes
    for ax in (latency, rate):
        assert ax.get_yscale() == "linear" and ax.get_ylim()[0] == 0
        anchor = ax.get_legend().get_bbox_to_anchor().transformed(ax.transAxes.inverted())
        assert anchor.x0 >= 1.0  # to the right of the axes: over no data
    assert min(min(line.get_xdata()) for line in latency.get_lines()) >= 1 + LOCUST_WINDOW_S


def test_knee_chart_is_linear() -> None:
    steps = [{"rate_asked": r, "p50_ms": 2.0, "p95_ms": 4.0, "p99_ms": 5.0 + r / 100, "server_p99_ms": 1.0,
              "rps": r} for r in (50, 100, 200)]  # fmt: skip
    fig = knee_figure({"steps": steps, "held_rate": 100}, 30.0, "p99", "t")
    assert fig.axes[0].get_yscale() == "linear" and fig.axes[0].get_ylim()[0] == 0


def test_runs_shorter_than_the_window_are_drawn_whole() -> None:
    fig = runs_figure([("run 1", {"/floor": _history(6)})], None, "/floor", "t")
    assert min(fig.axes[0].get_lines()[0].get_xdata()) == 1
