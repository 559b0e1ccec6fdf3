"""Training: the decremental schedule, few-shot targets, checkpoints, exact resume, 2-process gloo."""
import os
import sys

import numpy as np
import pytest
import torch

from ifssnet.dataset import Case, decremental_fractions, sample_run, sparsify
from ifssnet.errors import Cancelled, InputError, ModelError
from ifssnet.model import IFSSNetConfig
from ifssnet.model.checkpoint import load_checkpoint
from ifssnet.progress import CancelToken
from ifssnet.train import TrainConfig, decremental_pool, train

TINY = dict(size=32, width_mult=0.25)


def _case(seed=0, K=24):
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(K, 32, 32)).astype(np.float16)
    m = np.zeros((K, 32, 32), np.uint8)
    for k in range(K):
        m[k, 8:20, 6 + k // 4:22 + k // 4] = 1
    img[m > 0] += 1.5
    return Case(f"c{seed}", img, {"A": m}, {"A": np.ones(K, bool)})


def test_decremental_schedule_keeps_the_total_and_decays():
    f = decremental_fractions(29, 0.035, 0.5)
    assert abs(np.mean(f) - 0.035) < 1e-9
    assert all(a >= b for a, b in zip(f, f[1:]))
    assert f[0] == pytest.approx(2 * f[1], rel=0.01)
    # About 230 then 115 annotated slices of 1400 for the paper's 29 subjects (it says "about").
    assert 400 < f[0] * 1400 < 1500 or 150 < f[0] * 1400 < 1500


def test_sparsify_keeps_groups_of_three():
    c = sparsify(_case(K=400), 0.035)
    known = c.known["A"]
    assert abs(known.mean() - 0.035) < 0.01
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, known.astype(int), 0])))[::2]
    assert set(runs) == {3}


@pytest.mark.parametrize("shape", [(70, 50, 37), (5, 40, 40), (129, 20, 30)])
def test_masks_go_to_the_working_grid_chunk_by_chunk_exactly_as_whole(shape):
    """dataset.work_mask converts 64 slices at a time (a full-size case's peak fell from 4966 to 2096 MiB): each
    slice is resized on its own, so the chunks give the whole volume's result, chunk edges included."""
    from ifssnet.dataset import work_mask
    from ifssnet.preprocess import InPlaneGrid

    rng = np.random.default_rng(1)
    mask = (rng.random(shape) > 0.6).astype(np.uint8)
    grid = InPlaneGrid(shape[1:], 32)
    whole = (grid.to_work(torch.from_numpy(mask.astype(np.float32))) > 0.5).to(torch.uint8).numpy()
    for chunk in (64, 7):
        got = work_mask(mask, grid, chunk=chunk)
        assert got.dtype == np.uint8 and np.array_equal(got, whole), chunk


def test_sample_run_starts_on_known_present_slices():
    rng = np.random.default_rng(0)
    c = sparsify(_case(K=60), 0.2)
    for _ in range(10):
        r = sample_run(c, rng, 12)
        assert r.known[:3].all() and r.mask[:3].any(axis=(1, 2)).all()
        assert r.image.shape == (12, 32, 32)


def _train(out, steps, **kw):
    cfg = TrainConfig(epochs=1, steps_per_epoch=steps, run_length=8, checkpoint_every=2, lr=1e-3, **kw)
    return train([_case(0), _case(1)], out, model_config=IFSSNetConfig(**TINY), cfg=cfg)


def test_training_writes_a_checkpoint_with_its_provenance(tmp_path):
    logs = []
    cfg = TrainConfig(epochs=1, steps_per_epoch=3, run_length=8, lr=1e-2)
    train([_case(0)], tmp_path / "m.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, on_step=logs.append,
          command="ifssnet train test", data_description="two tiny cases")
    model, config, meta = load_checkpoint(tmp_path / "m.pt")
    assert config.size == 32 and meta["command"] == "ifssnet train test"
    assert meta["training"]["step"] == 3
    assert all(np.isfinite(l.loss) for l in logs)
    assert logs[-1].alpha != 0.5            # alpha/beta are learned


def test_fixed_tversky_keeps_the_dice_loss(tmp_path):
    """--fixed-tversky: alpha and beta stay 0.5, and the checkpoint keeps the choice for --resume."""
    logs = []
    cfg = TrainConfig(epochs=1, steps_per_epoch=3, run_length=8, lr=1e-2, learn_tversky=False, checkpoint_every=2)
    train([_case(0)], tmp_path / "m.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, on_step=logs.append)
    assert [l.alpha for l in logs] == [0.5, 0.5, 0.5] and logs[-1].beta == 0.5
    _, _, meta = load_checkpoint(tmp_path / "m.ckpt.pt")
    assert meta["training"]["config"]["learn_tversky"] is False


def test_fewshot_mode_runs_with_pseudo_labels(tmp_path):
    cfg = TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=2, run_length=8, annotated_total=0.3)
    train([_case(0, K=40), _case(1, K=40)], tmp_path / "f.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg)
    assert (tmp_path / "f.pt").exists()


def test_fewshot_cases_join_in_decremental_order(tmp_path, monkeypatch):
    """The most annotated case alone first, then the pool grows case by case (the paper's decremental feed)."""
    import ifssnet.train as T

    assert [decremental_pool(4, s, 8) for s in range(8)] == [1, 1, 2, 2, 3, 3, 4, 4]
    assert decremental_pool(40, 0, 250) == 1 and decremental_pool(40, 249, 250) == 40
    drawn, real = [], T.sample_run
    monkeypatch.setattr(T, "sample_run", lambda case, *a, **k: drawn.append(case.name) or real(case, *a, **k))
    cfg = TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=6, run_length=8, annotated_total=0.3)
    train([_case(i, K=40) for i in range(3)], tmp_path / "f.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg,
          on_step=lambda log: drawn.append("|"))
    steps = " ".join(drawn).split("|")
    assert len(steps) == 7 and set(steps[0].split() + steps[1].split()) == {"c0"}  # steps 1-2: case 0 only
    assert set(" ".join(steps[4:]).split()) <= {"c0", "c1", "c2"}


