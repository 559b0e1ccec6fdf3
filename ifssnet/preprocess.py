"""What the network sees: per-volume intensity normalisation and the in-plane working grid.

Shared by propagation and training, so both see exactly the same input.

- Intensities are z-scored per volume (robust statistics over a subsample of slices), never with
  constants from one data set: a user's probe, gain and dynamic range differ from ours.
- In-plane, each slice (J, I) is padded to a square (centred, with the volume's low value) and resized
  to the network's working size S x S. Probabilities go back the same way (resize, then crop), so
  the output lands on the volume's own grid. The sweep axis (K) is never resampled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from .errors import VolumeError
from .progress import CancelLike, ProgressFn, check_cancel, report


def check_volume(volume: np.ndarray, window: int = 3) -> None:
    """Raise :class:`VolumeError` for arrays IFSS-Net cannot propagate through. ``volume`` is (K, J, I),
    the propagation axis first: :func:`check_image`, then at least ``window`` slices of at least 8 x 8."""
    check_image(volume)
    if volume.shape[0] < window:
        raise VolumeError(f"The volume has {volume.shape[0]} slices along the propagation axis; "
                          f"at least {window} are needed for one window.",
                          "Check that the painted slices lie across the sweep, or load the whole sweep.")
    if min(volume.shape[1:]) < 8:
        raise VolumeError(f"The slices are only {volume.shape[1]} x {volume.shape[2]} voxels.",
                          "Check the propagation axis: paint the muscle on slices across the sweep.")


def check_image(volume: np.ndarray) -> None:
    """Raise :class:`VolumeError` unless ``volume`` is a 3-D scalar image of real numbers, whatever its
    orientation: a 2-D image (also one saved one slice thick), more dimensions, no voxels, a non-numeric type."""
    if volume.ndim == 2 or (volume.ndim == 3 and 1 in volume.shape):
        shape = "" if volume.ndim == 2 else f" (one slice thick: {' x '.join(map(str, volume.shape))} voxels)"
        raise VolumeError(f"The volume is a 2-D image{shape}; IFSS-Net propagates through a 3-D sweep.",
                          "Load the reconstructed 3-D ultrasound volume, not a single frame.")
    if volume.ndim != 3:
        raise VolumeError(f"The volume has {volume.ndim} dimensions ({volume.shape}); a 3-D scalar volume is needed.",
                          "Convert RGB or vector volumes to scalar, and pick one frame of a sequence.")
    if volume.size == 0:
        raise VolumeError("The volume is empty (no voxels).", "Load a volume with data.")
    if not (np.issubdtype(volume.dtype, np.number) or volume.dtype == bool) or np.iscomplexobj(volume):
        raise VolumeError(f"The volume's voxel type {volume.dtype} is not a real number type.",
                          "Convert it to a scalar (integer or float) volume.")


def intensity_stats(volume: np.ndarray, grid: Optional["InPlaneGrid"] = None,
                    max_slices: int = 64) -> Tuple[float, float]:
    """Robust mean and standard deviation of ``volume`` (K, J, I), from at most ``max_slices`` slices.

    Values outside the 0.5-99.5 percentiles are clipped first, so a few saturated voxels or a black
    border do not dominate. Raises :class:`VolumeError` if the volume is constant.

    ``grid``: the statistics of the slices as the network sees them, shrunk to its working grid
    (:meth:`InPlaneGrid.shrink`), not of the volume's own voxels. A sweep with fine voxels (0.277 mm,
    512 wide) has resolved speckle, whose spread shrinking averages away; z-scored with its own voxels'
    spread, its working image would have a smaller spread than that of a sweep recorded at the working
    grid's size, and the muscles would look duller than in training (model card, "Intensity statistics
    on the working grid"). A grid that does not shrink changes nothing; nor does a sample with
    non-finite values (they would spread through the filter), which keeps its own voxels' statistics.
    """
    step = max(1, volume.shape[0] // max_slices)
    work = work_dtype(volume.dtype)
    sample = np.asarray(volume[::step], dtype=work)
    if grid is not None and np.isfinite(sample).all():
        import torch

        sample = grid.shrink(torch.from_numpy(sample)).numpy()
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        raise VolumeError("The volume has no finite voxel values (all NaN or infinite).", "Check the volume's data.")
    lo, hi = np.percentile(finite, [0.5, 99.5])
    clipped = np.clip(finite, lo, hi)
    scale = max(abs(float(lo)), abs(float(hi)))
    if scale > 0 and not 1e-6 <= scale <= 1e6:    # squares of values about 1e300 (or 1e20 in float32) overflow, of 1e-20 are 0
        clipped = clipped / scale
    else:
        scale = 1.0
    mean, std = float(clipped.mean()) * scale, float(clipped.std()) * scale
    if std == 0.0 and hi > lo:      # float32 squares of values below about 1e-19 are 0
        std = float(clipped.std(dtype=np.float64)) * scale
    # relative to the values' own scale: a volume of values about 1e-9 (another unit) is not constant, and one of
    # values 1e9 apart by 1e-3 cannot be told from one in the working precision
    if std <= RESOLVED[work] * abs(mean) or std == 0.0:
        _refuse_unresolved(volume[::step], mean, work)
    return mean, std


#: The smallest standard deviation, relative to the mean, that :func:`intensity_stats` tells from a constant volume
#: in each working precision (:func:`work_dtype`): float32 holds about 7 significant digits, float64 about 16.
RESOLVED = {np.dtype(np.float32): 1e-6, np.dtype(np.float64): 1e-12}


def work_dtype(dtype) -> np.dtype:
    """The precision the intensities are normalised in: float32 for what it holds exactly (bool, 8- and 16-bit
    integers, float16 and float32), float64 for wider types (32- and 64-bit integers, float64), whose values
    float32 would overflow (1e300 is inf) or round together (2e9 + 1 is 2e9)."""
    dtype = np.dtype(dtype)
    if dtype == bool or (dtype.kind in "iu" and dtype.itemsize <= 2) or (dtype.kind == "f" and dtype.itemsize <= 4):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def _refuse_unresolved(sample: np.ndarray, mean: float, work: np.dtype) -> None:
    """The :class:`VolumeError` of a volume whose intensities do not vary, as :func:`intensity_stats` sees them:
    constant where its ``sample`` slices' finite voxels are all one value (in the file's own type), else values that
    differ too little against their size to be told apart in the ``work`` precision (e.g. int64 values 2**62 + 0..255,
    which float64 rounds to one value)."""
    values = sample[np.isfinite(sample)] if sample.dtype.kind in "fc" else sample
    low, high = values.min().item(), values.max().item()
    if low == high:
        raise VolumeError("The volume is constant (every voxel has the same value), so there is nothing to follow.",
                          "Check that the right volume is selected and that it loaded completely.")
    bits = 8 * work.itemsize
    raise VolumeError(f"The volume's values differ by at most {high - low:.3g} around {mean:.3g}: too little against "
                      f"their size for IFSS-Net's {bits}-bit arithmetic to tell them apart, so it would see a "
                      "constant volume.",
                      "Subtract their common offset first (e.g. the volume's minimum, with Simple Filters > "
                      "ShiftScaleImageFilter in Slicer, or in Python), so that they vary around 0.")


@dataclass(frozen=True)
class InPlaneGrid:
    """Maps slices of shape (J, I) to the square working grid (S, S) and back.

    The slice is padded (centred) to (P, P) with P = max(J, I), then resized to (S, S).
    """

    shape_ji: Tuple[int, int]
    size: int

    @property
    def padded(self) -> int:
        return max(self.shape_ji)

    @property
    def pads(self) -> Tuple[int, int, int, int]:
        """(left, right, top, bottom) padding in voxels, as ``torch.nn.functional.pad`` takes them."""
        j, i = self.shape_ji
        p = self.padded
        return ((p - i) // 2, p - i - (p - i) // 2, (p - j) // 2, p - j - (p - j) // 2)

    def shrink(self, slices):
        """``slices`` torch (N, J, I) float -> (N, J', I'), shrunk by the factor :meth:`to_work` applies
        (S / P, area-averaged) without the padding; unchanged when the grid does not shrink."""
        import torch.nn.functional as F

        if self.padded <= self.size:
            return slices
        j, i = self.shape_ji
        size = (max(1, round(j * self.size / self.padded)), max(1, round(i * self.size / self.padded)))
        return F.interpolate(slices[:, None], size=size, mode="bilinear", align_corners=False, antialias=True)[:, 0]

    def to_work(self, slices, fill: float = 0.0):
        """``slices`` torch (N, J, I) float -> (N, S, S). Area-averaged when shrinking."""
        import torch.nn.functional as F

        x = F.pad(slices[:, None], self.pads, value=fill)
        if self.padded != self.size:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                              antialias=self.padded > self.size)
        return x[:, 0]

    def to_volume(self, prob):
        """``prob`` torch (N, S, S) -> (N, J, I): bilinear resize of probabilities, then crop."""
        import torch.nn.functional as F

        x = prob[:, None]
        if self.padded != self.size:
            x = F.interpolate(x, size=(self.padded, self.padded), mode="bilinear", align_corners=False)
        left, right, top, bottom = self.pads
        j, i = self.shape_ji
        return x[:, 0, top:top + j, left:left + i]


def normalized_work_volume(volume: np.ndarray, grid: InPlaneGrid, mean: Optional[float] = None,
                           std: Optional[float] = None, progress: Optional[ProgressFn] = None,
                           cancel: CancelLike = None, chunk: int = 64, frames: Optional[np.ndarray] = None):
    """``volume`` (K, J, I) -> torch float32 (K, S, S): z-scored (clipped to +-5; NaN taken as the lowest
    value), padded with the volume's lowest value, resized in-plane. Built ``chunk`` slices at a time to bound memory.
    ``mean``/``std``: None (what every network uses) = ``intensity_stats(volume, grid)``, the statistics
    of the whole volume's slices as the grid shrinks them; given, they are used as they are.
    ``frames`` (K',): only these slices, in this order -> (K', S, S)."""
    import torch

    if mean is None or std is None:
        mean, std = intensity_stats(volume, grid)
    K = volume.shape[0] if frames is None else len(frames)
    # NaN (no data, as some reconstructions write outside the scan) is taken as the lowest value, like the
    # padding: through the network it would spread over every later window and blank the runs' masks.
    fill = float(np.clip((float(np.nanmin(volume)) - mean) / std, -5, 5))
    work = torch.empty((K, grid.size, grid.size), dtype=torch.float32)
    precision = work_dtype(volume.dtype)     # float64 for 1e300 or 2e9 + 1: z-scored there, then float32
    for k0 in range(0, K, chunk):
        check_cancel(cancel)
        part = volume[k0:k0 + chunk] if frames is None else volume[np.asarray(frames[k0:k0 + chunk])]
        sl = (torch.from_numpy(np.asarray(part, dtype=precision)) - mean) / std
        work[k0:k0 + chunk] = grid.to_work(sl.float().nan_to_num_(nan=fill).clamp_(-5, 5), fill=fill)
        report(progress, "preparing", min(k0 + chunk, K), K)
    return work
