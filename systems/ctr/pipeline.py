"""ctr, top to bottom: a marketplace with a known click model → Feast → LR and DeepFM → held-out quality;
then the tools that put the trained models to work (serve, A/B, drift, skew, load test).

Build steps (`mlsd ctr all` runs them in order; each writes to <MLSD_DATA_DIR>/ctr/<scale>/):
  data   simulate the impression log, fill the Feast repo, point-in-time training rows
  train  hashed LR and DeepFM on the first days, scored on the last three; ONNX; MLflow (LR champion)
  eval   both models retrained over seeds: mean ± std, and the reliability plot
Tools (`in_all=False`): serve, experiment, monitor, skew, bench. Any step first runs what it needs that is
missing (`infra.steps`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pandas as pd

from infra.artifacts import Artifacts
from infra.bench.flags import bench_kwargs
from infra.bench.harness import run_bench
from infra.console import console, markdown_table, print_rows, print_values
from infra.features import check_online_store
from infra.registry import Registry
from infra.serving import run_server
from infra.steps import Step
from systems.ctr import realdata
from systems.ctr.config import (
    BENCH,
    RESULTS,
    AllConfig,
    BenchConfig,
    CtrSettings,
    DataConfig,
    EvalConfig,
    ExperimentConfig,
    MonitorConfig,
    ServeConfig,
    SkewConfig,
    TrainConfig,
)
from systems.ctr.data import MarketConfig, activity_snapshots, load_log, load_market, load_rows, write_log
from systems.ctr.evaluate import bayes_quality, held_out_quality, over_seeds
from systems.ctr.experiment import challenger_won, promote, registered_scorers, run_scenarios
from systems.ctr.features import build_repo, training_rows
from systems.ctr.monitor import shift_table, signal_scorecard, windowed_report
from systems.ctr.serve import build_app
from systems.ctr.skew import CASES, ad_table, last_day_sample, run_case
from systems.ctr.train import ALIASES, MODEL_NAME, FitConfig, fit_rows, register, save_model, split

QUALITY_COLUMNS = ("model", "AUC", "gap to Bayes", "log loss", "NE", "calibration")


def quality_rows(results: dict[str, dict]) -> list[list]:
    """train_metrics.json as table rows: the Bayes ceiling, then each model and its gap to it."""
    bayes = results["bayes"]
    return [[name, r["auc"], bayes["auc"] - r["auc"], r["log_loss"], r["ne"], r["calibration"]]
            for name in ("bayes", "lr", "deepfm") if (r := results.get(name))]  # fmt: skip


def lift_cell(ab: dict) -> str:
    """An A/B's relative lift with its 95% interval: "+10.28% [+6.88%, +13.67%]"."""
    return f"{ab['lift']:+.2%} [{ab['ci'][0]:+.2%}, {ab['ci'][1]:+.2%}]"


# ------------------------------------------------------------------------------------------------ build steps
def data(cfg: DataConfig, art: Artifacts) -> None:
    """Simulate the impression log, fill the Feast repo, write the point-in-time training rows."""
    if cfg.data:  # --data criteo:<path>: the public log instead (realdata.py)
        return realdata.data(cfg, art)
    config = MarketConfig.for_scale(cfg.scale, seed=cfg.seed, **cfg.market_overrides())
    with console.status("simulating impressions, filling Feast, point-in-time join"):
        market, log = write_log(config, art)
        repo = build_repo(market, art.dir("features"))
        training_rows(repo, log).to_parquet(art.path("rows.parquet"))
    print_values(
        "ctr data", {"impressions": len(log), "CTR": float(log["click"].mean()), "days": config.n_days}
    )