@pytest.fixture
def one_thread():
    """Multithreaded conv backward sums in a varying order; one thread makes training bitwise repeatable."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("extra", [{}, {"mask_jitter": 1.0, "bce_weight": 1.0}, {"strides": [1, 3]},
                                   {"image_aux": 1.0}, {"ema": 0.9, "warmup": 3}],
                         ids=["paper-loss", "jitter-bce", "strides-1-3", "image-aux", "ema-warmup"])
def test_resume_after_a_kill_continues_exactly(tmp_path, one_thread, extra):
    _train(tmp_path / "full.pt", 4, **extra)
    token = CancelToken()
    steps = []

    def progress(stage, done, total):
        steps.append(done)
        if done == 3:
            token.cancel()                   # killed during step 4, after the step-2 checkpoint

    with pytest.raises(Cancelled):
        train([_case(0), _case(1)], tmp_path / "part.pt", model_config=IFSSNetConfig(**TINY),
              cfg=TrainConfig(epochs=1, steps_per_epoch=4, run_length=8, checkpoint_every=2, lr=1e-3, **extra),
              progress=progress, cancel=token)
    assert not (tmp_path / "part.pt").exists()
    train([_case(0), _case(1)], tmp_path / "part.pt", resume=tmp_path / "part.ckpt.pt")
    a, _, _ = load_checkpoint(tmp_path / "full.pt")
    b, _, meta = load_checkpoint(tmp_path / "part.pt")
    assert "optimizer" not in meta["training"] and meta["training"]["step"] == 4  # the model file: no Adam moments
    assert "optimizer" in load_checkpoint(tmp_path / "part.ckpt.pt")[2]["training"]
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n


def test_resume_needs_a_training_checkpoint(tmp_path):
    from ifssnet.model import IFSSNet
    from ifssnet.model.checkpoint import save_checkpoint

    net = IFSSNet(IFSSNetConfig(**TINY))
    save_checkpoint(tmp_path / "w.pt", net, net.config, {})
    with pytest.raises(ModelError, match="resume"):
        train([_case(0)], tmp_path / "x.pt", resume=tmp_path / "w.pt")
    _train(tmp_path / "done.pt", 2)              # a finished run's model file: weights, config, no optimiser
    with pytest.raises(ModelError, match="optimiser state"):
        train([_case(0)], tmp_path / "y.pt", resume=tmp_path / "done.pt")


def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = TrainConfig(epochs=1, steps_per_epoch=2, run_length=8, lr=1e-2)
        train([_case(0), _case(1)], os.path.join(out_dir, "ddp.pt"), model_config=IFSSNetConfig(**TINY),
              cfg=cfg, rank=rank, world=world)
        # Every rank ends with the same weights as the checkpoint rank 0 wrote: gradients were averaged.
        dist.barrier()
        mine = torch.cat([p.detach().flatten() for p in load_checkpoint(os.path.join(out_dir, "ddp.pt"))[0].parameters()])
        gathered = [torch.zeros_like(mine) for _ in range(world)]
        dist.all_gather(gathered, mine)
        assert all(torch.equal(gathered[0], g) for g in gathered)
        dist.barrier()                           # no rank tears down while another still talks
    finally:
        dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank{rank}.done"), "w") as f:
        f.write("ok")
    sys.stdout.flush()
    sys.stderr.flush()
    # Leave without the interpreter's teardown: everything is checked. A worker once aborted in CI (SIGABRT,
    # "terminate called without an active exception", from C++, with no Python traceback), which is what
    # torch's gloo threads do at interpreter exit (pytorch PR 179291). The rank*.done files show that both
    # ranks got past training, the check and destroy_process_group.
    os._exit(0)


def test_two_process_gloo_training(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    assert (tmp_path / "ddp.pt").exists()
    assert (tmp_path / "rank0.done").exists() and (tmp_path / "rank1.done").exists()


def test_torchrun_trains_on_two_processes_and_records_the_command(tmp_path):
    """The way a user runs it: ``torchrun -m ifssnet.train`` (gloo on CPU), which makes and destroys the group."""
    import subprocess

    from ifssnet.phantom import write_phantom

    for i in (0, 1):
        write_phantom(tmp_path / f"case{i}", seed=i, shape=(24, 32, 40))
    args = ["case0", "case1", "--out", "ddp.pt", "--size", "32", "--epochs", "1", "--steps", "2",
            "--width-mult", "0.25", "--run-length", "8"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "ifssnet.train", *args]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    if r.returncode != 0 and "SIGABRT" in r.stderr:
        # One more try only for an abort from C++ (see _ddp_worker): a fault of ours fails both.
        r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("wrote ddp.pt") == 1                 # rank 0 writes and reports; rank 1 does not
    _, _, meta = load_checkpoint(tmp_path / "ddp.pt")
    assert meta["command"] == "ifssnet train " + " ".join(args)  # every argument, the first case included
    assert meta["training"]["step"] == 2


def test_batch_trains_several_runs_per_step_and_the_first_is_batch_1s(tmp_path, monkeypatch):
    import ifssnet.train as tr

    seen = []
    real = tr.train_step

    def spy(model, loss_fn, opt, img, msk, kn, cfg, **k):
        seen.append((img.clone(), msk.clone(), kn.clone()))
        return real(model, loss_fn, opt, img, msk, kn, cfg, **k)

    monkeypatch.setattr(tr, "train_step", spy)
    _train(tmp_path / "b1.pt", 1)
    _train(tmp_path / "b3.pt", 1, batch=3)
    (one, _, _), (three, three_mask, three_known) = seen
    assert one.shape[0] == 1 and three.shape[0] == 3 and three_known.shape[:2] == three.shape[:2]
    assert torch.equal(three[0], one[0])          # the same generator draws the first run first
    assert not torch.equal(three[0], three[1]) or not torch.equal(three_mask[0], three_mask[1])
    assert load_checkpoint(tmp_path / "b3.pt")[2]["training"]["config"]["batch"] == 3
    with pytest.raises(InputError, match="batch"):
        _train(tmp_path / "b0.pt", 1, batch=0)


def test_time_limit_stops_at_a_step_and_resume_finishes_the_run(tmp_path):
    cfg = TrainConfig(epochs=1, steps_per_epoch=4, run_length=8, checkpoint_every=50, lr=1e-3)
    train([_case(0)], tmp_path / "t.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, time_limit_s=0.0)
    assert load_checkpoint(tmp_path / "t.pt")[2]["training"]["step"] == 1          # the model file, written
    assert load_checkpoint(tmp_path / "t.ckpt.pt")[2]["training"]["step"] == 1     # and one to resume from
    train([_case(0)], tmp_path / "t.pt", resume=tmp_path / "t.ckpt.pt")
    assert load_checkpoint(tmp_path / "t.pt")[2]["training"]["step"] == 4
    train([_case(0)], tmp_path / "u.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, time_limit_s=3600.0)
    assert load_checkpoint(tmp_path / "u.pt")[2]["training"]["step"] == 4          # a limit not reached: no stop


def test_a_new_run_does_not_replace_a_stopped_run_that_could_be_resumed(tmp_path):
    """A run stopped before its last step (here by its time limit) leaves OUT.ckpt.pt for --resume: a new run to
    the same OUT is refused, with how to go on, and the checkpoint stays byte for byte; once the run is finished
    its checkpoint may be replaced."""
    cfg = TrainConfig(epochs=1, steps_per_epoch=3, run_length=8, checkpoint_every=50)
    out, ckpt = tmp_path / "s.pt", tmp_path / "s.ckpt.pt"
    train([_case(0)], out, model_config=IFSSNetConfig(**TINY), cfg=cfg, time_limit_s=0.0)
    kept = ckpt.read_bytes()
    with pytest.raises(InputError, match=r"s.ckpt.pt holds a run to this output that stopped at step 1 of 3.*"
                                         r"--resume .*s.ckpt.pt \(in Slicer: Resume\)"):
        train([_case(0)], out, model_config=IFSSNetConfig(**TINY), cfg=cfg)
    assert ckpt.read_bytes() == kept
    train([_case(0)], out, resume=ckpt)                                            # finished: step 3 of 3
    train([_case(0)], out, model_config=IFSSNetConfig(**TINY), cfg=cfg)            # so a new run may replace it
    assert load_checkpoint(ckpt)[2]["training"]["step"] == 3


def test_end_biased_runs_cross_the_end_of_the_muscle():
    c = _case(K=60)
    c.masks["A"][40:] = 0                        # the muscle spans slices 10..39: an end each way
    c.masks["A"][:10] = 0
    rng = np.random.default_rng(1)
    for _ in range(10):
        r = sample_run(c, rng, 12, end_fraction=1.0, augment=False)
        assert r.mask[:3].any() and not r.mask[-1].any()


def test_jitter_mask_shifts_and_deforms_every_slice_alike():
    from ifssnet.mask_noise import jitter_mask

    m = torch.zeros(2, 3, 40, 40)
    m[..., 12:28, 10:30] = 1
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        j = jitter_mask(m)
        assert j.shape == m.shape and set(torch.unique(j).tolist()) <= {0.0, 1.0}
        assert torch.equal(j[:, 0], j[:, 1]) and torch.equal(j[:, 1], j[:, 2])
        seen.add("dilated" if j.sum() > m.sum() else "eroded")
        assert not torch.equal(j, m)
    assert seen == {"dilated", "eroded"}


class _Recorder(torch.nn.Module):
    """Wraps a tiny IFSSNet and records every window's image, mask input, carry_index and output."""

    def __init__(self):
        super().__init__()
        from ifssnet.model import IFSSNet

        torch.manual_seed(0)
        self.net = IFSSNet(IFSSNetConfig(**TINY))
        self.config = self.net.config
        self.calls = []
        self.modes = []          # (training, output requires grad) per window

    def encode_image(self, img):
        self._img = img.detach().clone()
        return self.net.encode_image(img)

    def forward_from_features(self, feats, prev, state=None, carry_index=0):
        logits, state = self.net.forward_from_features(feats, prev, state, carry_index=carry_index)
        self.calls.append((self._img, prev.detach().clone(), carry_index, logits.detach()))
        self.modes.append((self.training, logits.requires_grad))
        return logits, state


