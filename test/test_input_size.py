"""Non-square model input (H x W) through checkpoint, engine (torch and ONNX), export, bench.

Real models built from the layer table, saved with the real checkpoint code, exported by the
real exporter and run by onnxruntime on real 1280x720 frames of the bundle (car10).
"""

import json
import logging

import cv2
import numpy as np
import onnx
import pytest
import torch

from skd_saliency_ros.core.checkpoint import (CheckpointError, DEFAULT_MODEL, load_checkpoint,
                                              read_checkpoint, save_checkpoint)
from skd_saliency_ros.core.engine import SaliencyEngine
from skd_saliency_ros.core.frames import FrameSource
from skd_saliency_ros.core.input_size import InputSize, InputSizeError, parse_input_size
from skd_saliency_ros.core.models import ARCHITECTURES, build_model
from skd_saliency_ros.core.onnx_export import export_checkpoint

#: The engine's own torch-vs-onnxruntime tolerance on normalised maps (test_engine.py).
TOLERANCE = 1e-4


def test_parse_input_size_forms_and_refusals():
    """R, "R", "HxW" and (H, W) parse; sizes that no net can take are refused by value."""
    assert parse_input_size(64) == parse_input_size("64") == InputSize(64, 64)
    assert parse_input_size("48x80") == parse_input_size((48, 80)) == InputSize(48, 80)
    assert parse_input_size(" 48 X 80 ") == (48, 80) and parse_input_size([64, 112]).width == 112
    assert parse_input_size("64").label == "64" and parse_input_size("48X80").label == "48x80"
    assert InputSize(48, 80).cv2_size == (80, 48) and InputSize(48, 80).pixels == 3840
    for bad in ("48x81", "50x80", "4x8", "x80", "48x", "0", True, 64.0, (48,), (48, 80.0),
                "sixty", None):
        with pytest.raises(InputSizeError):
            parse_input_size(bad, "--resolution")
    with pytest.raises(InputSizeError, match=r"--resolution: 50x80: height and width must be "
                                             r"multiples of 4"):
        parse_input_size("50x80", "--resolution")


@pytest.fixture(scope="module")
def frames(shared_data):
    """Return three consecutive 16:9 frames, 1280x720, of the bundle's car10 gaze video."""
    out = list(FrameSource(shared_data / "uav_gaze" / "car10.mp4").frames(0, 3))
    assert out[0].shape == (720, 1280, 3)
    return out


def _wide(arch, path):
    torch.manual_seed(3)
    model = build_model("fused", arch)
    for mod in model.modules():  # BN statistics and a prior far from their initial values
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    if model.prior is not None:
        model.prior.map.data.uniform_(-1.0, 1.0)
    return save_checkpoint(path, model.eval(), "48x80")


@pytest.mark.parametrize("arch", ["skd-paper", "skd-fast"])  # skd-fast has a learned prior
def test_non_square_model_runs_alike_on_torch_and_onnx(arch, frames, tmp_path):
    """A 48x80 checkpoint: format 2, 48x80 maps, torch == ONNX, fused == unfused."""
    path = _wide(arch, tmp_path / "wide.pt")
    payload = read_checkpoint(path)
    assert payload["format_version"] == 2 and payload["input_size"] == [48, 80]
    assert "resolution" not in payload
    onnx_path = export_checkpoint(path, tmp_path / "wide.onnx")
    proto = onnx.load(onnx_path)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["input_size"] == "48x80" and "resolution" not in props
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [6, 48, 80] and "(B,6,48,80)" in proto.doc_string
    maps = {}
    for name, model_path, backend, fuse in (("fused", path, "torch", True),
                                            ("unfused", path, "torch", False),
                                            ("onnx", onnx_path, "onnxruntime", True)):
        engine = SaliencyEngine(model_path, device="cpu", backend=backend, threads=1,
                                fuse=fuse)
        assert engine.input_size == (48, 80) and engine.model_info["input_size"] == "48x80"
        assert not hasattr(engine, "resolution")  # one name for the size: input_size
        maps[name] = np.stack([engine.step(f, k * 0.1).saliency for k, f in enumerate(frames)])
        assert maps[name].shape == (3, 48, 80)  # model-size maps; outputs upsample them
        assert engine.predict(np.full((2, 6, 48, 80), 0.5, np.float32)).shape == (2, 48, 80)
        with pytest.raises(ValueError, match=r"predict expects \(B, 6, 48, 80\)"):
            engine.predict(np.zeros((1, 6, 64, 64), np.float32))
    assert np.ptp(maps["fused"]) > 0.5  # a real map, not a constant
    np.testing.assert_allclose(maps["unfused"], maps["fused"], atol=1e-5)
    np.testing.assert_allclose(maps["onnx"], maps["fused"], atol=TOLERANCE)


