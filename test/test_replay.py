"""saliency_replay on real bags made from a shared gaze sequence: offline, live, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from skd_saliency_ros.bags.bag_io import OutputBag
from skd_saliency_ros.core.stamps import stamp_ns
from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL
from skd_saliency_ros.core.processes import stop_process
from skd_saliency_ros.bags.replay import main

REPO = Path(__file__).resolve().parents[1]
N_FRAMES = 30        # frames of car10 in the test bags (3 s at 10 fps)
NS = "/saliency_node"
T0 = 1_700_000_000 * 10**9  # make-bag's default first stamp
STEP = 100_000_000          # 10 fps


@pytest.fixture(scope="module")
def model_path():
    """Return the shipped default model (it is part of the package)."""
    if not DEFAULT_MODEL.is_file():
        pytest.fail(f"{DEFAULT_MODEL} is missing: the package ships its default model")
    return DEFAULT_MODEL


@pytest.fixture(scope="module")
def car10(shared_data):
    """(video, gaze) of the shared car10 sequence."""
    return shared_data / "uav_gaze" / "car10.mp4", shared_data / "uav_gaze" / "car10_gaze.npz"


@pytest.fixture(scope="module", params=["sqlite3", "mcap"])
def bag(request, tmp_path_factory, car10):
    """Make a bag of the first N_FRAMES frames of car10 with CameraInfo and gaze, per storage.

    The sqlite3 bag uses the Humble type store, the mcap bag the Jazzy one.
    """
    video, gaze = car10
    out = tmp_path_factory.mktemp(f"bag_{request.param}") / f"car10_{request.param}"
    distro = "jazzy" if request.param == "mcap" else "humble"
    rc = main(["make-bag", "--video", str(video), "--gaze", str(gaze), "--out", str(out),
               "--storage", request.param, "--max-frames", str(N_FRAMES), "--hfov", "60",
               "--distro", distro, "--no-progress"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def live_bag(tmp_path_factory, car10):
    """Make a 10 Hz sqlite3 bag of 12 car10 frames with CameraInfo, for the live tests."""
    out = tmp_path_factory.mktemp("live_bag") / "car10_live"
    assert main(["make-bag", "--video", str(car10[0]), "--out", str(out), "--max-frames", "12",
                 "--hfov", "60", "--no-progress"]) == 0
    return out


def read_bag(path):
    """{topic: (msgtype, [(bag_ns, msg), ...])} of every message in a bag."""
    from rosbags.highlevel import AnyReader
    out = {}
    with AnyReader([Path(path)]) as reader:
        for conn in reader.connections:
            out.setdefault(conn.topic, (conn.msgtype, []))
        for conn, bag_ns, raw in reader.messages():
            out[conn.topic][1].append((bag_ns, reader.deserialize(raw, conn.msgtype)))
    return out


def tree_state(path):
    """(name, size, mtime) of every file under ``path``: proves a bag was not touched."""
    return sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in Path(path).rglob("*"))


def run_cli(args, env=None, timeout=600):
    """Run saliency_replay as a separate process (what users run)."""
    return subprocess.run([sys.executable, "-m", "skd_saliency_ros.bags.replay", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


# --------------------------------------------------------------------------- make-bag
def test_make_bag_writes_frames_camera_info_and_gaze(bag, car10):
    """One Image per frame at 10 fps stamps, CameraInfo beside it, gaze with the same stamps."""
    from skd_saliency_ros.core.gaze import load_gaze
    from skd_saliency_ros.ros.image_io import image_to_rgb8
    content = read_bag(bag)
    storage = "mcap" if bag.name.endswith("mcap") else "sqlite3"
    assert (bag / f"{bag.name}.{'mcap' if storage == 'mcap' else 'db3'}").is_file()
    assert {t: m for t, (m, _) in content.items()} == {
        "/camera/image_raw": "sensor_msgs/msg/Image",
        "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
        "/gaze/fixations": "geometry_msgs/msg/PolygonStamped"}
    images = content["/camera/image_raw"][1]
    assert [ns for ns, _ in images] == [T0 + k * STEP for k in range(N_FRAMES)]
    assert all(stamp_ns(m.header.stamp) == ns for ns, m in images)
    first = image_to_rgb8(images[0][1])
    import cv2
    cap = cv2.VideoCapture(str(car10[0]))
    ok, bgr = cap.read()
    cap.release()
    assert ok and np.array_equal(first, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))  # lossless
    gaze = load_gaze(car10[1])
    fix = content["/gaze/fixations"][1]
    assert len(fix) == N_FRAMES
    for k in (0, N_FRAMES - 1):
        pts = np.array([[p.x, p.y] for p in fix[k][1].polygon.points])
        np.testing.assert_allclose(np.sort(pts, axis=0), np.sort(gaze.fixations(k), axis=0),
                                   atol=1e-3)
    info = content["/camera/camera_info"][1][0][1]
    assert (info.width, info.height) == (1280, 720)
    assert info.k[0] == pytest.approx(640.0 / np.tan(np.radians(30.0)))


# --------------------------------------------------------------------------- offline
@pytest.fixture(scope="module")
def offline(bag, model_path, car10, tmp_path_factory):
    """Offline replay of ``bag`` with gaze: (output bag, report json, input state before)."""
    before = tree_state(bag)
    tmp = tmp_path_factory.mktemp("offline")
    out, report = tmp / "replayed", tmp / "report.json"
    proc = run_cli([bag, "--out", out, "--model", model_path, "--gaze", car10[1], "--json",
                    report, "--batch", "64", "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    assert "frames/s" in proc.stdout and "NSS" in proc.stdout
    return out, json.loads(report.read_text()), before


def test_offline_output_bag_counts_stamps_and_types(offline, bag):
    """Camera topics copied verbatim, one saliency/peaks/bearings per frame, same stamps."""
    out, report, before = offline
    assert tree_state(bag) == before, "the input bag was modified"
    storage = "mcap" if bag.name.endswith("mcap") else "sqlite3"
    assert (out / f"{out.name}.{'mcap' if storage == 'mcap' else 'db3'}").is_file()
    src, dst = read_bag(bag), read_bag(out)
    assert {t: m for t, (m, _) in dst.items()} == {
        "/camera/image_raw": "sensor_msgs/msg/Image",
        "/camera/camera_info": "sensor_msgs/msg/CameraInfo",
        f"{NS}/saliency": "sensor_msgs/msg/Image",
        f"{NS}/peaks": "geometry_msgs/msg/PoseArray",
        f"{NS}/bearings": "geometry_msgs/msg/PoseArray",
        f"{NS}/target": "geometry_msgs/msg/Vector3Stamped",
        f"{NS}/camera_info": "sensor_msgs/msg/CameraInfo"}
    stamps = [T0 + k * STEP for k in range(N_FRAMES)]
    # ~/target: the best bearing, on exactly the frames that have a peak
    best = {stamp_ns(b.header.stamp): b.poses[0].position for _, b in dst[f"{NS}/bearings"][1]
            if b.poses}
    targets = {stamp_ns(t.header.stamp): t.vector for _, t in dst[f"{NS}/target"][1]}
    assert sorted(targets) == sorted(best) and best
    for stamp, vec in targets.items():
        assert (vec.x, vec.y, vec.z) == (best[stamp].x, best[stamp].y, best[stamp].z)
    for topic in dst:
        if topic == f"{NS}/target":
            continue
        msgs = dst[topic][1]
        assert [ns for ns, _ in msgs] == stamps, topic
        assert [stamp_ns(m.header.stamp) for _, m in msgs] == stamps, topic
        assert all(m.header.frame_id == "camera_optical_frame" for _, m in msgs), topic
    for (_, info), (_, sal) in zip(dst[f"{NS}/camera_info"][1], dst[f"{NS}/saliency"][1]):
        assert (info.width, info.height) == (sal.width, sal.height)  # describes the map
    a, b = src["/camera/image_raw"][1][5][1], dst["/camera/image_raw"][1][5][1]
    assert np.array_equal(a.data, b.data)
    from skd_saliency_ros.ros.image_io import image_to_numpy
    for _, sal in dst[f"{NS}/saliency"][1][:3]:
        # the node's default output_scale (0.25): 1280x720 -> 320x180
        assert sal.encoding == "32FC1" and (sal.width, sal.height) == (320, 180)
        arr = image_to_numpy(sal)
        assert arr.min() >= 0.0 and arr.max() <= 1.0 and arr.max() > 0.5
    n_peaks = 0
    for (_, peaks), (_, bearings) in zip(dst[f"{NS}/peaks"][1], dst[f"{NS}/bearings"][1]):
        assert len(peaks.poses) == len(bearings.poses) <= 5
        n_peaks += len(peaks.poses)
        for p, r in zip(peaks.poses, bearings.poses):
            assert 0 <= p.position.x <= 1279 and 0 <= p.position.y <= 719
            assert 0.3 <= p.position.z <= 1.0
            ray = np.array([r.position.x, r.position.y, r.position.z])
            assert np.linalg.norm(ray) == pytest.approx(1.0) and ray[2] > 0
            # the ray points at the peak's pixel through the bag's pinhole K
            f = 640.0 / np.tan(np.radians(30.0))
            assert ray[0] / ray[2] == pytest.approx((p.position.x - 639.5) / f, abs=1e-9)
    assert n_peaks == report["sequences"][bag.name]["peaks"] > 0
    seq = report["sequences"][bag.name]
    assert seq["frames"] == N_FRAMES and seq["scored_frames"] == N_FRAMES


def test_offline_metrics_equal_training_evaluate(offline, model_path, car10, tmp_path):
    """Replay's metrics equal `python -m training evaluate` on the same frames (1e-6).

    Needs the trained default model: random weights give nearly constant maps whose min-max
    normalisation turns float rounding into visible differences.
    """
    if Path(model_path) != DEFAULT_MODEL:
        pytest.fail(f"the trained default model {DEFAULT_MODEL} is missing")
    _, report, _ = offline
    out = tmp_path / "evaluate.json"
    proc = subprocess.run(
        [sys.executable, "-m", "training", "evaluate", "--video", str(car10[0]), "--gaze",
         str(car10[1]), "--models", str(model_path), "--json", str(out), "--max-frames",
         str(N_FRAMES), "--no-progress", "--cache-dir", str(tmp_path / "cache")],
        capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr
    trained = json.loads(out.read_text())["models"][Path(model_path).stem]
    seq = next(iter(report["sequences"].values()))
    assert trained["n_frames"] == seq["scored_frames"] == N_FRAMES
    for key, value in seq["metrics"].items():
        assert value == pytest.approx(trained[key], abs=1e-6), (
            f"{key}: replay (the node's engine) {value} != training evaluate {trained[key]}: "
            "the runtime and the training pipeline do not compute the same maps; check that "
            "engine.resize_area and training/datasets.py resize frames identically")
    overall = report["overall"]["metrics"]
    for key, value in seq["metrics"].items():
        assert overall[key] == pytest.approx(value, abs=1e-12), key


def test_compressed_bag_and_several_sequences(bag, offline, model_path, car10, tmp_path):
    """A lossless PNG CompressedImage bag gives the raw bag's maps; two bags: overall mean."""
    png = tmp_path / "car10_png"
    assert main(["make-bag", "--video", str(car10[0]), "--out", str(png), "--compress", "png",
                 "--max-frames", "5", "--hfov", "60", "--no-progress"]) == 0
    assert read_bag(png)["/camera/image_raw/compressed"][0] == \
        "sensor_msgs/msg/CompressedImage"
    report = tmp_path / "two.json"
    out = tmp_path / "outs"
    assert main([str(bag), str(png), "--gaze", str(car10[1]), str(car10[1]), "--out", str(out),
                 "--model", str(model_path), "--json", str(report), "--batch", "64",
                 "--no-progress"]) == 0
    data = json.loads(report.read_text())
    first, second = data["sequences"][bag.name], data["sequences"]["car10_png"]
    assert second["camera_info"] == "/camera/camera_info" and second["frames"] == 5
    from skd_saliency_ros.bags.bag_io import COMPRESSED_TYPE, decode_rgb
    from skd_saliency_ros.ros.image_io import image_to_numpy, image_to_rgb8
    pixels = zip(read_bag(bag)["/camera/image_raw"][1], read_bag(png)[
        "/camera/image_raw/compressed"][1])
    assert all(np.array_equal(image_to_rgb8(a), decode_rgb(b, COMPRESSED_TYPE))
               for (_, a), (_, b) in pixels)  # lossless decode through cv2.imdecode
    raw = read_bag(offline[0])[f"{NS}/saliency"][1][:5]
    comp = read_bag(out / "car10_png_saliency")[f"{NS}/saliency"][1]
    for (_, a), (_, b) in zip(raw, comp):  # same maps up to batch-size float rounding
        np.testing.assert_allclose(image_to_numpy(a), image_to_numpy(b), atol=2e-3)
    assert len(read_bag(out / "car10_png_saliency")[f"{NS}/bearings"][1]) == 5
    frames = first["per_frame"] + second["per_frame"]
    assert data["overall"]["metrics"]["n_frames"] == N_FRAMES + 5 == len(frames)
    for key in ("nss", "cc", "kld"):
        assert data["overall"]["metrics"][key] == pytest.approx(
            np.mean([f[key] for f in frames]), abs=1e-12)


