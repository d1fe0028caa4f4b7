"""LLM serving arithmetic: the schedulers against closed forms and a reference list scheduler, the step-time and
KV figures against `mlsd rag cost`'s, and batched greedy decoding of the real SmolLM2 equal to one prompt at a
time (what makes the measured tokens/s a fair comparison)."""

import heapq

import numpy as np
import pytest

from fundamentals import llm_serving as ls
from systems.rag_search.cost import GpuShape, LlmShape, serving_math


def test_workload_is_seeded_and_capped():
    a = ls.workload(1000, 50, 100, 300, seed=1)
    assert a.output_tokens.max() <= 300 and a.output_tokens.min() >= 1
    np.testing.assert_array_equal(a.output_tokens, ls.workload(1000, 50, 100, 300, seed=1).output_tokens)


def test_equal_lengths_make_static_and_continuous_the_same():
    work = ls.Workload(np.full(32, 10), np.full(32, 20))
    static, continuous = ls.simulate(work, 8, False), ls.simulate(work, 8, True)
    assert static.steps == continuous.steps == 4 * 20
    assert static.slot_utilisation == continuous.slot_utilisation == 1.0


def test_static_runs_each_batch_to_its_longest_sequence():
    work = ls.workload(100, 10, 30, 200, seed=2)
    out = work.output_tokens
    expected = sum(int(out[i : i + 8].max()) for i in range(0, 100, 8))
    s = ls.simulate(work, 8, False)
    assert s.steps == expected and s.tokens == int(out.sum())
    assert s.slot_utilisation == pytest.approx(out.sum() / (expected * 8))


def test_continuous_equals_a_reference_list_scheduler_and_beats_static():
    work = ls.workload(200, 10, 30, 200, seed=3)
    slots = [0] * 8  # the step at which each slot is next free
    heapq.heapify(slots)
    finish = 0
    for length in work.output_tokens:
        start = heapq.heappop(slots)
        heapq.heappush(slots, start + int(length))
        finish = max(finish, start + int(length))
    cont = ls.simulate(work, 8, True)
    assert cont.steps == finish
    assert cont.steps < ls.simulate(work, 8, False).steps


def test_step_time_and_kv_match_rag_cost():
    """`mlsd rag cost`: 128 KiB per token, a 7.5 ms step at batch 64 x 1,100 tokens, 388 sequences fit."""
    rag = serving_math(LlmShape(), GpuShape(), 1000, 100, 64)
    assert ls.step_seconds(64 * 1100, ls.LLAMA_8B, ls.H100_BANDWIDTH) * 1e3 == pytest.approx(
        rag["decode_step_ms"]
    )
    fit = ls.sequences_that_fit(ls.Workload(np.full(10, 1000), np.full(10, 100)), max_output=100, block=1)
    assert fit["kv_kib_per_token"] == rag["kv_kib_per_token"] == 128
    assert fit["paged"] == fit["contiguous"] == int(rag["max_concurrent_sequences"])


def test_paging_fits_more_sequences_than_reserving_the_maximum():
    work = ls.workload(500, 1000, 100, 1024, seed=0)
    fit = ls.sequences_that_fit(work, max_output=1024, block=16)
    assert fit["paged"] > fit["contiguous"]
    assert 0 <= fit["paged_waste"] < 16 / 1000


@pytest.fixture(scope="module")
def smollm():
    return ls.load_smollm()


@pytest.mark.slow  # loads SmolLM2 (dequantising its GGUF) and decodes five times: ~30-60 s on 2 shared cores
def test_batched_greedy_decoding_equals_one_prompt_at_a_time(smollm):
    tokenizer, model = smollm
    prompts = ls.PROMPTS[:4]  # different lengths: left padding is exercised
    batched, _ = ls.generate_batch(model, tokenizer, prompts, 8)
    for row, prompt in zip(batched, prompts, strict=True):
        alone, _ = ls.generate_batch(model, tokenizer, [prompt], 8)
        assert row.tolist() == alone[0].tolist(), prompt


def test_the_demo_prints_the_kv_and_schedule_tables_without_the_model(capsys):
    assert ls.demo(["--no-measure", "--requests", "64", "--batches", "8"]) == 0
    out = capsys.readouterr().out
    assert "sequences that fit" in out and "continuous" in out and "static" in out
