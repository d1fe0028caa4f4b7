"""Train the reranker on the tune split and pick the refusal threshold; the held-out split is never read here."""

from __future__ import annotations

import logging

import numpy as np

from infra.config import get_settings
from infra.console import progress as progress_of
from systems.rag_search.data import Question
from systems.rag_search.model import Reranker
from systems.rag_search.retrieve import Searcher

log = logging.getLogger("mlsd.rag")


def candidate_table(
    searcher: Searcher, questions: list[Question], progress: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (N, F), labels (N,), question index (N,) over every question's fused candidates."""
    X, y, g = [], [], []
    for qi, q in enumerate(progress_of(questions, "candidates", disable=not progress)):
        gold = set(q.gold)
        for c in searcher.candidates(searcher.embed(q.text)):
            chunk = searcher.index.chunks[c.idx]
            X.append(c.features())
            y.append(int(chunk.key in gold and chunk.status == "current"))
            g.append(qi)
    return np.array(X, dtype=np.float64), np.array(y), np.array(g)


def best_threshold(top_scores: np.ndarray, answerable: np.ndarray) -> float:
    """The refusal threshold that maximises balanced accuracy: mean of refusal accuracy on unanswerable questions
    and answer rate on answerable ones (each class counts the same although unanswerables are ~10%)."""
    best_t, best_acc = 0.5, -1.0
    for t in np.unique(np.round(top_scores, 4)):
        refuse = top_scores < t
        acc = (
            0.5 * (refuse[~answerable].mean() if (~answerable).any() else 1.0)
            + 0.5 * (~refuse[answerable]).mean()
        )
        if acc > best_acc:
            best_t, best_acc = float(t), float(acc)
    return best_t


def train_reranker(
    searcher: Searcher, tune: list[Question], seed: int = 0, progress: bool = False
) -> tuple[Reranker, float, dict]:
    """Fit on the tune split; the threshold comes from 2-fold out-of-fold scores so it is not picked in-sample."""
    X, y, g = candidate_table(searcher, tune, progress)
    folds = g % 2
    oof = np.zeros(len(y))
    for f in (0, 1):
        m = Reranker().fit(X[folds != f], y[folds != f], seed)
        oof[folds == f] = m.predict(X[folds == f])
    top = np.array([oof[g == qi].max() if (g == qi).any() else 0.0 for qi in range(len(tune))])
    answerable = np.array([q.answerable for q in tune])
    threshold = best_threshold(top, answerable)
    model = Reranker().fit(X, y, seed)
    stats = {
        "rows": int(len(y)),
        "positives": int(y.sum()),
        "questions": len(tune),
        "refuse_below": round(threshold, 4),
    }
    return model, threshold, stats


def log_to_mlflow(stats: dict) -> None:
    """Log the reranker run to MLflow when it is reachable; the model file on disk is what serving reads."""
    import mlflow  # seconds to import, and only this step logs to MLflow

    try:
        mlflow.set_tracking_uri(get_settings().tracking_uri)
        mlflow.set_experiment("rag_search")
        with mlflow.start_run(run_name="reranker"):
            mlflow.log_metrics({k: float(v) for k, v in stats.items()})
    except Exception as exc:  # tracking is optional here; say so rather than fail the step
        log.warning("MLflow logging skipped (%s: %s)", type(exc).__name__, exc)
