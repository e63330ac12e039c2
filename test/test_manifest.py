"""Your own footage: a dataset manifest and a gaze CSV, end to end, without the bundle.

Two short real clips of the bundle are copied under other names into a temporary folder (one
as a video, one as a frame folder), a third gets real gaze converted from CSV; a manifest
lists them; teach -> distill -> transfer -> evaluate run on it with the bundle made
unreachable, and the cache shows that only the manifest's sources were read.
"""

import csv
import json

import cv2
import numpy as np
import pytest

from skd_saliency_ros.core.gaze import load_gaze
from training.__main__ import main
from training.manifest import ManifestError, load_manifest

SIZE = (320, 180)
N = 24


def _copy_clip(src, dst_video=None, dst_folder=None, start=0, n=N):
    """Copy frames start..start+n-1 of a real video, resized to SIZE, as mp4 or PNGs."""
    cap = cv2.VideoCapture(str(src))
    for _ in range(start):
        cap.grab()
    frames = []
    for _ in range(n):
        ok, bgr = cap.read()
        assert ok
        frames.append(cv2.resize(bgr, SIZE, interpolation=cv2.INTER_AREA))
    cap.release()
    if dst_video is not None:
        writer = cv2.VideoWriter(str(dst_video), cv2.VideoWriter_fourcc(*"mp4v"), 10, SIZE)
        for f in frames:
            writer.write(f)
        writer.release()
    if dst_folder is not None:
        dst_folder.mkdir()
        for k, f in enumerate(frames):
            cv2.imwrite(str(dst_folder / f"img{k + 1}.png"), f)