def train(cfg: TrainConfig, art: Artifacts) -> None:
    """Fit hashed LR and DeepFM on the first days, score them on the last three, export ONNX, register."""
    if cfg.data:
        return realdata.train(cfg, art)
    train_rows, test_rows = split(load_rows(art))
    ceiling = bayes_quality(test_rows, load_log(art, columns=["request_id", "p_true"]))
    results: dict[str, dict] = {"bayes": ceiling.as_dict()}
    registry = Registry()
    for kind, alias in ALIASES.items():  # LR (the incumbent), then DeepFM (the challenger)
        config = FitConfig(kind=kind, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed)
        fitted = fit_rows(config, train_rows, progress=True)
        q = held_out_quality(fitted, test_rows)
        folder = save_model(fitted, art.dir(f"models/{kind}"))
        ref = register(registry, fitted, folder, {**q.as_dict(), "auc_gap_to_bayes": ceiling.auc - q.auc})
        results[kind] = {**q.as_dict(), "train_s": fitted.seconds, "losses": fitted.losses,
                         "version": ref.version, "alias": alias}  # fmt: skip
    art.path("train_metrics.json").write_text(json.dumps(results, indent=2))
    print_rows("ctr train (held-out last 3 days)", QUALITY_COLUMNS, quality_rows(results))


def evaluate(cfg: EvalConfig, art: Artifacts) -> None:
    """LR and DeepFM retrained over seeds: mean ± std of each metric; the reliability plot."""
    if cfg.data:
        return realdata.evaluate(cfg, art)
    train_rows, test_rows = split(load_rows(art))
    ceiling = bayes_quality(test_rows, load_log(art, columns=["request_id", "p_true"]))
    out = art.dir("eval")
    table = over_seeds(train_rows, test_rows, ceiling, cfg.seeds, out)
    print_rows(f"ctr eval: held-out last 3 days, mean ± std over {cfg.seeds} seeds",
               [*QUALITY_COLUMNS, "calibration w/o recal."], table)  # fmt: skip
    written = f"{out / 'eval.json'}, {out / 'reliability.png'}"
    if cfg.publish:  # the committed copy DESIGN.md quotes
        cfg.out.mkdir(parents=True, exist_ok=True)
        for name in ("eval.json", "reliability.png"):
            shutil.copy2(out / name, cfg.out / name)
        written += f" (copied to {cfg.out})"
    console.print(f"written: {written}")


# ------------------------------------------------------------------------------------------------ tools
def serve(cfg: ServeConfig, art: Artifacts) -> None:
    """Serve POST /predict with uvicorn on the model behind --alias."""
    run_server(build_app(CtrSettings(alias=cfg.alias), art), cfg.host, cfg.port)


def experiment(cfg: ExperimentConfig, art: Artifacts) -> None:
    """Simulated online A/B tests of the registered models against the known click model, with diagnostics."""
    models = registered_scorers(art)
    with console.status("simulating A/B tests against the known click model"):
        results = run_scenarios(load_market(art), models["deepfm"].scorer, models["lr"].scorer, cfg.scenario_names(),
                                requests_per_day=cfg.requests_per_day, days=cfg.days)  # fmt: skip
    art.path("experiments.json").write_text(json.dumps(results, indent=2, default=float))
    rows = [[r["scenario"], r["auc_control"], r["auc_treatment"], lift_cell(r["ab"]), f"{r['ab']['true_lift']:+.2%}",
             f"{min(r['ab']['sequential_p']):.3g}", r["ab"]["srm_p"], f"{r['ab']['variance_reduction']:.0%}"]
            for r in results]  # fmt: skip
    print_rows("ctr experiment (per-user A/B, CUPED; lift of treatment over control)",
               ["scenario", "AUC ctl", "AUC trt", "online lift [95% CI]", "true lift", "mSPRT p", "SRM p",
                "CUPED var cut"], rows)  # fmt: skip
    for r in results:
        if r["diagnostic"]:
            mark = "[green]found[/]" if r["flagged"] else "[red]missed[/]"
            console.print(f"  {r['scenario']}: {mark} — {r['diagnostic']}")
    if cfg.promote and any(r["scenario"] == "deepfm-vs-lr" for r in results):
        if challenger_won(results):
            promote(models["deepfm"].version)
            console.print(f"challenger won: {MODEL_NAME} v{models['deepfm'].version} is now champion")
        else:
            console.print("challenger did not win: champion unchanged")


