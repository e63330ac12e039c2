"""Save and load model checkpoints with the metadata that makes them reproducible.

A checkpoint is a ``torch.save`` dict of plain types only, so it loads with
``torch.load(weights_only=True)`` (no pickled code runs on load).  It carries the exact
architecture spec, model kind, training input size (core.input_size) and a free-form ``meta`` dict
(teachers, lambda, data summary, validation metrics, code version ...).  A training run's
whole config sits in ``meta["config"]`` (older checkpoints, the shipped default among them,
have only flat keys such as ``lambda``); ``training.recipe.stored_config`` reads either.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from skd_saliency_ros.core.atomic import atomic_path
from skd_saliency_ros.core.errors import SkdError
from skd_saliency_ros import __version__
from skd_saliency_ros.core.models import ArchitectureError, KINDS, build_model, get_spec
from skd_saliency_ros.core.input_size import InputSizeError, parse_input_size, size_of_checkpoint

FORMAT_VERSION = 2  # 2: input_size [H, W] (a non-square input); 1: resolution R only
SQUARE_FORMAT_VERSION = 1  # what a square checkpoint is still written as
# The trained default model ships inside the package: skd_saliency_ros/weights/.
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "weights" / "skd_default_r64.pt"


class CheckpointError(SkdError, RuntimeError):
    """A checkpoint that is missing, unreadable, or does not match what was asked for."""


def code_version() -> str:
    """Package version plus the git commit when run from a checkout."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5, cwd=Path(__file__).resolve().parent)
        if rev.returncode == 0 and rev.stdout.strip():
            return f"{__version__}+g{rev.stdout.strip()}"
    except (OSError, subprocess.SubprocessError):
        pass
    return __version__


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, resolution,
                    meta: Optional[Dict[str, Any]] = None, overwrite: bool = False,
                    extra: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``model`` to ``path`` atomically; refuse to replace a file unless ``overwrite``.

    ``resolution``: the input size it was trained at, R or H x W (core.input_size).  A square
    size is stored as before (``resolution: R``, format 1: older code reads it); a
    non-square one as ``input_size: [H, W]`` in format 2, which older code refuses with
    "newer than this code understands" instead of running it at a wrong size.
    ``extra`` holds additional plain-typed state (optimizer, step) for ``--resume``.
    """
    size = parse_input_size(resolution, "checkpoint input size")
    path = Path(path)
    if path.exists() and not overwrite:
        raise CheckpointError(f"{path}: a file already exists there; refusing to overwrite "
                              "it (pass --overwrite to replace it)")
    if getattr(model, "kind", None) not in KINDS:
        raise CheckpointError(f"cannot save a {type(model).__name__}: not a saliency model")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format_version": SQUARE_FORMAT_VERSION if size.square else FORMAT_VERSION,
        "kind": model.kind,
        "arch": model.spec,
        **({"resolution": size.height} if size.square else
           {"input_size": [size.height, size.width]}),
        "state_dict": state,
        "meta": dict(meta or {}),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "code_version": code_version(),
    }
    if extra:
        payload["extra"] = extra
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | os.PathLike) -> Dict[str, Any]:
    """Load the raw checkpoint dict (weights_only) with clear errors."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file (give the .pt "
                              "or .onnx file inside it)")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        # torch.save writes a zip archive; anything else (a text file, an old pickle, an
        # ONNX file renamed .pt) gets a plain message instead of torch's internals.
        raise CheckpointError(f"{path}: not a checkpoint written by this package (torch.save "
                              "zip format); if it is an old or foreign file, re-train or "
                              "re-export it")
    try:
        with warnings.catch_warnings():  # torch's own hints (weights_only=False) are not ours
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            # never pass on torch's advice to load with weights_only=False: that runs code
            detail = "it holds Python objects other than tensors and plain data, which are " \
                     "never loaded (loading them could run code)"
        raise CheckpointError(f"{path}: not a readable checkpoint ({detail})") from exc
    if not isinstance(payload, dict) or "state_dict" not in payload or "kind" not in payload:
        raise CheckpointError(f"{path}: not an skd_saliency_ros checkpoint "
                              "(no 'kind'/'state_dict' entries)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload['format_version']} is newer "
                              f"than this code understands ({FORMAT_VERSION})")
    return payload


def stored_input_size(path: str | os.PathLike, payload: Dict[str, Any]):
    """Return the input size a read checkpoint was trained at.

    A CheckpointError names ``path`` when the size is missing or no net can take it.
    """
    try:
        return size_of_checkpoint(payload)
    except (InputSizeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: the stored input size cannot be used: {exc}") from None


def load_checkpoint(path: str | os.PathLike, kind: Optional[str] = None,
                    arch: Optional[str | Dict[str, Any]] = None,
                    resolution=None):
    """Build the model stored at ``path``; return ``(model, payload)``.

    ``kind``, ``arch`` and ``resolution``, when given, must match the checkpoint, otherwise a
    CheckpointError says what differs.  Weights load strictly: never a silent partial load.
    """
    payload = read_checkpoint(path)
    if kind is not None and payload["kind"] != kind:
        raise CheckpointError(f"{path}: holds a '{payload['kind']}' model, "
                              f"but a '{kind}' model was requested")
    if arch is not None:
        wanted = get_spec(arch)
        try:  # a spec stored before a key existed gets that key's default, as when built
            have = get_spec(payload["arch"])
        except ArchitectureError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        differ = [k for k in sorted(set(wanted) | set(have))
                  if k != "name" and wanted.get(k) != have.get(k)]
        if differ:
            said = ", ".join(f"{k} (stored {have.get(k)}, requested {wanted.get(k)})"
                             if not isinstance(have.get(k), list) else k for k in differ)
            raise CheckpointError(f"{path}: architecture '{have.get('name', '?')}' does not "
                                  f"match the requested '{wanted.get('name', '?')}': "
                                  f"{said} differ")
    trained = stored_input_size(path, payload)
    if resolution is not None and trained != parse_input_size(resolution):
        def said(size):
            return f"R={size.height}" if size.square else f"input {size.label}"
        raise CheckpointError(f"{path}: trained at {said(trained)}, "
                              f"but {said(parse_input_size(resolution))} was requested")
    try:
        model = build_model(payload["kind"], payload["arch"])
    except ArchitectureError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit architecture "
                              f"'{payload['arch'].get('name', '?')}': "
                              f"{str(exc).splitlines()[0]}") from exc
    model.eval()
    return model, payload
