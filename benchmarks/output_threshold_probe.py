"""Score IFSS-Net's output masks thresholded at T instead of 0.5, without touching propagation itself.

    python benchmarks/output_threshold_probe.py 0.4 .data/val/s50{2,3,4,5} --model M --protocol 3-seeds --csv OUT.csv

Everything after T is `ifssnet compare-set`'s arguments (the method is forced to ifssnet). Only the output
threshold changes: the fed-back masks (probabilities), the stop at a muscle's end (area above 0.5) and the
sidecar are as in a normal run. It works by scaling the working-grid probabilities by 0.5 / T just before
they go back to the volume's grid (`ifssnet.propagate.masks_from_probabilities`): the bilinear resampling
is linear, so resample(p) > T exactly where resample(p 0.5 / T) > 0.5, and the scaling keeps which of
two segments is the more probable, so `--joint`'s rule is unchanged. A probe for choosing a threshold on
validation phantoms (model card, "Burn-in with the leak loss"); not a propagation option.
"""
from __future__ import annotations

import sys

import ifssnet.propagate as propagate
from ifssnet.cli import main


def scaled(threshold: float):
    """``masks_from_probabilities`` that thresholds at ``threshold`` (in (0, 1))."""
    inner = propagate.masks_from_probabilities

    def masks(probs, *args, **kwargs):
        for p in probs.values():          # in place: the caller's dict is emptied by ``inner`` as before
            p.mul_(0.5 / threshold)
        return inner(probs, *args, **kwargs)
    return masks


USAGE = "usage: output_threshold_probe.py T CASE [CASE ...] [compare-set options]"

if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        sys.exit(print(f"{USAGE}\n\n{__doc__}"))
    try:
        t = float(sys.argv[1])
    except (IndexError, ValueError):
        print(f"{USAGE}\noutput_threshold_probe.py: error: the first argument is the threshold T, e.g. 0.4",
              file=sys.stderr)
        sys.exit(2)
    if not 0.0 < t < 1.0:
        sys.exit("the threshold must lie in (0, 1), e.g. 0.4")
    propagate.masks_from_probabilities = scaled(t)
    sys.exit(main(["compare-set", *sys.argv[2:], "--methods", "ifssnet"]))
