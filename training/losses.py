"""The distillation loss of the SKD paper: a normalised L2 loss, soft and hard terms mixed.

What "normalised" means here, exactly:

* the *target* maps are normalised per frame to a maximum of 1 (teacher maps and human
  density maps both arrive that way from ``training.datasets``; this module re-checks by
  dividing by the per-frame maximum, so a map with max 0.3 is treated like one with max 1,
  and an all-zero map stays zero);
* the *prediction* is the model's raw output and is **not** normalised (it learns the
  [0, 1] scale, which is what the runtime's min-max normalisation then relies on);
* the squared error is *averaged over the R x R pixels* (divided by W*H), so the loss has the
  same scale at R = 32 and at R = 256, as the paper's "averaged over the low-resolution
  pixels" says.

Per frame: ``L = lambda * L_soft + (1 - lambda) * L_hard`` when the frame has human gaze,
and ``L = L_soft`` when it has none (there is no hard target to compare with).  The batch loss
is the mean over frames.  ``lambda = 0`` is the paper's step 2 (hard loss only); frames without
gaze then carry zero weight and the loss is averaged over the frames that have gaze.
"""

from __future__ import annotations

import torch


def normalise_target(target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each (B, 1, R, R) target map to a maximum of 1 (zero maps stay zero)."""
    peak = target.flatten(1).amax(dim=1).clamp_min(eps).view(-1, 1, 1, 1)
    return target / peak


def normalised_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-frame normalised L2: mean over pixels of (pred - max-normalised target)^2 -> (B,)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} "
                         "differ in shape")
    return (pred - normalise_target(target)).pow(2).flatten(1).mean(dim=1)


def distillation_loss(pred: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor,
                      has_gaze: torch.Tensor, lam: float) -> torch.Tensor:
    """Batch loss ``lambda*L_soft + (1-lambda)*L_hard``; frames without gaze: ``L_soft`` only.

    Returns a scalar.  With ``lam == 0`` only frames with gaze count (hard loss only); if
    the batch has none of those the result is a zero that still carries a gradient.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must lie in [0, 1], got {lam}")
    gaze = has_gaze.to(pred.dtype).view(-1)
    hard_term = normalised_l2(pred, hard)
    if lam == 0:
        # Hard loss only: frames without gaze have no target at all and carry no weight.
        w_soft = torch.zeros_like(gaze)
        soft_term = torch.zeros_like(gaze)
    else:
        # With gaze: (lam, 1 - lam); without gaze: (1, 0).
        w_soft = gaze * lam + (1.0 - gaze)
        soft_term = normalised_l2(pred, soft)
    w_hard = gaze * (1.0 - lam)
    weight = w_soft + w_hard
    total = weight.sum()
    if total.item() == 0:
        return (pred * 0.0).sum()
    return (w_soft * soft_term + w_hard * hard_term).sum() / total
