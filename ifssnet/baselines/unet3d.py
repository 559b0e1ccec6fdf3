"""A fully supervised 3-D U-Net (Çiçek et al. 2016), the paper's volumetric baseline. It sees no seeds.

Our own small U-Net, not MONAI's ``UNet``: MONAI (and its dependencies) is a heavy install for
Slicer users, who only need one network of about a hundred lines here.

Network (:class:`UNet3D`): ``len(pools) + 1`` levels of two ``3x3x3`` conv-GroupNorm-ReLU blocks,
widths ``width * 2**level``; max-pooling by ``pools`` on the way down (default ``(1,2,2), (1,2,2),
(2,2,2)``: on IFSS-Net's working grid a slice pixel is about 4 times larger than the slice spacing,
so the first two poolings are in-plane only, as nnU-Net does for anisotropic data), transposed
convolutions up, skip connections by concatenation, and a ``1x1x1`` convolution to one logit per
muscle. Input ``(B, 1, D, H, W)`` z-scored, output ``(B, C, D, H, W)`` logits, C = ``len(segments)``.

Output choice: **multi-label sigmoid**, one channel per muscle (GM, GL, SOL), rather than a softmax
over 4 classes: segments in Slicer may overlap, a case may annotate some muscles only on some
slices (each channel is then masked on its own), and the method returns one muscle at a time.
Loss: binary cross-entropy plus soft Dice per channel (the usual pairing for 3-D U-Nets; the
original used a weighted softmax cross-entropy).

Data: the same cases as IFSS-Net (:class:`ifssnet.dataset.Case`, z-scored per volume by
``intensity_stats`` and resampled onto the in-plane working grid ``InPlaneGrid``). Training patches
are ``patch`` = (slices, rows, columns) on that grid; by default the whole slice in-plane (so the
network sees the whole cross-section and can tell the medial GM from the lateral GL), 32 slices
deep. Two thirds of the patches are centred on a slice where some muscle is present. Augmentation:
gain, contrast and a small in-plane shift, but no left-right flip (it would swap GM and GL).

Inference (:func:`unet3d`): sliding windows with half-patch overlap along every axis that is longer
than the patch, probabilities blended with Gaussian weights, thresholded at 0.5 on the volume's own
grid, computed a chunk of slices at a time to bound memory. Which muscle: ``segment="GM"`` names the
output channel; without it, the channel whose prediction has the highest Dice with the seed mask
on the painted slices is used (a SeedSet carries no name). Painted slices come out as painted.

Slice spacing: a network learns how much a muscle changes from one slice to the next at its training
sweeps' spacing (``UNet3DConfig.slice_spacing_mm``; a new network's training records the spacing its cases
share, :func:`common_slice_spacing`; the shipped ``unet3d.pt``, written before, records its training phantoms'
1.108 mm). As IFSS-Net and PG-Net do
(:mod:`ifssnet.slice_spacing`), a sweep finer than that by more than 10 % is predicted on its frames nearest
to a grid at the network's spacing (whole frames, never blends), and the probabilities come back to every
slice by linear interpolation along the sweep before the 0.5 threshold; a sweep at the network's spacing
(within 10 %) or coarser is used as it is, frame for frame what it was before the U-Net knew its spacing.
Unlike theirs, the frames do not depend on the painted slices, which the U-Net does not see: the same
frames, and the same probabilities, for every protocol.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import InputError, ModelError, SeedError
from ..progress import CancelLike, ProgressFn, check_cancel, report
from ..propagate_output import finite_logits
from . import check_inputs, restore_painted
from ..loss import soft_dice_loss, weighted_bce_with_logits
from .learned_common import (BaselineTrainConfig, check_cases, fit, prepare_torch, resolve_device, resolve_model)
from .registry import loaded_once

ARCH = "unet3d"
__all__ = ["UNet3DConfig", "UNet3D", "UNet3DTrainConfig", "train_unet3d", "unet3d", "load_unet3d", "SlidingWindow"]


# --------------------------------------------------------------------------------------------------
# Configuration and network


@dataclass
class UNet3DConfig:
    """Architecture and patch of the 3-D U-Net.

    ``size``: in-plane working size S; ``segments``: output channel names; ``width``: channels of the
    first level; ``pools``: pooling factors (k, j, i) per downsampling; ``patch``: (k, j, i) patch on
    the working grid (in-plane clipped to S; each axis rounded down to a multiple of the total
    pooling along it); ``norm_groups``: most GroupNorm groups; ``slice_spacing_mm``: the slice spacing of
    the training sweeps (mm), None if unknown (module docstring, "Slice spacing").
    """

    size: int = 128
    segments: tuple = ("GM", "GL", "SOL")
    width: int = 16
    pools: tuple = ((1, 2, 2), (1, 2, 2), (2, 2, 2))
    patch: tuple = (32, 128, 128)
    norm_groups: int = 8
    slice_spacing_mm: Optional[float] = None

    def __post_init__(self) -> None:
        if self.slice_spacing_mm is not None and not (float(self.slice_spacing_mm) > 0):
            raise ModelError(f"3-D U-Net slice spacing {self.slice_spacing_mm!r} is not a positive number of mm.",
                             "Record the training sweeps' slice spacing in mm, or none.")
        self.segments = tuple(str(s) for s in self.segments)
        self.pools = tuple(tuple(int(v) for v in p) for p in self.pools)
        if not self.segments or len(set(self.segments)) != len(self.segments):
            raise ModelError(f"3-D U-Net segments {self.segments} are empty or repeated.", "Give distinct segment names.")
        if self.width < 1 or any(len(p) != 3 or min(p) < 1 for p in self.pools):
            raise ModelError(f"Invalid 3-D U-Net configuration (width {self.width}, pools {self.pools}).",
                             "Use width >= 1 and pooling factors (k, j, i) >= 1.")
        f = self.factor
        if self.size % f[1] or self.size % f[2]:
            raise ModelError(f"3-D U-Net size {self.size} is not a multiple of its in-plane pooling {f[1]}.",
                             f"Use a working size that is a multiple of {max(f[1], f[2])} (e.g. 128).")
        k, j, i = (int(v) for v in self.patch)
        j, i = min(j, self.size), min(i, self.size)
        self.patch = tuple(max(fa, v // fa * fa) for v, fa in zip((k, j, i), f))

    @property
    def factor(self) -> Tuple[int, int, int]:
        """Total pooling along (k, j, i): patch sizes are multiples of it."""
        return tuple(int(np.prod([p[a] for p in self.pools])) for a in range(3))  # type: ignore[return-value]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "UNet3DConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(d).items() if k in names})


def _gn(ch: int, groups: int) -> nn.GroupNorm:
    g = max(d for d in range(1, min(groups, ch) + 1) if ch % d == 0)
    return nn.GroupNorm(g, ch)


class _DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int, groups: int) -> None:
        super().__init__(nn.Conv3d(cin, cout, 3, 1, 1, bias=False), _gn(cout, groups), nn.ReLU(inplace=True),
                         nn.Conv3d(cout, cout, 3, 1, 1, bias=False), _gn(cout, groups), nn.ReLU(inplace=True))


class UNet3D(nn.Module):
    """``(B, 1, D, H, W)`` z-scored image -> ``(B, C, D, H, W)`` logits, one channel per segment.
    D, H, W must be multiples of ``config.factor``."""

    def __init__(self, config: Optional[UNet3DConfig] = None) -> None:
        super().__init__()
        self.config = cfg = config or UNet3DConfig()
        w = [cfg.width * 2 ** level for level in range(len(cfg.pools) + 1)]
        g = cfg.norm_groups
        self.down = nn.ModuleList([_DoubleConv(1, w[0], g)] + [_DoubleConv(w[i], w[i + 1], g) for i in range(len(cfg.pools))])
        self.pool = nn.ModuleList(nn.MaxPool3d(p, p) for p in cfg.pools)
        self.up = nn.ModuleList(nn.ConvTranspose3d(w[i + 1], w[i], cfg.pools[i], cfg.pools[i])
                                for i in reversed(range(len(cfg.pools))))
        self.dec = nn.ModuleList(_DoubleConv(2 * w[i], w[i], g) for i in reversed(range(len(cfg.pools))))
        self.head = nn.Conv3d(w[0], len(cfg.segments), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.pool):
                skips.append(x)
                x = self.pool[i](x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def _build(d: dict) -> UNet3D:
    return UNet3D(UNet3DConfig.from_dict(d))


def load_unet3d(path, map_location="cpu"):
    """``(UNet3D in eval mode, config dict, meta)`` from a checkpoint written by :func:`train_unet3d`."""
    from .learned_common import load_model_file

    return load_model_file(path, ARCH, _build, map_location)


# --------------------------------------------------------------------------------------------------
# Training


@dataclass
class UNet3DTrainConfig(BaselineTrainConfig):
    """:class:`BaselineTrainConfig` plus ``fg_fraction``: share of patches centred on a slice where a muscle is present."""

    fg_fraction: float = 0.67


def _sample_patch(case, names: Sequence[str], patch: Tuple[int, int, int], rng: np.random.Generator,
                  cfg: UNet3DTrainConfig) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One patch: image (pk, pj, pi) float32, target (C, pk, pj, pi) float32, known (C, pk) float32."""
    pk, pj, pi = patch
    K, S = case.n_slices, case.image.shape[-1]
    present = np.zeros(K, bool)
    for n in names:
        present |= case.masks[n].reshape(K, -1).any(axis=1) & case.known[n]
    if present.any() and rng.random() < cfg.fg_fraction:
        centre = int(rng.choice(np.flatnonzero(present)))
        k0 = centre - pk // 2 + int(rng.integers(-(pk // 4), pk // 4 + 1))
    else:
        k0 = int(rng.integers(0, max(1, K - pk + 1)))
    k0 = int(np.clip(k0, 0, max(0, K - pk)))
    j0 = int(rng.integers(0, S - pj + 1))
    i0 = int(rng.integers(0, S - pi + 1))
    ks = slice(k0, k0 + pk)
    img = case.image[ks, j0:j0 + pj, i0:i0 + pi].astype(np.float32)
    tgt = np.stack([case.masks[n][ks, j0:j0 + pj, i0:i0 + pi] for n in names]).astype(np.float32)
    kn = np.stack([case.known[n][ks] for n in names]).astype(np.float32)
    if img.shape[0] < pk:                     # a case shorter than the patch: pad (unknown, low value)
        extra = pk - img.shape[0]
        img = np.concatenate([img, np.full((extra, pj, pi), img.min(), np.float32)])
        tgt = np.concatenate([tgt, np.zeros((len(names), extra, pj, pi), np.float32)], axis=1)
        kn = np.concatenate([kn, np.zeros((len(names), extra), np.float32)], axis=1)
    if cfg.augment:
        img = img * float(np.exp(rng.normal(0.0, 0.15))) + float(rng.normal(0.0, 0.2))
        dy, dx = (int(v) for v in rng.integers(-4, 5, size=2))
        img = np.roll(img, (dy, dx), axis=(1, 2))
        tgt = np.roll(tgt, (dy, dx), axis=(2, 3))
    return np.ascontiguousarray(img), np.ascontiguousarray(tgt), kn


