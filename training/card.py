"""Write the model card (JSON + Markdown) that sits beside a shipped checkpoint.

``python -m training.card CHECKPOINT EVAL_JSON [--overwrite]`` writes ``<checkpoint>.json``
and ``<checkpoint>.md``: what the model is, how it was trained (from the checkpoint's own
metadata) and its scores from an evaluate-step JSON.  Both are derived, never typed by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from skd_saliency_ros.core.input_size import parse_input_size, plain_size
from skd_saliency_ros.core.checkpoint import CheckpointError, read_checkpoint, stored_input_size
from skd_saliency_ros.core.models import build_model, count_parameters
from skd_saliency_ros.core.output_paths import Output, OutputPathError, check_outputs

from .evaluate import TABLE_COLUMNS, markdown_table
from .recipe import stored_config


# The card's "training" entries; the settings among them are read by TrainConfig field name
# (stored_config: any checkpoint layout), the rest are facts of the run in its meta.
TRAINING_KEYS = ("step", "init", "lambda", "loss", "steps", "batch_size", "lr", "lr_schedule",
                 "weight_decay", "seed", "hflip", "teachers", "soft_teachers", "data",
                 "train_time_s", "threads", "world_size", "command")
STUDENT_KEYS = ("lambda", "steps", "batch_size", "teachers", "train_time_s", "command")
SETTING_FIELDS = {"lambda": "lam", "loss": "loss", "steps": "steps", "batch_size": "batch_size",
                  "lr": "lr", "lr_schedule": "lr_schedule", "weight_decay": "weight_decay",
                  "seed": "seed", "hflip": "hflip", "threads": "threads", "world_size": "world"}


def training_entries(payload: Dict[str, Any], keys) -> Dict[str, Any]:
    """Return the card entries ``keys`` of a checkpoint (or of a student's stored meta)."""
    meta = payload.get("meta", {})
    config = stored_config(payload)
    return {k: config.get(SETTING_FIELDS[k]) if k in SETTING_FIELDS else meta.get(k)
            for k in keys}


def build_card(checkpoint: Path, evaluation: Dict[str, Any]) -> Dict[str, Any]:
    """Card dict from a checkpoint's metadata and an evaluate-step result."""
    payload = read_checkpoint(checkpoint)
    meta = payload.get("meta", {})
    model = build_model(payload["kind"], payload["arch"])
    size = stored_input_size(checkpoint, payload)
    students = {k: training_entries({"meta": v.get("meta", {})}, STUDENT_KEYS)
                for k, v in meta.get("students", {}).items()}
    return {
        "file": checkpoint.name,
        "kind": payload["kind"], "arch": payload["arch"].get("name"),
        "resolution": plain_size(size),  # R (an int) as before when square, else "HxW"
        "parameters": count_parameters(model),
        "created": payload.get("created"), "code_version": payload.get("code_version"),
        "training": training_entries(payload, TRAINING_KEYS),
        "students": students,
        "validation_during_training": meta.get("validation"),
        "evaluation": evaluation,
    }


def card_markdown(card: Dict[str, Any]) -> str:
    """Human-readable card."""
    t = card["training"]
    lines = [f"# {card['file']}", "",
             f"{card['kind']} model, architecture `{card['arch']}`, {_size_text(card)}, "
             f"{card['parameters']:,} parameters; created {card['created']} "
             f"({card['code_version']}).", "",
             "## Training", "",
             f"- step: {t.get('step')} (init: {t.get('init')}), lambda {t.get('lambda')}, "
             f"loss {t.get('loss')}, {t.get('steps')} steps x batch {t.get('batch_size')}, "
             f"Adam lr {t.get('lr')} ({t.get('lr_schedule')}), weight decay "
             f"{t.get('weight_decay')}, seed {t.get('seed')}",
             f"- teachers: {t.get('teachers')}",
             f"- training time: {t.get('train_time_s')} s on {t.get('threads')} thread(s)",
             f"- data: {_data_line(t.get('data'))}",
             f"- command: `{t.get('command')}`"]
    for kind, s in card["students"].items():
        lines.append(f"- {kind} student: lambda {s.get('lambda')}, {s.get('steps')} steps x "
                     f"batch {s.get('batch_size')}, {s.get('train_time_s')} s, "
                     f"command `{s.get('command')}`")
    note = research_use_note(t.get("teachers"))
    if note:
        lines += ["", "## Terms", "", note, "",
                  "The same terms cover every export of these weights (the `.onnx` beside this "
                  "file, written by `python -m training export`, records this checkpoint's "
                  "SHA-256 in its metadata)."]
    ev = card["evaluation"]
    sources = ev.get("meta", {}).get("sources") or {Path(ev["meta"]["video"]).stem: {}}
    lines += ["", f"## Validation ({', '.join(sources)}, held out from training)", ""]
    lines.append(markdown_table(ev["models"], f"{', '.join(sources)}: "
                                f"{_n(ev)} frames with fixations").rstrip())
    lines += ["", f"Metrics: {', '.join(c for _, c in TABLE_COLUMNS)} as in "
              "skd_saliency_ros.core.metrics (MIT conventions); see docs/RESULTS.md."]
    return "\n".join(lines) + "\n"


def _size_text(card: Dict[str, Any]) -> str:
    """``R = 64`` for a square model (the cards' old wording), ``input 48x80 (H x W)`` else."""
    return parse_input_size(card["resolution"], f"{card['file']}: card resolution").described


def _n(ev: Dict[str, Any]) -> Optional[int]:
    return next(iter(ev["models"].values())).get("n_frames")


# Teachers whose weights carry terms that a distilled student inherits.
RESEARCH_USE_TEACHERS = ("tinyhd",)


def research_use_note(teachers: Any) -> str:
    """Return the licence note a model distilled from research-use teacher weights carries."""
    if not any(key in json.dumps(teachers or {}).lower() for key in RESEARCH_USE_TEACHERS):
        return ""
    return ("Distilled from TinyHD (Hu et al., WACV 2023; weights from the authors' "
            "repository, which states no licence): **research use only**, as its teacher. "
            "Cite the TinyHD paper and the SKD paper (Li et al., IEEE TIP 2020) when you use "
            "it. The training frames (UAV123, DTB70, UAVDT) are under academic research terms "
            "too.")


def _data_line(data: Optional[Dict[str, Any]]) -> str:
    if not data:
        return "?"
    train = ", ".join(f"{d['name']} ({d['used']})" for d in data.get("train", []))
    val = data.get("val") or {}
    names = ", ".join(v.get("name", "?") for v in val) if isinstance(val, list) \
        else val.get("name")
    manifest = data.get("manifest") or {}
    where = f" (manifest {manifest.get('name')}, sha1 {manifest.get('sha1', '?')[:12]})" \
        if manifest else ""
    return f"train on {train}; validate on {names}{where}"


def main(argv: Optional[List[str]] = None) -> int:
    """CLI entry point."""
    parser = argparse.ArgumentParser(prog="python -m training.card", description=__doc__)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("evaluation", type=Path, help="JSON written by the evaluate step")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    outs = [args.checkpoint.with_suffix(".json"), args.checkpoint.with_suffix(".md")]
    try:
        check_outputs([Output("card", path) for path in outs],
                      inputs=[("checkpoint", args.checkpoint), ("evaluation", args.evaluation)],
                      overwrite=args.overwrite)
    except OutputPathError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        evaluation = json.loads(args.evaluation.read_text())
        card = build_card(args.checkpoint, evaluation)
    except (OSError, ValueError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    outs[0].write_text(json.dumps(card, indent=1) + "\n")
    outs[1].write_text(card_markdown(card))
    for path in outs:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
