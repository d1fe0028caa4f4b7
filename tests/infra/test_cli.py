import subprocess
import sys
from pathlib import Path

import pytest

from infra import cli
from mlsd.cli import discover_systems, main
from infra.system import SystemSpec


def test_unknown_system_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nosuch", "train"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown system 'nosuch'" in err and "floor" in err


def test_bench_unknown_system_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "nosuch"]) == 2
    assert "unknown system 'nosuch'" in capsys.readouterr().err


def test_unknown_step_exit_2(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake = SystemSpec(name="toy", package="systems.toy", question="?", steps=("data", "train"))
    monkeypatch.setattr(cli, "discover_systems", lambda: {"toy": fake})
    assert main(["toy", "nosuchstep"]) == 2
    err = capsys.readouterr().err
    assert "unknown step 'nosuchstep' for toy; steps: data, train" in err and err.count("\n") == 1


def test_every_registered_system_names_a_cli_with_main() -> None:
    import importlib

    for spec in discover_systems().values():
        assert callable(importlib.import_module(f"{spec.package}.cli").main), spec.name
        assert "bench" in spec.steps, f"{spec.name} has no bench step"


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