def test_stamp_matching_with_dropped_frames(bag, model_path, car10, tmp_path, capsys):
    """A bag missing frames 3 and 4: --match stamp scores the right gaze frames, index refuses."""
    from skd_saliency_ros.bags.bag_io import InputBag
    holes = tmp_path / "holes"
    with InputBag(bag) as src, OutputBag(holes) as dst:
        for m in src.messages():
            if (m.bag_ns - T0) // STEP not in (3, 4):
                dst.write_raw(m.topic, m.msgtype, m.bag_ns, m.raw,
                              typestore=src.reader.typestore)
    fails([holes, "--gaze", car10[1], "--no-output"], capsys, "469", f"has {N_FRAMES - 2}")
    report = tmp_path / "stamp.json"
    assert main([str(holes), "--gaze", str(car10[1]), "--match", "stamp", "--no-output",
                 "--model", str(model_path), "--json", str(report), "--no-progress"]) == 0
    seq = json.loads(report.read_text())["sequences"]["holes"]
    assert [f["frame_index"] for f in seq["per_frame"]] == [
        k for k in range(N_FRAMES) if k not in (3, 4)]


# --------------------------------------------------------------------------- live
@pytest.fixture()
def node_process(ros_env, model_path, tmp_path):
    """Start the saliency node as a separate process on the bag's camera topics, shared memory."""
    env = dict(ros_env)
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(REPO / "config" / "fastdds_shm.xml")
    log = open(tmp_path / "node.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "skd_saliency_ros.ros.node", "--ros-args", "--params-file",
         str(REPO / "config" / "saliency.yaml"), "-r", "image:=/camera/image_raw",
         "-r", "camera_info:=/camera/camera_info", "-p", "use_sim_time:=true",
         "-p", f"model_path:={model_path}", "-p", "threads:=1"],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    yield proc, env
    stop_process(proc)
    log.close()


