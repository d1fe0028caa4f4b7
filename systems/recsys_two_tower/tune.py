"""The `tune` step on real data: the training settings chosen on validation, the test split read once, at the end.

Validation is carved from the training ratings alone (data.validation_feed: the same protocol applied again), and
its features go through Feast like any feed's (under `<variant>/validation/`). Each candidate trains on the
validation feed's training part and is scored after every epoch on its held-out part, by the public tables'
metrics (public_protocol) over an exact search of the catalog; its best epoch is its training length.

The candidates are an ablation: the defaults as they were (4 epochs), then each change alone on top of the
defaults with its best epoch, then together by forward selection (in the order of their gain alone, each change
kept if it improves on the best so far). The best row by validation nDCG@10
is trained again with more seeds (mean ± std) and written to tuned.json, which `mlsd recsys train --data` uses.
`--final` then trains it on the whole training split with 3 seeds and reads the test split, once, for the figure
DESIGN.md reports beside the published rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from infra.console import console, print_rows
from systems.recsys_two_tower import layout
from systems.recsys_two_tower.config import TrainConfig
from systems.recsys_two_tower.data import Feed, holdout_users, save, validation_feed
from systems.recsys_two_tower.evaluate import search_excluding
from systems.recsys_two_tower.features.repo import RecsysFeatures, build_features, open_features
from systems.recsys_two_tower.index import catalog_frame, embed_catalog, embed_users, exact_index, user_frame
from systems.recsys_two_tower.model import TwoTower
from systems.recsys_two_tower.public_protocol import K, baseline_recs, ranking_table
from systems.recsys_two_tower.train import build_training_set, train_towers, training_frame

# each change alone, as TrainConfig fields over the defaults (what DESIGN section 11's ablation names)
CHANGES: dict[str, dict] = {
    "temperature 0.2 (was 0.05)": {"temperature": 0.2},
    "logQ correction off (was full)": {"logq": 0.0},
    "mixed negatives: + 1,024 uniform": {"uniform_negatives": 1024},
    "ids only: no history, counts, popularity or age": {"features": False},
    "wider: id 256, hidden 512, out 128": {"id_dim": 256, "hidden": 512, "out_dim": 128},
    "embeddings start at N(0, 0.1)": {"init_std": 0.1},
    "positives: ratings >= 4 only": {"min_completion": 0.8},
}
BEFORE_EPOCHS = 4  # the defaults' training length, the row that lost to most-popular


@dataclass(frozen=True)
class Candidate:
    name: str
    changes: dict
    max_epochs: int  # scored after each epoch; the best one is the candidate's training length


@dataclass
class Scored:
    """A candidate's validation scores: per seed, the best epoch and its metrics."""

    name: str
    changes: dict
    epochs: list[int]
    rows: list[dict[str, float]]

    def mean(self, metric: str) -> float:
        return float(np.mean([r[metric] for r in self.rows]))

    def std(self, metric: str) -> float:
        return float(np.std([r[metric] for r in self.rows]))


class Judge:
    """Scores a model on a feed's held-out split: the top-K of items not rated in training, exact search."""

    def __init__(self, feed: Feed, features: RecsysFeatures, max_users: int, seed: int) -> None:
        self.feed = feed
        self.users, self.targets, self.seens = holdout_users(feed, max_users, seed)
        self.cold = np.array(
            [len(s) == 0 for s in self.seens]
        )  # no training ratings: the temporal late arrivals
        self.user_frame = user_frame(features, self.users, feed.split_ts - 1)  # model-independent: once
        self.catalog = catalog_frame(feed, features, feed.split_ts)

    def recs(self, model: TwoTower, seen_videos: np.ndarray) -> np.ndarray:
        queries = embed_users(model, self.user_frame, seen_videos)
        emb = embed_catalog(model, self.catalog, seen_videos, self.feed.split_ts, quiet=True)
        return search_excluding(exact_index(emb), queries, self.seens, K)

    def score(self, recs: np.ndarray) -> dict[str, float]:
        return ranking_table(recs, self.targets)

    def baseline_recs(self) -> dict[str, np.ndarray]:
        return baseline_recs(self.feed, self.users, self.seens)

    def baselines(self) -> dict[str, dict[str, float]]:
        return {name: self.score(r) for name, r in self.baseline_recs().items()}

    def cold_warm(self, recs: np.ndarray) -> dict[str, float]:
        """nDCG@K over the users with no training ratings (cold) and over the rest (warm)."""
        return {part: ranking_table(recs[mask], [t for t, m in zip(self.targets, mask, strict=True) if m])["ndcg@10"]
                if mask.any() else float("nan") for part, mask in (("cold", self.cold), ("warm", ~self.cold))}  # fmt: skip


