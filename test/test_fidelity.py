"""Fidelity (training/fidelity.py, evaluate --fidelity): real clips, the real TinyHD-M ONNX.

One short held-out clip (wakeboard7, 67 frames of 640x360) is labelled once per module into a
temporary cache by the plain teacher and by its ceiling ``tinyhd-m@64``; every test reads it.
"""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.fidelity import (FIDELITY_LONG_SIDE, FidelityError, even_frames, fidelity_grid,
                               gap_to_ceiling, score_clip, score_clips)

CLIP = "wakeboard7"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def labelled(shared_data, tmp_path_factory):
    """Label the clip with tinyhd-m and tinyhd-m@64 (67 frames) into a temporary cache."""
    from training.datasets import VideoSource, cached_teacher_maps, ensure_cache
    from training.teachers import get_teacher

    cache = tmp_path_factory.mktemp("fidelity_cache")
    source = VideoSource(shared_data / "uav_unlabeled" / f"{CLIP}.mp4")
    plain, ceiling = get_teacher("tinyhd-m"), get_teacher("tinyhd-m@64")
    ensure_cache(source, [64], [plain, ceiling], cache, progress=False)
    return {"source": source, "cache": cache, "plain": plain, "ceiling": ceiling,
            "teacher": np.asarray(cached_teacher_maps(source, plain, cache)),
            "shrunk": np.asarray(cached_teacher_maps(source, ceiling, cache))}


def own_peak_nss(maps):
    """NSS of each teacher map at its own top 1 % on the 80 x 45 grid, written out."""
    out = []
    for m in maps:
        g = cv2.resize(m.astype(np.float64), (80, 45), interpolation=cv2.INTER_AREA)
        z = (g - g.mean()) / g.std(ddof=1)
        out.append(z[g >= np.percentile(g, 99)].mean())
    return float(np.mean(out))


def test_a_map_scored_with_itself(labelled):
    """CC 1, KLD 0 and the teacher's own NSS at its peaks, on the 80 x 45 grid."""
    teacher = labelled["teacher"]
    assert teacher.shape == (67, 180, 320)
    assert fidelity_grid(640, 360) == (80, 45) == fidelity_grid(320, 180)
    assert FIDELITY_LONG_SIDE == 80 and fidelity_grid(360, 640) == (45, 80)
    res = score_clip(teacher, teacher)
    assert res["grid"] == [80, 45] and res["n_frames"] == 67 and res["n_skipped"] == 0
    assert res["cc"] == pytest.approx(1.0, abs=1e-9)
    assert res["kld"] == pytest.approx(0.0, abs=1e-9)
    assert res["nss_peaks"] == pytest.approx(own_peak_nss(teacher), rel=1e-6)
    assert res["nss_peaks"] > 3.0  # a peaked map: the top 1 % stands out
    # float maps in [0, 1] and uint8 maps * 255 score the same (every metric is scale-free)
    as_float = score_clip(teacher.astype(np.float32) / 255.0, teacher)
    assert as_float["cc"] == pytest.approx(1.0, abs=1e-9)
    # a student-sized square map covers the whole (squashed) frame: nearly a copy
    square = np.stack([cv2.resize(m, (64, 64), interpolation=cv2.INTER_AREA) for m in teacher])
    near = score_clip(square, teacher)
    assert near["cc"] > 0.99 and near["kld"] < 0.01
    assert near["nss_peaks"] == pytest.approx(res["nss_peaks"], rel=0.05)


def test_worse_copies_score_worse(labelled):
    """A blurred, a shifted and a flat map score below the copy, in that order (CC, NSS)."""
    teacher = labelled["teacher"].astype(np.float32)
    copy = score_clip(teacher, teacher)
    blurred = score_clip(np.stack([cv2.GaussianBlur(m, (0, 0), 16) for m in teacher]), teacher)
    shifted = score_clip(np.roll(teacher, 80, axis=2), teacher)  # a quarter of the width
    flat = score_clip(np.ones_like(teacher), teacher)
    assert copy["cc"] > blurred["cc"] > shifted["cc"] > flat["cc"] == 0.0
    # KLD punishes a confident miss more than no opinion: the shifted map is worse than flat
    assert copy["kld"] < blurred["kld"] < flat["kld"] < shifted["kld"]
    assert copy["nss_peaks"] > blurred["nss_peaks"] > shifted["nss_peaks"] > \
        flat["nss_peaks"] == 0.0


