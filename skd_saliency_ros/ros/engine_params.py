"""The saliency engine the node's parameters describe: one builder for the node and replay.

The node and offline replay both turn the same five parameters into a ``SaliencyEngine``;
``engine_from`` is that mapping, written once (empty model_path = the shipped default model,
threads 0 = the library's default).  core/engine.py imports torch, so it is imported here
only when an engine is built: importing this module (or params.py) stays light.
"""

from __future__ import annotations

from typing import Any, Mapping, Tuple

#: the node parameters an engine is built from
ENGINE_PARAMS: Tuple[str, ...] = ("model_path", "device", "backend", "threads", "max_gap_s")


def engine_from(values: Mapping[str, Any], logger=None):
    """Build the SaliencyEngine of the node parameter ``values`` (at least ENGINE_PARAMS).

    Load failures propagate as the engine raises them: the node turns them into one
    StartupError line, the replay CLI reports them as a user error.
    """
    from skd_saliency_ros.core.engine import SaliencyEngine
    return SaliencyEngine(model_path=values["model_path"] or None, device=values["device"],
                          backend=values["backend"], max_gap_s=values["max_gap_s"],
                          threads=int(values["threads"]) or None, logger=logger)
