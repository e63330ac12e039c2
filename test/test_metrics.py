"""Saliency metrics: hand-computable cases, degenerate input, and pysaliency on real maps."""

import json
import math
import subprocess

import cv2
import numpy as np
import pytest

from conftest import REPO_ROOT
from skd_saliency_ros.core import metrics as M
from skd_saliency_ros.core.gaze import load_gaze

PYSAL_PYTHON = REPO_ROOT / ".venv-pysaliency" / "bin" / "python"
REFERENCE = REPO_ROOT / "tools" / "pysaliency_reference.py"


# --------------------------------------------------------------- ground-truth maps

def test_fixation_map_puts_points_at_floor_and_counts_a_pixel_once():
    """A point (x, y) lands in pixel (floor(y), floor(x)); duplicates stay binary."""
    fix = M.fixation_map([(0.0, 0.0), (3.99, 1.5), (3.2, 1.0), (4.999, 2.999)], (3, 5))
    expected = np.zeros((3, 5), np.uint8)
    expected[0, 0] = expected[1, 3] = expected[2, 4] = 1
    np.testing.assert_array_equal(fix, expected)
    assert not M.fixation_map(np.empty((0, 2)), (3, 5)).any()
    with pytest.raises(ValueError, match=r"1 of 2 point\(s\) fall outside the 5x3 map"):
        M.fixation_map([(1, 1), (5.0, 0)], (3, 5))


def test_density_map_is_a_sampled_gaussian_scaled_to_one():
    """One fixation far from the border gives exp(-r^2 / 2 sigma^2); counts add up."""
    sigma = 2.0
    dens = M.density_map([(20.5, 15.5)], (30, 40), sigma)
    yy, xx = np.mgrid[0:30, 0:40]
    gauss = np.exp(-((xx - 20) ** 2 + (yy - 15) ** 2) / (2 * sigma ** 2))
    gauss[(np.abs(xx - 20) > 4 * sigma) | (np.abs(yy - 15) > 4 * sigma)] = 0  # 4-sigma kernel
    np.testing.assert_allclose(dens, gauss, atol=1e-12)
    two = M.density_map([(5.2, 5.2), (30.1, 20.1), (30.9, 20.9)], (30, 40), sigma)
    assert two[20, 30] == 1.0 and two[5, 5] == pytest.approx(0.5, abs=1e-9)
    with pytest.raises(ValueError, match="sigma must be positive"):
        M.density_map([(1, 1)], (4, 4), 0)
    with pytest.raises(ValueError, match="at least one fixation"):
        M.density_map(np.empty((0, 2)), (4, 4), 1.0)


def test_prediction_is_resized_then_min_max_normalised():
    """Bilinear when enlarging (pixel-centre aligned), area average when shrinking."""
    up = M.prepare_saliency(np.array([[2.0, 6.0]]), (1, 4))
    np.testing.assert_allclose(up, [[0.0, 0.25, 0.75, 1.0]])
    down = M.prepare_saliency(np.array([[0, 2, 4, 4], [2, 4, 8, 8]], float), (1, 2))
    np.testing.assert_allclose(down, [[0.0, 1.0]])   # block means 2 and 6
    np.testing.assert_array_equal(M.prepare_saliency(np.full((3, 3), 7.0), (2, 2)), 0.0)


# --------------------------------------------------------------- hand-computed values

def test_nss_of_the_fixation_pattern_itself():
    """Map == fixation map with m of N pixels: NSS = (1 - m/N) / std_{N-1}."""
    rng = np.random.default_rng(0)
    fix = (rng.random((18, 32)) < 0.05).astype(np.uint8)
    m, n = int(fix.sum()), fix.size
    std = math.sqrt(m * (n - m) / (n * (n - 1)))
    assert M.nss(fix.astype(float), fix) == pytest.approx((1 - m / n) / std, rel=1e-12)
    assert M.nss(5.0 * fix + 3.0, fix) == pytest.approx((1 - m / n) / std, rel=1e-12)


