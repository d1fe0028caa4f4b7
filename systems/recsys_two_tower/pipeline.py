"""recsys, top to bottom: a generated feed -> Feast features -> two towers -> a FAISS index -> a ranker behind it
-> offline metrics -> the cross-model experiment -> /recommend under load.

Each step reads what the steps before it wrote under `<MLSD_DATA_DIR>/recsys/<scale>/` and writes its own;
`mlsd recsys <step>` first runs whatever it needs that is missing, `mlsd recsys all` runs every build step
(data ... rank, eval, cross). Flags: `mlsd recsys <step> --help`.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from infra.artifacts import Artifacts
from infra.bench.flags import bench_kwargs
from infra.bench.harness import RESULTS_DIR, run_bench
from infra.config import get_settings
from infra.console import console, markdown_table, print_rows, print_values
from infra.resources import peak_rss_gb
from infra.serving import run_server
from infra.steps import Step
from infra.system import BenchSpec
from systems.recsys_two_tower.capacity import capacity_rows, measured_inputs
from systems.recsys_two_tower.config import (
    BenchConfig,
    BuildConfig,
    CapacityConfig,
    CrossConfig,
    DataConfig,
    EvalConfig,
    FeaturesConfig,
    FeedConfig,
    IndexConfig,
    RankConfig,
    ServeConfig,
    SweepConfig,
    TrainConfig,
    TuneConfig,
    feed_config,
)
from systems.recsys_two_tower.cross import run_cross_experiment
from systems.recsys_two_tower.data import (
    Feed,
    generate_stream,
    holdout_users,
    load,
    movielens_feed,
    save,
    temporal_split,
)
from systems.recsys_two_tower.evaluate import report_markdown, run_eval
from systems.recsys_two_tower.features.repo import (
    RecsysFeatures,
    build_features_partitioned,
    check_materialized,
    open_features,
)
from systems.recsys_two_tower.index import (
    INDEX_FAMILIES,
    SWEEP_COLUMNS,
    catalog_frame,
    run_index,
    sweep_rows,
    user_vectors,
)
from systems.recsys_two_tower.model import TwoTower
from systems.recsys_two_tower.provenance import read_run_id, write_run_id
from systems.recsys_two_tower.public_protocol import run_public_eval
from systems.recsys_two_tower.rank import run_rank
from systems.recsys_two_tower.serve import build_app
from systems.recsys_two_tower.sweep import run_sweep
from systems.recsys_two_tower.train import load_model, load_training_set, run_train
from systems.recsys_two_tower.tune import run_final, run_tune, tuned_flags

BENCH = BenchSpec(
    app="systems.recsys_two_tower.serve:build_app",
    locustfile="benchmarks/recsys/locustfile.py",
    route="recommend",
    slo_p99_ms=50.0,
    target_p99_ms=15.0,
    rate=200.0,
    users=4,
    duration_s=60,
    floor_rate=20.0,
)


def _feed(art: Artifacts) -> Feed:
    art.require("events.parquet", "data")
    return load(art.root)


def _features(art: Artifacts) -> RecsysFeatures:
    art.require("feature_repo/registry.db", "features")
    return open_features(art.root, art.variant)


def _model(art: Artifacts) -> TwoTower:
    art.require("model/two_tower.pt", "train")
    return load_model(art.root / "model")


def _run_id(art: Artifacts) -> str:
    """The training run the model under model/ came from."""
    return str(read_run_id(art.require("model/run.json", "train")))


def _json(art: Artifacts, name: str, made_by: str) -> dict:
    return json.loads(art.require(name, made_by).read_text())


# ------------------------------------------------------------------------------------------ build steps
def data(cfg: DataConfig, art: Artifacts) -> None:
    """Generate the feed of --scale, with its known truth (the oracle), and split it in time (or read --data)."""
    if cfg.data:
        return real_data(cfg, art)
    feed_cfg = feed_config(cfg.scale, cfg.seed)
    t0 = time.perf_counter()
    with console.status(f"generating the {cfg.scale} feed"):
        feed, events = generate_stream(feed_cfg)  # the events in chunks: never the whole feed in memory
        n_events, past = save(feed, art.root, events)
    print_values(f"data ({cfg.scale}) in {time.perf_counter() - t0:.1f} s", {
        "users": feed_cfg.n_users, "videos": feed_cfg.n_videos, "watch events": n_events,
        "train events (past)": past, "test events (future)": n_events - past,
        "peak RSS (GB)": f"{peak_rss_gb():.2f}",
    })  # fmt: skip


def real_data(cfg: DataConfig, art: Artifacts) -> None:
    """--data movielens:<folder>: the ratings as a feed of the same schema, split by --protocol."""
    kind, _, path = cfg.data.partition(":")
    t0 = time.perf_counter()
    with console.status(f"reading {path}"):
        feed = movielens_feed(Path(path), cfg.protocol, cfg.seed)
        save(feed, art.root)
    past, future = temporal_split(feed.events, feed.split_ts)
    source = {
        "kind": kind,
        "path": str(Path(path).resolve()),
        "protocol": cfg.protocol,
        "ratings": len(feed.events),
    }
    art.path("source.json").write_text(json.dumps(source, indent=2))
    print_values(f"data ({kind}, {cfg.protocol} split) in {time.perf_counter() - t0:.1f} s -> {art.root}", {
        "users": feed.config.n_users, "items": feed.config.n_videos, "ratings": len(feed.events),
        "train ratings": len(past), "test ratings": len(future),
    })  # fmt: skip


def features(cfg: FeaturesConfig, art: Artifacts) -> None:
    """Daily snapshots -> Feast offline files -> `feast apply` -> user_stats materialised online, the feed read in
    partitions (features/partitioned.py): memory bounded by a partition, not by the feed."""
    art.require("events.parquet", "data")
    t0 = time.perf_counter()
    with console.status("features: partitioning the feed") as status:
        counts = build_features_partitioned(art.root, art.variant, engine=cfg.engine,
                                            progress=lambda what: status.update(f"features: {what}"))  # fmt: skip
    print_values(f"features ({get_settings().online_store} online store) in {time.perf_counter() - t0:.1f} s",
                 {**counts, "peak RSS (GB)": f"{peak_rss_gb():.2f}"})  # fmt: skip


def train(cfg: TrainConfig, art: Artifacts) -> None:
    """Point-in-time training join -> two towers -> ONNX user tower -> MLflow (alias champion)."""
    if cfg.data and cfg.tuned and (flags := tuned_flags(art.root)):
        cfg = replace(cfg, **flags)
        console.print(
            f"train: the settings `mlsd recsys tune` chose on validation ({art.root / 'tuned.json'}): {flags}"
        )
    result = run_train(_feed(art), _features(art), art.root, cfg)
    write_run_id(art.dir("model"), result["run_id"])  # what index and rank record as their origin
    print_values("train", {k: v for k, v in result.items() if k != "losses"}
                 | {"epoch losses": " ".join(f"{x:.3f}" for x in result["losses"])})  # fmt: skip


def tune(cfg: TuneConfig, art: Artifacts) -> None:
    """--data only: an ablation on a validation split carved from the training ratings -> tuned.json (what train
    uses); --final trains the choice with 3 seeds and reads the test split once."""
    feed = _feed(art)
    result = run_tune(
        feed, art.root, art.variant, cfg, cfg.protocol, cfg.max_epochs, cfg.seeds, cfg.eval_users
    )
    v = result["validation"]
    rows = [(name, "-", *row.values()) for name, row in result["baselines"].items()]
    rows += [
        (r["name"], " ".join(map(str, r["epochs"])), *(r[m] for m in TUNE_METRICS))
        for r in [*result["ablation"], *result["together"]]
    ]
    c = result["chosen"]
    rows.append((f"chosen, {c['seeds']} seeds (mean ± std)", " ".join(map(str, c["epochs"])),
                 *(f"{c[m]:.4f} ± {c[m + '_std']:.4f}" for m in TUNE_METRICS)))  # fmt: skip
    print_rows(f"validation ({cfg.protocol} split of the {v['train_ratings'] + v['held_out_ratings']:,} training "
               f"ratings; {v['users']} users; the test split is not read) -> {art.root / 'tuned.json'}",
               ("model", "best epoch", *TUNE_METRICS), rows)  # fmt: skip
    console.print(f"chosen: {result['flags']}")
    if not cfg.final:
        return
    final = run_final(feed, _features(art), art.root, cfg, cfg.seeds, cfg.eval_users)
    rows = [(name, *row.values()) for name, row in final["baselines"].items()]
    rows.append((f"two-tower, tuned ({final['seeds']} seeds, mean ± std)",
                 *(f"{v['mean']:.4f} ± {v['std']:.4f}" for v in final["two_tower"].values())))  # fmt: skip
    print_rows(f"test ({cfg.protocol} split, read once; {final['users']} users) -> {art.root / 'final.json'}",
               ("model", *TUNE_METRICS), rows)  # fmt: skip


TUNE_METRICS = ("precision@10", "recall@10", "ndcg@10", "map@10")


def index(cfg: IndexConfig, art: Artifacts) -> None:
    """Embed the catalog, sweep IVF-Flat (at 100,000 videos or more also IVF-PQ fast-scan + refine, HNSW) against
    exact search, keep the cheapest with recall@100 >= 0.95."""
    feed, feats, model = _feed(art), _features(art), _model(art)
    users, _, _ = holdout_users(feed, cfg.eval_users, cfg.seed)  # the queries: eval's users, as of the split
    seen = np.load(art.require("model/seen_videos.npy", "train"))
    queries = user_vectors(model, feats, users, feed.split_ts - 1, seen)
    big = feed.config.n_videos >= 100_000
    nlists = cfg.nlist or ((2048, 4096) if big else (64, 256))
    families = cfg.families or (INDEX_FAMILIES if big else ("ivf_flat",))
    summary = run_index(model, feed, feats, art.root, queries, nlists, engine=cfg.engine, families=families)
    write_run_id(art.dir("index"), _run_id(art))
    _print_sweep(summary)


def rank(cfg: RankConfig, art: Artifacts) -> None:
    """Train the ranker behind the ANN (user x video features, listwise loss on the last training days) -> ONNX."""
    art.require("index/serving.faiss", "index")
    with console.status("ranker: candidates from the ANN, features, training, ONNX export"):
        meta = run_rank(_model(art), _feed(art), _features(art), art.root, _run_id(art), cfg.rank_users,
                        cfg.rank_epochs, cfg.seed)  # fmt: skip
    print_values("rank", {k: v for k, v in meta.items() if k != "features"})


def evaluate(cfg: EvalConfig, art: Artifacts) -> None:
    """Recall@K and NDCG@K on the future split: random, most-popular, two-tower exact and ANN, ANN + ranker
    (+ policy), oracle."""
    art.require("index/serving.faiss", "index")
    if art.exists("source.json"):  # real data: the public tables' metrics, the baselines beside, no oracle
        result = run_public_eval(_model(art), _feed(art), _features(art), art.root, cfg.eval_users, cfg.seed)
        src = result["source"]
        print_rows(f"{src['kind']} ({src['protocol']} split): top-10 of items not rated in training, {result['users']} users",
                   ("model", "precision@10", "recall@10", "ndcg@10", "map@10"),
                   [(name, *row.values()) for name, row in result["table"].items()])  # fmt: skip
        return
    art.require("rank/ranker.onnx", "rank")
    result = run_eval(_model(art), _feed(art), _features(art), art.root, cfg.eval_users, cfg.seed)
    cols = list(next(iter(result["table"].values())))
    print_rows(f"offline quality on the future split ({result['users']} users; new videos only)",
               ("model", *cols), [(name, *row.values()) for name, row in result["table"].items()])  # fmt: skip


def cross(cfg: CrossConfig, art: Artifacts) -> None:
    """The first-stage question measured: a cross model over the full catalog, or re-ranking the ANN's top 200."""
    feed, feats = _feed(art), _features(art)
    training_set = load_training_set(art.require("training_set.npz", "train"))
    art.require("index/serving.faiss", "index")
    with console.status("cross model: train, re-rank ANN top 200, score the full catalog"):
        catalog = catalog_frame(feed, feats, feed.split_ts)
        result = run_cross_experiment(_model(art), feed, feats, art.root, training_set, catalog,
                                      cfg.full_users, cfg.rerank_users, cfg.cross_steps, cfg.seed)  # fmt: skip
    art.path("cross.json").write_text(json.dumps(result, indent=2))
    cols = ("recall@10", "ndcg@10", "recall@100", "ms_per_request")
    print_rows(f"two-tower vs cross model over {result['catalog']:,} videos ({result['users']} users)",
               ("first stage", *cols[:3], "ms / request"),
               [(n, *(r[c] for c in cols)) for n, r in result["table"].items()])  # fmt: skip