def _numbered_run(L):
    """A run whose slice k holds the value k everywhere, so a window's first slice tells where it starts."""
    img = torch.arange(L, dtype=torch.float32)[None, :, None, None].expand(1, L, 32, 32).contiguous()
    msk = torch.zeros(1, L, 32, 32)
    msk[:, :, 8:20, 8:24] = 1
    return img, msk, torch.ones(1, L, dtype=torch.bool)


@pytest.mark.parametrize("stride", [1, 3])
def test_strided_windows_feed_the_prediction_stride_slices_back(stride):
    """Training with stride s does what propagation's preset of stride s does: windows start every s slices,
    the mask input is the previous window's prediction (the window s slices back), and the ConvLSTM
    carries the state of slice s-1."""
    from ifssnet.loss import ParametricTversky
    from ifssnet.tbptt import windows_loss

    model = _Recorder()
    img, msk, kn = _numbered_run(12)
    windows_loss(model, ParametricTversky(), img, msk, kn, TrainConfig(), stride=stride)
    starts = [int(c[0][0, 0, 0, 0, 0]) for c in model.calls]
    assert starts == list(range(stride, 10, stride))
    assert {c[2] for c in model.calls} == {stride - 1}
    assert torch.equal(model.calls[0][1][:, 0], msk[:, 0:3])            # first: the annotation s slices back
    for before, after in zip(model.calls, model.calls[1:]):
        assert torch.equal(after[1][:, 0], torch.softmax(before[3], dim=1)[:, 1])


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_tbptt_halves_join_without_a_gap_at_any_stride(stride):
    from ifssnet.loss import ParametricTversky
    from ifssnet.tbptt import train_step

    model = _Recorder()
    loss_fn = ParametricTversky()
    opt = torch.optim.Adam(list(model.parameters()) + list(loss_fn.parameters()), lr=1e-3)
    img, msk, kn = _numbered_run(24)
    train_step(model, loss_fn, opt, img, msk, kn, TrainConfig(), stride=stride)
    starts = [int(round(float(c[0][0, 0, 0, 0, 0]))) for c in model.calls]
    assert starts == list(range(stride, 22, stride))                      # every window once, in order