def test_the_whole_frame_is_squashed_not_cropped(frames, tmp_path):
    """The engine's input is the whole 16:9 frame area-resized to 48x80; said once per stream."""
    path = _wide("skd-fast", tmp_path / "wide.pt")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    log = logging.getLogger("test_input_size.squash")
    log.setLevel(logging.INFO)
    log.addHandler(Keep())
    engine = SaliencyEngine(path, device="cpu", backend="torch", threads=1, logger=log)
    model, _ = load_checkpoint(path)
    small = cv2.resize(frames[0], (80, 48), interpolation=cv2.INTER_AREA)  # whole frame
    x = np.concatenate([small, small], axis=2).transpose(2, 0, 1)[None] / np.float32(255)
    with torch.no_grad():
        raw = model(torch.from_numpy(x.astype(np.float32)))[0, 0].numpy()
    want = (raw - raw.min()) / (raw.max() - raw.min())
    np.testing.assert_allclose(engine.step(frames[0], 0.0, "cam").saliency, want, atol=2e-2)
    for k, frame in enumerate(frames):
        engine.step(frame, 0.1 * (k + 1), "cam")
    # 1280x720 (aspect 1.78) is not 48x80's 1.67 (6.7 % off): said once for stream cam.
    squashed = [m for m in records if "squashed whole" in m]
    assert len(squashed) == 1 and "stream 'cam': 1280x720 (W x H)" in squashed[0]
    assert "48 x 80 (H x W)" in squashed[0] and "nothing is cropped" in squashed[0]
    # A 5:3 frame matches 48x80: nothing to say.
    engine.step(cv2.resize(frames[0], (800, 480), interpolation=cv2.INTER_AREA), 0.0, "b")
    assert len([m for m in records if "squashed whole" in m]) == 1


def test_old_square_files_load_unchanged():
    """The shipped default (format 1, resolution 64) and its ONNX twin read as 64x64."""
    payload = read_checkpoint(DEFAULT_MODEL)
    assert payload["format_version"] == 1 and payload["resolution"] == 64
    assert "input_size" not in payload
    props = {p.key: p.value for p in onnx.load(DEFAULT_MODEL.with_suffix(".onnx")).metadata_props}
    assert props["resolution"] == "64"
    for path, backend in ((DEFAULT_MODEL, "torch"), (DEFAULT_MODEL, "onnxruntime"),
                          (DEFAULT_MODEL.with_suffix(".onnx"), "onnxruntime")):
        engine = SaliencyEngine(path, device="cpu", backend=backend, threads=1)
        assert engine.input_size == (64, 64) and engine.model_info["input_size"] == "64"


def test_a_fresh_square_export_keeps_the_old_metadata(tmp_path):
    """A square export still says ``resolution`` (older readers) next to ``input_size``."""
    path = save_checkpoint(tmp_path / "sq.pt", build_model("fused", "skd-fast").eval(), 32)
    assert read_checkpoint(path)["format_version"] == 1
    props = {p.key: p.value for p in onnx.load(export_checkpoint(path, tmp_path / "sq.onnx"))
             .metadata_props}
    assert props["resolution"] == "32" and props["input_size"] == "32x32"


