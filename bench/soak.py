"""Soak test of the saliency node: memory and drops over minutes, with 1 and 2 cameras.

``python -m bench.soak --minutes 10 --cameras 1,2 --doc docs/RELIABILITY.md``

For each camera count the node runs as its own process with the shipped config/saliency.yaml
(``cameras`` set to one topic per camera) while camera processes publish real 1280x720 video
frames at 30 Hz each, and a probe per camera records every ~/saliency that arrives.  The
node's resident memory (VmRSS, /proc/<pid>/status) is sampled every ``--sample-s`` seconds.
Reported per camera count: RSS at minute 1 and at the end (growth between them: start-up and
the first minute's allocator warm-up are excluded), its maximum, frames sent / answered /
dropped, p50 / p99 latency (camera stamp -> arrival, same host clock).  ``--doc`` writes the
table, the command and an RSS-over-time PNG into the ``bench:soak`` section of the file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

from bench.node_bench import (BenchError, Proc, _pct, _roles, check_model, node_command,
                              ros_env)

SECTION = "bench:soak"


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (VmRSS of /proc/<pid>/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError as exc:
        raise BenchError(f"cannot read /proc/{pid}/status: {exc}") from exc
    raise BenchError(f"/proc/{pid}/status has no VmRSS line")


def soak(n_cameras: int, args, log_dir: Path) -> Dict[str, Any]:
    """One soak run with ``n_cameras`` cameras; returns the RSS series and delivery figures."""
    env = ros_env(log_dir)
    width, height = (int(v) for v in args.size.split("x"))
    topics = [f"cam{i}/image" for i in range(n_cameras)]
    cameras_param = "cameras:=[" + ",".join(topics) + "]"
    duration = args.minutes * 60.0
    procs: List[Proc] = []
    samples: List[tuple] = []
    try:
        # one camera: outputs under ~/; several: under ~/<topic namespace>/ (the node's rule)
        outs = (["/saliency_node/saliency"] if n_cameras == 1 else
                [f"/saliency_node/cam{i}/saliency" for i in range(n_cameras)])
        probes = [Proc(f"probe {t}", _roles("probe", "--topic", out), env)
                  for t, out in zip(topics, outs)]
        procs += probes
        node = Proc("saliency node", node_command(args.model, [cameras_param]), env)
        procs.append(node)
        for probe in probes:
            probe.wait_for("ready", args.start_timeout)
        node.wait_for("serving", args.start_timeout)
        cams = [Proc(f"camera {t}", _roles("camera", "--topic", f"/{t}", "--width", str(width),
                                           "--height", str(height), "--rate", str(args.rate),
                                           "--duration", str(duration)), env)
                for t in topics]
        procs += cams
        for cam in cams:
            cam.wait_for("publishing", args.start_timeout)
        start = time.monotonic()
        while time.monotonic() - start < duration:
            samples.append((time.monotonic() - start, rss_mb(node.pid)))
            if node.proc.poll() is not None:
                raise BenchError(f"the node died during the soak: {node.tail()}")
            time.sleep(args.sample_s)
        samples.append((time.monotonic() - start, rss_mb(node.pid)))
        for cam in cams:
            cam.proc.wait(timeout=60)
        sent = [cam.json_line().get("sent_ns") or [] for cam in cams]
        time.sleep(1.0)  # outputs of the last frames in flight
        for probe in probes:
            probe.stop()
        pairs = [probe.json_line()["pairs_ns"] for probe in probes]
    finally:
        for proc in reversed(procs):
            proc.stop()
    total_sent = sum(len(s) for s in sent)
    latencies = []
    answered = 0
    for stamps, got in zip(sent, pairs):
        arrivals = {}
        for stamp, arrival in got:
            arrivals.setdefault(stamp, arrival)
        answered += sum(1 for s in stamps if s in arrivals)
        latencies += [(arrivals[s] - s) / 1e6 for s in stamps if s in arrivals]
    latencies.sort()
    if not latencies:
        raise BenchError(f"{n_cameras} camera(s): the node answered no frame (outputs "
                         f"{outs}); node log: {node.tail()}")
    after_1min = [r for t, r in samples if t >= 60.0] or [samples[-1][1]]
    return {"cameras": n_cameras, "size": args.size, "rate_hz": args.rate,
            "minutes": args.minutes, "rss_series": samples,
            "rss_minute1_mb": after_1min[0], "rss_end_mb": samples[-1][1],
            "rss_growth_mb": samples[-1][1] - after_1min[0],
            "rss_max_mb": max(r for _, r in samples), "sent": total_sent,
            "answered": answered, "dropped": total_sent - answered,
            "drop_pct": 100.0 * (total_sent - answered) / total_sent if total_sent else None,
            "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99)}


def doc_section(result: Dict[str, Any], plot_name: str) -> str:
    """Markdown of the soak: command, table, plot."""
    lines = [f"Command: `{result['command']}` ({result['date']}, load before: "
             f"{result['loadavg']}).", "",
             "| cameras | size, rate | minutes | RSS at 1 min (MB) | RSS at end (MB) | growth "
             "(MB) | max (MB) | sent | answered | dropped | p50 (ms) | p99 (ms) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        lines.append(
            f"| {r['cameras']} | {r['size']} @ {r['rate_hz']:g} Hz | {r['minutes']:g} | "
            f"{r['rss_minute1_mb']:.1f} | {r['rss_end_mb']:.1f} | {r['rss_growth_mb']:+.2f} | "
            f"{r['rss_max_mb']:.1f} | {r['sent']} | {r['answered']} | {r['dropped']} "
            f"({r['drop_pct']:.2f} %) | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    lines += ["", f"![node RSS over time]({plot_name})", ""]
    return "\n".join(lines)


def plot(result: Dict[str, Any], path: Path) -> None:
    """RSS of the node over time, one line per camera count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    for r in result["runs"]:
        t = [s[0] / 60.0 for s in r["rss_series"]]
        ax.plot(t, [s[1] for s in r["rss_series"]], marker=".", label=f"{r['cameras']} camera(s)")
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("minutes")
    ax.set_ylabel("node RSS (MB)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    """Run the soak for each camera count; print, and write JSON / the doc section."""
    import os

    from skd_saliency_ros.core.errors import run_reporting_user_errors
    from skd_saliency_ros.core.output_paths import Output, check_outputs
    from bench.report import command_line, replace_section

    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--cameras", default="1,2", help="camera counts to run (default 1,2)")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--rate", type=float, default=30.0, help="Hz per camera")
    parser.add_argument("--sample-s", type=float, default=10.0, help="RSS sampling period")
    parser.add_argument("--model", default="", help="node model_path (default: shipped)")
    parser.add_argument("--start-timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--doc", type=Path, default=None,
                        help="Markdown file whose bench:soak section is replaced")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.minutes <= 0 or args.sample_s <= 0:
            raise BenchError("--minutes and --sample-s must be > 0")
        counts = [int(c) for c in args.cameras.split(",") if c.strip()]
        check_model(args.model)
        png = args.doc.with_name("soak_rss.png") if args.doc else None
        check_outputs([Output("--json", args.json, regenerated=True),
                       Output("--doc", args.doc, regenerated=True),
                       Output("plot beside --doc", png, regenerated=True)],
                      inputs=[("--model", args.model or None)])
        result = {"command": command_line(), "date": datetime.date.today().isoformat(),
                  "loadavg": " ".join(f"{v:.2f}" for v in os.getloadavg()), "runs": []}
        with tempfile.TemporaryDirectory(prefix="skd_soak_") as tmp:
            for n in counts:
                run = soak(n, args, Path(tmp))
                result["runs"].append(run)
                print(f"{n} camera(s): RSS {run['rss_minute1_mb']:.1f} -> "
                      f"{run['rss_end_mb']:.1f} MB ({run['rss_growth_mb']:+.2f}), "
                      f"dropped {run['dropped']}/{run['sent']}, p50 {run['p50_ms']:.1f} ms, "
                      f"p99 {run['p99_ms']:.1f} ms", flush=True)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=1))
        if args.doc:
            plot(result, png)
            replace_section(args.doc, SECTION, doc_section(result, png.name))
            print(f"wrote {args.doc} and {png}")
        return 0

    return run_reporting_user_errors("python -m bench.soak", body)


if __name__ == "__main__":
    sys.exit(main())