@pytest.mark.parametrize("stride", [1, 3])
def test_burn_in_propagates_as_inference_then_trains_the_rest_of_the_run(stride):
    """``--burn-in``: the run's first slices are propagated as inference does (dropout off, no gradient, every
    mask input the previous prediction, never the truth), and the trained windows carry on from there in
    one unbroken run, their first mask input the burn-in's last prediction."""
    from ifssnet.loss import ParametricTversky
    from ifssnet.tbptt import train_step

    model = _Recorder()
    loss_fn = ParametricTversky()
    opt = torch.optim.SGD(list(model.parameters()), lr=0.0)
    img, msk, kn = _numbered_run(30)
    train_step(model, loss_fn, opt, img, msk, kn, TrainConfig(burn_in=10, refeed_every=2), stride=stride,
               burn=10)
    starts = [int(round(float(c[0][0, 0, 0, 0, 0]))) for c in model.calls]
    assert starts == list(range(stride, 28, stride))                      # every window once, in order
    offset = stride * (10 // stride)
    burnt = [i for i, s in enumerate(starts) if s <= offset]
    assert [model.modes[i] for i in burnt] == [(False, False)] * len(burnt)
    assert all(m == (True, True) for i, m in enumerate(model.modes) if i not in burnt)
    for i in burnt[1:] + [burnt[-1] + 1]:                                 # incl. the first trained window
        assert torch.equal(model.calls[i][1][:, 0], torch.softmax(model.calls[i - 1][3], dim=1)[:, 1])
    assert torch.equal(model.calls[0][1][:, 0], msk[:, 0:3])


def test_burn_in_lengthens_the_sampled_runs_and_is_kept_in_the_checkpoint(tmp_path, monkeypatch):
    import ifssnet.train as tr

    lengths = []
    real = tr.sample_run

    def spy(case, rng, length, *a, **k):
        lengths.append(length)
        return real(case, rng, length, *a, **k)

    burns = []
    real_step = tr.train_step

    def step_spy(*a, burn=0, **k):
        burns.append((burn, a[3].shape[1]))
        return real_step(*a, burn=burn, **k)

    monkeypatch.setattr(tr, "sample_run", spy)
    monkeypatch.setattr(tr, "train_step", step_spy)
    cfg = TrainConfig(epochs=1, steps_per_epoch=12, run_length=8, burn_in=6, checkpoint_every=12)
    train([_case(0, K=40)], tmp_path / "b.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg)
    assert set(lengths) == {14}                                   # sampled long enough for the longest burn-in
    assert {b for b, _ in burns} <= set(range(7)) and len({b for b, _ in burns}) > 2   # drawn per step
    assert all(L == b + 8 for b, L in burns)                      # the trained part is --run-length
    _, _, meta = load_checkpoint(tmp_path / "b.ckpt.pt")
    assert meta["training"]["config"]["burn_in"] == 6
    with pytest.raises(InputError, match="burn-in"):
        TrainConfig(burn_in=-1).validate()


def test_full_supervision_refuses_a_sparse_annotation(tmp_path):
    """--mode full scores every slice against its annotation: a segment painted on some slices only is refused
    with what to do (few-shot mode), before anything is written; the learned baselines refuse it too."""
    from ifssnet.dataset import require_complete

    full = _case(0)
    known = np.zeros(24, bool)
    known[10:13] = True
    sparse = Case("painted", full.image, {"A": np.where(known[:, None, None], full.masks["A"], 0)}, {"A": known})
    with pytest.raises(InputError, match="'A' of case 'painted' is annotated on 3 of 24 slices.*--mode fewshot"):
        train([full, sparse], tmp_path / "f.pt", model_config=IFSSNetConfig(**TINY),
              cfg=TrainConfig(mode="full", epochs=1, steps_per_epoch=1, run_length=8))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="PG-Net .* IFSS-Net in --mode fewshot"):
        require_complete([sparse], "PG-Net (fully supervised)", "IFSS-Net in --mode fewshot (--arch ifssnet)")
    require_complete([full], "--mode full", "--mode fewshot")                  # complete: no complaint
    from ifssnet.baselines.pgnet import train_pgnet
    with pytest.raises(InputError, match=r"PG-Net \(fully supervised\)"):        # the baselines' own check_cases
        train_pgnet([sparse], tmp_path / "p.pt")
    assert list(tmp_path.iterdir()) == []


def test_an_untagged_annotation_painted_on_some_slices_is_known_there_only(tmp_path):
    """A segment painted on slices with gaps between, without a painted-slice tag (painted in Slicer and trained on
    without propagating): known on its painted slices only, so full mode refuses it and few-shot mode trains it;
    a complete annotation stays known on every slice."""
    from ifssnet.dataset import case_from_arrays
    from ifssnet.io import Segment, Segmentation

    full = _case(0)
    volume = full.image.astype(np.float32)
    painted = np.zeros_like(full.masks["A"])
    painted[[4, 12, 20]] = full.masks["A"][[4, 12, 20]]
    case = case_from_arrays(volume, Segmentation([Segment("A", painted)]), 32, name="painted")
    assert np.flatnonzero(case.known["A"]).tolist() == [4, 12, 20]
    complete = case_from_arrays(volume, Segmentation([Segment("A", full.masks["A"])]), 32, name="complete")
    assert complete.known["A"].all()
    with pytest.raises(InputError, match="'A' of case 'painted' is annotated on 3 of 24 slices.*--mode fewshot"):
        train([complete, case], tmp_path / "f.pt", model_config=IFSSNetConfig(**TINY),
              cfg=TrainConfig(mode="full", epochs=1, steps_per_epoch=1, run_length=8))
    assert list(tmp_path.iterdir()) == []
    across = np.zeros_like(full.masks["A"])
    across[:, :, [8, 14, 20]] = full.masks["A"][:, :, [8, 14, 20]]
    with pytest.raises(InputError, match="'A' of case 'across' is annotated across axis 2"):
        case_from_arrays(volume, Segmentation([Segment("A", across)]), 32, name="across")


def test_a_segment_empty_in_one_case_is_refused_before_anything_runs(tmp_path):
    """A segment with no voxel on its annotated slices is never drawn for a run, so training would leave it out
    without a word: it is refused by name and case, before validation or any step, whether it is empty in every
    case or in one of several (complete, or known only on empty slices)."""
    full = _case(0)
    empty = Case("wrong", full.image, {"A": np.zeros_like(full.masks["A"])}, {"A": np.ones(24, bool)})
    known = np.zeros(24, bool)
    known[:3] = True
    off_paint = Case("off", full.image, {"A": np.where(known[:, None, None], 0, full.masks["A"])}, {"A": known})

    class NoValidation:
        def __call__(self, *args, **kwargs):
            raise AssertionError("validated before the cases were checked")

    base = train([full], tmp_path / "base.pt", model_config=IFSSNetConfig(**TINY),
                 cfg=TrainConfig(epochs=1, steps_per_epoch=1, run_length=8, checkpoint_every=50))
    for cases, mode, name in (([empty], "full", "wrong"), ([full, empty], "full", "wrong"),
                              ([full, off_paint], "fewshot", "off")):
        steps = []
        with pytest.raises(InputError, match=f"Segment 'A' of case '{name}' is empty") as err:
            train(cases, tmp_path / "m.pt", base_model=base, cfg=TrainConfig(mode=mode, epochs=1, steps_per_epoch=2),
                  validator=NoValidation(), on_step=steps.append)
        assert "paint the muscle" in err.value.todo and steps == []
        assert sorted(p.name for p in tmp_path.iterdir()) == ["base.ckpt.pt", "base.pt"]


@pytest.mark.parametrize("lr, lr_final", [(0.0, 1e-5), (-1e-4, 1e-5), (float("nan"), 1e-5), (1e-4, 0.0)])
def test_a_learning_rate_that_is_not_above_zero_is_refused(lr, lr_final):
    with pytest.raises(InputError, match="learning rate must be above 0"):
        TrainConfig(lr=lr, lr_final=lr_final).validate()


def test_strides_are_checked_against_the_window(tmp_path):
    with pytest.raises(InputError):
        _train(tmp_path / "s.pt", 1, strides=[4])                         # w = 3: slices would be skipped
    with pytest.raises(InputError):
        TrainConfig(strides=[0]).validate()


def test_first_only_jitter_deforms_the_annotation_and_never_a_prediction():
    """``--jitter-first-only`` (how the shipped weights' stage 3 was trained): the run's first mask input is
    deformed, every later one is the previous window's prediction exactly, also in the second TBPTT half."""
    from ifssnet.loss import ParametricTversky
    from ifssnet.tbptt import train_step

    model = _Recorder()
    loss_fn = ParametricTversky()
    opt = torch.optim.SGD(list(model.parameters()), lr=0.0)   # weights fixed: only the inputs matter here
    img, msk, kn = _numbered_run(24)
    torch.manual_seed(0)
    train_step(model, loss_fn, opt, img, msk, kn, TrainConfig(mask_jitter=1.0, jitter_first_only=True))
    assert not torch.equal(model.calls[0][1][:, 0], msk[:, 0:3])          # the annotation, deformed
    for before, after in zip(model.calls, model.calls[1:]):
        assert torch.equal(after[1][:, 0], torch.softmax(before[3], dim=1)[:, 1])


def test_feedback_grad_trains_a_window_through_the_mask_it_feeds_forward():
    """``--feedback-grad``: the mask a window feeds to the next keeps its gradient, so the loss reaches back
    through it (PG-Net's chains); by default it is detached. The forward pass is the same either way."""
    from ifssnet.loss import ParametricTversky
    from ifssnet.model import IFSSNet
    from ifssnet.tbptt import windows_loss

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(**TINY)).eval()                  # eval: no dropout, the two passes compare
    img, msk, kn = _numbered_run(8)
    out = {}
    for grad in (False, True):
        first = msk[:, 0:3].clone().requires_grad_(True)         # stands for the previous part's prediction
        loss, _, nxt = windows_loss(net, ParametricTversky(), img, msk, kn, TrainConfig(feedback_grad=grad),
                                    first_prev=first)
        out[grad] = (loss.detach().item(), nxt)
        if grad:
            (g,) = torch.autograd.grad(nxt.sum(), first)          # the last input depends on the first
            assert g.abs().sum() > 0
    assert out[True][0] == pytest.approx(out[False][0], abs=1e-6)
    assert out[True][1].requires_grad and not out[False][1].requires_grad


