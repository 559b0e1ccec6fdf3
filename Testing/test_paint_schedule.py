"""Few-shot painting schedule: --annotated-total, --decay-ratio and --paint-group (TrainConfig, train.decremental_cases)."""
import argparse

import numpy as np
import pytest

from ifssnet.errors import InputError
from ifssnet.train import TrainConfig, decremental_cases
from ifssnet.train_cli import _schedule

from test_train import _case


def _groups(known):
    """Lengths of the runs of painted slices in a bool (K,) array."""
    edges = np.flatnonzero(np.diff(np.r_[0, known.astype(int), 0]))
    return list(edges[1::2] - edges[::2])


def test_the_paper_schedule_paints_groups_of_three_that_thin_out_case_by_case():
    cases = decremental_cases([_case(s, K=400) for s in range(3)], TrainConfig(mode="fewshot"))
    counts = [int(c.known["A"].sum()) for c in cases]
    assert counts[0] > counts[1] > counts[2] and abs(sum(counts) / 1200 - 0.035) < 0.01
    assert {g for c in cases for g in _groups(c.known["A"])} == {3}


def test_a_decay_ratio_of_one_paints_every_case_the_same_single_slices():
    cfg = TrainConfig(mode="fewshot", decay_ratio=1.0, paint_group=1)
    cases = decremental_cases([_case(s, K=400) for s in range(3)], cfg)
    for c in cases:
        known = c.known["A"]
        assert known.sum() == 14 and set(_groups(known)) == {1}              # 3.5 % of 400, one slice each
        assert np.ptp(np.diff(np.flatnonzero(known))) <= 1                    # evenly spread


def test_a_partly_annotated_case_keeps_its_own_paint():
    sparse = _case(0, K=400)
    sparse.known["A"][50:] = False
    out = decremental_cases([sparse], TrainConfig(mode="fewshot", decay_ratio=1.0, paint_group=1))
    assert out[0] is sparse


@pytest.mark.parametrize("bad, match", [(dict(decay_ratio=0.0), "decay-ratio"), (dict(decay_ratio=1.5), "decay-ratio"),
                                        (dict(annotated_total=0.0), "annotated-total"),
                                        (dict(annotated_total=2.0), "annotated-total"),
                                        (dict(paint_group=0), "paint-group")])
def test_a_schedule_out_of_range_is_refused(bad, match):
    with pytest.raises(InputError, match=match):
        TrainConfig(mode="fewshot", **bad).validate()


def test_the_schedule_options_are_refused_outside_fewshot_and_passed_on_inside():
    given = dict(annotated_total=None, decay_ratio=1.0, paint_group=1)
    with pytest.raises(InputError, match="--decay-ratio, --paint-group.*--mode full"):
        _schedule(argparse.Namespace(mode="full", **given))
    assert _schedule(argparse.Namespace(mode="fewshot", **given)) == dict(decay_ratio=1.0, paint_group=1)
    assert _schedule(argparse.Namespace(mode="full", annotated_total=None, decay_ratio=None, paint_group=None)) == {}


def _two_muscle_case(seed, K=400, b_slices=(100, 160)):
    """A case with muscle A over the whole sweep and muscle B on ``b_slices`` only, fully annotated."""
    case = _case(seed, K=K)
    b = np.zeros_like(case.masks["A"])
    b[b_slices[0]:b_slices[1], 20:28, 20:28] = 1
    case.masks["B"], case.known["B"] = b, np.ones(K, bool)
    return case


def test_fewshot_keeps_the_annotated_margin_with_the_groups_each_case_and_muscle_keeps():
    # Most cases get one group mid-sweep, off muscle B: each keeps a second group for B, and one group per case is
    # already 0.75 % of 400 slices. The schedule's mean alone (3.5 %) then annotated more than 3.5 % of the slices.
    from ifssnet.train import annotated_share

    cases = [_two_muscle_case(s) for s in range(12)]
    out = decremental_cases(cases, TrainConfig(mode="fewshot"))
    share = annotated_share(out)
    assert 0.03 < share <= 0.035, share
    assert all(c.known["B"][100:160].sum() >= 3 for c in out)            # every case still teaches B
    counts = [int(np.any(list(c.known.values()), axis=0).sum()) for c in out]
    assert counts[0] > counts[1] > counts[2]                               # still decremental


def test_fewshot_warns_where_the_groups_every_case_keeps_exceed_the_margin():
    cases = [_two_muscle_case(s, K=60, b_slices=(5, 15)) for s in range(3)]  # 2 groups of 3 in 60 slices: 10 %
    with pytest.warns(UserWarning, match="more than --annotated-total 3.5%"):
        out = decremental_cases(cases, TrainConfig(mode="fewshot"))
    assert all(int(c.known["A"].sum()) == 3 and int(c.known["B"].sum()) >= 3 for c in out)
