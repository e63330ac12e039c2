"""``saliency_replay``: run the saliency model over recorded flights and score it against gaze.

Offline (default): every image of the bag goes through the same ``SaliencyEngine``, peak
finder and message builders as the node, as fast as the CPU/GPU allows, and a NEW bag is
written with the input's camera topics plus ``<ns>/saliency`` (sensor_msgs/Image 32FC1),
``<ns>/peaks`` and ``<ns>/bearings`` (geometry_msgs/PoseArray), ``<ns>/target``
(Vector3Stamped) and ``<ns>/camera_info`` (CameraInfo of the saliency map) -- the last three
only when the bag has CameraInfo -- all with the input image's header and recording time.
The input is only read.

Live (``--live``): the bag is played into DDS at recorded speed (``--rate``) with /clock, a
separately running saliency node answers, and the answers are recorded and counted
(see replay_live.py).

Evaluation: ``--gaze file.npz`` (the data bundle's format) scores every map with
``metrics.score_sequence``, the function the training evaluate step uses, per bag and overall.

Converter: ``saliency_replay make-bag --video V.mp4 [--gaze G.npz] --out B`` writes a video
as sensor_msgs/Image frames at the video's rate.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from skd_saliency_ros.bags.bag_io import (BagError, CAMERA_INFO_TYPE, DISTROS, IMAGE_TYPE,
                                          STORAGES, InputBag, decode_rgb, make_bag)
from skd_saliency_ros.core.stamps import stamp_ns
from skd_saliency_ros.core.errors import run_reporting_user_errors
from skd_saliency_ros.core.output_paths import Output, check_outputs
from skd_saliency_ros.ros.engine_params import ENGINE_PARAMS, engine_from
from skd_saliency_ros.ros.params import (BACKENDS, DEVICES, NODE_PARAMS, OUTPUT_PARAMS,
                                         OutputSettings)
from skd_saliency_ros.bags.replay_common import (PROG, FrameMatcher, ReplayError, add_scores,
                                                 input_storage, load_sequence_gaze,
                                                 maybe_output_bag)
from skd_saliency_ros.core.processes import request_stop

#: Output namespace of the node with one camera: SaliencyNode publishes under ~/ .
DEFAULT_NS = "/saliency_node"
SALIENCY_TYPE = IMAGE_TYPE
POSE_ARRAY_TYPE = "geometry_msgs/msg/PoseArray"
VECTOR3_STAMPED_TYPE = "geometry_msgs/msg/Vector3Stamped"
MATCHES = ("index", "stamp")
#: the node parameters offline replay uses: the engine's, the outputs', the input size limits
#: (the others, cameras, qos_*, diagnostics, ..., concern a running node only)
OFFLINE_PARAMS = ENGINE_PARAMS + OUTPUT_PARAMS + ("min_input_size", "max_input_pixels")
#: replay's command-line options that set a node parameter: option -> parameter
NODE_OPTIONS = (("model", "model_path"), ("device", "device"), ("backend", "backend"))


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class ReplaySettings:
    """The node parameter values replay runs with, and the params-file entries it leaves.

    ``values`` holds every entry of the node's table: its defaults, then the params file
    (checked by the node's own validate), then --model / --device / --backend.
    """

    values: Dict[str, Any]
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def model_path(self) -> str:
        """The model file ('' = the default model shipped in the package)."""
        return self.values["model_path"]

    @property
    def output(self) -> OutputSettings:
        """What shapes each frame's messages, as in the node."""
        return OutputSettings.from_values(self.values)

    def report(self) -> Dict[str, Any]:
        """Return the values replay used and the params file's other entries (for --json)."""
        return {**{name: self.values[name] for name in OFFLINE_PARAMS},
                "extra": dict(self.extra)}


def read_params_file(path) -> Dict[str, object]:
    """``ros__parameters`` of a ROS 2 params YAML (the first node section, or ``/**``)."""
    import yaml
    path = Path(path)
    if not path.is_file():
        raise ReplayError(f"{path}: no such params file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ReplayError(f"{path}: not valid YAML ({exc})") from exc
    if isinstance(data, dict):
        names = sorted(data, key=lambda n: n not in ("/**", "saliency_node", "/saliency_node"))
        for name in names:  # the node's own section first, else the first one
            section = data[name]
            if isinstance(section, dict) and isinstance(section.get("ros__parameters"), dict):
                return dict(section["ros__parameters"])
    raise ReplayError(f"{path}: no '<node>: ros__parameters:' section")


def build_settings(args) -> ReplaySettings:
    """Defaults of the node, then the params file, then explicit command-line options."""
    values = NODE_PARAMS.defaults()
    from_file = read_params_file(args.params_file) if args.params_file else {}
    # the node's own checks (use_sim_time and other ROS parameters are not the node's)
    node_values = {k: v for k, v in from_file.items() if k in NODE_PARAMS.by_name}
    reason = NODE_PARAMS.validate(node_values)
    if reason:
        raise ReplayError(f"{args.params_file}: {reason}")
    values.update(node_values)
    for option, name in NODE_OPTIONS:
        if getattr(args, option, None) is not None:
            values[name] = str(getattr(args, option))
    return ReplaySettings(values, extra={k: v for k, v in from_file.items()
                                         if k not in OFFLINE_PARAMS})


# --------------------------------------------------------------------------- messages
def _ros_header(stamp: int, frame_id: str):
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header
    return Header(stamp=Time(sec=int(stamp // 1_000_000_000), nanosec=int(stamp % 1_000_000_000)),
                  frame_id=frame_id)


class FrameOutputs:
    """The node's outputs for one frame (``frame_messages``), serialized for the bag."""

    def __init__(self, settings: OutputSettings):
        from rclpy.serialization import serialize_message
        self._serialize = serialize_message
        self.settings = settings

    def build(self, result, image_size, header_stamp: int, frame_id: str, camera_info):
        """Return {suffix: (msgtype, cdr bytes)} of one frame's outputs.

        Always saliency and peaks; with a CameraInfo also bearings, target and camera_info
        (the CameraInfo scaled to the saliency map).
        """
        from skd_saliency_ros.ros.outputs import frame_messages

        out = frame_messages(result.saliency, image_size, _ros_header(header_stamp, frame_id),
                             camera_info, self.settings)
        msgs = {"saliency": (SALIENCY_TYPE, out.saliency), "peaks": (POSE_ARRAY_TYPE, out.peaks)}
        if out.bearings is not None:
            msgs["bearings"] = (POSE_ARRAY_TYPE, out.bearings)
        if out.target is not None:
            msgs["target"] = (VECTOR3_STAMPED_TYPE, out.target)
        if out.saliency_info is not None:
            msgs["camera_info"] = (CAMERA_INFO_TYPE, out.saliency_info)
        return {k: (t, self._serialize(m)) for k, (t, m) in msgs.items()}, out.peak_list


# --------------------------------------------------------------------------- offline
def default_output(bag: Path) -> Path:
    """``<bag>_saliency`` beside the input (``x.mcap`` -> ``x_saliency``)."""
    stem = bag.stem if bag.is_file() else bag.name
    return bag.parent / f"{stem}_saliency"


def replay_offline(bag_path: Path, out: Optional[Path], engine, settings: ReplaySettings,
                   args, gaze_path: Optional[Path] = None) -> dict:
    """Run one bag through the engine; write ``out`` (unless None); score against gaze."""
    with InputBag(bag_path, topic=args.topic, distro=args.distro) as bag:
        gaze = load_sequence_gaze(gaze_path, bag, args.match) if gaze_path else None
        storage = args.storage or input_storage(bag_path)
        with maybe_output_bag(out, args.overwrite, storage, args.distro) as obag:
            one_pass = _OfflinePass(bag_path, bag, engine, settings, args, obag, gaze)
            elapsed = one_pass.play()
    stats = one_pass.stats
    stats["seconds"] = round(elapsed, 3)
    stats["fps"] = round(stats["frames"] / elapsed, 2) if elapsed > 0 else None
    stats["output"] = str(out) if out is not None else None
    if gaze is not None:
        add_scores(stats, one_pass.maps, gaze)
    return stats


class _OfflinePass:
    """One pass over an open bag: decode, batch, infer, build and write the outputs, count.

    Images wait in ``pending`` for one batched inference of up to --batch frames; the
    CameraInfo of a frame is the newest before it, or the one with its stamp that arrives
    before the batch runs (a camera's info often follows its image in the bag).
    """

    def __init__(self, bag_path: Path, bag, engine, settings: ReplaySettings, args, obag,
                 gaze):
        from tqdm import tqdm
        self.bag_path, self.bag, self.engine, self.args, self.obag = (bag_path, bag, engine,
                                                                      args, obag)
        self.input_limits = (settings.values["min_input_size"],
                             settings.values["max_input_pixels"])
        self.outputs = FrameOutputs(settings.output)
        self.ns = args.ns.rstrip("/")
        self.matcher = FrameMatcher(args.match, gaze) if gaze is not None else None
        total = bag.image_count if args.max_frames is None else min(bag.image_count,
                                                                    args.max_frames)
        self.stats = {"bag": str(bag_path), "frames": 0, "invalid": 0, "non_finite": 0,
                      "resets": 0, "peaks": 0, "topic": bag.image_topic,
                      "camera_info": bag.info_topic, "images_in_bag": total}
        self.maps: List[tuple] = []           # (gaze frame, map) to score
        self.pending: List[tuple] = []        # (ordinal, message, rgb, stamp, CameraInfo)
        self.infos: Dict[int, object] = {}    # CameraInfo by header stamp, until a flush
        self.info = None                      # the newest CameraInfo
        self.bar = tqdm(total=total, desc=f"replay {bag_path.name}", unit="frame",
                        disable=not args.progress)

    def play(self) -> float:
        """Feed every message (up to --max-frames images); return the seconds it took."""
        started = time.perf_counter()
        ordinal = -1
        for m in self.bag.messages():
            if m.topic == self.bag.info_topic:
                self._camera_info(m)
                continue
            ordinal += 1
            if self.args.max_frames is not None and ordinal >= self.args.max_frames:
                break
            self._image(ordinal, m)
        if self.pending:
            self._flush()
        self.bar.close()
        elapsed = time.perf_counter() - started
        if self.stats["frames"] == 0:
            raise BagError(f"{self.bag_path}: no image on '{self.bag.image_topic}' could be "
                           "decoded")
        return elapsed

    def _copy_input(self, m, msgtype: str) -> None:
        if self.obag is not None:
            self.obag.write_raw(m.topic, msgtype, m.bag_ns, m.raw,
                                typestore=self.bag.reader.typestore)

    def _camera_info(self, m) -> None:
        self.info = m.msg
        self.infos[stamp_ns(m.msg.header.stamp)] = m.msg
        self._copy_input(m, CAMERA_INFO_TYPE)

    def _image(self, ordinal: int, m) -> None:
        from skd_saliency_ros.ros.image_io import ImageEncodingError
        self._copy_input(m, m.msgtype)
        try:
            rgb = decode_rgb(m.msg, m.msgtype, *self.input_limits)
        except ImageEncodingError as exc:
            self.stats["invalid"] += 1
            self.bar.update(1)
            if self.stats["invalid"] <= 3:
                print(f"{PROG}: {self.bag_path}: image {ordinal} skipped: {exc}",
                      file=sys.stderr)
            return
        if len(self.pending) >= self.args.batch:  # flushed only now: its infos have arrived
            self._flush()
        self.pending.append((ordinal, m, rgb, stamp_ns(m.msg.header.stamp), self.info))

    def _flush(self) -> None:
        """One batched inference for the pending frames, then their outputs."""
        results = self.engine.step_many([(self.bag.image_topic, rgb, stamp / 1e9)
                                         for _, _, rgb, stamp, _ in self.pending])
        for frame, result in zip(self.pending, results):
            self._frame_result(frame, result)
            self.bar.update(1)
        self.pending.clear()
        self.infos.clear()

    def _frame_result(self, frame: tuple, result) -> None:
        """Count one frame's result; write its outputs and keep its map for scoring."""
        k, m, rgb, stamp, cam = frame
        cam = self.infos.get(stamp, cam)
        self.stats["frames"] += 1
        if not result.finite:  # as the node: no output, never an all-zero map
            self.stats["non_finite"] += 1
            if self.stats["non_finite"] <= 3:
                print(f"{PROG}: {self.bag_path}: image {k}: the model's map is not finite "
                      "(NaN or inf); no output for it", file=sys.stderr)
            return
        self.stats["resets"] += int(result.reset_reason is not None and k > 0)
        if self.obag is not None or self.matcher is None:
            msgs, peaks = self.outputs.build(result, (rgb.shape[1], rgb.shape[0]), stamp,
                                             m.msg.header.frame_id, cam)
            self.stats["peaks"] += len(peaks)
            if self.obag is not None:
                for suffix, (msgtype, raw) in msgs.items():
                    self.obag.write_raw(f"{self.ns}/{suffix}", msgtype, m.bag_ns, raw)
        if self.matcher is not None:
            self.maps.append((self.matcher(k, stamp), result.saliency))


# --------------------------------------------------------------------------- reporting
def overall_metrics(sequences: List[dict]) -> Optional[dict]:
    """Frame-weighted mean over every scored frame of every sequence."""
    from skd_saliency_ros.core.metrics import METRIC_KEYS, mean_defined
    frames = [f for s in sequences for f in s.get("per_frame", [])]
    if not frames:
        return None
    out = {k: mean_defined([f[k] for f in frames]) for k in METRIC_KEYS}
    out["n_frames"] = len(frames)
    return out


def metrics_line(metrics: dict) -> str:
    """One-line metric summary (same order as the training evaluate table); n/a: undefined."""
    from skd_saliency_ros.core.metrics import format_metric
    names = (("auc_judd", "AUC-J"), ("auc_shuffled", "sAUC"), ("nss", "NSS"), ("sim", "SIM"),
             ("cc", "CC"), ("kld", "KLD"))
    return "  ".join(f"{label} {format_metric(metrics[key])}" for key, label in names)


def summary_line(stats: dict) -> str:
    """frames, frames/s, metrics of one sequence."""
    line = (f"{Path(stats['bag']).name}: {stats['frames']} frames in {stats['seconds']:.1f} s "
            f"({stats['fps']} frames/s)")
    if stats.get("invalid"):
        line += f", {stats['invalid']} invalid"
    if stats.get("non_finite"):
        line += f", {stats['non_finite']} non-finite maps (no output)"
    if stats.get("metrics"):
        line += f"; {metrics_line(stats['metrics'])} ({stats['scored_frames']} scored)"
    return line


# --------------------------------------------------------------------------- CLI
def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description="Replay rosbag2 bags through the saliency model (offline, or "
        "live into a running node) and score them against gaze. "
        f"Video -> bag converter: '{PROG} make-bag -h'.")
    p.add_argument("bags", nargs="+", type=Path, help="rosbag2 directories or .db3/.mcap files")
    p.add_argument("--out", type=Path, default=None,
                   help="output bag (one input) or directory of output bags (several); "
                        "default <bag>_saliency beside each input")
    p.add_argument("--no-output", action="store_true",
                   help="offline: only score / time, write no bag")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--storage", choices=STORAGES, default=None,
                   help="output storage (default: the input's)")
    p.add_argument("--topic", default=None,
                   help="image topic (default: the bag's only Image/CompressedImage topic)")
    p.add_argument("--ns", default=DEFAULT_NS,
                   help="namespace of the output topics (default %(default)s, the node's ~/)")
    p.add_argument("--gaze", type=Path, nargs="+", default=None,
                   help="gaze .npz per bag (same order) to score the maps")
    p.add_argument("--match", choices=MATCHES, default="index",
                   help="gaze frame of an image: its index in the bag, or its stamp relative "
                        "to the first image times the gaze fps (default %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="write metrics and stats here")
    p.add_argument("--params-file", type=Path, default=None,
                   help="the node's params YAML (config/saliency.yaml): model, top_k, ...")
    p.add_argument("--model", default=None, help="checkpoint or ONNX (overrides params file)")
    p.add_argument("--device", default=None, choices=DEVICES)
    p.add_argument("--backend", default=None, choices=BACKENDS)
    p.add_argument("--distro", choices=DISTROS, default="humble",
                   help="type store for bags without stored definitions / for output types")
    p.add_argument("--max-frames", type=int, default=None, help="only the first N images")
    p.add_argument("--batch", type=int, default=64,
                   help="offline: frames per batched inference (default %(default)s, the "
                        "training evaluate step's batch)")
    p.add_argument("--live", action="store_true",
                   help="play into DDS at recorded speed and record a running node's answers")
    p.add_argument("--rate", type=float, default=1.0, help="live: playback speed factor")
    p.add_argument("--wait", type=float, default=30.0,
                   help="live: seconds to wait for the node to appear (default %(default)s)")
    p.add_argument("--drain", type=float, default=2.0,
                   help="live: seconds to wait for answers after the last frame")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def _make_bag_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"{PROG} make-bag",
                                description="Convert a video (and its gaze) into a rosbag2 "
                                "of sensor_msgs/Image frames at the video's rate.")
    p.add_argument("--video", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="bag directory to create")
    p.add_argument("--gaze", type=Path, default=None,
                   help="gaze .npz of the video: checked against the frame count and written "
                        "as geometry_msgs/PolygonStamped on --gaze-topic")
    p.add_argument("--storage", choices=STORAGES, default="sqlite3")
    p.add_argument("--topic", default="/camera/image_raw")
    p.add_argument("--gaze-topic", default="/gaze/fixations")
    p.add_argument("--frame-id", default="camera_optical_frame")
    p.add_argument("--encoding", choices=("rgb8", "bgr8"), default="rgb8")
    p.add_argument("--compress", choices=("png", "jpeg"), default=None,
                   help="write sensor_msgs/CompressedImage on <topic>/compressed instead "
                        "(png is lossless)")
    p.add_argument("--hfov", type=float, default=None,
                   help="write a pinhole CameraInfo with this horizontal field of view (deg)")
    p.add_argument("--fps", type=float, default=None, help="override the video's frame rate")
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--distro", choices=DISTROS, default="humble")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def _outputs_for(args) -> List[Optional[Path]]:
    """Return the output bag of each input bag (None: no bag is written)."""
    if args.no_output or args.live and args.out is None:
        return [None] * len(args.bags)
    if args.out is None:
        return [default_output(b) for b in args.bags]
    if len(args.bags) == 1:
        return [args.out]
    return [args.out / (default_output(b).name) for b in args.bags]


def _check_paths(args, outs: List[Optional[Path]], settings: ReplaySettings) -> None:
    """Every output (bags, --json) clear of every input and of each other, before any work."""
    label = "--out" if args.out is not None else "output bag"
    inputs = ([("input bag", b) for b in args.bags]
              + [("--gaze file", g) for g in args.gaze or []]
              + [("--params-file", args.params_file), ("model", settings.model_path or None)])
    check_outputs([Output(label, o, folder=True) for o in outs] + [Output("--json", args.json)],
                  inputs=inputs, overwrite=args.overwrite)


def _check_args(args) -> None:
    if args.gaze is not None and len(args.gaze) != len(args.bags):
        raise ReplayError(f"--gaze lists {len(args.gaze)} file(s) for {len(args.bags)} bag(s); "
                          "give one per bag, in the same order")
    if args.max_frames is not None and args.max_frames < 1:
        raise ReplayError("--max-frames must be >= 1")
    if args.batch < 1:
        raise ReplayError("--batch must be >= 1")
    if not args.rate > 0:
        raise ReplayError("--rate must be > 0")
    names = [b.name for b in args.bags]
    if len(set(names)) != len(names):
        raise ReplayError("two input bags have the same name; their results would clash")


def run(args) -> int:
    """Offline or live replay of every bag; print the summary; write --json."""
    _check_args(args)
    settings = build_settings(args)
    outs = _outputs_for(args)
    _check_paths(args, outs, settings)
    gazes = args.gaze or [None] * len(args.bags)
    for bag_path, gaze_path in zip(args.bags, gazes):  # fail fast, before loading a model
        with InputBag(bag_path, topic=args.topic, distro=args.distro) as bag:
            if gaze_path is not None:
                load_sequence_gaze(gaze_path, bag, args.match)
    if args.live:
        from skd_saliency_ros.bags.replay_live import replay_live
        results = [replay_live(b, o, args, g) for b, o, g in zip(args.bags, outs, gazes)]
        report = {"mode": "live", "sequences": {b.name: r for b, r in zip(args.bags, results)}}
    else:
        report = _run_offline(args, settings, outs, gazes)
    report["settings"] = _jsonable(settings.report())
    report["match"] = args.match
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_jsonable(report), indent=1))
        print(f"{PROG}: wrote {args.json}")
    return 0


