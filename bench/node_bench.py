"""Node overhead benchmark: what the saliency node costs on top of the image transport.

``python -m bench.node_bench`` (or ``python -m bench.models --node``).  For each image size
and run it measures two chains on one host, same ROS domain, shared-memory Fast DDS profile
(config/fastdds_shm.xml):

    camera process -> pass-through republisher -> probe     (yardstick: one transport hop)
    camera process -> saliency node (config/saliency.yaml) -> probe

The camera publishes real video frames at 30 Hz stamped with the wall clock; the probe reads
each output's stamp from the raw bytes and records the arrival time, so latency = arrival -
stamp (same host, same clock).  Only frames stamped inside the measurement window (after
``--node-warmup`` s) count.  A frame stamped in the window whose output never arrives is a
drop.  Node CPU per frame = the node process's utime + stime (/proc/<pid>/stat) over the
window divided by the outputs it delivered.  The headline is the ratio of p50 latencies,
node / pass-through, per size; medians over ``--node-runs`` runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from skd_saliency_ros.core.errors import run_reporting_user_errors
from skd_saliency_ros.core.output_paths import Output, check_outputs
from skd_saliency_ros.core.processes import LoggedProcess, ros_child_env
from bench.backends import BenchError  # the one benchmark error (model and node)

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = REPO_ROOT / "config" / "saliency.yaml"
SHM_PROFILE = REPO_ROOT / "config" / "fastdds_shm.xml"
IMAGE_TOPIC = "/bench/image"
PASS_TOPIC = "/bench/passthrough"
NODE_TOPIC = "/saliency_node/saliency"
SECTION = "bench:node"


def add_node_arguments(parser) -> None:
    """Options of the node benchmark (shared by bench.models --node and this module)."""
    parser.add_argument("--sizes", default="640x480,1280x720,1920x1080",
                        help="comma list of WxH (default 640x480,1280x720,1920x1080)")
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate, Hz (30)")
    parser.add_argument("--node-runs", type=int, default=3,
                        help="repeated runs per size and chain; medians reported (3)")
    parser.add_argument("--node-warmup", type=float, default=4.0,
                        help="seconds of frames before the window opens (4)")
    parser.add_argument("--node-duration", type=float, default=10.0,
                        help="measurement window, seconds (10)")
    parser.add_argument("--node-model", default="",
                        help="model_path for the node ('' = the shipped default model)")
    parser.add_argument("--node-param", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra node parameter on top of config/saliency.yaml (repeatable)")
    parser.add_argument("--node-json", type=Path, default=None,
                        help="write the node result here (default: --json)")
    parser.add_argument("--node-section", default=SECTION,
                        help="marker name of the section --doc replaces (default "
                             f"{SECTION}; another name keeps a second configuration's table)")
    parser.add_argument("--node-start-timeout", type=float, default=120.0,
                        help="seconds a process may take to come up (120)")
    parser.add_argument("--transport", choices=TRANSPORTS, default="shm",
                        help="how the processes talk: shm = every process with "
                             "config/fastdds_shm.xml (what the launch files set; default), "
                             "camera-default = the camera process on Fast DDS's default "
                             "transports (a driver started outside the launch), large-data = "
                             "no profile, FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA everywhere")
    parser.add_argument("--large-data-options", default="",
                        help="with --transport large-data: Fast DDS's LARGE_DATA options, "
                             "e.g. 'max_msg_size=4MB&sockets_size=4MB' (default: none)")


def parse_sizes(text: str) -> List[tuple]:
    """'640x480,1280x720' -> [(640, 480), (1280, 720)]."""
    sizes = []
    for item in text.split(","):
        try:
            width, height = (int(v) for v in item.lower().strip().split("x"))
        except ValueError:
            raise BenchError(f"--sizes: '{item}' is not WIDTHxHEIGHT") from None
        if width < 8 or height < 8:
            raise BenchError(f"--sizes: {item} is too small")
        sizes.append((width, height))
    return sizes


#: --transport choices (see add_node_arguments)
TRANSPORTS = ("shm", "camera-default", "large-data")
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def ros_env(log_dir: Path, transport: str = "shm", role: str = "node",
            large_data_options: str = "") -> Dict[str, str]:
    """Environment of one process: private domain, localhost only, and its Fast DDS transport.

    ``shm``: the shared-memory profile (config/fastdds_shm.xml), as the launch files set it
    for every process.  ``camera-default``: the same, except the camera process, which gets
    Fast DDS's default transports (what a camera driver started outside the launch has).
    ``large-data``: no profile file; Fast DDS's built-in LARGE_DATA option (shared memory plus
    TCP for data, UDP only for discovery) in every process.  Each call draws a random
    domain id: the caller copies one id to every process of a run.
    """
    env = ros_child_env(REPO_ROOT, log_dir=log_dir, shm_profile=SHM_PROFILE)
    no_profile = transport == "large-data" or (transport == "camera-default"
                                               and role == "camera")
    if no_profile:
        for name in PROFILE_VARIABLES:
            env.pop(name, None)
    if transport == "large-data":
        env["FASTDDS_BUILTIN_TRANSPORTS"] = "LARGE_DATA" + (
            f"?{large_data_options}" if large_data_options else "")
    return env


class Proc(LoggedProcess):
    """A named child process of the benchmark (output collected line by line)."""

    def __init__(self, name: str, cmd: Sequence[str], env: Dict[str, str]):
        self.name = name
        super().__init__(cmd, env, cwd=REPO_ROOT)

    @property
    def pid(self) -> int:
        """Process id (for /proc/<pid>/stat)."""
        return self.proc.pid

    def wait_for(self, marker: str, timeout: float) -> None:
        """Block until a line contains ``marker``; raise if the process dies or times out."""
        if self.wait_for_line(marker, timeout):
            return
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with code {self.proc.returncode} before "
                             f"it was ready: {self.tail()}")
        raise BenchError(f"{self.name} not ready after {timeout:.0f} s: {self.tail()}")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, then SIGKILL after ``timeout``; return the exit code."""
        return super().stop(timeout)

    def json_line(self) -> Dict[str, Any]:
        """Return the last JSON object the process printed."""
        for line in reversed(self.lines):
            if line.startswith("{"):
                return json.loads(line)
        raise BenchError(f"{self.name} printed no result: {self.tail()}")


