"""Does propagation's per-slice confidence point at the slices it gets wrong?

For each case, paints every muscle by a protocol (``3-seeds`` by default), propagates them together
with the shipped (or a given) network, and scores every slice where the reference or the prediction
has foreground, painted slices left out: the slice's Dice, and the signals that could flag it:

- ``confidence``: what propagation returns (``ifssnet.confidence.slice_confidence``);
- ``boundary term``: its boundary entropy x agreement between runs alone (the confidence divided by
  its distance term where the slice has foreground; before session 11 this was the confidence);
- ``distance term``: ``ifssnet.confidence.distance_confidence`` alone;
- ``overlap``: the share of the slice's predicted area that another muscle's prediction also claims
  (muscles painted apart should not share voxels);
- ``distance``: slices to the nearest painted slice.

It prints, per signal, the AUROC for finding the slices with Dice below ``--bad`` (0.5 is chance,
1 a perfect flag), over all slices and within each muscle (the order Slicer's list of least
confident slices follows), and the mean Dice of the 5 slices per muscle that the signal flags first (what a
clinician would look at) against the mean over all scored slices.

    python benchmarks/confidence_vs_error.py .data/val/s50{0,1,2,3,4,5} [--model M] [--protocol 3-seeds] [--fit]

``--fit`` also fits the distance term's (a, b) (``ifssnet.confidence.DISTANCE_LOGIT``): a logistic
regression of "slice Dice >= --bad" on d / n.
"""
from __future__ import annotations

import argparse

import numpy as np


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    from scipy.stats import rankdata

    pos, n_pos = positive.astype(bool), int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    r = rankdata(score)
    return float((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def slice_rows(case_dir, net, protocol: str):
    """Per (muscle, scored slice): dict of arrays dice, confidence, overlap, distance, muscle."""
    from ifssnet.compare import load_case, protocol_seeds
    from ifssnet.propagate import propagate

    volume, refs, spacing = load_case(case_dir)
    seeds = {n: protocol_seeds(m, protocol) for n, m in refs.items()}
    res = propagate(volume, seeds, net, device="cpu", slice_spacing_mm=spacing[0])
    from ifssnet.confidence import distance_confidence, painted_extent

    rows = {k: [] for k in ("dice", "confidence", "boundary", "distance_term", "overlap", "distance",
                            "rel_distance", "area", "muscle")}
    preds = {n: res.masks[n].astype(bool) for n in refs}
    for n, ref in refs.items():
        ref = ref.astype(bool)
        pred = preds[n]
        others = np.zeros_like(pred)
        for m, p in preds.items():
            if m != n:
                others |= p
        painted = np.asarray(seeds[n].slices)
        pa, ra = pred.sum((1, 2)), ref.sum((1, 2))
        inter = (pred & ref).sum((1, 2))
        shared = (pred & others).sum((1, 2))
        seed_area = ra[painted].mean()
        extent = int(painted_extent(pa > 0, painted)[0].sum())
        dterm = distance_confidence(pa > 0, painted)
        for k in np.flatnonzero((pa > 0) | (ra > 0)):
            if k in painted:
                continue
            rows["dice"].append(2 * inter[k] / (pa[k] + ra[k]))
            rows["confidence"].append(float(res.confidence[n][k]))
            rows["distance_term"].append(float(dterm[k]))
            rows["boundary"].append(rows["confidence"][-1] / dterm[k] if pa[k] else rows["confidence"][-1])
            rows["overlap"].append(shared[k] / pa[k] if pa[k] else 0.0)
            rows["distance"].append(int(np.abs(painted - k).min()))
            rows["rel_distance"].append(rows["distance"][-1] / extent)
            rows["area"].append(pa[k] / seed_area)
            rows["muscle"].append(f"{case_dir}:{n}")
    return {k: np.asarray(v) for k, v in rows.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="+", help="folders with volume.nrrd and reference.seg.nrrd")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped weights)")
    p.add_argument("--protocol", default="3-seeds")
    p.add_argument("--bad", type=float, default=0.5, help="a slice with Dice below this is one to flag")
    p.add_argument("--save", default=None, help="write the per-slice rows to this .npz")
    p.add_argument("--fit", action="store_true", help="fit the distance term's (a, b) on these cases")
    args = p.parse_args(argv)

    from ifssnet.propagate import load_model

    net = load_model(args.model, "cpu")
    parts = [slice_rows(c, net, args.protocol) for c in args.cases]
    rows = {k: np.concatenate([r[k] for r in parts]) for k in parts[0]}
    if args.save:
        np.savez(args.save, **rows)
    report(rows, args.bad)
    if args.fit:
        a, b = fit_distance_logit(rows["rel_distance"], rows["dice"] >= args.bad)
        print(f"distance term fitted: a = {a:.2f}, b = {b:.2f} (ifssnet.confidence.DISTANCE_LOGIT)")
    return 0


def fit_distance_logit(rel_distance: np.ndarray, good: np.ndarray):
    """(a, b) of P(good) = sigmoid(a - b x rel_distance), by maximum likelihood (L-BFGS, tiny L2)."""
    import torch

    x = torch.tensor(rel_distance, dtype=torch.float64)
    y = torch.tensor(good, dtype=torch.float64)
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(w[0] - w[1] * x, y) + 1e-4 * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return float(w[0].detach()), float(w[1].detach())


def report(rows: dict, bad: float) -> None:
    dice = rows["dice"]
    signals = {"1 - confidence": 1 - rows["confidence"], "1 - boundary term": 1 - rows["boundary"],
               "1 - distance term": 1 - rows["distance_term"], "overlap with another muscle": rows["overlap"],
               "slices to the paint": rows["distance"].astype(float)}
    print(f"{len(dice)} scored slices, {int((dice < bad).sum())} with Dice < {bad}; mean slice Dice {dice.mean():.3f}")
    print("signal                       AUROC  within a muscle  Dice of the 5 slices per muscle it flags first")
    for name, s in signals.items():
        flagged, within = [], []
        for m in np.unique(rows["muscle"]):
            idx = np.flatnonzero(rows["muscle"] == m)
            flagged += list(idx[np.argsort(-s[idx], kind="stable")[:5]])
            within.append(auroc(s[idx], dice[idx] < bad))
        print(f"{name:27s}  {auroc(s, dice < bad):.3f}  {np.nanmean(within):15.3f}  {dice[flagged].mean():.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
