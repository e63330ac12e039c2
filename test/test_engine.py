"""SaliencyEngine on real frames with real inference: pairing, reset rules, batching, backends.

The model is the shipped default (checkpoint.DEFAULT_MODEL); every check here is about the
engine's plumbing on real frames and real weights.
"""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from skd_saliency_ros.core.checkpoint import (CheckpointError, DEFAULT_MODEL, load_checkpoint,
                                              save_checkpoint)
from skd_saliency_ros.core.engine import SaliencyEngine
from skd_saliency_ros.core.input_size import size_of_checkpoint
from skd_saliency_ros.core.maps import normalise_maps, resize_area, upsample
from skd_saliency_ros.core.models import build_model, fuse_for_inference
from skd_saliency_ros.core.onnx_export import export_checkpoint
from skd_saliency_ros.core.peaks import find_peaks


def read_frames(path, count):
    """Decode the first ``count`` frames of a video as RGB."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        assert ok, f"could not decode frame {len(frames)} of {path}"
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


@pytest.fixture(scope="module")
def model_path():
    """Return the shipped default model (it is part of the package)."""
    if not DEFAULT_MODEL.is_file():
        pytest.fail(f"{DEFAULT_MODEL} is missing: the package ships its default model")
    return DEFAULT_MODEL


@pytest.fixture(scope="module", autouse=True)
def onnx_cache(tmp_path_factory):
    """Keep exported ONNX files of this module out of the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKD_ONNX_CACHE", str(tmp_path_factory.mktemp("onnx_cache")))
        yield


@pytest.fixture(scope="module")
def frames(shared_data):
    """Four consecutive 1280x720 frames of car10."""
    return read_frames(shared_data / "uav_gaze" / "car10.mp4", 4)


@pytest.fixture(scope="module")
def small_frames(shared_data):
    """Two 640x360 frames of another camera (an unlabeled clip)."""
    return read_frames(shared_data / "uav_unlabeled" / "truck2.mp4", 2)


def reference_map(model_path, current, previous):
    """Saliency computed by hand: area resize, stack (t, t-1), forward, min-max."""
    model, payload = load_checkpoint(model_path)
    r = size_of_checkpoint(payload)
    cur, prev = (resize_area(f, r) for f in (current, previous))
    x = np.concatenate([cur, prev], axis=2).transpose(2, 0, 1)[None].astype(np.float32) / 255
    with torch.no_grad():
        raw = model(torch.from_numpy(x))[0, 0].numpy()
    return (raw - raw.min()) / (raw.max() - raw.min())


def test_resize_area_equals_opencv_inter_area(frames, small_frames):
    """The separable fast path gives cv2.INTER_AREA's result up to one grey level."""
    odd = cv2.resize(frames[1], (1000, 563), interpolation=cv2.INTER_AREA)
    for frame in (frames[0], small_frames[0], odd, frames[2][:480, :640]):
        for r in (32, 64, 128):
            want = cv2.resize(frame, (r, r), interpolation=cv2.INTER_AREA).astype(int)
            got = resize_area(frame, r)
            assert got.shape == (r, r, 3) and got.dtype == np.uint8
            diff = np.abs(got.astype(int) - want)
            assert diff.max() <= 1 and diff.mean() < 0.2, (frame.shape, r)
    tiny = frames[0][:64, :64]
    same = resize_area(tiny, 64)
    assert np.array_equal(same, tiny) and not np.shares_memory(same, tiny)


def test_fused_model_equals_the_checkpoint_model(model_path, frames):
    """BN folding, LRN as 1x1 conv and the fixed prior change nothing but float rounding."""
    model, payload = load_checkpoint(model_path)
    r = size_of_checkpoint(payload)
    fused = fuse_for_inference(model, r)
    names = {type(m).__name__ for m in fused.modules()}
    assert not names & {"BatchNorm2d", "LocalResponseNorm", "LearnedPrior"}, names
    small = [resize_area(f, r) for f in frames]
    x = np.stack([np.concatenate([small[i + 1], small[i]], axis=2) for i in range(3)])
    x = torch.from_numpy(x.transpose(0, 3, 1, 2).astype(np.float32) / 255)
    with torch.inference_mode():
        want, got = model(x), fused(x)
    scale = float(want.abs().max())
    assert float((got - want).abs().max()) <= 1e-5 * max(1.0, scale)
    # The engine with and without fusion agrees too.
    a, b = (SaliencyEngine(model_path, device="cpu", backend="torch", fuse=fuse)
            .step(frames[0], 0.0).saliency for fuse in (True, False))
    np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("arch", ["skd-paper-prior", "skd-fast", "skd-fast-noprior"])
