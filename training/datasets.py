"""Training data: videos or frame folders (+ gaze) -> frames, human maps, teacher maps at R.

Teacher maps are expensive (full-resolution OpenCV saliency, optical flow) and are computed once
per (video content, teacher config), then cached on disk; frames resized to R are cached too.

Cache layout (``cache_dir``, default ``training.paths.default_cache_dir()``)::

    <cache_dir>/<name>-<sha1 of the video bytes, 12 hex>/
        frames_area2_r<R>.npy            uint8 (N, R, R, 3) RGB frames resized to R x R with
                                         skd_saliency_ros.core.maps.resize_area
        teacher-<name>-<config sha1, 10 hex>.npy   uint8 (N, h, w) teacher maps * 255
        teacher-<name>-<config sha1, 10 hex>.json  the teacher's config, storage size, N

Teacher maps are stored at a fixed storage size, the video size scaled so that its long side
is ``STORAGE_LONG_SIDE`` = 320 px (1280x720 and 640x360 videos -> 320x180; smaller videos
keep their size), as uint8 (map * 255, rounded).  That is the evaluation size of the metrics
protocol (1/4 of 1280x720), independent of R, so one cache serves every R; the maps are
resized to R x R (area) and re-scaled to max 1 when a source is prepared.  A cache holding
fewer frames than asked for is extended, never recomputed from scratch; every file is
written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import cv2
import numpy as np
import torch
from tqdm import tqdm

from skd_saliency_ros.core.atomic import atomic_path
from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros.core.input_size import InputSize, InputSizeError, parse_input_size
from skd_saliency_ros.core.maps import resize_area
from skd_saliency_ros.core.frames import FrameSource, FrameSourceError

from .paths import default_cache_dir
from .teachers import Teacher

VIDEO_EXT = (".mp4", ".avi", ".mkv", ".mov")  # a frame folder's images: core.frames.IMAGE_EXT
STORAGE_LONG_SIDE = 320
HUMAN_SCALE = 0.25        # density maps drawn at 1/4 of the video size (metrics protocol) ...
HUMAN_SIGMA_FRAC = 0.025  # ... with sigma = 2.5% of the video width, then resized to R
FOLDER_FPS = 10.0         # frame folders carry no rate; UAV123@10fps is the bundle's rate


class DatasetError(SkdError, ValueError):
    """Missing, corrupt or inconsistent training data (named file and problem)."""


def _size(value) -> InputSize:
    """R or HxW -> InputSize, a DatasetError for anything else."""
    try:
        return parse_input_size(value, "resolution")
    except InputSizeError as exc:
        raise DatasetError(str(exc)) from None


class VideoSource:
    """One video file (.mp4/.avi/.mkv/.mov) or folder of images, with optional gaze.

    ``frames()`` yields RGB uint8 frames in order (read by core.frames.FrameSource).  A
    folder is read in natural name order (``2.jpg`` before ``10.jpg``); its ``fps`` is ``fps``
    if given, else the gaze file's, else 10.
    """

    def __init__(self, path: Union[str, Path], gaze_path: Union[str, Path, None] = None,
                 name: Optional[str] = None, fps: Optional[float] = None):
        self.path = Path(path)
        self.gaze_path = Path(gaze_path) if gaze_path is not None else None
        self.name = name or self.path.stem
        self._hash: Optional[str] = None
        if self.path.is_file() and self.path.suffix.lower() not in VIDEO_EXT:
            raise DatasetError(f"{self.path}: not a video ({', '.join(VIDEO_EXT)}) "
                               "or a folder of images")
        try:
            self._source = FrameSource(self.path)
        except FrameSourceError as exc:
            raise DatasetError(str(exc)) from exc
        self._images = self._source.images
        self.n_frames = self._source.n_frames
        self.width, self.height = self._source.width, self._source.height
        if self._images is None and self.n_frames <= 0:
            raise DatasetError(f"{self.path}: video reports {self.n_frames} frames")
        # a rate given by the user wins over the container's (or its absence)
        self.fps = float(fps) if fps else (self._source.fps or FOLDER_FPS)
        self.gaze = self._load_gaze() if self.gaze_path is not None else None
        if self.gaze is not None and self._images is not None and not fps:
            self.fps = float(self.gaze.fps)

    def __repr__(self) -> str:
        return (f"VideoSource({str(self.path)!r}, name={self.name!r}, {self.width}x{self.height}"
                f", {self.n_frames} frames, gaze={self.gaze_path is not None})")

    # ---- probing ------------------------------------------------------------------------
    def _load_gaze(self):
        from skd_saliency_ros.core.gaze import GazeError, load_gaze

        try:
            return load_gaze(self.gaze_path, self.n_frames, size=(self.width, self.height))
        except GazeError as exc:
            raise DatasetError(f"gaze for {self.path}: {exc}") from exc

    # ---- reading ------------------------------------------------------------------------
    def frames(self, start: int = 0, stop: Optional[int] = None) -> Iterator[np.ndarray]:
        """Yield RGB uint8 frames ``start`` .. ``stop - 1`` (default: to the end).

        All ``n_frames`` are promised: a video that ends early raises DatasetError.
        """
        stop = self.n_frames if stop is None else min(int(stop), self.n_frames)
        try:
            yield from self._source.frames(max(0, int(start)), stop)
        except FrameSourceError as exc:
            raise DatasetError(str(exc)) from exc

    @property
    def content_hash(self) -> str:
        """SHA-1 of the video bytes (or of the folder's image names and bytes): the cache key."""
        if self._hash is None:
            digest = hashlib.sha1()
            files = self._images if self._images is not None else [self.path]
            for path in files:
                if self._images is not None:
                    digest.update(path.name.encode() + b"\0")
                with open(path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
            self._hash = digest.hexdigest()
        return self._hash


# ------------------------------------------------------------------------------ cache
def _config_hash(config: dict) -> str:
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def storage_size(width: int, height: int):
    """Teacher-map storage size (w, h): long side ``STORAGE_LONG_SIDE`` (never upscaled)."""
    scale = min(1.0, STORAGE_LONG_SIDE / max(width, height))
    return max(1, int(round(width * scale))), max(1, int(round(height * scale)))


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)


def _load_npy(path: Path, shape_tail: tuple) -> Optional[np.ndarray]:
    """Return the cached array, or None if absent or of another shape (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    if arr.dtype != np.uint8 or arr.shape[1:] != tuple(shape_tail):
        return None
    return arr


class _SourceCache:
    """Paths and load/extend logic of one source's cache directory."""

    def __init__(self, source: VideoSource, cache_dir: Path):
        self.source = source
        self.dir = Path(cache_dir) / f"{_safe(source.name)}-{source.content_hash[:12]}"
        self.store = storage_size(source.width, source.height)

    def frames_path(self, size) -> Path:
        # "area2": shrunk by maps.resize_area, the node's own resize (one code path, so
        # training, evaluation and the live node see the same pixels).  r64 or r48x80.
        return self.dir / f"frames_area2_r{_size(size).label}.npy"

    def teacher_path(self, teacher: Teacher) -> Path:
        return self.dir / f"teacher-{_safe(teacher.name)}-{_config_hash(teacher.config)}.npy"

    def load_frames(self, size):
        size = _size(size)
        return _load_npy(self.frames_path(size), (size.height, size.width, 3))

    def load_teacher(self, teacher: Teacher):
        return _load_npy(self.teacher_path(teacher), (self.store[1], self.store[0]))

    @staticmethod
    def _longer_on_disk(current: Optional[np.ndarray], n: int) -> bool:
        """Whether another process cached more frames meanwhile (never shrink a cache)."""
        return current is not None and len(current) >= n

    def fill(self, resolutions: Sequence[InputSize], teachers: Sequence[Teacher], n: int,
             progress: bool = True) -> Dict[str, float]:
        """Make every cache of this source hold at least ``n`` frames; returns timings."""
        have = {("frames", r): self.load_frames(r) for r in resolutions}
        have.update({("teacher", t.name): self.load_teacher(t) for t in teachers})
        counts = {k: 0 if v is None else len(v) for k, v in have.items()}
        todo = {k for k, c in counts.items() if c < n}
        for t in teachers:  # a clip teacher's last maps depend on where the video ended:
            if ("teacher", t.name) in todo and t.window > 1:  # label the whole video afresh
                counts[("teacher", t.name)] = 0
                have[("teacher", t.name)] = None
        timings = {t.name: 0.0 for t in teachers}
        if not todo:
            return timings
        self.dir.mkdir(parents=True, exist_ok=True)
        short = [t for t in teachers if ("teacher", t.name) in todo and t.window > n]
        if short:
            raise DatasetError(f"{self.source.path}: {n} frame(s), fewer than the window of "
                               f"teacher {short[0].name} ({short[0].window} frames)")
        # One decode feeds every teacher: clip teachers need every frame as context, one-frame
        # teachers only compute the frames the cache lacks (the others just pass by as the
        # predecessor, ``keep=False``).
        labellers = {t.name: t.labeller() for t in teachers if ("teacher", t.name) in todo}
        new = {k: [] for k in todo}

        def store(teacher_name: str, done) -> None:
            for index, sal in done:
                if index >= counts[("teacher", teacher_name)]:
                    small = cv2.resize(sal, self.store, interpolation=cv2.INTER_AREA)
                    new[("teacher", teacher_name)].append(
                        np.clip(np.rint(small * 255.0), 0, 255).astype(np.uint8))

        frames = self.source.frames(0, n)
        bar = tqdm(frames, total=n, desc=f"{self.source.name}", unit="frame",
                   disable=not progress, leave=False, dynamic_ncols=True)
        for k, frame in enumerate(bar):
            for r in resolutions:
                if ("frames", r) in todo and k >= counts[("frames", r)]:
                    new[("frames", r)].append(resize_area(frame, r))
            for t in teachers:
                if t.name in labellers:
                    t0 = time.perf_counter()
                    store(t.name, labellers[t.name].push(
                        frame, keep=k >= counts[("teacher", t.name)]))
                    timings[t.name] += time.perf_counter() - t0
        for t in teachers:
            if t.name in labellers:
                t0 = time.perf_counter()
                store(t.name, labellers[t.name].finish())
                timings[t.name] += time.perf_counter() - t0
        bar.close()
        for key in todo:
            old = have[key]
            parts = ([np.asarray(old)] if old is not None and len(old) else []) + \
                [np.stack(new[key])]
            arr = np.concatenate(parts) if len(parts) > 1 else parts[0]
            if key[0] == "frames":
                if not self._longer_on_disk(self.load_frames(key[1]), len(arr)):
                    _save_npy(self.frames_path(key[1]), arr)
            else:
                teacher = next(t for t in teachers if t.name == key[1])
                if self._longer_on_disk(self.load_teacher(teacher), len(arr)):
                    continue
                _save_npy(self.teacher_path(teacher), arr)
                meta = {"teacher": teacher.config, "storage_size": list(self.store),
                        "n_frames": int(len(arr)), "video": str(self.source.path),
                        "video_sha1": self.source.content_hash}
                self.teacher_path(teacher).with_suffix(".json").write_text(
                    json.dumps(meta, indent=1, sort_keys=True, default=str))
        return timings


def ensure_cache(source: VideoSource, resolutions: Sequence, teachers: Sequence[Teacher],
                 cache_dir: Union[str, Path, None] = None, max_frames: Optional[int] = None,
                 progress: bool = True) -> Dict[str, float]:
    """Fill the frame caches of several input sizes (R or HxW) and the teacher caches.

    One decoding pass serves them all.
    """
    sizes = [_size(r) for r in resolutions]
    n = source.n_frames if max_frames is None else max(1, min(int(max_frames),
                                                              source.n_frames))
    cache = _SourceCache(source, Path(cache_dir) if cache_dir else default_cache_dir())
    return cache.fill(sizes, list(teachers), n, progress)


def cached_teacher_maps(source: VideoSource, teacher: Teacher,
                        cache_dir: Union[str, Path, None] = None) -> Optional[np.ndarray]:
    """Return the stored uint8 maps (N, h, w) of one teacher at the storage size, or None.

    The storage size is the metrics' evaluation size for 1280x720 video, so these maps can be
    scored as they are (``python -m training teach --score``).
    """
    cache = _SourceCache(source, Path(cache_dir) if cache_dir else default_cache_dir())
    return cache.load_teacher(teacher)


# ----------------------------------------------------------------------------- prepared
@dataclass
class PreparedSource:
    """One source at input size H x W: frames, teacher maps and human density maps in memory.

    ``fixations[k]`` holds frame k's fixation points in H x W model pixel coordinates
    (x * w / W, y * h / H; corner origin); empty for frames (or sources) without gaze.
    """

    name: str
    resolution: InputSize
    frames: np.ndarray
    teacher_maps: Dict[str, np.ndarray]
    human: np.ndarray
    has_gaze: np.ndarray
    video_size: tuple
    fixations: List[np.ndarray] = field(default_factory=list, repr=False)
    teacher_configs: Dict[str, dict] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.frames)


