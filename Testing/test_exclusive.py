"""Segments propagated together do not overlap (ifssnet.exclusive, and propagate(exclusive=...))."""
import numpy as np
import torch

from fake_models import CopyModel
from ifssnet.exclusive import compete, overlap_voxels, painted_distance, yield_to_painted
from ifssnet.propagate import propagate
from ifssnet.seeds import cut_seeds


def test_compete_keeps_each_voxel_for_the_most_probable_segment_only():
    g = torch.Generator().manual_seed(0)
    probs = {n: torch.rand((4, 9, 9), generator=g) for n in "ABC"}
    before = {n: p.clone() for n, p in probs.items()}
    compete(probs)
    stack = torch.stack([before[n] for n in "ABC"])
    for i, n in enumerate("ABC"):
        others = torch.cat([stack[:i], stack[i + 1:]]).amax(dim=0)
        expected = (before[n] > 0.5) & (before[n] > others)
        assert torch.equal(probs[n] > 0.5, expected)
    won = torch.stack([probs[n] > 0.5 for n in "ABC"]).sum(dim=0)
    assert int(won.max()) <= 1
    assert torch.equal(won > 0, stack.amax(dim=0) > 0.5)          # nothing above 0.5 is lost


def test_compete_changes_nothing_where_no_other_segment_is_above_the_threshold():
    a = torch.tensor([[0.9, 0.7, 0.2, 0.6]])
    b = torch.tensor([[0.4, 0.8, 0.9, 0.1]])
    probs = {"A": a.clone(), "B": b.clone()}
    compete(probs)
    assert torch.equal(probs["A"][0, [0, 3]], a[0, [0, 3]])          # B is below 0.5 there
    assert torch.equal(probs["B"][0, [2]], b[0, [2]])                # A is below 0.5 there
    assert float(probs["A"][0, 1]) < 0.5 < float(probs["B"][0, 1])    # contested: B is more probable
    lone = {"A": a.clone()}
    compete(lone)
    assert torch.equal(lone["A"], a)


def test_a_tie_goes_to_the_segment_listed_first():
    probs = {"A": torch.ones((2, 3, 3)), "B": torch.ones((2, 3, 3))}
    compete(probs, priority={"A": torch.zeros(2, 1, 1), "B": torch.zeros(2, 1, 1)})
    assert bool((probs["A"] > 0.5).all()) and not bool((probs["B"] > 0.5).any())


def test_with_a_priority_the_segment_painted_nearer_wins_a_contested_voxel():
    a = torch.tensor([[[0.9, 0.9, 0.3]], [[0.9, 0.6, 0.3]]])          # (K=2, 1, 3)
    b = torch.tensor([[[0.7, 0.95, 0.8]], [[0.7, 0.95, 0.8]]])
    near = painted_distance(2, [0])                                    # A painted on frame 0
    far = painted_distance(2, [5])                                     # B painted on frame 5
    assert near[:, 0, 0].tolist() == [0.0, -1.0] and far[:, 0, 0].tolist() == [-5.0, -4.0]
    probs = {"A": a.clone(), "B": b.clone()}
    compete(probs, priority={"A": near, "B": far})
    assert (probs["A"][:, 0, :2] > 0.5).all() and not (probs["B"][:, 0, :2] > 0.5).any()   # B more probable at [., 1]
    assert torch.equal(probs["B"][:, 0, 2], b[:, 0, 2])                # uncontested: B keeps it
    equal = {"A": a.clone(), "B": b.clone()}
    compete(equal, priority={"A": near, "B": near})                    # equal priority: the more probable
    assert bool(equal["B"][0, 0, 1] > 0.5) and not bool(equal["A"][0, 0, 1] > 0.5)
    assert painted_distance(3, [])[:, 0, 0].tolist() == [-4.0, -4.0, -4.0]


