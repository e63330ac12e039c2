"""Non-square model input (H x W) through checkpoint, engine (torch and ONNX) and export.

Real models built from the layer table, saved with the real checkpoint code, exported by the
real exporter and run by onnxruntime on real 1280x720 frames of the bundle.
"""

import numpy as np
import onnx
import pytest

from skd_saliency_ros.core.checkpoint import (CheckpointError, DEFAULT_MODEL, load_checkpoint,
                                              read_checkpoint, save_checkpoint)
from skd_saliency_ros.core.engine import SaliencyEngine
from skd_saliency_ros.core.frames import FrameSource
from skd_saliency_ros.core.input_size import InputSize, InputSizeError, parse_input_size
from skd_saliency_ros.core.models import build_model
from skd_saliency_ros.core.onnx_export import export_checkpoint


def test_parse_input_size_forms_and_refusals():
    """R, "R", "HxW" and (H, W) parse; sizes that no net can take are refused by value."""
    assert parse_input_size(64) == parse_input_size("64") == InputSize(64, 64)
    assert parse_input_size("48x80") == parse_input_size((48, 80)) == InputSize(48, 80)
    assert parse_input_size("64").label == "64" and parse_input_size("48X80").label == "48x80"
    for bad in ("48x81", "4x8", "x80", "48x", True, 64.0, (48,), "sixty"):
        with pytest.raises(InputSizeError):
            parse_input_size(bad)


def _frames(shared_data, n=3):
    return list(FrameSource(shared_data / "uav_gaze" / "car10.mp4").frames(0, n))


@pytest.mark.parametrize("arch", ["skd-paper", "skd-fast"])
def test_non_square_model_runs_alike_on_torch_and_onnx(arch, shared_data, tmp_path):
    """A 48x80 checkpoint: format 2, maps at 48x80 upsampled to the frame, torch == ONNX."""
    model = build_model("fused", arch).eval()
    path = save_checkpoint(tmp_path / "wide.pt", model, "48x80")
    payload = read_checkpoint(path)
    assert payload["format_version"] == 2 and payload["input_size"] == [48, 80]
    onnx_path = export_checkpoint(path, tmp_path / "wide.onnx")
    props = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
    assert props["input_size"] == "48x80" and "resolution" not in props
    maps = {}
    for backend, model_path in (("torch", path), ("onnxruntime", onnx_path)):
        engine = SaliencyEngine(model_path, device="cpu", backend=backend, threads=1)
        assert engine.input_size == (48, 80) and engine.resolution == "48x80"
        out = [engine.step(f, k * 0.1).saliency for k, f in enumerate(_frames(shared_data))]
        maps[backend] = np.stack(out)
        assert maps[backend].shape == (3, 48, 80)  # model-size maps; outputs upsample them
        raw = engine.predict(np.full((2, 6, 48, 80), 0.5, np.float32))
        assert raw.shape == (2, 48, 80)
    assert np.abs(maps["torch"] - maps["onnxruntime"]).max() < 1e-3


def test_old_square_files_load_unchanged():
    """The shipped default (format 1, resolution 64) and its ONNX twin read as 64x64."""
    payload = read_checkpoint(DEFAULT_MODEL)
    assert payload["format_version"] == 1 and payload["resolution"] == 64
    assert "input_size" not in payload
    for path in (DEFAULT_MODEL, DEFAULT_MODEL.with_suffix(".onnx")):
        engine = SaliencyEngine(path, device="cpu", backend="onnxruntime", threads=1)
        assert engine.input_size == (64, 64) and engine.resolution == 64


def test_bad_sizes_in_model_files_are_refused_by_name(tmp_path):
    """A stored size no net can take, or ONNX metadata that contradicts its graph."""
    model = build_model("fused", "skd-paper").eval()
    path = save_checkpoint(tmp_path / "wide.pt", model, (48, 80))
    payload = read_checkpoint(path)
    payload["input_size"] = [50, 80]
    import torch
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pt: the stored input size"):
        load_checkpoint(bad)
    onnx_path = export_checkpoint(path, tmp_path / "wide.onnx", dynamic_batch=False)
    proto = onnx.load(onnx_path)
    for prop in proto.metadata_props:
        if prop.key == "input_size":
            prop.value = "64x64"
    liar = tmp_path / "liar.onnx"
    onnx.save(proto, liar)
    with pytest.raises(CheckpointError, match=r"liar\.onnx: the metadata says input 64 but "
                                              r"the graph's input is 48x80"):
        SaliencyEngine(liar, device="cpu", backend="onnxruntime", threads=1)
