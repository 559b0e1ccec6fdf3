"""Propagation: geometry, seed groups, painted slices, stopping, blending, confidence, errors, cancel."""
import numpy as np
import pytest
import torch

from fake_models import CopyModel, EmptyModel, UnsureModel
from ifssnet.errors import Cancelled, InputError, ResourceError, SeedError, VolumeError
from ifssnet.progress import CancelToken
from ifssnet.propagate import propagate
from ifssnet.seeds import cut_seeds

K, J, I = 40, 50, 70


def _volume(seed=0):
    return np.random.default_rng(seed).integers(0, 255, (K, J, I)).astype(np.uint8)


def _tube():
    m = np.zeros((K, J, I), np.uint8)
    m[:, 12:34, 20:55] = 1
    return m


def test_copy_model_carries_the_painted_mask_through_the_whole_sweep():
    m = _tube()
    res = propagate(_volume(), {"T": cut_seeds(m, (18, 19, 20))}, CopyModel(size=64), device="cpu")
    out = res.masks["T"]
    assert out.shape == (K, J, I) and out.dtype == np.uint8
    # Resampling 70x50 -> 64x64 -> back keeps a box within one voxel at its edges.
    assert (out != m).sum() / m.sum() < 0.08
    np.testing.assert_array_equal(out[18:21], m[18:21])
    assert res.confidence["T"].shape == (K,)


def test_painted_slices_come_out_exactly_as_painted():
    m = _tube()
    odd = m.copy()
    odd[5, 15:17, 30:33] = 0        # a hole only on one painted slice
    odd[30] = 0                      # an annotated slice with no muscle
    seeds = cut_seeds(odd, (5, 12, 18, 30))
    res = propagate(_volume(), {"T": seeds}, CopyModel(size=32), device="cpu")
    for k in (5, 12, 18, 30):
        np.testing.assert_array_equal(res.masks["T"][k], odd[k])


def test_single_slice_groups_far_apart_and_stop_between_seeds_only():
    m = _tube()
    seeds = cut_seeds(m, (8, 20, 32))
    res = propagate(_volume(), {"T": seeds}, CopyModel(size=32), device="cpu", between_seeds_only=True)
    out = res.masks["T"]
    assert out[:8].sum() == 0 and out[33:].sum() == 0
    assert out[9:32].any(axis=(1, 2)).all()


def test_runs_end_where_the_muscle_ends():
    m = _tube()
    seen = []
    res = propagate(_volume(), {"T": cut_seeds(m, (18, 19, 20))}, EmptyModel(size=32), device="cpu", patience=4,
                    progress=lambda stage, done, total: seen.append((stage, done, total)))
    out = res.masks["T"]
    assert out.sum() == m[18:21].sum()
    assert len(res.ended["T"]) == 2          # both directions stopped
    steps = [(d, t) for s, d, t in seen if s == "propagating"]
    assert res.windows < steps[-1][1] and steps[-1] == (steps[-1][1],) * 2   # the bar ends full, not at the stop


def test_no_muscle_marks_do_not_lower_the_area_that_ends_a_run():
    """The stop compares a run's mask with the painted slices' mean area; annotated empty slices ("no muscle
    here") are not part of that mean. A network that leaves a speck of 7 % of the painted area ends its runs
    (below 10 %), with or without three empty marks (which would have pulled the bar down to 5 %)."""

    class SpeckModel(CopyModel):
        def prob(self, image, prev):
            out = torch.zeros_like(prev)
            out[..., 10:14, 10:14] = 1.0                          # 16 of the tube's ~224 working-grid pixels
            return out

    m = _tube()
    plain = propagate(_volume(), {"T": cut_seeds(m, (18, 19, 20))}, SpeckModel(size=32), device="cpu")
    marked = propagate(_volume(), {"T": cut_seeds(m, (18, 19, 20)).with_empty([2, 37, 38])}, SpeckModel(size=32),
                       device="cpu")
    assert len(plain.ended["T"]) == 2
    assert len(marked.ended["T"]) >= 2 and not marked.masks["T"][[2, 37, 38]].any()