# ------------------------------------------------------------------------------------------ tools
def sweep(cfg: SweepConfig, art: Artifacts) -> None:
    """The catalog curve: IVF-Flat/SQ8/PQ(+refine)/HNSW recall, latency, memory per scale, the choice, shards."""
    out = Path(cfg.out) if cfg.out else RESULTS_DIR / "recsys" / "sweep"
    scales = list(cfg.scales or (cfg.scale,))
    report = run_sweep(scales, cfg.queries, cfg.hnsw_max_videos, out, cfg.seed, cfg.families, cfg.single_queries,
                       {s: cfg.videos for s in scales} if cfg.videos else None, log=console.print,
                       max_nlist=cfg.max_nlist, nprobes=cfg.nprobes, note=cfg.note)  # fmt: skip
    print_rows(f"catalog curve -> {out}/report.md", ("scale", "videos", "chosen", "why"),
               [(s["scale"], s["n"], s["chosen"]["index"] + " " + s["chosen"]["param"] if s["chosen"] else "-",
                 s["why"]) for s in report["scales"]])  # fmt: skip


def capacity(cfg: CapacityConfig, art: Artifacts) -> None:
    """The 100M-user plan from measured curves (sweep, bench knee, online-store bytes); each figure names its report."""
    print_rows("capacity (`mlsd recsys capacity`)", ("quantity", "value", "from"),
               capacity_rows(cfg, measured_inputs(RESULTS_DIR / "recsys")))  # fmt: skip


