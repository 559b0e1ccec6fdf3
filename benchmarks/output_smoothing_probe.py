"""Score IFSS-Net's output masks after a Gaussian smoothing of the blended probabilities, without touching
propagation itself.

    python benchmarks/output_smoothing_probe.py SIGMA_K SIGMA_XY .data/val/s50{2,3,4,5} --protocol 3-seeds --csv OUT.csv

SIGMA_K: the Gaussian's standard deviation along the sweep, in kept frames; SIGMA_XY: in-plane, in working-grid
pixels (0 leaves an axis alone). Everything after them is `ifssnet compare-set`'s arguments (the method is
forced to ifssnet). Only the output changes: the probabilities (K', S, S) that go back to the volume's grid
(`ifssnet.propagate.masks_from_probabilities`) are smoothed first (`scipy.ndimage.gaussian_filter`, edges
reflected); the fed-back masks, the stop at a muscle's end and the confidence sidecar are as in a normal run,
and painted slices still come out as painted. A probe for choosing whether to smooth, on validation phantoms;
not a propagation option.
"""
from __future__ import annotations

import sys

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

import ifssnet.propagate as propagate
from ifssnet.cli import main


def smoothed(sigma_k: float, sigma_xy: float):
    """``masks_from_probabilities`` that smooths each segment's (K', S, S) probabilities first."""
    inner = propagate.masks_from_probabilities
    sigma = (sigma_k, sigma_xy, sigma_xy)

    def masks(probs, *args, **kwargs):
        for name, p in list(probs.items()):  # float tensors (K', S, S), as masks_from_probabilities takes them
            probs[name] = torch.from_numpy(gaussian_filter(p.numpy().astype(np.float32), sigma=sigma, mode="reflect"))
        return inner(probs, *args, **kwargs)
    return masks


USAGE = "usage: output_smoothing_probe.py SIGMA_K SIGMA_XY CASE [CASE ...] [compare-set options]"

if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        sys.exit(print(f"{USAGE}\n\n{__doc__}"))
    try:
        sk, sxy = float(sys.argv[1]), float(sys.argv[2])
    except (IndexError, ValueError):
        print(f"{USAGE}\noutput_smoothing_probe.py: error: the first two arguments are the sigmas, e.g. 1 0.5",
              file=sys.stderr)
        sys.exit(2)
    if sk < 0 or sxy < 0:
        sys.exit("the sigmas must be >= 0, e.g. 1 0.5")
    propagate.masks_from_probabilities = smoothed(sk, sxy)
    sys.exit(main(["compare-set", *sys.argv[3:], "--methods", "ifssnet"]))