def test_fusion_folds_every_batchnorm_layout(arch, frames):
    """Conv -> BN, deconv -> BN and conv -> pixel-shuffle -> BN (skd-fast) all fold away."""
    torch.manual_seed(0)
    model = build_model("fused", arch)
    for mod in model.modules():  # BN statistics far from identity, so folding matters
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    model.eval()
    fused = fuse_for_inference(model, 64)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    small = np.stack([resize_area(f, 64) for f in frames[:2]])
    x = torch.from_numpy(np.concatenate([small[1], small[0]], axis=2).transpose(2, 0, 1)
                         [None].astype(np.float32) / 255)
    with torch.inference_mode():
        want, got = model(x), fused(x)
    assert float((got - want).abs().max()) <= 1e-5 * max(1.0, float(want.abs().max()))


def test_step_returns_a_normalised_map(model_path, frames):
    """Each frame gives an (R, R) float32 map spanning exactly [0, 1]."""
    engine = SaliencyEngine(model_path, device="cpu")
    assert engine.input_size == (64, 64) and engine.model_info["input_size"] == "64"
    assert engine.model_info["kind"] == "fused" and engine.device == "cpu"
    for i, frame in enumerate(frames):
        result = engine.step(frame, 100.0 + 0.1 * i)
        sal = result.saliency
        assert sal.shape == (64, 64) and sal.dtype == np.float32
        assert sal.min() == 0.0 and sal.max() == 1.0
        assert result.reset_reason == ("first frame" if i == 0 else None)


def test_frames_are_paired_with_the_previous_frame(model_path, frames):
    """The engine's map equals a hand-made forward pass of (t, t-1); first frame (t, t)."""
    engine = SaliencyEngine(model_path, device="cpu")
    first = engine.step(frames[0], 0.0).saliency
    second = engine.step(frames[1], 0.1).saliency
    np.testing.assert_allclose(first, reference_map(model_path, frames[0], frames[0]),
                               atol=1e-5)
    np.testing.assert_allclose(second, reference_map(model_path, frames[1], frames[0]),
                               atol=1e-5)
    # The previous frame matters: pairing frame 1 with itself gives another map.
    alone = reference_map(model_path, frames[1], frames[1])
    assert np.abs(second - alone).max() > 1e-4


def test_reset_rules(model_path, frames, small_frames):
    """First frame, size change, stamp backwards, gap and explicit resets, per stream."""
    engine = SaliencyEngine(model_path, device="cpu", max_gap_s=0.5)
    fresh = SaliencyEngine(model_path, device="cpu")
    seq = [
        ("cam", frames[0], 10.0, "first frame"),
        ("cam", frames[1], 10.1, None),
        ("down", small_frames[0], 10.1, "first frame"),   # another camera: its own state
        ("cam", small_frames[1], 10.2, "resolution changed 1280x720 -> 640x360"),
        ("cam", small_frames[0], 10.3, None),
        ("down", small_frames[1], 10.2, None),
        ("cam", frames[2], 10.25, "resolution changed 640x360 -> 1280x720"),
        ("cam", frames[3], 10.15, "stamp went backwards 10.250 s -> 10.150 s"),
        ("cam", frames[0], 10.9, "gap 0.75 s > max_gap_s 0.50"),
        ("cam", frames[1], 10.9, None),   # a repeated stamp is not a reset
    ]
    for stream, frame, stamp, want in seq:
        result = engine.step(frame, stamp, stream=stream)
        assert result.reset_reason == want, (stream, stamp)
        assert result.stream == stream
        if want is not None:  # a reset pairs the frame with itself and still answers
            fresh.reset()
            np.testing.assert_allclose(result.saliency, fresh.step(frame, 0.0).saliency,
                                       atol=1e-6)
    engine.reset("cam", reason="encoding changed rgb8 -> bgr8")
    assert engine.step(frames[2], 11.0, "cam").reset_reason == "encoding changed rgb8 -> bgr8"
    assert engine.step(small_frames[0], 10.4, "down").reset_reason is None
    engine.reset()
    assert engine.step(frames[3], 11.1, "cam").reset_reason == "reset"
    assert engine.step(small_frames[1], 10.5, "down").reset_reason == "reset"
    engine.max_gap_s = None  # disables the gap rule
    assert engine.step(frames[0], 500.0, "cam").reset_reason is None
    with pytest.raises(ValueError, match="max_gap_s"):
        engine.max_gap_s = 0.0


