"""MLflow registry: log, register, alias, load by alias — on SQLite and on PostgreSQL."""

from pathlib import Path

import pytest

from infra.registry import CHALLENGER, CHAMPION, Registry, RegistryUnavailable


def _exercise(reg: Registry, tmp_path: Path, name: str) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.onnx").write_bytes(b"\x08\x07onnx-bytes")
    (model_dir / "config.json").write_text('{"dim": 32}')
    run1 = reg.log_run(
        "toy", {"lr": 0.1}, {"auc": 0.70}, {"model": model_dir}, step_metrics={"loss": [3, 2, 1]}
    )
    v1 = reg.register(name, run1, "model", alias=CHAMPION)
    (model_dir / "config.json").write_text('{"dim": 64}')
    run2 = reg.log_run("toy", {"lr": 0.2}, {"auc": 0.72}, {"model": model_dir})
    v2 = reg.register(name, run2, "model", alias=CHALLENGER)
    assert (v1.version, v2.version) == ("1", "2")

    ref, path = reg.load(name, CHAMPION, dst=tmp_path / "dl1")
    assert ref.version == "1" and (path / "config.json").read_text() == '{"dim": 32}'
    assert (path / "model.onnx").read_bytes() == b"\x08\x07onnx-bytes"

    reg.promote(name, CHALLENGER, CHAMPION)
    ref, path = reg.load(name, CHAMPION, dst=tmp_path / "dl2")
    assert ref.version == "2" and (path / "config.json").read_text() == '{"dim": 64}'
    history = reg.client.get_metric_history(run1, "loss")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == [3, 2, 1]
    with pytest.raises(LookupError, match="train"):
        reg.get(name, "nosuchalias")


def test_registry_sqlite(tmp_path: Path, unique_name: str) -> None:
    reg = Registry(artifact_root=tmp_path / "artifacts")
    assert reg.tracking_uri.startswith("sqlite:///")
    _exercise(reg, tmp_path, unique_name)


@pytest.mark.postgres
def test_registry_postgres(tmp_path: Path, unique_name: str, postgres_db: str) -> None:
    reg = Registry(tracking_uri=postgres_db, artifact_root=tmp_path / "artifacts")
    assert reg.tracking_uri.startswith("postgresql+psycopg2://")
    _exercise(reg, tmp_path, unique_name)


def test_unreachable_backend_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(RegistryUnavailable, match="MLFLOW_TRACKING_URI"):
        Registry(tracking_uri="postgresql://nobody@127.0.0.1:1/none", artifact_root=tmp_path)
