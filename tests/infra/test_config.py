from pathlib import Path

import pytest

from infra.config import LOCAL_HOSTS, REPO_ROOT, Settings, get_settings, settings_error


def test_defaults_point_inside_the_data_dir(isolated_settings: Path) -> None:
    s = get_settings()
    assert s.data_dir == isolated_settings
    assert s.online_store == "sqlite"
    assert s.tracking_uri == f"sqlite:///{isolated_settings / 'mlflow.db'}"
    assert s.scale == "small" and s.device == "auto" and s.torch_device() in ("cpu", "cuda")


def test_default_data_dir_is_repo_dot_mlsd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSD_DATA_DIR")
    assert Settings().data_dir == REPO_ROOT / ".mlsd"


def test_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSD_ONLINE_STORE", "REDIS")
    monkeypatch.setenv("REDIS_URL", "redis://example:6380/2")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://u@h/db")
    monkeypatch.setenv("MLSD_SCALE", "medium")
    monkeypatch.setenv("MLSD_SEED", "7")
    s = Settings()
    assert (s.online_store, s.redis_url, s.tracking_uri, s.scale, s.seed) == (
        "redis", "redis://example:6380/2", "postgresql://u@h/db", "medium", 7,
    )  # fmt: skip


def test_bad_scale_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSD_SCALE", "huge")
    with pytest.raises(Exception) as info:
        Settings()
    line = settings_error(info.value)
    assert "MLSD_SCALE" in line and "huge" in line


def test_system_dir_is_created(isolated_settings: Path) -> None:
    path = get_settings().system_dir("recsys")
    assert path.is_dir() and path.parent == isolated_settings


def test_allowed_hosts_are_comma_separated_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().allowed_host_names == LOCAL_HOSTS  # unset: this machine's names
    monkeypatch.setenv("MLSD_ALLOWED_HOSTS", " API.example.com, internal.svc.cluster.local.,10.0.3.7,[::1] ")
    assert Settings().allowed_host_names == (
        "api.example.com",
        "internal.svc.cluster.local.",
        "10.0.3.7",
        "[::1]",
    )
    monkeypatch.setenv("MLSD_ALLOWED_HOSTS", "*")
    assert Settings().allowed_host_names == ("*",)


@pytest.mark.parametrize(
    "value",
    ["", "api.example.com:8000", "https://api.example.com", "api.example.com/v1", "a b", "a,,b", "[::1]:80"],
)
def test_a_malformed_allowed_hosts_names_the_variable_and_the_bad_name(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("MLSD_ALLOWED_HOSTS", value)
    with pytest.raises(Exception) as info:
        Settings()
    line = settings_error(info.value)
    assert "MLSD_ALLOWED_HOSTS" in line and "is not a host name" in line and "\n" not in line
