"""--cycle: few-shot runs propagated out from their annotated slices and back to them (ifssnet/cycle.py)."""
import pytest
import torch

from ifssnet.errors import InputError
from ifssnet.model import IFSSNetConfig
from ifssnet.model.checkpoint import load_checkpoint
from ifssnet.train import TrainConfig, train

from test_train import TINY, _case, _numbered_run, _Recorder


@pytest.mark.parametrize("stride", [1, 3])
def test_the_way_back_covers_the_way_outs_slices_in_reverse_from_its_last_mask(stride):
    """Windows go out over the run, then back over the same slices to the first; the way back's first mask
    input is the way out's last mask, reversed and thresholded; the way back starts with no ConvLSTM memory."""
    from ifssnet.cycle import cycle_step
    from ifssnet.loss import ParametricTversky

    model = _Recorder()
    loss_fn = ParametricTversky()
    opt = torch.optim.SGD(list(model.parameters()), lr=0.0)
    img, msk, kn = _numbered_run(14)
    kn[:, 3:] = False
    states = []
    real = model.net.forward_from_features

    def spy(feats, prev, state=None, carry_index=0):
        states.append(state)
        return real(feats, prev, state, carry_index=carry_index)

    model.net.forward_from_features = spy
    cycle_step(model, loss_fn, opt, img, msk, kn, TrainConfig(mode="fewshot", cycle=1.0), stride=stride)
    starts = [int(round(float(c[0][0, 0, 0, 0, 0]))) for c in model.calls]
    out = list(range(stride, 12, stride))
    end = out[-1] + 3                                   # one past the way out's last slice
    back = [end - 1 - t for t in range(stride, end - 3 + 1, stride)]
    assert starts == out + back                         # back slice t is out slice end - 1 - t
    assert back[-1] == 2                                # the last window home holds the annotated slices 0..2
    n = len(out)
    last_out = torch.softmax(model.calls[n - 1][3], dim=1)[:, 1]
    assert torch.equal(model.calls[n][1][:, 0], (last_out.flip(1) > 0.5).float())
    assert states[0] is None and states[n] is None and states[n + 1] is not None


def test_the_turn_thresholds_the_mask_and_lets_the_gradient_through():
    """The turn reverses the slices and thresholds the mask at 0.5, and its gradient passes straight through,
    so the way back's loss can reach the way out's windows."""
    from ifssnet.cycle import turn_round

    p = torch.tensor([[0.2, 0.7, 0.9]]).reshape(1, 3, 1, 1).requires_grad_(True)
    t = turn_round(p)
    assert torch.equal(t.detach().flatten(), torch.tensor([1.0, 1.0, 0.0]))
    (g,) = torch.autograd.grad((t * torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1)).sum(), p)
    assert torch.equal(g.flatten(), torch.tensor([3.0, 2.0, 1.0]))     # straight through, slices reversed


def test_the_way_backs_loss_adds_to_the_gradient():
    """Annotated slices only where the run starts: the way back's windows, scored against them on the way
    home, add to the gradient of the way out's loss (cycle weight 1 against 0)."""
    from ifssnet.cycle import cycle_step
    from ifssnet.loss import ParametricTversky
    from ifssnet.model import IFSSNet

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(**TINY)).eval()
    img, msk, kn = _numbered_run(10)
    kn[:, 3:] = False
    grads = {}
    for weight in (0.0, 1.0):
        net.zero_grad()
        opt = torch.optim.SGD(net.parameters(), lr=0.0)
        cycle_step(net, ParametricTversky(), opt, img, msk, kn, TrainConfig(mode="fewshot", cycle=weight))
        grads[weight] = sum(float(q.grad.abs().sum()) for q in net.parameters() if q.grad is not None)
    assert grads[1.0] > grads[0.0] > 0


def test_fewshot_training_with_cycle_runs_and_records_it(tmp_path, monkeypatch):
    import ifssnet.train as tr

    calls = []
    real = tr.cycle_step

    def spy(*a, **k):
        calls.append(a[4].shape)
        return real(*a, **k)

    monkeypatch.setattr(tr, "cycle_step", spy)
    cfg = TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=3, run_length=8, cycle=1.0, checkpoint_every=3,
                      annotated_total=0.3, feedback_grad=True)
    logs = []
    train([_case(0, K=40), _case(1, K=40)], tmp_path / "c.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg,
          on_step=logs.append)
    assert len(calls) == 3 and all(s[1] == 8 for s in calls)
    assert all(l.loss == l.loss and l.loss > 0 for l in logs)
    _, _, meta = load_checkpoint(tmp_path / "c.ckpt.pt")
    assert meta["training"]["config"]["cycle"] == 1.0


@pytest.mark.parametrize("bad", [dict(cycle=-1.0), dict(cycle=1.0, burn_in=8), dict(cycle=1.0, reach=20),
                                 dict(cycle=1.0, mode="image")])
def test_cycle_is_refused_where_a_run_cannot_come_back_to_its_annotation(bad):
    with pytest.raises(InputError, match="cycle"):
        TrainConfig(**{"mode": "fewshot", **bad}).validate()


def test_a_fine_tune_with_cycle_does_not_take_the_base_models_burn_in():
    """The shipped weights were trained with --burn-in 32; a --cycle fine-tune of them starts its runs on the
    annotation instead of refusing the inherited burn-in. A burn-in given on the command line is still refused."""
    import argparse

    from ifssnet.train_cli import add_train_arguments, fill_recipe

    p = argparse.ArgumentParser()
    add_train_arguments(p)
    base = {"training": {"config": {"burn_in": 32, "run_length": 8}}}
    args = p.parse_args(["case", "--out", "m.pt", "--cycle", "1"])
    fragment = fill_recipe(args, base)
    assert args.burn_in == 0 and "--burn-in" not in fragment and "--run-length 8" in fragment
    args = p.parse_args(["case", "--out", "m.pt"])
    assert "--burn-in 32" in fill_recipe(args, base) and args.burn_in == 32
    args = p.parse_args(["case", "--out", "m.pt", "--cycle", "1", "--burn-in", "8"])
    fill_recipe(args, base)
    with pytest.raises(InputError, match="cycle"):
        TrainConfig(mode="fewshot", cycle=args.cycle, burn_in=args.burn_in).validate()
