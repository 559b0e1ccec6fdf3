"""Review 41: "no muscle here" marks and painted slices on a thinned sweep (each test failed before its fix).

An 81-slice sweep at 0.25 mm and a copier that knows its training spacing (1 mm or the shipped 1.108 mm)
run on every 4th frame. A mark or a painted slice within one thinning step of another annotated slice
used to share that slice's frame with it, and only one of them kept it.
"""
import numpy as np
import pytest

from fake_models import CopyModel
from ifssnet.errors import InputError
from ifssnet.propagate import propagate
from ifssnet.seeds import cut_seeds
from ifssnet.slice_spacing import select_frames

K, J, I = 81, 40, 40


class _SpacedCopy(CopyModel):
    """A copier (each window's mask input, carried on) that knows its training slice spacing (mm)."""

    def __init__(self, spacing_mm=1.0):
        super().__init__(size=32)
        self.config.slice_spacing_mm = spacing_mm


def _tube():
    m = np.zeros((K, J, I), np.uint8)
    m[:, 10:30, 8:32] = 1
    return m


def _volume():
    return np.random.default_rng(0).integers(0, 255, (K, J, I)).astype(np.uint8)


def _present(painted, marks, spacing_mm=0.25, network_mm=1.0, m=None):
    """(K,) bool: the slices with muscle after propagating ``m`` painted on ``painted``, marked empty on ``marks``."""
    m = _tube() if m is None else m
    seeds = cut_seeds(m, painted).with_empty(marks)
    res = propagate(_volume(), {"T": seeds}, _SpacedCopy(network_mm), device="cpu", slice_spacing_mm=spacing_mm)
    for k in painted:
        np.testing.assert_array_equal(res.masks["T"][k], m[k])       # painted slices come out as painted
    return res.masks["T"].any(axis=(1, 2)), res


@pytest.mark.parametrize("network_mm", [1.0, 1.108])
@pytest.mark.parametrize("painted, mark", [((39, 40, 41), 42), ((38, 39, 40), 41), ((39, 40, 41), 43),
                                           ((39, 40, 41), 38), ((39, 40, 41), 37)])
def test_a_mark_within_a_step_of_the_painted_slices_ends_the_run_there(painted, mark, network_mm):
    """The mark at 42 (or 41 after 38-40) lay nearest to the painted slices' frame, lost its claim to the
    middle painted slice, and no frame carried it: the run went on past it to the sweep's end."""
    present, res = _present(painted, (mark,), network_mm=network_mm)
    assert res.frames < K
    if mark > max(painted):
        assert not present[mark:].any(), np.flatnonzero(present)
        assert present[:max(painted) + 1].all()
    else:
        assert not present[:mark + 1].any(), np.flatnonzero(present)
        assert present[min(painted):].all()


@pytest.mark.parametrize("painted, marks", [((78, 79, 80), (76,)), ((77, 78, 79), (80,)), ((0, 1, 2), (4,)),
                                            ((1, 2, 3), (0,)), ((39, 40, 41), (0, 80))])
def test_marks_at_the_sweeps_ends(painted, marks):
    """Painted 78-80 and a mark at 76: the mark shared frame 76 with painted 78 and lost it; the run
    from the painted frames went back over it to slice 0."""
    present, _ = _present(painted, marks)
    lo = max([k for k in marks if k < min(painted)], default=-1)
    hi = min([k for k in marks if k > max(painted)], default=K)
    assert not present[:lo + 1].any() and not present[hi:].any(), np.flatnonzero(present)
    assert present[min(painted):max(painted) + 1].all()
    away = [k for k in range(K) if lo + 6 < k < hi - 6]     # 6: a step and a half of a mark's say
    assert present[away].all(), np.flatnonzero(present)


def test_a_mark_between_two_groups_within_a_step_comes_out_as_on_every_frame():
    """Painted 38-40 and 44-46, a mark at 42: the mark shared frame 40 with paint and was dropped, so
    41 and 43 were interpolated between two painted frames and came out as muscle around the empty 42.
    Every frame gives 41-43 empty (each is as near the mark as the paint); so does the thinned sweep."""
    painted, marks = (38, 39, 40, 44, 45, 46), (42,)
    thin, _ = _present(painted, marks)
    every, _ = _present(painted, marks, spacing_mm=None)
    np.testing.assert_array_equal(thin, every)
    assert not thin[41:44].any()


def test_a_mark_between_two_groups_far_apart_is_empty_and_both_groups_reach_it():
    """No collision: the mark has a frame of its own, the runs from both groups meet it (no fix needed)."""
    present, _ = _present((20, 21, 22, 60, 61, 62), (41,))
    assert not present[41]
    assert present[:30].all() and present[52:].all()


def test_painted_slices_keep_their_frame_next_to_marks():
    """Painted 39-40 (shape B) and marks 41-42 claimed one frame; the middle one, the mark at 41, took
    it, so no frame carried B: the slices before 39 were interpolated from the run of the group at 20-22
    (shape A) towards the mark's 0, and B was missing there."""
    m = np.zeros((K, J, I), np.uint8)
    m[:30, 10:20, 8:32] = 1                              # A, painted at 20-22
    m[30:, 20:30, 8:32] = 1                              # B, painted at 39-40
    present, res = _present((20, 21, 22, 39, 40), (41, 42), m=m)
    out = res.masks["T"]
    assert out[36:39, 20:30, 8:32].all(), out[30:39, 25, 20]      # the backward run from B's frame
    assert not present[41:].any()


