"""Few-shot labels past the paint (--empty-past-ends, ifssnet/past_ends.py) and re-anchoring on painted slices only
(--anchor painted, ifssnet/tbptt.py)."""
import numpy as np
import pytest
import torch

from ifssnet.cli import build_parser
from ifssnet.dataset import Case, sample_run
from ifssnet.errors import InputError
from ifssnet.loss import ParametricTversky
from ifssnet.model import IFSSNetConfig
from ifssnet.model.checkpoint import load_checkpoint
from ifssnet.past_ends import empty_past_ends, empty_slices_past_ends
from ifssnet.tbptt import train_step, windows_loss
from ifssnet.train import TrainConfig, train

from test_train import TINY, _Recorder, _numbered_run, expected_leak

K = 40


def _painted(slices):
    known = np.zeros(K, bool)
    known[list(slices)] = True
    return known


def _bar(first, last, S=16):
    """A square present on slices first..last (inclusive) of K."""
    m = np.zeros((K, S, S), np.uint8)
    m[first:last + 1, 4:12, 4:12] = 1
    return m


def test_slices_beyond_a_painted_empty_slice_past_the_paint_are_empty_at_both_ends():
    truth = _bar(10, 29)
    past = empty_slices_past_ends(_painted([5, 12, 20, 28, 33, 38]), truth)
    assert np.flatnonzero(past).tolist() == list(range(0, 6)) + list(range(33, K))
    assert not (past & truth.reshape(K, -1).any(axis=1)).any()          # never a slice of the muscle


@pytest.mark.parametrize("painted, why", [([12, 20, 28], "no slice painted empty"),
                                          ([2, 6], "no slice painted with the muscle"),
                                          ([12, 20], "an end inside the sweep, but none painted")])
def test_nothing_is_added_where_the_paint_does_not_bound_the_muscle(painted, why):
    truth = _bar(10, 29)
    assert not empty_slices_past_ends(_painted(painted), truth * _painted(painted)[:, None, None]).any(), why


def test_an_empty_slice_between_two_painted_pieces_bounds_nothing_between_them():
    truth = _bar(5, 12) | _bar(25, 30)
    past = empty_slices_past_ends(_painted([8, 18, 27, 35]), truth)
    assert np.flatnonzero(past).tolist() == list(range(35, K))


def test_the_case_gains_empty_known_slices_and_keeps_its_paint():
    truth = _bar(10, 29)
    known = _painted([5, 12, 20, 28, 33])
    case = Case("bar", np.zeros(truth.shape, np.float16), {"A": truth * known[:, None, None], "B": truth},
                {"A": known, "B": np.ones(K, bool)})
    out = empty_past_ends(case)
    assert np.flatnonzero(out.known["A"] & ~known).tolist() == list(range(0, 5)) + list(range(34, K))
    assert not out.masks["A"][out.known["A"] & ~known].any()
    np.testing.assert_array_equal(out.painted["A"], known)              # painted: the input's known slices
    np.testing.assert_array_equal(out.masks["A"][known], truth[known])
    assert out.masks["B"] is truth and out.known["B"].all()             # complete segments as they were
    assert not case.known["A"][0]                                       # the input case is not changed


def test_sample_run_carries_the_painted_slices_beside_the_known_ones():
    truth = _bar(0, 39)
    known, painted = np.ones(K, bool), _painted(range(0, K, 5))
    image = np.broadcast_to(np.arange(K, dtype=np.float16)[:, None, None], truth.shape).copy()   # slice k holds k
    case = Case("bar", image, {"A": truth}, {"A": known}, painted={"A": painted})
    rng = np.random.default_rng(0)
    for _ in range(5):
        run = sample_run(case, rng, 12, augment=False)
        sel = run.image[:, 0, 0].astype(int)                               # the slices the run took, in its order
        assert run.known.all() and run.painted.sum() in (2, 3)
        np.testing.assert_array_equal(run.painted, painted[sel])
    plain = sample_run(Case("bar", case.image, case.masks, case.known), rng, 12, augment=False)
    np.testing.assert_array_equal(plain.painted, plain.known)           # no labels added: painted is known


def _mask_inputs(anchors, **step):
    """The mask input of every window after the first of a fewshot run known on every slice."""
    model = _Recorder()
    img, msk, kn = _numbered_run(12)
    cfg = TrainConfig(mode="fewshot")
    if step:
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        train_step(model, ParametricTversky(), opt, img, msk, kn, cfg, anchors=anchors, **step)
    else:
        windows_loss(model, ParametricTversky(), img, msk, kn, cfg, anchors=anchors)
    return model.calls, msk


def _assert_anchored_on(calls, msk, anchors):
    """Each window's mask input holds the labels on the ``anchors`` slices (bool (1, L)) of the window before it
    and that window's prediction elsewhere; windows are told apart by the slice number their image holds."""
    assert len(calls) >= 8
    for before, after in zip(calls, calls[1:]):
        t = int(round(float(before[0][0, 0, 0, 0, 0])))               # the window before covers slices t..t+2
        fed = torch.softmax(before[3], dim=1)[:, 1]
        for j in range(3):
            want = msk[:, t + j] if bool(anchors[0, t + j]) else fed[:, j]
            assert torch.equal(after[1][:, 0, j], want), (t, j)