def test_score_clip_refuses_and_skips(labelled):
    """Mismatched lengths and NaN are refused; a constant teacher frame is skipped, counted."""
    teacher = labelled["teacher"][:10].astype(np.float32)
    with pytest.raises(FidelityError, match="one of each per frame"):
        score_clip(teacher[:9], teacher)
    with pytest.raises(FidelityError, match=r"\(N, h, w\)"):
        score_clip(teacher[0], teacher)
    bad = teacher.copy()
    bad[3, 5, 5] = np.nan
    with pytest.raises(FidelityError, match="frame 3"):
        score_clip(bad, teacher)
    holes = teacher.copy()
    holes[[2, 7]] = 0.0
    res = score_clip(teacher, holes)
    assert res["n_frames"] == 8 and res["n_skipped"] == 2
    with pytest.raises(FidelityError, match="constant"):
        score_clip(teacher, np.zeros_like(teacher))


def test_score_clips_counts_each_clip_once(labelled):
    """The mean over clips weighs a 16-frame clip like a 51-frame one; frames are summed."""
    teacher = labelled["teacher"]
    student = np.roll(teacher, 40, axis=2)
    out = score_clips([("head", student[:16], teacher[:16]),
                       ("tail", student[16:], teacher[16:])])
    rows = out["per_clip"]
    assert list(rows) == ["head", "tail"] and out["mean"]["n_frames"] == 67
    for key in ("cc", "kld", "nss_peaks"):
        assert out["mean"][key] == pytest.approx((rows["head"][key] + rows["tail"][key]) / 2)
    with pytest.raises(FidelityError, match="twice"):
        score_clips([("a", teacher[:3], teacher[:3])] * 2)
    gap = gap_to_ceiling({"cc": 0.6, "kld": 0.5, "nss_peaks": 3.0},
                         {"cc": 0.8, "kld": 0.2, "nss_peaks": 0.0})
    assert gap == {"cc_ratio": pytest.approx(0.75), "nss_peaks_ratio": None,
                   "kld_diff": pytest.approx(0.3)}


def test_ceiling_maps_differ_and_have_their_own_cache_file(labelled):
    """tinyhd-m@64 labels other maps than tinyhd-m, stored under another key, beside it."""
    from training.datasets import _SourceCache

    cache = _SourceCache(labelled["source"], labelled["cache"])
    plain_path = cache.teacher_path(labelled["plain"])
    ceiling_path = cache.teacher_path(labelled["ceiling"])
    assert plain_path != ceiling_path and plain_path.is_file() and ceiling_path.is_file()
    assert ceiling_path.name.startswith("teacher-tinyhd-m_64-")
    meta = json.loads(ceiling_path.with_suffix(".json").read_text())
    assert meta["teacher"]["input"]["shrink"] == [64, 64] and meta["n_frames"] == 67
    plain, shrunk = labelled["teacher"], labelled["shrunk"]
    assert shrunk.shape == plain.shape
    diff = np.abs(shrunk.astype(int) - plain.astype(int))
    assert diff.mean() > 1.0 and (diff > 20).mean() > 0.01  # other maps, not rounding
    res = score_clip(shrunk, plain)
    assert 0.5 < res["cc"] < 0.999  # the same teacher on fewer pixels: close, not equal


def test_even_frames_spread_over_the_clip():
    """N frames from first to last, evenly; every frame when N is None or too many."""
    assert even_frames(81, 8).tolist() == [0, 11, 23, 34, 46, 57, 69, 80]
    assert even_frames(5, 1).tolist() == [0]
    assert even_frames(5, 2).tolist() == [0, 4]
    assert even_frames(7, None).tolist() == even_frames(7, 7).tolist() == list(range(7))
    assert even_frames(3, 10).tolist() == [0, 1, 2]
    picked = even_frames(437, 64)
    assert len(picked) == 64 and np.all(np.diff(picked) >= 6) and picked[-1] == 436
    with pytest.raises(FidelityError, match=">= 1"):
        even_frames(10, 0)
    with pytest.raises(FidelityError, match="none to score"):
        even_frames(0, 4)