@pytest.fixture(scope="module")
def footage(shared_data, tmp_path_factory):
    """Build a user's folder: two flights, one frame folder, a CSV of real gaze, a manifest."""
    root = tmp_path_factory.mktemp("my_flights")
    (root / "videos").mkdir()
    _copy_clip(shared_data / "uav_unlabeled" / "wakeboard7.mp4", root / "videos" / "lake.mp4")
    _copy_clip(shared_data / "uav_gaze" / "car10.mp4", dst_folder=root / "videos" / "road",
               start=200)
    _copy_clip(shared_data / "uav_gaze" / "car10.mp4", root / "videos" / "street.mp4")
    # real gaze samples of car10's first N frames, scaled to the copy's size
    with np.load(shared_data / "uav_gaze" / "car10_gaze.npz") as g:
        keep = g["samples_frame"] < N
        rows = zip(g["samples_frame"][keep], g["samples_xy"][keep] * SIZE[0] / 1280.0,
                   g["samples_observer"][keep])
        with open(root / "street_gaze.csv", "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["observer", "frame", "x", "y", "time_ms"])
            for frame, (x, y), obs in rows:
                out.writerow([int(obs), int(frame), f"{x:.2f}", f"{y:.2f}", 0])
    (root / "flights.yaml").write_text("""
name: my-flights
train:
  - video: videos/lake.mp4
    weight: 2
  - frames: videos/road
    fps: 10
val:
  - video: videos/street.mp4
    gaze: street_gaze.npz
""")
    return root


def test_gaze_import_from_csv(footage, shared_data, capsys):
    """CSV -> npz with the bundle's rule; the result loads and matches the bundle's fixations."""
    out = footage / "street_gaze.npz"
    assert main(["gaze-import", "--csv", str(footage / "street_gaze.csv"),
                 "--video", str(footage / "videos" / "street.mp4"), "--out", str(out),
                 "--max-dispersion", str(60 * SIZE[0] / 1280), "--samples-per-frame",
                 "33.3"]) == 0
    assert "fixations on" in capsys.readouterr().out
    gaze = load_gaze(out, N)
    assert (gaze.width, gaze.height, gaze.n_frames) == (*SIZE, N)
    bundle = load_gaze(shared_data / "uav_gaze" / "car10_gaze.npz")
    # the same reduction as the bundle's, at a quarter of the size: same fixations per frame
    for k in range(N):
        ours, theirs = gaze.fixations(k), bundle.fixations(k) * SIZE[0] / 1280
        assert len(ours) == len(theirs)
        np.testing.assert_allclose(np.sort(ours, 0), np.sort(theirs, 0), atol=0.02)
    # no silent overwrite
    assert main(["gaze-import", "--csv", str(footage / "street_gaze.csv"), "--video",
                 str(footage / "videos" / "street.mp4"), "--out", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("rows,message", [
    ("frame,x,y\n0,1,1\n", r"missing column\(s\) \['observer'\]"),
    ("frame,x,y,observer\n0,1,1,1\n99,1,1,1\n", "row 3: frame 99 is not a frame"),
    ("frame,x,y,observer\n0,400,1,1\n", r"row 2: gaze \(400.0, 1.0\) is outside the 320x180"),
    ("frame,x,y,observer\n0,abc,1,1\n", "row 2: x and y must be numbers"),
])
def test_gaze_import_errors(footage, tmp_path, capsys, rows, message):
    """Missing columns, unknown frames, gaze outside the frame: one line naming the row."""
    bad = tmp_path / "bad.csv"
    bad.write_text(rows)
    assert main(["gaze-import", "--csv", str(bad), "--video",
                 str(footage / "videos" / "street.mp4"), "--out",
                 str(tmp_path / "g.npz")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and len(err.strip().splitlines()) == 1
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "g.npz").exists()


def _import(footage, csv_path, out, *extra):
    """Run gaze-import in a subprocess (a traceback is what users would see) on street.mp4."""
    import subprocess
    import sys
    from pathlib import Path
    return subprocess.run([sys.executable, "-m", "training", "gaze-import", "--csv",
                           str(csv_path), "--video", str(footage / "videos" / "street.mp4"),
                           "--out", str(out), *extra], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=300)


def _one_line_refusal(proc, *needles):
    """Exit 2, one line, no traceback, every needle in it."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_gaze_import_bom_and_other_encodings(footage, tmp_path):
    """A UTF-8 BOM is accepted; a latin-1 byte is one line naming file and line.

    --encoding latin-1 then reads it (was: "missing 'frame'" / a UnicodeDecodeError).
    """
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbfframe,x,y,observer\n0,10,10,1\n1,11,12,1\n")
    proc = _import(footage, bom, tmp_path / "bom.npz")
    assert proc.returncode == 0, proc.stderr
    assert len(load_gaze(tmp_path / "bom.npz", N).fix_xy) == 2
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"frame,x,y,observer,note\n0,10,10,1,ok\n1,12,11,1,caf\xe9\n")
    _one_line_refusal(_import(footage, latin, tmp_path / "l.npz"), str(latin), "line 3",
                      "0xe9", "--encoding")
    assert not (tmp_path / "l.npz").exists()
    proc = _import(footage, latin, tmp_path / "l.npz", "--encoding", "latin-1")
    assert proc.returncode == 0, proc.stderr
    _one_line_refusal(_import(footage, latin, tmp_path / "x.npz", "--encoding", "klingon"),
                      "--encoding", "klingon")


def test_gaze_import_keeps_large_observer_ids_exact(footage, tmp_path):
    """Observer ids like 20231115 (a date): numbered 1..O, the ids kept exact beside them.

    Was: an OverflowError traceback from an int16 cast.
    """
    ids = (20231115, 20231116, 7)
    rows = [(k, o) for k in range(3) for o in ids]
    path = tmp_path / "dates.csv"
    path.write_text("frame,x,y,observer\n"
                    + "".join(f"{k},{10 + k},{20 + k},{o}\n" for k, o in rows))
    proc = _import(footage, path, tmp_path / "dates.npz")
    assert proc.returncode == 0, proc.stderr
    assert "observer_source_ids" in proc.stdout
    gaze = load_gaze(tmp_path / "dates.npz", N)
    assert gaze.observer_ids.tolist() == [1, 2, 3] and len(gaze.fix_xy) == 9
    with np.load(tmp_path / "dates.npz") as npz:
        source = npz["observer_source_ids"]
        assert source.dtype == np.int64 and source.tolist() == sorted(ids)
        assert npz["observer_ids"].dtype == np.int16  # the bundle's schema
        # every sample's observer maps back to its row's exact id
        assert source[npz["samples_observer"] - 1].tolist() == [o for _, o in rows]
    small = tmp_path / "small.csv"
    small.write_text("frame,x,y,observer\n0,10,10,3\n0,11,11,7\n")
    assert _import(footage, small, tmp_path / "small.npz").returncode == 0
    assert load_gaze(tmp_path / "small.npz", N).observer_ids.tolist() == [3, 7]  # as given


def test_gaze_import_refuses_a_duplicated_column(footage, tmp_path):
    """Two 'x' columns: which one is the gaze? A clear error (was: the last one, silently)."""
    path = tmp_path / "dup.csv"
    path.write_text("frame,x,y,observer,x\n0,10,10,1,300\n")
    _one_line_refusal(_import(footage, path, tmp_path / "d.npz"), str(path), "'x'", "twice")
    assert not (tmp_path / "d.npz").exists()


def test_manifest_end_to_end_without_the_bundle(footage, tmp_path, monkeypatch):
    """Run teach -> distill -> transfer -> evaluate on the manifest; never read the bundle."""
    test_gaze = footage / "street_gaze.npz"
    if not test_gaze.exists():
        assert main(["gaze-import", "--csv", str(footage / "street_gaze.csv"), "--video",
                     str(footage / "videos" / "street.mp4"), "--out", str(test_gaze)]) == 0
    nowhere = tmp_path / "no_bundle_here"
    monkeypatch.setenv("SKD_DATA_DIR", str(nowhere))
    cache = tmp_path / "cache"
    manifest = str(footage / "flights.yaml")
    data = ["--data", manifest, "--data-dir", str(nowhere), "--cache-dir", str(cache)]
    teachers = ["--spatial-teacher", "spectral-residual",
                "--temporal-teacher", "motion-homography"]
    assert main(["teach", *data, "--teachers", "spectral-residual,motion-homography",
                 "--resolution", "16", "--no-progress"]) == 0
    train = [*data, *teachers, "-R", "16", "--steps", "3", "--batch-size", "4",
             "--val-every", "0", "--no-progress"]
    for kind in ("spatial", "temporal"):
        assert main(["distill", "--student", kind, *train,
                     "-o", str(tmp_path / f"{kind}.pt")]) == 0
    assert main(["transfer", "--spatial", str(tmp_path / "spatial.pt"), "--temporal",
                 str(tmp_path / "temporal.pt"), "--lambda", "0.5", *train,
                 "-o", str(tmp_path / "fused.pt")]) == 0
    meta = __import__("torch").load(tmp_path / "fused.pt", weights_only=True)["meta"]
    assert meta["data"]["manifest"]["name"] == "my-flights"
    assert meta["data"]["manifest"]["sha1"] == load_manifest(manifest, nowhere).content_hash
    assert [t["name"] for t in meta["data"]["train"]] == ["lake", "road"]
    # lake has weight 2: each of its frames is drawn twice as often
    assert [t["used"] for t in meta["data"]["train"]] == [2 * N, N]
    assert meta["validation"]["sequence"] == "street"
    assert set(meta["validation"]["per_source"]) == {"street"}
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--data", manifest, "--data-dir", str(nowhere), "--cache-dir",
                 str(cache), "--models", f"{tmp_path / 'fused.pt'},teacher:spectral-residual",
                 "--json", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert set(result["per_source"]) == {"street"}
    assert result["models"]["fused"]["nss"] == pytest.approx(meta["validation"]["nss"],
                                                             abs=1e-6)
    # only the manifest's three sources were decoded and cached; the bundle does not exist
    cached = sorted(p.name.rsplit("-", 1)[0] for p in cache.iterdir())
    assert cached == ["lake", "road", "street"]
    assert not nowhere.exists()


def test_bad_manifests_are_refused_before_any_work(footage, tmp_path):
    """Unknown key, missing file, validation without gaze, duplicate names: one line each."""
    vid = footage / "videos" / "lake.mp4"
    gaze = footage / "street_gaze.npz"
    if not gaze.exists():
        assert main(["gaze-import", "--csv", str(footage / "street_gaze.csv"), "--video",
                     str(footage / "videos" / "street.mp4"), "--out", str(gaze)]) == 0
    ok_val = f"val:\n  - video: {footage}/videos/street.mp4\n    gaze: {gaze}\n"
    cases = {
        f"train:\n  - video: {vid}\n    wieght: 2\n{ok_val}":
            r"train\[0\] \(.*lake.mp4\): unknown key\(s\) \['wieght'\]",
        f"train:\n  - video: {footage}/videos/nope.mp4\n{ok_val}":
            r"train\[0\] \(.*nope.mp4\): video file .*nope.mp4 not found",
        f"train:\n  - video: {vid}\nval:\n  - video: {vid}\n    name: other\n":
            r"val\[0\] \(.*lake.mp4\): a validation source needs a gaze: file",
        f"train:\n  - video: {vid}\n  - frames: {footage}/videos/road\n    name: lake\n{ok_val}":
            r"source name\(s\) \['lake'\] used twice",
        f"train: []\n{ok_val}": "'train' must be a non-empty list",
        f"trian:\n  - video: {vid}\n{ok_val}": r"unknown key\(s\) \['trian'\]",
    }
    for i, (text, message) in enumerate(cases.items()):
        path = tmp_path / f"m{i}.yaml"
        path.write_text(text)
        with pytest.raises(ManifestError, match=message) as info:
            load_manifest(path)
        assert str(path) in str(info.value)
    # through the CLI: exit 2, one line, nothing cached
    path = tmp_path / "m0.yaml"
    assert main(["teach", "--data", str(path), "--cache-dir", str(tmp_path / "c"),
                 "--no-progress"]) == 2
    assert not (tmp_path / "c").exists()


def test_bundle_manifest_is_the_default(shared_data):
    """The shipped manifest reproduces the bundle's split."""
    m = load_manifest(None, shared_data)
    assert m.name == "bundle" and [s.name for s in m.val] == ["group2"]
    assert [s.name for s in m.train][:2] == ["car10", "DTB70_Animal1"] and len(m.train) == 26
    assert m.train[0].gaze is not None and m.val[0].gaze is not None
    assert len(m.fidelity) == 8 and sorted(m.held_out) == sorted(s.name for s in m.fidelity)


def test_fidelity_split_is_held_out_of_training(shared_data, tmp_path):
    """Glob matches that are fidelity clips leave training; an explicit overlap is refused."""
    clips = shared_data / "uav_unlabeled"
    path = tmp_path / "m.yaml"
    path.write_text(f"""
train:
  - glob: "{clips}/wakeboard*.mp4"
val:
  - video: "{shared_data}/uav_gaze/group2.mp4"
    gaze: "{shared_data}/uav_gaze/group2_gaze.npz"
fidelity:
  - video: "{clips}/wakeboard4.mp4"
""")
    m = load_manifest(path, shared_data)
    assert [s.name for s in m.train] == ["wakeboard3", "wakeboard5", "wakeboard7"]
    assert [s.name for s in m.fidelity] == ["wakeboard4"] and m.held_out == ["wakeboard4"]
    assert m.summary()["fidelity"][0]["frames"] == 233
    without = tmp_path / "m2.yaml"
    without.write_text(path.read_text().split("fidelity:")[0])
    assert load_manifest(without, shared_data).content_hash != m.content_hash
    assert load_manifest(without, shared_data).fidelity == []
    path.write_text(path.read_text().replace(f'glob: "{clips}/wakeboard*.mp4"',
                                             f'video: "{clips}/wakeboard4.mp4"'))
    with pytest.raises(ManifestError, match=r"train\[0\].*also a fidelity clip"):
        load_manifest(path, shared_data)
