"""Which training run an artifact set was built from: model/run.json, index/run.json and rank/meta.json each
carry the run id of the two towers they came from, and the server refuses a set whose ids disagree.

Why: the index holds the video tower's vectors and the ranker learned on the user tower's scores, so a user
tower from another run (retrained at another scale or seed, then promoted) queries a space the index was not
built in; every answer would be plausible-looking noise. The seen-list travels inside the model's own
directory (model/seen_videos.npy), so it is the model's run by construction.
"""

from __future__ import annotations

import json
from pathlib import Path

from infra.artifacts import atomic_write
from systems.recsys_two_tower import layout


class ArtifactMismatch(RuntimeError):
    """The artifacts come from different training runs; the message names each and the command that fixes it."""


def write_run_id(directory: Path, run_id: str) -> None:
    with atomic_write(directory / layout.RUN_FILE, "w") as f:
        f.write(json.dumps({"run_id": run_id}))


def read_run_id(path: Path) -> str | None:
    """The run id in a run.json or a meta.json; None when the file predates run ids."""
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("run_id")


def check_same_run(model_run: str, scale: str, **built_from: str | None) -> None:
    """ArtifactMismatch unless every artifact (name -> its run id) was built from model_run."""
    wrong = {name: run for name, run in built_from.items() if run != model_run}
    if wrong:
        parts = ", ".join(f"{name} from run {run or '(no run id)'}" for name, run in wrong.items())
        raise ArtifactMismatch(
            f"artifact set mismatch: the champion model is training run {model_run}, but {parts}; rebuild them "
            f"from this model with `mlsd recsys index --scale {scale}` then `mlsd recsys rank --scale {scale}` "
            "(or promote the run they were built from)"
        )
