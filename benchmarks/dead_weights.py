"""How much of each part of a network is dead: the share of weights below 1e-15 and the median |w|, per part.

Session 8 found that coupled L2 decay under Adam (the former default) drives IFSS-Net's deep path (encoder
layer 5, the fusion, the Bi-ConvLSTM and the decoder's two deepest levels) to 0: the shipped weights hold
681 k of their 750 k weights below 1e-15. A network in that state segments with its shallow levels only.
A benchmark, not a test: it prints, it asserts nothing.

``--gradients`` prints instead, for a NEW network of the shipped configuration (size 128, width 0.5, seed 0),
the mean |gradient| per weight of each part after one backward pass of the training loss (Tversky +
cross-entropy) on one random window pair: how much of the loss reaches each part, against the L2 term's
2 lambda w (lambda 1e-5).

    python benchmarks/dead_weights.py MODEL.pt [MODEL.pt ...]
    python benchmarks/dead_weights.py --gradients
"""
from __future__ import annotations

import argparse
from collections import OrderedDict

import torch

from ifssnet.model.checkpoint import NEGLIGIBLE_WEIGHT, load_checkpoint

#: The parts reported, in the order of the network; a parameter belongs to the first prefix it starts with.
PARTS = ["encoder.layers.0", "encoder.layers.1", "encoder.layers.2", "encoder.layers.3", "encoder.layers.4",
         "fusion", "lstm", "decoder.ups.0", "decoder.refine.0", "decoder.ups.1", "decoder.refine.1",
         "decoder.ups.2", "decoder.refine.2", "decoder.ups.3", "decoder.refine.3", "decoder.ups.4",
         "decoder.refine.4", "decoder.head", "image_head"]


def _by_part(model, value) -> "OrderedDict[str, torch.Tensor]":
    """part -> ``value(p)`` (a 1-D tensor) of the part's conv/linear weights (dim > 1), concatenated; a
    parameter belongs to the first part whose prefix it has; parts with no such weights are left out."""
    groups: "OrderedDict[str, list]" = OrderedDict((q, []) for q in PARTS)
    for name, p in model.named_parameters():
        part = next((q for q in PARTS if name == q or name.startswith(q + ".")), None)
        if part is not None and p.dim() > 1:
            groups[part].append(value(p).flatten())
    return OrderedDict((k, torch.cat(v)) for k, v in groups.items() if v)


def dead_share(model) -> "OrderedDict[str, tuple]":
    """part -> (weights, share below NEGLIGIBLE_WEIGHT, median |w|) over the part's conv/linear weights (dim > 1)."""
    return OrderedDict((part, (a.numel(), float((a < NEGLIGIBLE_WEIGHT).float().mean()), float(a.median())))
                       for part, a in _by_part(model, lambda p: p.detach().abs()).items())


def gradient_share() -> "OrderedDict[str, tuple]":
    """part -> (mean |gradient| per weight, mean |w|) of a new network after one backward pass."""
    from ifssnet.loss import ParametricTversky
    from ifssnet.model import IFSSNet, IFSSNetConfig

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(size=128, width_mult=0.5)).train()
    img = torch.randn(2, 1, 3, 128, 128)
    mask = torch.zeros(2, 1, 3, 128, 128)
    mask[..., 40:80, 30:90] = 1
    prob = torch.softmax(net(img, mask)[0], dim=1)[:, 1]
    ParametricTversky(bce_weight=1.0)(prob, mask[:, 0], torch.ones_like(prob), from_logits=False).backward()
    grads = _by_part(net, lambda p: p.grad.abs())
    weights = _by_part(net, lambda p: p.detach().abs())
    return OrderedDict((k, (float(grads[k].mean()), float(weights[k].mean()))) for k in grads)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*")
    ap.add_argument("--gradients", action="store_true", help="gradient per part of a new network (see above)")
    args = ap.parse_args()
    if args.gradients:
        print("| part | mean abs gradient per weight | mean abs weight | L2 term 2e-5 x w |")
        print("|---|---|---|---|")
        for part, (g, w) in gradient_share().items():
            print(f"| {part} | {g:.1e} | {w:.1e} | {2e-5 * w:.1e} |")
        return
    if not args.models:
        ap.error("give model files, or --gradients")
    tables = [(m, dead_share(load_checkpoint(m)[0])) for m in args.models]
    print("| part | weights | " + " | ".join(f"{m}: share < {NEGLIGIBLE_WEIGHT:g} / median abs" for m, _ in tables) + " |")
    print("|---|---|" + "---|" * len(tables))
    for part in PARTS:
        if part not in tables[0][1]:
            continue
        cells = [f"{t[part][1]:.0%} / {t[part][2]:.1e}" if part in t else "" for _, t in tables]
        print(f"| {part} | {tables[0][1][part][0]} | " + " | ".join(cells) + " |")
    for m, t in tables:
        n = sum(v[0] for v in t.values())
        dead = sum(v[0] * v[1] for v in t.values())
        print(f"{m}: {dead / n:.1%} of {n} weights below {NEGLIGIBLE_WEIGHT:g}")


if __name__ == "__main__":
    main()
