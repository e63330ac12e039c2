"""Dataset manifests: which videos train and which validate, from one YAML file.

A user's own footage is a folder of MP4s (or frame folders), some with gaze; the manifest lists
them so that nothing has to be renamed to look like the shared bundle.  Every path is relative
to the manifest file (``{data_dir}`` stands for the shared bundle, which is how the shipped
``config/datasets/bundle.yaml`` is written).  docs/TRAINING.md has a complete example.

```yaml
name: my-flights                   # optional; default: the file's stem
train:
  - video: flights/flight01.mp4    # a video file ...
    gaze: gaze/flight01_gaze.npz   # optional (the bundle's .npz schema)
    weight: 2.0                    # optional: sampled twice as often (default 1)
  - frames: flights/flight02/      # ... or a folder of images, natural name order
    fps: 30                        # optional: the rate a folder (or bad container) lacks
  - glob: more_flights/*.mp4       # every match, each a source named by its file stem
val:                               # validated on, every one reported plus the mean
  - video: flights/flight03.mp4
    gaze: gaze/flight03_gaze.npz   # required for a validation source
    name: flight03-dusk            # optional; default: the file stem; names are unique
fidelity:                          # optional: held-out clips, no gaze needed
  - video: more_flights/harbour.mp4   # scored student vs teacher (training/fidelity.py)
```

Fidelity clips are held out of training: a ``glob`` match under ``train`` that is also a
fidelity clip is left out of training (the summary counts it), and a ``video:`` or
``frames:`` entry listed in both splits is refused (say which one you mean).  Gaze on one
video chose a model that fitted that video's kind of scene; the fidelity split measures
whether the student copies its teacher on footage it never saw.

A bad manifest (unknown key, missing file, validation without gaze, duplicate names, empty
split) is refused before any work, with one line naming the manifest and the entry.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Union

from .datasets import DatasetError, VideoSource
from .paths import REPO_ROOT, default_data_dir, expand_data_dir, file_sha1

BUNDLE_MANIFEST = REPO_ROOT / "config" / "datasets" / "bundle.yaml"
TOP_KEYS = ("name", "train", "val", "fidelity")
SPLITS = ("train", "val", "fidelity")
ENTRY_KEYS = ("name", "video", "frames", "glob", "gaze", "fps", "weight")


class ManifestError(DatasetError):
    """A manifest that cannot be used; the message names the file and the entry."""


@dataclass
class Manifest:
    """A parsed, checked manifest: its sources (``VideoSource``) and what identifies it."""

    path: Path
    name: str
    train: List[Any]
    val: List[Any]
    weights: Dict[str, float]
    content_hash: str
    fidelity: List[Any] = field(default_factory=list)
    held_out: List[str] = field(default_factory=list)  # train glob matches kept for fidelity
    entries: Dict[str, List[Dict[str, Any]]] = field(repr=False, default_factory=dict)

    def summary(self) -> Dict[str, Any]:
        """Return what a checkpoint and a model card record about the data."""
        def rows(sources):
            return [{"name": s.name, "path": str(s.path), "frames": int(s.n_frames),
                     "fps": float(s.fps), "gaze": bool(s.gaze_path is not None),
                     "weight": float(self.weights.get(s.name, 1.0))} for s in sources]
        return {"manifest": str(self.path), "name": self.name, "sha1": self.content_hash,
                "train": rows(self.train), "val": rows(self.val),
                "fidelity": rows(self.fidelity), "held_out_of_train": list(self.held_out)}


def _expand(text: str, base: Path, data_dir: Path) -> Path:
    path = Path(expand_data_dir(text, data_dir)).expanduser()
    return path if path.is_absolute() else base / path


def _read(path: Path) -> Dict[str, Any]:
    import yaml

    if not path.is_file():
        raise ManifestError(f"{path}: manifest not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: not a readable YAML manifest: {exc}") from exc
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: a manifest is a YAML mapping with 'train' and 'val'")
    unknown = sorted(set(raw) - set(TOP_KEYS))
    if unknown:
        raise ManifestError(f"{path}: unknown key(s) {unknown}; allowed: {list(TOP_KEYS)}")
    return raw


def _entry_sources(manifest: Path, split: str, i: int, entry: Any, data_dir: Path):
    """One entry -> [(source kwargs, weight)] (a glob entry gives several)."""
    where = f"{manifest}: {split}[{i}]"
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: an entry is a mapping (video:/frames:/glob: ...)")
    kinds = [k for k in ("video", "frames", "glob") if k in entry]
    if kinds:
        where = f"{where} ({entry[kinds[0]]})"
    unknown = sorted(set(entry) - set(ENTRY_KEYS))
    if unknown:
        raise ManifestError(f"{where}: unknown key(s) {unknown}; allowed: {list(ENTRY_KEYS)}")
    if len(kinds) != 1:
        raise ManifestError(f"{where}: give exactly one of video:, frames:, glob: "
                            f"(got {kinds or 'none'})")
    weight = entry.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0:
        raise ManifestError(f"{where}: weight must be a number > 0, got {weight!r}")
    fps = entry.get("fps")
    if fps is not None and (isinstance(fps, bool) or not isinstance(fps, (int, float))
                            or not fps > 0):
        raise ManifestError(f"{where}: fps must be a number > 0, got {fps!r}")
    base = manifest.parent
    gaze = _expand(entry["gaze"], base, data_dir) if entry.get("gaze") else None
    if gaze is not None and not gaze.is_file():
        raise ManifestError(f"{where}: gaze file {gaze} not found")
    if kinds[0] == "glob":
        if "name" in entry or gaze is not None:
            raise ManifestError(f"{where}: a glob entry takes no name: or gaze: (list those "
                                "videos one by one)")
        pattern = str(_expand(entry["glob"], base, data_dir))
        paths = sorted(Path(p) for p in globlib.glob(pattern) if Path(p).is_file())
        if not paths:
            raise ManifestError(f"{where}: the pattern matches no file")
        return [({"path": p, "name": p.stem, "fps": fps}, float(weight)) for p in paths]
    path = _expand(entry[kinds[0]], base, data_dir)
    if kinds[0] == "video" and not path.is_file():
        raise ManifestError(f"{where}: video file {path} not found")
    if kinds[0] == "frames" and not path.is_dir():
        raise ManifestError(f"{where}: frame folder {path} not found")
    name = str(entry.get("name") or path.stem)
    return [({"path": path, "gaze_path": gaze, "name": name, "fps": fps}, float(weight))]


def load_manifest(path: Union[str, Path, None] = None,
                  data_dir: Union[str, Path, None] = None) -> Manifest:
    """Parse and check a manifest (default: the shipped bundle manifest); open its sources.

    Everything is checked before any source is decoded: keys, files, gaze for validation,
    unique names.  Then each source is opened (``VideoSource``), which probes the video and
    checks its gaze file against it; a failure there names the manifest and the entry too.
    """
    manifest = Path(path) if path is not None else BUNDLE_MANIFEST
    data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
    raw = _read(manifest)
    plan: Dict[str, list] = {}
    for split in SPLITS:
        entries = raw.get(split)
        if split == "fidelity" and entries is None:
            plan[split] = []
            continue
        if not isinstance(entries, list) or not entries:
            raise ManifestError(f"{manifest}: '{split}' must be a non-empty list of sources")
        plan[split] = []
        for i, entry in enumerate(entries):
            for kwargs, weight in _entry_sources(manifest, split, i, entry, data_dir):
                plan[split].append((i, kwargs, weight, "glob" in entry))
    for i, kwargs, _, _ in plan["val"]:
        if kwargs.get("gaze_path") is None:
            raise ManifestError(f"{manifest}: val[{i}] ({kwargs['path']}): a validation source "
                                "needs a gaze: file (validation scores against human gaze)")
    plan["train"], held_out = _hold_out(manifest, plan["train"], plan["fidelity"])
    names = [kw["name"] for split in SPLITS for _, kw, _, _ in plan[split]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ManifestError(f"{manifest}: source name(s) {dup} used twice; names must be "
                            "unique (give name: to tell them apart)")
    sources: Dict[str, list] = {}
    weights: Dict[str, float] = {}
    for split in SPLITS:
        sources[split] = []
        for i, kwargs, weight, _ in plan[split]:
            try:
                source = VideoSource(**kwargs)
            except DatasetError as exc:
                raise ManifestError(f"{manifest}: {split}[{i}]: {exc}") from exc
            sources[split].append(source)
            weights[source.name] = weight
    identity = {split: [{"name": s.name, "sha1": s.content_hash,
                         "gaze_sha1": file_sha1(s.gaze_path) if s.gaze_path else None,
                         "weight": weights[s.name], "fps": s.fps} for s in sources[split]]
                for split in ("train", "val")}
    if sources["fidelity"]:  # a manifest without the split keeps its earlier hash
        identity["fidelity"] = [{"name": s.name, "sha1": s.content_hash}
                                for s in sources["fidelity"]]
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return Manifest(path=manifest, name=str(raw.get("name") or manifest.stem),
                    train=sources["train"], val=sources["val"], weights=weights,
                    content_hash=digest, fidelity=sources["fidelity"], held_out=held_out,
                    entries={k: raw[k] for k in SPLITS if k in raw})


def _hold_out(manifest: Path, train: list, fidelity: list):
    """Drop fidelity clips from the training plan: glob matches quietly, listed ones refused."""
    held = {Path(kw["path"]).resolve() for _, kw, _, _ in fidelity}
    kept, dropped = [], []
    for i, kwargs, weight, from_glob in train:
        if Path(kwargs["path"]).resolve() not in held:
            kept.append((i, kwargs, weight, from_glob))
        elif from_glob:
            dropped.append(kwargs["name"])
        else:
            raise ManifestError(f"{manifest}: train[{i}] ({kwargs['path']}) is also a fidelity "
                                "clip; a clip is either trained on or held out, not both")
    if fidelity and not kept:
        raise ManifestError(f"{manifest}: every training source is a fidelity clip; "
                            "nothing is left to train on")
    return kept, dropped


def default_sources(data_dir: Union[str, Path, None] = None) -> Dict[str, List[Any]]:
    """Return the bundle's split (``config/datasets/bundle.yaml``).

    train = car10 (gaze) + every unlabeled clip but the fidelity ones, val = group2,
    fidelity = 8 held-out unlabeled clips.
    """
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    gaze_dir, unlabeled = root / "uav_gaze", root / "uav_unlabeled"
    for need in (gaze_dir / "car10.mp4", gaze_dir / "group2.mp4", unlabeled):
        if not need.exists():
            raise DatasetError(f"{need}: missing from the data bundle at {root} "
                               "(set SKD_DATA_DIR or --data-dir)")
    manifest = load_manifest(None, root)
    return {"train": manifest.train, "val": manifest.val, "fidelity": manifest.fidelity}
