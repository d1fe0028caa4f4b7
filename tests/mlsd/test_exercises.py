"""`mlsd exercise`: each reference solution passes its checks, each untouched stub fails readably with exit 1, and a
half-right solution with one planted bug is caught by the hint meant for that bug."""

from __future__ import annotations

import inspect
import textwrap
from importlib import resources
from pathlib import Path

import pytest

import fundamentals.adapters
import fundamentals.attention
import fundamentals.vectorise
from mlsd.cli import main as mlsd_main
from mlsd.exercises import TOPICS
from mlsd.exercises.cli import main

# topic -> (the candidate's file with one bug planted, words of the hint that must name it)
BUGS: dict[str, tuple[str, str]] = {
    "softmax": (
        """
        import numpy as np

        def softmax(x, axis=-1):
            e = np.exp(x)
            return e / e.sum(axis=axis, keepdims=True)

        def logsumexp(x, axis=-1):
            m = x.max(axis=axis, keepdims=True)
            return np.squeeze(m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True)), axis=axis)
        """,
        "the max of the logits is not subtracted: overflow at 89",
    ),
    "kmeans-pp": (
        """
        import numpy as np

        def kmeans_plusplus(X, k, rng):
            n = len(X)
            chosen = [int(rng.integers(n))]
            d2 = ((X - X[chosen[0]]) ** 2).sum(1)
            for _ in range(1, k):
                d = np.sqrt(d2)
                chosen.append(int(rng.choice(n, p=d / d.sum())))  # the bug: D(x), not D(x)^2
                d2 = np.minimum(d2, ((X - X[chosen[-1]]) ** 2).sum(1))
            return X[chosen]
        """,
        "proportional to D(x), not D(x)^2",
    ),
    "batchnorm": (
        """
        import torch
        from torch import nn

        class BatchNorm1d(nn.Module):
            def __init__(self, num_features, eps=1e-5, momentum=0.1):
                super().__init__()
                self.eps, self.momentum = eps, momentum
                self.weight = nn.Parameter(torch.ones(num_features))
                self.bias = nn.Parameter(torch.zeros(num_features))
                self.register_buffer("running_mean", torch.zeros(num_features))
                self.register_buffer("running_var", torch.ones(num_features))

            def forward(self, x):
                mean, var = x.mean(0), x.var(0, unbiased=False)  # the bug: batch statistics in eval() too
                if self.training:
                    with torch.no_grad():
                        self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                        self.running_var.mul_(1 - self.momentum).add_(self.momentum * x.var(0, unbiased=True))
                return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias
        """,
        "in eval() normalise with running_mean / running_var",
    ),
    "two-tower-loss": (
        """
        import torch
        import torch.nn.functional as F

        def in_batch_softmax_loss(user_vecs, video_vecs, log_q, temperature):
            logits = user_vecs @ video_vecs.T / temperature  # the bug: no logQ correction
            return F.cross_entropy(logits, torch.arange(user_vecs.shape[0]), reduction="sum")
        """,
        "subtract log Q(v_j) from every logit",
    ),
    "psi": (
        """
        import numpy as np

        def psi(reference, live, n_bins=10, eps=1e-4):
            edges = np.unique(np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1]))
            ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=edges.size + 1)
            liv = np.bincount(np.searchsorted(edges, live, side="right"), minlength=edges.size + 1)
            ref, liv = ref / reference.size, liv / live.size  # the bug: no clipping at eps
            return float(np.sum((liv - ref) * np.log(liv / ref)))
        """,
        "clip the bin shares at eps before the log",
    ),
    "ranking-metrics": (
        """
        import math

        def recall_at_k(ranked, relevant, k):
            relevant = set(relevant)
            return len(set(ranked[:k]) & relevant) / k if relevant else 0.0  # the bug: divides by k

        def ndcg_at_k(ranked, relevant, k):
            relevant = set(relevant)
            dcg = sum(1 / math.log2(r + 1) for r, d in enumerate(ranked[:k], start=1) if d in relevant)
            ideal = sum(1 / math.log2(r + 1) for r in range(1, min(len(relevant), k) + 1))
            return dcg / ideal if ideal else 0.0
        """,
        "not by k (that is precision@k)",
    ),
    "cuped": (
        """
        import numpy as np

        def cuped(y, x):
            xc, yc = x - x.mean(), y - y.mean()
            theta = (xc * yc).sum() / (xc * xc).sum()
            return y - theta * x  # the bug: x is not centred
        """,
        "subtract theta * (x - mean(x))",
    ),
    "velocity": (
        """
        from collections import defaultdict, deque

        import numpy as np

        def velocity_counts(ts, card, window_s):
            order = np.lexsort((ts, card))
            span = int(ts.max() - ts.min()) + window_s + 1
            key = card[order] * span + (ts[order] - ts.min())
            start = np.searchsorted(key, key - window_s, side="right")
            out = np.empty(len(ts), dtype=np.int64)
            out[order] = np.arange(len(ts)) - start + 1
            return out

        class VelocityCounter:
            def __init__(self, window_s):
                self.window_s = window_s
                self.events = defaultdict(deque)

            def add(self, card, ts):
                q = self.events[card]
                q.append(ts)
                while q[0] < ts - self.window_s:  # the bug: keeps the event exactly w seconds old
                    q.popleft()
                return len(q)
        """,
        "evict from the left while oldest <= ts - w",
    ),
}


