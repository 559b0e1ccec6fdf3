"""The network's slice spacing: which frames of a finer sweep propagation runs on, and back."""
import numpy as np
import pytest
import torch

from fake_models import BrightModel, CopyModel
from ifssnet.baselines.registry import get
from ifssnet.errors import ModelError
from ifssnet.model.config import IFSSNetConfig
from ifssnet.propagate import propagate
from ifssnet.propagate_output import seeds_on_frames
from ifssnet.seeds import cut_seeds
from ifssnet.slice_spacing import FrameSelection, select_frames

K, J, I = 81, 40, 40


class Counting(CopyModel):
    """A copier that knows its training spacing and counts the windows it is shown."""

    def __init__(self, spacing_mm=1.0):
        super().__init__(size=32)
        self.config.slice_spacing_mm = spacing_mm
        self.windows = 0

    def forward(self, image, prev_mask, state=None):
        self.windows += image.shape[0]
        return super().forward(image, prev_mask, state)


def _tube():
    m = np.zeros((K, J, I), np.uint8)
    m[:, 10:30, 8:32] = 1
    return m


def test_frames_are_thinned_only_for_a_finer_sweep_with_both_spacings_known():
    every = np.arange(401)
    for spacing, network in ((None, 1.0), (0.25, None), (0.0, 1.0), (1.0, 1.0), (0.95, 1.0), (2.0, 1.0)):
        sel = select_frames(401, spacing, network)
        np.testing.assert_array_equal(sel.frames, every)
        assert not sel.thinned
    sel = select_frames(401, 0.25, 1.0)
    assert sel.thinned and len(sel.frames) == 101
    assert sel.frames[0] == 0 and sel.frames[-1] == 400
    assert np.all(np.diff(sel.frames) == 4) and sel.spacing_mm == pytest.approx(1.0)
    uneven = select_frames(1400, 0.277, 1.108)          # the paper's sweep, the shipped network
    assert len(uneven.frames) == 351 and set(np.diff(uneven.frames)) <= {3, 4, 5}
    assert uneven.spacing_mm == pytest.approx(1.108, rel=0.01)
    assert not select_frames(20, 0.25, 1.0).thinned     # 6 frames would be too few to propagate


def test_values_on_the_frames_go_back_to_every_slice_linearly():
    sel = FrameSelection(np.array([0, 4, 8, 10]), 11)
    ramp = sel.frames.astype(np.float64) * 2.0           # a linear function of the slice
    np.testing.assert_allclose(sel.to_sweep(ramp), np.arange(11) * 2.0)
    t = torch.stack([torch.full((2, 2), float(f)) for f in sel.frames])
    back = sel.to_sweep(t, 3, 9)
    assert back.shape == (6, 2, 2)
    np.testing.assert_allclose(back[:, 0, 0].numpy(), np.arange(3, 9), atol=1e-6)
    assert [sel.nearest(k) for k in (0, 1, 2, 3, 5, 9, 10)] == [0, 0, 0, 1, 1, 2, 3]


def test_a_finer_sweep_runs_a_quarter_of_the_windows_and_keeps_the_painted_slices():
    m = _tube()
    vol = np.random.default_rng(0).integers(0, 255, (K, J, I)).astype(np.uint8)
    painted = m.copy()
    painted[40, 12:14, 10:12] = 0                      # a hole on one painted slice
    seeds = {"T": cut_seeds(painted, (39, 40, 41))}
    every, thin = Counting(), Counting()
    full = propagate(vol, seeds, every, device="cpu", slice_spacing_mm=0.25, match_slice_spacing=False)
    res = propagate(vol, seeds, thin, device="cpu", slice_spacing_mm=0.25)
    assert full.frames == K and res.frames == 21 and res.frame_spacing_mm == pytest.approx(1.0)
    assert thin.windows * 3 < every.windows
    out = res.masks["T"]
    for k in (39, 40, 41):
        np.testing.assert_array_equal(out[k], painted[k])
    assert (out != m).sum() / m.sum() < 0.06          # the tube everywhere, off frames too
    assert res.confidence["T"].shape == (K,) and res.confidence["T"][40] == 1.0