def cpu_seconds(pid: int) -> float:
    """Return utime + stime of a process in seconds (/proc/<pid>/stat fields 14, 15)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError as exc:
        raise BenchError(f"cannot read /proc/{pid}/stat: {exc}") from exc
    fields = text[text.rindex(")") + 2:].split()  # skip "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _roles(*args: str) -> List[str]:
    return [sys.executable, "-m", "bench.node_bench_roles", *args]


def node_command(model: str, extra: Sequence[str]) -> List[str]:
    """Command line of the saliency node as a user starts it, bench camera remapped in."""
    cmd = [sys.executable, "-m", "skd_saliency_ros.ros.node", "--ros-args",
           "--params-file", str(PARAMS_FILE), "-r", f"image:={IMAGE_TOPIC}"]
    if model:
        cmd += ["-p", f"model_path:={model}"]
    for item in extra:
        if ":=" not in item:
            raise BenchError(f"--node-param '{item}' is not NAME:=VALUE")
        cmd += ["-p", item]
    return cmd


def measure_chain(chain: str, size: tuple, args, log_dir: Path) -> Dict[str, Any]:
    """One run of one chain at one size; returns latency, drops and CPU figures."""
    options = getattr(args, "large_data_options", "")
    env = ros_env(log_dir, args.transport, large_data_options=options)
    camera_env = ros_env(log_dir, args.transport, role="camera", large_data_options=options)
    camera_env["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    width, height = size
    out_topic = NODE_TOPIC if chain == "node" else PASS_TOPIC
    procs: List[Proc] = []
    try:
        probe = Proc("probe", _roles("probe", "--topic", out_topic), env)
        procs.append(probe)
        if chain == "node":
            sut = Proc("saliency node", node_command(args.node_model, args.node_param), env)
            ready = "serving"
        else:
            sut = Proc("pass-through", _roles("passthrough", "--in-topic", IMAGE_TOPIC,
                                              "--out-topic", PASS_TOPIC), env)
            ready = "ready"
        procs.append(sut)
        probe.wait_for("ready", args.node_start_timeout)
        sut.wait_for(ready, args.node_start_timeout)
        total = args.node_warmup + args.node_duration + 1.0
        camera = Proc("camera", _roles("camera", "--topic", IMAGE_TOPIC, "--width", str(width),
                                       "--height", str(height), "--rate", str(args.rate),
                                       "--duration", str(total)), camera_env)
        procs.append(camera)
        camera.wait_for("publishing", args.node_start_timeout)
        time.sleep(args.node_warmup)
        cpu0, t0 = cpu_seconds(sut.pid), time.time_ns()
        time.sleep(args.node_duration)
        cpu1, t1 = cpu_seconds(sut.pid), time.time_ns()
        camera.proc.wait(timeout=total + 30)
        sent = camera.json_line().get("sent_ns")
        if sent is None:
            raise BenchError(f"camera failed: {camera.tail()}")
        time.sleep(1.0)  # outputs of the last frames in flight
        probe.stop()
        pairs = probe.json_line()["pairs_ns"]
        if sut.proc.poll() is not None:
            raise BenchError(f"{sut.name} died during the run: {sut.tail()}")
    finally:
        for proc in reversed(procs):
            proc.stop()
    arrivals = {}
    for stamp, arrival in pairs:
        arrivals.setdefault(stamp, arrival)
    window = [s for s in sent if t0 <= s <= t1]
    latencies = sorted((arrivals[s] - s) / 1e6 for s in window if s in arrivals)
    if not window:
        raise BenchError(f"{chain} {width}x{height}: the camera sent nothing in the window")
    delivered = len(latencies)
    cpu = cpu1 - cpu0
    return {
        "chain": chain, "size": f"{width}x{height}", "sent": len(window),
        "delivered": delivered, "drops": len(window) - delivered,
        "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99),
        "mean_ms": statistics.fmean(latencies) if latencies else None,
        "cpu_s": cpu, "cpu_ms_per_frame": cpu * 1e3 / delivered if delivered else None,
        "cpu_util": cpu / ((t1 - t0) / 1e9),
        "sent_rate_hz": (len(window) - 1) / ((window[-1] - window[0]) / 1e9)
        if len(window) > 1 else None,
    }


def _pct(values: List[float], q: float) -> Optional[float]:
    if not values:
        return None
    index = min(len(values) - 1, max(0, int(round(q / 100 * (len(values) - 1)))))
    return values[index]


def _median(values: List[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def check_model(model: str) -> None:
    """Refuse early when the node would not find its model."""
    from skd_saliency_ros.core.checkpoint import DEFAULT_MODEL

    path = Path(model) if model else DEFAULT_MODEL
    if not path.is_file():
        raise BenchError(f"node model {path} does not exist"
                         + (" (the trained default model is not there yet; pass "
                            "--node-model PATH.pt)" if not model else ""))


def command_line() -> str:
    """How this run was started (see bench.report.command_line)."""
    from bench.report import command_line as bench_command_line

    return bench_command_line()


def run_node_bench(args) -> Dict[str, Any]:
    """All sizes x chains x runs; per-size medians, ratios and the summary."""
    sizes = parse_sizes(args.sizes)
    if args.node_runs < 1 or args.node_duration <= 0 or args.node_warmup < 0:
        raise BenchError("--node-runs must be >= 1, --node-duration > 0, --node-warmup >= 0")
    check_model(args.node_model)
    for path in (PARAMS_FILE, SHM_PROFILE):
        if not path.is_file():
            raise BenchError(f"{path} is missing")
    runs: List[Dict[str, Any]] = []
    load0 = os.getloadavg()
    from tqdm import tqdm

    jobs = [(run, size, chain) for run in range(args.node_runs) for size in sizes
            for chain in (("passthrough", "node") if run % 2 == 0 else ("node", "passthrough"))]
    with tempfile.TemporaryDirectory(prefix="skd_node_bench_") as tmp:
        for run, size, chain in tqdm(jobs, desc="node bench", unit="chain",
                                     disable=getattr(args, "no_progress", False)):
            result = measure_chain(chain, size, args, Path(tmp))
            result["run"] = run
            runs.append(result)
    per_size = {}
    summary: Dict[str, Any] = {}
    for width, height in sizes:
        key = f"{width}x{height}"
        entry = {}
        for chain in ("passthrough", "node"):
            mine = [r for r in runs if r["size"] == key and r["chain"] == chain]
            entry[chain] = {
                "p50_ms": _median([r["p50_ms"] for r in mine]),
                "p99_ms": _median([r["p99_ms"] for r in mine]),
                "drops": sum(r["drops"] for r in mine),
                "sent": sum(r["sent"] for r in mine),
                "cpu_ms_per_frame": _median([r["cpu_ms_per_frame"] for r in mine]),
                "cpu_util": _median([r["cpu_util"] for r in mine]),
            }
        ratios = []
        for run in range(args.node_runs):
            pair = {r["chain"]: r for r in runs if r["size"] == key and r["run"] == run}
            if pair["node"]["p50_ms"] and pair["passthrough"]["p50_ms"]:
                ratios.append(pair["node"]["p50_ms"] / pair["passthrough"]["p50_ms"])
        entry["ratio_p50"] = _median(ratios)
        per_size[key] = entry
        summary[f"node_vs_passthrough_p50_{key}"] = entry["ratio_p50"]
        summary[f"drops_{key}"] = entry["node"]["drops"]
        summary[f"passthrough_drops_{key}"] = entry["passthrough"]["drops"]
        summary[f"node_p50_ms_{key}"] = entry["node"]["p50_ms"]
        summary[f"node_cpu_ms_per_frame_{key}"] = entry["node"]["cpu_ms_per_frame"]
    meta = {
        "command": command_line(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rate_hz": args.rate, "runs": args.node_runs, "warmup_s": args.node_warmup,
        "window_s": args.node_duration, "node_model": args.node_model or "default",
        "node_params": [str(PARAMS_FILE.relative_to(REPO_ROOT))] + list(args.node_param),
        "fastdds_profile": str(SHM_PROFILE.relative_to(REPO_ROOT)),
        "transport": args.transport,
        "large_data_options": getattr(args, "large_data_options", ""),
        "cores": os.cpu_count(), "loadavg_before": list(load0),
        "loadavg_after": list(os.getloadavg()),
    }
    return {"meta": meta, "per_size": per_size, "runs": runs, "summary": summary}


def doc_section(result: Dict[str, Any]) -> str:
    """Markdown for docs/BENCHMARKS.md: command, conditions and the per-size table."""
    from bench.report import md_table

    meta = result["meta"]
    rows = []
    for key, entry in result["per_size"].items():
        p, n = entry["passthrough"], entry["node"]
        rows.append([key, p["p50_ms"], p["p99_ms"], f"{p['drops']}/{p['sent']}",
                     n["p50_ms"], n["p99_ms"], f"{n['drops']}/{n['sent']}",
                     n["cpu_ms_per_frame"], n["cpu_util"], entry["ratio_p50"]])
    header = ["size", "pass-through p50 (ms)", "pass-through p99 (ms)", "pass-through drops",
              "node p50 (ms)", "node p99 (ms)", "node drops", "node CPU (ms/frame)",
              "node CPU (cores)", "p50 ratio node / pass-through"]
    return "\n".join([
        f"Generated by `{meta['command']}` on {meta['date_utc']}: {meta['rate_hz']:g} Hz, "
        f"{meta['runs']} run(s) per size and chain, {meta['warmup_s']:g} s warm-up, "
        f"{meta['window_s']:g} s window; node model {meta['node_model']}, parameters "
        f"{', '.join(meta['node_params'])}; transport {_transport_words(meta)}; "
        f"{meta['cores']} cores, load average {meta['loadavg_before'][0]:.2f} at start, "
        f"{meta['loadavg_after'][0]:.2f} at end.",
        "", "Latencies are medians over runs of each run's p50 / p99; drops are summed over "
        "runs (dropped / sent in the windows).", "",
        md_table(header, rows), "", "Summary JSON:", "", "```json",
        json.dumps(result["summary"], indent=1), "```"])


def _transport_words(meta: Dict[str, Any]) -> str:
    """Say the run's Fast DDS transport in words (runs before --transport had the profile)."""
    transport = meta.get("transport", "shm")
    if transport == "shm":
        return f"every process with {meta['fastdds_profile']}"
    if transport == "camera-default":
        return (f"node and probe with {meta['fastdds_profile']}, camera process on Fast DDS's "
                "default transports")
    options = meta.get("large_data_options")
    return ("no profile, FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA"
            + (f"?{options}" if options else "") + " in every process")


