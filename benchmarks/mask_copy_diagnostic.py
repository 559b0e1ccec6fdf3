"""Does the network read the image, or copy its mask input? Runs that cross a muscle's end, on held-out cases.

    python benchmarks/mask_copy_diagnostic.py MODEL.pt [MODEL2.pt ...] --cases .data/val/s500 .data/val/s501

For each model: random runs (40 slices, no augmentation, seeded) that start on 3 annotated slices and run
past the muscle's end, propagated window by window as at inference (the previous window's probabilities are
the next mask input). Prints the reference area and the predicted area (pixels on the working grid) every
3rd slice of the first runs, then the mean predicted area per slice past the muscle's end ("leak") and the
Dice before it. A network that copies its mask input keeps its area constant while the muscle shrinks to
nothing; one that reads the image follows the reference area down to 0.

``--image-probe`` runs the same runs again with the image replaced (its first slice repeated along the run,
the run reversed, all zeros) and prints the same two numbers: a network that reads the image does worse on
a wrong image; one that only carries its mask forward scores the same.

A model trained with ``--image-aux`` has an image-only head: its Dice and leak on the same runs are printed
as well, so a run shows whether the shared encoder finds the muscle in the image at all (the head) and
whether the mask path uses it (the probe).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def run_model(model, runs, show: int = 4):
    import torch

    leak, dice, lines = [], [], []
    with torch.inference_mode():
        for n, r in enumerate(runs):
            img = torch.from_numpy(r.image)[None]
            prev, state, L = torch.from_numpy(r.mask)[None, 0:3], None, r.image.shape[0]
            pred = np.zeros(r.mask.shape, bool)
            for t in range(1, L - 2):
                logits, state = model(img[:, t:t + 3][:, None], prev[:, None], state)
                prev = torch.softmax(logits, 1)[:, 1]
                pred[t + 2] = (prev[0, 2] > 0.5).numpy()
            _score(pred, r.mask, leak, dice)
            if n < show:
                area_ref, area_pred = r.mask.reshape(L, -1).sum(1), pred.reshape(L, -1).sum(1)
                lines.append(" ".join(f"{int(x)}/{int(y)}" for x, y in zip(area_ref[3::3], area_pred[3::3])))
    return _mean(leak), float(np.mean(dice)), lines


def _score(pred, mask, leak: list, dice: list) -> None:
    """Append one run's scores: the mean predicted area (px) on the slices past the muscle's end, if the
    run has any, to ``leak``, and the Dice on the slices before it to ``dice``. ``pred`` bool and ``mask``
    (L, S, S); the first 3 slices (the reference) do not count."""
    L = mask.shape[0]
    empty = ~(mask > 0).reshape(L, -1).any(1)
    empty[:3] = False
    inside = ~empty
    inside[:3] = False
    if empty.any():
        leak.append(float(pred[empty].reshape(int(empty.sum()), -1).sum(1).mean()))
    a, b = pred[inside], mask[inside] > 0
    dice.append(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else float("nan")


def head_scores(model, runs):
    """(leak px/slice past the end, Dice before it) of the image-only head on ``runs``, windows of w slices
    side by side from slice 3 on; None if the model has no head for the runs' segments."""
    import torch

    names = tuple(getattr(model.config, "image_head", ()) or ())
    if not runs or any(r.segment not in names for r in runs):
        return None
    w = model.config.window
    leak, dice = [], []
    with torch.inference_mode():
        for r in runs:
            L = r.image.shape[0]
            n = (L - 3) // w
            img = torch.from_numpy(r.image[3:3 + n * w]).reshape(n, 1, w, *r.image.shape[1:])
            own = torch.full((n,), names.index(r.segment), dtype=torch.long)
            logits = model.segment_logits(model.encode_image(img), own)          # (n, w, S, S)
            pred = np.zeros(r.mask.shape, bool)
            pred[3:3 + n * w] = (logits > 0).reshape(n * w, *r.image.shape[1:]).numpy()
            _score(pred, r.mask, leak, dice)
    return _mean(leak), float(np.mean(dice))


#: Wrong images for ``--image-probe``: (L, S, S) -> (L, S, S).
PROBES = {
    "the first slice's image repeated": lambda im: np.repeat(im[:1], len(im), 0),
    "the run's image reversed": lambda im: im[::-1].copy(),
    "a zero image": np.zeros_like,
}


def main(argv=None) -> int:
    import torch

    from ifssnet.dataset import load_case, sample_run
    from ifssnet.model.checkpoint import load_checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path)
    p.add_argument("--cases", nargs="+", type=Path, required=True, help="phantom dirs (volume.nrrd, reference.seg.nrrd)")
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--length", type=int, default=40)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--image-probe", action="store_true",
                   help="also score each model on the same runs with a wrong image (does it read the image?)")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    size = load_checkpoint(a.models[0])[1].size
    cases = [load_case(c / "volume.nrrd", c / "reference.seg.nrrd", size) for c in a.cases]
    rng = np.random.default_rng(a.seed)
    runs = []
    while len(runs) < a.runs:
        r = sample_run(cases[len(runs) % len(cases)], rng, a.length, 3, augment=False, end_fraction=1.0)
        if r is not None:
            runs.append(r)
    for path in a.models:
        model = load_checkpoint(path)[0].eval()
        leak, dice, lines = run_model(model, runs)
        print(f"{path}: leak past the end {leak:.0f} px/slice, Dice before the end {dice:.3f}")
        for line in lines:
            print("   reference/predicted area every 3rd slice:", line)
        head = head_scores(model, runs)
        if head is not None:
            print(f"   image-only head: leak {head[0]:.0f} px/slice, Dice before the end {head[1]:.3f}")
        if a.image_probe:
            for name, wrong in PROBES.items():
                leak, dice, _ = run_model(model, [dataclasses.replace(r, image=wrong(r.image)) for r in runs], show=0)
                print(f"   with {name}: leak {leak:.0f} px/slice, Dice before the end {dice:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