def test_where_the_image_ends_the_mask_ends_within_one_frame_step():
    vol = np.zeros((K, J, I), np.float32)
    vol[:, 10:30, 8:32] = 1.0
    vol[53:] = 0.0                                    # the bright structure ends after slice 52
    net = BrightModel(size=32)
    net.config.slice_spacing_mm = 1.0
    m = np.zeros((K, J, I), np.uint8)
    m[:53, 10:30, 8:32] = 1
    res = propagate(vol * 100, {"T": cut_seeds(m, (20, 21, 22))}, net, device="cpu", slice_spacing_mm=0.25,
                    patience=2)
    present = res.masks["T"].any(axis=(1, 2))
    last = int(np.flatnonzero(present)[-1])
    assert 50 <= last <= 55                          # frames every 4 slices: 52 is kept, 56 is not
    assert all(e % 4 == 0 for e in res.ended["T"])   # reported in the sweep's slices, on kept frames


def test_the_comparison_runner_passes_the_volumes_slice_spacing():
    m = _tube()
    vol = np.random.default_rng(1).integers(0, 255, (K, J, I)).astype(np.uint8)
    seeds = cut_seeds(m, (39, 40, 41))
    fine, coarse = Counting(), Counting()
    get("ifssnet")(vol, seeds, (0.25, 1.0, 1.0), model=fine, device="cpu")
    get("ifssnet")(vol, seeds, (1.0, 1.0, 1.0), model=coarse, device="cpu")
    assert fine.windows * 3 < coarse.windows


@pytest.mark.parametrize("bad", [0.0, -1.0, "1.1", True])
def test_the_configuration_checks_the_slice_spacing(bad):
    assert IFSSNetConfig.from_json(IFSSNetConfig(slice_spacing_mm=1.108).to_json()).slice_spacing_mm == 1.108
    assert IFSSNetConfig().slice_spacing_mm is None
    with pytest.raises(ModelError, match="slice_spacing_mm"):
        IFSSNetConfig(slice_spacing_mm=bad)



def test_painted_slices_become_frames_and_one_that_is_not_gives_its_mask_to_the_nearest():
    sel = select_frames(81, 0.25, 1.0, keep=(39, 40, 41, 62))
    assert 40 in sel.frames and 62 in sel.frames and 39 not in sel.frames and 41 not in sel.frames
    assert np.all(np.diff(sel.frames) >= 2)
    masks = torch.arange(3.0)[:, None, None].expand(3, 2, 2)
    seeds = seeds_on_frames(np.array([3, 4, 5]), masks, FrameSelection(np.array([0, 4, 8]), 9))
    assert list(seeds) == [1] and float(seeds[1][0, 0]) == 1.0        # slice 4's own mask, not 3's or 5's
    seeds = seeds_on_frames(np.array([3, 5]), masks[:2], FrameSelection(np.array([0, 4, 8]), 9))
    assert list(seeds) == [1] and float(seeds[1][0, 0]) == 0.0        # neither is a frame: the first one's


def _train_case(K=81, spacing=0.25, known=None):
    from ifssnet.dataset import Case

    img = np.random.default_rng(K).normal(size=(K, 32, 32)).astype(np.float16)
    m = np.zeros((K, 32, 32), np.uint8)
    m[:, 8:20, 6:22] = 1
    img[m > 0] += 1.5
    kn = np.ones(K, bool) if known is None else known
    return Case(f"c{K}", img, {"A": m}, {"A": kn}, spacing)


def test_training_cases_are_thinned_to_the_networks_spacing_and_annotated_groups_stay():
    from ifssnet.dataset import thin_case

    full = thin_case(_train_case(), 1.0)
    assert full.n_slices == 21 and full.slice_spacing_mm == pytest.approx(1.0)
    assert full.known["A"].all() and full.masks["A"].shape == (21, 32, 32)
    known = np.zeros(81, bool)
    known[[21, 22, 23, 60, 61, 62]] = True
    part = thin_case(_train_case(known=known), 1.0)
    # the paint takes the place of frames 20, 24 and 60 (as propagation's frames), the rest of each group beside
    assert part.known["A"].sum() == 6 and part.n_slices == 21 - 3 + 6
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, part.known["A"].astype(int), 0])))[::2]
    assert list(runs) == [3, 3]
    assert thin_case(_train_case(spacing=1.0), 1.0).n_slices == 81
    assert thin_case(_train_case(spacing=None), 1.0).n_slices == 81


