"""Seed sets, seeding protocols, the painted axis, validation, and seed files on disk."""
import numpy as np
import pytest

from ifssnet.errors import InputError, SeedError
from ifssnet.seeds import (SeedSet, annotated_slices, cut_seeds, find_axis, largest_slices, sparse_painted_slices,
                           make_seed_segmentation, protocol_slices, seed_groups, validate_seeds)


def _crescent(j=60, i=100, r_out=25, shift=10, r_in=22, shape=(80, 100)):
    jj, ii = np.ogrid[:shape[0], :shape[1]]
    outer = (jj - j) ** 2 + (ii - i / 2) ** 2 < r_out ** 2
    inner = (jj - j - shift) ** 2 + (ii - i / 2) ** 2 < r_in ** 2
    return outer & ~inner


def _muscle(k=120, first=20, last=99, peak=70):
    """A crescent-shaped muscle on slices first..last whose cross-section is largest at ``peak``."""
    m = np.zeros((k, 80, 100), np.uint8)
    for kk in range(first, last + 1):
        scale = 1 - abs(kk - peak) / (2.0 * max(peak - first, last - peak))
        m[kk] = _crescent(r_out=25 * scale + 4, r_in=22 * scale + 3)
    return m


# ----------------------------------------------------------------------------------- SeedSet
def test_seedset_normalises_and_validates():
    mask = np.zeros((6, 4, 4), bool)
    mask[[1, 4], 1:3, 1:3] = True
    s = SeedSet(mask=mask, slices=[4, 1, 1, 3])
    assert s.slices == (1, 3, 4) and s.mask.dtype == np.uint8 and s.mask.max() == 1
    assert s.groups == [(1,), (3, 4)]
    assert s.empty_slices == (3,)
    assert s.shape == (6, 4, 4)
    with pytest.raises(SeedError, match="not annotated"):
        SeedSet(mask, (1,))
    with pytest.raises(SeedError, match="outside"):
        SeedSet(mask, (1, 4, 6))
    with pytest.raises(InputError):
        SeedSet(mask[0], (1,))
    labels = mask.astype(np.uint8) * 255
    assert SeedSet(labels, (1, 4)).mask.max() == 1


def test_seed_groups():
    assert seed_groups((5, 3, 4, 10, 12, 11, 40, 40)) == [(3, 4, 5), (10, 11, 12), (40,)]
    assert seed_groups(()) == []
    assert seed_groups([7]) == [(7,)]


# ---------------------------------------------------------------------------------- protocols
def test_largest_slices_centred_and_clipped():
    m = _muscle(peak=70)
    assert largest_slices(m) == (69, 70, 71)
    assert largest_slices(m, count=4) == (69, 70, 71, 72)
    assert largest_slices(m, count=1) == (70,)
    edge = np.zeros((10, 3, 3), np.uint8)
    edge[0, 1, 1] = 1
    assert largest_slices(edge) == (0, 1, 2)
    edge[:] = 0
    edge[9] = 1
    assert largest_slices(edge, 4) == (6, 7, 8, 9)
    assert largest_slices(edge[7:], 5) == (0, 1, 2)  # fewer slices than count: all of them
    with pytest.raises(SeedError, match="empty"):
        largest_slices(np.zeros((5, 3, 3), np.uint8))
    with pytest.raises(InputError):
        largest_slices(m, count=0)


def test_largest_slices_stay_inside_the_muscle():
    """A muscle largest at its first (or last) slice, away from the volume's edge, got a seed on the empty slice
    next to it (a uniform bar over slices 10-289 gave 9, 10, 11); the run now stays on the muscle's slices, and
    only a muscle shorter than the run reaches past its ends."""
    bar = np.zeros((300, 4, 4), np.uint8)
    bar[10:290, 1:3, 1:3] = 1
    assert largest_slices(bar) == (10, 11, 12)
    bar[289, :, :] = 1                                   # now largest at its last slice
    assert largest_slices(bar) == (287, 288, 289)
    short = np.zeros((30, 4, 4), np.uint8)
    short[10:12] = 1                                     # 2 slices of muscle, runs of 3: one empty slice beside them
    assert largest_slices(short) == (9, 10, 11)