def test_step_many_equals_sequential_steps(model_path, frames, small_frames):
    """One batched call gives the same maps and reasons as one call per frame."""
    batched = SaliencyEngine(model_path, device="cpu")
    single = SaliencyEngine(model_path, device="cpu")
    rounds = [[("fwd", frames[0], 0.0), ("down", small_frames[0], 0.0)],
              [("fwd", frames[1], 0.1), ("down", small_frames[1], 0.1),
               ("fwd", frames[2], 0.2)]]  # the same stream twice pairs 2 with 1
    for items in rounds:
        results = batched.step_many(items)
        assert [r.stream for r in results] == [s for s, _, _ in items]
        for (stream, frame, stamp), got in zip(items, results):
            want = single.step(frame, stamp, stream)
            assert got.reset_reason == want.reset_reason
            np.testing.assert_allclose(got.saliency, want.saliency, atol=1e-5)
    assert batched.step_many([]) == []


def test_invalid_frames_leave_the_state_alone(model_path, frames):
    """A bad frame in a batch raises ValueError before any stream state changes."""
    engine = SaliencyEngine(model_path, device="cpu")
    engine.step(frames[0], 1.0, "cam")
    bad = [np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.float32),
           np.zeros((0, 10, 3), np.uint8)]
    for frame in bad:
        with pytest.raises(ValueError, match="frame"):
            engine.step_many([("cam", frames[1], 1.1), ("cam", frame, 1.2)])
    with pytest.raises(ValueError, match="not a finite number"):
        engine.step(frames[1], float("nan"), "cam")
    result = engine.step(frames[1], 1.1, "cam")
    assert result.reset_reason is None
    np.testing.assert_allclose(result.saliency, reference_map(model_path, frames[1], frames[0]),
                               atol=1e-5)


def test_onnxruntime_backend_matches_torch(model_path, frames, tmp_path, monkeypatch):
    """The ONNX export of the checkpoint gives torch's maps and raw outputs within 1e-4.

    The cache part runs on a copy of the checkpoint (no pre-exported ONNX beside it) with a
    private cache, so nothing shipped or in the user's cache is touched.
    """
    import shutil

    monkeypatch.setenv("SKD_ONNX_CACHE", str(tmp_path / "cache"))
    model_path = Path(shutil.copy(model_path, tmp_path / "model.pt"))
    torch_engine = SaliencyEngine(model_path, device="cpu", backend="torch", threads=1)
    ort_engine = SaliencyEngine(model_path, device="cpu", backend="onnxruntime", threads=1)
    assert ort_engine.input_size == torch_engine.input_size
    assert ort_engine.model_info["kind"] == torch_engine.model_info["kind"]
    assert ort_engine.model_info["arch"] == torch_engine.model_info["arch"]
    for i, frame in enumerate(frames):
        a = torch_engine.step(frame, 0.1 * i)
        b = ort_engine.step(frame, 0.1 * i)
        assert a.reset_reason == b.reset_reason
        np.testing.assert_allclose(b.saliency, a.saliency, atol=1e-4)
    batch = np.random.default_rng(0).random((3, 6, 64, 64), dtype=np.float32)
    np.testing.assert_allclose(ort_engine.predict(batch), torch_engine.predict(batch),
                               atol=1e-4)
    # A second engine reuses the cached export instead of exporting again ...
    cached = Path(ort_engine.model_info["onnx_path"])
    assert cached.parent == tmp_path / "cache"
    stamp = cached.stat().st_mtime_ns
    again = SaliencyEngine(model_path, device="cpu", backend="onnxruntime")
    assert again.model_info["onnx_path"] == str(cached)
    assert cached.stat().st_mtime_ns == stamp
    # ... and replaces a damaged cache entry.
    cached.write_bytes(b"truncated")
    repaired = SaliencyEngine(model_path, device="cpu", backend="onnxruntime")
    np.testing.assert_allclose(repaired.predict(batch), torch_engine.predict(batch), atol=1e-4)


