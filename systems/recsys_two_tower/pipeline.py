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
from infra.console import console, print_rows, print_values
from infra.resources import peak_rss_gb
from infra.serving import run_server
from infra.steps import Step
from infra.system import BenchSpec
from systems.recsys_two_tower import layout
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
from systems.recsys_two_tower.cross import print_cross, run_cross_experiment
from systems.recsys_two_tower.data import (
    Feed,
    generate_stream,
    holdout_users,
    load,
    movielens_feed,
    save,
    temporal_split,
)
from systems.recsys_two_tower.evaluate import print_eval, report_markdown, run_eval
from systems.recsys_two_tower.features.repo import (
    RecsysFeatures,
    build_features_partitioned,
    check_materialized,
    open_features,
)
from systems.recsys_two_tower.index import INDEX_FAMILIES, catalog_frame, print_sweep, run_index, user_vectors
from systems.recsys_two_tower.model import TwoTower
from systems.recsys_two_tower.provenance import read_run_id, write_run_id
from systems.recsys_two_tower.public_protocol import print_public_eval, public_markdown, run_public_eval
from systems.recsys_two_tower.rank import run_rank
from systems.recsys_two_tower.serve import build_app
from systems.recsys_two_tower.sweep import print_catalog_curve, run_sweep
from systems.recsys_two_tower.train import load_model, load_training_set, run_train
from systems.recsys_two_tower.tune import print_final, print_validation, run_final, run_tune, tuned_flags

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
    art.require(layout.EVENTS, "data")
    return load(art.root)


def _features(art: Artifacts) -> RecsysFeatures:
    art.require(layout.FEATURE_REGISTRY, "features")
    return open_features(art.root, art.variant)


def _model(art: Artifacts) -> TwoTower:
    art.require(layout.TWO_TOWER, "train")
    return load_model(art.root / layout.MODEL_DIR)


def _run_id(art: Artifacts) -> str:
    """The training run the model under model/ came from."""
    return str(read_run_id(art.require(layout.MODEL_RUN, "train")))


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
    art.path(layout.SOURCE).write_text(json.dumps(source, indent=2))
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
            f"train: the settings `mlsd recsys tune` chose on validation ({art.root / layout.TUNED}): {flags}"
        )
    result = run_train(_feed(art), _features(art), art.root, cfg)
    write_run_id(art.dir(layout.MODEL_DIR), result["run_id"])  # what index and rank record as their origin
    print_values("train", {k: v for k, v in result.items() if k != "losses"}
                 | {"epoch losses": " ".join(f"{x:.3f}" for x in result["losses"])})  # fmt: skip


def tune(cfg: TuneConfig, art: Artifacts) -> None:
    """--data only: an ablation on a validation split carved from the training ratings -> tuned.json (what train
    uses); --final trains the choice with 3 seeds and reads the test split once."""
    feed = _feed(art)
    result = run_tune(
        feed, art.root, art.variant, cfg, cfg.protocol, cfg.max_epochs, cfg.seeds, cfg.eval_users
    )
    print_validation(result, cfg.protocol, art.root)
    console.print(f"chosen: {result['flags']}")
    if not cfg.final:
        return
    print_final(
        run_final(feed, _features(art), art.root, cfg, cfg.seeds, cfg.eval_users), cfg.protocol, art.root
    )


def index(cfg: IndexConfig, art: Artifacts) -> None:
    """Embed the catalog, sweep IVF-Flat (at 100,000 videos or more also IVF-PQ fast-scan + refine, HNSW) against
    exact search, keep the cheapest with recall@100 >= 0.95."""
    feed, feats, model = _feed(art), _features(art), _model(art)
    users, _, _ = holdout_users(feed, cfg.eval_users, cfg.seed)  # the queries: eval's users, as of the split
    seen = np.load(art.require(layout.SEEN_VIDEOS, "train"))
    queries = user_vectors(model, feats, users, feed.split_ts - 1, seen)
    big = feed.config.n_videos >= 100_000
    nlists = cfg.nlist or ((2048, 4096) if big else (64, 256))
    families = cfg.families or (INDEX_FAMILIES if big else ("ivf_flat",))
    summary = run_index(model, feed, feats, art.root, queries, nlists, engine=cfg.engine, families=families)
    write_run_id(art.dir(layout.INDEX_DIR), _run_id(art))
    print_sweep(summary)


def rank(cfg: RankConfig, art: Artifacts) -> None:
    """Train the ranker behind the ANN (user x video features, listwise loss on the last training days) -> ONNX."""
    art.require(layout.SERVING_INDEX, "index")
    with console.status("ranker: candidates from the ANN, features, training, ONNX export"):
        meta = run_rank(_model(art), _feed(art), _features(art), art.root, _run_id(art), cfg.rank_users,
                        cfg.rank_epochs, cfg.seed)  # fmt: skip
    print_values("rank", {k: v for k, v in meta.items() if k != "features"})


def evaluate(cfg: EvalConfig, art: Artifacts) -> None:
    """Recall@K and NDCG@K on the future split: random, most-popular, two-tower exact and ANN, ANN + ranker
    (+ policy), oracle."""
    art.require(layout.SERVING_INDEX, "index")
    if art.exists(layout.SOURCE):  # real data: the public tables' metrics, the baselines beside, no oracle
        print_public_eval(
            run_public_eval(_model(art), _feed(art), _features(art), art.root, cfg.eval_users, cfg.seed)
        )
        return
    art.require(layout.RANKER_ONNX, "rank")
    print_eval(run_eval(_model(art), _feed(art), _features(art), art.root, cfg.eval_users, cfg.seed))