def test_auc_judd_hand_example_and_perfect_map():
    """Two fixations, two other pixels: ROC (0,0) (0,.5) (.5,1) (1,1) has area 0.875."""
    sal = np.array([[0.1, 0.4], [0.35, 0.8]])
    fix = np.array([[0, 0], [1, 1]])
    assert M.auc_judd(sal, fix) == pytest.approx(0.875, abs=1e-12)
    fp, tp = M.roc_judd(sal, fix)
    np.testing.assert_allclose(fp, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tp, [0, 0.5, 1, 1])
    rng = np.random.default_rng(1)
    fixmap = (rng.random((40, 60)) < 0.02).astype(np.uint8)
    assert M.auc_judd(fixmap.astype(float), fixmap) == 1.0
    assert M.auc_judd(rng.random((40, 60)), fixmap) == pytest.approx(0.5, abs=0.1)


def test_auc_shuffled_hand_example():
    """Positives {2/3, 1} against negatives {0, 1/3, 2/3}: (2.5/3 + 3/3) / 2, a tie is half."""
    sal = np.array([[0.0, 1.0, 2.0, 3.0]])
    fix = np.array([[0, 0, 1, 1]])
    other = np.array([[1, 1, 1, 0]])
    assert M.auc_shuffled(sal, fix, other) == pytest.approx((2.5 / 3 + 1) / 2, abs=1e-12)
    assert M.auc_shuffled(sal, fix, fix) == pytest.approx(0.5)  # {2/3, 1} against itself
    with pytest.raises(ValueError, match=r"other_fixmap shape \(2, 2\) differs"):
        M.auc_shuffled(sal, fix, np.ones((2, 2)))


def test_distribution_metrics_of_identical_and_disjoint_maps():
    """CC(d, d) = 1, CC(-d) = -1, SIM(d, d) = 1, KLD(d, d) = 0; disjoint supports: SIM 0."""
    dens = M.density_map([(10.3, 4.2), (25.0, 12.9), (26.0, 13.0)], (18, 32), 1.5)
    assert M.cc(dens, dens) == pytest.approx(1.0, abs=1e-12)
    assert M.cc(-dens, dens) == pytest.approx(-1.0, abs=1e-12)
    assert M.sim(dens, dens) == pytest.approx(1.0, abs=1e-12)
    assert M.kld(dens, dens) == pytest.approx(0.0, abs=1e-12)
    a = np.zeros((4, 4))
    a[0, 0] = 1
    b = np.zeros((4, 4))
    b[3, 3] = 1
    assert M.sim(a, b) == 0.0


def test_kld_hand_example_with_mit_epsilon():
    """Prediction [0, 1, 3] -> [0, .25, .75]; density [0, 1, 1] -> [0, .5, .5]."""
    eps = 2.2204e-16
    expected = 0.5 * math.log(eps + 0.5 / (0.25 + eps)) + 0.5 * math.log(eps + 0.5 / (0.75 + eps))
    assert M.kld(np.array([[0.0, 1.0, 3.0]]), np.array([[0.0, 1.0, 1.0]])) == pytest.approx(
        expected, abs=1e-12)
    p = np.array([0, 1 / 3, 1]) / (4 / 3)
    assert M.sim(np.array([[0.0, 1.0, 3.0]]), np.array([[0.0, 1.0, 1.0]])) == pytest.approx(
        np.minimum(p, [0, 0.5, 0.5]).sum())


# --------------------------------------------------------------- degenerate input

def test_constant_prediction_scores_chance():
    """Constant map: NSS 0, CC 0, AUC-Judd 0.5, sAUC 0.5 (read as a uniform distribution)."""
    fix = np.zeros((18, 32), np.uint8)
    fix[[3, 9, 9], [4, 20, 21]] = 1
    other = np.roll(fix, 5, axis=1)
    dens = M.density_map([(4.5, 3.5), (20.5, 9.5)], (18, 32), 2.0)
    const = np.full((9, 16), 0.3)
    assert M.nss(const, fix) == 0.0
    assert M.cc(const, dens) == 0.0
    assert M.auc_judd(const, fix) == 0.5
    assert M.auc_shuffled(const, fix, other) == 0.5
    uniform = np.full(dens.shape, 1.0 / dens.size)
    assert M.sim(const, dens) == pytest.approx(np.minimum(uniform, dens / dens.sum()).sum())