def _two_shapes():
    """Shape a painted on slices 5-7, shape b (elsewhere in-plane) on 25-27: (a, b, painted, seeds)."""
    a = np.zeros((K, J, I), np.uint8)
    a[:, 5:20, 5:30] = 1
    b = np.zeros((K, J, I), np.uint8)
    b[:, 25:45, 35:65] = 1
    painted = a.copy()
    painted[25:28] = b[25:28]
    return a, b, painted, cut_seeds(painted, (5, 6, 7, 25, 26, 27))


def test_mean_blending_between_two_groups_follows_the_nearer_seed():
    a, b, painted, seeds = _two_shapes()
    out = propagate(_volume(), {"T": seeds}, CopyModel(size=32), device="cpu",
                    between_seeds_only=True, blend="mean").masks["T"]
    assert (out[9] & a[9]).sum() > 0.8 * a[9].sum()
    assert (out[23] & b[23]).sum() > 0.8 * b[23].sum()


def test_max_blend_keeps_what_either_run_finds_between_two_groups():
    """A run that has lost the muscle (here: carries another shape) does not veto the other with blend="max"."""
    a, b, painted, seeds = _two_shapes()
    run = lambda blend: propagate(_volume(), {"T": seeds}, CopyModel(size=32), device="cpu",  # noqa: E731
                                  between_seeds_only=True, blend=blend)
    mean, peak = run("mean"), run("max")
    assert not (mean.masks["T"][23] & a[23]).any()                    # the nearer run wins under the mean
    for k in range(8, 25):                                            # both shapes, all the way between
        got = peak.masks["T"][k].astype(bool)
        assert (got & a[k]).sum() > 0.9 * a[k].sum() and (got & b[k]).sum() > 0.9 * b[k].sum()
        assert (got & ~(a[k] | b[k]).astype(bool)).sum() < 0.1 * (a[k] | b[k]).sum()
    assert np.array_equal(peak.masks["T"][[5, 6, 7, 25, 26, 27]], painted[[5, 6, 7, 25, 26, 27]])
    assert (mean.masks["T"] <= peak.masks["T"]).all()                 # the max is never below the weighted mean
    np.testing.assert_allclose(peak.confidence["T"], mean.confidence["T"])   # confidence: the mean's either way
    with pytest.raises(InputError, match="Unknown blend"):
        run("union")


def test_max_blend_leaves_a_no_muscle_mark_its_say():
    """Between painted muscle and a slice marked "no muscle here" the max blend is the mean: the mark's
    run still weighs more near the mark."""
    muscle = _tube()
    painted = muscle.copy()
    painted[30] = 0                                                    # the mark
    seeds = cut_seeds(painted, (10, 11, 12, 30))
    masks = {b: propagate(_volume(), {"T": seeds}, CopyModel(size=32), device="cpu", blend=b).masks["T"]
             for b in ("mean", "max")}
    np.testing.assert_array_equal(masks["max"], masks["mean"])
    assert masks["max"][14].any() and not masks["max"][29].any()          # next to the mark: nothing


def test_several_segments_in_one_batch():
    m = _tube()
    n = np.zeros_like(m)
    n[:, 36:46, 5:15] = 1
    res = propagate(_volume(), {"A": cut_seeds(m, (3, 4, 5)), "B": cut_seeds(n, (30, 31, 32))},
                    CopyModel(size=32), device="cpu")
    assert set(res.masks) == {"A", "B"}
    assert res.masks["A"][36:46, 36:46, 5:15].sum() == 0
    assert res.masks["B"][:, 12:34, 20:55].sum() == 0


def test_confidence_is_lower_where_the_network_is_unsure():
    m = _tube()
    sure = propagate(_volume(), {"T": cut_seeds(m, (18, 19, 20))}, CopyModel(size=32), device="cpu").confidence["T"]
    unsure = propagate(_volume(), {"T": cut_seeds(m, (18, 19, 20))}, UnsureModel(size=32), device="cpu").confidence["T"]
    assert np.all((sure >= 0) & (sure <= 1))
    assert unsure[25:35].mean() < sure[25:35].mean() - 0.2
    assert sure[19] == 1.0


