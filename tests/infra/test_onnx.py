from pathlib import Path

import numpy as np
import pytest
import torch

from infra.serving.onnx import available_providers, make_session


def test_session_matches_torch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
    x = torch.randn(5, 8)
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}}, dynamo=False)  # fmt: skip
    sess = make_session(path, threads=2)
    assert sess.get_session_options().intra_op_num_threads == 2
    got = sess.run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), atol=1e-5)
    assert available_providers()[-1] == "CPUExecutionProvider"


def test_missing_model_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="train"):
        make_session(tmp_path / "nope.onnx")
