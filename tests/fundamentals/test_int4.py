"""Group-wise RTN quantization: the grid reconstructs exactly, every error is at most half a step, the codes fit
their bits, the stored bytes follow the formula, smaller groups err less; on the real MiniLM, int8 keeps the
rag encoder's parity bar (cosine >= 0.99) and int4 groups rank as they should."""

import pytest
import torch

from fundamentals import int4


def heavy_tailed(out_f: int = 64, in_f: int = 256, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.distributions.StudentT(3.0).sample((out_f, in_f)) * 0.02
        + torch.randn(out_f, in_f, generator=g) * 0
    )


def test_values_on_the_grid_come_back_exactly():
    scale = torch.tensor([[0.5, 0.25]])  # one row, two groups of 4
    q = torch.tensor([[-7, -1, 0, 7, 3, -3, 1, 7]], dtype=torch.int8)  # each group reaches 7
    w = int4.rtn_dequantize(q, scale)
    q2, s2 = int4.rtn_quantize(w, 4, 4)
    torch.testing.assert_close(int4.rtn_dequantize(q2, s2), w)


@pytest.mark.parametrize("bits, group", [(4, 32), (4, 128), (4, None), (8, None)])
def test_codes_fit_their_bits_and_errors_are_at_most_half_a_step(bits, group):
    w = heavy_tailed()
    q, scale = int4.rtn_quantize(w, bits, group)
    assert q.min() >= -(2 ** (bits - 1)) and q.max() <= 2 ** (bits - 1) - 1
    g = w.shape[1] if group is None else group
    step = scale.repeat_interleave(g, dim=1)  # (out, in)
    assert torch.all((w - int4.rtn_dequantize(q, scale)).abs() <= step / 2 + 1e-7)


def test_smaller_groups_and_more_bits_err_less():
    w = heavy_tailed()

    def error(bits, group):
        return float((w - int4.rtn_dequantize(*int4.rtn_quantize(w, bits, group))).norm() / w.norm())

    assert error(4, 32) < error(4, 64) < error(4, 128) < error(4, None)
    assert error(8, None) < error(4, 32)


def test_stored_bytes_and_a_group_that_does_not_divide():
    assert int4.stored_bytes(1024, 4, 1024 // 128) * 8 / 1024 == pytest.approx(4 + 16 / 128)
    with pytest.raises(ValueError, match="does not divide"):
        int4.rtn_quantize(torch.zeros(2, 100), 4, 32)


@pytest.fixture(scope="module")
def minilm():
    torch.set_num_threads(1)
    return int4.load_minilm()


def test_minilm_int8_keeps_the_rag_encoders_bar_and_int4_groups_rank(minilm):
    tokenizer, model = minilm
    assert int4.embedding_quality(tokenizer, model, model)["fp32_top1_right"] == 1.0
    q8 = int4.quantize_linears(model, 8, None)
    assert int4.embedding_quality(tokenizer, model, q8.model)["min_cos"] >= 0.99
    assert q8.fp32_bytes / q8.weight_bytes == pytest.approx(4.0, rel=0.01)
    cos = {g: int4.embedding_quality(tokenizer, model, int4.quantize_linears(model, 4, g).model)["mean_cos"]
           for g in (32, None)}  # fmt: skip
    assert cos[32] > cos[None]
    assert sum(p.numel() for p in model.parameters()) > 20e6  # the real 22.7M-parameter encoder, not a stub
