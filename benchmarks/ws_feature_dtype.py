"""Watershed feature type: float32 (what Slicer's Watershed effect uses) against the same feature rescaled to uint16.

The claim to check (issue 3): the float feature is about 7x slower than the uint16 one, with the same
result. Both variants run in the same process on the same phantom, alternating, and the median of
``--repeats`` runs is reported; the voxels of both results are compared.

    python benchmarks/ws_feature_dtype.py                     # phantom 160 x 256 x 256, 3 repeats
    python benchmarks/ws_feature_dtype.py --shape 400 512 512 --repeats 2 --json out.json

Prints the times (s) of the gradient, of the watershed on each feature, the ratio float/uint16, and how
many voxels differ. The fast path is taken only if the voxels are identical; see ``ifssnet/baselines/ws.py``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", type=int, nargs=3, default=(160, 256, 256), metavar=("K", "J", "I"))
    p.add_argument("--seed", type=int, default=0, help="phantom subject")
    p.add_argument("--muscle", default="GM")
    p.add_argument("--protocol", default="paper", choices=("3-seeds", "paper"))
    p.add_argument("--every", type=int, default=50, help="paper protocol: a seed group every N slices")
    p.add_argument("--object-scale", type=float, default=2.0, help="sigma in mm (Slicer's default 2.0)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="SimpleITK threads (0 = its default)")
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)

    import SimpleITK as sitk

    from ifssnet.baselines import marker_labels
    from ifssnet.baselines.ws import feature_image, watershed_from_markers
    from ifssnet.compare import protocol_seeds
    from ifssnet.phantom import make_phantom

    if args.threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    t = time.perf_counter()
    ph = make_phantom(seed=args.seed, shape=tuple(args.shape))
    t_phantom = time.perf_counter() - t
    seeds = protocol_seeds(ph.labels[args.muscle], args.protocol, every=args.every)
    image = sitk.GetImageFromArray(ph.volume)
    image.SetSpacing([float(s) for s in ph.spacing_kji[::-1]])
    markers = sitk.GetImageFromArray(marker_labels(seeds.mask, seeds.slices))
    markers.CopyInformation(image)

    t = time.perf_counter()
    feat_f = feature_image(image, args.object_scale, "float")
    t_grad = time.perf_counter() - t
    t = time.perf_counter()
    feat_u = sitk.Cast(sitk.RescaleIntensity(feat_f, 0.0, 65535.0), sitk.sitkUInt16)
    t_rescale = time.perf_counter() - t

    times = {"float": [], "uint16": []}
    results = {}
    for _ in range(args.repeats):
        for name, feat in (("float", feat_f), ("uint16", feat_u)):
            t = time.perf_counter()
            lab = watershed_from_markers(feat, markers)
            times[name].append(time.perf_counter() - t)
            results[name] = sitk.GetArrayFromImage(lab) == 1
    a, b = results["float"], results["uint16"]
    diff = int(np.count_nonzero(a != b))
    inter = int(np.count_nonzero(a & b))
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "shape": list(ph.volume.shape), "spacing_kji": list(ph.spacing_kji), "muscle": args.muscle,
        "protocol": args.protocol, "seed_slices": len(seeds.slices), "object_scale_mm": args.object_scale,
        "sitk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(), "repeats": args.repeats,
        "phantom_s": round(t_phantom, 3), "gradient_s": round(t_grad, 3), "rescale_s": round(t_rescale, 3),
        "watershed_float_s": round(med["float"], 3), "watershed_uint16_s": round(med["uint16"], 3),
        "ratio_float_over_uint16": round(med["float"] / med["uint16"], 2),
        "ratio_including_rescale": round(med["float"] / (med["uint16"] + t_rescale), 2),
        "distinct_float_levels": int(np.unique(sitk.GetArrayViewFromImage(feat_f)).size),
        "voxels_different": diff, "voxels_total": int(a.size),
        "dice_float_vs_uint16": round(2 * inter / max(1, int(a.sum() + b.sum())), 6),
        "identical": diff == 0, "machine": platform.processor() or platform.machine(),
        "all_times_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
    }
    for k, v in out.items():
        print(f"{k:>26}: {v}")
    print("decision:", "identical voxels: the uint16 fast path is safe" if diff == 0 else
          f"{diff} voxel(s) differ: keep the float feature (Slicer's) as the default")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
