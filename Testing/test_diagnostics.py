"""The training diagnostics in benchmarks/: the image probe tells a network that reads the image from one
that carries its mask forward."""
import dataclasses

import numpy as np
import pytest
from benchmark_scripts import load_benchmark
from fake_models import BrightHeadModel, BrightModel, CopyModel

from ifssnet.dataset import Run


def _runs(n=3, L=12, S=16):
    """Runs where the muscle (bright square) shrinks to nothing at slice 8; the reference follows it."""
    runs = []
    for i in range(n):
        img = np.zeros((L, S, S), np.float32)
        msk = np.zeros((L, S, S), np.float32)
        for k in range(L):
            h = max(0, 6 - k // 2) if k < 8 else 0
            msk[k, 4:4 + h, 4 + i:4 + i + h] = 1
        img[msk > 0] = 3.0
        runs.append(Run(img, msk, np.ones(L, bool), "A"))
    return runs


def test_image_probe_separates_a_copier_from_a_network_that_reads_the_image():
    diag = load_benchmark("mask_copy_diagnostic")
    runs = _runs()
    for model, reads in ((CopyModel(size=16), False), (BrightModel(size=16), True)):
        leak, dice, _ = diag.run_model(model, runs, show=0)
        wrong = [diag.run_model(model, [dataclasses.replace(r, image=f(r.image)) for r in runs], show=0)
                 for f in diag.PROBES.values()]
        if reads:
            assert dice > 0.95 and leak == 0
            assert all(d < dice - 0.3 for _, d, _ in wrong)          # a wrong image costs it the muscle
        else:
            assert leak > 0
            assert all(d == dice and lk == leak for lk, d, _ in wrong)   # the copier cannot tell


def test_head_scores_read_the_image_only_head_and_skip_models_without_one():
    diag = load_benchmark("mask_copy_diagnostic")
    runs = _runs()
    assert diag.head_scores(CopyModel(size=16), runs) is None
    leak, dice = diag.head_scores(BrightHeadModel(size=16), runs)
    assert dice == 1.0 and leak == 0
    leak, dice = diag.head_scores(BrightHeadModel(size=16), [dataclasses.replace(r, image=r.image[::-1].copy())
                                                            for r in runs])
    assert dice < 0.7 and leak > 0                 # a reversed run: the head follows the wrong image
    assert diag.head_scores(BrightHeadModel(size=16), [dataclasses.replace(runs[0], segment="B")]) is None


def test_encoder_probe_scores_features_that_locate_the_segment():
    """The linear probe learns where a bright segment is from a tiny network's image features; it starts
    from nothing (an unfitted head predicts the prior, about empty)."""
    import torch

    from ifssnet.dataset import Case
    from ifssnet.model import IFSSNet, IFSSNetConfig

    probe = load_benchmark("encoder_probe")

    def case(seed):
        rng = np.random.default_rng(seed)
        img = rng.normal(size=(12, 32, 32)).astype(np.float16)
        m = np.zeros((12, 32, 32), np.uint8)
        for k in range(12):
            y, x = rng.integers(4, 16, size=2)
            m[k, y:y + 12, x:x + 12] = 1
        img[m > 0] += 3.0
        return Case(f"c{seed}", img, {"A": m}, {"A": np.ones(12, bool)})

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(size=32, width_mult=0.25))
    before = probe.probe_dice(probe.fit_probe(net, [case(0)], steps=0), [case(9)])
    after = probe.probe_dice(probe.fit_probe(net, [case(0), case(1)], steps=60), [case(9)])
    assert before < 0.2 and after > before + 0.3


def test_volume_probe_static_volume_and_drop():
    """The static volume repeats the middle seed slice; the drop is true - static per method, averaged."""
    probe = load_benchmark("volume_image_probe")
    vol = np.arange(5 * 2 * 2, dtype=np.float32).reshape(5, 2, 2)
    static = probe.static_volume(vol, [3, 1, 2])
    assert static.shape == vol.shape and static.flags.writeable
    assert np.array_equal(static, np.broadcast_to(vol[2], vol.shape))
    rows = [{"method": "a", "case": "c", "muscle": m, "image": im, "dice": d}
            for m, im, d in [("GM", "true", 0.9), ("GM", "static", 0.5), ("GL", "true", 0.6), ("GL", "static", 0.6)]]
    rows.append({"method": "b", "case": "c", "muscle": "GM", "image": "true", "dice": 0.7})   # no static run
    assert probe.dice_drop(rows) == pytest.approx({"a": 0.2})


def test_paint_next_table_names_rows_after_the_start_protocol():
    pn = load_benchmark("paint_next")
    rows = [dict(case="c", muscle=m, strategy=s, slice=None, dice=d, volume_error_pct=v)
            for m in ("GM", "GL", "SOL")
            for s, d, v in (("3-seeds+ends", 0.7, 20.0), ("paint-next", 0.8, 10.0), ("least-confident", 0.7, 21.0),
                            ("paint-next x2", 0.9, 5.0))]
    lines = pn.table(rows).splitlines()
    assert lines[2].startswith("| 3-seeds+ends | 0.700 | 20.0 % |")
    assert lines[3].startswith("| 3-seeds+ends + 1 slice (paint-next) | 0.800 | 10.0 % |")
    assert lines[5].startswith("| 3-seeds+ends + 2 slices (paint-next, one at a time) | 0.900 | 5.0 % |")