def train_and_score(
    feed: Feed, frame: pd.DataFrame, judge: Judge, tc: TrainConfig, max_epochs: int
) -> tuple[int, dict[str, float], list[dict[str, float]]]:
    """Train on a joined training frame for max_epochs, scoring after each: (best epoch, its metrics, the curve)."""
    data = build_training_set(frame, feed, tc.tower())
    curve: list[dict[str, float]] = []

    def score_epoch(_: int, model: TwoTower) -> None:
        curve.append(judge.score(judge.recs(model, data.seen_videos)))

    train_towers(data, tc.tower(), replace(tc, epochs=max_epochs), progress=False, after_epoch=score_epoch)
    best = int(np.argmax([r["ndcg@10"] for r in curve]))
    return best + 1, curve[best], curve


def candidates(max_epochs: int) -> list[Candidate]:
    """The ablation's first rows: before, training length alone, then each change alone over the defaults."""
    rows = [Candidate(f"before: the defaults, {BEFORE_EPOCHS} epochs", {}, BEFORE_EPOCHS),
            Candidate("training length chosen on validation", {}, max_epochs)]  # fmt: skip
    return rows + [Candidate(name, changes, max_epochs) for name, changes in CHANGES.items()]


def run_tune(
    feed: Feed, root: Path, variant: str, base: TrainConfig, protocol: str, max_epochs: int, seeds: int,
    eval_users: int, log: Callable[[str], None] = console.print,
) -> dict:  # fmt: skip
    """The validation table and the chosen settings (tuned.json); the test split is not read."""
    t0 = time.perf_counter()
    val_feed = validation_feed(feed, protocol, base.seed)
    val_root = root / layout.VALIDATION_DIR
    save(val_feed, val_root)
    build_features(val_feed, val_root, f"{variant}_val")
    val_features = open_features(val_root, f"{variant}_val")
    judge = Judge(val_feed, val_features, eval_users, base.seed)
    baselines = judge.baselines()
    log(
        f"validation: {len(judge.users)} users; most-popular nDCG@10 {baselines['most-popular']['ndcg@10']:.4f}"
    )

    frames: dict[float, pd.DataFrame] = {}  # the point-in-time join depends only on which ratings count

    def run(c: Candidate, seed_list: list[int]) -> Scored:
        epochs, rows = [], []
        for seed in seed_list:
            tc = replace(base, seed=seed, **c.changes)
            if tc.min_completion not in frames:
                frames[tc.min_completion] = training_frame(
                    val_feed, val_features, tc.max_rows, "local", tc.min_completion
                )
            best, metrics, _ = train_and_score(val_feed, frames[tc.min_completion], judge, tc, c.max_epochs)
            epochs.append(best)
            rows.append(metrics)
        scored = Scored(c.name, c.changes, epochs, rows)
        log(
            f"  {c.name}: nDCG@10 {scored.mean('ndcg@10'):.4f} at epoch {epochs} ({time.perf_counter() - t0:.0f} s)"
        )
        return scored

    ablation = [run(c, [base.seed]) for c in candidates(max_epochs)]
    # together: forward selection, the changes in the order of their gain alone, each kept if it improves on
    # the best so far (changes interact: a longer run or a warmer softmax can help only once another is in)
    best = ablation[1]
    kept: list[str] = []  # the names of the changes kept
    together: list[Scored] = []
    for alone in sorted(ablation[2:], key=lambda s: -s.mean("ndcg@10")):
        name = "together: " + " + ".join([*kept, alone.name])
        trial = run(Candidate(name, {**best.changes, **alone.changes}, max_epochs), [base.seed])
        together.append(trial)
        if trial.mean("ndcg@10") > best.mean("ndcg@10"):
            best, kept = trial, [*kept, alone.name]
    chosen = best
    confirmed = run(Candidate(chosen.name, chosen.changes, max_epochs), [base.seed + i for i in range(seeds)])
    epochs = int(round(np.median(confirmed.epochs)))
    result = {
        "protocol": protocol,
        "validation": {"users": len(judge.users), "train_ratings": int((val_feed.events["ts"] < val_feed.split_ts).sum()),
                       "held_out_ratings": int((val_feed.events["ts"] >= val_feed.split_ts).sum())},
        "baselines": baselines,
        "ablation": [_row(s) for s in ablation],
        "together": [_row(s) for s in together],
        "kept": kept,
        "chosen": {**_row(confirmed), "train_epochs": epochs},
        "flags": {**chosen.changes, "epochs": epochs},
        "seconds": round(time.perf_counter() - t0, 1),
    }  # fmt: skip
    (root / layout.TUNED).write_text(json.dumps(result, indent=2))
    return result


