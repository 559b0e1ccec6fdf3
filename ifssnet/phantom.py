"""Synthetic 3-D freehand B-mode ultrasound of the lower leg (GM, GL, SOL), our training and test data.

``make_phantom(seed, shape, spacing)`` returns a :class:`Phantom`: a uint8 volume indexed (k, j, i)
(k = sweep, knee -> ankle; j = depth from the skin down; i = lateral, medial on the left) and the
reference masks of GM, GL and SOL. The same seed and shape always give the same volume. Each seed is
a different "subject". See ``docs/phantom.md`` for the model, its parameters and its calibration.

The anatomy is laid out in nominal mm over a 141.8 mm wide field of view (512 x 0.277 mm) and the
leg always spans the whole sweep, so a small shape shows the whole calf at a coarser voxel size.
``spacing=None`` picks that voxel size, ``0.277 * 512 / I`` mm (0.277 mm at the paper's 512 width).
An explicit ``spacing`` only changes the geometry written to disk, not the picture.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from .errors import InputError
from .progress import check_cancel, report
from .phantom_anatomy import FOV_MM, make_subject
from .phantom_speckle import Renderer, Schedule, make_schedule

MUSCLES = ("GM", "GL", "SOL")
CHUNK = 16  # slices rendered together (one FFT batch); memory ~ 40 bytes/voxel of a chunk


@dataclass
class Phantom:
    """A phantom volume and its reference. Arrays are (K, J, I); ``spacing_kji`` = (sz, sy, sx) mm."""

    volume: np.ndarray
    labels: Dict[str, np.ndarray]
    spacing_kji: Tuple[float, float, float]
    seed: int = 0
    schedule: Optional[Schedule] = field(default=None, repr=False)

    @property
    def geometry(self):
        from .io import Geometry

        sz, sy, sx = self.spacing_kji
        return Geometry(spacing=(sx, sy, sz))

    @property
    def seams(self) -> Tuple[int, ...]:
        return self.schedule.seams if self.schedule is not None else ()


def default_spacing(shape: Sequence[int]) -> float:
    """Voxel size (mm) that maps the nominal 141.8 mm field of view onto the shape's width."""
    return FOV_MM / int(shape[2])


def _check_shape(shape) -> Tuple[int, int, int]:
    try:
        K, J, I = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise InputError(f"Phantom shape {shape!r} is not three integers.", "Give --shape Z Y X, e.g. 400 128 128.")
    if K < 20 or J < 32 or I < 32:
        raise InputError(f"Phantom shape {(K, J, I)} is too small.", "Use at least 20 slices of 32 x 32 voxels.")
    return K, J, I


def _checked_inputs(seed, shape, spacing, supersample):
    """``((K, J, I), spacing mm, supersampling factor)``, or :class:`InputError` naming the option that is wrong."""
    K, J, I = _check_shape(shape)
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:   # numpy's SeedSequence takes none below 0
        raise InputError(f"Phantom seed {seed!r} is not a whole number >= 0.", "Give e.g. --seed 0.")
    sp = default_spacing(shape) if spacing is None else float(spacing)
    if not np.isfinite(sp) or sp <= 0:
        raise InputError(f"Spacing {spacing!r} is not a positive number of mm.", "Give e.g. --spacing 0.277.")
    f = int(supersample)
    if f < 1 or f != supersample:
        raise InputError(f"Supersampling {supersample!r} is not a whole number >= 1.", "Give e.g. --supersample 4.")
    return (K, J, I), sp, f


