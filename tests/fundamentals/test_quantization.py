import pytest

from fundamentals import quantization as qz


@pytest.fixture(scope="module")
def rows():
    return {r["variant"]: r for r in qz.compare(seed=0, steps=60, repeats=5, batch=64, width=128)}


def test_int8_is_about_four_times_smaller(rows):
    for fp32, int8 in (
        ("onnx fp32", "onnx int8 dynamic"),
        ("onnx fp32", "onnx int8 static"),
        ("torch fp32", "torch int8 dynamic"),
    ):
        assert rows[int8]["size_kb"] < 0.4 * rows[fp32]["size_kb"], int8


def test_int8_keeps_accuracy(rows):
    base = rows["onnx fp32"]["accuracy"]
    assert base > 0.4  # 10 classes: the model learned something
    for name, r in rows.items():
        assert r["accuracy"] > base - 0.03, name
        assert r["agreement"] > 0.9, name


def test_onnx_fp32_matches_torch_fp32(rows):
    assert rows["torch fp32"]["agreement"] == 1.0


def test_demo_prints_table(capsys):
    assert qz.demo(["--widths", "32", "--steps", "10", "--repeats", "3", "--batch", "16"]) == 0
    out = capsys.readouterr().out
    assert "onnx int8 static" in out and "batch 1 ms" in out