@pytest.mark.parametrize("threshold", [0.3, 0.4, 0.7])
def test_threshold_probe_thresholds_the_resampled_probabilities_at_t(threshold):
    """benchmarks/output_threshold_probe.py scales the working-grid probabilities by 0.5 / T: the masks
    that come back are those of the resampled probabilities above T, on a grid that upsamples (sparse
    path) and on one that does not, with painted slices kept as painted."""
    import torch

    from ifssnet.preprocess import InPlaneGrid
    from ifssnet.propagate_output import masks_from_probabilities
    from ifssnet.seeds import SeedSet
    from ifssnet.slice_spacing import FrameSelection

    probe = load_benchmark("output_threshold_probe")
    rng = np.random.default_rng(5)
    for shape_ji, S in (((64, 64), 32), ((50, 70), 32)):
        grid = InPlaneGrid(shape_ji, S)
        prob = torch.from_numpy(rng.random((6, S, S)).astype(np.float32))
        paint = np.zeros((6,) + shape_ji, np.uint8)
        paint[2, 5:9, 5:9] = 1
        seeds = {"A": SeedSet(paint, (2,))}
        frames = FrameSelection(np.arange(6), 6)
        masks = probe.scaled(threshold)({"A": prob.clone()}, seeds, grid, frames, (6,) + shape_ji, exclusive=False)
        want = (grid.to_volume(prob) > threshold).numpy().astype(np.uint8)
        want[2] = paint[2]
        assert int((masks["A"] != want).sum()) == 0, shape_ji
        assert masks_from_probabilities({"A": prob.clone()}, seeds, grid, frames, (6,) + shape_ji,
                                        exclusive=False)["A"].sum() != masks["A"].sum()


def test_smoothing_probe_blurs_the_working_grid_probabilities_before_the_threshold():
    """benchmarks/output_smoothing_probe.py: sigma 0 gives back the plain masks; a blur along the sweep removes a
    single frame's blip and keeps a muscle that lasts, and painted slices stay as painted."""
    import torch

    from ifssnet.preprocess import InPlaneGrid
    from ifssnet.propagate_output import masks_from_probabilities
    from ifssnet.seeds import SeedSet
    from ifssnet.slice_spacing import FrameSelection

    probe = load_benchmark("output_smoothing_probe")
    grid, K = InPlaneGrid((32, 32), 32), 12
    prob = torch.zeros((K, 32, 32))
    prob[1:6, 8:20, 8:20] = 0.9          # a muscle over 5 frames
    prob[9, 4:8, 4:8] = 0.9              # a blip on one frame
    paint = np.zeros((K, 32, 32), np.uint8)
    paint[3, 10:18, 10:18] = 1
    seeds = {"A": SeedSet(paint, (3,))}
    frames = FrameSelection(np.arange(K), K)
    args = (seeds, grid, frames, (K, 32, 32))
    plain = masks_from_probabilities({"A": prob.clone()}, *args, exclusive=False)["A"]
    assert np.array_equal(probe.smoothed(0, 0)({"A": prob.clone()}, *args, exclusive=False)["A"], plain)
    blurred = probe.smoothed(1.0, 0)({"A": prob.clone()}, *args, exclusive=False)["A"]
    assert plain[9].any() and not blurred[9].any()
    assert blurred[2, 12, 12] and blurred[4, 12, 12]
    assert np.array_equal(blurred[3], paint[3])


def test_weight_interpolation_mixes_two_files_of_one_configuration(tmp_path):
    """benchmarks/weight_interpolation.py: t = 0 and 1 give back the parents' weights, 0.5 their mean, and the
    file it writes loads as a model; files of different configurations are refused."""
    import torch

    from ifssnet.model import IFSSNet, IFSSNetConfig
    from ifssnet.model.checkpoint import load_checkpoint, save_checkpoint

    from test_train import TINY

    mix = load_benchmark("weight_interpolation")
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        paths.append(save_checkpoint(tmp_path / f"n{seed}.pt", IFSSNet(IFSSNetConfig(**TINY))))
    a, b = (load_checkpoint(p)[0].state_dict() for p in paths)
    key = next(k for k, v in a.items() if v.is_floating_point() and not torch.equal(v, b[k]))
    for t, want in ((0.0, a[key]), (1.0, b[key]), (0.5, (a[key] + b[key]) / 2)):
        assert mix.main([str(paths[0]), str(paths[1]), str(t), "--out", str(tmp_path / "m.pt")]) == 0
        net, _, meta = load_checkpoint(tmp_path / "m.pt")
        assert torch.allclose(net.state_dict()[key], want) and f"+ {t} x n1.pt" in meta["data"]
    other = save_checkpoint(tmp_path / "w.pt", IFSSNet(IFSSNetConfig(**dict(TINY, window=5))))
    with pytest.raises(ValueError, match="different configurations"):
        mix.interpolate(paths[0], other, 0.5)


def test_paper_blend_probe_zones_and_signed_error():
    """benchmarks/paper_blend_probe.py: the zones between and outside seed groups leave the seed slices out,
    and the signed error pools voxels (a tail past the muscle's end counts by its false voxels)."""
    probe = load_benchmark("paper_blend_probe")
    z = probe.zones([(10, 11, 12), (110, 111, 112), (210, 211, 212)], 300)
    assert z["between"] == [(13, 109, 0), (113, 209, 1)]
    assert z["tails"] == [(0, 9), (213, 299)]
    assert probe.zones([(0, 1, 2)], 50) == {"between": [], "tails": [(3, 49)]}
    rows = [dict(ref=100, blend=80, fwd=90, bwd=10, union=95), dict(ref=0, blend=20, fwd=None, bwd=None, union=None)]
    assert probe.signed_pct(rows, "blend") == pytest.approx(0.0)          # 100 voxels, of which 20 past the end
    assert probe.signed_pct(rows[:1], "blend") == pytest.approx(-20.0)
    assert probe.signed_pct(rows, "fwd") == pytest.approx(-10.0)          # the empty column of a tail is left out
    assert np.isnan(probe.signed_pct(rows[1:], "fwd"))
