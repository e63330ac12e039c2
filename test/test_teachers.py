"""Teachers on real frames of the data bundle, and the generic teacher on real model files."""

import warnings

import cv2
import numpy as np
import pytest
import torch

from training.teachers import (DEFAULT_SPATIAL, DEFAULT_TEMPORAL, GenericTeacher,
                               MotionHomographyTeacher, Teacher, TeacherError, get_teacher,
                               get_teachers)


def read_frames(path, indices):
    """Return RGB frames at the given 0-based indices (decoded in order)."""
    cap = cv2.VideoCapture(str(path))
    out, k = {}, 0
    while k <= max(indices):
        ok, bgr = cap.read()
        assert ok, f"{path}: cannot decode frame {k}"
        if k in indices:
            out[k] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        k += 1
    cap.release()
    return [out[i] for i in indices]


@pytest.fixture(scope="module")
def car10(shared_data):
    """Return frames 0 and 1 of car10."""
    return read_frames(shared_data / "uav_gaze" / "car10.mp4", [0, 1])


@pytest.fixture(scope="module")
def group2_pan(shared_data):
    """Return two frames of group2 during a camera pan."""
    # frames 41-42 of group2: the drone pans (homography shift ~7 px at 320 px width)
    return read_frames(shared_data / "uav_gaze" / "group2.mp4", [41, 42])


def check_map(sal, frame):
    """Assert the teacher-output contract: float32, frame size, [0, 1], max 1."""
    assert sal.dtype == np.float32 and sal.shape == frame.shape[:2]
    assert np.isfinite(sal).all() and sal.min() >= 0.0
    assert sal.max() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", ["spectral-residual", "fine-grained"])
def test_static_teachers_on_real_frame(name, car10):
    """Check that OpenCV saliency maps on a real frame follow the contract and are not constant."""
    teacher = get_teacher(name)
    assert teacher.kind == "spatial" and teacher.name == name
    assert teacher.config["name"] == name and "cv2.saliency" in teacher.config["impl"]
    sal = teacher(car10[0])
    check_map(sal, car10[0])
    assert sal.std() > 0.01  # a real map, not a constant


def test_defaults_and_unknown():
    """Default names resolve; unknown, duplicate and missing specs are clear errors."""
    assert get_teacher(DEFAULT_SPATIAL).kind == "spatial"
    assert get_teacher(DEFAULT_TEMPORAL).kind == "temporal"
    with pytest.raises(TeacherError, match="unknown teacher 'dva'"):
        get_teacher("dva")
    with pytest.raises(TeacherError, match="given twice"):
        get_teachers("fine-grained,fine-grained")
    with pytest.raises(TeacherError, match="not found"):
        get_teacher("/nonexistent/teacher.yaml")


def test_teacher_rejects_bad_frames(car10):
    """Wrong dtype or mismatched frame sizes are named."""
    teacher = get_teacher("spectral-residual")
    with pytest.raises(TeacherError, match="uint8 RGB"):
        teacher(car10[0].astype(np.float32))
    with pytest.raises(TeacherError, match="previous frame is 640x360"):
        get_teacher("motion-homography")(car10[1], cv2.resize(car10[0], (640, 360)))


def test_motion_first_frame_is_zero(car10):
    """No previous frame: the documented all-zero map."""
    sal = get_teacher("motion-homography")(car10[0], None)
    assert sal.shape == car10[0].shape[:2] and not sal.any()


def test_motion_ignores_camera_pan(group2_pan):
    """A panning drone moves every pixel; only what the homography misses may light up."""
    prev, cur = group2_pan
    teacher = MotionHomographyTeacher()
    sal = teacher(cur, prev)
    check_map(sal, cur)
    hom = teacher.last_homography
    assert hom is not None and np.hypot(hom[0, 2], hom[1, 2]) > 3.0  # the camera really moves
    assert teacher.last_inlier_ratio > 0.8
    # raw flow lights up the whole frame ...
    small = [cv2.cvtColor(cv2.resize(f, (320, 180), interpolation=cv2.INTER_AREA),
                          cv2.COLOR_RGB2GRAY) for f in (cur, prev)]
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(*small, None)
    raw = np.linalg.norm(flow, axis=2)
    assert np.mean(raw / raw.max() > 0.2) > 0.5
    # ... the ego-motion-compensated map does not
    assert np.mean(sal > 0.2) < 0.1 and sal.mean() < 0.05