def test_a_new_network_learns_the_cases_spacing_and_a_fine_tuned_one_keeps_its_own(tmp_path):
    from ifssnet.model.checkpoint import load_checkpoint, set_slice_spacing
    from ifssnet.train import TrainConfig, match_slice_spacing, train

    cfg = IFSSNetConfig(size=32, width_mult=0.25)
    cases = match_slice_spacing([_train_case(41, 0.5), _train_case(61, 0.5), _train_case(81, 2.0)], cfg)
    assert cfg.slice_spacing_mm == 0.5 and [c.n_slices for c in cases] == [41, 61, 81]
    tc = TrainConfig(epochs=1, steps_per_epoch=1, run_length=8, checkpoint_every=1)
    new = train([_train_case(41, 0.5)], tmp_path / "new.pt", model_config=IFSSNetConfig(size=32, width_mult=0.25), cfg=tc)
    assert load_checkpoint(new)[1].slice_spacing_mm == 0.5
    set_slice_spacing(new, 1.0, tmp_path / "base.pt")
    assert load_checkpoint(tmp_path / "base.pt")[1].slice_spacing_mm == 1.0
    tuned = train([_train_case(81, 0.25)], tmp_path / "tuned.pt", base_model=tmp_path / "base.pt", cfg=tc)
    assert load_checkpoint(tuned)[1].slice_spacing_mm == 1.0
    a, b = load_checkpoint(new)[0].state_dict(), load_checkpoint(tmp_path / "base.pt")[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)           # set_slice_spacing keeps the weights


def test_the_time_estimate_counts_the_frames_that_will_run():
    from ifssnet.estimate import expected_seconds

    net = Counting(1.0)
    fine = expected_seconds((401, 32, 32), 1, "accurate", "cpu", net, slice_spacing_mm=0.25)
    every = expected_seconds((401, 32, 32), 1, "accurate", "cpu", net, slice_spacing_mm=1.0)
    assert fine < 0.5 * every            # the same calibration (cached per network): 101 frames against 401


def test_the_shipped_networks_know_the_spacing_they_were_trained_at():
    from pathlib import Path

    from ifssnet.model.checkpoint import load_checkpoint

    models = Path(__file__).resolve().parents[1] / "Resources" / "Models"
    for name in ("ifssnet.pt", "ifssnet-ws.pt"):           # both trained on the 400-slice phantoms
        assert load_checkpoint(models / name)[1].slice_spacing_mm == pytest.approx(1.108)
    from ifssnet.baselines.pgnet import load_pgnet

    assert load_pgnet(models / "pgnet.pt")[0].config.slice_spacing_mm == pytest.approx(1.108)   # the same phantoms


def test_set_slice_spacing_writes_pgnet_and_unet_files_and_refuses_others(tmp_path):
    import torch

    from ifssnet.baselines.learned_common import save_model
    from ifssnet.baselines.pgnet import PGNet, PGNetConfig, load_pgnet
    from ifssnet.baselines.unet3d import UNet3D, UNet3DConfig
    from ifssnet.errors import ModelError
    from ifssnet.model.checkpoint import set_slice_spacing

    net = PGNet(PGNetConfig(size=32, width=4, stages=3))
    path = save_model(tmp_path / "pg.pt", net, "pgnet", net.config.to_dict())
    set_slice_spacing(path, 0.9, out=tmp_path / "pg09.pt")
    back = load_pgnet(tmp_path / "pg09.pt")[0]
    assert back.config.slice_spacing_mm == 0.9 and load_pgnet(path)[0].config.slice_spacing_mm is None
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), back.state_dict().values()))
    u = UNet3D(UNet3DConfig(size=32, segments=("A",), width=4, patch=(8, 32, 32)))
    upath = save_model(tmp_path / "u.pt", u, "unet3d", u.config.to_dict())
    set_slice_spacing(upath, 0.9)             # U-Net files too, since session 41 (its inference thins finer sweeps)
    from ifssnet.baselines.unet3d import load_unet3d

    assert load_unet3d(upath)[0].config.slice_spacing_mm == 0.9
    other = tmp_path / "other.pt"
    torch.save({"arch": "something else", "state_dict": {}}, other)
    with pytest.raises(ModelError):
        set_slice_spacing(other, 0.9)