def make_phantom(seed: int = 0, shape: Sequence[int] = (1400, 512, 512), spacing: Optional[float] = None,
                 progress=None, cancel=None, difficulty: float = 1.0, supersample: int = 1) -> Phantom:
    """Make the phantom of subject ``seed`` with array shape (K, J, I).

    ``spacing`` (mm, isotropic): None = ``default_spacing(shape)`` (0.277 mm at 512 wide).
    ``difficulty`` scales the freehand non-linearity (drift/twist wobble, lobes, misalignment);
    1.0 is the calibrated value (see docs/phantom.md). ``supersample`` f > 1 renders each slice at
    (f J, f I) and shrinks it to (J, I) as propagation shrinks slices (image) and by block majority (labels), so a
    coarse phantom shows resolved speckle averaged over f x f cells, as a 0.277 mm sweep looks once
    shrunk to the network's working grid (:meth:`ifssnet.preprocess.InPlaneGrid.shrink`); f = 1
    renders at (J, I) directly, with speckle finer than a voxel. Reports progress per chunk of slices
    and raises :class:`~ifssnet.errors.Cancelled` between chunks when ``cancel`` is set.
    """
    (K, J, I), sp, f = _checked_inputs(seed, shape, spacing, supersample)
    sub = make_subject(seed, K, difficulty)
    sched = make_schedule(seed, K, difficulty)
    rend = Renderer(sub, sched, seed, J * f, I * f)
    volume = np.empty((K, J, I), np.uint8)
    # Each muscle's mask is filled chunk by chunk (splitting one label volume at the end took 8 s at
    # 1400 x 512 x 512 after the last progress report, and a fourth volume of memory).
    labels = {name: np.empty((K, J, I), np.uint8) for name in MUSCLES}
    for k0 in range(0, K, CHUNK):
        check_cancel(cancel)
        ks = list(range(k0, min(K, k0 + CHUNK)))
        img, l = rend.render(ks)
        if f > 1:
            img, l = _shrink(img, l, f)
        volume[k0:k0 + len(ks)] = img
        for v, name in enumerate(MUSCLES, start=1):
            np.equal(l, v, out=labels[name][k0:k0 + len(ks)], casting="unsafe")
        report(progress, "Phantom", ks[-1] + 1, K)
    check_cancel(cancel)
    return Phantom(volume, labels, (sp, sp, sp), int(seed), sched)