def test_motion_finds_object_moving_against_pan(car10):
    """Real frame panned by a pure translation, with one patch moving on its own."""
    frame = car10[0]
    h, w = frame.shape[:2]
    pan = np.float32([[1, 0, 12], [0, 1, 6]])
    prev = frame
    cur = cv2.warpAffine(frame, pan, (w, h), borderMode=cv2.BORDER_REFLECT)
    x0, y0, size = 700, 350, 96  # patch moves 40 px right on top of the pan
    cur = cur.copy()
    cur[y0:y0 + size, x0 + 40:x0 + 40 + size] = prev[y0 - 6:y0 - 6 + size, x0 - 12:x0 - 12 + size]
    sal = get_teacher("motion-homography")(cur, prev)
    check_map(sal, cur)
    iy, ix = np.unravel_index(np.argmax(sal), sal.shape)
    assert x0 - 20 <= ix <= x0 + 40 + size + 20 and y0 - 20 <= iy <= y0 + size + 20
    outside = sal.copy()
    outside[y0 - 60:y0 + size + 60, x0 - 60:x0 + 40 + size + 60] = 0
    assert outside.max() < 0.3


class TinySaliencyNet(torch.nn.Module):
    """A small real conv net: frames on channels -> one map at half resolution."""

    def __init__(self, in_ch: int):
        super().__init__()
        torch.manual_seed(0)
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(in_ch, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 2, 3, padding=1))

    def forward(self, x):
        """Map frames to two output channels."""
        return self.body(x)


def write_yaml(path, text):
    """Write a teacher config and return its path."""
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """Save real TorchScript and ONNX files of 3- and 6-channel nets."""
    root = tmp_path_factory.mktemp("teacher_models")
    nets = {}
    for ch in (3, 6):
        net = TinySaliencyNet(ch).eval()
        x = torch.rand(1, ch, 72, 128)
        with warnings.catch_warnings():  # deprecated, still the formats teachers come in
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.script(net).save(str(root / f"net{ch}.pt"))
            torch.onnx.export(net, (x,), str(root / f"net{ch}.onnx"), dynamo=False,
                              input_names=["frames"], output_names=["maps"],
                              dynamic_axes={"frames": {2: "h", 3: "w"}})
        nets[ch] = net
    return root, nets