def test_bad_input_raises_clear_errors():
    """NaN, wrong rank, no fixations, all-zero or negative density."""
    fix = np.zeros((4, 4))
    fix[1, 1] = 1
    sal = np.random.default_rng(2).random((4, 4))
    nan = sal.copy()
    nan[2, 2] = np.nan
    with pytest.raises(ValueError, match=r"saliency map contains 1 NaN/inf"):
        M.nss(nan, fix)
    with pytest.raises(ValueError, match=r"saliency map must be a non-empty 2-D array"):
        M.auc_judd(np.ones((2, 4, 4)), fix)
    with pytest.raises(ValueError, match="fixmap has no fixations"):
        M.auc_judd(sal, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="other_fixmap has no fixations"):
        M.auc_shuffled(sal, fix, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="density is all zero"):
        M.cc(sal, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="density has negative values"):
        M.kld(sal, -fix)
    with pytest.raises(ValueError, match="fixates every pixel"):
        M.auc_judd(sal, np.ones((4, 4)))


# --------------------------------------------------------------- sequences on real data

def spectral_residual(frames):
    """Compute OpenCV contrib's spectral-residual saliency of BGR frames."""
    model = cv2.saliency.StaticSaliencySpectralResidual_create()
    maps = []
    for frame in frames:
        ok, sal = model.computeSaliency(frame)
        assert ok
        maps.append(sal)
    return maps


def read_frames(video, indices):
    """Decode the frames with the given (sorted) indices of a video, BGR."""
    cap = cv2.VideoCapture(str(video))
    frames = {}
    for k in range(max(indices) + 1):
        ok, frame = cap.read()
        assert ok, f"{video}: could not read frame {k}"
        if k in indices:
            frames[k] = frame
    cap.release()
    return [frames[k] for k in indices]


@pytest.fixture(scope="module")
def car10(shared_data):
    """Real car10 gaze, a dozen real frames and their spectral-residual maps."""
    gaze = load_gaze(shared_data / "uav_gaze" / "car10_gaze.npz")
    indices = list(range(0, 96, 8))
    frames = read_frames(shared_data / "uav_gaze" / "car10.mp4", indices)
    prior = np.load(shared_data / "priors" / "avs1k_center_prior.npz")["mean_prior"]
    return dict(gaze=gaze, indices=indices, frames=frames, maps=spectral_residual(frames),
                prior=prior)