def _json_path(args):
    """Return the JSON to write: --node-json, else --json (None: none)."""
    return args.node_json or getattr(args, "json", None)


def check_report_paths(args) -> None:
    """Refuse, before any node starts, a JSON or doc on the model or on each other.

    Both are regenerated on every run, so existing ones are replaced.
    """
    label = "--node-json" if args.node_json else "--json"
    check_outputs([Output(label, _json_path(args), regenerated=True),
                   Output("--doc", getattr(args, "doc", None), regenerated=True)],
                  inputs=[("--node-model", args.node_model or None)])


def run(args) -> int:
    """Run the node benchmark, print it, write JSON and the doc section when asked."""
    check_report_paths(args)
    result = run_node_bench(args)
    print(doc_section(result))
    out = _json_path(args)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {out}")
    doc = getattr(args, "doc", None)
    if doc is not None:
        from bench.report import replace_section

        replace_section(doc, args.node_section, doc_section(result))
        print(f"updated {doc}")
    return 0


def main(argv=None) -> int:
    """``python -m bench.node_bench``: the same as ``python -m bench.models --node``."""
    parser = argparse.ArgumentParser(prog="python -m bench.node_bench", description=__doc__)
    add_node_arguments(parser)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--doc", type=Path, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    return run_reporting_user_errors("python -m bench.node_bench", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
