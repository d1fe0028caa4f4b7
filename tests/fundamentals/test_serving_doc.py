"""fundamentals/SERVING.md: every command it quotes is a real topic or step, every link and heading exists, and the
figures that are arithmetic (ZeRO, the LLM schedules, the KV fits) are the ones the code computes today."""

import re

import pytest

from fundamentals import gpu_memory as gm
from fundamentals import llm_serving as ls
from infra.config import REPO_ROOT
from tests.doc_checks import check_command, check_links, quoted_commands

DOC = "fundamentals/SERVING.md"
TEXT = (REPO_ROOT / DOC).read_text()


def table_rows(first_cell: str) -> list[list[str]]:
    """The cells of every Markdown table row whose first cell is `first_cell`."""
    rows = []
    for line in TEXT.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            rows.append(cells)
    return rows


def test_commands_are_real_and_links_resolve():
    commands = quoted_commands(TEXT)
    assert {"mlsd fundamentals batching", "mlsd fundamentals llm-serving", "mlsd fundamentals int4"} <= set(
        commands
    )
    for command in commands:
        check_command(command)
    check_links(DOC, TEXT)


@pytest.mark.parametrize("stage", range(4))
def test_zero_table_is_what_gpu_mem_computes(stage):
    name = gm.ZERO_STAGES[stage]
    (row,) = table_rows(f"{stage} {name}")
    expected = [gm.gib(sum(gm.zero_memory_per_gpu(8e9, n, stage).values())) for n in (1, 8, 64)]
    assert row[1:] == expected


def test_llm_schedule_table_is_what_the_simulation_computes():
    work = ls.workload(512, 1000, 100, 1024, seed=0)
    for batch in (8, 64, 256):
        rows = {r[1]: r for r in table_rows(str(batch))}
        for name, continuous in (("static", False), ("continuous", True)):
            s = ls.simulate(work, batch, continuous)
            assert rows[name][2:5] == [
                f"{s.steps:,}",
                f"{s.tokens / s.seconds:,.0f}",
                f"{s.slot_utilisation:.0%}",
            ]


def test_kv_fits_are_what_the_code_computes():
    fit = ls.sequences_that_fit(ls.workload(512, 1000, 100, 1024, seed=0), 1024, 16)
    assert re.search(rf"contiguous, reserve prompt \+ max output .*\| {fit['contiguous']} \|", TEXT)
    assert re.search(rf"paged, 16-token blocks .*\| {fit['paged']} \|", TEXT)