def reference_map(net, frames, mean, std, channel, size):
    """Compute what the generic teacher must return, directly with torch."""
    xs = []
    for f in frames:
        img = cv2.resize(f, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        xs.append((img - np.float32(mean)) / np.float32(std))
    x = torch.from_numpy(np.concatenate(xs, 2).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        out = torch.sigmoid(net(x))[0, channel].numpy()
    out = (out - out.min()) / (out.max() - out.min())
    return out


@pytest.mark.parametrize("ext", ["pt", "onnx"])
def test_generic_spatial_teacher(ext, model_files, car10, tmp_path):
    """Resize, normalise, sigmoid, channel pick: equal to the direct computation."""
    root, nets = model_files
    cfg = write_yaml(tmp_path / "tiny.yaml", f"""
name: tiny-{ext}
kind: spatial
model: {root}/net3.{ext}
input: {{size: [128, 72], mean: [0.5, 0.4, 0.3], std: [0.2, 0.2, 0.25]}}
output: {{channel: 1, activation: sigmoid}}
""")
    teacher = get_teacher(str(cfg))
    assert isinstance(teacher, GenericTeacher) and isinstance(teacher, Teacher)
    assert teacher.name == f"tiny-{ext}" and teacher.kind == "spatial"
    assert len(teacher.config["model_sha1"]) == 40
    sal = teacher(car10[0])
    check_map(sal, car10[0])
    ref = reference_map(nets[3], [car10[0]], [0.5, 0.4, 0.3], [0.2, 0.2, 0.25], 1, (128, 72))
    ref = cv2.resize(ref, (1280, 720), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(sal, ref / ref.max(), atol=1e-4)


def test_generic_temporal_teacher_torchscript_matches_onnx(model_files, car10, tmp_path):
    """Two stacked frames (BGR): TorchScript and ONNX give the same map."""
    root, nets = model_files
    maps = []
    for ext in ("pt", "onnx"):
        cfg = write_yaml(tmp_path / f"t_{ext}.yaml", f"""
kind: temporal
model: {root}/net6.{ext}
input: {{frames: [current, previous], size: [128, 72], color: bgr}}
""")
        teacher = get_teacher(str(cfg))
        assert teacher.kind == "temporal" and teacher.name == f"generic:t_{ext}"
        maps.append(teacher(car10[1], car10[0]))
        check_map(maps[-1], car10[1])
        # first frame: the current frame stands in for the missing previous one
        check_map(teacher(car10[0], None), car10[0])
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-4)
    # the previous frame is really used: swapping the pair changes the map
    assert np.abs(teacher(car10[0], car10[1]) - maps[1]).max() > 1e-3


def test_generic_teacher_relative_model_path(model_files, car10, tmp_path):
    """A model path relative to the YAML file works."""
    root, _ = model_files
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "n.pt").write_bytes((root / "net3.pt").read_bytes())
    cfg = write_yaml(tmp_path / "rel.yaml", "kind: spatial\nmodel: models/n.pt\n")
    check_map(get_teacher(str(cfg))(car10[0]), car10[0])


@pytest.mark.parametrize("ext", ["pt", "onnx"])
def test_generic_teacher_corrupt_model_names_file(ext, tmp_path):
    """A corrupt model file is a TeacherError naming that file."""
    bad = tmp_path / f"broken.{ext}"
    bad.write_bytes(b"\x00garbage, not a model\xff" * 10)
    cfg = write_yaml(tmp_path / "bad.yaml", f"kind: spatial\nmodel: {bad}\n")
    with pytest.raises(TeacherError, match=f"{bad}: cannot load"):
        get_teacher(str(cfg))


def test_generic_teacher_config_errors(model_files, car10, tmp_path):
    """Every config mistake is named, with the file."""
    root, _ = model_files
    cases = {
        "model: x.pt\n": "missing required key 'kind'",
        "kind: spatial\n": "missing required key 'model'",
        f"kind: spatial\nmodel: {root}/nope.pt\n": "nope.pt: teacher model file not found",
        f"kind: spatial\nmodel: {root}/net3.pt\ninput: {{colour: rgb}}\n": "unknown key",
        f"kind: spatial\nmodel: {root}/net3.pt\ninput: {{frames: [current, previous]}}\n":
            "cannot take the previous frame",
        f"kind: spatial\nmodel: {root}/net3.pt\noutput: {{activation: relu}}\n":
            "output.activation",
        f"kind: spatial\nmodel: {root}/net3.txt\n": "not found",
        "- a list\n": "must be a YAML mapping",
    }
    for i, (text, message) in enumerate(cases.items()):
        cfg = write_yaml(tmp_path / f"c{i}.yaml", text)
        with pytest.raises(TeacherError, match=message):
            get_teacher(str(cfg))
    # a model whose input does not fit the config fails at run time, naming the model file
    cfg = write_yaml(tmp_path / "wrong.yaml", f"kind: temporal\nmodel: {root}/net3.pt\n")
    with pytest.raises(TeacherError, match="net3.pt: teacher model failed"):
        get_teacher(str(cfg))(car10[1], car10[0])


# ----------------------------------------------------------------- clip teachers (TinyHD)
TINYHD_MEAN = np.float32([0.485, 0.456, 0.406])
TINYHD_STD = np.float32([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def car10_clip(shared_data):
    """Return the first 21 frames of car10 (1280x720 RGB)."""
    return read_frames(shared_data / "uav_gaze" / "car10.mp4", list(range(21)))


def tinyhd_input(frames):
    """Return the authors' pre-processing, written out: (1, 3, T, 192, 256) float32."""
    xs = [(cv2.resize(f, (256, 192), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
           - TINYHD_MEAN) / TINYHD_STD for f in frames]
    return np.stack(xs, 0).transpose(3, 0, 1, 2)[None].copy()


def as_teacher_map(raw, frame):
    """Turn a raw TinyHD map into the teacher contract (normalise: max, frame size, max 1)."""
    big = cv2.resize(raw / raw.max(), (frame.shape[1], frame.shape[0]),
                     interpolation=cv2.INTER_LINEAR)
    return big / big.max()


@pytest.mark.parametrize("name", ["tinyhd-m", "tinyhd-s"])
def test_tinyhd_teacher_matches_direct_onnxruntime(name, car10_clip):
    """Check label_frames against a direct onnxruntime call of the same file (1e-5).

    Real frames; windows, padding at the start (TinyHD-S), the final overlapping clip (TinyHD-M).
    """
    import onnxruntime as ort

    teacher = get_teacher(name)
    assert teacher.window == 16 and teacher.kind == "temporal"
    maps = list(teacher.label_frames(car10_clip))
    assert len(maps) == len(car10_clip)
    for sal in maps:
        check_map(sal, car10_clip[0])
    sess = ort.InferenceSession(str(teacher.model_path), providers=["CPUExecutionProvider"])

    def run(frames):
        return sess.run(None, {"clip": tinyhd_input(frames)})[0][0, 0]

    if name == "tinyhd-m":   # clips 0-15 and (remainder) 5-20, one map per frame
        first, last = run(car10_clip[0:16]), run(car10_clip[5:21])
        expect = {3: first[3], 15: first[15], 16: last[11], 20: last[15]}
    else:                    # frame t from t-15 .. t, the first frame repeated before 0
        expect = {3: run([car10_clip[0]] * 12 + car10_clip[0:4]),
                  20: run(car10_clip[5:21])}
    for k, raw in expect.items():
        np.testing.assert_allclose(maps[k], as_teacher_map(raw, car10_clip[k]), atol=1e-5,
                                   err_msg=f"{name} frame {k}")
    with pytest.raises(TeacherError, match="use label_frames"):
        teacher(car10_clip[0])


def test_clip_teacher_batches_give_the_same_maps(car10_clip, tmp_path):
    """Several clips per call (batch) change nothing but the speed."""
    from training.teachers import SHIPPED_YAML_DIR
    text = (SHIPPED_YAML_DIR / "tinyhd_s.yaml").read_text().replace("batch: 4", "batch: 1")
    text = text.replace("{data_dir}", str(get_teacher("tinyhd-s").model_path.parent.parent))
    one = get_teacher(str(write_yaml(tmp_path / "s1.yaml", text)))
    assert one.batch == 1 and get_teacher("tinyhd-s").batch == 4
    frames = car10_clip[:18]
    for a, b in zip(one.label_frames(frames), get_teacher("tinyhd-s").label_frames(frames)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_clip_teacher_errors(car10_clip, model_files, tmp_path):
    """Video shorter than the window, wrong input rank, wrong window, unknown key, no file."""
    with pytest.raises(TeacherError, match="the video has 10 frame.*window of 16"):
        list(get_teacher("tinyhd-m").label_frames(car10_clip[:10]))
    onnx = get_teacher("tinyhd-m").model_path
    base = f"kind: temporal\nmodel: {onnx}\n"
    clip = "input: {window: 16, stack: time, size: [256, 192]}\noutput: {per_frame: true}\n"
    cases = {
        # a 4-D frame model fed 5-D clips: refused at load time, naming both files
        f"kind: spatial\nmodel: {model_files[0]}/net3.onnx\n"
        "input: {window: 4, stack: time}\n": r"net3.onnx: the model's input has rank 4",
        base + clip.replace("window: 16", "window: 8"):
            r"tinyhd_m_rc4.onnx: the model takes clips of 16 frames.*input.window 8",
        base + "input: {window: 16}\n": "needs input.stack: time",
        base + clip + "clips: 2\n": r"unknown key\(s\) \['clips'\]",
        base + clip.replace("per_frame: true", "per_frames: true"):
            r"unknown key\(s\) \['per_frames'\] in 'output'",
        base + clip + "batch: 0\n": "'batch'",
        base + "input: {window: 0}\n": "input.window must be an integer >= 1",
        "kind: temporal\nmodel: '{data_dir}/teachers/nope.onnx'\n": "nope.onnx: teacher model "
                                                                    "file not found",
    }
    for i, (text, message) in enumerate(cases.items()):
        cfg = write_yaml(tmp_path / f"clip{i}.yaml", text)
        with pytest.raises(TeacherError, match=message):
            get_teacher(str(cfg))


def test_cache_labels_with_clip_teacher(shared_data, tmp_path):
    """The teach step's cache fills from a clip teacher in one decode, and extends exactly."""
    from training.datasets import VideoSource, cached_teacher_maps, ensure_cache

    teacher = get_teacher("tinyhd-m")
    source = VideoSource(shared_data / "uav_unlabeled" / "wakeboard7.mp4")
    ensure_cache(source, [32], [teacher], tmp_path, max_frames=20, progress=False)
    part = np.array(cached_teacher_maps(source, teacher, tmp_path))
    assert part.shape == (20, 180, 320)
    ensure_cache(source, [32], [teacher], tmp_path, max_frames=40, progress=False)
    whole = np.array(cached_teacher_maps(source, teacher, tmp_path))
    assert whole.shape == (40, 180, 320)
    # frames 0-15 are the same first clip either way; an extended cache is labelled afresh,
    # so it equals labelling the 40 frames directly
    np.testing.assert_array_equal(whole[:16], part[:16])
    direct = list(teacher.label_frames(source.frames(0, 40)))
    for k in (18, 30, 39):
        small = cv2.resize(direct[k], (320, 180), interpolation=cv2.INTER_AREA)
        assert np.abs(np.rint(small * 255) - whole[k].astype(float)).max() <= 1


def test_teacher_config_ignores_how_the_model_path_is_spelled(tmp_path, monkeypatch):
    """The cache key is the computation: the data dir spelt another way reuses the maps."""
    first = get_teacher("tinyhd-m")
    other = first.model_path.parent.parent / ".." / first.model_path.parent.parent.name
    monkeypatch.setenv("SKD_DATA_DIR", str(other))
    second = get_teacher("tinyhd-m")
    assert str(second.model_path) != str(first.model_path)
    assert second.config == first.config and first.config["model_file"] == "tinyhd_m_rc4.onnx"


def test_shrunk_teacher_spec_has_its_own_config_and_cache_key():
    """tinyhd-m@R is the shipped YAML with input.shrink [R, R]: new name, new cache key."""
    from training.datasets import _config_hash

    plain, shrunk = get_teacher("tinyhd-m"), get_teacher("tinyhd-m@64")
    assert shrunk.name == "tinyhd-m@64" and shrunk.kind == plain.kind == "temporal"
    assert shrunk.config["input"]["shrink"] == [64, 64]
    # a teacher without the key keeps the config (and cache key) it had before the key
    assert "shrink" not in plain.config["input"]
    assert {k: v for k, v in shrunk.config["input"].items() if k != "shrink"} == \
        plain.config["input"]
    assert shrunk.config["model_sha1"] == plain.config["model_sha1"]
    assert _config_hash(shrunk.config) != _config_hash(plain.config)
    assert get_teacher("tinyhd-m@32").config["input"]["shrink"] == [32, 32]
    assert get_teacher("tinyhd-s@128").name == "tinyhd-s@128"


def test_shrunk_teacher_sees_the_student_frame_cache_pixels(shared_data, tmp_path):
    """The shrunk teacher's input is built from exactly the pixels of frames_area2_r64.npy."""
    from training.datasets import VideoSource, _SourceCache, ensure_cache

    source = VideoSource(shared_data / "uav_unlabeled" / "wakeboard7.mp4")
    ensure_cache(source, [64], [], tmp_path, max_frames=3, progress=False)
    student = np.load(_SourceCache(source, tmp_path).frames_path(64))
    plain, shrunk = get_teacher("tinyhd-m"), get_teacher("tinyhd-m@64")
    for k, frame in enumerate(source.frames(0, 3)):
        np.testing.assert_array_equal(shrunk._prepare_frame(frame),
                                      plain._prepare_frame(student[k]))
        # and it is not what the plain teacher makes of the full frame
        assert np.abs(shrunk._prepare_frame(frame) - plain._prepare_frame(frame)).mean() > 0.01


def test_shrunk_teacher_refusals(tmp_path):
    """A bad R, a teacher that has no YAML, and a bad input.shrink are refused by name."""
    from training.teachers import SHIPPED_YAML_DIR

    for spec in ("tinyhd-m@63", "tinyhd-m@0", "tinyhd-m@x", "tinyhd-m@"):
        with pytest.raises(TeacherError, match="multiples of 4|expected R"):
            get_teacher(spec)
    with pytest.raises(TeacherError, match="needs a deep teacher"):
        get_teacher("spectral-residual@64")
    with pytest.raises(TeacherError, match="needs a deep teacher"):
        get_teacher("nope@64")
    text = (SHIPPED_YAML_DIR / "tinyhd_m.yaml").read_text()
    text = text.replace("{data_dir}", str(get_teacher("tinyhd-m").model_path.parent.parent))
    cases = {"[64]": r"\[width, height\]",
             "64": r"\[width, height\]", "[2, 2]": r"\(>= 4\)"}
    for i, (value, message) in enumerate(cases.items()):
        cfg = write_yaml(tmp_path / f"shrink{i}.yaml",
                         text.replace("  window: 16", f"  window: 16\n  shrink: {value}"))
        with pytest.raises(TeacherError, match=message):
            get_teacher(str(cfg))
    ok = write_yaml(tmp_path / "shrunk.yaml",
                    text.replace("  window: 16", "  window: 16\n  shrink: [32, 32]"))
    assert get_teacher(str(ok)).config["input"]["shrink"] == [32, 32]
    assert get_teacher(f"{ok}@64").config["input"]["shrink"] == [64, 64]
    # a non-square student size: shrink is [width, height], the name says HxW
    wide = get_teacher(f"{ok}@48x80")
    assert wide.config["input"]["shrink"] == [80, 48] and wide.name.endswith("@48x80")