def test_confidence_falls_with_the_distance_from_the_painted_slices():
    """A copier carries the mask on through the whole sweep, as a network that misses a muscle's end does:
    the slices far from the paint, where such a leak lies, are the ones the confidence flags."""
    res = propagate(_volume(), {"T": cut_seeds(_tube(), (18, 19, 20))}, CopyModel(size=64), device="cpu",
                    stop_at_end=False)
    conf = res.confidence["T"]
    assert conf[19] == 1.0 and conf[21] > 0.9
    assert np.all(np.diff(conf[21:]) <= 1e-6) and np.all(np.diff(conf[:18]) >= -1e-6)
    assert conf[39] < 0.5 and conf[0] < 0.5
    # the least confident slices are the far ends, spread out, painted slices never among them
    worst = res.least_confident("T", count=3)
    assert worst[0] == 39 and 0 in worst and all(abs(a - b) >= 1 for a in worst for b in worst if a != b)


def test_the_slice_to_paint_next_is_the_middle_of_the_longest_unanchored_stretch():
    from ifssnet.confidence import next_slice_to_paint

    res = propagate(_volume(), {"T": cut_seeds(_tube(), (18, 19, 20))}, CopyModel(size=64), device="cpu",
                    stop_at_end=False)
    assert res.painted["T"] == [18, 19, 20]
    assert res.paint_next("T") == 30                  # 21-39 (19 slices) is longer than 0-17 (18)
    everywhere = np.ones(100, bool)
    assert next_slice_to_paint(everywhere, [50, 51, 52]) == 24
    # between two painted groups a stretch counts half: 13-87 (75 slices, 37.5) beats the ends (10, 9)
    assert next_slice_to_paint(everywhere, [10, 11, 12, 88, 89, 90]) == 50
    assert next_slice_to_paint(everywhere, [10, 11, 12, 60, 61, 62]) == 81   # 63-99: 37 slices
    # the extent is the result's: nothing to suggest where it covers only the painted slices, or all is painted
    assert next_slice_to_paint(np.zeros(40, bool), [18, 19, 20]) is None
    assert next_slice_to_paint(everywhere, range(100)) is None


def test_distance_confidence_is_dimensionless_and_empty_slices_are_not_flagged():
    from ifssnet.confidence import distance_confidence, least_confident_slices

    short = distance_confidence(np.ones(100, bool), [50])
    long = distance_confidence(np.ones(400, bool), [200])
    np.testing.assert_allclose(short, long[::4], atol=1e-6)     # the same at the same fraction of the extent
    assert short[50] > 0.95 and short[0] < short[40] < short[49]
    # five places, not one place five times; painted slices left out
    conf = np.linspace(0, 1, 100)
    assert least_confident_slices(conf, 3, min_gap=10) == [0, 10, 20]
    assert least_confident_slices(conf, 2, exclude=[0, 1], min_gap=1) == [2, 3]
    # a slice with no foreground and no doubt keeps confidence 1, however far from the paint
    res = propagate(_volume(), {"T": cut_seeds(_tube(), (18, 19, 20))}, EmptyModel(size=32), device="cpu")
    empty = ~res.masks["T"].any(axis=(1, 2))
    assert empty.sum() > 30 and np.all(res.confidence["T"][empty] == 1.0)


def test_distance_confidence_of_a_collapsed_mask_is_quiet_and_in_range():
    """A network that lost the muscle leaves only the painted slices: d / n runs into the hundreds,
    and the logistic must give 0, not an overflow warning."""
    import warnings

    from ifssnet.confidence import DISTANCE_LOGIT, distance_confidence

    present = np.zeros(1400, bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conf = distance_confidence(present, [700, 701, 702])
    assert conf.dtype == np.float32 and np.all((conf >= 0) & (conf <= 1))
    assert conf[701] > 0.95 and conf[0] == 0.0
    # the same values as the textbook logistic where that does not overflow
    a, b = DISTANCE_LOGIT
    z = a - b * np.abs(np.arange(200) - 100) / 200
    np.testing.assert_allclose(distance_confidence(np.ones(200, bool), [100]), 1 / (1 + np.exp(-z)), atol=1e-6)


def test_real_network_runs_end_to_end():
    from ifssnet.model import IFSSNet, IFSSNetConfig

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(size=32, width_mult=0.25))
    res = propagate(_volume()[:12], {"T": cut_seeds(_tube()[:12], (4, 5, 6))}, net, device="cpu", stop_at_end=False)
    assert res.masks["T"].shape == (12, J, I)