def planted(module, old: str, new: str) -> str:
    """The project's own module with one line changed: a half-right solution."""
    source = inspect.getsource(module)
    assert source.count(old) == 1, f"{old!r} is not once in {module.__name__}"
    return source.replace(old, new)


BUGS["vectorise"] = (
    planted(
        fundamentals.vectorise,
        'start = np.searchsorted(key, key - WINDOW_S, side="right")',
        'start = np.searchsorted(key, key - WINDOW_S, side="left")',
    ),
    "the window is (ts - 1 h, ts]",
)
BUGS["attention-kv"] = (
    planted(
        fundamentals.attention,
        "scores = q @ k.transpose(-2, -1) / math.sqrt(attn.d_head)  # (B, H, 1, t)",
        "scores = q @ k.transpose(-2, -1) / math.sqrt(attn.d_model)  # (B, H, 1, t)",
    ),
    "1 / sqrt(D / H), not 1 / sqrt(D)",
)
BUGS["lora"] = (
    planted(fundamentals.adapters, "self.r, self.scaling = r, alpha / r", "self.r, self.scaling = r, alpha"),
    "scale by alpha / r, not alpha",
)


def check(topic: str, folder: Path, source: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    (folder / f"{TOPICS[topic].module}.py").write_text(source)
    rc = main(["check", topic, "--dir", str(folder)])
    return rc, capsys.readouterr().out


def test_at_least_eleven_topics_each_with_stub_checks_and_solution() -> None:
    assert len(TOPICS) >= 11
    assert set(BUGS) == set(TOPICS), "every topic has a planted bug below"
    for topic in TOPICS.values():
        for kind in ("stubs", "checks", "solutions"):
            assert (resources.files(f"mlsd.exercises.{kind}") / f"{topic.module}.py").is_file(), (kind, topic)


@pytest.mark.parametrize("topic", TOPICS)
def test_reference_solution_passes(topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = (resources.files("mlsd.exercises.solutions") / f"{TOPICS[topic].module}.py").read_text()
    rc, out = check(topic, tmp_path, source, capsys)
    assert rc == 0, out
    assert "FAIL" not in out and "checks pass: done." in out


@pytest.mark.parametrize("topic", TOPICS)
def test_untouched_stub_fails_readably(
    topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["start", topic, "--dir", str(tmp_path)]) == 0
    assert f"mlsd exercise check {topic}" in capsys.readouterr().out
    rc = main(["check", topic, "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "NotImplementedError" in out and "not written yet" in out and "Traceback" not in out
    fails = [line for line in out.splitlines() if line.lstrip().startswith("FAIL")]
    assert fails, out


@pytest.mark.parametrize("topic", TOPICS)
def test_planted_bug_is_caught_by_its_hint(
    topic: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, hint = BUGS[topic]
    rc, out = check(topic, tmp_path, textwrap.dedent(source), capsys)
    assert rc == 1, out
    hints = [line.strip() for line in out.splitlines() if line.strip().startswith("hint:")]
    assert any(hint in h for h in hints), f"no hint says {hint!r}:\n{out}"
    assert "Traceback" not in out


def test_an_exception_in_the_candidates_code_is_one_line(tmp_path: Path, capsys) -> None:
    source = (
        "def softmax(x, axis=-1):\n    return 1 / 0\n\ndef logsumexp(x, axis=-1):\n    raise KeyError('k')\n"
    )
    rc, out = check("softmax", tmp_path, source, capsys)
    assert rc == 1 and "Traceback" not in out
    assert "ZeroDivisionError in softmax() at line 2: division by zero" in out
    assert "KeyError in logsumexp() at line 5" in out


def test_a_file_that_does_not_parse_is_one_line(tmp_path: Path, capsys) -> None:
    rc, out = check("cuped", tmp_path, "def cuped(y, x)\n    return y\n", capsys)
    assert rc == 1 and "SyntaxError" in out and "(line 1)" in out and "Traceback" not in out


def test_a_missing_name_is_one_line(tmp_path: Path, capsys) -> None:
    rc, out = check(
        "ranking-metrics", tmp_path, "def recall_at_k(ranked, relevant, k):\n    return 0.0\n", capsys
    )
    assert rc == 1 and "defines no ndcg_at_k" in out


def test_check_before_start_says_what_to_run(tmp_path: Path, capsys) -> None:
    assert main(["check", "psi", "--dir", str(tmp_path)]) == 1
    assert f"mlsd exercise start psi --dir {tmp_path}" in capsys.readouterr().err


def test_start_does_not_overwrite_without_force(tmp_path: Path, capsys) -> None:
    assert main(["start", "cuped", "--dir", str(tmp_path)]) == 0
    (tmp_path / "cuped.py").write_text("# my work\n")
    assert main(["start", "cuped", "--dir", str(tmp_path)]) == 1
    assert (tmp_path / "cuped.py").read_text() == "# my work\n"
    assert main(["start", "cuped", "--dir", str(tmp_path), "--force"]) == 0
    assert "NotImplementedError" in (tmp_path / "cuped.py").read_text()


def test_start_defaults_to_a_folder_in_the_working_directory(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["start", "softmax"]) == 0
    assert (tmp_path / "mlsd-exercises" / "softmax.py").is_file()


def test_mlsd_exercise_through_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    assert mlsd_main(["exercise", "list"]) == 0
    out = capsys.readouterr().out
    assert all(topic in out for topic in TOPICS)
    assert mlsd_main(["exercise", "check", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown topic 'nosuch'" in err


def test_a_bad_flag_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "psi", "--nosuch"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["--help"]) == 0