def test_a_painted_voxel_is_not_given_to_another_segment():
    K = 6
    a = np.zeros((K, 8, 8), np.uint8)
    b = np.zeros((K, 8, 8), np.uint8)
    a[:, 2:6, 2:6] = 1
    b[:, 4:8, 4:8] = 1
    seeds = {"A": cut_seeds(a, (1,)), "B": cut_seeds(b, (1, 3))}
    masks = {"A": a.copy(), "B": b.copy()}
    yield_to_painted(masks, seeds)
    assert not masks["A"][3][b[3] > 0].any()                        # B painted slice 3, A did not
    np.testing.assert_array_equal(masks["A"][1], a[1])              # both painted slice 1: as painted
    np.testing.assert_array_equal(masks["B"][1], b[1])
    np.testing.assert_array_equal(masks["A"][0], a[0])              # nobody painted slice 0
    assert overlap_voxels(masks) == overlap_voxels({"A": a, "B": b}) - 4


def _overlapping_tubes(K=30, J=40, I=48):
    a = np.zeros((K, J, I), np.uint8)
    b = np.zeros((K, J, I), np.uint8)
    a[:, 8:24, 8:30] = 1
    b[:, 18:34, 22:44] = 1
    return a, b


def test_segments_propagated_together_do_not_overlap_and_keep_their_painted_slices():
    a, b = _overlapping_tubes()
    vol = np.random.default_rng(0).integers(0, 255, a.shape).astype(np.uint8)
    seeds = {"A": cut_seeds(a, (4, 5, 6)), "B": cut_seeds(b, (20, 21, 22))}
    both = propagate(vol, seeds, CopyModel(size=32), device="cpu", exclusive=False)
    assert overlap_voxels(both.masks) > 1000
    res = propagate(vol, seeds, CopyModel(size=32), device="cpu", exclusive=True)
    assert overlap_voxels(res.masks) == 0
    for name, s in seeds.items():
        for k in s.slices:
            np.testing.assert_array_equal(res.masks[name][k], s.mask[k])
    union = lambda m: (m["A"] > 0) | (m["B"] > 0)                  # noqa: E731
    assert (union(res.masks) != union(both.masks)).sum() <= 0.02 * union(both.masks).sum()
    # on B's painted slices, A gives way to B; on A's own, A is as painted (and B gives way)
    assert not res.masks["A"][21][b[21] > 0].any()
    assert not res.masks["B"][5][a[5] > 0].any()


def test_a_single_segment_is_the_same_with_or_without_exclusive():
    a, _ = _overlapping_tubes()
    vol = np.random.default_rng(1).integers(0, 255, a.shape).astype(np.uint8)
    seeds = {"A": cut_seeds(a, (4, 5, 6))}
    one = propagate(vol, seeds, CopyModel(size=32), device="cpu", exclusive=True)
    two = propagate(vol, seeds, CopyModel(size=32), device="cpu", exclusive=False)
    np.testing.assert_array_equal(one.masks["A"], two.masks["A"])
    np.testing.assert_array_equal(one.confidence["A"], two.confidence["A"])


def test_masks_stay_apart_after_resampling_to_the_volume_grid():
    from ifssnet.preprocess import InPlaneGrid

    g = torch.Generator().manual_seed(3)
    smooth = lambda: torch.nn.functional.avg_pool2d(torch.rand((5, 1, 20, 20), generator=g), 3, 1, 1)[:, 0]  # noqa: E731
    fields = {n: (smooth() * 1.6 - 0.3).clamp(0, 1) for n in "ABC"}
    grid = InPlaneGrid((47, 61), 20)
    for priority in (None, {n: painted_distance(5, [k]) for n, k in zip("ABC", (0, 2, 4))}):
        probs = {n: p.clone() for n, p in fields.items()}
        compete(probs, priority=priority)
        masks = {n: (grid.to_volume(p) > 0.5).numpy() for n, p in probs.items()}
        assert sum(int(m.sum()) for m in masks.values()) > 1000
        assert overlap_voxels(masks) == 0