def serve(cfg: ServeConfig, art: Artifacts) -> None:
    """/recommend on --host:--port, on this scale's model, index and features."""
    run_server(build_app(cfg.variant()), cfg.host, cfg.port)


def bench(cfg: BenchConfig, art: Artifacts) -> int:
    """Load-test /recommend (locust, 200 req/s for 60 s) and write the report with the offline tables."""
    # the server would refuse an online store the features never went into (503): say so before starting one
    flags = f"--scale {cfg.scale}" + (f" --data {cfg.data}" if cfg.data else "")  # of the features command
    check_materialized(art.root, get_settings().online_store, flags)
    if cfg.data:
        return bench_real_data(cfg, art)
    evaluation, sweep_summary = _json(art, "eval.json", "eval"), _json(art, "index/sweep.json", "index")
    cross_result, model_meta = _json(art, "cross.json", "cross"), _json(art, "model/config.json", "train")
    feed_cfg = FeedConfig(**_json(art, "config.json", "data"))
    # the server is a subprocess: it learns its scale, and locust the users it may ask for, from the environment
    spec = replace(BENCH, env={"MLSD_RECSYS_SCALE": cfg.scale, "MLSD_RECSYS_USERS": str(feed_cfg.n_users)})
    store = get_settings().online_store  # the server reads the same setting: MLSD_ONLINE_STORE
    extra = {"scale": cfg.scale, "online_store": store, "offline": evaluation, "cross": cross_result,
             "ann": sweep_summary["chosen"], "n_videos": sweep_summary["n_videos"],
             "train": model_meta.get("metrics", {})}  # fmt: skip
    md = f"Online store (Feast): {store}\n\n" + report_markdown(
        cfg.scale, evaluation, sweep_summary, cross_result
    )
    return run_bench("recsys", spec, **bench_kwargs(cfg), extra=extra, extra_md=md)


