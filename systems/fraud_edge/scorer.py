"""The edge scorer: one transaction -> velocity features (update + read) -> ONNX model -> decision.

Usable without the server (a terminal embeds this class); the server wraps it. Degrades in steps:
  - the model fails (or no bundle is live): hard rules alone decide (`mode = "rules_only"`);
  - the feature store fails (Redis down, network gone): the scorer's in-process store takes over with
    the history it has seen itself (`degraded = "local_features"`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infra.serving.onnx import make_session
from systems.fraud_edge.bundle import BundleRejected, VerifiedBundle, live_path, verify_bundle
from systems.fraud_edge.decision import ACTIONS, Thresholds, model_actions, rule_actions
from systems.fraud_edge.features.store import MemoryVelocityStore, VelocityStore
from systems.fraud_edge.features.velocity import Transaction, feature_spec, model_features

log = logging.getLogger("mlsd.fraud")


@dataclass
class Decision:
    tx_id: str
    action: str
    score: float | None
    mode: str  # "model+rules" or "rules_only"
    rules: list[str]
    replayed: bool
    degraded: str | None
    bundle_version: str | None
    stages_ms: dict[str, float] = field(default_factory=dict)


class _LiveModel:
    """A verified bundle with its session; replaced as a whole, never edited in place."""

    def __init__(self, bundle: VerifiedBundle) -> None:
        self.bundle = bundle
        self.session = make_session(bundle.model_onnx, threads=1, prefer_gpu=False)
        self.input_name = self.session.get_inputs()[0].name
        t = bundle.thresholds
        self.thresholds = Thresholds(float(t["review"]), float(t["decline"]))
        canary = bundle.manifest["canary"]
        got = self.predict(np.asarray(canary["features"], dtype=np.float32))
        if not np.allclose(got, np.asarray(canary["scores"]), atol=float(canary["atol"])):
            raise BundleRejected(
                f"bundle {bundle.path}: canary scores {got[:3]} differ from the recorded {canary['scores'][:3]}"
            )

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0][:, 0]  # (B,)


class EdgeScorer:
    """Score transactions with the live bundle and a velocity store."""

    def __init__(self, store: VelocityStore | None = None, fallback_store: MemoryVelocityStore | None = None):
        self.store = store or MemoryVelocityStore()
        self.fallback_store = fallback_store or (
            self.store if isinstance(self.store, MemoryVelocityStore) else MemoryVelocityStore()
        )
        self.spec_hash = feature_spec()["spec_hash"]
        self.live: _LiveModel | None = None
        self._swap = threading.Lock()

    @property
    def bundle_version(self) -> str | None:
        return self.live.bundle.version if self.live else None

    def load_bundle(self, path: Path) -> str:
        """Verify and swap to the bundle at path; on any failure raise BundleRejected and keep the old one."""
        try:
            candidate = _LiveModel(verify_bundle(path, self.spec_hash))
        except BundleRejected:
            raise
        except Exception as exc:  # a corrupt ONNX file, an unreadable folder
            raise BundleRejected(f"bundle {path}: {type(exc).__name__}: {exc}") from exc
        with self._swap:
            self.live = candidate
        log.info("fraud scorer now serving bundle %s", candidate.bundle.version)
        return candidate.bundle.version

    def load_live(self, bundles_root: Path) -> str:
        return self.load_bundle(live_path(bundles_root))

    def features(self, tx: Transaction) -> tuple[np.ndarray, bool, str | None]:
        """(1, D) features after recording tx; falls back to the in-process store when the main one fails."""
        degraded = None
        try:
            raw, replayed = self.store.update_and_read(tx)
        except Exception as exc:  # Redis down or timing out: the edge keeps deciding on local history
            if self.store is self.fallback_store:
                raise
            log.warning("velocity store failed (%s); using the in-process store", type(exc).__name__)
            raw, replayed = self.fallback_store.update_and_read(tx)
            degraded = "local_features"
        x = model_features({k: np.array([v], dtype=np.int64) for k, v in raw.items()})
        return x, replayed, degraded

    def score(self, tx: Transaction) -> Decision:
        stages: dict[str, float] = {}
        t0 = time.perf_counter()
        x, replayed, degraded = self.features(tx)
        t1 = time.perf_counter()
        stages["features"] = (t1 - t0) * 1000
        live = self.live
        score: float | None = None
        if live is not None:
            try:
                score = float(live.predict(x)[0])
            except Exception as exc:
                log.error("model failed (%s); deciding by rules alone", exc)
        t2 = time.perf_counter()
        stages["model"] = (t2 - t1) * 1000
        rule_action, fired = rule_actions(x)
        if score is not None and live is not None:
            action = max(int(model_actions(np.array([score]), live.thresholds)[0]), int(rule_action[0]))
            mode = "model+rules"
        else:
            action = int(rule_action[0])
            mode = "rules_only"
        stages["decision"] = (time.perf_counter() - t2) * 1000
        return Decision(
            tx_id=tx.tx_id,
            action=ACTIONS[action],
            score=score,
            mode=mode,
            rules=fired[0],
            replayed=replayed,
            degraded=degraded,
            bundle_version=self.bundle_version,
            stages_ms={k: round(v, 4) for k, v in stages.items()},
        )