def patch_loss(logits: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice per (sample, channel). ``logits``, ``target``: (B, C, D, H, W); ``known``: (B, C, D)."""
    w = known[:, :, :, None, None].expand_as(logits)
    return weighted_bce_with_logits(logits, target, w) + soft_dice_loss(torch.sigmoid(logits), target, w, dims=(2, 3, 4))


def _unet_step_loss(cases, config: UNet3DConfig):
    names = list(config.segments)

    def step_loss(model, rng, cfg: UNet3DTrainConfig, device):
        items = [_sample_patch(cases[int(rng.integers(len(cases)))], names, config.patch, rng, cfg)
                 for _ in range(cfg.batch)]
        img = torch.from_numpy(np.stack([it[0] for it in items]))[:, None].to(device)
        tgt = torch.from_numpy(np.stack([it[1] for it in items])).to(device)
        kn = torch.from_numpy(np.stack([it[2] for it in items])).to(device)
        return patch_loss(model(img), tgt, kn)

    return step_loss


def common_slice_spacing(cases: Sequence) -> Optional[float]:
    """The slice spacing (mm) that training ``cases`` share: the median of those that know theirs, where every one
    of them is within :data:`~ifssnet.slice_spacing.SPACING_TOLERANCE` of it; else None (unknown). The U-Net trains
    on every frame of each case (it thins none, unlike IFSS-Net and PG-Net), so cases of mixed spacings give it no
    one spacing to work at, and it then sees every frame at inference, as before it recorded one."""
    from ..slice_spacing import SPACING_TOLERANCE

    known = [float(c.slice_spacing_mm) for c in cases if getattr(c, "slice_spacing_mm", None)]
    if not known:
        return None
    mid = float(np.median(known))
    return mid if all(abs(s - mid) <= SPACING_TOLERANCE * mid for s in known) else None


def train_unet3d(cases: Sequence, out_path, *, model_config: Optional[UNet3DConfig] = None,
                 cfg: Optional[UNet3DTrainConfig] = None, base_model=None, resume=None, command: str = "",
                 data_description: str = "", progress: Optional[ProgressFn] = None, cancel: CancelLike = None,
                 on_step=None, device: str = "cpu") -> Path:
    """Train the 3-D U-Net with full supervision on ``cases`` (:class:`ifssnet.dataset.Case`, every
    case holding every segment of ``model_config.segments``); write ``out_path`` and return it.

    ``resume``: its ``.ckpt.pt`` (continues exactly); ``base_model``: fine-tune from a checkpoint.
    """
    check_cases(cases, "the 3-D U-Net")
    if resume is not None or base_model is not None:      # the stored network decides segments and patch
        _, d, _ = load_unet3d(resume or base_model)
        model_config = UNet3DConfig.from_dict(d)
    elif model_config is None:
        model_config = UNet3DConfig(size=int(cases[0].image.shape[-1]), segments=tuple(cases[0].masks))
    for c in cases:
        if c.image.shape[-1] != model_config.size:
            raise InputError(f"Case '{c.name}' is on a {c.image.shape[-1]}-pixel grid, the network on {model_config.size}.",
                             "Load the cases with the network's size.")
        missing = [n for n in model_config.segments if n not in c.masks]
        if missing:
            raise InputError(f"Case '{c.name}' has no segment {', '.join(missing)}; the 3-D U-Net predicts "
                             f"{', '.join(model_config.segments)}.", "Annotate every muscle in every case, or choose --segments.")
    if model_config.slice_spacing_mm is None:   # a new network: its cases' spacing, where they share one
        model_config.slice_spacing_mm = common_slice_spacing(cases)
    return fit(arch=ARCH, build=_build, model_config=model_config.to_dict(), cfg=cfg or UNet3DTrainConfig(),
               step_loss=_unet_step_loss(list(cases), model_config), out_path=out_path, resume=resume,
               base_model=base_model, command=command, data_description=data_description, progress=progress,
               cancel=cancel, on_step=on_step, device=device)


# --------------------------------------------------------------------------------------------------
# Sliding-window inference


def window_starts(n: int, p: int, overlap: float = 0.5) -> List[int]:
    """Starts of windows of length ``p`` covering 0..n-1 with ``overlap``; ``[0]`` when ``n <= p``."""
    if n <= p:
        return [0]
    stride = max(1, int(p * (1.0 - overlap)))
    starts = list(range(0, n - p + 1, stride))
    if starts[-1] != n - p:
        starts.append(n - p)
    return starts


def _gauss(p: int) -> torch.Tensor:
    x = torch.arange(p, dtype=torch.float32) - (p - 1) / 2.0
    return torch.exp(-0.5 * (x / max(p / 4.0, 1e-3)) ** 2).clamp_min(1e-3)


class SlidingWindow:
    """Probabilities of a whole work volume, a range of slices at a time.

    ``work``: float32 (K, S, S) on the working grid. :meth:`predict` (k0, k1) returns (C, k1 - k0, S, S)
    sigmoid probabilities blended over every window that overlaps the range; windows straddling the
    end of one range are kept for the next call, so consecutive ranges cost no window twice.
    ``frames``: the :class:`~ifssnet.slice_spacing.FrameSelection` whose kept frames ``work`` holds (None: every
    slice); :meth:`predict_sweep` gives the probabilities on the sweep's own slices.
    """

    def __init__(self, net: UNet3D, work: torch.Tensor, device: str, batch: int = 2,
                 progress: Optional[ProgressFn] = None, cancel: CancelLike = None, frames=None) -> None:
        self.frames = frames if frames is not None and frames.thinned else None
        self.net, self.device, self.batch = net, device, max(1, int(batch))
        self.progress, self.cancel = progress, cancel
        pk, pj, pi = net.config.patch
        K, S, _ = work.shape
        self.K = K
        if K < pk:   # pad with the lowest value; the padded slices are never returned
            work = torch.cat([work, work.min().expand(pk - K, S, S)])
        self.work = work
        self.patch = (pk, pj, pi)
        self.ks, self.js, self.is_ = window_starts(work.shape[0], pk), window_starts(S, pj), window_starts(S, pi)
        self.wk, self.wj, self.wi = _gauss(pk), _gauss(pj), _gauss(pi)
        self.total = len(self.ks) * len(self.js) * len(self.is_)
        self.done = 0
        self._carry: Dict[Tuple[int, int, int], torch.Tensor] = {}

    def _run(self, wins: List[Tuple[int, int, int]]):
        """Yield ``(window, probabilities (C, pk, pj, pi))`` for ``wins``, ``batch`` windows per network call."""
        pk, pj, pi = self.patch
        for b in range(0, len(wins), self.batch):
            check_cancel(self.cancel)
            chunk = wins[b:b + self.batch]
            x = torch.stack([self.work[k:k + pk, j:j + pj, i:i + pi] for k, j, i in chunk])[:, None].to(self.device)
            with torch.no_grad():
                # a NaN logit becomes 0 (an unsure 0.5, as IFSS-Net's): a NaN made choose_channel's Dice NaN, the
                # largest for argmax, so that channel's muscle was taken
                p = torch.sigmoid(finite_logits(self.net(x))).cpu()
            self.done += len(chunk)
            report(self.progress, "3-D U-Net", min(self.done, self.total), self.total)
            yield from zip(chunk, p)

    def predict(self, k0: int, k1: int) -> torch.Tensor:
        pk, pj, pi = self.patch
        S = self.work.shape[1]
        C = len(self.net.config.segments)
        n = k1 - k0
        num = torch.zeros((C, n, S, S))
        den = torch.zeros((n, S, S))
        wins = [(k, j, i) for k in self.ks if k < k1 and k + pk > k0 for j in self.js for i in self.is_]
        known = [(w, self._carry[w]) for w in wins if w in self._carry]
        carry = {}
        fresh = self._run([w for w in wins if w not in self._carry])
        for (k, j, i), prob in itertools.chain(known, fresh):
            a, b = max(k, k0), min(k + pk, k1)
            wt = self.wk[a - k:b - k, None, None] * self.wj[None, :, None] * self.wi[None, None, :]
            num[:, a - k0:b - k0, j:j + pj, i:i + pi] += prob[:, a - k:b - k] * wt
            den[a - k0:b - k0, j:j + pj, i:i + pi] += wt
            if k + pk > k1:
                carry[(k, j, i)] = prob
        self._carry = carry
        return num / den.clamp_min(1e-12)

    def predict_sweep(self, k0: int, k1: int) -> torch.Tensor:
        """(C, k1 - k0, S, S) probabilities on slices ``k0..k1-1`` of the sweep: :meth:`predict` itself when ``work``
        holds every slice; else those of the kept frames around the range, linear along the sweep between the two
        nearest (``FrameSelection.to_sweep``, as propagation brings its probabilities back)."""
        if self.frames is None:
            return self.predict(k0, k1)
        from ..slice_spacing import FrameSelection

        f = self.frames.frames
        j0 = min(max(0, int(np.searchsorted(f, k0, side="right")) - 1), len(f) - 2)   # the frame at or before k0
        j1 = max(min(len(f), int(np.searchsorted(f, k1 - 1, side="left")) + 1), j0 + 2)  # ... at or after k1 - 1
        around = FrameSelection(f[j0:j1], self.frames.n_slices)
        return around.to_sweep(self.predict(j0, j1).transpose(0, 1), k0, k1).transpose(0, 1)


def _channel_for(net: UNet3D, segment) -> Optional[int]:
    names = list(net.config.segments)
    if segment is None:
        return 0 if len(names) == 1 else None
    if isinstance(segment, int) and not isinstance(segment, bool) and 0 <= segment < len(names):
        return segment
    low = [n.lower() for n in names]
    if str(segment).strip().lower() in low:
        return low.index(str(segment).strip().lower())
    raise InputError(f"The 3-D U-Net does not predict a segment named {segment!r}.",
                     f"Use one of: {', '.join(names)} (or leave segment unset to pick it from the seeds).")


def choose_channel(sw: SlidingWindow, seed_work: Dict[int, torch.Tensor], slices: Sequence[int]) -> int:
    """The output channel with the highest Dice against the seed mask on the painted slices.

    ``seed_work``: slice -> (S, S) 0/1 seed mask on the working grid. Raises :class:`SeedError` when
    every painted slice is empty (then nothing says which muscle is meant).
    """
    from ..seeds import seed_groups

    C = len(sw.net.config.segments)
    inter, psum, msum = torch.zeros(C), torch.zeros(C), 0.0
    for g in seed_groups(slices):
        prob = sw.predict_sweep(g[0], g[-1] + 1)                     # (C, n, S, S)
        m = torch.stack([seed_work[s] for s in g])                   # (n, S, S)
        inter += (prob * m).sum(dim=(1, 2, 3))
        psum += prob.sum(dim=(1, 2, 3))
        msum += float(m.sum())
    sw._carry = {}
    if msum == 0:
        raise SeedError("Every painted slice is empty, so the 3-D U-Net cannot tell which muscle is meant.",
                        "Paint the muscle on at least one slice, or pass segment='GM' (or GL, SOL).")
    dice = 2 * inter / (psum + msum)
    return int(torch.argmax(dice))


def unet3d(volume, seeds, spacing_kji, *, segment=None, progress: Optional[ProgressFn] = None,
           cancel: CancelLike = None, model=None, device: str = "auto", batch: int = 2,
           chunk: int = 256, match_slice_spacing: bool = True) -> np.ndarray:
    """The 3-D U-Net as a comparison method: ``volume`` (K, J, I), ``seeds`` (SeedSet) -> uint8 (K, J, I).

    The network ignores the seeds; they only pick the muscle (``segment`` unset: the channel with
    the highest Dice on the painted slices) and are restored exactly in the output. ``model``: a
    checkpoint path, a loaded :class:`UNet3D`, or None for ``$IFSSNET_UNET3D_MODEL`` /
    ``Resources/Models/unet3d.pt``. ``batch``: patches per network call; ``chunk``: slices per
    blending buffer (memory: ``C * chunk * S * S`` floats). ``spacing_kji[0]``, the spacing along the sweep (mm),
    chooses the frames the network sees (module docstring, "Slice spacing"); ``match_slice_spacing=False``: every
    frame, whatever the spacing.
    """
    volume, seed_mask, slices, spacing = check_inputs(volume, seeds, spacing_kji)
    dev = resolve_device(device)
    net = resolve_model(model, ARCH, _build, UNet3D, dev)
    channel = _channel_for(net, segment)
    from ..preprocess import InPlaneGrid, normalized_work_volume
    from ..slice_spacing import select_frames

    K = volume.shape[0]
    frames = select_frames(K, spacing[0], net.config.slice_spacing_mm if match_slice_spacing else None)
    grid = InPlaneGrid(volume.shape[1:], net.config.size)
    work = normalized_work_volume(volume, grid, cancel=cancel, frames=frames.work_frames)   # (K' kept frames, S, S)
    sw = SlidingWindow(net, work, dev, batch, progress, cancel, frames)
    if channel is None:
        seed_work = {s: (grid.to_work(torch.from_numpy(seed_mask[s:s + 1].astype(np.float32)))[0] > 0.5).float()
                     for s in slices}
        channel = choose_channel(sw, seed_work, slices)
        sw.done = 0
    out = np.zeros(volume.shape, np.uint8)
    pk = net.config.patch[0]
    step = max(pk, (int(chunk) // pk) * pk)
    for c0 in range(0, K, step):
        c1 = min(K, c0 + step)
        prob = sw.predict_sweep(c0, c1)[channel]                                                # (n, S, S)
        for s0 in range(0, c1 - c0, 32):   # the chunk's last piece may be shorter (step need not be a multiple of 32)
            check_cancel(cancel)
            s1 = min(s0 + 32, c1 - c0)
            out[c0 + s0:c0 + s1] = (grid.to_volume(prob[s0:s1]) > 0.5).numpy()
    return restore_painted(out, seed_mask, slices)


unet3d.prepare = prepare_torch  # type: ignore[attr-defined]
# the comparison reads the model file once per run (registry.load_once), not once per muscle
unet3d.load_once = loaded_once(lambda model: resolve_model(model, ARCH, _build, UNet3D, "cpu"))  # type: ignore[attr-defined]
