"""Does the encoder see the muscles? A linear probe of the image stream's features.

    python benchmarks/encoder_probe.py MODEL.pt [MODEL2.pt ...] --train .data/train/s1 ... --val .data/val/s500 .data/val/s501

Freezes the network and fits a new image-only head (1 x 1 convolutions of the image stream's skips 1, 3
and 5, :mod:`ifssnet.model.image_head`) for ``--steps`` steps of 4 windows from the training cases, then
prints its Dice on random windows of the validation cases (windows of w slices where the segment is
present, no augmentation, seeded). Features that locate each muscle give a high Dice. A network that
only carries its mask input forward never needed such features, and its probe scores low.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _windows(cases, rng, n, names, window):
    """n random windows: image and mask (n, w, S, S) float32 tensors and the head channels (n,)."""
    import torch

    from ifssnet.dataset import sample_run

    imgs, msks, segs = [], [], []
    while len(imgs) < n:
        r = sample_run(cases[int(rng.integers(len(cases)))], rng, window, window, augment=False, end_fraction=0.0)
        if r is not None and r.segment in names:
            imgs.append(r.image), msks.append(r.mask), segs.append(names.index(r.segment))
    return torch.from_numpy(np.stack(imgs)), torch.from_numpy(np.stack(msks)), torch.tensor(segs)


def fit_probe(model, cases, steps: int, seed: int = 0, lr: float = 1e-2, batch: int = 4):
    """A copy of ``model`` with a new image-only head for the cases' segments, fitted on frozen features."""
    import torch

    from ifssnet.extra_losses import image_head_loss
    from ifssnet.model.image_head import fresh_image_head

    net = fresh_image_head(model, sorted({n for c in cases for n in c.masks}), seed).eval()  # eval: no dropout
    for p in net.parameters():
        p.requires_grad_(False)
    head = list(net.image_head.parameters())
    for p in head:
        p.requires_grad_(True)
    opt = torch.optim.Adam(head, lr=lr)
    rng = np.random.default_rng(seed)
    w = net.config.window
    for _ in range(steps):
        img, msk, seg = _windows(cases, rng, batch, net.config.image_head, w)
        with torch.no_grad():
            feats = net.encode_image(img[:, None])
        loss = image_head_loss(net, feats, seg, msk, torch.ones(msk.shape[:2], dtype=torch.bool))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def probe_dice(net, cases, windows: int = 40, seed: int = 1) -> float:
    """Mean Dice of the image-only head on ``windows`` random windows of ``cases``."""
    import torch

    rng = np.random.default_rng(seed)
    img, msk, seg = _windows(cases, rng, windows, net.config.image_head, net.config.window)
    with torch.inference_mode():
        pred = net.segment_logits(net.encode_image(img[:, None]), seg) > 0
    ref = msk > 0.5
    inter = (pred & ref).flatten(1).sum(1).float()
    den = (pred.flatten(1).sum(1) + ref.flatten(1).sum(1)).float().clamp_min(1)
    return float((2 * inter / den).mean())


def main(argv=None) -> int:
    import torch

    from ifssnet.dataset import load_case
    from ifssnet.model.checkpoint import load_checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--train", nargs="+", type=Path, required=True, help="phantom dirs to fit the probe on")
    p.add_argument("--val", nargs="+", type=Path, required=True, help="phantom dirs to score it on (held out)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(a.seed)
    size = load_checkpoint(a.models[0])[1].size
    load = lambda c: load_case(c / "volume.nrrd", c / "reference.seg.nrrd", size)  # noqa: E731
    train_cases, val_cases = [load(c) for c in a.train], [load(c) for c in a.val]
    for path in a.models:
        net = fit_probe(load_checkpoint(path)[0], train_cases, a.steps, a.seed)
        print(f"{path}: linear probe of the image stream, Dice {probe_dice(net, val_cases):.3f} "
              f"({a.steps} steps on {len(train_cases)} cases, {len(val_cases)} held-out cases)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
