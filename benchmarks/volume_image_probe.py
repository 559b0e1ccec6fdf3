"""Does a propagation method read the image? Whole sweeps, any registered method, true image against a static one.

    python benchmarks/volume_image_probe.py .data/val/s500 .data/val/s501 --methods ifssnet,pgnet [--protocol 3-seeds]

For each case, muscle and method: propagate from the protocol's seeds (cut from the reference) on the true
volume, then again on a *static* volume in which every slice is the image of the middle seed slice. The
seeds, and the image on the seed slices, are the same in both runs, so a method that carries its mask
forward without looking scores the same on both; one that follows the muscle through the image scores
lower on the static volume (its muscle no longer moves). Prints Dice and volume error per run and the
mean drop in Dice, "true - static", per method. :mod:`benchmarks.mask_copy_diagnostic` asks the same of
IFSS-Net checkpoints on short runs; this script asks it of every method of the comparison, over whole
sweeps as ``ifssnet compare`` scores them.

``--model M`` gives IFSS-Net's weights (default: the shipped ones); ``--csv OUT`` writes the rows.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def static_volume(volume: np.ndarray, seed_slices) -> np.ndarray:
    """``volume`` (K, J, I) with every slice replaced by the image of the middle seed slice."""
    s = sorted(int(k) for k in seed_slices)
    middle = s[len(s) // 2]
    return np.broadcast_to(volume[middle], volume.shape).copy()


def probe_case(case, methods, protocol: str = "3-seeds", options=None, progress=None) -> list:
    """Rows (case, muscle, method, image, dice, vol_err_pct) for the true and the static image."""
    from ifssnet.compare import compare, load_case, protocol_seeds

    volume, refs, spacing = load_case(case)
    rows = []
    for muscle, ref in refs.items():
        ref = (np.asarray(ref) != 0).astype(np.uint8)
        seeds = protocol_seeds(ref, protocol)
        for image, vol in (("true", volume), ("static", static_volume(volume, seeds.slices))):
            for r in compare(vol, {muscle: ref}, spacing, methods, protocol, seeds={muscle: seeds},
                             method_options=options, progress=progress):
                rows.append({"case": str(case), "muscle": muscle, "method": r["method"], "image": image,
                             "dice": r["dice"], "vol_err_pct": r["volume_error_pct"], "error": r["error"]})
                print(f"{case} {muscle:4s} {r['method']:8s} {image:6s} Dice {r['dice']:.3f} "
                      f"volume error {r['volume_error_pct']:.1f} % {r['error']}", flush=True)
    return rows


def dice_drop(rows) -> dict:
    """method -> mean over (case, muscle) of Dice(true image) - Dice(static image)."""
    by = {}
    for r in rows:
        by.setdefault((r["method"], r["case"], r["muscle"]), {})[r["image"]] = r["dice"]
    drops = {}
    for (method, _, _), d in by.items():
        if "true" in d and "static" in d:
            drops.setdefault(method, []).append(d["true"] - d["static"])
    return {m: float(np.mean(v)) for m, v in drops.items()}


def main(argv=None) -> int:
    from ifssnet.compare import PROTOCOLS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="+", help="folders with volume.nrrd and reference.seg.nrrd")
    p.add_argument("--methods", default="ifssnet,pgnet")
    p.add_argument("--protocol", default="3-seeds", choices=PROTOCOLS)
    p.add_argument("--model", default=None, help="IFSS-Net weights (default: the shipped ones)")
    p.add_argument("--csv", default=None)
    args = p.parse_args(argv)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options = {"ifssnet": {"model": args.model}} if args.model and "ifssnet" in methods else None
    rows = []
    for case in args.cases:
        rows += probe_case(case, methods, args.protocol, options)
    for method, drop in dice_drop(rows).items():
        true = np.mean([r["dice"] for r in rows if r["method"] == method and r["image"] == "true"])
        static = np.mean([r["dice"] for r in rows if r["method"] == method and r["image"] == "static"])
        print(f"{method}: Dice {true:.3f} on the true image, {static:.3f} on the static one (drop {drop:+.3f})")
    if args.csv:
        from ifssnet.compare import write_csv

        write_csv(rows, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