def test_shift_only_jitter_keeps_the_area_and_moves_the_mask():
    """``--jitter-radius 0``: the mask input is shifted, never dilated or eroded, so its area is kept (a
    network cannot lower the loss by learning to grow or shrink every mask, only by reading the image)."""
    from ifssnet.mask_noise import jitter_mask

    m = torch.zeros(2, 3, 32, 32)
    m[:, :, 10:20, 8:22] = 1
    torch.manual_seed(0)
    moved = 0
    for _ in range(20):
        out = jitter_mask(m, max_shift=6, max_radius=0)
        assert torch.equal(out.sum(dim=(-2, -1)), m.sum(dim=(-2, -1)))
        moved += not torch.equal(out, m)
    assert moved >= 15
    grown = [float(jitter_mask(m, 0, 3).sum()) for _ in range(20)]           # the default deforms the area
    assert any(g != float(m.sum()) for g in grown)


def test_image_head_is_added_keeping_every_other_weight_and_learns_from_the_image():
    """``--image-aux``: a network without the image-only head gets one for the cases' segments, its other
    weights unchanged; the head's loss reaches the shared encoder; with weight 0 the loss is the paper's."""
    from ifssnet.loss import ParametricTversky
    from ifssnet.model import IFSSNet
    from ifssnet.model.image_head import with_image_head
    from ifssnet.tbptt import windows_loss

    torch.manual_seed(0)
    base = IFSSNet(IFSSNetConfig(**TINY))
    assert base.image_head is None
    net = with_image_head(base, ["GM", "SOL"], seed=1).eval()
    assert net.config.image_head == ("GM", "SOL")
    for k, v in base.state_dict().items():
        assert torch.equal(net.state_dict()[k], v)
    assert with_image_head(net, ["SOL"]) is net
    from ifssnet.model.image_head import PRIOR
    with torch.no_grad():
        p0 = torch.sigmoid(net.segment_logits(net.encode_image(torch.zeros(1, 1, 3, 32, 32))))
    assert p0.shape == (1, 2, 3, 32, 32) and abs(float(p0.mean()) - PRIOR) < 0.1   # starts near the prior
    with pytest.raises(InputError, match="image-only head"):
        with_image_head(net, ["GL"])

    img, msk, kn = _numbered_run(8)
    segs = torch.tensor([1])
    plain, _, _ = windows_loss(net, ParametricTversky(), img, msk, kn, TrainConfig())
    with_aux, _, _ = windows_loss(net, ParametricTversky(), img, msk, kn, TrainConfig(image_aux=2.0), segments=segs)
    assert with_aux.detach().item() > plain.detach().item()
    net.zero_grad()
    (with_aux - plain).backward()
    assert net.image_head.proj[0].weight.grad.abs().sum() > 0
    assert net.encoder.layers[0].conv.parameters().__next__().grad.abs().sum() > 0
    with pytest.raises(InputError, match="segment"):
        windows_loss(net, ParametricTversky(), img, msk, kn, TrainConfig(image_aux=1.0))


