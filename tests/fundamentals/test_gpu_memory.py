import pytest
import torch

from fundamentals import gpu_memory as gm

LLAMA_8B = gm.ModelShape(params=8e9, layers=32, hidden=4096, heads=32, kv_heads=8, head_dim=128)


def test_adam_fp32_is_16_bytes_per_param():
    parts = gm.training_memory(LLAMA_8B, 1, 1, "adam", "fp32")
    static = sum(v for k, v in parts.items() if not k.startswith("activations"))
    assert static == 16 * 8e9


def test_mixed_precision_is_also_16_bytes_and_pure_bf16_is_8():
    mixed = gm.training_memory(LLAMA_8B, 1, 1, "adamw", "bf16-mixed")
    pure = gm.training_memory(LLAMA_8B, 1, 1, "adamw", "bf16")
    assert sum(v for k, v in mixed.items() if not k.startswith("activations")) == 16 * 8e9
    assert sum(v for k, v in pure.items() if not k.startswith("activations")) == 8 * 8e9


def test_kv_cache_gqa_llama_8b():
    # 2 * 32 layers * 8 kv heads * 128 * 8192 tokens * 4 seqs * 2 bytes = 4 GiB exactly
    assert gm.kv_cache_bytes(LLAMA_8B, 8192, 4, "bf16") == 4 * 2**30
    mha = gm.ModelShape(**{**LLAMA_8B.__dict__, "kv_heads": 32})
    assert gm.kv_cache_bytes(mha, 8192, 4) == 4 * gm.kv_cache_bytes(LLAMA_8B, 8192, 4)


def test_korthikanti_activation_formula():
    s, b, h, a = 2048, 1, 4096, 32
    assert gm.activation_bytes_per_layer(s, b, h, a, 2, dropout=True) == s * b * h * (34 + 5 * a * s / h)
    assert gm.activation_bytes_per_layer(s, b, h, a, 2, dropout=True, flash=True) == 34 * s * b * h


def test_checkpointing_cuts_activations():
    plain = gm.training_memory(LLAMA_8B, 8192, 4, checkpointing=False)
    ckpt = gm.training_memory(LLAMA_8B, 8192, 4, checkpointing=True)
    assert ckpt["activations (checkpointed)"] < plain["activations"] / 5


def test_unknown_optimizer_error_names_choices():
    with pytest.raises(ValueError, match="choose one of adam"):
        gm.optimizer_bytes_per_param("adagrad", "fp32")


def test_formulas_match_real_cpu_tensors():
    rows = gm.check_against_tensors()
    for name, formula, real in rows:
        if name.startswith("activations"):
            assert real == pytest.approx(formula, rel=0.02), name  # + LayerNorm mean/rstd and the causal mask
        else:
            assert real == formula, name


def test_adam_state_bytes_after_one_step_exactly_two_copies():
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3))
    opt = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 32)).sum().backward()
    opt.step()
    real = gm.state_bytes(model, opt)
    assert real["optimizer"] == 2 * real["weights"] == 8 * sum(p.numel() for p in model.parameters())


@pytest.mark.cuda
def test_peak_cuda_memory_matches_calculator():
    V, D, H, L, T, B = 512, 256, 4, 4, 256, 8
    torch.manual_seed(0)
    model = gm.TinyGPT(V, D, H, L, T).cuda()
    opt = torch.optim.AdamW(model.parameters())
    idx = torch.randint(0, V, (B, T), device="cuda")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten()).backward()
    opt.step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    P = gm.gpt_param_count(V, D, L, T)
    parts = gm.training_memory(gm.ModelShape(P, L, D, H, H, D // H), T, B, "adamw", "fp32", flash=False)
    static = parts["weights"] + parts["gradients"] + parts["optimizer (adamw)"]
    logits = B * T * V * 4 * 3  # logits, log-softmax output and its gradient
    assert peak >= static
    assert peak - base <= 1.5 * (static + parts["activations"] + logits) + 2**20 * 16


def test_demo_prints_tables(capsys):
    assert gm.demo(["--params", "1e9", "--layers", "16", "--seq", "1024", "--batch", "1", "--no-check"]) == 0
    out = capsys.readouterr().out
    assert "optimizer (adamw)" in out and "KV cache" in out and "checkpointing" in out


# ZeRO paper (Rajbhandari et al. 2020), Figure 1: 7.5B parameters, mixed-precision Adam (K = 12), N_d = 64:
# baseline 120 GB, P_os 31.4 GB, P_os+g 16.6 GB, P_os+g+p 1.9 GB per device; Table 1: a 1T model on 1,024 GPUs
# with all three sharded needs 15.6 GB.
@pytest.mark.parametrize("stage, published_gb", [(0, 120), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_stages_match_the_published_figure(stage, published_gb):
    per_gpu = sum(gm.zero_memory_per_gpu(7.5e9, 64, stage, "adam", "bf16-mixed").values())
    assert round(per_gpu / 1e9, 1) == published_gb


def test_zero_3_for_a_trillion_parameters_on_1024_gpus():
    assert round(sum(gm.zero_memory_per_gpu(1e12, 1024, 3, "adam").values()) / 1e9, 1) == 15.6


def test_zero_formulas_by_stage():
    psi, n, k = 1e9, 8, 12
    per = {s: gm.zero_memory_per_gpu(psi, n, s) for s in range(4)}
    assert sum(per[0].values()) == (2 + 2 + k) * psi  # DDP: every rank holds everything
    assert sum(per[1].values()) == 2 * psi + 2 * psi + k * psi / n
    assert sum(per[2].values()) == 2 * psi + (2 + k) * psi / n
    assert sum(per[3].values()) == (2 + 2 + k) * psi / n
    one_gpu = {s: sum(gm.zero_memory_per_gpu(psi, 1, s).values()) for s in range(4)}
    assert set(one_gpu.values()) == {(2 + 2 + k) * psi}, "on one GPU there is nothing to shard"


def test_zero_unknown_stage_names_the_choices():
    with pytest.raises(ValueError, match="choose one of 0, 1, 2, 3"):
        gm.zero_memory_per_gpu(1e9, 8, 4)
