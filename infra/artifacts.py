"""Where a system's artifacts live: one folder per system and scale, `<MLSD_DATA_DIR>/<system>/<scale>/`.

art = Artifacts("recsys", "small")
art.path("model/user_tower.onnx")      # .mlsd/recsys/small/model/user_tower.onnx (parent created)
art.require("model/user_tower.onnx", "train")   # the path, or MissingArtifact naming the step to run
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.config import get_settings


class MissingArtifact(FileNotFoundError):
    """An artifact a step reads is not there; the message names the step that makes it."""


class Artifacts:
    def __init__(self, system: str, variant: str) -> None:
        self.system, self.variant = system, variant
        self.root = get_settings().data_dir / system / variant

    def __repr__(self) -> str:
        return f"Artifacts({self.system!r}, {self.variant!r}) at {self.root}"

    def path(self, name: str) -> Path:
        """The path of an artifact (its folder is created, the file is not)."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def dir(self, name: str) -> Path:
        """A folder under the artifact root (created)."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def exists(self, name: str) -> bool:
        return (self.root / name).exists()

    def require(self, name: str, made_by: str) -> Path:
        """The artifact's path, or MissingArtifact saying which command makes it."""
        path = self.root / name
        if not path.exists():
            # a real dataset's folder (data-<kind>-<hash>) is named by --data, not by a scale
            scale = "" if self.variant.startswith("data-") else f" --scale {self.variant}"
            raise MissingArtifact(f"{path} is missing; run `mlsd {self.system} {made_by}{scale}`")
        return path


@contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator:
    """Write to a temporary file beside `path`, then rename over it: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
