"""PG-Net: reference-guided mask propagation (Oh et al., CVPR 2018, "RGMP"), the paper's 2-D baseline.

Our own small re-implementation of the idea, trained from scratch on the phantom cases:

- A Siamese 2-D encoder (one module, so the weights are shared) sees two streams of 2 channels each:
  the *reference* (the nearest painted slice and its mask) and the *target* (the current slice and
  the previous slice's predicted mask), as in the original where image and mask are concatenated at
  the channel axis.
- The two deepest feature maps are concatenated at the channel axis and merged by a global
  convolution block (Peng et al. 2017: a ``k x 1`` then ``1 x k`` branch plus a ``1 x k`` then
  ``k x 1`` branch, summed) and a residual block.
- A refinement decoder upsamples by 2 per level; each level merges the target stream's encoder
  features of that scale (skip connections) through a residual block, as RGMP's refinement modules.
  It ends in one logit per pixel (sigmoid foreground probability).

Where we depart from RGMP: no ImageNet ResNet-50 (a small encoder of conv-GroupNorm-ReLU blocks,
widths ``width * (1, 1, 2, 4, 8)``: ultrasound is grey-level, and a 100 MB backbone is too heavy for
Slicer users); GroupNorm instead of frozen BatchNorm (batches are small); sigmoid instead of a
2-channel softmax (equivalent for two classes); training on runs of slices rather than synthetic
image pairs plus videos. Tensor shapes: images and masks ``(B, 1, S, S)``, ``S`` a multiple of
``2 ** stages``; logits ``(B, 1, S, S)``.

Training (:func:`train_pgnet`), with full supervision and the Dice loss as in the IFSS-Net paper's
baseline: a random run of ``run_length`` slices of one muscle (:func:`ifssnet.dataset.sample_run`,
starting on a slice where the muscle is present, random direction); its first slice is the
reference; a chain of ``chain`` consecutive slices somewhere in the run starts from the true mask of
the slice before it and then feeds each predicted probability map to the next slice, with
backpropagation through the chain (RGMP's recurrent training). The loss is 1 - soft Dice over the chain.

Propagation (:func:`pgnet`): slice to slice along axis 0 from the painted slices, in both
directions. Each unpainted slice is reached from its nearest painted slice (ties go to the lower
one), which is also its reference: between two painted groups the gap is split at its midpoint,
the lower half propagated upwards from the lower group, the upper half downwards from the upper
one. The previous slice's probability map feeds the next slice; the output is thresholded at 0.5 on
the volume's grid, and painted slices come out exactly as painted. As IFSS-Net does
(:mod:`ifssnet.slice_spacing`), a sweep finer than the network's training sweeps
(``PGNetConfig.slice_spacing_mm``) is propagated on its frames nearest to that spacing, painted
slices among them, and the probabilities come back to every frame by linear interpolation along
the sweep before the threshold. Training records the cases' spacing in a new network.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError, ModelError
from ..progress import CancelLike, ProgressFn, check_cancel, report
from ..propagate_output import finite_logits
from . import check_inputs
from ..loss import soft_dice_loss, weighted_bce_with_logits
from .learned_common import (BaselineTrainConfig, check_cases, fit, prepare_torch, resolve_device, resolve_model)
from .registry import loaded_once

ARCH = "pgnet"
__all__ = ["PGNetConfig", "PGNet", "PGNetTrainConfig", "train_pgnet", "pgnet", "load_pgnet"]


# --------------------------------------------------------------------------------------------------
# Configuration and network


@dataclass
class PGNetConfig:
    """Architecture of PG-Net. ``size``: in-plane working size S (multiple of ``2 ** stages``);
    ``width``: channels of the first level; ``stages``: downsamplings by 2; ``gcn_kernel``: k of the
    global convolution; ``norm_groups``: most GroupNorm groups; ``slice_spacing_mm``: the slice spacing of
    the training sweeps (mm), None when unknown (files written before it was recorded)."""

    size: int = 128
    width: int = 16
    stages: int = 4
    gcn_kernel: int = 7
    norm_groups: int = 8
    slice_spacing_mm: Optional[float] = None

    def __post_init__(self) -> None:
        if self.slice_spacing_mm is not None and not (float(self.slice_spacing_mm) > 0):
            raise ModelError(f"PG-Net slice spacing {self.slice_spacing_mm!r} is not a positive number of mm.",
                             "Record the training sweeps' slice spacing in mm, or leave it unknown (None).")
        if self.stages < 1 or self.width < 1 or self.gcn_kernel < 1 or self.gcn_kernel % 2 == 0:
            raise ModelError(f"Invalid PG-Net configuration {self}.", "Use stages >= 1, width >= 1 and an odd gcn_kernel.")
        if self.size % (2 ** self.stages):
            raise ModelError(f"PG-Net size {self.size} is not a multiple of {2 ** self.stages}.",
                             f"Use a working size that is a multiple of {2 ** self.stages} (e.g. 128).")

    @property
    def widths(self) -> Tuple[int, ...]:
        """Channels per level, full resolution first: ``width * (1, 1, 2, 4, 8, ...)``."""
        return (self.width,) + tuple(self.width * 2 ** max(0, i - 1) for i in range(1, self.stages + 1))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PGNetConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in dict(d).items() if k in names})


def _gn(ch: int, groups: int) -> nn.GroupNorm:
    g = max(d for d in range(1, min(groups, ch) + 1) if ch % d == 0)
    return nn.GroupNorm(g, ch)


class _ConvBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, groups: int, stride: int = 1) -> None:
        super().__init__(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), _gn(cout, groups), nn.ReLU(inplace=True))


class _ResBlock(nn.Module):
    """``x + conv(relu(norm(conv(relu(norm(x))))))`` (pre-activation residual block)."""

    def __init__(self, ch: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_gn(ch, groups), nn.ReLU(), nn.Conv2d(ch, ch, 3, 1, 1, bias=False),
                                  _gn(ch, groups), nn.ReLU(), nn.Conv2d(ch, ch, 3, 1, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class GlobalConvBlock(nn.Module):
    """Peng et al.'s global convolution: ``(k x 1 -> 1 x k) + (1 x k -> k x 1)``, ``(B, cin, H, W) -> (B, cout, H, W)``."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        p = k // 2
        self.a = nn.Sequential(nn.Conv2d(cin, cout, (k, 1), padding=(p, 0)), nn.Conv2d(cout, cout, (1, k), padding=(0, p)))
        self.b = nn.Sequential(nn.Conv2d(cin, cout, (1, k), padding=(0, p)), nn.Conv2d(cout, cout, (k, 1), padding=(p, 0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x) + self.b(x)


class PGEncoder(nn.Module):
    """``(B, 2, S, S)`` (image, mask) -> features per level, full resolution first:
    ``[(B, c0, S, S), (B, c1, S/2, S/2), ..., (B, c_n, S/2^n, S/2^n)]``."""

    def __init__(self, cfg: PGNetConfig) -> None:
        super().__init__()
        w, g = cfg.widths, cfg.norm_groups
        self.stem = nn.Sequential(_ConvBlock(2, w[0], g), _ResBlock(w[0], g))
        self.stages = nn.ModuleList(nn.Sequential(_ConvBlock(w[i - 1], w[i], g, stride=2), _ResBlock(w[i], g))
                                    for i in range(1, len(w)))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        feats = [self.stem(x)]
        for stage in self.stages:
            feats.append(stage(feats[-1]))
        return feats


class _Refine(nn.Module):
    """One decoder level: upsample the coarser map by 2, project it to this level's width, add the
    target stream's skip features (through a conv and a residual block), then a residual block."""

    def __init__(self, skip_ch: int, coarse_ch: int, groups: int) -> None:
        super().__init__()
        self.skip = nn.Sequential(nn.Conv2d(skip_ch, skip_ch, 3, 1, 1), _ResBlock(skip_ch, groups))
        self.up = nn.Conv2d(coarse_ch, skip_ch, 1)
        self.merge = _ResBlock(skip_ch, groups)

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.up(coarse), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.merge(self.skip(skip) + up)


class PGNet(nn.Module):
    """PG-Net (RGMP-style Siamese encoder-decoder), binary output.

    ``forward(ref_image, ref_mask, image, prev_mask)``: each ``(B, 1, S, S)`` float (images z-scored,
    masks in [0, 1]) -> foreground logits ``(B, 1, S, S)``. For propagation, the reference features
    are computed once (:meth:`encode_reference`) and reused for every slice (:meth:`step`).
    """

    def __init__(self, config: Optional[PGNetConfig] = None) -> None:
        super().__init__()
        self.config = cfg = config or PGNetConfig()
        w, g = cfg.widths, cfg.norm_groups
        self.encoder = PGEncoder(cfg)          # one module for both streams: shared weights
        self.gcn = GlobalConvBlock(2 * w[-1], w[-1], cfg.gcn_kernel)
        self.res = _ResBlock(w[-1], g)
        self.refine = nn.ModuleList(_Refine(w[i], w[i + 1], g) for i in reversed(range(len(w) - 1)))
        self.head = nn.Conv2d(w[0], 1, 3, 1, 1)

    def encode_reference(self, ref_image: torch.Tensor, ref_mask: torch.Tensor) -> torch.Tensor:
        """``(B, 1, S, S)`` x 2 -> the reference stream's deepest features ``(B, c_n, S/2^n, S/2^n)``."""
        return self.encoder(torch.cat([ref_image, ref_mask], dim=1))[-1]

    def step(self, ref_feat: torch.Tensor, image: torch.Tensor, prev_mask: torch.Tensor) -> torch.Tensor:
        """Target stream + merge + decoder: logits ``(B, 1, S, S)`` for ``image`` given ``prev_mask``."""
        feats = self.encoder(torch.cat([image, prev_mask], dim=1))
        x = self.res(self.gcn(torch.cat([ref_feat, feats[-1]], dim=1)))
        for module, skip in zip(self.refine, reversed(feats[:-1])):
            x = module(skip, x)
        return self.head(x)

    def forward(self, ref_image, ref_mask, image, prev_mask) -> torch.Tensor:
        return self.step(self.encode_reference(ref_image, ref_mask), image, prev_mask)


def _build(d: dict) -> PGNet:
    return PGNet(PGNetConfig.from_dict(d))


def load_pgnet(path, map_location="cpu"):
    """``(PGNet in eval mode, config dict, meta)`` from a checkpoint written by :func:`train_pgnet`."""
    from .learned_common import load_model_file

    return load_model_file(path, ARCH, _build, map_location)


# --------------------------------------------------------------------------------------------------
# Training


@dataclass
class PGNetTrainConfig(BaselineTrainConfig):
    """:class:`BaselineTrainConfig` plus ``run_length`` (slices per sampled run, reference at its
    first slice) and ``chain`` (slices propagated with backpropagation through time per run)."""

    run_length: int = 32
    chain: int = 6
    bce_weight: float = 0.0           # + this x binary cross-entropy (0 = the paper's Dice loss; see chain_loss)

    def validate(self) -> None:
        super().validate()
        if self.run_length < 2 or self.chain < 1:
            raise InputError("PG-Net training needs run_length >= 2 and chain >= 1.", "Check --run-length.")


def chain_loss(model: PGNet, image: torch.Tensor, mask: torch.Tensor, known: torch.Tensor, start: int,
               chain: int, bce_weight: float = 0.0) -> torch.Tensor:
    """Dice loss of one batch of runs. ``image``, ``mask``: ``(B, L, S, S)``; ``known``: bool ``(B, L)``.

    Reference = slice 0 with its mask; slices ``start .. start+chain-1`` are propagated from the true
    mask of slice ``start - 1``, each prediction (probabilities, with gradient) feeding the next.
    ``bce_weight`` > 0 adds that weight x the voxel-wise binary cross-entropy. With the Dice loss alone
    training collapsed to an empty prediction (loss 0.999 after 90 steps, 2026-11-27): the soft Dice of a
    run past a muscle's end saturates, and a sigmoid driven to 0 passes no gradient back.
    """
    ref = model.encode_reference(image[:, :1], mask[:, :1])
    prev = mask[:, start - 1:start]
    logits = []
    for t in range(start, start + chain):
        z = model.step(ref, image[:, t:t + 1], prev)
        logits.append(z)
        prev = torch.sigmoid(z)
    logit = torch.cat(logits, dim=1)                                   # (B, chain, S, S)
    prob = torch.sigmoid(logit)
    sl = slice(start, start + chain)
    weight = known[:, sl].to(prob.dtype)[:, :, None, None]
    loss = soft_dice_loss(prob, mask[:, sl], weight)
    if bce_weight:
        loss = loss + bce_weight * weighted_bce_with_logits(logit, mask[:, sl], weight)
    return loss


def _pgnet_step_loss(cases):
    from ..dataset import sample_run

    def step_loss(model, rng, cfg: PGNetTrainConfig, device):
        runs, length, misses = [], cfg.run_length, 0
        while len(runs) < cfg.batch:
            run = sample_run(cases[int(rng.integers(len(cases)))], rng, length, 1, cfg.augment)
            if run is not None:
                runs.append(run)
                continue
            misses += 1     # no run of this length starts on the muscle (e.g. a run as long as the case)
            if misses % 8 == 0:
                if length <= 2:
                    raise InputError("No training case has an annotated slice where its muscle is present.",
                                     "Check the annotations (segment names, non-empty masks).")
                length = max(2, length // 2)
        L = min(r.image.shape[0] for r in runs)
        if L < 2:
            raise InputError("The training cases have fewer than 2 slices.", "Give volumes with more slices.")
        chain = min(cfg.chain, L - 1)
        start = int(rng.integers(1, L - chain + 1))
        img = torch.from_numpy(np.stack([r.image[:L] for r in runs])).to(device)
        msk = torch.from_numpy(np.stack([r.mask[:L] for r in runs])).to(device)
        kn = torch.from_numpy(np.stack([r.known[:L] for r in runs])).to(device)
        return chain_loss(model, img, msk, kn, start, chain, cfg.bce_weight)

    return step_loss


def train_pgnet(cases: Sequence, out_path, *, model_config: Optional[PGNetConfig] = None,
                cfg: Optional[PGNetTrainConfig] = None, base_model=None, resume=None, command: str = "",
                data_description: str = "", progress: Optional[ProgressFn] = None, cancel: CancelLike = None,
                on_step=None, device: str = "cpu") -> Path:
    """Train PG-Net with full supervision and the Dice loss on ``cases`` (:class:`ifssnet.dataset.Case`,
    on a working grid of ``model_config.size``); write the checkpoint to ``out_path`` and return it.

    ``resume``: its ``.ckpt.pt`` (continues exactly); ``base_model``: fine-tune from a checkpoint.
    ``on_step`` gets a :class:`~ifssnet.baselines.learned_common.BaselineStepLog` per step.
    """
    check_cases(cases, "PG-Net")
    if resume is not None or base_model is not None:      # the stored network decides the size
        model_config = PGNetConfig.from_dict(load_pgnet(resume or base_model)[1])
    model_config = model_config or PGNetConfig(size=int(cases[0].image.shape[-1]))
    if cases[0].image.shape[-1] != model_config.size:
        raise InputError(f"The cases are on a {cases[0].image.shape[-1]}-pixel grid, the network on {model_config.size}.",
                         "Load the cases with the network's size.")
    from ..train import match_slice_spacing

    cases = match_slice_spacing(list(cases), model_config)  # records a new network's spacing, thins finer cases
    return fit(arch=ARCH, build=_build, model_config=model_config.to_dict(), cfg=cfg or PGNetTrainConfig(),
               step_loss=_pgnet_step_loss(list(cases)), out_path=out_path, resume=resume, base_model=base_model,
               command=command, data_description=data_description, progress=progress, cancel=cancel,
               on_step=on_step, device=device)


# --------------------------------------------------------------------------------------------------
# Propagation (the registered method)


@dataclass
class _Chain:
    ref: int                 # the reference (painted) slice
    slices: List[int]        # slices to predict, in order
    pos: int = 0
    prev: Optional[torch.Tensor] = None   # (1, 1, S, S) probabilities of the last slice
    ref_feat: Optional[torch.Tensor] = None


def plan_chains(slices: Sequence[int], K: int) -> List[Tuple[int, List[int]]]:
    """``(reference slice, slices in propagation order)`` for every run away from a painted slice.

    Each unpainted slice appears in exactly one chain, that of its nearest painted slice (the lower
    one on a tie); the chain starts next to its reference and moves away from it.
    """
    s = sorted(set(int(x) for x in slices))
    chains: List[Tuple[int, List[int]]] = []
    if not s:
        return chains
    if s[0] > 0:
        chains.append((s[0], list(range(s[0] - 1, -1, -1))))
    for a, b in zip(s, s[1:]):
        if b - a <= 1:
            continue
        mid = (a + b) // 2            # slices a+1..mid go to a, mid+1..b-1 to b
        chains.append((a, list(range(a + 1, mid + 1))))
        if mid + 1 <= b - 1:
            chains.append((b, list(range(b - 1, mid, -1))))
    if s[-1] < K - 1:
        chains.append((s[-1], list(range(s[-1] + 1, K))))
    return [c for c in chains if c[1]]


def pgnet(volume, seeds, spacing_kji, *, progress: Optional[ProgressFn] = None, cancel: CancelLike = None,
          model=None, device: str = "auto", batch: int = 16, match_slice_spacing: bool = True,
          exclusive: bool = True):
    """PG-Net as a comparison method: ``volume`` (K, J, I), ``seeds`` (SeedSet) -> uint8 (K, J, I).

    ``seeds`` may also be ``{name: SeedSet}`` (``compare(..., joint=True)``): all segments on one set of
    frames and one normalised volume, returning ``{name: mask}``; with ``exclusive`` (default) the masks
    do not overlap (:mod:`ifssnet.exclusive`, as IFSS-Net's ``propagate``).
    ``model``: a checkpoint path, a loaded :class:`PGNet`, or None for ``$IFSSNET_PGNET_MODEL`` /
    ``Resources/Models/pgnet.pt`` (:class:`ModelError` with the training command if it is missing).
    ``batch``: chains advanced together (one network call per step). ``spacing_kji`` (mm): its first
    entry, the spacing along the sweep, chooses the frames with ``match_slice_spacing`` (module docstring).
    """
    from ..preprocess import InPlaneGrid, normalized_work_volume
    from ..propagate import frames_for
    from ..propagate_output import masks_from_probabilities

    seed_map = dict(seeds) if isinstance(seeds, Mapping) else {"segment": seeds}
    checked = {n: check_inputs(volume, s, spacing_kji) for n, s in seed_map.items()}
    volume, _, _, spacing = next(iter(checked.values()))
    dev = resolve_device(device)
    net = resolve_model(model, ARCH, _build, PGNet, dev)
    frames = frames_for(volume.shape[0], spacing[0], net, match_slice_spacing, seed_map)   # as IFSS-Net's
    grid = InPlaneGrid(volume.shape[1:], net.config.size)
    work = normalized_work_volume(volume, grid, cancel=cancel, frames=frames.work_frames)   # (K', S, S)
    with torch.no_grad():
        probs = {n: _probabilities(net, work, grid, mask, slices, dev, batch, progress, cancel, frames)
                 for n, (_, mask, slices, _) in checked.items()}
    masks = masks_from_probabilities(probs, seed_map, grid, frames, volume.shape, exclusive=exclusive, cancel=cancel)
    return masks if isinstance(seeds, Mapping) else masks["segment"]


def _probabilities(net: PGNet, work, grid, seed_mask, slices, dev, batch, progress, cancel, frames):
    """Chains over the kept ``frames`` (:class:`ifssnet.slice_spacing.FrameSelection`, painted slices
    among them) of ``work`` (K', S, S, normalised): probabilities (K', S, S) on the working grid, the
    painted masks on their frames, 0 where no chain reaches."""
    anchors = frames.anchors(slices)                              # kept frame -> position in slices
    plan = plan_chains(sorted(anchors), len(frames.frames))
    probs = torch.zeros((len(frames.frames), net.config.size, net.config.size))     # kept frames, working grid
    if not plan:
        return probs
    painted = {j: slices[n] for j, n in anchors.items()}    # kept frame -> painted slice
    seed_work = {j: (grid.to_work(torch.from_numpy(seed_mask[k:k + 1].astype(np.float32))) > 0.5).float()
                 for j, k in painted.items()}                                          # (1, S, S)
    for j, m in seed_work.items():
        probs[j] = m[0]
    chains = [_Chain(r, sl) for r, sl in plan]
    total, done = sum(len(c.slices) for c in chains), 0
    for i in range(0, len(chains), batch):   # reference features once per chain
        group = chains[i:i + batch]
        img = torch.stack([work[c.ref:c.ref + 1] for c in group]).to(dev)
        msk = torch.stack([seed_work[c.ref] for c in group]).to(dev)
        feats = net.encode_reference(img, msk)
        for n, c in enumerate(group):
            c.ref_feat, c.prev = feats[n:n + 1], msk[n:n + 1]
    active = list(chains)
    while active:
        check_cancel(cancel)
        for i in range(0, len(active), batch):
            group = active[i:i + batch]
            ks = [c.slices[c.pos] for c in group]
            img = work[ks][:, None].to(dev)
            logit = net.step(torch.cat([c.ref_feat for c in group]), img, torch.cat([c.prev for c in group]))
            # a NaN logit becomes 0 (an unsure 0.5, as IFSS-Net's): fed back as the next mask input, NaN made the
            # network's whole next output NaN (GroupNorm), so the rest of the chain came out as background
            prob = torch.sigmoid(finite_logits(logit))                                       # (B, 1, S, S)
            probs[ks] = prob[:, 0].float().cpu()
            for n, c in enumerate(group):
                c.prev = prob[n:n + 1]
                c.pos += 1
            done += len(group)
        active = [c for c in active if c.pos < len(c.slices)]
        report(progress, "PG-Net", done, total)
    return probs


pgnet.prepare = prepare_torch  # type: ignore[attr-defined]
# the comparison reads the model file once per run (registry.load_once), not once per muscle
pgnet.load_once = loaded_once(lambda model: resolve_model(model, ARCH, _build, PGNet, "cpu"))  # type: ignore[attr-defined]
pgnet.joint = True  # type: ignore[attr-defined]