def maps_to_resolution(maps_u8: np.ndarray, resolution) -> np.ndarray:
    """Convert stored uint8 maps to float32 (N, H, W) in [0, 1], each re-scaled to max 1."""
    size = _size(resolution)
    out = np.empty((len(maps_u8), size.height, size.width), np.float32)
    for k, m in enumerate(maps_u8):
        shrink = m.shape[0] >= size.height and m.shape[1] >= size.width
        r = cv2.resize(np.asarray(m, np.float32), size.cv2_size,
                       interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        peak = float(r.max())
        out[k] = r / peak if peak > 0 else 0.0
    return out


def human_maps(gaze, n: int, resolution):
    """Density maps (N, H, W) float32 max 1, has_gaze (N,), fixations at H x W, frames < n."""
    from skd_saliency_ros.core.metrics import density_map

    w, h = gaze.width, gaze.height
    work = (max(1, int(round(h * HUMAN_SCALE))), max(1, int(round(w * HUMAN_SCALE))))
    sigma = HUMAN_SIGMA_FRAC * work[1]
    size = _size(resolution)
    human = np.zeros((n, size.height, size.width), np.float32)
    has = np.zeros(n, bool)
    fixes = []
    for k in range(n):
        pts = gaze.fixations(k)
        fixes.append((pts * np.array([size.width / w, size.height / h])).astype(np.float32))
        if len(pts) == 0:
            continue
        scaled = pts * np.array([work[1] / w, work[0] / h])
        dens = density_map(np.minimum(scaled, np.array([work[1], work[0]]) - 1e-6), work,
                           sigma).astype(np.float32)
        r = cv2.resize(dens, size.cv2_size, interpolation=cv2.INTER_AREA)
        peak = float(r.max())
        if peak > 0:
            human[k] = r / peak
            has[k] = True
    return human, has, fixes


def prepare_source(source: VideoSource, resolution, teachers: Sequence[Teacher],
                   cache_dir: Union[str, Path, None] = None, max_frames: Optional[int] = None,
                   progress: bool = True) -> PreparedSource:
    """Return frames, teacher and human maps of ``source`` at the input size (R or HxW).

    Only what is missing is computed.

    Frames and teacher maps come from the on-disk cache (filled first if needed); human density
    maps are drawn from the gaze file each time (cheap).
    """
    resolution = _size(resolution)
    names = [t.name for t in teachers]
    if len(set(names)) != len(names):
        raise DatasetError(f"teacher names must be unique, got {names}")
    ensure_cache(source, [resolution], teachers, cache_dir, max_frames, progress)
    cache = _SourceCache(source, Path(cache_dir) if cache_dir else default_cache_dir())
    n = source.n_frames if max_frames is None else max(1, min(int(max_frames),
                                                              source.n_frames))
    frames = cache.load_frames(resolution)
    if frames is None or len(frames) < n:
        raise DatasetError(f"{cache.frames_path(resolution)}: frame cache unreadable after "
                           "writing it")
    frames = frames[:n]
    maps = {}
    for t in teachers:
        stored = cache.load_teacher(t)
        if stored is None or len(stored) < n:
            raise DatasetError(f"{cache.teacher_path(t)}: teacher cache unreadable after "
                               "writing it")
        maps[t.name] = maps_to_resolution(stored[:n], resolution)
    if source.gaze is not None:
        human, has, fixes = human_maps(source.gaze, n, resolution)
    else:
        human = np.zeros((n, resolution.height, resolution.width), np.float32)
        has, fixes = np.zeros(n, bool), [np.zeros((0, 2), np.float32) for _ in range(n)]
    return PreparedSource(name=source.name, resolution=resolution, frames=frames,
                          teacher_maps=maps, human=human, has_gaze=has,
                          video_size=(source.width, source.height), fixations=fixes,
                          teacher_configs={t.name: t.config for t in teachers})


# ------------------------------------------------------------------------------ dataset
class PairDataset(torch.utils.data.Dataset):
    """Items of (frame t, frame t-1) pairs with soft (teacher) and hard (human) targets.

    ``x`` is float32 (6, H, W) in [0, 1]: channels 0-2 frame t, 3-5 frame t-1 (frame 0 is
    paired with itself).  ``soft`` is the mean of the named teachers' maps re-scaled to max 1
    (zeros when ``soft_teachers`` is empty), ``hard`` the human density map (zeros without
    gaze).  With ``hflip`` every item is mirrored left-right with probability 0.5, drawn from
    ``generator`` (a ``torch.Generator``) or else torch's global RNG, so the caller's seed fixes
    the flips; x, soft and hard are flipped together.  With DataLoader workers leave
    ``generator`` None: each worker copies a generator (same flips in every worker), whereas
    the global RNG is seeded per worker from the loader's own generator.
    """

    def __init__(self, prepared: Union[PreparedSource, Sequence[PreparedSource]],
                 soft_teachers: Sequence[str], hflip: bool = False,
                 generator: Optional[torch.Generator] = None):
        self.prepared = [prepared] if isinstance(prepared, PreparedSource) else list(prepared)
        self.soft_teachers = list(soft_teachers)
        for p in self.prepared:
            missing = [n for n in self.soft_teachers if n not in p.teacher_maps]
            if missing:
                raise DatasetError(f"{p.name}: no maps for teacher(s) {missing}; prepared "
                                   f"with {sorted(p.teacher_maps)}")
        self.hflip = bool(hflip)
        self.generator = generator
        sizes = [len(p.frames) for p in self.prepared]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, item: int):
        """Global item index -> (source index, frame index)."""
        if not -len(self) <= item < len(self):
            raise IndexError(f"item {item} out of range for {len(self)} items")
        item = int(item) % len(self)
        src = int(np.searchsorted(self.offsets, item, side="right") - 1)
        return src, item - int(self.offsets[src])

    def __getitem__(self, item: int) -> dict:
        src, k = self.locate(item)
        p = self.prepared[src]
        cur = np.asarray(p.frames[k])
        prev = np.asarray(p.frames[k - 1]) if k > 0 else cur
        x = np.concatenate([cur, prev], axis=2).transpose(2, 0, 1).astype(np.float32) / 255.0
        r = p.resolution
        if self.soft_teachers:
            soft = np.mean([p.teacher_maps[n][k] for n in self.soft_teachers], axis=0)
            peak = float(soft.max())
            soft = soft / peak if peak > 0 else soft
        else:
            soft = np.zeros(tuple(r), np.float32)
        hard = p.human[k]
        flip = False
        if self.hflip:
            flip = bool(torch.rand((), generator=self.generator) < 0.5)
        if flip:
            x, soft, hard = x[:, :, ::-1], soft[:, ::-1], hard[:, ::-1]
        return {"x": torch.from_numpy(np.ascontiguousarray(x)),
                "soft": torch.from_numpy(np.ascontiguousarray(soft, np.float32)[None]),
                "hard": torch.from_numpy(np.ascontiguousarray(hard, np.float32)[None]),
                "has_gaze": torch.tensor(float(p.has_gaze[k]), dtype=torch.float32),
                "source": src, "index": k, "flipped": flip}
