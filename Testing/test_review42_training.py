"""Review 42, training: what a fine-tune sees against what propagation sees at run time, and the memory estimate."""
from __future__ import annotations

import numpy as np


def _sparse_case(K=81, spacing=0.25, painted=(21, 22, 23, 60, 61, 62), empty=()):
    """A case whose image holds each slice's index, painted on ``painted`` (``empty``: painted "no muscle")."""
    from ifssnet.dataset import Case

    img = np.broadcast_to(np.arange(K, dtype=np.float16)[:, None, None], (K, 8, 8)).copy()
    m = np.zeros((K, 8, 8), np.uint8)
    m[10:70, 2:5, 2:5] = 1
    m[list(empty)] = 0
    known = np.zeros(K, bool)
    known[list(painted) + list(empty)] = True
    return Case("c", img, {"A": m}, {"A": known}, spacing, held=("A", "B"))


def _propagation_frames(case, network_mm):
    """The frames propagation runs on for the case's paint (ifssnet.propagate.frames_for)."""
    from types import SimpleNamespace

    from ifssnet.propagate import frames_for
    from ifssnet.seeds import SeedSet

    seeds = {}
    for n, known in case.known.items():
        sl = np.flatnonzero(known)
        mask = np.zeros((case.n_slices, 1, 1), np.uint8)
        mask[sl, 0, 0] = case.masks[n][sl].reshape(len(sl), -1).any(axis=1)
        seeds[n] = SeedSet(mask, tuple(sl))
    net = SimpleNamespace(config=SimpleNamespace(slice_spacing_mm=network_mm))
    return frames_for(case.n_slices, case.slice_spacing_mm, net, True, seeds).frames


def test_a_thinned_training_case_runs_on_propagations_frames_and_its_groups_stay_whole():
    """thin_case kept the regular frame next to each painted slice beside it (slices 20 and 24 around a group
    painted on 21-23 of a 0.25 mm sweep thinned to 1 mm): training stepped 0.25 mm from 20 to the paint and from
    the paint to 24, steps propagation never takes (it puts the paint in those frames' place)."""
    from ifssnet.dataset import thin_case

    for empty in ((), (40,)):
        case = _sparse_case(empty=empty)
        thinned = thin_case(case, 1.0)
        frames = thinned.image[:, 0, 0].astype(int)             # the slices kept (the image holds their index)
        painted = np.flatnonzero(case.known["A"])
        expected = np.union1d(_propagation_frames(case, 1.0), painted)
        assert frames.tolist() == expected.tolist()
        assert 20 not in frames and 24 not in frames            # the frames the paint replaces
        assert 40 in frames if empty else True                  # "no muscle here" is a frame of its own
        known = np.flatnonzero(thinned.known["A"])
        assert frames[known].tolist() == painted.tolist()       # every painted slice, each group whole
        assert thinned.held == ("A", "B")
    full = _sparse_case(painted=range(81))
    assert thin_case(full, 1.0).image[:, 0, 0].astype(int).tolist() == list(range(0, 81, 4))
