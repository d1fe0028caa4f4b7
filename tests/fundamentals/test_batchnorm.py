import pytest
import torch

from fundamentals import batchnorm as bn


@pytest.fixture(scope="module")
def models():
    return {norm: bn.train_model(norm, steps=150, seed=0) for norm in bn.NORMS}


@pytest.fixture(scope="module")
def data():
    return bn.make_data(1024, seed=1)


def test_all_norms_learn(models, data):
    x, y = data
    for norm, model in models.items():
        assert bn.accuracy_in_batches(model, x, y, 256, train_mode=False) > 0.7, norm


def test_eval_mode_batchnorm_is_per_sample(models, data):
    x, _ = data
    with torch.no_grad():
        full = models["batch"](x[:32])
        single = torch.cat([models["batch"](x[i : i + 1]) for i in range(32)])
    torch.testing.assert_close(full, single, atol=1e-5, rtol=1e-5)


def test_train_mode_batchnorm_depends_on_the_batch(models, data):
    x, y = data
    model = models["batch"]
    clean = bn.accuracy_in_batches(model, x, y, 256, train_mode=False)
    order = torch.argsort(y, stable=True)
    grouped = bn.accuracy_in_batches(model, x[order], y[order], 256, train_mode=True)
    assert grouped < clean - 0.3
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bn.accuracy_in_batches(model, x[:4], y[:4], 1, train_mode=True)


def test_accuracy_helper_does_not_mutate_running_stats(models, data):
    x, y = data
    before = models["batch"].net[0].running_mean.clone()
    bn.accuracy_in_batches(models["batch"], bn.shift(x), y, 64, train_mode=True)
    torch.testing.assert_close(models["batch"].net[0].running_mean, before)


@pytest.mark.parametrize("norm", ["layer", "group"])
def test_layer_and_group_norm_ignore_the_batch(models, data, norm):
    x, _ = data
    model = models[norm].train()  # even in train mode: nothing is computed across samples
    with torch.no_grad():
        torch.testing.assert_close(model(x[:16])[:1], model(x[:1]), atol=1e-5, rtol=1e-5)
    model.eval()


def test_shift_breaks_batchnorm_and_recalibration_fixes_it(models, data):
    x, y = data
    model = models["batch"]
    clean = bn.accuracy_in_batches(model, x, y, 256, train_mode=False)
    xs = bn.shift(x)
    shifted = bn.accuracy_in_batches(model, xs, y, 256, train_mode=False)
    fixed = bn.accuracy_in_batches(
        bn.recalibrate(model, bn.shift(bn.make_data(1024, seed=2)[0])), xs, y, 256, False
    )
    assert shifted < clean - 0.15
    assert fixed > clean - 0.03
    ln = models["layer"]
    assert bn.accuracy_in_batches(ln, xs, y, 256, False) == pytest.approx(
        bn.accuracy_in_batches(ln, x, y, 256, False), abs=0.01
    )


def test_unknown_norm_error_lists_choices():
    with pytest.raises(ValueError, match="choose one of batch, layer, group"):
        bn.make_norm("instance", 8)


def test_demo_prints_table(capsys):
    assert bn.demo(["--steps", "40"]) == 0
    out = capsys.readouterr().out
    assert "BatchNorm" in out and "recalibrated" in out and "Expected more than 1 value" in out
