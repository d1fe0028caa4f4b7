"""Run an exercise's checks against a candidate's file: one line per check, a hint per failure, never a traceback.

A check is a property of the right answer (`Check(name, run, hint)`); `run(module)` raises `Failed` with what it
saw when the property does not hold, and may name a more precise hint when it recognises the mistake (it
compares the answer with the outputs of known wrong variants). An exception raised in the candidate's own code
is reported as one line naming the exception, the function and the line; so is a file that does not import.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np


class Failed(Exception):
    """A property does not hold. `detail` says what was seen; `hint` replaces the check's own when given."""

    def __init__(self, detail: str, hint: str | None = None) -> None:
        super().__init__(detail)
        self.detail, self.hint = detail, hint


class CandidateError(Exception):
    """The candidate's file cannot be imported or lacks a name the exercise needs: one line, exit 1."""


@dataclass(frozen=True)
class Check:
    name: str  # the property, as the candidate reads it
    run: Callable[[ModuleType], None]
    hint: str  # what usually breaks it


@dataclass(frozen=True)
class Outcome:
    name: str
    passed: bool
    detail: str = ""
    hint: str = ""


_loads = itertools.count()


def load_candidate(path: Path, names: Sequence[str] = ()) -> ModuleType:
    """Import the file at `path` as a fresh module; `names` must be defined in it."""
    module_name = f"mlsd_exercise_candidate_{next(_loads)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CandidateError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise CandidateError(f"{path} does not parse: SyntaxError: {exc.msg} (line {exc.lineno})") from None
    except Exception as exc:
        raise CandidateError(f"{path} failed while importing: {describe(exc, path)}") from None
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        raise CandidateError(f"{path} defines no {', '.join(missing)}; keep the names of the stub")
    return module


def describe(exc: BaseException, path: Path) -> str:
    """'ValueError in softmax() at line 12: <message>' for the innermost frame of the candidate's file."""
    message = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if Path(frame.filename).resolve() == path.resolve():
            where = f" in {frame.name}() at line {frame.lineno}"
            break
    text = f"{type(exc).__name__}{where}"
    if isinstance(exc, NotImplementedError):
        return f"{text}: not written yet"
    return f"{text}: {message}" if message else text


def run_checks(module: ModuleType, checks: Sequence[Check], path: Path) -> list[Outcome]:
    outcomes = []
    for check in checks:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                check.run(module)
        except Failed as exc:
            outcomes.append(Outcome(check.name, False, exc.detail, exc.hint or check.hint))
        except Exception as exc:
            # one line naming the exception (and where in the candidate's file); no hint for a body not written
            hint = "" if isinstance(exc, NotImplementedError) else check.hint
            outcomes.append(Outcome(check.name, False, describe(exc, path), hint))
        else:
            outcomes.append(Outcome(check.name, True))
    return outcomes


def check_file(topic: str, path: Path, checks: Sequence[Check], names: Sequence[str] = ()) -> int:
    """Print one line per check (and what was seen and the hint under each failure); 0 when all pass."""
    print(f"mlsd exercise check {topic}: {path}")
    try:
        module = load_candidate(path, names)
    except CandidateError as exc:
        print(f"  FAIL  {exc}")
        return 1
    outcomes = run_checks(module, checks, path)
    for o in outcomes:
        print(f"  {'pass' if o.passed else 'FAIL'}  {o.name}")
        if not o.passed:
            print(f"        seen: {o.detail}")
            if o.hint:
                print(f"        hint: {o.hint}")
    passed = sum(o.passed for o in outcomes)
    print(f"{passed} of {len(outcomes)} checks pass" + (": done." if passed == len(outcomes) else ""))
    return 0 if passed == len(outcomes) else 1