def cross(cfg: CrossConfig, art: Artifacts) -> None:
    """The first-stage question measured: a cross model over the full catalog, or re-ranking the ANN's top 200."""
    feed, feats = _feed(art), _features(art)
    training_set = load_training_set(art.require(layout.TRAINING_SET, "train"))
    art.require(layout.SERVING_INDEX, "index")
    with console.status("cross model: train, re-rank ANN top 200, score the full catalog"):
        catalog = catalog_frame(feed, feats, feed.split_ts)
        result = run_cross_experiment(_model(art), feed, feats, art.root, training_set, catalog,
                                      cfg.full_users, cfg.rerank_users, cfg.cross_steps, cfg.seed)  # fmt: skip
    art.path(layout.CROSS).write_text(json.dumps(result, indent=2))
    print_cross(result)


# ------------------------------------------------------------------------------------------ tools
def sweep(cfg: SweepConfig, art: Artifacts) -> None:
    """The catalog curve: IVF-Flat/SQ8/PQ(+refine)/HNSW recall, latency, memory per scale, the choice, shards."""
    out = Path(cfg.out) if cfg.out else RESULTS_DIR / "recsys" / "sweep"
    scales = list(cfg.scales or (cfg.scale,))
    report = run_sweep(scales, cfg.queries, cfg.hnsw_max_videos, out, cfg.seed, cfg.families, cfg.single_queries,
                       {s: cfg.videos for s in scales} if cfg.videos else None, log=console.print,
                       max_nlist=cfg.max_nlist, nprobes=cfg.nprobes, note=cfg.note)  # fmt: skip
    print_catalog_curve(report, out)


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
    evaluation, sweep_summary = _json(art, layout.EVAL, "eval"), _json(art, layout.SWEEP, "index")
    cross_result, model_meta = _json(art, layout.CROSS, "cross"), _json(art, layout.MODEL_CONFIG, "train")
    feed_cfg = FeedConfig(**_json(art, layout.FEED_CONFIG, "data"))
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
    evaluation, sweep_summary = _json(art, layout.EVAL, "eval"), _json(art, layout.SWEEP, "index")
    feed = _feed(art)
    _, future = temporal_split(feed.events, feed.split_ts)
    users = art.path(layout.BENCH_USERS)  # the users with held-out ratings: the ones the offline table scores
    users.write_text(json.dumps(np.unique(future["user_id"].to_numpy()).tolist()))
    env = {"MLSD_RECSYS_VARIANT": art.root.name, "MLSD_RECSYS_USERS_FILE": str(users)}
    spec = replace(BENCH, env=env)
    extra = {"data": cfg.data, "protocol": cfg.protocol, "offline": evaluation, "ann": sweep_summary["chosen"],
             "n_videos": sweep_summary["n_videos"]}  # fmt: skip
    src = evaluation["source"]
    md = public_markdown(evaluation)
    # its own report folder: a real-data bench never overwrites the simulator's
    out = cfg.out or RESULTS_DIR / "recsys" / f"latest-{src['kind']}"
    return run_bench("recsys", spec, **{**bench_kwargs(cfg), "out_dir": out}, extra=extra, extra_md=md)


# ------------------------------------------------------------------------------------------ the steps, in order
# fmt: off
FEED, FEATURES, MODEL, INDEX, RANK = layout.FEED, layout.FEATURES, layout.MODEL, layout.INDEX, layout.RANK

STEPS: list[Step] = [
    Step("data", data, DataConfig, makes=FEED, help=data.__doc__),
    Step("features", features, FeaturesConfig, needs=FEED, makes=FEATURES, help=features.__doc__),
    Step("train", train, TrainConfig, needs=FEED + FEATURES, makes=(*MODEL, layout.TRAINING_SET), help=train.__doc__),
    Step("tune", tune, TuneConfig, needs=FEED + FEATURES, makes=(layout.TUNED,), help=tune.__doc__, in_all=False),
    Step("index", index, IndexConfig, needs=FEED + FEATURES + MODEL, makes=INDEX, help=index.__doc__),
    Step("sweep", sweep, SweepConfig, help=sweep.__doc__, in_all=False),
    Step("rank", rank, RankConfig, needs=FEED + FEATURES + MODEL + INDEX, makes=RANK, help=rank.__doc__),
    Step("eval", evaluate, EvalConfig, needs=FEED + FEATURES + MODEL + INDEX + RANK, makes=(layout.EVAL,),
         help=evaluate.__doc__),
    Step("cross", cross, CrossConfig, needs=(*FEED, *FEATURES, *MODEL, layout.TRAINING_SET, *INDEX),
         makes=(layout.CROSS,), help=cross.__doc__),
    Step("capacity", capacity, CapacityConfig, help=capacity.__doc__, in_all=False),
    Step("serve", serve, ServeConfig, needs=FEATURES + MODEL + INDEX + RANK, help=serve.__doc__, in_all=False),
    Step("bench", bench, BenchConfig, needs=FEED + FEATURES + MODEL + INDEX + RANK + (layout.EVAL, layout.CROSS),
         help=bench.__doc__, in_all=False),
]
# fmt: on
ALL_CONFIG = BuildConfig  # `mlsd recsys all` takes every build step's flags
