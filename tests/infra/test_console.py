"""Tables print figures at the resolution they are read at."""

import re

from infra.console import _cell, markdown_table, progress
from infra.logs import configure_logging
from infra.serving.testing import logged


def test_seconds_and_percentages_print_one_decimal_and_metrics_four() -> None:
    assert _cell(17.2984, "seconds") == "17.3"
    assert _cell(77.0031, "cost saved vs rules only, %") == "77.0"
    assert _cell(3.14159, "train_s") == "3.1"
    assert _cell(0.74213, "AUC") == "0.7421"
    assert _cell(0.8378, "recall@1%FPR") == "0.8378"  # a % inside a name is not its unit
    assert _cell(1234567, "rows") == "1,234,567"


def test_markdown_rows_round_by_their_column() -> None:
    table = markdown_table("t", ("model", "AUC", "seconds"), [["lr", 0.712345, 12.3456]])
    assert "| lr | 0.7123 | 12.3 |" in table


def test_progress_piped_is_a_start_and_an_end_line_not_a_bar(capsys, restored_logging) -> None:  # noqa: ANN001
    configure_logging()  # as `mlsd` does at start: mlsd.* at INFO
    with logged("mlsd.progress") as records:
        assert list(progress(range(3), "embed")) == [0, 1, 2]
    assert [r.getMessage() for r in records][0] == "embed: 3 to do"
    assert re.fullmatch(r"embed: 3 done in \d+\.\d s", records[1].getMessage())
    assert "\r" not in capsys.readouterr().err