def test_every_mark_is_a_frame_and_every_painted_claim_keeps_a_painted_frame():
    """:func:`select_frames` with ``marks``: a mark never takes a painted slice's frame, nor the reverse."""
    for keep, marks in (((39, 40, 41, 42), (42,)), ((39, 40, 41, 42), (41, 42)), ((76, 78, 79, 80), (76,)),
                        ((77, 78, 79, 80), (80,)), ((38, 39, 40, 42, 44, 45, 46), (42,)), ((44, 45), (44, 45))):
        sel = select_frames(81, 0.25, 1.0, keep=keep, marks=marks)
        assert set(marks) <= set(sel.frames.tolist()), (keep, marks, sel.frames)
        painted = sorted(set(keep) - set(marks))
        for k in painted:                                # within half a step of a painted frame
            assert any(abs(k - f) <= 2 for f in sel.frames if f in painted), (keep, marks, sel.frames)
        assert np.all(np.diff(sel.frames) > 0)
    plain = select_frames(81, 0.25, 1.0, keep=(39, 40, 41, 62))
    np.testing.assert_array_equal(plain.frames, select_frames(81, 0.25, 1.0, keep=(39, 40, 41, 62), marks=()).frames)
    with pytest.raises(InputError, match=r"\[81\] fall outside the sweep's 0..80"):
        select_frames(81, 0.25, 1.0, keep=(39, 40, 41), marks=(81,))


class _BrightCopy(CopyModel):
    """Carries the mask input on where the image is bright (> 1.5 after the z-score): a mask painted on
    another frame's image is cut to that image."""

    def __init__(self, spacing_mm=1.0):
        super().__init__(size=32)
        self.config.slice_spacing_mm = spacing_mm

    def prob(self, image, prev):
        return ((prev[:, :, -1:] > 0.5) & (image > 1.5)).float()


def test_a_painted_slice_next_to_another_segments_paint_sits_on_its_own_image():
    """A painted at 71 alone, B at 74-75: both claimed frame 72, B's 74 kept it, and A's 71 gave its mask to
    frame 68, three slices away, where A lies elsewhere (it moves at slice 70): 66-68 came out with A's
    shape of 71, not the one the image shows. Each painted group now keeps a frame of its own."""
    r1, r2 = (slice(4, 14), slice(4, 14)), (slice(4, 14), slice(22, 32))     # A from slice 70 on / before
    a = np.zeros((K, J, I), np.uint8)
    a[70:, r1[0], r1[1]] = 1
    a[:70, r2[0], r2[1]] = 1
    b = np.zeros((K, J, I), np.uint8)
    b[:, 24:34, 6:34] = 1
    vol = (100 * (a | b)).astype(np.float32)
    seeds = {"A": cut_seeds(a, (10, 11, 12, 71)), "B": cut_seeds(b, (30, 31, 74, 75))}
    res = propagate(vol, seeds, _BrightCopy(), device="cpu", slice_spacing_mm=0.25)
    assert res.frames < K
    out = res.masks["A"]
    np.testing.assert_array_equal(out[60:70, r1[0], r1[1]], 0)       # A's shape of 71 did not go back to 66-68
    assert out[13:70, 5:13, 23:31].all() and out[71:, 5:13, 5:13].all()     # inside the shapes (their rims resample)
    assert not out[71:, r2[0], r2[1]].any()
    assert res.masks["B"][:, 25:33, 7:33].all() and not res.masks["B"][:, :22].any()


def test_a_muscle_painted_from_its_first_slice_next_to_anothers_paint_does_not_start_before_it():
    """Network at 1.108 mm: A painted 43-48, B from its first slice 51 to 55. B's 51 was not a frame (A's 48 took
    its place) and gave its mask to frame 48, three slices before B starts, though B's group has frame 54 of its
    own: B came out on 47, 49 and 50. A painted slice whose group has a frame now stays with it."""
    ra, rb = (slice(4, 14), slice(4, 36)), (slice(24, 34), slice(4, 36))
    a = np.zeros((K, J, I), np.uint8)
    a[:, ra[0], ra[1]] = 1
    b = np.zeros((K, J, I), np.uint8)
    b[51:, rb[0], rb[1]] = 1
    vol = (100 * (a | b)).astype(np.float32)
    seeds = {"A": cut_seeds(a, range(43, 49)), "B": cut_seeds(b, range(51, 56))}
    res = propagate(vol, seeds, _BrightCopy(1.108), device="cpu", slice_spacing_mm=0.25)
    assert res.frames < K
    assert np.flatnonzero(res.masks["B"].any(axis=(1, 2)))[0] == 51
    assert res.masks["B"][51:, 25:33, 5:35].all() and res.masks["A"][:, 5:13, 5:35].all()
