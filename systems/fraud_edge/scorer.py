"""The edge scorer: one transaction -> velocity features (update + read) -> ONNX model -> decision.

Usable without the server (a terminal embeds this class); the server wraps it. Degrades in steps:
  - the model fails, no bundle is live, or the LIVE bundle is rejected at start-up: hard rules alone decide
    (`mode = "rules_only"`; `bundle_error` says why);
  - the feature store fails or misses its deadline (Redis down, paused, network gone): the scorer's in-process
    store takes over with the history it has seen itself (`degraded = "local_features: <why>"`), and the
    transaction goes to the outage journal, replayed into Redis when it answers again (journal.py).
The async path (`score_async`, the server's) calls the store through `infra.resilience`: a deadline, the
breaker's own threads (the event loop never waits on a socket), and a circuit breaker that skips a dead store.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infra.resilience import CircuitBreaker, guarded_call_async
from infra.serving.onnx import make_session
from systems.fraud_edge.bundle import BundleRejected, VerifiedBundle, live_path, verify_bundle
from systems.fraud_edge.decision import ACTIONS, Thresholds, model_actions, rule_actions
from systems.fraud_edge.features.store import IdempotencyConflict, MemoryVelocityStore, VelocityStore
from systems.fraud_edge.features.velocity import Transaction, feature_spec, model_features
from systems.fraud_edge.journal import OutageJournal, Reconciled

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
        self.session = make_session(
            bundle.model_onnx, threads=1, prefer_gpu=False, name=f"bundle {bundle.version}"
        )
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

    def __init__(
        self,
        store: VelocityStore | None = None,
        fallback_store: MemoryVelocityStore | None = None,
        *,
        breaker: CircuitBreaker | None = None,
        deadline_s: float = 0.05,
        journal: OutageJournal | None = None,
    ):
        self.store = store or MemoryVelocityStore()
        self.fallback_store = fallback_store or (
            self.store if isinstance(self.store, MemoryVelocityStore) else MemoryVelocityStore()
        )
        self.local = self.store is self.fallback_store
        self.breaker = breaker or CircuitBreaker(
            "velocity_store", failure_threshold=3, cooldown_s=2.0, max_workers=4
        )
        self.deadline_s = deadline_s
        self.journal = journal
        self.last_reconciled: Reconciled | None = None
        self.spec_hash = feature_spec()["spec_hash"]
        self.live: _LiveModel | None = None
        self.bundle_error: str | None = None
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

    def load_live(self, bundles_root: Path) -> str | None:
        """Serve the LIVE bundle; a missing or rejected one leaves the scorer deciding by rules alone (logged as
        an error, shown by `bundle_error`), never a scorer that cannot answer."""
        try:
            version = self.load_bundle(live_path(bundles_root))
        except (BundleRejected, FileNotFoundError, OSError) as exc:
            self.bundle_error = str(exc)
            log.error("no usable LIVE bundle (%s): scoring by hard rules alone (mode rules_only)", exc)
            return None
        self.bundle_error = None
        return version

    def _local(self, tx: Transaction, why: str) -> tuple[dict[str, int], bool, str]:
        """The in-process store's answer while the main store is out; the transaction is journaled first."""
        raw, replayed = self.fallback_store.update_and_read(tx)  # a conflict here raises before the journal
        if self.journal is not None and not replayed:
            self.journal.append(tx)
        return raw, replayed, f"local_features: {why}"

    def features(self, tx: Transaction) -> tuple[np.ndarray, bool, str | None]:
        """(1, D) features after recording tx; falls back to the in-process store when the main one fails.
        Blocking (the CLI, an embedding terminal); the server uses `features_async`."""
        degraded = None
        try:
            raw, replayed = self.store.update_and_read(tx)
        except IdempotencyConflict:
            raise
        except Exception as exc:  # Redis down or timing out: the edge keeps deciding on local history
            if self.local:
                raise
            log.warning("velocity store failed (%s); using the in-process store", type(exc).__name__)
            raw, replayed, degraded = self._local(tx, type(exc).__name__)
        return _matrix(raw), replayed, degraded

    async def features_async(self, tx: Transaction) -> tuple[np.ndarray, bool, str | None]:
        """features() for the event loop: the store call runs on the breaker's threads with a deadline."""
        if self.local:
            raw, replayed = self.store.update_and_read(tx)
            return _matrix(raw), replayed, None
        got = await guarded_call_async(
            self.store.update_and_read,
            tx,
            deadline_s=self.deadline_s,
            breaker=self.breaker,
            fallback=None,
            raise_on=(IdempotencyConflict,),
        )
        if got.degraded is not None or got.value is None:
            raw, replayed, degraded = self._local(tx, got.degraded or "no answer")
            return _matrix(raw), replayed, degraded
        if self.journal is not None and self.journal.pending():
            threading.Thread(target=self.reconcile, name="mlsd-fraud-reconcile", daemon=True).start()
        raw, replayed = got.value
        return _matrix(raw), replayed, None

    def reconcile(self) -> Reconciled | None:
        """Replay the outage journal into the main store (None: nothing to do, or already running)."""
        if self.journal is None or self.local:
            return None
        done = self.journal.reconcile(self.store)
        if done is not None:
            self.last_reconciled = done
        return done

    def score(self, tx: Transaction) -> Decision:
        t0 = time.perf_counter()
        x, replayed, degraded = self.features(tx)
        return self._decide(tx, x, replayed, degraded, t0)

    async def score_async(self, tx: Transaction) -> Decision:
        t0 = time.perf_counter()
        x, replayed, degraded = await self.features_async(tx)
        return self._decide(tx, x, replayed, degraded, t0)

    def _decide(
        self, tx: Transaction, x: np.ndarray, replayed: bool, degraded: str | None, t0: float
    ) -> Decision:
        stages: dict[str, float] = {}
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


def _matrix(raw: dict[str, int]) -> np.ndarray:
    return model_features({k: np.array([v], dtype=np.int64) for k, v in raw.items()})
