import pytest
import torch

from fundamentals import adapters as ad

SMALL = ad.Config(pretrain_steps=120, adapt_steps=40, adapt_examples=128, batch=64)


def test_our_lora_equals_peft_with_same_weights():
    eq = ad.peft_equivalence(ad.Config(), seed=0)
    assert eq["lora_delta"] > 1e-3  # the LoRA path changes the output, so equality below means something
    assert eq["max_out_diff"] < 1e-6
    assert eq["max_grad_diff"] < 1e-5
    assert eq["ours_trainable_lora"] == eq["peft_trainable"]


def test_lora_starts_at_the_base_function_and_merges_exactly():
    torch.manual_seed(0)
    base = torch.nn.Linear(16, 24)
    lora = ad.LoRALinear(base, r=4, alpha=8)
    x = torch.randn(5, 16)
    torch.testing.assert_close(lora(x), base(x))  # B = 0 at init
    with torch.no_grad():
        lora.lora_B.normal_()
    merged = lora.merged()
    torch.testing.assert_close(merged(x), lora(x), atol=1e-5, rtol=1e-5)
    assert not base.weight.requires_grad
    assert {n for n, p in lora.named_parameters() if p.requires_grad} == {"lora_A", "lora_B"}


def test_trainable_parameter_counts():
    cfg = ad.Config()
    D, r, L = cfg.d_model, cfg.lora_rank, cfg.n_layers
    lora = ad.add_lora(ad.TinyTransformer(cfg, 2), ("q_proj", "v_proj"), r, cfg.lora_alpha)
    assert sum(p.numel() for p in lora.parameters() if p.requires_grad) == L * 2 * r * (D + D)
    prompt = ad.add_soft_prompt(ad.TinyTransformer(cfg, 2), cfg.prompt_len)
    assert sum(p.numel() for p in prompt.parameters() if p.requires_grad) == cfg.prompt_len * D


def test_soft_prompt_changes_output_and_only_prompt_gets_gradients():
    cfg = ad.Config()
    torch.manual_seed(0)
    model = ad.add_soft_prompt(ad.TinyTransformer(cfg, 2), cfg.prompt_len)
    x = torch.randint(0, cfg.vocab, (4, cfg.seq))
    model(x).sum().backward()
    assert model.prompt.grad is not None and model.prompt.grad.abs().sum() > 0
    assert all(p.grad is None for n, p in model.named_parameters() if n != "prompt")


def test_pretraining_learns_and_methods_compare(tmp_path):
    base_acc, rows = ad.compare_methods(SMALL, cache=tmp_path / "base.pt")
    assert base_acc > 0.8  # 4-way task: chance is ~0.3
    by = {str(r["method"]).split(" ")[0]: r for r in rows}
    assert by["LoRA"]["trainable"] < by["full"]["trainable"] / 20
    assert by["prompt"]["trainable"] < by["LoRA"]["trainable"]
    for r in rows:
        assert r["opt_bytes"] == 8 * r["trainable"]  # Adam: exp_avg + exp_avg_sq, fp32
    assert by["LoRA"]["accuracy"] > 0.85
    assert by["full"]["accuracy"] > 0.85
    assert (tmp_path / "base.pt").exists()
    _, again = ad.pretrained_model(SMALL, tmp_path / "base.pt")
    assert again == pytest.approx(base_acc)


def test_demo_prints_table(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the cache goes under tmp_path/.mlsd
    assert ad.demo(["--pretrain-steps", "30", "--adapt-steps", "5", "--examples", "64"]) == 0
    out = capsys.readouterr().out
    assert "peft" in out and "prompt tuning" in out and "trainable params" in out