def test_bad_sizes_in_model_files_are_refused_by_name(tmp_path):
    """A stored size no net can take, or ONNX metadata that contradicts its graph."""
    path = save_checkpoint(tmp_path / "wide.pt", build_model("fused", "skd-paper").eval(),
                           (48, 80))
    payload = read_checkpoint(path)
    payload["input_size"] = [50, 80]
    bad = tmp_path / "bad.pt"
    torch.save(payload, bad)
    for backend in ("torch", "onnxruntime"):
        with pytest.raises(CheckpointError, match=r"bad\.pt: the stored input size"):
            SaliencyEngine(bad, device="cpu", backend=backend, threads=1)
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


def test_a_size_the_architecture_cannot_take_is_refused_by_name(tmp_path):
    """A net that down-samples by 8 stored at 36x60 (multiples of 4, not of 8): refused."""
    spec = json.loads(json.dumps(ARCHITECTURES["skd-fast"]))
    spec["stream"][2] = ["conv", 64, 3, 2]                       # factor 8
    spec["head"] = spec["head"][:2] + [["subpix", 8, 3, 2]] * 2 + [["subpix", 1, 3, 2]]
    model = build_model("fused", dict(spec, name="skd-fast-8")).eval()
    assert model.factor == 8
    path = save_checkpoint(tmp_path / "eight.pt", model, "36x60")
    with pytest.raises(CheckpointError, match=r"eight\.pt: input 36x60 \(H x W\) is not a "
                                              r"multiple of the architecture's down-sampling "
                                              r"factor 8"):
        SaliencyEngine(path, device="cpu", backend="torch", threads=1)


