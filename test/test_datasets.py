"""Datasets on real videos and gaze: sources, the teacher-map cache, pairs, and bad input."""

import argparse

import cv2
import numpy as np
import pytest
import torch
from skd_saliency_ros.core.maps import resize_area
from skd_saliency_ros.core.metrics import METRIC_KEYS

from training import teach
from training.datasets import (DatasetError, PairDataset, PreparedSource, VideoSource,
                               prepare_source, storage_size)
from training.manifest import default_sources
from training.teachers import MotionHomographyTeacher, OpenCVStaticTeacher


class CountingSpectral(OpenCVStaticTeacher):
    """The real spectral-residual teacher, counting how often it runs."""

    def __init__(self):
        super().__init__("spectral-residual")
        self.calls = 0

    def __call__(self, frame, prev=None):
        """Count, then compute for real."""
        self.calls += 1
        return super().__call__(frame, prev)


class CountingMotion(MotionHomographyTeacher):
    """The real motion-homography teacher, counting calls and recording which had a prev."""

    def __init__(self):
        super().__init__()
        self.calls, self.with_prev = 0, []

    def __call__(self, frame, prev=None):
        """Count, then compute for real."""
        self.calls += 1
        self.with_prev.append(prev is not None)
        return super().__call__(frame, prev)


@pytest.fixture(scope="module")
def car10(shared_data):
    """Return the car10 source with its gaze."""
    d = shared_data / "uav_gaze"
    return VideoSource(d / "car10.mp4", d / "car10_gaze.npz")


def first_frames(path, n):
    """Decode the first ``n`` frames with OpenCV directly, as RGB."""
    cap = cv2.VideoCapture(str(path))
    out = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(n)]
    cap.release()
    return out


def test_video_source_reads_real_video(car10, shared_data):
    """Header facts, gaze, and frames identical to a plain decode, also from an offset."""
    assert (car10.name, car10.n_frames, car10.width, car10.height) == ("car10", 469, 1280, 720)
    assert car10.fps == pytest.approx(10.0)
    assert car10.gaze is not None and car10.gaze.n_frames == 469
    ref = first_frames(car10.path, 6)
    got = list(car10.frames(0, 3))
    assert len(got) == 3 and got[0].dtype == np.uint8 and got[0].shape == (720, 1280, 3)
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(next(car10.frames(5, 6)), ref[5])
    clip = VideoSource(shared_data / "uav_unlabeled" / "wakeboard7.mp4")
    assert (clip.n_frames, clip.width, clip.height, clip.gaze) == (67, 640, 360, None)
    assert len(list(clip.frames(60))) == 7 and len(list(clip.frames(60, 1000))) == 7


def test_default_sources(shared_data):
    """Train = car10 (gaze) + 25 unlabeled clips, val = group2 (gaze), fidelity = 8 clips."""
    split = default_sources(shared_data)
    names = [s.name for s in split["train"]]
    held = [s.name for s in split["fidelity"]]
    assert names[0] == "car10" and split["train"][0].gaze is not None
    assert len(names) == 26 and "group2" not in names and "bike1" in names
    assert "UAVDT_S1301" in names and "DTB70_Gull1" in names and "DTB70_Yacht2" in names
    assert all(s.gaze is None for s in split["train"][1:])
    assert len(held) == 8 and not set(held) & set(names)
    assert {"wakeboard4", "UAVTrack112_air_conditioning_box1", "UAVDT_S0310"} <= set(held)
    # all 33 unlabeled clips (10,515 frames): 25 train, 8 held out for fidelity (1,798)
    unlabeled = split["train"][1:] + split["fidelity"]
    assert len(unlabeled) == 33
    assert sum(s.n_frames for s in unlabeled) == 10515
    assert sum(s.n_frames for s in split["fidelity"]) == 1798
    rates = {s.name: s.fps for s in unlabeled}
    assert rates["UAVDT_S1301"] == pytest.approx(30) and rates["bike1"] == pytest.approx(10)
    assert sorted({round(rates[n]) for n in held}) == [10, 30]
    assert [s.name for s in split["val"]] == ["group2"] and split["val"][0].gaze is not None
    with pytest.raises(DatasetError, match="missing from the data bundle"):
        default_sources(shared_data / "nope")


