"""Distillation losses: the SKD paper's normalised L2, and distribution losses.

Two families, one per output transform of the model (``OUTPUT_OF_LOSS``):

* ``l2`` (the paper's, kept paper-faithful): normalised L2 on the linear output, below.
  It rewards a blurred average of the targets: on footage outside the training clips the
  student paints a broad centre blob where the teacher has one compact peak.
* ``kld`` (what TinyHD, UNISAL, ViNet and TMFI train with): the model's raw output ``z`` is
  the logit map of a spatial softmax ``p = softmax(z)`` over the R x R pixels, the target is
  turned into a distribution ``q = t / sum(t)``, and the loss is ``KL(q || p)``, optionally
  ``- cc_weight * CC(p, q) - nss_weight * NSS(p; q)``.  The NSS term is NSS against a
  density: ``sum_i q_i (p_i - mean p) / std p``, which for a fixation map (q uniform on the
  fixated pixels) is the usual NSS.  Computed from logits (``log_softmax``), so no
  probability underflows to a log of zero.

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

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

LOSSES = ("l2", "kld")
OUTPUT_OF_LOSS = {"l2": "linear", "kld": "softmax"}  # the model's output transform (models.py)


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


def _distribution(target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B, 1, R, R) non-negative maps -> (B, R*R) distributions (a zero map stays zero)."""
    flat = target.flatten(1).clamp_min(0)
    return flat / flat.sum(dim=1, keepdim=True).clamp_min(eps)


def _standardise(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per row: zero mean, unit standard deviation."""
    centred = x - x.mean(dim=1, keepdim=True)
    return centred / centred.pow(2).mean(dim=1, keepdim=True).sqrt().clamp_min(eps)


@dataclass(frozen=True)
class DistributionLoss:
    """Per-frame ``KL(q || softmax(z)) - cc_weight * CC - nss_weight * NSS`` (module doc)."""

    cc_weight: float = 0.0
    nss_weight: float = 0.0

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of each frame -> (B,); ``logits`` are the model's raw (pre-softmax) maps."""
        if logits.shape != target.shape:
            raise ValueError(f"prediction {tuple(logits.shape)} and target "
                             f"{tuple(target.shape)} differ in shape")
        log_p = F.log_softmax(logits.flatten(1).float(), dim=1)
        q = _distribution(target.float())
        loss = (torch.xlogy(q, q) - q * log_p).sum(dim=1)
        if self.cc_weight or self.nss_weight:
            p = log_p.exp()
            sp = _standardise(p)
            if self.cc_weight:
                loss = loss - self.cc_weight * (sp * _standardise(q)).mean(dim=1)
            if self.nss_weight:
                loss = loss - self.nss_weight * (sp * q).sum(dim=1)
        return loss


def make_criterion(loss: str, cc_weight: float = 0.0, nss_weight: float = 0.0
                   ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Return the per-frame loss named ``loss`` (``LOSSES``); weights only with ``kld``."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss '{loss}'; one of {', '.join(LOSSES)}")
    for name, weight in (("cc", cc_weight), ("nss", nss_weight)):
        if not (weight >= 0 and weight == weight and weight != float("inf")):
            raise ValueError(f"the {name} weight must be a finite number >= 0, got {weight}")
    if loss == "l2":
        if cc_weight or nss_weight:
            raise ValueError("CC and NSS weights combine with --loss kld, not with the paper's "
                             "normalised L2")
        return normalised_l2
    return DistributionLoss(float(cc_weight), float(nss_weight))


def distillation_loss(pred: torch.Tensor, soft: torch.Tensor, hard: torch.Tensor,
                      has_gaze: torch.Tensor, lam: float,
                      criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
                      = normalised_l2) -> torch.Tensor:
    """Batch loss ``lambda*L_soft + (1-lambda)*L_hard``; frames without gaze: ``L_soft`` only.

    ``criterion`` is the per-frame loss (``make_criterion``; default the paper's normalised
    L2).  Returns a scalar.  With ``lam == 0`` only frames with gaze count (hard loss only);
    if the batch has none of those the result is a zero that still carries a gradient.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must lie in [0, 1], got {lam}")
    gaze = has_gaze.to(pred.dtype).view(-1)
    hard_term = criterion(pred, hard)
    if lam == 0:
        # Hard loss only: frames without gaze have no target at all and carry no weight.
        w_soft = torch.zeros_like(gaze)
        soft_term = torch.zeros_like(gaze)
    else:
        # With gaze: (lam, 1 - lam); without gaze: (1, 0).
        w_soft = gaze * lam + (1.0 - gaze)
        soft_term = criterion(pred, soft)
    w_hard = gaze * (1.0 - lam)
    weight = w_soft + w_hard
    total = weight.sum()
    if total.item() == 0:
        return (pred * 0.0).sum()
    return (w_soft * soft_term + w_hard * hard_term).sum() / total