@pytest.mark.parametrize("slices", [(), (10,), (10, 11)])
def test_too_few_painted_slices(slices):
    with pytest.raises(SeedError, match="^'T' is (painted on|not painted).*(at least 3|any slice)"):
        propagate(_volume(), {"T": cut_seeds(_tube(), slices)}, CopyModel(), device="cpu")
    with pytest.raises(SeedError, match="^The segment is"):   # one SeedSet has no name: none is made up
        propagate(_volume(), cut_seeds(_tube(), slices), CopyModel(), device="cpu")


def test_empty_segment():
    with pytest.raises(SeedError, match="empty"):
        propagate(_volume(), {"T": cut_seeds(np.zeros((K, J, I), np.uint8), (1, 2, 3))}, CopyModel(), device="cpu")


@pytest.mark.parametrize("volume, match", [
    (np.zeros((50, 60), np.uint8), "2-D"),
    (np.zeros((2, K, J, I), np.uint8), "dimensions"),
    (np.full((K, J, I), 7, np.uint8), "constant"),
])
def test_unusable_volumes(volume, match):
    seeds = cut_seeds(_tube(), (1, 2, 3))
    with pytest.raises(VolumeError, match=match):
        propagate(volume, {"T": seeds}, CopyModel(), device="cpu")


def test_negative_float_volume_is_fine():
    vol = (_volume().astype(np.float32) - 300.0) * 0.01
    res = propagate(vol, {"T": cut_seeds(_tube(), (1, 2, 3))}, CopyModel(size=32), device="cpu")
    assert res.masks["T"].any()


def test_cuda_requested_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ResourceError, match="GPU"):
        propagate(_volume(), {"T": cut_seeds(_tube(), (1, 2, 3))}, CopyModel(), device="cuda")


def test_cancel_raises_and_returns_nothing():
    token = CancelToken()
    calls = []

    def progress(stage, done, total):
        calls.append(stage)
        if stage == "propagating" and done > 0:
            token.cancel()

    with pytest.raises(Cancelled):
        propagate(_volume(), {"T": cut_seeds(_tube(), (18, 19, 20))}, CopyModel(size=32), device="cpu",
                  progress=progress, cancel=token, batch_size=1)
    assert "propagating" in calls


def test_the_shipped_model_loads_and_propagates():
    """The weights in Resources/Models/ are complete and run end to end (quality: README, model card)."""
    from ifssnet.phantom import make_phantom
    from ifssnet.propagate import default_model_path, load_model

    if not default_model_path().exists():
        pytest.skip("no shipped model in this checkout")
    net = load_model(None, "cpu")
    assert net.config.size == 128
    ph = make_phantom(3, (60, 64, 64))
    sol = ph.labels["SOL"]
    k = int(np.argmax(sol.reshape(60, -1).sum(1)))
    res = propagate(ph.volume, {"SOL": cut_seeds(sol, (k - 1, k, k + 1))}, None, device="cpu")
    out = res.masks["SOL"]
    np.testing.assert_array_equal(out[k - 1:k + 2], sol[k - 1:k + 2])
    assert out[k + 2:k + 5].any()          # it propagated past the painted slices


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_session.sh runs it)")
@pytest.mark.parametrize("preset, min_dice", [("accurate", 0.99), ("balanced", 0.97), ("fast", 0.97)])
def test_cuda_gives_the_cpus_masks(preset, min_dice):
    """On a GPU, each preset's masks agree with the CPU's (the same preset; balanced and fast autocast on the GPU)."""
    from ifssnet.bench import dice
    from ifssnet.phantom import make_phantom
    from ifssnet.propagate import default_model_path
    from ifssnet.seeds import largest_slices

    if not default_model_path().exists():
        pytest.skip("no shipped model in this checkout")
    ph = make_phantom(1000, (80, 128, 128))
    seeds = {m: cut_seeds(ph.labels[m], largest_slices(ph.labels[m])) for m in ("GM", "GL", "SOL")}
    cpu = propagate(ph.volume, seeds, None, device="cpu", preset=preset)
    gpu = propagate(ph.volume, seeds, None, device="cuda", preset=preset)
    assert gpu.device.startswith("cuda")
    for m in seeds:
        assert dice(gpu.masks[m], cpu.masks[m]) >= min_dice, m


