"""Distribution losses and the output transform they train (issue 18).

The KLD loss is checked against its closed-form gradient (softmax(z) - q), the CC and NSS
terms against direct numpy formulas; the spatial-softmax output transform is checked
through every inference path (model, fused model, engine on torch and onnxruntime), and a
checkpoint written before the transform existed still loads as linear.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from skd_saliency_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from skd_saliency_ros.core.models import (ArchitectureError, build_model, fuse_for_inference,
                                          get_spec, with_output)
from training.losses import DistributionLoss, make_criterion, normalised_l2


def _target(batch=3, size=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, size, size, generator=gen) ** 4


def test_kld_is_zero_at_the_target_and_its_gradient_is_softmax_minus_q():
    """KL(q || softmax(z)): 0 when z = log q; dL/dz = softmax(z) - q exactly."""
    target = _target()
    q = target.flatten(1) / target.flatten(1).sum(1, keepdim=True)
    kld = DistributionLoss()
    assert torch.allclose(kld(q.log().view_as(target), target), torch.zeros(3), atol=1e-5)
    logits = torch.randn(3, 1, 16, 16, requires_grad=True)
    loss = kld(logits, target)
    p = torch.softmax(logits.detach().flatten(1), 1)
    want = (q * (q.log() - p.log())).sum(1)
    assert torch.allclose(loss, want, atol=1e-5) and bool((loss > 0).all())
    loss.sum().backward()
    assert torch.allclose(logits.grad.flatten(1), p - q, atol=1e-6)


def test_kld_survives_logits_that_underflow_a_probability():
    """Logits 200 apart: exp underflows, the loss and its gradient stay finite."""
    logits = torch.zeros(1, 1, 8, 8)
    logits[0, 0, 0, 0] = 200.0
    logits.requires_grad_(True)
    loss = DistributionLoss(cc_weight=1.0, nss_weight=1.0)(logits, _target(1, 8))
    loss.sum().backward()
    assert torch.isfinite(loss).all() and torch.isfinite(logits.grad).all()


def test_cc_and_nss_terms_match_their_formulas():
    """- cc_weight * CC(p, q) - nss_weight * sum q (p - mean) / std, per frame."""
    target, logits = _target(2, 12, seed=1), torch.randn(2, 1, 12, 12)
    base = DistributionLoss()(logits, target)
    p = torch.softmax(logits.flatten(1), 1).numpy()
    q = (target.flatten(1) / target.flatten(1).sum(1, keepdim=True)).numpy()
    cc = np.array([np.corrcoef(a, b)[0, 1] for a, b in zip(p, q)])
    nss = np.array([(b * (a - a.mean()) / a.std()).sum() for a, b in zip(p, q)])
    got = DistributionLoss(cc_weight=0.5, nss_weight=0.25)(logits, target)
    np.testing.assert_allclose(got.numpy(), (base.numpy() - 0.5 * cc - 0.25 * nss), atol=1e-5)
    # NSS against a fixation map (q uniform on the fixated pixels) is the usual NSS
    fix = torch.zeros(1, 1, 12, 12)
    fix[0, 0, 3, 4] = fix[0, 0, 7, 9] = 1.0
    only_nss = DistributionLoss(nss_weight=1.0)(logits[:1], fix) - \
        DistributionLoss()(logits[:1], fix)
    a = p[0]
    usual = np.mean([(a[3 * 12 + 4] - a.mean()) / a.std(), (a[7 * 12 + 9] - a.mean()) / a.std()])
    assert float(-only_nss) == pytest.approx(usual, abs=1e-4)


def test_make_criterion_refuses_what_does_not_combine():
    """Weights go with kld only; a negative or NaN weight and an unknown loss are refused."""
    assert make_criterion("l2") is normalised_l2
    assert make_criterion("kld", 1.0) == DistributionLoss(1.0, 0.0)
    for args, message in ((("l2", 1.0), "combine with --loss kld"),
                          (("kld", -1.0), "finite number >= 0"),
                          (("kld", 0.0, float("nan")), "finite number >= 0"),
                          (("ssim",), "unknown loss")):
        with pytest.raises(ValueError, match=message):
            make_criterion(*args)


@pytest.mark.parametrize("arch", ["skd-paper", "skd-paper-upconv", "skd-fast"])
def test_softmax_output_through_every_inference_path(arch, tmp_path, monkeypatch):
    """exp(z - max z) ends forward, the fused copy and both engine backends alike."""
    from skd_saliency_ros.core.engine import SaliencyEngine

    monkeypatch.setenv("SKD_ONNX_CACHE", str(tmp_path / "onnx_cache"))
    torch.manual_seed(0)
    model = build_model("fused", with_output(arch, "softmax"))
    for mod in model.modules():  # a trained-looking net: non-trivial BN statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.rand(2, 6, 64, 64)
    with torch.no_grad():
        out, raw = model(x), model(x, raw=True)
        fused = fuse_for_inference(model, 64)(x)
    want = torch.exp(raw - raw.amax(dim=(-2, -1), keepdim=True))
    assert torch.allclose(out, want, atol=1e-6)
    assert torch.allclose(out.amax(dim=(-2, -1)), torch.ones(2, 1))
    assert torch.allclose(fused, out, atol=1e-5)
    path = save_checkpoint(tmp_path / "m.pt", model, 64)
    for backend in ("torch", "onnxruntime"):
        engine = SaliencyEngine(path, device="cpu", backend=backend)
        np.testing.assert_allclose(engine.predict(x.numpy()), out[:, 0].numpy(), atol=1e-5)


def test_spec_without_output_loads_as_linear_and_unknown_transforms_are_refused(tmp_path):
    """Checkpoints from before the key load unchanged; a transform this code lacks is named."""
    model = build_model("fused", "skd-paper").eval()
    path = save_checkpoint(tmp_path / "old.pt", model, 64)
    payload = torch.load(path, weights_only=True)
    del payload["arch"]["output"]
    torch.save(payload, path)
    loaded, _ = load_checkpoint(path, arch="skd-paper")
    assert loaded.spec["output"] == "linear"
    x = torch.rand(1, 6, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), loaded(x, raw=True))
    payload["arch"]["output"] = "sigmoid"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"old\.pt: unknown output transform 'sigmoid'"):
        load_checkpoint(path)
    with pytest.raises(ArchitectureError, match="unknown output transform"):
        get_spec(dict(get_spec("skd-paper"), output="tanh"))