def bench_real_data(cfg: BenchConfig, art: Artifacts) -> int:
    """`bench --data movielens:<folder>`: /recommend on the dataset's model, asked for the dataset's test users."""
    evaluation, sweep_summary = _json(art, "eval.json", "eval"), _json(art, "index/sweep.json", "index")
    feed = _feed(art)
    _, future = temporal_split(feed.events, feed.split_ts)
    users = art.path("bench_users.json")  # the users with held-out ratings: the ones the offline table scores
    users.write_text(json.dumps(np.unique(future["user_id"].to_numpy()).tolist()))
    env = {"MLSD_RECSYS_VARIANT": art.root.name, "MLSD_RECSYS_USERS_FILE": str(users)}
    spec = replace(BENCH, env=env)
    extra = {"data": cfg.data, "protocol": cfg.protocol, "offline": evaluation, "ann": sweep_summary["chosen"],
             "n_videos": sweep_summary["n_videos"]}  # fmt: skip
    src = evaluation["source"]
    md = markdown_table(f"Offline: {src['kind']} ({src['protocol']} split), top-10 of items not rated in training",
                        ("model", "precision@10", "recall@10", "ndcg@10", "map@10"),
                        [(name, *row.values()) for name, row in evaluation["table"].items()])  # fmt: skip
    # its own report folder: a real-data bench never overwrites the simulator's
    out = cfg.out or RESULTS_DIR / "recsys" / f"latest-{src['kind']}"
    return run_bench("recsys", spec, **{**bench_kwargs(cfg), "out_dir": out}, extra=extra, extra_md=md)