def monitor(cfg: MonitorConfig, art: Artifacts) -> None:
    """Drift signals on injected shifts, set beside the real damage; a windowed HTML report."""
    deepfm = registered_scorers(art)["deepfm"].scorer
    market = load_market(art)
    rows = shift_table(market, deepfm, n=cfg.rows)
    print_rows("ctr monitor: injected shifts (harm = gap to Bayes grew)",
               ["shift", "drifted features", "pred PSI", "CBPE AUC drop", "AUC drop", "AUC gap rise", "regret rise",
                "calibration", "harmed", "alerts"],
               [[r["shift"], ",".join(r["features_drifted"]) or "-", r["prediction_psi"], r["cbpe_auc_drop"],
                 r["auc_drop"], r["auc_gap_rise"], r["regret_rise"], r["calibration"], r["harmed"],
                 ",".join(r["alerts"]) or "-"] for r in rows])  # fmt: skip
    card = signal_scorecard(rows)
    print_rows("which signals track real degradation", list(card.columns), card.values.tolist())
    json_path, html_path, _ = windowed_report(market, deepfm, cfg.out, n=min(cfg.rows, 20_000))
    (cfg.out / "shifts.json").write_text(json.dumps(rows, indent=2, default=float))
    console.print(f"windowed report: {html_path} and {json_path}")


def skew(cfg: SkewConfig, art: Artifacts) -> None:
    """Train/serving skew: the last day's impressions replayed through the serving path, joined to training rows."""
    market = load_market(art)
    sample = last_day_sample(load_rows(art), market, cfg.rows)
    snapshots, ads = activity_snapshots(market), ad_table(market.ads)
    reports = []
    for case in list(CASES) if cfg.case == "all" else [cfg.case]:
        with console.status(f"replaying {len(sample)} requests through the serving path: {case}"):
            reports.append(run_case(case, sample, snapshots, ads, art.dir("skew")))
    report = pd.concat(reports, ignore_index=True)
    art.path("skew.json").write_text(report.to_json(orient="records", indent=2))
    shown = report[(report["mismatch_rate"] > 0) | (report["feature"] == "user_activity")]
    print_rows("ctr skew: serving log joined to training rows by (request_id, ad_id)",
               ["case", "feature", "joined rows", "mismatch rate", "PSI", "JS"],
               [[r.case, r.feature, r.joined_rows, r.mismatch_rate, r.psi, r.jensen_shannon] for r in shown.itertuples()])  # fmt: skip


def bench(cfg: BenchConfig, art: Artifacts) -> int:
    """Offline quality, the A/B that promotes DeepFM, then load-test /predict on the champion (with --data
    criteo: POST /score_rows on the Criteo DeepFM, its test rows replayed)."""
    if cfg.data:
        return bench_criteo(cfg, art)
    results = json.loads(art.require("train_metrics.json", "train").read_text())
    print_rows("offline quality (held-out last 3 days)", QUALITY_COLUMNS, quality_rows(results))
    gap = results["bayes"]["auc"] - results["deepfm"]["auc"]
    calib = results["deepfm"]["calibration"]
    quality_ok = gap <= 0.01 and abs(calib - 1) <= 0.02
    experiment(ExperimentConfig(scale=cfg.scale, seed=cfg.seed, promote=True), art)
    experiments = json.loads(art.path("experiments.json").read_text())
    ab_rows = [[r["scenario"], r["auc_control"], r["auc_treatment"], lift_cell(r["ab"]), f"{r['ab']['true_lift']:+.2%}",
                f"{min(r['ab']['sequential_p']):.3g}", r["diagnostic"] or "-"] for r in experiments]  # fmt: skip
    report_md = "\n".join([
        markdown_table("Offline quality (held-out last 3 days; `mlsd ctr train`)", QUALITY_COLUMNS, quality_rows(results)),
        f"Targets: DeepFM AUC within 0.01 of Bayes (gap {gap:.4f}), calibration within 2% ({calib:.3f}): "
        f"**{'met' if quality_ok else 'MISSED'}**",
        "",
        markdown_table("Simulated online A/B (`mlsd ctr experiment`; per-user Welch + CUPED, mSPRT read daily)",
                       ["scenario", "offline AUC control", "offline AUC treatment", "online lift [95% CI]", "true lift",
                        "mSPRT p", "diagnostic"], ab_rows),
    ])  # fmt: skip
    # the server is a child process: it gets the champion and this scale through its environment
    spec = replace(
        BENCH, env={**BENCH.env, **CtrSettings(alias="champion").as_env(), "MLSD_SCALE": cfg.scale}
    )
    code = run_bench("ctr", spec, **bench_kwargs(cfg), extra={"offline": results, "experiments": experiments},
                     extra_md=report_md)  # fmt: skip
    return code if quality_ok else 1  # a model that misses its quality bar fails, however fast it serves