def test_frame_folder(car10, tmp_path):
    """Images are read in natural order (2 before 10) and losslessly."""
    frames = [cv2.resize(f, (160, 90)) for f in car10.frames(0, 3)]
    for name, f in zip(["1.png", "2.png", "10.png"], frames):
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("ignored")
    src = VideoSource(tmp_path, name="folder")
    assert (src.n_frames, src.width, src.height, src.fps) == (3, 160, 90, 10.0)
    for a, b in zip(src.frames(), frames):
        np.testing.assert_array_equal(a, b)
    cv2.imwrite(str(tmp_path / "11.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"11.png: image is 10x10"):
        list(VideoSource(tmp_path).frames())


def test_avi_video(car10, tmp_path):
    """An .avi (MJPEG) written from real frames reads back with its size and frame count."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 180))
    assert writer.isOpened()
    frames = [cv2.resize(f, (320, 180), interpolation=cv2.INTER_AREA) for f in car10.frames(0, 4)]
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    src = VideoSource(path)
    assert (src.name, src.n_frames, src.width, src.height) == ("clip", 4, 320, 180)
    got = list(src.frames())
    assert len(got) == 4
    for a, b in zip(got, frames):  # lossy codec: close, not equal
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 6


def test_bad_inputs(shared_data, tmp_path):
    """Missing/corrupt video, empty folder, foreign gaze: errors name the file and problem."""
    with pytest.raises(DatasetError, match=r"missing.mp4: no such video"):
        VideoSource(tmp_path / "missing.mp4")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 8)
    with pytest.raises(DatasetError, match=r"garbage.mp4: cannot (open|decode)"):
        VideoSource(garbage)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"empty: frame folder holds no images"):
        VideoSource(empty)
    (tmp_path / "clip.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"clip.txt: not a video"):
        VideoSource(tmp_path / "clip.txt")
    (empty / "000001.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match=r"000001.jpg: cannot read image"):
        VideoSource(empty)
    d = shared_data / "uav_gaze"
    with pytest.raises(DatasetError, match=r"car10.mp4.*895.*469|car10.mp4.*469.*895"):
        VideoSource(d / "car10.mp4", d / "group2_gaze.npz")
    with pytest.raises(DatasetError, match=r"gaze for .*bike1.mp4"):
        VideoSource(shared_data / "uav_unlabeled" / "bike1.mp4", d / "car10_gaze.npz")


def test_prepare_source_caches_teacher_maps(car10, tmp_path):
    """The first call runs the teachers once per frame; a second call never runs them."""
    spatial, motion = CountingSpectral(), CountingMotion()
    prep = prepare_source(car10, 32, [spatial, motion], cache_dir=tmp_path, max_frames=4,
                          progress=False)
    assert (spatial.calls, motion.calls) == (4, 4)
    assert motion.with_prev == [False, True, True, True]  # frame 0 has no previous frame
    assert isinstance(prep, PreparedSource) and len(prep) == 4
    assert prep.frames.shape == (4, 32, 32, 3) and prep.frames.dtype == np.uint8
    for name in ("spectral-residual", "motion-homography"):
        maps = prep.teacher_maps[name]
        assert maps.shape == (4, 32, 32) and maps.dtype == np.float32
        assert maps.min() >= 0 and np.allclose(maps[1:].max(axis=(1, 2)), 1.0)
    assert not prep.teacher_maps["motion-homography"][0].any()

    again = prepare_source(car10, 32, [spatial, motion], cache_dir=tmp_path, max_frames=4,
                           progress=False)
    assert (spatial.calls, motion.calls) == (4, 4)
    np.testing.assert_array_equal(again.frames, prep.frames)
    for name, maps in prep.teacher_maps.items():
        np.testing.assert_array_equal(again.teacher_maps[name], maps)

    # more frames: only the missing ones run, and the temporal teacher gets their prev frame
    longer = prepare_source(car10, 32, [spatial, motion], cache_dir=tmp_path, max_frames=6,
                            progress=False)
    assert (spatial.calls, motion.calls) == (6, 6) and motion.with_prev[4:] == [True, True]
    np.testing.assert_array_equal(longer.teacher_maps["spectral-residual"][:4],
                                  prep.teacher_maps["spectral-residual"])
    # another R reuses the teacher maps (stored independently of R); a changed config does not
    other_r = prepare_source(car10, 16, [spatial], cache_dir=tmp_path, max_frames=6,
                             progress=False)
    assert spatial.calls == 6 and other_r.frames.shape == (6, 16, 16, 3)
    changed = MotionHomographyTeacher(work_width=160)
    assert changed.config != motion.config
    prepare_source(car10, 32, [changed], cache_dir=tmp_path, max_frames=2, progress=False)
    assert len(list(tmp_path.glob("car10-*/teacher-motion-homography-*.npy"))) == 2


def test_prepared_maps_match_teacher_and_gaze(car10, tmp_path):
    """Cached maps equal the teacher's own map resized; human maps peak near fixations."""
    teacher = CountingSpectral()
    prep = prepare_source(car10, 64, [teacher], cache_dir=tmp_path, max_frames=3,
                          progress=False)
    frame = next(car10.frames(2, 3))
    direct = cv2.resize(cv2.resize(teacher(frame), storage_size(1280, 720),
                                   interpolation=cv2.INTER_AREA), (64, 64),
                        interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(prep.teacher_maps["spectral-residual"][2], direct / direct.max(),
                               atol=3 / 255)
    # Frames are shrunk by the node's own resize, so training sees the node's pixels.
    np.testing.assert_array_equal(prep.frames[2], resize_area(frame, 64))
    assert prep.video_size == (1280, 720) and prep.has_gaze.all()
    assert prep.human.shape == (3, 64, 64) and np.allclose(prep.human.max(axis=(1, 2)), 1.0)
    for k in range(3):
        pts = car10.gaze.fixations(k) * np.array([64 / 1280, 64 / 720])
        np.testing.assert_allclose(prep.fixations[k], pts, rtol=1e-5)
        iy, ix = np.unravel_index(np.argmax(prep.human[k]), (64, 64))
        assert np.min(np.hypot(pts[:, 0] - ix - 0.5, pts[:, 1] - iy - 0.5)) < 6


def test_unlabeled_source_has_no_gaze(shared_data, tmp_path):
    """A clip without gaze gives zero human maps and has_gaze False."""
    src = VideoSource(shared_data / "uav_unlabeled" / "wakeboard7.mp4")
    prep = prepare_source(src, 32, [], cache_dir=tmp_path, max_frames=2, progress=False)
    assert prep.video_size == (640, 360) and not prep.has_gaze.any() and not prep.human.any()
    assert prep.teacher_maps == {} and prep.frames.shape == (2, 32, 32, 3)


def test_pair_dataset(car10, tmp_path):
    """Items: frame t and t-1 on channels, soft = mean of teachers, consistent flips."""
    teachers = [CountingSpectral(), CountingMotion()]
    prep = prepare_source(car10, 32, teachers, cache_dir=tmp_path, max_frames=3,
                          progress=False)
    ds = PairDataset([prep, prep], ["spectral-residual", "motion-homography"])
    assert len(ds) == 6
    first, third = ds[0], ds[2]
    assert first["x"].shape == (6, 32, 32) and first["x"].dtype == torch.float32
    torch.testing.assert_close(first["x"][:3], first["x"][3:])  # frame 0 paired with itself
    np.testing.assert_allclose(third["x"][:3].numpy(),
                               prep.frames[2].transpose(2, 0, 1) / 255.0, atol=1e-6)
    np.testing.assert_allclose(third["x"][3:].numpy(),
                               prep.frames[1].transpose(2, 0, 1) / 255.0, atol=1e-6)
    mean = (prep.teacher_maps["spectral-residual"][2]
            + prep.teacher_maps["motion-homography"][2]) / 2
    np.testing.assert_allclose(third["soft"][0].numpy(), mean / mean.max(), atol=1e-6)
    assert third["soft"].shape == third["hard"].shape == (1, 32, 32)
    torch.testing.assert_close(third["hard"][0], torch.from_numpy(prep.human[2]))
    assert float(third["has_gaze"]) == 1.0 and (ds[4]["source"], ds[4]["index"]) == (1, 1)
    with pytest.raises(IndexError):
        ds[6]
    with pytest.raises(DatasetError, match="fine-grained"):
        PairDataset(prep, ["fine-grained"])
    assert float(PairDataset(prep, [])[1]["soft"].abs().sum()) == 0.0

    flips = [PairDataset(prep, ["spectral-residual"], hflip=True,
                         generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    drawn = [[flips[j][i % 3]["flipped"] for i in range(12)] for j in range(2)]
    assert drawn[0] == drawn[1] and any(drawn[0]) and not all(drawn[0])
    plain = PairDataset(prep, ["spectral-residual"])
    gen = torch.Generator().manual_seed(0)
    flipper = PairDataset(prep, ["spectral-residual"], hflip=True, generator=gen)
    while True:
        item = flipper[2]
        if item["flipped"]:
            break
    for key in ("x", "soft", "hard"):
        torch.testing.assert_close(item[key], plain[2][key].flip(-1))


def test_teach_cli_fills_cache(shared_data, tmp_path, capsys):
    """`python -m training teach` on the val split, 2 frames, two resolutions."""
    parser = argparse.ArgumentParser()
    teach.add_arguments(parser)
    args = parser.parse_args(["--data-dir", str(shared_data), "--cache-dir", str(tmp_path),
                              "--split", "val", "--max-frames", "2", "--resolution", "32",
                              "16", "--teachers", "spectral-residual,motion-homography",
                              "--no-progress"])
    assert teach.run(args) == 0
    out = capsys.readouterr().out
    assert "group2" in out and "total: 1 sources, 2 frames" in out
    cached = sorted(p.name for p in tmp_path.glob("group2-*/*.npy"))
    assert cached[:2] == ["frames_area2_r16.npy", "frames_area2_r32.npy"] and len(cached) == 4
    args.score = True
    assert teach.run(args) == 0
    out = capsys.readouterr().out
    assert "cached" in out
    rows = [line.split() for line in out.splitlines() if line.startswith("group2 ")]
    scored = {r[1]: dict(zip(METRIC_KEYS, map(float, r[2:8]))) for r in rows if len(r) == 9}
    assert sorted(scored) == ["motion-homography", "spectral-residual"]
    assert all(np.isfinite(list(v.values())).all() for v in scored.values())
    args.max_frames = 0
    with pytest.raises(DatasetError, match="--max-frames must be >= 1"):
        teach.run(args)