def test_live_replay_gets_one_saliency_per_frame(node_process, live_bag, car10, tmp_path):
    """Frames played at 10 Hz into a running node: one saliency/peaks/bearings per frame."""
    bag = live_bag
    proc, env = node_process
    # Warm-up pass (torch's first inference is slow); its answers are not checked.
    warm = run_cli([bag, "--live", "--max-frames", "3", "--wait", "120", "--no-progress"],
                   env=env)
    assert warm.returncode == 0, warm.stderr + (tmp_path / "node.log").read_text()
    n = 10
    out, report = tmp_path / "live_out", tmp_path / "live.json"
    live = run_cli([bag, "--live", "--max-frames", n, "--out", out, "--json", report,
                    "--gaze", car10[1], "--drain", "10", "--no-progress"], env=env)
    assert live.returncode == 0, live.stderr
    assert proc.poll() is None, "the node died"
    seq = json.loads(report.read_text())["sequences"][bag.name]
    assert seq["frames"] == n
    for suffix in ("saliency", "peaks", "bearings"):
        t = seq["topics"][f"{NS}/{suffix}"]
        assert (t["expected"], t["received"], t["drops"], t["unmatched"]) == (n, n, 0, 0), t
        assert t["latency"]["max_ms"] > 0
    content = read_bag(out)
    stamps = [T0 + k * STEP for k in range(n)]
    assert [stamp_ns(m.header.stamp) for _, m in content[f"{NS}/saliency"][1]] == stamps
    assert [ns for ns, _ in content["/camera/image_raw"][1]] == stamps
    assert "dropped" in live.stdout and "latency" in live.stdout
    assert seq["scored_frames"] == n and set(seq["metrics"]) == {
        "auc_judd", "auc_shuffled", "nss", "sim", "cc", "kld"}