def bench_criteo(cfg: BenchConfig, art: Artifacts) -> int:
    """`bench --data criteo:<path>`: the Criteo rows carry no user or ad ids, so the load is the row-level route
    (realdata.build_app) with 50 test rows per request; the report lands beside the simulator's, never over it."""
    art.require("models/deepfm/model.onnx", "train --data criteo:<path>")
    stream = art.path(realdata.STREAM)
    stream.write_text(json.dumps(realdata.bench_requests(art)))
    results = json.loads(art.require("train_metrics.json", "train").read_text())
    spec = replace(BENCH, app="systems.ctr.realdata:build_app", locustfile="benchmarks/ctr/locustfile_criteo.py",
                   route="score_rows", env={**BENCH.env, "MLSD_CTR_STREAM": str(stream)})  # fmt: skip
    out = cfg.out or RESULTS / "latest-criteo"
    extra = {"data": cfg.data, "offline": {k: v for k, v in results.items() if k != "source"},
             "source": results.get("source")}  # fmt: skip
    return run_bench("ctr", spec, **{**bench_kwargs(cfg), "out_dir": out}, extra=extra)


ALL_CONFIG = AllConfig
DATA = ("market.json", "log.parquet", "features/repo", "rows.parquet")
MODELS = (
    "market.json",
    "features/repo",
    "train_metrics.json",
)  # what a step that loads the trained models reads
STEPS = [
    Step("data", data, DataConfig, makes=DATA, help=data.__doc__ or ""),
    Step("train", train, TrainConfig, needs=("rows.parquet", "log.parquet"),
         makes=("train_metrics.json", "models/lr/model.onnx", "models/deepfm/model.onnx"), help=train.__doc__ or ""),
    Step("eval", evaluate, EvalConfig, needs=("rows.parquet", "log.parquet"), makes=("eval/eval.json",),
         help=evaluate.__doc__ or ""),
    # the ad catalogue is read from the online store at start: a store that is down is one line and exit 1
    Step("serve", serve, ServeConfig, needs=MODELS, in_all=False, help=serve.__doc__ or "",
         check=lambda cfg: check_online_store()),
    Step("experiment", experiment, ExperimentConfig, needs=MODELS, makes=("experiments.json",), in_all=False,
         help=experiment.__doc__ or ""),
    Step("monitor", monitor, MonitorConfig, needs=MODELS, in_all=False, help=monitor.__doc__ or ""),
    Step("skew", skew, SkewConfig, needs=("market.json", "rows.parquet"), makes=("skew.json",), in_all=False,
         help=skew.__doc__ or ""),
    Step("bench", bench, BenchConfig, needs=MODELS, in_all=False, help=bench.__doc__ or ""),
]  # fmt: skip
