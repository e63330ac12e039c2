"""Reference metric values from pysaliency, for test/test_metrics.py to compare ours against.

Runs in its own venv (``make venv-pysaliency``; ``.venv-pysaliency/bin/python``) because
pysaliency pins an older setuptools and numpy than the main venv.  Usage::

    .venv-pysaliency/bin/python tools/pysaliency_reference.py IN.npz OUT.json

``IN.npz`` holds K frames at the evaluation size (H, W):

* ``stimuli`` uint8 (K, H, W, 3): the video frames (pysaliency finds a frame's maps by the
  hash of its stimulus, so the frames must differ);
* ``saliency`` float (K, H, W): the predictions, already resized and min-max normalised;
* ``density`` float (K, H, W): the fixation density maps;
* ``fix_x``, ``fix_y``, ``fix_n``: fixation coordinates (pysaliency truncates them to pixels)
  and the frame each belongs to;
* ``neg_x``, ``neg_y``, ``neg_n``: the same for the sAUC negatives (other frames' fixations).

``OUT.json`` holds one list of K per-frame values per metric, computed with pysaliency's own
model API where it has one (NSS, AUC, sAUC, CC, SIM) and ``pysaliency.metrics.MIT_KLDiv``
for KLD (the MIT benchmark's regularisation).  Which pysaliency call matches which of our
conventions is documented in docs/METRICS.md.
"""

import json
import sys
import warnings
from importlib.metadata import version

import numpy as np

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
import pysaliency  # noqa: E402  (after the filter: it imports pkg_resources)
from pysaliency.datasets import get_image_hash  # noqa: E402
from pysaliency.metrics import MIT_KLDiv  # noqa: E402
from pysaliency.saliency_map_models import RandomNoiseSaliencyMapModel  # noqa: E402


class ArrayModel(pysaliency.SaliencyMapModel):
    """Precomputed saliency maps, looked up by stimulus hash like SaliencyMapModelFromFile."""

    def __init__(self, stimuli, maps):
        super().__init__(caching=False)
        self.ids = list(stimuli.stimulus_ids)
        if len(set(self.ids)) != len(self.ids):
            raise SystemExit("stimuli are not all different: pysaliency cannot tell them apart")
        self.maps = [np.asarray(m, dtype=np.float64) for m in maps]

    def _saliency_map(self, stimulus):
        return self.maps[self.ids.index(get_image_hash(stimulus))].copy()


def per_image(values, n, count):
    """Average per-fixation values over the fixations of each image."""
    return [float(np.mean(values[n == k])) for k in range(count)]


def main(in_path, out_path):
    """Compute every metric per frame and write them as JSON."""
    data = np.load(in_path)
    k = len(data["saliency"])
    stimuli = pysaliency.Stimuli([np.ascontiguousarray(s) for s in data["stimuli"]])
    model = ArrayModel(stimuli, data["saliency"])
    density = ArrayModel(stimuli, data["density"])
    density_minmax = ArrayModel(stimuli, [(d - d.min()) / (d.max() - d.min())
                                          for d in data["density"]])
    fix = pysaliency.Fixations.create_without_history(
        data["fix_x"].astype(float), data["fix_y"].astype(float), data["fix_n"].astype(int))
    neg = pysaliency.Fixations.create_without_history(
        data["neg_x"].astype(float), data["neg_y"].astype(float), data["neg_n"].astype(int))

    out = {
        "pysaliency_version": version("pysaliency"),
        "nss": per_image(model.NSSs(stimuli, fix), fix.n, k),
        # AUC-Judd without jitter: thresholds at fixated values, negatives = unfixated pixels.
        "auc_judd": [float(v) for v in model.AUC_per_image(
            stimuli, fix, nonfixations="unfixated", thresholds="fixations")],
        # pysaliency's AUC_Judd as shipped adds 1e-7 Gaussian jitter (seed 42) first, which
        # breaks ties at random instead of counting them; per frame, as AUC_Judd computes it.
        "auc_judd_jitter": [float(v) for v in RandomNoiseSaliencyMapModel(
            model, noise_size=1e-7, random_seed=42).AUC_per_image(
            stimuli, fix, nonfixations="unfixated", thresholds="fixations")],
        "auc_shuffled": [float(v) for v in model.AUC_per_image(
            stimuli, fix, nonfixations=neg, thresholds="all")],
        "cc": [float(v) for v in model.CCs(stimuli, density)],
        "sim": [float(v) for v in model.SIMs(stimuli, density_minmax)],
        "kld": [float(MIT_KLDiv(s, d)) for s, d in zip(data["saliency"], data["density"])],
    }
    with open(out_path, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
