"""``ifssnet demo``: the main job end to end on built-in data.

Makes a held-out phantom (seed 1000 and up are never trained on), paints 3 slices per muscle where
its cross-section is largest (the ``3-seeds`` protocol), propagates with the shipped model, and
prints Dice and volume error per muscle and the wall time. Writes the volume, the reference, the
seeds, the result (.seg.nrrd), the per-slice confidence (JSON) and a PNG figure to OUTDIR
(:data:`DEMO_FILES`); where OUTDIR already holds one of them, ``ifssnet demo`` writes nothing unless ``--force``,
but the files an earlier run wrote there, unchanged since, are replaced (:func:`ifssnet.io.record_made`).
"""
from __future__ import annotations

import time
from pathlib import Path

DEMO_SHAPE = (400, 128, 128)
#: The files the demo writes into its folder, besides the phantom's (:data:`ifssnet.phantom.PHANTOM_FILES`).
DEMO_FILES = ("seeds.seg.nrrd", "result.seg.nrrd", "result.confidence.json", "demo.png")


def add_commands(sub) -> None:
    p = sub.add_parser("demo", help="phantom -> 3 painted slices per muscle -> propagate -> Dice and volume",
                       description="Write OUTDIR/volume.nrrd, reference.seg.nrrd, seeds.seg.nrrd, result.seg.nrrd, "
                                   "result.confidence.json and demo.png. OUTDIR is made if missing; where it already "
                                   "holds one of these files, nothing is written unless --force (files an earlier "
                                   "`ifssnet demo` wrote there, unchanged since, are replaced).")
    p.add_argument("outdir", type=Path, nargs="?", default=Path("ifssnet-demo"))
    p.add_argument("--force", action="store_true", help="replace the demo's files where OUTDIR already holds them")
    p.add_argument("--seed", type=int, default=1000, help="phantom seed (held out from training: >= 1000)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), default=list(DEMO_SHAPE))
    p.add_argument("--model", type=Path, default=None, help="model file (default: the shipped one)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_demo)


def run_demo(outdir: Path, seed: int = 1000, shape=DEMO_SHAPE, model=None, device: str = "auto",
             progress=None) -> dict:
    """Run the demo and return ``{muscle: metrics}`` plus ``"seconds"``."""
    from .io import AnnotatedSlices, segmentation_from_masks, write_json, write_segmentation
    from .metrics import evaluate
    from .phantom import _checked_inputs, folder_kept_only_if_used, write_phantom
    from .propagate import load_model, propagate
    from .seeds import cut_seeds, protocol_slices

    # Bad options and a missing or corrupt model file are refused before any folder or file is made.
    _checked_inputs(seed, shape, None, 1)
    model = load_model(model, "cpu")
    # Made now: a ResourceError (exit 4) when it cannot be, not an OSError (exit 70); removed again where a failure
    # or Ctrl-C leaves it empty.
    with folder_kept_only_if_used(Path(outdir)) as outdir:
        ph = write_phantom(outdir, seed=seed, shape=tuple(shape), progress=progress)
    seeds_file, result_file, confidence_file, figure_file = (outdir / name for name in DEMO_FILES)
    seeds = {name: cut_seeds(m, protocol_slices(m, "3-seeds")) for name, m in ph.labels.items()}
    seg_geometry = ph.geometry
    write_segmentation(segmentation_from_masks({n: s.mask for n, s in seeds.items()}, seg_geometry,
                                               {n: AnnotatedSlices(0, s.slices) for n, s in seeds.items()}),
                       seeds_file)
    t0 = time.perf_counter()
    result = propagate(ph.volume, seeds, model, device=device, slice_spacing_mm=ph.spacing_kji[0], progress=progress)
    seconds = time.perf_counter() - t0
    write_segmentation(segmentation_from_masks(result.masks, seg_geometry), result_file)
    write_json({n: [round(float(c), 4) for c in v] for n, v in result.confidence.items()},
               confidence_file)
    scores = {n: evaluate(result.masks[n], ph.labels[n], ph.spacing_kji, exclude_slices=seeds[n].slices)
              for n in ph.labels}
    save_figure(ph, result, figure_file)
    scores["seconds"] = seconds
    return scores


def save_figure(ph, result, path: Path) -> None:
    """Axial slices with reference (solid) and propagated (dashed) outlines, and a longitudinal view."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import DEFAULT_COLORS

    K = ph.volume.shape[0]
    ks = [int(K * f) for f in (0.15, 0.3, 0.45, 0.6, 0.75)]
    fig, axes = plt.subplots(1, len(ks) + 1, figsize=(3 * (len(ks) + 1), 3.2))
    for ax, k in zip(axes, ks):
        ax.imshow(ph.volume[k], cmap="gray")
        for name, m in ph.labels.items():
            c = DEFAULT_COLORS.get(name, (1, 1, 0))
            if m[k].any():
                ax.contour(m[k], [0.5], colors=[c], linewidths=1.2)
            if result.masks[name][k].any():
                ax.contour(result.masks[name][k], [0.5], colors=[c], linewidths=1.0, linestyles="dashed")
        ax.set_title(f"slice {k}")
        ax.axis("off")
    col = ph.volume.shape[2] // 2
    axes[-1].imshow(ph.volume[:, :, col].T, cmap="gray", aspect="auto")
    for name, m in ph.labels.items():
        c = DEFAULT_COLORS.get(name, (1, 1, 0))
        axes[-1].contour(m[:, :, col].T, [0.5], colors=[c], linewidths=1.0)
        axes[-1].contour(result.masks[name][:, :, col].T, [0.5], colors=[c], linewidths=0.8, linestyles="dashed")
    axes[-1].set_title("longitudinal")
    axes[-1].axis("off")
    fig.suptitle("reference (solid) and IFSS-Net (dashed): GM pink, GL green, SOL violet")
    fig.tight_layout()
    from .io import atomic_write

    try:        # atomically: a disk that fills up leaves no partial PNG
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80))
    finally:
        plt.close(fig)


def _demo(args) -> int:
    from .progress import TqdmProgress

    from .errors import Cancelled

    import time

    from .io import record_made, refuse_replacing
    from .phantom import PHANTOM_FILES

    refuse_replacing(args.outdir, PHANTOM_FILES + DEMO_FILES, args.force, "demo",
                     inputs=[args.model] if args.model else ())
    start_ns = time.time_ns()
    bar = TqdmProgress()
    try:
        scores = run_demo(args.outdir, args.seed, args.shape, args.model, args.device, progress=bar)
    except KeyboardInterrupt:   # the phantom and the seeds may be written by then: not "Nothing was written"
        if not Path(args.outdir).exists():     # interrupted before the phantom was written: its folder is gone
            raise Cancelled("Interrupted (Ctrl-C).", "Nothing was written.") from None
        raise Cancelled("Interrupted (Ctrl-C).", f"What the demo had written is in {args.outdir}/ (each file "
                        "whole); run `ifssnet demo` again to make the rest.") from None
    finally:
        bar.close()
        record_made(args.outdir, PHANTOM_FILES + DEMO_FILES, start_ns)   # the next run replaces them without --force
    seconds = scores.pop("seconds")
    print(f"{'muscle':<8}{'Dice':>8}{'volume cm3':>12}{'reference':>11}{'vol err %':>11}")
    for name, m in scores.items():
        print(f"{name:<8}{m['dice']:>8.4f}{m['volume_cm3']:>12.2f}{m['ref_volume_mm3'] / 1000:>11.2f}"
              f"{m['volume_error_pct']:>11.2f}")
    print(f"propagation: {seconds:.1f} s for {len(scores)} muscles; results in {args.outdir}/")
    return 0