@pytest.mark.parametrize("first,last,every,count", [(20, 99, 30, 3), (0, 119, 100, 3), (5, 60, 10, 2),
                                                    (10, 12, 100, 3), (40, 41, 100, 3), (0, 399, 100, 3)])
def test_paper_protocol_inside_extent_and_centred(first, last, every, count):
    k = max(120, last + 1)
    m = np.zeros((k, 4, 4), np.uint8)
    m[first:last + 1, 1:3, 1:3] = 1
    sl = protocol_slices(m, "paper", count=count, every=every)
    groups = seed_groups(sl)
    if last - first + 1 < count:  # too short for one group: the largest cross-section's slices
        assert sl == largest_slices(m, count)
        return
    assert all(len(g) == count for g in groups)
    assert np.all(np.diff([g[0] for g in groups]) == every)
    assert first <= sl[0] and sl[-1] <= last
    before, after = sl[0] - first, last - sl[-1]
    assert abs(before - after) <= 1 and before < every  # the pattern is centred in the extent
    assert len(groups) == (last - first + 1 - count) // every + 1  # as many groups as fit


def test_protocols_dispatch_and_errors():
    m = _muscle()
    assert protocol_slices(m, "3-seeds") == largest_slices(m)
    with pytest.raises(InputError, match="protocol"):
        protocol_slices(m, "random")
    with pytest.raises(InputError):
        protocol_slices(m, "paper", count=3, every=2)
    with pytest.raises(SeedError):
        protocol_slices(np.zeros_like(m), "paper")


def test_cut_seeds():
    m = _muscle()
    s = cut_seeds(m, [71, 69, 70, 5])
    assert s.slices == (5, 69, 70, 71)
    np.testing.assert_array_equal(s.mask[69:72], m[69:72])
    assert s.mask[:69].sum() == 0 and s.mask[72:].sum() == 0
    assert s.empty_slices == (5,)  # annotated, outside the muscle: "no muscle here"
    s.mask[70] = 0
    assert m[70].any()  # a copy
    with pytest.raises(SeedError):
        cut_seeds(m, [120])


# ------------------------------------------------------------------------------ painted axis
@pytest.mark.parametrize("count", [1, 3, 7])
def test_find_axis_each_axis(count):
    lab = np.zeros((120, 80, 100), np.uint8)
    lab[30:30 + count] = _crescent()
    lab[90:93] = _crescent(r_out=20, r_in=17)
    for axis, arr in ((0, lab), (1, lab.transpose(1, 0, 2)), (2, lab.transpose(2, 1, 0))):
        assert find_axis(arr) == axis
        assert annotated_slices(arr, axis) == tuple(range(30, 30 + count)) + (90, 91, 92)


def test_find_axis_rejects_two_views():
    lab = np.zeros((120, 80, 100), np.uint8)
    lab[50:53] = _crescent()
    side = np.zeros_like(lab, dtype=bool)
    side[30:70] = _crescent()
    lab[:, :, 50] |= side[:, :, 50]  # a stroke painted in the sagittal view, crossing the group
    with pytest.raises(SeedError, match="two views"):
        find_axis(lab)


def test_find_axis_empty_and_ambiguous():
    with pytest.raises(SeedError, match="Nothing is painted"):
        find_axis(np.zeros((5, 5, 5), np.uint8))
    cube = np.zeros((9, 9, 9), np.uint8)
    cube[2:6, 2:6, 2:6] = 1
    with pytest.raises(SeedError):
        find_axis(cube)
    with pytest.raises(InputError):
        annotated_slices(cube, 3)