def test_card_and_export_cli_say_the_size(tmp_path, shared_data, capsys):
    """The card reads "48x80"; ``training export`` writes the checkpoint at 48x80."""
    from training.__main__ import main as training_main
    from training.card import _size_text, build_card

    path = _wide("skd-fast", tmp_path / "wide.pt")
    card = build_card(path, {})
    assert card["resolution"] == "48x80" and _size_text(card) == "input 48x80 (H x W)"
    assert _size_text(build_card(DEFAULT_MODEL, {})) == "R = 64"
    out = tmp_path / "wide.onnx"
    assert training_main(["export", "--model", str(path), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "at its trained input 48x80, input (B, 6, 48, 80)" in said
    assert "on a real car10 frame pair" in said
    assert {p.key: p.value for p in onnx.load(out).metadata_props}["input_size"] == "48x80"


def test_bench_times_a_non_square_model_at_its_size(tmp_path):
    """bench.models adds a checkpoint's own 48x80 to the sizes; rows and summary name it."""
    from bench.models import main as bench_main

    path = _wide("skd-fast", tmp_path / "wide.pt")
    out, doc = tmp_path / "bench.json", tmp_path / "BENCH.md"
    assert bench_main(["--models", str(path), "--backends", "torch,onnxruntime",
                       "--json", str(out), "--doc", str(doc), "--resolutions", "64",
                       "--batch", "2", "--repeats", "2", "--min-time", "0", "--warmup", "1",
                       "--threads", "1", "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert result["meta"]["resolutions"] == ["48x80", 64]
    assert result["models"]["wide"]["trained_resolution"] == "48x80"
    assert result["models"]["wide"]["per_resolution"]["48x80"]["params"] == 145028
    sizes = {(r["model"], r["backend"], r["resolution"]) for r in result["rows"]}
    for model in ("paper", "wide"):
        for backend in ("torch", "onnxruntime"):
            assert {(model, backend, "48x80"), (model, backend, 64)} <= sizes
    summary = result["summary"]
    for key in ("fps_cpu1_r48x80_wide", "ratio_cpu1_r48x80_wide_vs_paper", "fps_cpu1_r64_wide",
                "fps_cpu1_r48x80_paper", "fps_cpu1_r48x80_wide_onnxruntime"):
        assert summary[key] > 0, key
    text = doc.read_text()
    assert "| wide | 48x80 | 145,028 |" in text and "| wide | 64 | 145,028 |" in text
    assert "trained at input 48x80" in text
    assert (tmp_path / "bench_fps_vs_r.png").stat().st_size > 1000


def test_node_serves_a_non_square_model(ros_env, shared_data, tmp_path):
    """The real node on a 48x80 model: says its input size, squashes, publishes its maps."""
    from node_harness import (Client, NodeProcess, default_output_size, image_to_array,
                              make_image, node_env, read_frames, stamp_of)
    from skd_saliency_ros.core.maps import upsample

    path = _wide("skd-fast", tmp_path / "wide.pt")
    env = dict(node_env(ros_env), SKD_ONNX_CACHE=str(tmp_path / "onnx_cache"))
    node = NodeProcess(env, params=[f"model_path:={path}", "diagnostics_period_s:=0.2"])
    client = Client(int(env["ROS_DOMAIN_ID"]))
    frames = read_frames(shared_data / "uav_gaze" / "car10.mp4", 3)  # BGR, 1280x720
    local = SaliencyEngine(path, device="cpu", backend="onnxruntime", threads=1)
    try:
        client.wait_connected(node)
        for k, frame in enumerate(frames):
            msg = make_image(frame, "bgr8", 100.0 + 0.1 * k, "cam_optical")
            client.publish(msg)
            assert client.wait_for("saliency", stamp_of(msg)), node.output[-3000:]
            got = image_to_array(client.by_stamp("saliency")[stamp_of(msg)][0])
            assert got.shape == default_output_size(720, 1280)
            want = local.step(np.ascontiguousarray(frame[:, :, ::-1]), 100.0 + 0.1 * k)
            np.testing.assert_allclose(got, upsample(want.saliency, got.shape), atol=1e-3)
        diag = client.wait_diagnostics(lambda d: d["_name"].endswith(": image")
                                       and d.get("frames_out") == "3")
        assert diag is not None and diag["resolution"] == "48x80", diag
        out = node.output
        assert "model, input 48 x 80 (H x W; every frame resized whole to it" in out, out
        assert out.count("squashed whole") == 1, out
    finally:
        client.close()
        assert node.stop() == 0, node.output[-3000:]


def test_contact_sheet_and_teacher_bench_take_a_wide_student(tmp_path, shared_data, capsys):
    """The contact sheet titles a 48x80 column with its size; bench.teacher times it."""
    from bench.teacher import main as teacher_main
    from training.__main__ import main as training_main

    path = _wide("skd-fast", tmp_path / "wide.pt")
    sheet = tmp_path / "sheet.png"
    assert training_main(["contact-sheet", "--frames", "uav_gaze/car10.mp4:5", "--data-dir",
                          str(shared_data), "--models", f"wide={path},default",
                          "--out", str(sheet)]) == 0
    assert "1 frames x 2 models (wide 48x80, default 64)" in capsys.readouterr().out
    assert sheet.stat().st_size > 5000
    out = tmp_path / "teacher.json"
    assert teacher_main(["--teachers", "tinyhd-s", "--models", str(path), "--repeats", "1",
                         "--min-time", "0.01", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    student = rows[str(path)]
    assert student["input_size"] == "48x80" and student["resolution"] == "48x80"
    assert student["ms_per_frame"] > 0 and rows["tinyhd-s"]["student_speedup"][str(path)] > 0


def test_replay_scores_a_non_square_model(shared_data, tmp_path):
    """saliency_replay on a real 1280x720 bag with a 48x80 model: report names the size."""
    from skd_saliency_ros.bags.replay import main as replay_main

    video, gaze = (shared_data / "uav_gaze" / n for n in ("car10.mp4", "car10_gaze.npz"))
    bag = tmp_path / "car10_bag"
    assert replay_main(["make-bag", "--video", str(video), "--gaze", str(gaze), "--out",
                        str(bag), "--max-frames", "5", "--hfov", "60", "--no-progress"]) == 0
    path = _wide("skd-fast", tmp_path / "wide.pt")
    report = tmp_path / "replay.json"
    assert replay_main([str(bag), "--gaze", str(gaze), "--no-output", "--model", str(path),
                        "--json", str(report), "--no-progress"]) == 0
    data = json.loads(report.read_text())
    assert data["model"]["input_size"] == "48x80" and "resolution" not in data["model"]
    assert data["overall"]["metrics"]["n_frames"] == 5
    assert np.isfinite(data["overall"]["metrics"]["nss"])