def test_known_slices_anchor_the_mask_input_unless_only_painted_ones_may():
    calls, msk = _mask_inputs(None)
    _assert_anchored_on(calls, msk, torch.ones(1, 12, dtype=torch.bool))   # every slice is known
    painted = torch.zeros(1, 12, dtype=torch.bool)
    painted[:, [0, 1, 2, 7]] = True
    calls, msk = _mask_inputs(painted)
    _assert_anchored_on(calls, msk, painted)


@pytest.mark.parametrize("burn", [0, 3])
def test_a_training_step_anchors_on_the_painted_slices_in_every_part_of_the_run(burn):
    """Through the burn-in and both TBPTT halves."""
    painted = torch.zeros(1, 12, dtype=torch.bool)
    painted[:, [0, 1, 2, 9]] = True
    calls, msk = _mask_inputs(painted, burn=burn)
    _assert_anchored_on(calls, msk, painted)


def test_fewshot_end_weight_charges_windows_labelled_empty_and_no_others():
    """--end-weight in fewshot mode: a window counts when every slice is labelled empty (painted, or labelled by
    --empty-past-ends); one with an unlabelled slice is scored against pseudo-labels and adds nothing."""
    img, msk, _ = _numbered_run(12)
    msk[:, 7:] = 0                                             # the muscle ends after slice 6
    known = torch.zeros(1, 12, dtype=torch.bool)
    known[:, 0:3] = True                                       # the painted start
    losses = {}
    for label in ("none", "past"):
        kn = known.clone()
        if label == "past":
            kn[:, 8:] = True                                   # labelled empty past the end: windows 8 and 9 count
        for weight in (0.0, 2.0):
            model = _Recorder().eval()
            cfg = TrainConfig(mode="fewshot", end_weight=weight)
            loss, _, _ = windows_loss(model, ParametricTversky(), img, msk, kn, cfg)
            losses[label, weight] = float(loss.detach())
            if weight:
                probs = [torch.softmax(c[3], dim=1)[:, 1] for c in model.calls]
    assert losses["none", 2.0] == pytest.approx(losses["none", 0.0])
    expected = expected_leak(probs, msk, 8, 2.0)
    assert expected > 0
    assert losses["past", 2.0] - losses["past", 0.0] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("bad, match", [(dict(mode="full", empty_past_ends=True), "empty-past-ends"),
                                        (dict(mode="full", anchor="painted"), "anchor painted"),
                                        (dict(mode="fewshot", anchor="painted", cycle=1.0), "cycle"),
                                        (dict(mode="fewshot", anchor="inked"), "Unknown anchor")])
def test_the_options_are_refused_where_they_mean_nothing(bad, match):
    with pytest.raises(InputError, match=match):
        TrainConfig(**bad).validate()


def test_fewshot_training_with_both_options_records_them(tmp_path):
    rng = np.random.default_rng(0)
    truth = _bar(4, 27, S=32)
    image = (rng.normal(size=truth.shape) + 1.5 * truth).astype(np.float16)
    case = Case("bar", image, {"A": truth}, {"A": np.ones(K, bool)})
    cfg = TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=2, run_length=8, checkpoint_every=2,
                      annotated_total=0.3, decay_ratio=1.0, fill_gap=10, empty_past_ends=True, anchor="painted")
    train([case], tmp_path / "m.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg)
    _, _, meta = load_checkpoint(tmp_path / "m.ckpt.pt")
    assert meta["training"]["config"]["empty_past_ends"] is True and meta["training"]["config"]["anchor"] == "painted"
    args = build_parser().parse_args(["train", "c", "--mode", "fewshot", "--out", "m.pt", "--empty-past-ends",
                                      "--anchor", "painted"])
    assert args.empty_past_ends and args.anchor == "painted"


def test_the_run_benchmark_counts_the_runs_that_reach_a_muscles_end():
    """benchmarks/runs_past_ends.py: full supervision's runs cross the end (the sampler biases them to); few-shot
    runs start only where the paint is joined, so with the end far past the last painted slice they cannot."""
    from benchmark_scripts import load_benchmark

    from ifssnet.dataset import sparsify
    from ifssnet.fill_gaps import fill_gaps

    rpe = load_benchmark("runs_past_ends")
    truth = _bar(0, 24, S=16)
    full = Case("bar", np.zeros(truth.shape, np.float16), {"A": truth}, {"A": np.ones(K, bool)})
    absent, labelled = rpe.run_shares([full], 8, n=200)
    assert absent > 0.2 and labelled == absent
    few = fill_gaps(sparsify(full, 0.1, 1), 12)                     # slices 0, 13, 26, 39 painted; 0-13 labelled
    absent, labelled = rpe.run_shares([few], 8, n=200)
    assert absent == 0.0 and labelled == 0.0
    absent, labelled = rpe.run_shares([empty_past_ends(few)], 20, n=200)   # longer runs reach the end and past it
    assert absent > 0.2 and labelled > 0.2