def _shrink(img: np.ndarray, lab: np.ndarray, f: int) -> Tuple[np.ndarray, np.ndarray]:
    """uint8 image and labels (n, f J, f I) -> (n, J, I). The image is shrunk by propagation's own filter
    (:meth:`ifssnet.preprocess.InPlaneGrid.shrink`), then rounded; each label voxel is the majority of its
    f x f block (ties go to the lower label, background first)."""
    import torch

    from .preprocess import InPlaneGrid

    n, fj, fi = img.shape
    grid = InPlaneGrid((fj, fi), max(fj, fi) // f)
    small = grid.shrink(torch.from_numpy(img.astype(np.float32))).numpy()
    blocks = (n, fj // f, f, fi // f, f)
    counts = np.stack([(lab == v).reshape(blocks).sum(axis=(2, 4), dtype=np.int32) for v in range(len(MUSCLES) + 1)])
    return np.clip(np.rint(small), 0, 255).astype(np.uint8), counts.argmax(axis=0).astype(np.uint8)


#: The files :func:`write_phantom` writes into its folder (``ifssnet phantom DIR`` refuses to replace them without
#: ``--force``).
PHANTOM_FILES = ("volume.nrrd", "reference.seg.nrrd")


def write_phantom(outdir, seed: int = 0, shape: Sequence[int] = (1400, 512, 512), spacing: Optional[float] = None,
                  progress=None, cancel=None, supersample: int = 1) -> Phantom:
    """Make a phantom and write ``outdir/volume.nrrd`` and ``outdir/reference.seg.nrrd`` (GM, GL, SOL) together
    (:func:`ifssnet.io.write_together`): a cancel, Ctrl-C or failure before both are written leaves both as
    they were. ``progress`` also gets the writing, ``"Writing volume"`` (one step, about 15 s at
    1400 x 512 x 512) then the reference's :data:`ifssnet.io.STAGE_WRITING` steps (about 40 s), and ``cancel``
    is checked before each of them."""
    out = Path(outdir)
    _checked_inputs(seed, shape, spacing, supersample)   # bad options make no folder
    # Before the rendering (minutes at full size): a folder that cannot be made (a file of that name, no
    # permission) is a ResourceError now, not an OSError (internal error) once the phantom is made.
    with folder_kept_only_if_used(out):
        return _write_phantom(out, seed, shape, spacing, progress, cancel, supersample)


@contextmanager
def folder_kept_only_if_used(folder: Path):
    """Make ``folder`` (:func:`ifssnet.io.make_folders`) for the block; a failure, cancel or Ctrl-C that leaves it
    empty removes it again if the block made it (a refused or interrupted run leaves no empty folder behind)."""
    from .io import make_folders

    made = not folder.exists()
    make_folders(folder)
    try:
        yield folder
    except BaseException:
        if made:
            try:
                folder.rmdir()          # only while empty: a file written by then stays
            except OSError:
                pass
        raise


def _write_phantom(out: Path, seed, shape, spacing, progress, cancel, supersample) -> Phantom:
    from .io import Image, segmentation_from_masks, write_segmentation, write_together, write_volume

    ph = make_phantom(seed, shape, spacing, progress=progress, cancel=cancel, supersample=supersample)
    geo = ph.geometry

    def volume(tmp: str) -> None:
        report(progress, "Writing volume", 0, 1)
        check_cancel(cancel)
        write_volume(Image(ph.volume, geo), tmp)
        report(progress, "Writing volume", 1, 1)

    reference = segmentation_from_masks(dict(ph.labels), geo)
    volume_name, reference_name = PHANTOM_FILES
    write_together([(out / volume_name, volume),
                    (out / reference_name,
                     lambda tmp: write_segmentation(reference, tmp, progress=progress, cancel=cancel))])
    return ph


COLORS = {"GM": (0.95, 0.35, 0.25), "GL": (0.25, 0.75, 1.0), "SOL": (1.0, 0.85, 0.2)}


def save_montage(phantom: Phantom, path, fractions=(0.08, 0.25, 0.42, 0.58, 0.75, 0.92)) -> Path:
    """Write a PNG: axial slices along the sweep with the reference outlines, and a longitudinal reslice."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vol = phantom.volume
    K, J, I = vol.shape
    sz, sy, sx = phantom.spacing_kji
    n = len(fractions)
    cols = 3
    rows = (n + cols - 1) // cols
    shown = min(J * sy, 75.0)  # mm of depth shown
    ah = 4.2 * shown / (I * sx)
    fig = plt.figure(figsize=(4.2 * cols, (ah + 0.35) * rows + 3.0), dpi=110, facecolor="black")
    gs = fig.add_gridspec(rows + 1, cols, height_ratios=[ah + 0.35] * rows + [3.0], hspace=0.15, wspace=0.04)
    for a, f in enumerate(fractions):
        k = int(round(f * (K - 1)))
        ax = fig.add_subplot(gs[a // cols, a % cols])
        ax.imshow(vol[k], cmap="gray", vmin=0, vmax=255, extent=(0, I * sx, J * sy, 0), interpolation="nearest")
        for name in MUSCLES:
            m = phantom.labels[name][k]
            if m.any():
                ax.contour(np.arange(I) * sx + sx / 2, np.arange(J) * sy + sy / 2, m, levels=[0.5],
                           colors=[COLORS[name]], linewidths=0.7)
        present = [nm for nm in MUSCLES if phantom.labels[nm][k].any()]
        ax.set_title(f"slice {k} ({100 * f:.0f} %): {' '.join(present) or '-'}", color="white", fontsize=8)
        ax.set_ylim(min(J * sy, 75.0), 0)
        ax.axis("off")
    ax = fig.add_subplot(gs[rows, :])
    # longitudinal reslice through the GM/GL region (medial third)
    # through the muscles, in the middle of the field (away from the bone shadows)
    prof = sum(phantom.labels[n].sum(axis=(0, 1), dtype=np.int64) for n in MUSCLES).astype(float)
    prof[: int(0.4 * I)] = 0
    prof[int(0.6 * I):] = 0
    col = int(np.argmax(prof)) if prof.any() else I // 2
    sl = vol[:, :, col].T
    ax.imshow(sl, cmap="gray", vmin=0, vmax=255, aspect="auto", extent=(0, K * sz, J * sy, 0), interpolation="nearest")
    for name in MUSCLES:
        m = phantom.labels[name][:, :, col].T
        if m.any():
            ax.contour(np.arange(K) * sz + sz / 2, np.arange(J) * sy + sy / 2, m, levels=[0.5],
                       colors=[COLORS[name]], linewidths=0.6)
    ax.set_ylim(min(J * sy, 75.0), 0)
    ax.set_title(f"longitudinal reslice at i = {col} (knee left, ankle right); GM red, GL blue, SOL yellow",
                 color="white", fontsize=8)
    ax.axis("off")
    from .io import atomic_write

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, facecolor="black", bbox_inches="tight"),
                            make_folder=True)
    finally:
        plt.close(fig)