def test_live_without_node_is_a_clear_error(live_bag, ros_env, tmp_path):
    """No node on the topic: a clear error after --wait, and no output."""
    proc = run_cli([live_bag, "--live", "--wait", "2", "--out", tmp_path / "o", "--no-progress"],
                   env=ros_env)
    assert proc.returncode == 2
    assert "no saliency node answered" in proc.stderr
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- bad input
def fails(args, capsys, *needles):
    """Run main() in-process; assert exit code 2 and every needle in the one-line error."""
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert rc == 2, err
    for needle in needles:
        assert needle in err, err
    return err


def test_missing_bag(tmp_path, capsys):
    """A bag that does not exist."""
    fails([tmp_path / "nope", "--no-output"], capsys, "nope", "no such bag")


@pytest.mark.parametrize("cut", [0.5, 0.02])
def test_truncated_bag_and_no_output_left(bag, tmp_path, capsys, cut):
    """A truncated storage file is refused with the bag's name; nothing under --out."""
    import shutil
    broken = tmp_path / "broken"
    shutil.copytree(bag, broken)
    storage = next(p for p in broken.iterdir() if p.suffix in (".db3", ".mcap"))
    with open(storage, "r+b") as fh:
        fh.truncate(int(storage.stat().st_size * cut))
    out = tmp_path / "out"
    fails([broken, "--out", out], capsys, str(broken), "truncated or corrupt")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


