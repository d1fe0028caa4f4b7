"""MLflow tracking and model registry: log a run, register a version, move aliases, load by alias.

The backend store is MLFLOW_TRACKING_URI (default sqlite:///.mlsd/mlflow.db; PostgreSQL works the same:
postgresql://user@host:5432/db). Artifacts go to .mlsd/mlartifacts/. A model version's files are
whatever the run logged under its artifact path (an ONNX file, an index, a JSON config), so the same
helpers serve every system.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.config import get_settings

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

CHAMPION, CHALLENGER = "champion", "challenger"


class RegistryUnavailable(RuntimeError):
    """The tracking backend could not be reached; the message says what to run."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    run_id: str
    artifact_path: str


def _with_driver(uri: str) -> str:
    """postgresql://... -> postgresql+psycopg2://... (the driver installed with mlsd)."""
    for prefix in ("postgresql://", "postgres://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg2://" + uri.removeprefix(prefix)
    return uri


def _check_reachable(uri: str) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a database backend is down."""
    if not uri.startswith("postgresql"):
        return
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(uri, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        raise RegistryUnavailable(
            f"MLflow backend {uri} is not reachable ({type(exc).__name__}); start PostgreSQL "
            "or unset MLFLOW_TRACKING_URI to use the SQLite default"
        ) from exc


class Registry:
    """Thin, typed wrapper over MlflowClient for the steps every system takes."""

    def __init__(self, tracking_uri: str | None = None, artifact_root: Path | None = None) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        settings = get_settings()
        self.tracking_uri = _with_driver(tracking_uri or settings.tracking_uri)
        self.artifact_root = Path(artifact_root or settings.data_dir / "mlartifacts")
        if self.tracking_uri.startswith("sqlite:///"):
            Path(self.tracking_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        _check_reachable(self.tracking_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        self._mlflow = mlflow
        try:
            self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            self.client.search_experiments(max_results=1)
        except Exception as exc:
            raise RegistryUnavailable(
                f"MLflow backend {self.tracking_uri} is not reachable ({type(exc).__name__}: {exc}); "
                "unset MLFLOW_TRACKING_URI to use the SQLite default, or start the database"
            ) from exc

    def experiment_id(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        location = (self.artifact_root / name).resolve()
        location.mkdir(parents=True, exist_ok=True)
        return self.client.create_experiment(name, artifact_location=location.as_uri())

    def log_run(
        self,
        experiment: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        artifacts: Mapping[str, Path] | None = None,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        step_metrics: Mapping[str, list[float]] | None = None,
    ) -> str:
        """One finished run: params, final metrics, per-step curves, and files under artifact paths."""
        run = self.client.create_run(self.experiment_id(experiment), run_name=run_name, tags=dict(tags or {}))
        run_id = run.info.run_id
        for key, value in params.items():
            self.client.log_param(run_id, key, value)
        for key, value in metrics.items():
            self.client.log_metric(run_id, key, float(value))
        for key, values in (step_metrics or {}).items():
            for step, value in enumerate(values):
                self.client.log_metric(run_id, key, float(value), step=step)
        for artifact_path, local in (artifacts or {}).items():
            local = Path(local)
            if local.is_dir():
                self.client.log_artifacts(run_id, str(local), artifact_path)
            else:
                self.client.log_artifact(run_id, str(local), artifact_path)
        self.client.set_terminated(run_id, "FINISHED")
        return run_id

    def register(self, name: str, run_id: str, artifact_path: str, alias: str | None = None) -> ModelRef:
        """A new version of model `name` pointing at the run's files; optionally move an alias to it."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{artifact_path}"
        mv = self.client.create_model_version(name, source=source, run_id=run_id)
        if alias:
            self.set_alias(name, alias, mv.version)
        return ModelRef(name, str(mv.version), run_id, artifact_path)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(name, alias, str(version))

    def get(self, name: str, alias: str = CHAMPION) -> ModelRef:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            raise LookupError(
                f"no version of model '{name}' has alias '{alias}'; run the system's `train` step first"
            ) from exc
        if mv.source is None or mv.run_id is None:  # a version registered from outside a run
            raise LookupError(
                f"model '{name}' version {mv.version} (alias '{alias}') has no source run; register it from a "
                "run with the system's `train` step"
            )
        artifact_path = mv.source.rstrip("/").rsplit("/", 1)[-1]
        return ModelRef(name, str(mv.version), mv.run_id, artifact_path)

    def load(self, name: str, alias: str = CHAMPION, dst: Path | None = None) -> tuple[ModelRef, Path]:
        """Download the files of the version behind `alias`; returns (ref, local folder)."""
        ref = self.get(name, alias)
        if dst is not None:
            dst.mkdir(parents=True, exist_ok=True)
        local = self._mlflow.artifacts.download_artifacts(
            run_id=ref.run_id,
            artifact_path=ref.artifact_path,
            dst_path=str(dst) if dst else None,
            tracking_uri=self.tracking_uri,
        )
        return ref, Path(local)

    def promote(self, name: str, from_alias: str = CHALLENGER, to_alias: str = CHAMPION) -> ModelRef:
        """Point `to_alias` at the version `from_alias` names (the rollout step after an A/B win)."""
        ref = self.get(name, from_alias)
        self.set_alias(name, to_alias, ref.version)
        return ref
