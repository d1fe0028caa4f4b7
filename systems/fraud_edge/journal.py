"""The outage journal: what the scorer decided on local state while Redis was out, replayed into Redis after.

While the shared velocity store is unreachable, the scorer answers from its in-process store (`degraded =
"local_features"`); the transactions it counts there would otherwise never reach Redis, and every card would look
quieter than it is once Redis is back. So each one is appended to a local file (one JSON line, flushed and
fsynced before the answer leaves: an acknowledged transaction is on disk), and `reconcile` replays the file into
Redis when it answers again. The replay is idempotent by tx_id (the store's claim key), so a crash halfway, a
second reconciliation, or a client retry that already reached Redis counts nothing twice.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from systems.fraud_edge.features.store import IdempotencyConflict, VelocityStore
from systems.fraud_edge.features.velocity import Transaction

log = logging.getLogger("mlsd.fraud")


@dataclass
class Reconciled:
    applied: int = 0  # newly counted in Redis
    already: int = 0  # Redis had them (a retry reached it first, or an earlier reconciliation)
    conflicts: int = 0  # the tx_id was taken by another payload in Redis meanwhile: logged, not counted
    pending: int = 0  # left in the journal (Redis failed again)


class OutageJournal:
    """Append-only JSON lines; `reconcile(store)` moves them into the store. Thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.work = self.path.with_name(self.path.name + ".reconciling")
        self._lock = threading.Lock()
        self._reconcile = threading.Lock()

    def append(self, tx: Transaction) -> None:
        line = (json.dumps(asdict(tx), separators=(",", ":")) + "\n").encode()
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def pending(self) -> bool:
        return self.path.exists() or self.work.exists()

    def reconcile(self, store: VelocityStore) -> Reconciled | None:
        """Replay every journaled transaction into `store`; None when another reconciliation is running.
        A store failure stops it with the remaining lines kept (re-running is safe: idempotent by tx_id)."""
        if not self._reconcile.acquire(blocking=False):
            return None
        try:
            with self._lock:  # new appends go to a fresh file from here on
                if self.path.exists() and not self.work.exists():
                    self.path.replace(self.work)
                elif self.path.exists():  # a previous run failed: fold the newer lines into its file
                    with self.work.open("ab") as out:
                        out.write(self.path.read_bytes())
                    self.path.unlink()
            if not self.work.exists():
                return Reconciled()
            lines = [ln for ln in self.work.read_text().splitlines() if ln.strip()]
            done = Reconciled()
            for i, line in enumerate(lines):
                try:
                    tx = Transaction(**json.loads(line))
                except (ValueError, TypeError):  # a torn last line from a crash mid-append
                    log.error("outage journal: skipping an unreadable line %d", i + 1)
                    continue
                try:
                    _, replayed = store.update_and_read(tx)
                except IdempotencyConflict as exc:
                    done.conflicts += 1
                    log.error("outage journal: %s; not counted", exc)
                    continue
                except Exception as exc:
                    done.pending = len(lines) - i
                    log.warning(
                        "outage journal: the store failed again (%s); %d left",
                        type(exc).__name__,
                        done.pending,
                    )
                    return done
                if replayed:
                    done.already += 1
                else:
                    done.applied += 1
            self.work.unlink()
            log.info("outage journal reconciled: %s", done)
            return done
        finally:
            self._reconcile.release()
