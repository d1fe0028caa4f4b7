import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import REPO_ROOT
from infra.steps import config_from_args, step_parser
from mlsd.cli import discover_systems, main, settings_classes, settings_rows


def test_unknown_system_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nosuch", "train"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown system 'nosuch'" in err and "floor" in err


def test_bench_unknown_system_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nosuch"]) == 2
    assert "unknown system 'nosuch'" in capsys.readouterr().err


def test_unknown_step_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recsys", "nosuchstep"]) == 2
    err = capsys.readouterr().err
    assert "unknown step 'nosuchstep'" in err and "data" in err and err.count("\n") == 1


def test_every_system_has_a_pipeline_settings_and_the_steps_it_lists() -> None:
    """SYSTEM.steps (what `mlsd list` shows without importing torch) matches pipeline.STEPS."""
    for spec in discover_systems().values():
        steps = importlib.import_module(f"{spec.package}.pipeline").STEPS
        assert spec.steps == (*[s.name for s in steps], "all"), spec.name
        assert "bench" in spec.steps and "serve" in spec.steps, spec.name
        settings = importlib.import_module(f"{spec.package}.config").SETTINGS
        assert settings.model_config["env_prefix"] == f"MLSD_{spec.name.upper()}_", spec.name


def test_each_system_keeps_its_own_cli_name_in_artifacts() -> None:
    names = set(discover_systems())
    assert names == {"recsys", "ctr", "fraud", "rag"}


def test_unknown_setting_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("MLSD_ONLINESTORE", "redis")  # a typo of MLSD_ONLINE_STORE
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MLSD_ONLINESTORE" in err


def test_malformed_system_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("MLSD_BENCH_RATE", "fast")
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MLSD_BENCH_RATE" in err and "fast" in err


def test_malformed_allowed_hosts_is_one_line_exit_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("MLSD_ALLOWED_HOSTS", "https://api.example.com:443")
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MLSD_ALLOWED_HOSTS" in err and "not a host name" in err


def test_mlsd_list_does_not_import_torch() -> None:
    """`mlsd list` reads only each system's __init__.py and config.py: no torch, faiss or feast."""
    code = "import sys; from mlsd.cli import main; main(['list']); print(sorted(m for m in ('torch', 'faiss', 'feast') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_bad_flag_is_one_line_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mlsd.cli", "bench", "floor", "--duration", "0"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--duration" in proc.stderr


def test_list_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    assert "floor" in capsys.readouterr().out
    assert main([]) == 0
    assert "mlsd <system> <step>" in capsys.readouterr().out


def test_entry_point_installed() -> None:
    mlsd = Path(sys.executable).parent / "mlsd"
    proc = subprocess.run([str(mlsd), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "mlsd list" in proc.stdout


def test_bad_scale_flag_and_env_are_one_line_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mlsd.cli", "recsys", "data", "--scale", "huge"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "'huge'" in proc.stderr
    env = {**__import__("os").environ, "MLSD_SCALE": "huge"}
    proc = subprocess.run(
        [sys.executable, "-m", "mlsd.cli", "recsys", "data"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "MLSD_SCALE" in proc.stderr


def test_readme_lists_every_setting() -> None:
    """The README's settings table is `mlsd settings --markdown`: every variable the code reads is in it."""
    readme = (REPO_ROOT / "README.md").read_text()
    missing = [
        env for env, _, _ in settings_rows(settings_classes(discover_systems())) if f"`{env}`" not in readme
    ]
    assert not missing, (
        f"README.md lacks {missing}; paste `mlsd settings --markdown` into its Configuration section"
    )


# A strict command line: abbreviations refused, the name meant suggested, usage lines naming `mlsd` ------------


def test_an_abbreviated_flag_is_refused_with_the_flag_meant(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fraud", "train", "--epoch", "3"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "unrecognized arguments: --epoch 3" in err
        and "did you mean '--epochs'" in err
    )


def test_a_mistyped_system_step_and_topic_get_a_suggestion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fruad", "train"]) == 2
    assert "did you mean 'fraud'" in capsys.readouterr().err
    assert main(["bench", "recsis"]) == 2
    assert "did you mean 'recsys'" in capsys.readouterr().err
    assert main(["fraud", "trian"]) == 2
    assert "did you mean 'train'" in capsys.readouterr().err
    assert main(["fundamentals", "softmx"]) == 2
    assert "did you mean 'softmax'" in capsys.readouterr().err


def test_help_is_written_for_users_and_list_explains_its_columns(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: mlsd" in out and "mlsd list" in out and "serve [--host --port]" in out
    assert "composition root" not in out and "Layers" not in out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "status working:" in out and "steps:" in out


@pytest.mark.parametrize(
    "argv, usage",
    [(["redis-cluster", "--help"], "usage: mlsd redis-cluster"), (["bench", "floor", "--help"], "usage: mlsd bench floor"),
     (["rag", "ask", "--help"], "usage: mlsd rag ask"), (["fundamentals", "softmax", "--help"], "usage: mlsd fundamentals softmax")],
)  # fmt: skip
def test_every_usage_line_names_the_mlsd_command(argv: list[str], usage: str, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(usage) and "(default: )" not in out


@pytest.mark.parametrize("system", ["ctr", "fraud", "rag", "recsys"])
def test_every_serve_step_takes_host_and_port(system: str, capsys: pytest.CaptureFixture[str]) -> None:
    spec = discover_systems()[system]
    step = next(s for s in importlib.import_module(f"{spec.package}.pipeline").STEPS if s.name == "serve")
    parser = step_parser(system, step)
    cfg = config_from_args(step.config, parser.parse_args(["--host", "0.0.0.0", "--port", "8123"]))
    assert (cfg.host, cfg.port) == ("0.0.0.0", 8123)
    assert (config_from_args(step.config, parser.parse_args([])).host) == "127.0.0.1"
    with pytest.raises(SystemExit) as exc:
        main([system, "serve", "--port", "0"])
    assert exc.value.code == 2 and "--port must be between 1 and 65535" in capsys.readouterr().err