def test_loading_a_model_file_zeroes_negligible_weights_and_keeps_the_masks(tmp_path):
    """Weights of 1e-21 (what coupled L2 decay leaves) make x86 CPUs compute on subnormals, many times slower;
    load_model sets them to 0, and the network's output does not change."""
    from ifssnet.model import IFSSNet, IFSSNetConfig, save_checkpoint
    from ifssnet.propagate import load_model

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(size=32, width_mult=0.25)).eval()
    with torch.no_grad():
        net.lstm.cell.h2g.weight.mul_(1e-20)
        net.fusion.a[0].weight.mul_(1e-22)
    save_checkpoint(tmp_path / "m.pt", net, net.config)
    loaded = load_model(tmp_path / "m.pt")
    assert loaded.lstm.cell.h2g.weight.detach().abs().max().item() == 0.0
    assert loaded.fusion.a[0].weight.detach().abs().max().item() == 0.0
    assert torch.equal(loaded.encoder.layers[0].conv.conv.weight, net.encoder.layers[0].conv.conv.weight)
    x = torch.randn(2, 1, 3, 32, 32)
    m = (torch.rand(2, 1, 3, 32, 32) > 0.5).float()
    with torch.no_grad():
        a = torch.softmax(net(x, m)[0], 1)
        b = torch.softmax(loaded(x, m)[0], 1)
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_network_whose_mask_stream_sees_the_image_propagates_several_segments():
    """The pre-encoded image windows travel with their features (cache batches, picks and joins)."""
    from ifssnet.model import IFSSNet, IFSSNetConfig

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(size=32, width_mult=0.25, mask_sees_image=True)).eval()
    m = _tube()
    n = np.zeros_like(m)
    n[:, 36:46, 5:15] = 1
    seeds = {"A": cut_seeds(m[:14], (3, 4, 5)), "B": cut_seeds(n[:14], (8, 9, 10))}
    both = propagate(_volume()[:14], seeds, net, device="cpu", stop_at_end=False, exclusive=False)
    alone = propagate(_volume()[:14], {"B": seeds["B"]}, net, device="cpu", stop_at_end=False)
    assert set(both.masks) == {"A", "B"}
    assert (both.masks["B"] != alone.masks["B"]).mean() < 1e-3


def test_a_larger_stop_area_ends_a_thinning_run_sooner():
    """``min_area_fraction`` (``--stop-area``): a run ends once the mask stays below that share of the seeds'
    area for ``patience`` slices. On a cone that thins from the seeds, 0.5 ends it well before 0.1 does."""
    from fake_models import BrightModel

    K, S = 40, 32
    k, j, i = np.indices((K, S, S))
    cone = ((j - 15.5) ** 2 + (i - 15.5) ** 2 <= (10 - k / 4.0) ** 2).astype(np.uint8)
    volume = (np.random.default_rng(0).normal(size=(K, S, S)) + 10.0 * cone).astype(np.float32)
    seeds = {"T": cut_seeds(cone, (0, 1, 2))}

    def last_slice(fraction):
        mask = propagate(volume, seeds, BrightModel(size=S), device="cpu", min_area_fraction=fraction).masks["T"]
        return int(np.flatnonzero(mask.reshape(K, -1).any(axis=1))[-1])

    assert last_slice(0.5) + 8 <= last_slice(0.1)
    with pytest.raises(InputError, match="not a share of the seeds' area"):
        propagate(volume, seeds, BrightModel(size=S), device="cpu", min_area_fraction=1.5)