# -------------------------------------------------------------------------------- validation
def test_validate_seeds():
    m = _muscle()
    ok = cut_seeds(m, [20, 60, 99])  # three slices far apart are enough
    assert validate_seeds(ok) is ok
    with pytest.raises(SeedError, match="not painted on any slice"):
        validate_seeds(cut_seeds(m, []))
    with pytest.raises(SeedError) as err:
        validate_seeds(cut_seeds(m, [60, 61]), name="SOL")
    assert "Paint the muscle on at least 3 slices (consecutive or far apart), then Propagate again." in str(err.value)
    assert "'SOL' is painted on 2 slices" in str(err.value)
    with pytest.raises(SeedError, match="empty on every painted slice"):
        validate_seeds(cut_seeds(m, [0, 1, 2]))
    validate_seeds(cut_seeds(m, [60, 61]), min_slices=2)


# --------------------------------------------------------------------------------- seed files
def _reference():
    from ifssnet.io import Geometry, Segment, Segmentation

    geo = Geometry(spacing=(0.4, 0.5, 0.6), origin=(1.0, -2.0, 3.5),
                   direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    sol = _muscle(first=20, last=99, peak=70)
    gm = _muscle(first=5, last=50, peak=30)
    return Segmentation([Segment("GM", gm, (0.9, 0.2, 0.2)), Segment("SOL", sol, (0.2, 0.4, 0.9))], geo)


def test_make_seed_segmentation_modes():
    ref = _reference()
    sol = ref.mask("SOL")
    seg = make_seed_segmentation(ref, ["SOL"])
    assert seg.names == ["SOL"] and seg.geometry == ref.geometry
    s = seg.get("SOL")
    assert s.annotated.axis == 0 and s.annotated.slices == largest_slices(sol)
    assert s.color == (0.2, 0.4, 0.9)
    np.testing.assert_array_equal(s.mask, cut_seeds(sol, s.annotated.slices).mask)

    paper = make_seed_segmentation(ref, None, every=30)
    assert paper.names == ["GM", "SOL"]
    assert paper.get("SOL").annotated.slices == protocol_slices(sol, "paper", every=30)

    at = make_seed_segmentation(ref, ["GM"], at=10, count=2).get("GM")
    assert at.annotated.slices == (10, 11)
    rep = make_seed_segmentation(ref, ["GM"], at=10, every=40).get("GM")
    assert rep.annotated.slices == (10, 11, 12, 50, 51, 52, 90, 91, 92)

    with pytest.raises(InputError):
        make_seed_segmentation(ref, ["TA"])
    with pytest.raises(InputError, match="--at"):
        make_seed_segmentation(ref, ["GM"], at=119)


def test_make_seed_segmentation_empty_segment():
    from ifssnet.io import Segment, Segmentation

    ref = _reference()
    empty = Segmentation(ref.segments + [Segment("GL", np.zeros_like(ref.mask("GM")))], ref.geometry)
    with pytest.raises(SeedError, match="'GL' is empty"):
        make_seed_segmentation(empty, ["GL"])
    # With --at an empty segment gives annotated, empty slices ("no muscle here").
    gl = make_seed_segmentation(empty, ["GL"], at=3).get("GL")
    assert gl.annotated.slices == (3, 4, 5) and not gl.mask.any()


def test_seed_file_round_trip_keeps_empty_annotated_slices(tmp_path):
    from ifssnet.io import read_segmentation, write_segmentation

    ref = _reference()
    # GM ends at slice 50: groups at 10, 50 and 90; 51, 52 and 90..92 are annotated but empty.
    seeds = make_seed_segmentation(ref, ["GM", "SOL"], at=10, every=40)
    path = write_segmentation(seeds, tmp_path / "seeds.seg.nrrd")
    back = read_segmentation(path)
    assert back.names == ["GM", "SOL"]
    for name in back.names:
        a, b = seeds.get(name), back.get(name)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert b.annotated == a.annotated
    gm = back.get("GM")
    assert set(SeedSet(gm.mask, gm.annotated.slices).empty_slices) == {51, 52, 90, 91, 92}
    # Without the record, the labelmap alone would lose them: the painted slices are fewer.
    assert annotated_slices(gm.mask, 0) == (10, 11, 12, 50)
    assert 30 not in gm.annotated.slices  # an unannotated slice stays unannotated
    assert back.geometry.same_as(ref.geometry)


def test_end_slices_are_the_first_empty_slices_past_the_extent_inside_the_volume():
    from ifssnet.seeds import end_slices

    m = np.zeros((20, 6, 6), np.uint8)
    m[5:15, 1:4, 1:4] = 1
    assert end_slices(m) == (4, 15)
    m[0:15] = 1                                  # the muscle runs off the start of the sweep: one end inside
    assert end_slices(m) == (15,)
    m[:] = 1
    assert end_slices(m) == ()
    with pytest.raises(SeedError):
        end_slices(np.zeros((5, 4, 4), np.uint8))


def test_ends_protocol_adds_empty_annotated_slices_at_both_ends():
    m = np.zeros((30, 8, 8), np.uint8)
    m[6:24, 2:6, 2:6] = 1
    m[14, 1:7, 1:7] = 1                          # the largest cross-section
    assert protocol_slices(m, "3-seeds+ends") == (5, 13, 14, 15, 24)
    s = cut_seeds(m, protocol_slices(m, "3-seeds+ends"))
    assert s.empty_slices == (5, 24) and s.groups == [(5,), (13, 14, 15), (24,)]


def test_with_empty_marks_unpainted_slices_and_refuses_painted_or_outside_ones():
    m = np.zeros((30, 8, 8), np.uint8)
    m[6:24, 2:6, 2:6] = 1
    s = cut_seeds(m, (13, 14, 15))
    marked = s.with_empty([25, 2])
    assert marked.slices == (2, 13, 14, 15, 25) and marked.empty_slices == (2, 25)
    np.testing.assert_array_equal(marked.mask, s.mask)
    with pytest.raises(SeedError, match="painted"):
        s.with_empty([14])
    with pytest.raises(SeedError, match="outside"):
        s.with_empty([30])
    assert s.slices == (13, 14, 15)              # unchanged: a new set is returned


def test_make_seed_segmentation_with_ends():
    ref = _reference()
    gm = ref.mask("GM")
    rows = np.flatnonzero(gm.reshape(gm.shape[0], -1).any(axis=1))
    seeds = make_seed_segmentation(ref, ["GM"], ends=True).get("GM")
    plain = make_seed_segmentation(ref, ["GM"]).get("GM")
    ends = {int(k) for k in (rows[0] - 1, rows[-1] + 1) if 0 <= k < gm.shape[0]}
    assert set(seeds.annotated.slices) == set(plain.annotated.slices) | ends and ends
    np.testing.assert_array_equal(seeds.mask, plain.mask)


def test_slice_extent_along_any_axis():
    from ifssnet.seeds import slice_extent

    m = np.zeros((10, 8, 6), np.uint8)
    m[3:7, 2:5, 1] = 1
    assert slice_extent(m) == (3, 6) and slice_extent(m, 1) == (2, 4) and slice_extent(m, 2) == (1, 1)
    assert slice_extent(np.zeros_like(m)) is None


def test_paint_on_some_slices_is_told_from_a_complete_annotation():
    """Slices of one view with gaps between: sparse, along that axis. A connected muscle (paint on every slice of
    its extent along each axis), one that misses a slice, or one run of consecutive slices: complete (None)."""
    k, j, i = np.indices((40, 30, 30))
    muscle = ((k - 20) ** 2 / 15 ** 2 + (j - 15) ** 2 / 8 ** 2 + (i - 15) ** 2 / 10 ** 2 <= 1).astype(np.uint8)
    assert sparse_painted_slices(muscle) is None
    missed = muscle.copy()
    missed[18] = 0                                             # one slice forgotten in a complete annotation
    assert sparse_painted_slices(missed) is None
    for axis, slices in ((0, (8, 20, 31)), (2, (9, 15, 21)), (1, (10, 11, 12, 20))):
        painted = np.zeros_like(muscle)
        index = [slice(None)] * 3
        index[axis] = list(slices)
        painted[tuple(index)] = muscle[tuple(index)]
        assert sparse_painted_slices(painted) == (axis, slices)
    group = np.zeros_like(muscle)
    group[19:22] = muscle[19:22]
    assert sparse_painted_slices(group) is None and sparse_painted_slices(np.zeros_like(muscle)) is None