def _print_sweep(summary: dict) -> None:
    print_rows(f"ANN sweep over {summary['n_videos']:,} videos (recall@100 vs exact; ms per query)",
               SWEEP_COLUMNS, sweep_rows(summary))  # fmt: skip
    if "query_best_score_median" in summary:
        console.print(f"queries vs catalog: a user's best video scores {summary['query_best_score_median']:.3f} "
                      f"(median), a video's 100th-nearest video {summary['video_100th_neighbour_score_median']:.3f}")  # fmt: skip


# ------------------------------------------------------------------------------------------ the steps, in order
# fmt: off
FEED = ("config.json", "videos.parquet", "users.parquet", "events.parquet", "user_pref.npy", "cluster_norm.npy",
        "duration_pref.npy")
FEATURES = ("offline/user_stats.parquet", "offline/video_content.parquet", "offline/video_popularity.parquet",
            "feature_repo/registry.db", "trending.npy")
MODEL = ("model/two_tower.pt", "model/config.json", "model/user_tower.onnx", "model/seen_videos.npy", "model/run.json")
INDEX = ("index/catalog_emb.npy", "index/serving.faiss", "index/sweep.json", "index/run.json")
RANK = ("rank/ranker.onnx", "rank/catalog.npz", "rank/meta.json")

STEPS: list[Step] = [
    Step("data", data, DataConfig, makes=FEED, help=data.__doc__),
    Step("features", features, FeaturesConfig, needs=FEED, makes=FEATURES, help=features.__doc__),
    Step("train", train, TrainConfig, needs=FEED + FEATURES, makes=(*MODEL, "training_set.npz"), help=train.__doc__),
    Step("tune", tune, TuneConfig, needs=FEED + FEATURES, makes=("tuned.json",), help=tune.__doc__, in_all=False),
    Step("index", index, IndexConfig, needs=FEED + FEATURES + MODEL, makes=INDEX, help=index.__doc__),
    Step("sweep", sweep, SweepConfig, help=sweep.__doc__, in_all=False),
    Step("rank", rank, RankConfig, needs=FEED + FEATURES + MODEL + INDEX, makes=RANK, help=rank.__doc__),
    Step("eval", evaluate, EvalConfig, needs=FEED + FEATURES + MODEL + INDEX + RANK, makes=("eval.json",),
         help=evaluate.__doc__),
    Step("cross", cross, CrossConfig, needs=(*FEED, *FEATURES, *MODEL, "training_set.npz", *INDEX),
         makes=("cross.json",), help=cross.__doc__),
    Step("capacity", capacity, CapacityConfig, help=capacity.__doc__, in_all=False),
    Step("serve", serve, ServeConfig, needs=FEATURES + MODEL + INDEX + RANK, help=serve.__doc__, in_all=False),
    Step("bench", bench, BenchConfig, needs=FEED + FEATURES + MODEL + INDEX + RANK + ("eval.json", "cross.json"),
         help=bench.__doc__, in_all=False),
]
# fmt: on
ALL_CONFIG = BuildConfig  # `mlsd recsys all` takes every build step's flags