def test_onnx_file_as_model_path(model_path, frames, tmp_path):
    """A .onnx file runs by itself: R and kind come from its metadata, static batch chunks."""
    torch_engine = SaliencyEngine(model_path, device="cpu")
    onnx_path = export_checkpoint(model_path, tmp_path / "model.onnx")
    fixed = export_checkpoint(model_path, tmp_path / "fixed.onnx", dynamic_batch=False)
    for path in (onnx_path, fixed):
        engine = SaliencyEngine(path, device="cpu", backend="onnxruntime")
        assert engine.input_size == torch_engine.input_size
        assert engine.model_info["kind"] == "fused"
        items = [("a", frames[0], 0.0), ("b", frames[1], 0.0), ("a", frames[2], 0.1)]
        torch_engine.reset()
        for got, want in zip(engine.step_many(items), torch_engine.step_many(items)):
            np.testing.assert_allclose(got.saliency, want.saliency, atol=1e-4)
    with pytest.raises(CheckpointError, match="needs backend 'onnxruntime'"):
        SaliencyEngine(onnx_path, backend="torch")


def test_auto_backend_picks_onnxruntime_on_cpu(model_path, frames, tmp_path):
    """Backend auto: onnxruntime on a CPU (said in one log line), same maps as torch."""
    logger = ListLogger()
    auto = SaliencyEngine(model_path, device="cpu", backend="auto", threads=1, logger=logger)
    assert auto.backend == "onnxruntime"
    assert ("info", "backend auto -> onnxruntime (CPU device)") in logger.lines
    torch_engine = SaliencyEngine(model_path, device="cpu", backend="torch", threads=1)
    for i, frame in enumerate(frames[:3]):
        np.testing.assert_allclose(auto.step(frame, 0.1 * i).saliency,
                                   torch_engine.step(frame, 0.1 * i).saliency, atol=1e-4)
    onnx_path = export_checkpoint(model_path, tmp_path / "model.onnx")
    assert SaliencyEngine(onnx_path, device="cpu", backend="auto").backend == "onnxruntime"


def test_missing_or_wrong_model_files_raise_checkpoint_error(tmp_path):
    """Missing, corrupt and mislabelled model files give a CheckpointError naming the file."""
    junk_pt = tmp_path / "junk.pt"
    junk_pt.write_bytes(b"not a checkpoint")
    junk_onnx = tmp_path / "junk.onnx"
    junk_onnx.write_bytes(b"not an onnx model")
    cases = [(tmp_path / "missing.pt", "torch", "no such checkpoint file"),
             (tmp_path / "missing.pt", "onnxruntime", "no such checkpoint file"),
             (tmp_path / "missing.onnx", "onnxruntime", "no such ONNX model file"),
             (junk_pt, "torch", "not a checkpoint written by this package"),
             (junk_pt, "onnxruntime", "not a checkpoint written by this package"),
             (tmp_path, "torch", "is a directory, not a checkpoint file"),
             (junk_onnx, "onnxruntime", "not a loadable ONNX model")]
    for path, backend, message in cases:
        with pytest.raises(CheckpointError, match=message) as info:
            SaliencyEngine(path, device="cpu", backend=backend)
        assert str(path) in str(info.value)


class ListLogger:
    """Collects log lines like an rclpy logger would print them."""

    def __init__(self):
        self.lines = []

    def info(self, msg):
        """Record an info line."""
        self.lines.append(("info", msg))

    def warning(self, msg):
        """Record a warning line."""
        self.lines.append(("warning", msg))

    def debug(self, msg):
        """Record a debug line."""
        self.lines.append(("debug", msg))