def run_cli(*args, cwd):
    """Run ``python -m training ...`` on one thread; return the finished process."""
    # one torch thread: two on a 2-core machine shared with training runs can be 30x slower
    return subprocess.run([sys.executable, "-m", "training", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def one_clip_manifest(shared_data, tmp_path_factory):
    """Write a manifest whose fidelity split is the one clip (train, val: bundle clips)."""
    path = tmp_path_factory.mktemp("manifest") / "one.yaml"
    path.write_text(f"""name: one-clip
train:
  - video: {shared_data}/uav_unlabeled/DTB70_MountainBike6.mp4
val:
  - video: {shared_data}/uav_gaze/group2.mp4
    gaze: {shared_data}/uav_gaze/group2_gaze.npz
fidelity:
  - video: {shared_data}/uav_unlabeled/{CLIP}.mp4
""")
    return path


def test_teach_caches_the_ceiling_of_the_fidelity_split(labelled, one_clip_manifest,
                                                        tmp_path):
    """Check that teach --split fidelity caches tinyhd-m@64 of the fidelity clip only."""
    from training.datasets import cached_teacher_maps

    proc = run_cli("teach", "--data", one_clip_manifest, "--teachers", "tinyhd-m@64",
                   "--split", "fidelity", "--max-frames", 16, "--cache-dir", tmp_path,
                   "--no-progress", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert f"fidelity {CLIP}" in proc.stdout
    maps = cached_teacher_maps(labelled["source"], labelled["ceiling"], tmp_path)
    assert maps is not None and maps.shape == (16, 180, 320)
    # the first clip of 16 frames is labelled alike whether the video goes on or not
    assert np.abs(maps.astype(int) - labelled["shrunk"][:16].astype(int)).max() <= 1
    assert [p.name.split("-")[0] for p in tmp_path.iterdir()] == [CLIP]  # no train clip


def test_evaluate_fidelity_cli(labelled, one_clip_manifest, tmp_path):
    """Check evaluate --fidelity with the shipped model: per-clip, ceiling and gap rows."""
    from skd_saliency_ros.core.engine import SaliencyEngine

    out = tmp_path / "fid.json"
    args = ("evaluate", "--fidelity", "--data", one_clip_manifest, "--models", "default",
            "--cache-dir", labelled["cache"], "--json", out, "--no-progress", "--threads", 1)
    proc = run_cli(*args, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert (tmp_path / "fid.md").is_file() and not (tmp_path / "fid.roc.png").exists()
    assert list(result["per_clip"]) == [CLIP]
    rows = result["per_clip"][CLIP]
    assert list(rows) == ["default", "tinyhd-m@64"]
    student, ceiling = rows["default"], rows["tinyhd-m@64"]
    assert student["resolution"] == 64 and student["n_frames"] == 67
    assert ceiling["type"] == "ceiling" and student["ceiling"] == "tinyhd-m@64"
    # the ceiling row is the cached ceiling maps scored against the cached teacher maps
    direct = score_clip(labelled["shrunk"], labelled["teacher"])
    for key in ("cc", "kld", "nss_peaks"):
        assert ceiling[key] == pytest.approx(direct[key], rel=1e-9)
    assert student["gap"]["cc_ratio"] == pytest.approx(student["cc"] / ceiling["cc"])
    assert student["gap"]["nss_peaks_ratio"] == pytest.approx(student["nss_peaks"]
                                                              / ceiling["nss_peaks"])
    assert student["gap"]["kld_diff"] == pytest.approx(student["kld"] - ceiling["kld"])
    assert result["models"]["default"]["cc"] == pytest.approx(student["cc"])  # one clip
    assert result["meta"]["teacher"] == "tinyhd-m" and result["meta"]["ceilings"] == {
        "64": "tinyhd-m@64"}
    # what was scored is what a user of the engine gets from the full frames
    engine = SaliencyEngine(backend="torch", device="cpu", max_gap_s=None, fuse=False,
                            threads=1)
    maps = [engine.step(f, k / 10.0).saliency for k, f in
            enumerate(labelled["source"].frames())]
    users = score_clip(np.stack(maps), labelled["teacher"])
    for key in ("cc", "kld", "nss_peaks"):
        assert student[key] == pytest.approx(users[key], rel=1e-4, abs=1e-5)
    assert 0.5 < student["cc"] < 1.0
    # an existing output is never replaced without --overwrite: one line, exit 2
    again = run_cli(*args, cwd=REPO)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    wrong = run_cli("evaluate", "--fidelity", "--data", one_clip_manifest, "--models",
                    "teacher:tinyhd-m", "--cache-dir", labelled["cache"], cwd=REPO)
    assert wrong.returncode == 2 and "ceiling row comes by itself" in wrong.stderr
