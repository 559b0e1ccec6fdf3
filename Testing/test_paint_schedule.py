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