def test_device_selection(model_path):
    """Device auto picks CUDA if present, else CPU, with one log line; bad options fail."""
    log = ListLogger()
    engine = SaliencyEngine(model_path, device="auto", backend="torch", logger=log)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert engine.device == expected
    assert len(log.lines) == 1 and log.lines[0][1].startswith(f"device auto -> {expected}")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            SaliencyEngine(model_path, device="cuda", backend="torch")
    with pytest.raises(ValueError, match="backend"):
        SaliencyEngine(model_path, backend="tensorrt")
    with pytest.raises(ValueError, match="device"):
        SaliencyEngine(model_path, device="tpu")
    with pytest.raises(ValueError, match="max_gap_s"):
        SaliencyEngine(model_path, max_gap_s=-1.0)


def test_normalise_and_upsample(model_path, frames):
    """Flat maps normalise to zeros; upsampling keeps range and peak position."""
    raw = np.stack([np.full((8, 8), 3.0, np.float32), np.arange(64, dtype=np.float32)
                    .reshape(8, 8)])
    out = normalise_maps(raw)
    assert (out[0] == 0).all() and out[1].min() == 0 and out[1].max() == 1
    sal = SaliencyEngine(model_path, device="cpu").step(frames[0], 0.0).saliency
    big = upsample(sal, (720, 1280))
    assert big.shape == (720, 1280) and big.dtype == np.float32
    assert 0.0 <= big.min() and big.max() <= 1.0
    # Bilinear upsampling peaks next to the centre of the map's best cell (same convention).
    (peak,) = find_peaks(sal, (1280, 720), top_k=1, refine="none")
    y, x = np.unravel_index(np.argmax(big), big.shape)
    assert abs(x - peak.x) <= 1280 / 64 / 2 and abs(y - peak.y) <= 720 / 64 / 2
    with pytest.raises(ValueError, match="size"):
        upsample(sal, (0, 10))


def test_spatial_model_ignores_the_previous_frame(frames, tmp_path):
    """A 3-channel spatial checkpoint runs through the same engine; pairing is irrelevant."""
    torch.manual_seed(1)
    model = build_model("spatial", "skd-paper")
    path = save_checkpoint(tmp_path / "spatial_r32.pt", model, 32)
    engine = SaliencyEngine(path, device="cpu")
    assert engine.input_size == (32, 32) and engine.in_channels == 3
    engine.step(frames[0], 0.0)
    paired = engine.step(frames[1], 0.1)
    engine.reset()
    alone = engine.step(frames[1], 0.2)
    assert paired.reset_reason is None and alone.reset_reason == "reset"
    np.testing.assert_allclose(paired.saliency, alone.saliency, atol=1e-6)
    x = torch.from_numpy(resize_area(frames[1], 32).transpose(2, 0, 1)[None] / np.float32(255))
    with torch.no_grad():
        raw = model.eval()(x)[0, 0].numpy()
    np.testing.assert_allclose(alone.saliency, normalise_maps(raw[None])[0], atol=1e-4)


class _Foreign:
    """A class a hostile or foreign checkpoint could carry (never instantiated on load)."""


def test_checkpoint_with_python_objects_is_refused_plainly(tmp_path, recwarn):
    """A torch.save file holding arbitrary objects: refused, without torch's unsafe hint."""
    from skd_saliency_ros.core.checkpoint import read_checkpoint

    path = tmp_path / "foreign.pt"
    torch.save({"kind": "fused", "state_dict": {}, "obj": _Foreign()}, path)
    with pytest.raises(CheckpointError, match="holds Python objects other than tensors") as info:
        read_checkpoint(path)
    assert "weights_only=False" not in str(info.value) and str(path) in str(info.value)
    assert not [w for w in recwarn if "weights_only" in str(w.message)]


def test_non_finite_maps_are_flagged(model_path, frames, tmp_path):
    """A model that passes the load check but gives NaN on real frames: each result says so.

    Its map is all zeros (the flat-map rule), which a caller must not take for an answer;
    the default model's maps on the same frames are finite.
    """
    from bad_models import nan_off_grey

    engine = SaliencyEngine(nan_off_grey(tmp_path / "nan.onnx"), device="cpu",
                            backend="onnxruntime")
    results = engine.step_many([("a", frames[0], 0.0), ("b", frames[1], 0.0)])
    assert [r.finite for r in results] == [False, False]
    assert all((r.saliency == 0).all() for r in results)
    good = SaliencyEngine(model_path, device="cpu").step_many([("a", frames[0], 0.0),
                                                               ("b", frames[1], 0.0)])
    assert [r.finite for r in good] == [True, True]
