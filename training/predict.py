"""Run a saliency model over a prepared frame sequence, the way the runtime engine does.

Shared by validation during training and by the evaluate step, so both score exactly the
same maps: frame t is paired with frame t-1 (the first frame with itself), the raw output is
min-max normalised per frame and clipped to [0, 1] (the runtime convention: the same
functions as the engine, skd_saliency_ros.core.maps).
"""

from __future__ import annotations

from typing import Iterable, Iterator, Sequence, Tuple

import numpy as np
import torch

from skd_saliency_ros.core.maps import fill_pair, normalise_maps


def pair_batch(frames: np.ndarray, indices: Sequence[int], gap: int = 1) -> torch.Tensor:
    """(B, 6, H, W) float input in [0, 1]: channels 0-2 frame t, 3-5 frame t-gap.

    ``gap`` 1 is what the node does (the previous frame); 0 pairs each frame with itself
    (no motion at all), larger gaps imitate a slower camera.  Used to measure how much the
    model cares about the time between the two frames (docs/RESULTS.md).  Frame 0 (and any
    t < gap) is paired with itself, like the engine after a reset.
    """
    if gap < 0:
        raise ValueError(f"pair gap must be >= 0 frames, got {gap}")
    indices = list(indices)
    out = np.empty((len(indices), 6, frames.shape[1], frames.shape[2]), np.float32)
    for i, k in enumerate(indices):
        fill_pair(out[i], frames[k], frames[k - gap] if k >= gap else frames[k])
    return torch.from_numpy(out)


@torch.no_grad()
def predict_maps(model: torch.nn.Module, frames: np.ndarray, indices: Iterable[int],
                 batch_size: int = 64, device: str = "cpu", gap: int = 1
                 ) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(frame_index, map)`` for ``indices`` of ``frames`` (N, H, W, 3) uint8.

    Frames are at the model's input size (R x R or H x W); maps are (H, W) float32 in
    [0, 1].  The model is put in eval mode and left there.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (N, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    model.eval()
    indices = list(indices)
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        out = model(pair_batch(frames, chunk, gap).to(device))[:, 0].float().cpu().numpy()
        for index, saliency in zip(chunk, normalise_maps(out)):
            yield index, saliency
