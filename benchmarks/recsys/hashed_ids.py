"""What hashed user ids cost: recall@100 of the two-tower model at several user-id bucket counts.

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.hashed_ids --scale small --buckets 32768 1024 64 2

One feed and one feature repo; for each bucket count: train (same seed), index, evaluate on the future split.
Fewer buckets than users means colliding users share one id vector; the dense features (counts, topic mix, last
20 watches) still tell them apart, which is what the measurement shows. Writes
benchmarks/results/recsys/hashed_ids/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from infra.artifacts import Artifacts
from infra.bench.report import write_json
from infra.config import get_settings
from systems.recsys_two_tower import pipeline
from systems.recsys_two_tower.config import DataConfig, EvalConfig, FeaturesConfig, IndexConfig, TrainConfig

OUT = Path(__file__).resolve().parents[1] / "results" / "recsys" / "hashed_ids" / "report.json"


def main() -> None:
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--scale", default="small")
    p.add_argument("--buckets", type=int, nargs="+", default=[32768, 1024, 64, 2])
    p.add_argument("--eval-users", type=int, default=1000)
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    common = {"scale": args.scale, "seed": 0}
    art = Artifacts("recsys", args.scale)
    pipeline.data(DataConfig(**common), art)
    pipeline.features(FeaturesConfig(**common), art)
    n_users = json.loads((art.root / "config.json").read_text())["n_users"]
    rows = []
    for buckets in args.buckets:
        t0 = time.perf_counter()
        pipeline.train(TrainConfig(**common, user_buckets=buckets), art)
        pipeline.index(IndexConfig(**common, eval_users=args.eval_users), art)
        pipeline.evaluate(EvalConfig(**common, eval_users=args.eval_users), art)
        table = json.loads((art.root / "eval.json").read_text())["table"]
        exact = table["two-tower exact (Flat)"]
        rows.append({"user_buckets": buckets, "users_per_bucket": n_users / buckets,
                     "recall@100": exact["recall@100"], "ndcg@10": exact["ndcg@10"],
                     "seconds": time.perf_counter() - t0})  # fmt: skip
        print(rows[-1], flush=True)
    report = {
        "command": f"PYTHONPATH=$PWD .venv/bin/python -m benchmarks.recsys.hashed_ids --scale {args.scale} "
        f"--buckets {' '.join(map(str, args.buckets))}",
        "scale": args.scale,
        "users": n_users,
        "metric": "recall@100 / ndcg@10 of two-tower exact search on the future split (eval step)",
        "load_average": os.getloadavg()[0],
        "rows": rows,
        "data_dir": str(get_settings().data_dir),
    }
    write_json(args.out, report, echo=False)


if __name__ == "__main__":
    main()
