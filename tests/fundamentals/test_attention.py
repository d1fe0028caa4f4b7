import pytest
import torch
import torch.nn.functional as F

from fundamentals import attention as at


@pytest.fixture
def layer_and_x():
    torch.manual_seed(0)
    return at.CausalSelfAttention(64, 4).eval(), torch.randn(2, 17, 64)


def test_full_forward_matches_sdpa(layer_and_x):
    attn, x = layer_and_x
    with torch.no_grad():
        torch.testing.assert_close(attn(x), attn.forward_sdpa(x), atol=1e-5, rtol=1e-5)


def test_matches_nn_multihead_attention_with_same_weights(layer_and_x):
    attn, x = layer_and_x
    ref = torch.nn.MultiheadAttention(64, 4, batch_first=True)
    with torch.no_grad():
        ref.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
        ref.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
        ref.out_proj.load_state_dict(attn.o_proj.state_dict())
        mask = torch.ones(17, 17, dtype=torch.bool).triu(1)
        torch.testing.assert_close(
            attn(x), ref(x, x, x, attn_mask=mask, need_weights=False)[0], atol=1e-5, rtol=1e-5
        )


def test_kv_cache_decode_equals_full_forward(layer_and_x):
    attn, x = layer_and_x
    with torch.no_grad():
        torch.testing.assert_close(at.decode_all(attn, x), attn(x), atol=1e-5, rtol=1e-5)


def test_causal_future_tokens_do_not_leak(layer_and_x):
    attn, x = layer_and_x
    x2 = x.clone()
    x2[:, 10:] = torch.randn_like(x2[:, 10:])
    with torch.no_grad():
        torch.testing.assert_close(attn(x)[:, :10], attn(x2)[:, :10])
        assert not torch.allclose(attn(x)[:, 10:], attn(x2)[:, 10:])


def test_one_token_gradients_match_sdpa(layer_and_x):
    attn, x = layer_and_x
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    attn(x1)[:, -1].sum().backward()
    q, k, v = (attn.split_heads(p(x2)) for p in (attn.q_proj, attn.k_proj, attn.v_proj))
    out = attn.o_proj(attn.merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True)))
    out[:, -1].sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-5, rtol=1e-4)


def test_kv_cache_size(layer_and_x):
    attn, x = layer_and_x
    cache = at.KVCache()
    with torch.no_grad():
        at.decode_all_into(attn, x, cache)
    assert cache.length == 17
    assert cache.nbytes() == 2 * x.shape[0] * 17 * 64 * 4  # K and V, B x T x D float32
    assert at.kv_bytes_per_token(64, bytes_per_el=4) * 17 * x.shape[0] == cache.nbytes()


@pytest.mark.parametrize("t", [1, 9, 33])
def test_flop_formula_matches_torch_flop_counter(t):
    torch.manual_seed(0)
    attn = at.CausalSelfAttention(64, 4)
    assert at.measured_decode_flops(attn, t) == at.flops_per_token(64, t, cached=True)


def test_bad_heads_error_says_what_to_do():
    with pytest.raises(ValueError, match="not divisible"):
        at.CausalSelfAttention(64, 5)


def test_demo_prints_tables(capsys):
    assert at.demo(["--d-model", "32", "--heads", "4", "--seq", "16", "--batch", "1"]) == 0
    out = capsys.readouterr().out
    assert "scaled_dot_product_attention" in out and "KV-cache decode" in out and "FlopCounterMode" in out
