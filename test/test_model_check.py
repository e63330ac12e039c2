"""Models that load but cannot serve are refused at load, by the engine, the node and the CLI.

Each model is a real ONNX file (test/bad_models.py) that onnxruntime opens without
complaint; only running it shows the problem.  The engine runs one check inference on the
backend that will serve and must refuse it with one SkdError naming the file; the node
then stops with one FATAL line (exit 1), saliency_replay with one line (exit 2).
"""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bad_models import UNSERVABLE, float16_input, log_of_negative
from node_harness import run_node_to_exit
from skd_saliency_ros.core.checkpoint import save_checkpoint
from skd_saliency_ros.core.engine import SaliencyEngine
from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.models import build_model

REPO = Path(__file__).resolve().parents[1]

#: What the refusal must say for each model (besides naming the file).
REASONS = {"float16 input": r"cannot run.*InvalidArgument.*float16",
           "rank-1 output": r"output of shape \(1,\).*expected \(1, 1, 32, 32\)",
           "NaN output (log of a negative)": "NaN or inf",
           "inf/NaN output (division by zero)": "NaN or inf",
           "false resolution metadata": r"metadata says input 64 but the graph.s input is 32x32",
           "integer output": "int32.*expected a float map"}


@pytest.mark.parametrize("case", sorted(UNSERVABLE))
def test_unservable_onnx_is_refused_at_load(case, tmp_path):
    """Each file opens in onnxruntime; the engine refuses it at load, naming file and reason."""
    path = UNSERVABLE[case](tmp_path / "bad.onnx")
    ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # it does load
    with pytest.raises(SkdError, match=REASONS[case]) as info:
        SaliencyEngine(path, device="cpu", backend="onnxruntime")
    assert str(path) in str(info.value)
    assert len(str(info.value).splitlines()) == 1, str(info.value)


def test_nan_weights_are_refused_on_the_torch_backend(tmp_path):
    """The torch backend runs the same check: a checkpoint with NaN weights is refused."""
    model = build_model("spatial", "skd-paper")
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(float("nan"))
    path = save_checkpoint(tmp_path / "nan_r32.pt", model, 32)
    with pytest.raises(SkdError, match="NaN or inf") as info:
        SaliencyEngine(path, device="cpu", backend="torch")
    assert str(path) in str(info.value)


def test_replay_refuses_an_unservable_model_with_exit_2(shared_data, tmp_path, capsys):
    """saliency_replay --model with a NaN model: one line naming it, exit 2."""
    from skd_saliency_ros.bags.replay import main as replay_main

    bag = tmp_path / "bag"
    assert replay_main(["make-bag", "--video", str(shared_data / "uav_gaze" / "car10.mp4"),
                        "--out", str(bag), "--max-frames", "2", "--no-progress"]) == 0
    capsys.readouterr()
    path = log_of_negative(tmp_path / "nan.onnx")
    assert replay_main([str(bag), "--model", str(path), "--no-output"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "NaN or inf" in err, err


def test_node_stops_on_an_unservable_model(ros_env, tmp_path):
    """The node stops at start-up: one FATAL line naming the file, exit 1, no traceback."""
    path = float16_input(tmp_path / "half.onnx")
    returncode, out = run_node_to_exit(ros_env, path)
    assert returncode == 1, out
    errors = [line for line in out.splitlines() if "FATAL" in line or "ERROR" in line]
    assert len(errors) == 1 and str(path) in errors[0] and "cannot run" in errors[0], out
    assert "Traceback" not in out and "processing failed" not in out, out


def test_shipped_default_passes_the_check_on_both_backends():
    """The default model is served by both backends after the check (nothing refused)."""
    for backend in ("onnxruntime", "torch"):
        engine = SaliencyEngine(device="cpu", backend=backend)
        raw = engine.predict(np.full((1, engine.in_channels, *engine.input_size), 0.5,
                                     np.float32))
        assert raw.shape == (1, *engine.input_size)
        assert np.isfinite(raw).all()