def test_image_aux_training_ships_the_head_in_the_checkpoint(tmp_path):
    out = _train(tmp_path / "m.pt", 2, image_aux=1.0)
    model, config, meta = load_checkpoint(out)
    assert config.image_head == ("A",) and model.image_head is not None
    assert meta["training"]["config"]["image_aux"] == 1.0
    _, _, ck = load_checkpoint(out.with_name("m.ckpt.pt"))
    lrs = sorted(g["lr"] for g in ck["training"]["optimizer"]["param_groups"])
    assert lrs[-1] == pytest.approx(10 * lrs[0])            # the new head learns 10x faster than the rest
    with pytest.raises(InputError, match="image-aux"):
        TrainConfig(image_aux=-1.0).validate()


def test_image_mode_trains_the_encoder_and_head_alone(tmp_path):
    """``--mode image``: windows without mask input; the encoder and the image-only head learn, the mask-only
    parts (fusion, ConvLSTM, decoder) are untouched, and the head finds the bright segment better after."""
    from ifssnet.model import IFSSNet
    from ifssnet.extra_losses import image_head_loss

    torch.manual_seed(0)
    start = IFSSNet(IFSSNetConfig(**TINY))
    start_path = tmp_path / "start.pt"
    from ifssnet.model.checkpoint import save_checkpoint
    save_checkpoint(start_path, start, start.config, {})
    cfg = TrainConfig(mode="image", epochs=1, steps_per_epoch=30, batch=4, lr=3e-3, checkpoint_every=30)
    out = train([_case(0), _case(1)], tmp_path / "img.pt", base_model=start_path, cfg=cfg)
    net, config, meta = load_checkpoint(out)
    assert config.image_head == ("A",) and meta["training"]["config"]["mode"] == "image"
    for name, v in start.state_dict().items():
        same = torch.equal(net.state_dict()[name], v)
        assert same == (not name.startswith("encoder.")), name

    def head_loss(model):
        c = _case(5)
        img = torch.from_numpy(c.image[None, 4:7].astype(np.float32))
        msk = torch.from_numpy(c.masks["A"][None, 4:7].astype(np.float32))
        with torch.no_grad():
            return float(image_head_loss(model, model.encode_image(img[:, None]), torch.tensor([0]), msk,
                                         torch.ones(1, 3, dtype=torch.bool)))
    fresh = load_checkpoint(train([_case(0)], tmp_path / "f.pt", base_model=start_path,
                                  cfg=TrainConfig(mode="image", epochs=1, steps_per_epoch=1, lr=1e-9)))[0]
    assert head_loss(net) < head_loss(fresh) - 0.2


def test_image_mode_windows_come_from_anywhere_in_the_run():
    from ifssnet.train import _window_of

    img, msk, kn = _numbered_run(12)
    from ifssnet.dataset import Run
    run = Run(img[0].numpy(), msk[0].numpy(), kn[0].numpy(), "A")
    rng = np.random.default_rng(0)
    starts = {int(_window_of(run, rng, 3).image[0, 0, 0]) for _ in range(60)}
    assert starts == set(range(10))              # every window of the run, the last one (9..11) included


def test_box_mask_keeps_where_and_drops_the_outline():
    from ifssnet.mask_noise import box_mask

    m = torch.zeros(1, 3, 32, 32)
    m[0, 0, 10:20, 8:12] = 1
    m[0, 0, 14:18, 8:24] = 1          # an L shape: its box is larger than it
    m[0, 1, 2:5, 3:9] = 1
    torch.manual_seed(0)
    for _ in range(10):
        b = box_mask(m, max_margin=0)
        assert torch.equal(b[0, 0], torch.zeros(32, 32).index_put_((torch.arange(10, 20)[:, None],
                                                                     torch.arange(8, 24)[None]), torch.tensor(1.)))
        assert torch.equal(b[0, 1], m[0, 1])        # a rectangle is its own box
        assert b[0, 2].sum() == 0                   # an empty slice stays empty
    grown = box_mask(m, max_margin=3)
    assert (grown >= box_mask(m, 0)).all()


def test_a_network_with_a_head_fine_tunes_without_it_on_other_segments(tmp_path):
    """Without --image-aux the head is neither trained nor asked about the runs' segments."""
    headed = _train(tmp_path / "h.pt", 1, image_aux=1.0)
    c = _case(3)
    other = Case(c.name, c.image, {"B": c.masks["A"]}, {"B": c.known["A"]})
    out = train([other], tmp_path / "b.pt", base_model=headed,
                cfg=TrainConfig(epochs=1, steps_per_epoch=1, run_length=8, checkpoint_every=1))
    assert load_checkpoint(out)[1].image_head == ("A",)


@pytest.mark.parametrize("decay", ["decoupled", "coupled"])
def test_weight_decay_keeps_a_weight_that_gets_no_gradient_only_when_decoupled(decay):
    """Where the data gradient is far below the L2 term (the Bi-ConvLSTM's: about 1e-7 per weight), Adam with
    the L2 term in the gradient normalises every step to about lr, so the weight goes to 0 in |w| / lr steps;
    AdamW shrinks it by lr x 2 lambda x w only."""
    from ifssnet.loss import ParametricTversky
    from ifssnet.model import IFSSNet
    from ifssnet.train import make_optimizer

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(**TINY))
    cfg = TrainConfig(lr=1e-2, weight_decay=decay)
    opt = make_optimizer(net, ParametricTversky(), cfg)
    w = net.lstm.cell.h2g.weight
    before = w.detach().abs().mean().item()
    for _ in range(30):
        opt.zero_grad()
        for p in net.parameters():
            p.grad = torch.zeros_like(p)                 # no data gradient: only the decay acts
        opt.step()
    after = w.detach().abs().mean().item()
    if decay == "decoupled":
        assert after > 0.95 * before
    else:
        assert after < 0.3 * before


