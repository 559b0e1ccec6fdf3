"""--reach: few-shot runs trained up to the next annotated group (ifssnet/reach.py, train_step's offsets)."""
import numpy as np
import pytest
import torch

from ifssnet.errors import InputError
from ifssnet.model import IFSSNetConfig
from ifssnet.model.checkpoint import load_checkpoint
from ifssnet.reach import next_group_end, reach_offsets
from ifssnet.train import TrainConfig, train

from test_train import TINY, _case, _numbered_run, _Recorder


def _known(L, groups):
    k = np.zeros(L, bool)
    for a, b in groups:
        k[a:b] = True
    return k


def test_next_group_end_skips_the_runs_own_group_and_ends_at_the_next_gap():
    assert next_group_end(_known(40, [(0, 3), (20, 23)]), 3) == 22
    assert next_group_end(_known(40, [(0, 5), (20, 23), (30, 33)]), 3) == 22     # own group longer than w
    assert next_group_end(_known(40, [(0, 3), (38, 40)]), 3) == 39               # cut by the run's end
    assert next_group_end(_known(40, [(0, 3)]), 3) is None
    assert next_group_end(np.ones(40, bool), 3) is None                          # all annotated: no gap, no group


def test_reach_offsets_end_the_trained_part_on_the_next_group():
    rng = np.random.default_rng(0)
    knowns = [_known(60, [(0, 3), (30, 33)]), _known(60, [(0, 3), (50, 53)]), _known(60, [(0, 3)])]
    offs = reach_offsets(knowns, 60, 8, 3, 1, burn_in=5, rng=rng)
    assert offs[0] + 8 - 1 == 32 and offs[1] + 8 - 1 == 52                     # the group's last slice is the part's last
    assert 1 <= offs[2] <= 5                                                     # no group: an ordinary burn-in
    near = reach_offsets([_known(60, [(0, 3), (4, 7)])], 60, 8, 3, 1, 0, rng)
    assert near == [1]                                                           # at least one window burnt in
    strided = reach_offsets([_known(60, [(0, 3), (30, 33)])], 60, 8, 3, 3, 0, rng)
    assert strided[0] % 3 == 0 and strided[0] < 30 and strided[0] + 7 >= 32      # rounded to the stride, group inside
    far = reach_offsets([_known(40, [(0, 3), (38, 40)])], 30, 8, 3, 1, 0, rng)  # beyond the batch's length
    assert 1 <= far[0] <= 22
    with pytest.raises(ValueError):
        reach_offsets(knowns, 8, 8, 3, 1, 0, rng)


def test_each_run_is_burnt_in_over_its_own_length_then_trained_on_run_length_slices():
    """Two runs of one batch, burnt in over 5 and 11 slices: every window of each run once, in order; the
    burn-in's windows without gradient, the trained ones on slices offset+1 .. offset+run_length-1."""
    from ifssnet.loss import ParametricTversky
    from ifssnet.tbptt import train_step

    model = _Recorder()
    loss_fn = ParametricTversky()
    opt = torch.optim.SGD(list(model.parameters()), lr=0.0)
    img, msk, kn = (torch.cat(t) for t in zip(_numbered_run(30), _numbered_run(30)))
    kn[:, 3:] = False                      # annotated: the first window only, so predictions are fed forward
    train_step(model, loss_fn, opt, img, msk, kn, TrainConfig(mode="fewshot", run_length=8, reach=20),
               offsets=[5, 11])
    burnt = [c for c, m in zip(model.calls, model.modes) if m == (False, False)]
    trained = [c for c, m in zip(model.calls, model.modes) if m == (True, True)]
    assert [int(c[0][0, 0, 0, 0, 0]) for c in burnt] == list(range(1, 6)) + list(range(1, 12))
    assert [[int(round(float(c[0][i, 0, 0, 0, 0]))) for c in trained] for i in (0, 1)] == \
        [list(range(6, 11)), list(range(12, 17))]
    # the first trained window's mask input is each run's last burnt-in prediction
    last = {0: burnt[4], 1: burnt[-1]}
    for i in (0, 1):
        assert torch.equal(trained[0][1][i, 0], torch.softmax(last[i][3], dim=1)[0, 1])


def test_fewshot_training_with_reach_meets_the_next_group_and_records_it(tmp_path, monkeypatch):
    import ifssnet.train as tr

    seen = []
    real_step = tr.train_step

    def step_spy(model, loss_fn, opt, img, msk, kn, cfg, **k):
        seen.append((k.get("offsets"), kn.clone()))
        return real_step(model, loss_fn, opt, img, msk, kn, cfg, **k)

    monkeypatch.setattr(tr, "train_step", step_spy)
    case = _case(0, K=60)
    case.known["A"][:] = False
    case.known["A"][[10, 11, 12, 40, 41, 42]] = True
    cfg = TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=4, run_length=8, reach=40, checkpoint_every=4,
                      annotated_total=1.0, curriculum=False)
    train([case], tmp_path / "r.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg)
    for offsets, kn in seen:
        for o, k in zip(offsets, kn.numpy()):
            end = next_group_end(k, 3)
            if end is not None:
                assert o + 8 - 1 == end                                  # the trained part ends on the group
    assert any(next_group_end(k, 3) is not None for _, kn in seen for k in kn.numpy())
    _, _, meta = load_checkpoint(tmp_path / "r.ckpt.pt")
    assert meta["training"]["config"]["reach"] == 40
    with pytest.raises(InputError, match="reach"):
        TrainConfig(mode="full", reach=10).validate()
    with pytest.raises(InputError, match="reach"):
        TrainConfig(mode="fewshot", reach=-1).validate()