def run_final(
    feed: Feed, features: RecsysFeatures, root: Path, base: TrainConfig, seeds: int, eval_users: int
) -> dict:
    """The tuned settings trained on the whole training split, `seeds` seeds, scored on the test split: read once."""
    tuned = json.loads((root / layout.TUNED).read_text())
    judge = Judge(feed, features, eval_users, base.seed)
    runs, parts = [], []
    tc = replace(base, **tuned["flags"])
    frame = training_frame(feed, features, tc.max_rows, "local", tc.min_completion)
    for i in range(seeds):
        tc = replace(tc, seed=base.seed + i)
        data = build_training_set(frame, feed, tc.tower())
        model, _ = train_towers(data, tc.tower(), tc, progress=False)
        recs = judge.recs(model.eval(), data.seen_videos)
        runs.append(judge.score(recs))
        parts.append(judge.cold_warm(recs))
    metrics = list(runs[0])
    base_recs = judge.baseline_recs()  # once: item-kNN's item-item similarity is the costly part
    cold_warm = {name: judge.cold_warm(r) for name, r in base_recs.items()}
    cold_warm["two-tower, tuned"] = {
        part: float(np.mean([p[part] for p in parts])) for part in ("cold", "warm")
    }
    result = {
        "users": len(judge.users),
        "seeds": seeds,
        "flags": tuned["flags"],
        "baselines": {name: judge.score(r) for name, r in base_recs.items()},
        "two_tower": {m: {"mean": float(np.mean([r[m] for r in runs])), "std": float(np.std([r[m] for r in runs]))}
                      for m in metrics},
        "runs": runs,
        "cold_users": int(judge.cold.sum()),
        "ndcg_cold_warm": cold_warm,
    }  # fmt: skip
    (root / layout.FINAL).write_text(json.dumps(result, indent=2))
    return result


def _row(s: Scored) -> dict:
    metrics = list(s.rows[0])
    return {"name": s.name, "changes": s.changes, "epochs": s.epochs, "seeds": len(s.rows),
            **{m: s.mean(m) for m in metrics}, **{f"{m}_std": s.std(m) for m in metrics}}  # fmt: skip


def tuned_flags(root: Path) -> dict | None:
    """The settings tune chose for this artifact folder, or None before `mlsd recsys tune` ran."""
    path = root / layout.TUNED
    return json.loads(path.read_text())["flags"] if path.exists() else None


TUNE_METRICS = ("precision@10", "recall@10", "ndcg@10", "map@10")


def print_validation(result: dict, protocol: str, root: Path) -> None:
    """The validation table: baselines, the ablation and the forward selection, the chosen row over seeds."""
    v = result["validation"]
    rows = [(name, "-", *row.values()) for name, row in result["baselines"].items()]
    rows += [
        (r["name"], " ".join(map(str, r["epochs"])), *(r[m] for m in TUNE_METRICS))
        for r in [*result["ablation"], *result["together"]]
    ]
    c = result["chosen"]
    rows.append((f"chosen, {c['seeds']} seeds (mean ± std)", " ".join(map(str, c["epochs"])),
                 *(f"{c[m]:.4f} ± {c[m + '_std']:.4f}" for m in TUNE_METRICS)))  # fmt: skip
    print_rows(f"validation ({protocol} split of the {v['train_ratings'] + v['held_out_ratings']:,} training "
               f"ratings; {v['users']} users; the test split is not read) -> {root / layout.TUNED}",
               ("model", "best epoch", *TUNE_METRICS), rows)  # fmt: skip


def print_final(final: dict, protocol: str, root: Path) -> None:
    """The test table of --final: the baselines and the tuned two-tower over seeds."""
    rows = [(name, *row.values()) for name, row in final["baselines"].items()]
    rows.append((f"two-tower, tuned ({final['seeds']} seeds, mean ± std)",
                 *(f"{v['mean']:.4f} ± {v['std']:.4f}" for v in final["two_tower"].values())))  # fmt: skip
    print_rows(f"test ({protocol} split, read once; {final['users']} users) -> {root / layout.FINAL}",
               ("model", *TUNE_METRICS), rows)  # fmt: skip
    if not final["cold_users"]:  # the random protocol: every test user has training ratings
        return
    parts = "; ".join(
        f"{name} {v['cold']:.3f} / {v['warm']:.3f}" for name, v in final["ndcg_cold_warm"].items()
    )
    console.print(f"{final['cold_users']} of {final['users']} test users have no training ratings; "
                  f"nDCG@10 cold / warm: {parts}")  # fmt: skip
