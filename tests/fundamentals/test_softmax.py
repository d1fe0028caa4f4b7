import numpy as np
import pytest
import torch

from fundamentals import softmax as sm
from fundamentals.cli import main


def test_overflow_threshold_is_log_float32_max():
    over = sm.float32_exp_overflow_threshold()
    assert over.dtype == np.float32
    assert 88.72 < float(over) < 88.73
    with np.errstate(over="ignore"):
        assert np.isinf(np.exp(over))
        assert np.isfinite(np.exp(np.nextafter(over, np.float32(0))))


def test_underflow_threshold():
    under = sm.float32_exp_underflow_threshold()
    assert -104.0 < float(under) < -103.9
    with np.errstate(under="ignore"):
        assert np.exp(under) == 0
        assert np.exp(np.nextafter(under, np.float32(0))) > 0


def test_naive_breaks_where_stable_does_not():
    x = np.array([[89.0, 0.0, 1.0], [-1000.0, -1000.0, -1001.0]], dtype=np.float32)
    with np.errstate(all="ignore"):
        assert np.isnan(sm.naive_softmax_np(x)).all(axis=-1).sum() >= 1
        assert np.isnan(sm.naive_softmax_np(x)[1]).all()  # 0/0 from underflow
    stable = sm.softmax_np(x)
    assert np.isfinite(stable).all()
    np.testing.assert_allclose(stable.sum(-1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", list(sm.adversarial_logits()))
def test_matches_torch_on_adversarial_inputs(name):
    x = sm.adversarial_logits(seed=1)[name]
    t = torch.from_numpy(x)
    np.testing.assert_allclose(sm.softmax_np(x), torch.softmax(t, -1).numpy(), atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(sm.log_softmax_np(x), torch.log_softmax(t, -1).numpy(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(sm.softmax(t), torch.softmax(t, -1), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(sm.log_softmax(t), torch.log_softmax(t, -1), atol=1e-6, rtol=1e-6)
    assert np.isfinite(sm.log_softmax_np(x)).all()


def test_logsumexp_matches_torch():
    x = sm.adversarial_logits(seed=2)["+1000"]
    np.testing.assert_allclose(
        sm.logsumexp_np(x)[:, 0], torch.logsumexp(torch.from_numpy(x), -1).numpy(), rtol=1e-6
    )


def test_hand_written_backward_gradcheck():
    x = (
        torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 30
    ).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: sm.SoftmaxFunction.apply(t, -1), (x,))
    assert torch.autograd.gradcheck(lambda t: sm.LogSoftmaxFunction.apply(t, -1), (x,))
    assert torch.autograd.gradcheck(lambda t: sm.SoftmaxFunction.apply(t, 0), (x,))


def test_backward_matches_autograd_of_torch_softmax():
    x = torch.randn(3, 7, generator=torch.Generator().manual_seed(1)) * 100
    g = torch.randn(3, 7, generator=torch.Generator().manual_seed(2))
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    (sm.LogSoftmaxFunction.apply(a, -1) * g).sum().backward()
    (torch.log_softmax(b, -1) * g).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-6, rtol=1e-5)


def test_demo_prints_table(capsys):
    assert main(["softmax"]) == 0
    out = capsys.readouterr().out
    assert "88.7228" in out and "log_softmax err" in out and "gradcheck" in out


def test_unknown_topic_returns_2(capsys):
    assert main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlsd fundamentals: unknown topic 'nope'; topics: softmax")
    assert err.count("\n") == 1


def test_no_topic_lists_topics(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "gpu-mem" in out and "distributed" in out


def test_topic_import_is_lazy():
    import subprocess
    import sys

    code = "import sys; from fundamentals.cli import main; main(['softmax']); print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False")