def test_garbage_metadata(tmp_path, capsys):
    """A directory whose metadata.yaml is not a bag's."""
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metadata.yaml").write_text("just: text\n")
    fails([tmp_path / "bad", "--no-output"], capsys, "bad", "cannot open bag")


def test_bag_without_image_topic(tmp_path, capsys):
    """A bag with only a String topic: no image topic, the topics are listed."""
    path = tmp_path / "strings"
    with OutputBag(path) as bag:
        String = bag.typestore.types["std_msgs/msg/String"]
        for k in range(3):
            bag.write("/chatter", "std_msgs/msg/String", T0 + k, String(data=f"hello {k}"))
    fails([path, "--no-output"], capsys, "no image topic", "/chatter [std_msgs/msg/String]")


def test_wrong_type_on_chosen_topic(bag, capsys):
    """--topic naming a topic of another type (a standard and a custom one)."""
    fails([bag, "--topic", "/gaze/fixations", "--no-output"], capsys,
          "geometry_msgs/msg/PolygonStamped", "not an image type")
    fails([bag, "--topic", "/not/there", "--no-output"], capsys, "'/not/there' is not in")


def test_unknown_custom_type_on_topic(tmp_path, capsys):
    """An image-named topic carrying a custom message type the package does not know."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore
    store = get_typestore(Stores.ROS2_HUMBLE)
    store.register(get_types_from_msg("uint8[] blob\nstring note", "acme_msgs/msg/Frame"))
    path = tmp_path / "custom"
    with Writer(path, version=9) as writer:
        conn = writer.add_connection("/camera/image_raw", "acme_msgs/msg/Frame",
                                     typestore=store)
        Frame = store.types["acme_msgs/msg/Frame"]
        raw = store.serialize_cdr(Frame(blob=np.zeros(4, np.uint8), note="x"),
                                  "acme_msgs/msg/Frame")
        writer.write(conn, T0, raw)
    fails([path, "--topic", "/camera/image_raw", "--no-output"], capsys,
          "acme_msgs/msg/Frame", "not an image type")
    fails([path, "--no-output"], capsys, "no image topic", "acme_msgs/msg/Frame")


def test_gaze_for_another_frame_count(bag, shared_data, capsys):
    """group2's gaze (895 frames) on a car10 bag (469-frame source): both numbers named."""
    gaze = shared_data / "uav_gaze" / "group2_gaze.npz"
    fails([bag, "--gaze", gaze, "--no-output"], capsys, "group2_gaze.npz", "895", "469")


def resized_gaze(car10_gaze, path, width, height):
    """Write car10's real gaze as if recorded on a width x height copy of the video."""
    with np.load(car10_gaze) as npz:
        data = {key: npz[key] for key in npz.files}
    data["fix_xy"] = data["fix_xy"] * np.float32(width / 1280.0)
    data.update(width=np.int32(width), height=np.int32(height))
    np.savez(path, **data)
    return path