def test_training_defaults_to_decoupled_decay_and_old_runs_resume_coupled(tmp_path, monkeypatch):
    assert TrainConfig().weight_decay == "decoupled"
    with pytest.raises(InputError):
        TrainConfig(weight_decay="sometimes").validate()
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, run_length=8, checkpoint_every=1, weight_decay="coupled")
    train([_case()], tmp_path / "m.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg)
    ck = torch.load(tmp_path / "m.ckpt.pt", weights_only=True)
    del ck["extra"]["training"]["config"]["weight_decay"]          # a checkpoint written before the field existed
    torch.save(ck, tmp_path / "old.ckpt.pt")
    seen = {}
    import ifssnet.train as T
    orig = T.make_optimizer

    def spy(model, loss_fn, c):
        seen["decay"] = c.weight_decay
        return orig(model, loss_fn, c)
    monkeypatch.setattr(T, "make_optimizer", spy)
    cfg2 = TrainConfig(epochs=1, steps_per_epoch=3, run_length=8, checkpoint_every=1)
    train([_case()], tmp_path / "m2.pt", cfg=cfg2, resume=tmp_path / "old.ckpt.pt")
    assert seen["decay"] == "coupled"


def test_fine_tuning_from_a_network_with_dead_parts_warns_and_trains(tmp_path):
    """Zero weights pass almost no gradient to each other, so fine-tuning hardly revives them: the user is told,
    and the run goes on; a network without such parts fine-tunes without the warning."""
    from ifssnet.model import IFSSNet, save_checkpoint

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(**TINY))
    with torch.no_grad():
        for p in list(net.fusion.parameters()) + list(net.lstm.parameters()):
            p.mul_(1e-25)
    assert sum(q.numel() for q in list(net.fusion.parameters()) + list(net.lstm.parameters())) > \
        0.25 * sum(q.numel() for q in net.parameters())
    save_checkpoint(tmp_path / "dead.pt", net, net.config)
    cfg = TrainConfig(epochs=1, steps_per_epoch=1, run_length=8, checkpoint_every=1)
    with pytest.warns(UserWarning, match="start a new network"):
        train([_case()], tmp_path / "ft.pt", cfg=cfg, base_model=tmp_path / "dead.pt")
    assert (tmp_path / "ft.pt").exists()
    save_checkpoint(tmp_path / "alive.pt", IFSSNet(IFSSNetConfig(**TINY)), IFSSNetConfig(**TINY))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        train([_case()], tmp_path / "ft2.pt", cfg=cfg, base_model=tmp_path / "alive.pt")


def _weights(path):
    return {k: v.clone() for k, v in load_checkpoint(path)[0].state_dict().items()}


def test_ema_model_files_hold_the_average_and_the_checkpoint_the_trained_weights(tmp_path, one_thread):
    """avg = d x w1 + (1 - d) x w2 after two steps (the first update copies w1); the .ckpt.pt keeps w2 to train on,
    and validation scores the average, which is also what MODEL.best.pt holds."""
    from ifssnet.validation import ValidationScore, best_model_path

    _train(tmp_path / "one.pt", 1)
    _train(tmp_path / "two.pt", 2)
    seen = []

    def validator(net, step, rank=0, world=1, cancel=None):
        seen.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        return ValidationScore(step, 0.5, 1.0, 0.0)

    cfg = TrainConfig(epochs=1, steps_per_epoch=2, run_length=8, checkpoint_every=2, lr=1e-3, ema=0.75)
    train([_case(0), _case(1)], tmp_path / "avg.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg,
          validator=validator, val_every=2)
    w1, w2, avg = _weights(tmp_path / "one.pt"), _weights(tmp_path / "two.pt"), _weights(tmp_path / "avg.pt")
    moved = [k for k in w1 if not torch.equal(w1[k], w2[k])]
    assert len(moved) > len(w1) // 2                       # the second step changed the weights
    for k in w1:
        assert torch.allclose(avg[k], 0.75 * w1[k] + 0.25 * w2[k], atol=1e-6), k
    ckpt = tmp_path / "avg.ckpt.pt"
    for k, v in _weights(ckpt).items():
        assert torch.equal(v, w2[k]), k
    assert "ema" in load_checkpoint(ckpt)[2]["training"]
    assert "ema" not in load_checkpoint(tmp_path / "avg.pt")[2]["training"]
    assert len(seen) == 1 and all(torch.equal(seen[0][k], avg[k]) for k in avg)
    assert all(torch.equal(v, avg[k]) for k, v in _weights(best_model_path(tmp_path / "avg.pt")).items())