def test_score_sequence_is_deterministic_and_skips_frames_without_fixations(car10, tmp_path):
    """Two calls agree exactly; the seed moves only sAUC; a frame without gaze is skipped."""
    gaze = car10["gaze"]
    pairs = list(zip(car10["indices"], car10["maps"]))
    first = M.score_sequence(pairs, gaze)
    second = M.score_sequence(dict(pairs), gaze)
    assert first == second
    assert first["n_frames"] == len(pairs) and set(first["mean"]) == set(M.METRIC_KEYS)
    assert first["per_frame"][3] == {"frame_index": 24, **M.score_frame(pairs[3][1], 24, gaze)}
    other = M.score_sequence(pairs, gaze, M.EvalProtocol(seed=7))
    assert other["mean"]["auc_shuffled"] != first["mean"]["auc_shuffled"]
    for key in set(M.METRIC_KEYS) - {"auc_shuffled"}:
        assert other["mean"][key] == first["mean"][key]

    # Drop frame 16's fixations from a copy of the real file.
    with np.load(gaze.path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    keep = arrays["fix_frame"] != 16
    for key in ("fix_xy", "fix_frame", "fix_observer"):
        arrays[key] = arrays[key][keep]
    np.savez(tmp_path / "holed.npz", **arrays)
    holed = load_gaze(tmp_path / "holed.npz")
    with pytest.raises(ValueError, match=r"holed.npz: frame 16 has no fixations"):
        M.score_frame(pairs[2][1], 16, holed)
    result = M.score_sequence(pairs, holed)
    assert result["n_frames"] == len(pairs) - 1 and result["skipped_frames"] == [16]


def test_score_sequence_rejects_bad_frames(car10):
    """Out-of-range or repeated frame indices, NaN maps, and non-pair items are errors."""
    gaze, sal = car10["gaze"], car10["maps"][0]
    with pytest.raises(ValueError, match=r"frame index 469 is outside \[0, 469\)"):
        M.score_sequence([(469, sal)], gaze)
    with pytest.raises(ValueError, match="frame 3 is given twice"):
        M.score_sequence([(3, sal), (3, sal)], gaze)
    with pytest.raises(ValueError, match=r"\(frame_index, map\) pairs"):
        M.score_sequence(np.stack([sal, sal]), gaze)
    bad = sal.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        M.score_frame(bad, 0, gaze)


def one_frame_gaze(gaze, path, n_frames=1):
    """Write car10's real frame-0 fixations as the gaze of an ``n_frames``-frame video."""
    with np.load(gaze.path) as npz:
        arrays = {key: npz[key] for key in npz.files}
    keep = arrays["fix_frame"] == 0
    for key in ("fix_xy", "fix_frame", "fix_observer"):
        arrays[key] = arrays[key][keep]
    arrays["n_frames"] = np.int32(n_frames)
    np.savez(path, **arrays)
    return load_gaze(path)


@pytest.mark.parametrize("n_frames", [1, 3])
def test_sauc_not_available_with_fixations_on_one_frame_only(car10, tmp_path, n_frames):
    """A 1-frame video (or one frame with fixations): sAUC is None, the rest is scored.

    sAUC draws its negatives from the fixations of other frames; with none there is no
    sAUC (was: a plain ValueError that ended every CLI in a traceback).
    """
    gaze = one_frame_gaze(car10["gaze"], tmp_path / "one.npz", n_frames)
    sal = car10["maps"][0]
    result = M.score_sequence([(0, sal)] + [(k, sal) for k in range(1, n_frames)], gaze)
    assert result["n_frames"] == 1 and result["mean"]["auc_shuffled"] is None
    assert result["per_frame"][0]["auc_shuffled"] is None
    full = M.score_frame(sal, 0, car10["gaze"])
    for key in set(M.METRIC_KEYS) - {"auc_shuffled"}:
        assert result["mean"][key] == pytest.approx(full[key], abs=1e-12), key
    with pytest.raises(M.MetricError, match="one.npz: sAUC for frame 0 needs fixations on "
                                            "another frame"):
        M.other_fixmap(0, gaze)
    means = M.mean_over_sources([{**result["mean"], "n_frames": 1},
                                 {**full, "n_frames": 5}], M.METRIC_KEYS)
    assert means["auc_shuffled"] == full["auc_shuffled"] and means["n_frames"] == 6
    assert means["nss"] == pytest.approx((result["mean"]["nss"] + full["nss"]) / 2)
    assert M.mean_over_sources([{"auc_shuffled": None, "n_frames": 1}],
                               ["auc_shuffled"])["auc_shuffled"] is None


def test_metric_errors_are_user_errors(car10):
    """Every error the metrics raise on bad data is an SkdError (one line in a CLI)."""
    from skd_saliency_ros.core.errors import SkdError
    assert issubclass(M.MetricError, SkdError) and issubclass(M.MetricError, ValueError)
    with pytest.raises(M.MetricError, match="fixmap has no fixations"):
        M.nss(car10["maps"][0], np.zeros((4, 4)))
    with pytest.raises(M.MetricError, match="frame index 469"):
        M.score_frame(car10["maps"][0], 469, car10["gaze"])


# --------------------------------------------------------------- pysaliency cross-check

def pysaliency_reference(tmp_path, **arrays):
    """Run tools/pysaliency_reference.py in the pysaliency venv on the given arrays."""
    if not PYSAL_PYTHON.is_file():
        pytest.fail(f"{PYSAL_PYTHON} is missing: run `make venv-pysaliency` (pysaliency is the "
                    "reference these metrics are checked against)")
    np.savez(tmp_path / "in.npz", **arrays)
    proc = subprocess.run([str(PYSAL_PYTHON), str(REFERENCE), str(tmp_path / "in.npz"),
                           str(tmp_path / "out.json")], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"pysaliency reference failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads((tmp_path / "out.json").read_text())


def test_metrics_match_pysaliency_on_real_maps(car10, tmp_path):
    """Spectral residual, the AVS1K prior and a constant map on real car10 frames and gaze.

    Same conventions, so every metric agrees to 1e-9 except NSS, whose std uses N-1 (MATLAB)
    here and N in pysaliency: it agrees to 1e-9 after the factor sqrt(N/(N-1)), and to 1e-3
    without it.  pysaliency's jittered AUC_Judd agrees with our tie-exact one to 1e-3 on the
    real maps.
    """
    gaze, protocol = car10["gaze"], M.EvalProtocol()
    h, w = protocol.eval_shape(gaze)
    # Frames 0..5 with spectral residual, 6..10 with the prior, 11 with a constant map.
    preds = car10["maps"][:6] + [car10["prior"]] * 5 + [np.full((45, 80), 0.4)]
    ours, arrays = [], {key: [] for key in ("stimuli", "saliency", "density", "fix_x", "fix_y",
                                            "fix_n", "neg_x", "neg_y", "neg_n")}
    for i, (k, frame, pred) in enumerate(zip(car10["indices"], car10["frames"], preds)):
        ours.append(M.score_frame(pred, k, gaze, protocol))
        points = gaze.fixations(k) * [w / gaze.width, h / gaze.height]
        fix = M.fixation_map(points, (h, w))
        other = M.other_fixmap(k, gaze, protocol)
        arrays["stimuli"].append(cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA))
        arrays["saliency"].append(M.prepare_saliency(pred, (h, w)))
        arrays["density"].append(M.density_map(points, (h, w), protocol.sigma_frac * w))
        for prefix, mask in (("fix", fix), ("neg", other)):
            rows, cols = np.nonzero(mask)
            # Pixel centres: pysaliency truncates them back to the same pixels.
            arrays[f"{prefix}_x"].extend(cols + 0.5)
            arrays[f"{prefix}_y"].extend(rows + 0.5)
            arrays[f"{prefix}_n"].extend([i] * len(rows))
    ref = pysaliency_reference(tmp_path, **{key: np.asarray(v) for key, v in arrays.items()})

    n = h * w
    for i, k in enumerate(car10["indices"]):
        for key in M.METRIC_KEYS:
            assert ours[i][key] == pytest.approx(ref[key][i], abs=1e-3), (k, key)
        for key in ("auc_judd", "auc_shuffled", "sim", "cc", "kld"):
            assert ours[i][key] == pytest.approx(ref[key][i], abs=1e-9), (k, key)
        assert ours[i]["nss"] * math.sqrt(n / (n - 1)) == pytest.approx(ref["nss"][i], abs=1e-9)
    assert ours[11]["nss"] == ours[11]["cc"] == 0 and ours[11]["auc_judd"] == 0.5
    # Jitter only matters where values tie: not on real maps, but on the constant one, where
    # it draws a random AUC instead of our exact 0.5.
    for i in range(11):
        assert ours[i]["auc_judd"] == pytest.approx(ref["auc_judd_jitter"][i], abs=1e-3)


def test_pysaliency_venv_imports():
    """The reference venv must work, or the cross-check above proves nothing."""
    if not PYSAL_PYTHON.is_file():
        pytest.fail(f"{PYSAL_PYTHON} is missing: run `make venv-pysaliency`")
    proc = subprocess.run([str(PYSAL_PYTHON), "-W", "ignore", "-c",
                           "import pysaliency, numpy; print(numpy.__version__)"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"pysaliency does not import:\n{proc.stderr[-3000:]}"