@pytest.mark.parametrize("size", [(1920, 1080), (2 ** 20, 2 ** 20)])
def test_gaze_for_another_frame_size(bag, car10, model_path, tmp_path, size):
    """A gaze file for 1920x1080 (or 2^20 px) frames on a 1280x720 bag: one line, exit 2.

    Was: scored silently (AUC-J 0.749 instead of 0.793 on car10), or a cv2 out-of-memory
    traceback for 2^20.  make-bag refuses the same file for the same video.
    """
    gaze = resized_gaze(car10[1], tmp_path / "big_gaze.npz", *size)
    proc = run_cli([bag, "--gaze", gaze, "--no-output", "--model", model_path,
                    "--max-frames", "3", "--no-progress"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert f"{size[0]}x{size[1]}" in proc.stderr and "1280x720" in proc.stderr
    out = tmp_path / "made"
    proc = run_cli(["make-bag", "--video", car10[0], "--gaze", gaze, "--out", out,
                    "--max-frames", "2", "--no-progress"])
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"{size[0]}x{size[1]}" in proc.stderr and "1280x720" in proc.stderr
    assert not out.exists()


def test_make_bag_refuses_observer_ids_float32_cannot_hold(car10, tmp_path, capsys):
    """Point32.z is float32: an id above 2^24 would be written as another id; refused."""
    with np.load(car10[1]) as npz:
        data = {key: npz[key] for key in npz.files}
    for key in ("observer_ids", "fix_observer", "samples_observer"):
        data[key] = data[key].astype(np.int64) + 20231100
    gaze = tmp_path / "dates_gaze.npz"
    np.savez(gaze, **data)
    out = tmp_path / "dates_bag"
    fails(["make-bag", "--video", car10[0], "--gaze", gaze, "--out", out, "--max-frames", "2",
           "--no-progress"], capsys, "dates_gaze.npz", "20231101", "float32")
    assert not out.exists()


def test_one_frame_video_scores_without_sauc(car10, model_path, tmp_path):
    """A 1-frame video and its gaze: every metric but sAUC (not available), exit 0.

    Was: a ValueError traceback ("sAUC needs fixations on another frame").
    """
    import cv2
    cap = cv2.VideoCapture(str(car10[0]))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    video = tmp_path / "one.avi"  # lossless-enough MJPG, one frame
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (bgr.shape[1], bgr.shape[0]))
    writer.write(bgr)
    writer.release()
    with np.load(car10[1]) as npz:
        data = {key: npz[key] for key in npz.files}
    keep = data["fix_frame"] == 0
    for key in ("fix_xy", "fix_frame", "fix_observer"):
        data[key] = data[key][keep]
    data["n_frames"] = np.int32(1)
    gaze = tmp_path / "one_gaze.npz"
    np.savez(gaze, **data)
    bag = tmp_path / "one_bag"
    proc = run_cli(["make-bag", "--video", video, "--gaze", gaze, "--out", bag,
                    "--no-progress"])
    assert proc.returncode == 0, proc.stderr
    report = tmp_path / "one.json"
    proc = run_cli([bag, "--gaze", gaze, "--no-output", "--model", model_path, "--json",
                    report, "--no-progress"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sAUC n/a" in proc.stdout and "NSS" in proc.stdout
    seq = json.loads(report.read_text())["sequences"]["one_bag"]
    assert seq["scored_frames"] == 1 and seq["metrics"]["auc_shuffled"] is None
    assert all(isinstance(seq["metrics"][k], float) for k in ("auc_judd", "nss", "cc"))
    assert json.loads(report.read_text())["overall"]["metrics"]["auc_shuffled"] is None


@pytest.mark.parametrize("option,value", [("--fps", "0"), ("--fps", "-5"), ("--fps", "nan"),
                                          ("--fps", "inf"), ("--max-frames", "0"),
                                          ("--hfov", "0"), ("--hfov", "180")])
def test_make_bag_refuses_bad_numbers(car10, tmp_path, capsys, option, value):
    """Bad --fps, --max-frames or --hfov: one line naming the option, no bag.

    --fps 0 was silently the video's rate, -5 said "pass --fps"; NaN and inf, no frames, a
    field of view no pinhole has made a bag of nonsense.
    """
    out = tmp_path / "b"
    fails(["make-bag", "--video", car10[0], "--out", out, option, value, "--no-progress"],
          capsys, option, value)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_existing_output_refused_then_overwritten(bag, model_path, tmp_path, capsys):
    """An existing output is refused unless --overwrite; then replaced by a complete bag."""
    out = tmp_path / "exists"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    fails([bag, "--out", out, "--max-frames", "2"], capsys, "already exists", "--overwrite")
    assert (out / "keep.txt").read_text() == "user data"
    assert main([str(bag), "--out", str(out), "--max-frames", "2", "--overwrite",
                 "--model", str(model_path), "--no-progress"]) == 0
    assert not (out / "keep.txt").exists()
    assert len(read_bag(out)[f"{NS}/saliency"][1]) == 2
    fails(["make-bag", "--video", REPO / "nope.mp4", "--out", out], capsys, "no such video")
    fails([bag, "--out", bag], capsys, "input bag")


def test_params_file_sets_what_the_node_would_publish(bag, model_path, tmp_path, capsys):
    """The node's YAML drives replay: output_scale and top_k; invalid values are refused."""
    import yaml
    params = yaml.safe_load((REPO / "config" / "saliency.yaml").read_text())
    params["/**"]["ros__parameters"].update(output_scale=0.5, top_k=1, min_score=0.0,
                                            model_path=str(model_path))
    good = tmp_path / "params.yaml"
    good.write_text(yaml.safe_dump(params))
    out = tmp_path / "scaled"
    assert main([str(bag), "--params-file", str(good), "--out", str(out), "--max-frames", "3",
                 "--no-progress"]) == 0
    content = read_bag(out)
    assert {(m.width, m.height) for _, m in content[f"{NS}/saliency"][1]} == {(640, 360)}
    assert [len(m.poses) for _, m in content[f"{NS}/peaks"][1]] == [1, 1, 1]
    params["/**"]["ros__parameters"]["top_k"] = 500
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(params))
    fails([bag, "--params-file", bad, "--no-output"], capsys, "bad.yaml", "top_k")


def test_settings_come_from_the_node_table_then_the_file_then_the_options(tmp_path):
    """Replay's settings: the node's defaults, the params file over them, options over both."""
    import argparse

    from skd_saliency_ros.bags.replay import build_settings
    from skd_saliency_ros.ros.params import SPECS, OutputSettings

    def settings(params_file=None, **options):
        base = dict(params_file=params_file, model=None, device=None, backend=None)
        return build_settings(argparse.Namespace(**{**base, **options}))

    defaults = settings()
    assert defaults.values == {name: spec.default for name, spec in SPECS.items()}
    assert defaults.extra == {}
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    top_k: 2\n    device: cpu\n"
                      "    cameras: [front/image]\n    use_sim_time: true\n")
    ran = settings(params, device="cuda", model="m.onnx")
    assert ran.output == OutputSettings(output_scale=SPECS["output_scale"].default, top_k=2,
                                        nms_radius=SPECS["nms_radius"].default,
                                        min_score=SPECS["min_score"].default)
    assert (ran.values["device"], ran.model_path) == ("cuda", "m.onnx")
    report = ran.report()
    assert report["top_k"] == 2 and report["device"] == "cuda" and "cameras" not in report
    assert report["extra"] == {"cameras": ["front/image"], "use_sim_time": True}


def test_interrupted_replay_leaves_no_bag(bag, model_path, tmp_path):
    """SIGTERM in the middle of writing: exit 130, nothing under the final name, no temp."""
    out = tmp_path / "interrupted"
    proc = subprocess.Popen([sys.executable, "-m", "skd_saliency_ros.bags.replay", str(bag),
                             "--out", str(out), "--model", str(model_path), "--batch", "1",
                             "--no-progress"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    partial = []
    while time.monotonic() < deadline and proc.poll() is None:
        partial = [p for p in tmp_path.iterdir() if ".partial-" in p.name]
        storage = [f for p in partial for f in p.rglob("*") if f.suffix in (".db3", ".mcap")]
        if storage and storage[0].stat().st_size > 0:
            break
        time.sleep(0.05)
    assert partial, "replay finished before it could be interrupted"
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]


# --------------------------------------------------------------------------- output paths
def copy_bag(bag, tmp_path):
    """Copy a module bag for a test that (on a defect) would damage its input."""
    import shutil
    copy = tmp_path / bag.name
    shutil.copytree(bag, copy)
    return copy


def test_json_in_the_place_of_the_output_bag_refused_before_any_work(bag, model_path,
                                                                     tmp_path):
    """--out X --json X: one line, exit 2, nothing written, refused before the replay.

    Was: every frame replayed, then IsADirectoryError and exit 1.
    """
    out = tmp_path / "same"
    proc = run_cli([bag, "--out", out, "--json", out, "--model", model_path, "--max-frames",
                    "2", "--no-progress"])
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "--out" in proc.stderr and "--json" in proc.stderr and "same place" in proc.stderr
    assert "frames/s" not in proc.stdout  # refused before the replay, not after it
    assert not out.exists()


@pytest.mark.parametrize("where", ["metadata.yaml", "storage"])
def test_json_onto_a_file_of_the_input_bag_refused(bag, tmp_path, capsys, where):
    """--json <input bag>/metadata.yaml (or its storage file) --overwrite is refused.

    The bag stays byte for byte and still opens (was: its metadata replaced, unreadable).
    """
    from skd_saliency_ros.bags.bag_io import InputBag
    src = copy_bag(bag, tmp_path)
    target = src / "metadata.yaml" if where == "metadata.yaml" else next(
        p for p in src.iterdir() if p.suffix in (".db3", ".mcap"))
    before = tree_state(src)
    fails([src, "--json", target, "--overwrite", "--no-output", "--max-frames", "2",
           "--no-progress"], capsys, "--json", "input bag")
    assert tree_state(src) == before
    with InputBag(src) as opened:
        assert opened.image_count == N_FRAMES


def test_outputs_clear_of_every_input(bag, car10, tmp_path, capsys):
    """The gaze file and the params file are inputs too: no output lands on them.

    An --out that holds the input bag is refused (with --overwrite it would delete it).
    """
    import shutil
    src = copy_bag(bag, tmp_path)
    gaze = tmp_path / "gaze.npz"
    shutil.copy(car10[1], gaze)
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    top_k: 3\n")
    gaze_before, params_before = gaze.read_bytes(), params.read_text()
    fails([src, "--gaze", gaze, "--json", gaze, "--overwrite", "--no-output"], capsys,
          "--json", "gaze")
    fails([src, "--params-file", params, "--json", params, "--overwrite", "--no-output"],
          capsys, "--json", "params")
    fails([src, "--out", tmp_path, "--overwrite"], capsys, "--out", "input bag")
    assert gaze.read_bytes() == gaze_before and params.read_text() == params_before
    assert tree_state(src) and (src / "metadata.yaml").is_file()


def test_make_bag_output_clear_of_its_inputs(car10, tmp_path, capsys):
    """make-bag --out onto its own --gaze file (or a folder holding the video): refused."""
    import shutil
    video, gaze = tmp_path / "car10.mp4", tmp_path / "car10_gaze.npz"
    shutil.copy(car10[0], video)
    shutil.copy(car10[1], gaze)
    fails(["make-bag", "--video", video, "--gaze", gaze, "--out", gaze, "--overwrite",
           "--max-frames", "2", "--no-progress"], capsys, "--out", "--gaze")
    fails(["make-bag", "--video", video, "--out", tmp_path, "--overwrite", "--max-frames",
           "2", "--no-progress"], capsys, "--out", "--video")
    assert video.stat().st_size == car10[0].stat().st_size and gaze.is_file()


def test_replay_refuses_a_compressed_bomb_and_skips_non_finite_maps(car10, model_path,
                                                                    tmp_path, capsys):
    """Replay keeps the node's rules: no decoded bomb, no map from a NaN model.

    A PNG in a bag that declares 16000x16000 is refused from its header, never decoded; a
    model that gives NaN on real frames writes no map for them (as the node), counted.
    """
    import dataclasses
    import tracemalloc

    from bad_models import nan_off_grey
    from compressed_bombs import png_header_only
    from skd_saliency_ros.bags.bag_io import COMPRESSED_TYPE, InputBag, decode_rgb
    from skd_saliency_ros.ros.image_io import ImageSizeError

    png = tmp_path / "png"
    assert main(["make-bag", "--video", str(car10[0]), "--out", str(png), "--compress", "png",
                 "--max-frames", "4", "--hfov", "60", "--no-progress"]) == 0
    bomb = tmp_path / "bomb"
    with InputBag(png) as src, OutputBag(bomb) as dst:
        k = 0
        for m in src.messages():
            if m.msgtype == COMPRESSED_TYPE:
                if k == 2:
                    msg = dataclasses.replace(m.msg, data=np.frombuffer(png_header_only(),
                                                                        np.uint8))
                    dst.write(m.topic, m.msgtype, m.bag_ns, msg)
                    k += 1
                    continue
                k += 1
            dst.write_raw(m.topic, m.msgtype, m.bag_ns, m.raw, typestore=src.reader.typestore)
        tracemalloc.start()
        with pytest.raises(ImageSizeError, match="16000x16000"):
            decode_rgb(msg, COMPRESSED_TYPE)
        assert tracemalloc.get_traced_memory()[1] < 16 * 2**20  # nothing was decoded
        tracemalloc.stop()
    report = tmp_path / "bomb.json"
    assert main([str(bomb), "--no-output", "--model", str(model_path), "--json", str(report),
                 "--no-progress"]) == 0
    seq = json.loads(report.read_text())["sequences"]["bomb"]
    assert (seq["frames"], seq["invalid"]) == (3, 1)
    assert "16000x16000" in capsys.readouterr().err

    nan_model = nan_off_grey(tmp_path / "nan.onnx")
    out = tmp_path / "nan_out"
    assert main([str(png), "--out", str(out), "--model", str(nan_model), "--json",
                 str(tmp_path / "nan.json"), "--no-progress"]) == 0
    seq = json.loads((tmp_path / "nan.json").read_text())["sequences"]["png"]
    assert seq["non_finite"] == 4 and "not finite" in capsys.readouterr().err
    written = read_bag(out)  # one input bag: --out is the output bag itself
    assert f"{NS}/saliency" not in written and "/camera/image_raw/compressed" in written
