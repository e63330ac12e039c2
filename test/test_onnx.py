"""ONNX export: a valid file with metadata and a dynamic batch, equal to torch on real frames."""

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL, load_checkpoint
from skd_saliency_ros.core.models import build_model
from skd_saliency_ros.core.onnx_export import (INPUT_NAME, MIN_OPSET, OnnxExportError,
                                               export_checkpoint, export_onnx)
from skd_saliency_ros.core.onnx_runtime import EXPORT_VERSION, checkpoint_sha256, ort_session


def real_batch(shared_data, resolution, count=4):
    """Return (count, 6, R, R) float32 frame pairs (t, t-1) from car10, in [0, 1]."""
    cap = cv2.VideoCapture(str(shared_data / "uav_gaze" / "car10.mp4"))
    small = []
    for _ in range(count + 1):
        ok, bgr = cap.read()
        assert ok
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        small.append(cv2.resize(rgb, (resolution, resolution), interpolation=cv2.INTER_AREA))
    cap.release()
    pairs = np.stack([np.concatenate([small[i + 1], small[i]], axis=2) for i in range(count)])
    return pairs.transpose(0, 3, 1, 2).astype(np.float32) / 255


@pytest.fixture(scope="module")
def model():
    """Return the shipped default model and its resolution (it is part of the package)."""
    if not DEFAULT_MODEL.is_file():
        pytest.fail(f"{DEFAULT_MODEL} is missing: the package ships its default model")
    net, payload = load_checkpoint(DEFAULT_MODEL)
    return net, int(payload["resolution"])


def run_ort(path, batch):
    """Run an ONNX file on one CPU thread."""
    return ort_session(path, threads=1).run(None, {INPUT_NAME: batch})[0]


def test_export_is_valid_and_matches_torch(model, shared_data, tmp_path):
    """Checker passes, metadata is there, batch is dynamic, outputs equal torch within 1e-4."""
    net, r = model
    path = export_onnx(net, tmp_path / "fused.onnx", r)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= MIN_OPSET
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["resolution"] == str(r) and props["kind"] == "fused"
    assert props["arch"] == net.spec["name"] and props["in_channels"] == "6"
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [6, r, r]
    batch = real_batch(shared_data, r, count=3)
    with torch.inference_mode():
        want = net(torch.from_numpy(batch)).numpy()
    got = run_ort(path, batch)
    assert got.shape == (3, 1, r, r)
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert np.ptp(want) > 0.1  # the comparison is over a real range of values
    np.testing.assert_allclose(run_ort(path, batch[:1]), want[:1], atol=1e-4)


def test_static_batch_and_spatial_model(tmp_path, shared_data):
    """dynamic_batch=False fixes the batch at 1; a 3-channel spatial model exports too."""
    net = build_model("spatial", "skd-paper").eval()
    path = export_onnx(net, tmp_path / "spatial.onnx", 32, dynamic_batch=False)
    proto = onnx.load(str(path))
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [1, 3, 32, 32]
    x = real_batch(shared_data, 32, count=1)[:, :3].copy()
    with torch.inference_mode():
        want = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_ort(path, x), want, atol=1e-4)


def test_dynamo_exporter_fallback_works(model, shared_data, tmp_path):
    """The torch.export-based exporter (used when the legacy one is gone) gives the same."""
    net, r = model
    path = export_onnx(net, tmp_path / "dynamo.onnx", r, exporter="dynamo")
    proto = onnx.load(str(path))
    assert {p.key: p.value for p in proto.metadata_props}["resolution"] == str(r)
    batch = real_batch(shared_data, r, count=2)
    with torch.inference_mode():
        want = net(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(run_ort(path, batch), want, atol=1e-4)


def test_refuses_to_overwrite_and_bad_arguments(model, tmp_path):
    """An existing file is kept unless overwrite=True; wrong R or objects are refused."""
    net, r = model
    path = tmp_path / "m.onnx"
    path.write_bytes(b"keep me")
    with pytest.raises(OnnxExportError, match="refusing to overwrite"):
        export_onnx(net, path, r)
    assert path.read_bytes() == b"keep me"
    export_onnx(net, path, r, overwrite=True)
    onnx.checker.check_model(onnx.load(str(path)))
    with pytest.raises(OnnxExportError, match="multiples? of 4"):
        export_onnx(net, tmp_path / "bad.onnx", 62)
    with pytest.raises(OnnxExportError, match="not a saliency model"):
        export_onnx(torch.nn.Conv2d(6, 1, 3), tmp_path / "conv.onnx", 64)
    with pytest.raises(OnnxExportError, match="opset"):
        export_onnx(net, tmp_path / "old.onnx", r, opset=11)
    assert not (tmp_path / "bad.onnx").exists() and not (tmp_path / "old.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # no temp files left


def test_export_checkpoint_carries_its_metadata(model, tmp_path):
    """export_checkpoint exports at the checkpoint's R with its metadata."""
    from skd_saliency_ros.core.checkpoint import save_checkpoint

    net, r = model
    ckpt = save_checkpoint(tmp_path / "m.pt", net, r, meta={"val_nss": 1.23})
    path = export_checkpoint(ckpt, tmp_path / "m.onnx")
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert props["resolution"] == str(r) and props["source_checkpoint"] == "m.pt"
    assert props["source_checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert path.stat().st_mode & 0o044, "exported model readable only by its owner"
    assert '"val_nss": 1.23' in props["checkpoint_meta"]


def test_shipped_default_onnx_is_the_default_checkpoint():
    """weights/skd_default_r64.onnx was exported from exactly the shipped checkpoint.

    Regenerate it with ``python -m training export --out
    skd_saliency_ros/weights/skd_default_r64.onnx --overwrite`` after changing the default.
    """
    shipped = DEFAULT_MODEL.with_suffix(".onnx")
    props = ort_session(shipped, threads=1).get_modelmeta().custom_metadata_map
    assert props["source_checkpoint_sha256"] == checkpoint_sha256(DEFAULT_MODEL), \
        "the shipped ONNX is stale: re-export it from the shipped checkpoint"
    assert props["skd_export_version"] == str(EXPORT_VERSION)


def test_default_engine_runs_without_the_onnx_package(tmp_path):
    """The node's default path (shipped ONNX) never imports onnx (it has no rosdep key).

    A sibling ONNX exported from other weights is not used: the engine exports anew.
    """
    import shutil
    import subprocess
    import sys

    def engine_on(model: Path):
        code = ("import sys; from skd_saliency_ros.core.engine import SaliencyEngine; "
                f"e = SaliencyEngine({str(model)!r}, device='cpu', backend='onnxruntime'); "
                "print(e.model_info['onnx_path']); print('onnx' in sys.modules)")
        env = dict(os.environ, SKD_ONNX_CACHE=str(tmp_path / "cache"))
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()[-2:]

    onnx_path, imported = engine_on(DEFAULT_MODEL)
    assert onnx_path == str(DEFAULT_MODEL.with_suffix(".onnx")) and imported == "False"
    assert not (tmp_path / "cache").exists(), "the default model was exported again"

    net, _ = load_checkpoint(DEFAULT_MODEL)
    with torch.no_grad():
        for param in net.parameters():
            param.mul_(0.5)  # other weights, same architecture
    from skd_saliency_ros.core.checkpoint import save_checkpoint
    other = save_checkpoint(tmp_path / "other.pt", net, 64)
    shutil.copy(DEFAULT_MODEL.with_suffix(".onnx"), tmp_path / "other.onnx")
    onnx_path, _ = engine_on(other)
    assert Path(onnx_path).parent == tmp_path / "cache", onnx_path
