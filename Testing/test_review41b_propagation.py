"""Review 41b: propagation edge cases on tiny inputs with stand-in networks (each test failed before its fix)."""
import warnings

import numpy as np
import torch

from fake_models import CopyModel, EmptyModel
from ifssnet.propagate import propagate
from ifssnet.seeds import cut_seeds


def _volume(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 255, shape).astype(np.uint8)


def test_a_seed_smaller_than_two_working_pixels_is_propagated():
    """The stop compared each slice's area with ``max(2, 0.1 x the seeds' area)`` working-grid pixels: a
    muscle painted as 1 pixel (its tip, or a coarse working grid) was "quiet" on every slice although the
    network carried it unchanged, so both runs ended after ``patience`` slices and dropped what they had."""
    K, J, I = 30, 32, 32                                  # the working grid (32) is the volume's: no resampling
    m = np.zeros((K, J, I), np.uint8)
    m[:, 16, 16] = 1
    res = propagate(_volume((K, J, I)), {"T": cut_seeds(m, (14, 15, 16))}, CopyModel(size=32), device="cpu")
    np.testing.assert_array_equal(res.masks["T"], m)
    assert res.ended["T"] == []


def test_a_run_still_ends_where_a_tiny_muscle_vanishes():
    """The floor still ends a run whose mask vanishes (the fix lowers it only below the seeds' own area)."""
    K, J, I = 30, 32, 32
    m = np.zeros((K, J, I), np.uint8)
    m[:, 16, 16] = 1
    res = propagate(_volume((K, J, I)), {"T": cut_seeds(m, (14, 15, 16))}, EmptyModel(size=32), device="cpu")
    assert res.masks["T"].any(axis=(1, 2)).sum() == 3 and len(res.ended["T"]) == 2


def test_confidence_drops_where_the_muscle_is_lost_between_two_painted_slices():
    """Painted with muscle on 3-5 and 22-24, a network that loses it leaves 6-21 empty. The muscle is one
    run of slices, so those empty slices are wrong; they scored 1 (an empty slice had no distance term)."""
    K, J, I = 28, 40, 40
    m = np.zeros((K, J, I), np.uint8)
    m[:, 10:30, 10:30] = 1
    res = propagate(_volume((K, J, I)), {"T": cut_seeds(m, (3, 4, 5, 22, 23, 24))}, EmptyModel(size=32),
                    device="cpu", patience=3)
    conf = res.confidence["T"]
    assert not res.masks["T"][6:22].any()
    assert conf[13] < 0.5 and conf[13] < conf[7] < conf[6]
    assert np.all(conf[:3] == 1.0) and np.all(conf[25:] == 1.0)     # past the paint: no muscle is not known wrong
    assert np.all((conf >= 0) & (conf <= 1)) and conf.dtype == np.float32


def test_a_no_muscle_mark_between_painted_slices_keeps_an_empty_gap_confident():
    """Two pieces (a mark between them): the empty slices around the mark are not known to be wrong."""
    K, J, I = 28, 40, 40
    m = np.zeros((K, J, I), np.uint8)
    m[:, 10:30, 10:30] = 1
    m[14] = 0
    seeds = cut_seeds(m, (3, 4, 5, 14, 22, 23, 24))
    res = propagate(_volume((K, J, I)), {"T": seeds}, EmptyModel(size=32), device="cpu", patience=3)
    assert np.all(res.confidence["T"] == 1.0)


class _OomAfter(CopyModel):
    """Raises CUDA's out-of-memory error on its 4th window, once (a GPU that fills up mid-run)."""

    def __init__(self):
        super().__init__(size=32)
        self.calls = 0

    def forward(self, image, prev_mask, state=None):
        self.calls += 1
        if self.calls == 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(image, prev_mask, state)


def test_progress_does_not_go_back_when_a_gpu_runs_out_of_memory():
    """The CPU fallback starts the propagation again: it reported "preparing" and "propagating" from 0 after
    the first try had reached window 3, so Slicer's bar jumped back. Each stage's count now only goes up,
    and no stage comes back after a later one."""
    K, J, I = 20, 40, 40
    m = np.zeros((K, J, I), np.uint8)
    m[:, 10:30, 10:30] = 1
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = propagate(_volume((K, J, I)), {"T": cut_seeds(m, (8, 9, 10))}, _OomAfter(), device="cpu",
                        batch_size=1, progress=lambda *a: seen.append(a))
    np.testing.assert_array_equal(res.masks["T"], m)
    stages = [s for s, _, _ in seen]
    order = [s for i, s in enumerate(stages) if i == 0 or s != stages[i - 1]]
    assert order == ["preparing", "propagating", "writing result"], order
    for stage in set(stages):
        fractions = [d / t for s, d, t in seen if s == stage]
        assert fractions == sorted(fractions), (stage, fractions)


class _Overflowing(CopyModel):
    """A copier whose logits overflow as float16 autocast can make them: +inf for the muscle, -inf for the
    background, and NaN on a corner of every slice."""

    def forward(self, image, prev_mask, state=None):
        fg = (prev_mask[:, :, -1:] > 0.5).expand_as(prev_mask)
        logit = torch.where(fg, torch.tensor(float("inf")), torch.tensor(-float("inf")))
        logit[..., :2, :2] = float("nan")
        return torch.cat([torch.zeros_like(logit), logit], dim=1), super().forward(image, prev_mask, state)[1]


def test_non_finite_logits_give_finite_confidence_and_keep_the_muscle():
    """softmax([0, +inf]) is NaN: the muscle where the network was surest came out as background, and one
    NaN logit made every propagated slice's confidence NaN (the JSON sidecar's values out of [0, 1])."""
    K, J, I = 20, 32, 32
    m = np.zeros((K, J, I), np.uint8)
    m[:, 10:26, 8:24] = 1
    res = propagate(_volume((K, J, I)), {"T": cut_seeds(m, (8, 9, 10))}, _Overflowing(size=32), device="cpu")
    np.testing.assert_array_equal(res.masks["T"], m)
    conf = res.confidence["T"]
    assert np.all(np.isfinite(conf)) and np.all((conf >= 0) & (conf <= 1)), conf


def test_a_patience_or_batch_size_below_one_is_refused():
    """``patience=0`` ended every run on its first new slice (the mask a copier carried on was cut to the
    painted slices and "ended" named slices inside the muscle); ``batch_size=0`` raised range()'s ValueError."""
    import pytest

    from ifssnet.errors import InputError

    K, J, I = 20, 40, 40
    m = np.zeros((K, J, I), np.uint8)
    m[:, 10:30, 10:30] = 1
    for kw in ({"patience": 0}, {"patience": -1}, {"patience": 2.5}, {"batch_size": 0}):
        with pytest.raises(InputError, match="must be 1 or more"):
            propagate(_volume((K, J, I)), {"T": cut_seeds(m, (8, 9, 10))}, CopyModel(size=32), device="cpu", **kw)