def test_warmup_raises_the_learning_rate_linearly_then_follows_the_schedule(tmp_path):
    cfg = TrainConfig(epochs=5, steps_per_epoch=10, lr=1e-3, lr_final=1e-4, warmup=4)
    assert [cfg.lr_at(s) for s in (0, 1, 3, 9, 29, 30, 49)] == pytest.approx(
        [2.5e-4, 5e-4, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4])
    assert TrainConfig(epochs=5, steps_per_epoch=10, lr=1e-3).lr_at(0) == 1e-3      # no warm-up by default
    logs = []
    cfg = TrainConfig(epochs=1, steps_per_epoch=3, run_length=8, checkpoint_every=3, lr=1e-3, warmup=2)
    train([_case(0)], tmp_path / "w.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, on_step=logs.append)
    assert [x.lr for x in logs] == pytest.approx([5e-4, 1e-3, 1e-3])


@pytest.mark.parametrize("bad", [{"ema": 1.0}, {"ema": -0.1}, {"warmup": -1}])
def test_ema_and_warmup_out_of_range_are_refused(bad):
    with pytest.raises(InputError):
        TrainConfig(**bad).validate()


def expected_leak(probs, msk, first_past: int, weight: float) -> float:
    """What ``weight`` x :func:`ifssnet.extra_losses.leak_loss` adds to a run's loss when its windows start at slices
    1, 2, ... (``probs``: each window's foreground probability) and those from ``first_past`` on count: their
    predicted area over the first window's annotated area, averaged over every window."""
    past = [p for t, p in enumerate(probs, start=1) if t >= first_past]
    return weight * sum(float(p.sum()) / float(msk[:, :3].sum()) for p in past) / len(probs)


def test_end_weight_charges_the_area_predicted_past_the_muscles_end():
    """Windows wholly past the end add end_weight x predicted area / first window's annotated area; windows on
    the muscle add nothing; the term trains the network (it has a gradient)."""
    from ifssnet.loss import ParametricTversky
    from ifssnet.extra_losses import leak_loss
    from ifssnet.tbptt import windows_loss

    prob = torch.full((2, 3, 8, 8), 0.5)
    target = torch.zeros(2, 3, 8, 8)
    target[1, 2, :2, :2] = 1                                   # run 1: the muscle is still there on one slice
    ref = torch.zeros(2, 3, 8, 8)
    ref[:, :, :4, :4] = 1                                      # 48 annotated pixels over the first window
    known = torch.ones(2, 3, dtype=torch.bool)
    assert float(leak_loss(prob, target, known, ref.flatten(1).sum(-1))) == pytest.approx((0.5 * 192 / 48) / 2)
    known[0, 1] = False                                        # an unannotated slice: no window counts
    assert float(leak_loss(prob, target, known, ref.flatten(1).sum(-1))) == 0.0

    img, msk, kn = _numbered_run(12)
    msk[:, 7:] = 0                                             # the muscle ends after slice 6
    torch.manual_seed(0)
    model = _Recorder().eval()
    base, _, _ = windows_loss(model, ParametricTversky(), img, msk, kn, TrainConfig())
    with_end, _, _ = windows_loss(model, ParametricTversky(), img, msk, kn, TrainConfig(end_weight=2.0))
    probs = [torch.softmax(c[3], dim=1)[:, 1] for c in model.calls[len(model.calls) // 2:]]
    expected = expected_leak(probs, msk, 7, 2.0)               # windows starting at 7, 8, 9 lie past the end
    assert float((with_end - base).detach()) == pytest.approx(expected, rel=1e-4)
    assert expected > 0
    with_end.backward()
    assert any(q.grad is not None and q.grad.abs().sum() > 0 for q in model.parameters())
    _, msk_all, _ = _numbered_run(12)                          # no window past an end: the same loss
    a, _, _ = windows_loss(model, ParametricTversky(), img, msk_all, kn, TrainConfig())
    b, _, _ = windows_loss(model, ParametricTversky(), img, msk_all, kn, TrainConfig(end_weight=2.0))
    assert float(a.detach()) == pytest.approx(float(b.detach()))
    with pytest.raises(InputError):
        TrainConfig(end_weight=-1.0).validate()


@pytest.mark.parametrize("burn", [0, 3])
def test_end_weight_measures_every_part_of_a_run_against_the_runs_annotation(monkeypatch, burn):
    """The second TBPTT half (and the part after a burn-in) starts on slices that may lie past the end: the
    leak is still a fraction of the run's own first window's annotated area."""
    import ifssnet.tbptt as T
    from ifssnet.loss import ParametricTversky

    areas = []
    orig = T.leak_loss

    def spy(prob, target, known, seed_area):
        areas.append(seed_area.clone())
        return orig(prob, target, known, seed_area)
    monkeypatch.setattr(T, "leak_loss", spy)
    img, msk, kn = _numbered_run(16)
    msk[:, 6:] = 0                                             # the second half lies past the end
    model = _Recorder()
    cfg = TrainConfig(end_weight=1.0)
    T.train_step(model, ParametricTversky(), torch.optim.SGD(model.parameters(), lr=0.0), img, msk, kn, cfg,
                 burn=burn)
    assert len(areas) >= 8
    assert all(float(a) == float(msk[:, 0:3].sum()) for a in areas)


def test_a_fine_tune_records_its_base_model_and_resume_keeps_it(tmp_path):
    """The model file of a fine-tune says what it was fine-tuned from (file, command, step, beta) and keeps the
    chain through a fine-tune of a fine-tune and through --resume; a new network records no base."""
    cfg = TrainConfig(epochs=1, steps_per_epoch=2, run_length=8, checkpoint_every=50)
    train([_case(0)], tmp_path / "a.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, command="train a")
    assert "base" not in load_checkpoint(tmp_path / "a.pt")[2]
    train([_case(0)], tmp_path / "b.pt", base_model=tmp_path / "a.pt", cfg=cfg, command="train b",
          time_limit_s=0.0)                                                    # stops after step 1
    base = load_checkpoint(tmp_path / "b.pt")[2]["base"]
    assert (base["file"], base["command"], base["step"]) == ("a.pt", "train a", 2)
    assert base["beta"] == load_checkpoint(tmp_path / "a.pt")[2]["training"]["beta"]
    assert "base" not in base and "optimizer" not in base
    train([_case(0)], tmp_path / "b.pt", resume=tmp_path / "b.ckpt.pt", command="train b --resume")
    meta = load_checkpoint(tmp_path / "b.pt")[2]
    assert meta["training"]["step"] == 2 and meta["base"] == base              # the resumed run keeps it
    assert (meta["command"], meta["resumed"]) == ("train b", ["train b --resume"])   # and the command that began it
    train([_case(0)], tmp_path / "c.pt", base_model=tmp_path / "b.pt", cfg=cfg, command="train c")
    c_meta = load_checkpoint(tmp_path / "c.pt")[2]
    chain = c_meta["base"]
    assert (chain["file"], chain["command"], chain["base"]["file"]) == ("b.pt", "train b", "a.pt")
    assert "resumed" not in c_meta


def test_cases_kept_in_one_folder_are_named_apart():
    """``ifssnet train d/leg1.nrrd:d/leg1.seg.nrrd d/leg2.nrrd:...``: messages and the data description name each
    volume, not the folder twice; the phantom layout (FOLDER/volume.nrrd) keeps the folder's name."""
    from ifssnet.dataset import case_name

    assert case_name("data/s12/volume.nrrd") == "s12"
    assert [case_name(f"data/leg{n}.nii.gz") for n in (1, 2)] == ["data/leg1", "data/leg2"]