def _run_offline(args, settings: ReplaySettings, outs: List[Optional[Path]],
                 gazes: List[Optional[Path]]) -> dict:
    """One engine (the node's, from its parameters) over every bag; print the summary."""
    engine = engine_from(settings.values)
    results = []
    for bag, out, gaze in zip(args.bags, outs, gazes):
        engine.reset()
        stats = replay_offline(bag, out, engine, settings, args, gaze)
        print(f"{PROG}: {summary_line(stats)}", flush=True)
        results.append(stats)
    report = {"mode": "offline", "model": _jsonable(engine.model_info),
              "device": engine.device, "backend": engine.backend,
              "sequences": {b.name: r for b, r in zip(args.bags, results)}}
    frames = sum(r["frames"] for r in results)
    seconds = sum(r["seconds"] for r in results)
    overall = overall_metrics(results)
    report["overall"] = {"frames": frames, "seconds": round(seconds, 3),
                         "fps": round(frames / seconds, 2) if seconds else None,
                         "metrics": overall}
    line = f"{PROG}: overall: {frames} frames, {report['overall']['fps']} frames/s"
    if overall:
        line += f"; {metrics_line(overall)} ({overall['n_frames']} scored)"
    print(line, flush=True)
    return report


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def run_make_bag(args) -> int:
    """Run the make-bag subcommand."""
    info = make_bag(args.video, args.out, gaze=args.gaze, storage=args.storage,
                    topic=args.topic, encoding=args.encoding, frame_id=args.frame_id,
                    max_frames=args.max_frames, fps=args.fps, hfov_deg=args.hfov,
                    gaze_topic=args.gaze_topic, overwrite=args.overwrite, distro=args.distro,
                    progress=args.progress, compress=args.compress)
    print(f"{PROG} make-bag: wrote {info['bag']} ({info['storage']}): {info['frames']} frames "
          f"at {info['fps']:g} fps on {info['topic']}"
          + (f", CameraInfo on {info['camera_info']}" if info["camera_info"] else "")
          + (f", gaze on {info['gaze_topic']}" if info["gaze_topic"] else ""), flush=True)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry point; user errors print one line and exit 2, Ctrl-C exits 130."""
    argv = list(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, request_stop)  # clean up the partial output bag on kill
    sub = argv[0] if argv else None
    if sub == "make-bag":
        args, func = _make_bag_parser().parse_args(argv[1:]), run_make_bag
    else:
        if sub == "run":
            argv = argv[1:]
        args, func = _run_parser().parse_args(argv), run
    try:
        return run_reporting_user_errors(PROG, lambda: func(args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no output bag was left under the final name",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
