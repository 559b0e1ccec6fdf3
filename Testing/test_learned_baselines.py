"""The learned baselines: PG-Net (reference-guided propagation) and the fully supervised 3-D U-Net.

Tiny widths and 32 x 32 grids, a few training steps: the whole file runs in well under a minute.
"""
import numpy as np
import pytest
import torch

from ifssnet.baselines import registry
from ifssnet.baselines.learned_common import load_model_file, save_model
from ifssnet.baselines.pgnet import (GlobalConvBlock, PGEncoder, PGNet, PGNetConfig, PGNetTrainConfig, chain_loss,
                                     load_pgnet, pgnet, plan_chains, train_pgnet)
from ifssnet.baselines.unet3d import (SlidingWindow, UNet3D, UNet3DConfig, UNet3DTrainConfig, load_unet3d,
                                      patch_loss, train_unet3d, unet3d, window_starts)
from ifssnet.dataset import Case
from ifssnet.errors import Cancelled, InputError, ModelError
from ifssnet.preprocess import InPlaneGrid, intensity_stats, normalized_work_volume
from ifssnet.progress import CancelToken
from ifssnet.seeds import cut_seeds

PG_TINY = dict(size=32, width=4, stages=3)
U_TINY = dict(size=32, segments=("A", "B"), width=4, patch=(8, 32, 32))


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _case(seed=0, K=24):
    """A bright moving box (A) and a dark fixed band (B): trivially learnable."""
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(K, 32, 32)).astype(np.float32)
    a = np.zeros((K, 32, 32), np.uint8)
    b = np.zeros((K, 32, 32), np.uint8)
    for k in range(K):
        a[k, 8:20, 6 + k // 4:22 + k // 4] = 1
    b[:, 24:30, 4:28] = 1
    img[a > 0] += 2.0
    img[b > 0] -= 2.0
    return Case(f"c{seed}", img.astype(np.float16), {"A": a, "B": b}, {"A": np.ones(K, bool), "B": np.ones(K, bool)})


def _volume(case):
    return np.clip(case.image.astype(np.float32) * 30 + 120, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------- PG-Net


def test_pgnet_shapes_and_one_shared_encoder():
    net = PGNet(PGNetConfig(**PG_TINY))
    calls = []
    net.encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape))
    x = torch.randn(2, 1, 32, 32)
    out = net(x, (x > 0).float(), torch.randn(2, 1, 32, 32), torch.zeros(2, 1, 32, 32))
    assert out.shape == (2, 1, 32, 32)
    assert calls == [(2, 2, 32, 32), (2, 2, 32, 32)]            # both streams through the same module
    assert sum(isinstance(m, PGEncoder) for m in net.modules()) == 1
    # Identical streams give identical features: the weights are the same.
    feats = net.encoder(torch.cat([x, x], 1))
    assert torch.equal(net.encode_reference(x, x), feats[-1])
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4]


def test_global_convolution_block_is_separable_large_kernels():
    g = GlobalConvBlock(6, 5, 7)
    assert g(torch.randn(1, 6, 9, 11)).shape == (1, 5, 9, 11)
    shapes = sorted(tuple(m.kernel_size) for m in g.modules() if isinstance(m, torch.nn.Conv2d))
    assert shapes == [(1, 7), (1, 7), (7, 1), (7, 1)]


def test_plan_chains_reach_each_slice_from_its_nearest_seed():
    plan = plan_chains([5, 6, 7, 20, 21, 22], 30)
    covered = sorted(k for _, sl in plan for k in sl)
    assert covered == sorted(set(range(30)) - {5, 6, 7, 20, 21, 22})
    for ref, sl in plan:
        assert abs(sl[0] - ref) == 1                              # starts next to its reference
        for k in sl:
            assert abs(k - ref) == min(abs(k - s) for s in (5, 6, 7, 20, 21, 22))


def _fixed_batch(case, L=8):
    img = torch.from_numpy(case.image[:L].astype(np.float32))[None]
    msk = torch.from_numpy(case.masks["A"][:L].astype(np.float32))[None]
    return img, msk, torch.ones(1, L, dtype=torch.bool)


@pytest.fixture(scope="module")
def pg_trained(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("pg") / "pgnet.pt"
    cfg = PGNetTrainConfig(epochs=1, steps_per_epoch=14, run_length=8, chain=3, lr=3e-3, batch=2, checkpoint_every=7)
    logs = []
    train_pgnet([_case(0), _case(1)], out, model_config=PGNetConfig(**PG_TINY), cfg=cfg, on_step=logs.append,
                command="ifssnet train test --arch pgnet")
    torch.set_num_threads(threads)
    return out, cfg, logs


def test_pgnet_training_decreases_the_dice_loss(pg_trained):
    out, cfg, logs = pg_trained
    assert len(logs) == 14 and all(np.isfinite(l.loss) for l in logs)
    torch.manual_seed(cfg.seed)                                   # the trainer's initial weights
    before_net = PGNet(PGNetConfig(**PG_TINY)).eval()
    after_net, config, meta = load_pgnet(out)
    assert config == PGNetConfig(**PG_TINY).to_dict() and meta["arch"] == "pgnet"
    assert meta["training"]["step"] == 14 and meta["command"] == "ifssnet train test --arch pgnet"
    batch = _fixed_batch(_case(2))
    with torch.no_grad():
        before = float(chain_loss(before_net, *batch, start=2, chain=5))
        after = float(chain_loss(after_net, *batch, start=2, chain=5))
    assert after < 0.7 * before


def test_pgnet_propagation_keeps_painted_slices_exact(pg_trained):
    out, _, _ = pg_trained
    case = _case(3, K=20)
    vol = _volume(case)[:, 2:30, 1:31]                           # (20, 28, 30): not the working size
    ref = case.masks["A"][:, 2:30, 1:31]
    seeds = cut_seeds(ref, [9, 10, 11])
    seen = []
    mask = pgnet(vol, seeds, (1.0, 1.0, 1.0), model=out, device="cpu", progress=lambda *a: seen.append(a))
    assert mask.shape == vol.shape and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    assert np.array_equal(mask[[9, 10, 11]], ref[[9, 10, 11]])
    assert seen and seen[-1][1] == seen[-1][2] == 17
    dice = 2 * (mask & ref).sum() / (mask.sum() + ref.sum())
    assert dice > 0.5


def test_pgnet_several_segments_in_one_call_and_kept_apart(pg_trained):
    """One muscle painted as two segments on different slices: PG-Net carries both over the whole muscle;
    in one call they come out as from two calls, and with ``exclusive`` they share no voxel."""
    from ifssnet.exclusive import overlap_voxels

    out, _, _ = pg_trained
    case = _case(3, K=20)
    vol, ref = _volume(case), case.masks["A"]
    seeds = {"A": cut_seeds(ref, [3, 4, 5]), "A2": cut_seeds(ref, [14, 15, 16])}
    together = pgnet(vol, seeds, (1.0, 1.0, 1.0), model=out, device="cpu", exclusive=False)
    for n, s in seeds.items():
        np.testing.assert_array_equal(together[n], pgnet(vol, s, (1.0, 1.0, 1.0), model=out, device="cpu"))
    assert overlap_voxels(together) > 0.3 * ref.sum()
    apart = pgnet(vol, seeds, (1.0, 1.0, 1.0), model=out, device="cpu")
    assert overlap_voxels(apart) == 0
    for n, s in seeds.items():
        np.testing.assert_array_equal(apart[n][list(s.slices)], ref[list(s.slices)])
    union = (apart["A"] | apart["A2"]).sum()
    assert union >= 0.95 * (together["A"] | together["A2"]).sum()


def test_pgnet_on_a_finer_sweep_runs_on_the_frames_nearest_its_slice_spacing(pg_trained):
    """As IFSS-Net: a network trained at 1 mm on a sweep 0.25 mm apart runs on 11 of 41 frames (the three painted
    slices anchor one of them: 10 to predict),
    every slice gets a result, painted slices as painted; at its own spacing it is the same as every frame."""
    out, _, _ = pg_trained
    net, config, _ = load_pgnet(out)
    net.config.slice_spacing_mm = 1.0
    case = _case(5, K=41)
    vol, ref = _volume(case), case.masks["A"]
    seeds = cut_seeds(ref, [19, 20, 21])
    for spacing, match, steps in ((0.25, True, 10), (0.25, False, 38)):
        seen = []
        mask = pgnet(vol, seeds, (spacing, 1.0, 1.0), model=net, device="cpu", match_slice_spacing=match,
                     progress=lambda *a: seen.append(a))
        assert seen[-1][2] == steps and mask.shape == vol.shape
        assert np.array_equal(mask[[19, 20, 21]], ref[[19, 20, 21]])
        assert mask[[0, 3, 37, 40]].any(axis=(1, 2)).all()     # every slice has a result, also between frames
    same = pgnet(vol, seeds, (1.0, 1.0, 1.0), model=net, device="cpu")
    np.testing.assert_array_equal(same, pgnet(vol, seeds, (1.0, 1.0, 1.0), model=net, device="cpu",
                                              match_slice_spacing=False))


def test_pgnet_training_records_the_cases_slice_spacing(tmp_path):
    import dataclasses

    cfg = PGNetTrainConfig(epochs=1, steps_per_epoch=2, run_length=6, chain=2, batch=1, checkpoint_every=2)
    cases = [dataclasses.replace(_case(0), slice_spacing_mm=0.8), dataclasses.replace(_case(1), slice_spacing_mm=1.2)]
    train_pgnet(cases, tmp_path / "pg.pt", model_config=PGNetConfig(**PG_TINY), cfg=cfg)
    assert load_pgnet(tmp_path / "pg.pt")[1]["slice_spacing_mm"] == pytest.approx(1.0)   # the median


def test_pgnet_cancel_and_loaded_model():
    case = _case(4, K=12)
    seeds = cut_seeds(case.masks["A"], [5])
    net = PGNet(PGNetConfig(**PG_TINY))
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        pgnet(_volume(case), seeds, (1, 1, 1), model=net, device="cpu", cancel=token)
    mask = pgnet(_volume(case), seeds, (1, 1, 1), model=net, device="cpu")
    assert mask.shape == (12, 32, 32) and np.array_equal(mask[5], case.masks["A"][5])


def test_pgnet_resume_continues_exactly(tmp_path):
    kw = dict(model_config=PGNetConfig(**PG_TINY))
    cfg = PGNetTrainConfig(epochs=1, steps_per_epoch=4, run_length=6, chain=2, batch=1, checkpoint_every=2, lr=1e-2)
    train_pgnet([_case(0)], tmp_path / "a.pt", cfg=cfg, **kw)
    cancel_at = {"n": 0}

    def stop_after_two():
        return cancel_at["n"] >= 2

    with pytest.raises(Cancelled):
        train_pgnet([_case(0)], tmp_path / "b.pt", cfg=cfg, cancel=stop_after_two,
                    on_step=lambda log: cancel_at.__setitem__("n", log.step), **kw)
    assert not (tmp_path / "b.pt").exists() and (tmp_path / "b.ckpt.pt").exists()
    train_pgnet([_case(0)], tmp_path / "b.pt", resume=tmp_path / "b.ckpt.pt")
    a, _, _ = load_pgnet(tmp_path / "a.pt")
    b, _, meta = load_pgnet(tmp_path / "b.pt")
    assert meta["training"]["step"] == 4 and "optimizer" not in meta["training"]
    assert "optimizer" in load_pgnet(tmp_path / "b.ckpt.pt")[2]["training"]
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), n


# ------------------------------------------------------------------------------------- 3-D U-Net


def test_unet3d_shapes_and_patch_rounding():
    cfg = UNet3DConfig(size=32, segments=("GM", "GL", "SOL"), width=4, patch=(10, 48, 20))
    assert cfg.factor == (2, 8, 8) and cfg.patch == (10, 32, 16)
    net = UNet3D(cfg)
    assert net(torch.randn(2, 1, 10, 32, 16)).shape == (2, 3, 10, 32, 16)
    with pytest.raises(ModelError):
        UNet3DConfig(size=36)


def test_unet3d_training_decreases_the_loss(tmp_path):
    cfg = UNet3DTrainConfig(epochs=1, steps_per_epoch=16, lr=2e-2, batch=1)
    out = train_unet3d([_case(0), _case(1)], tmp_path / "u.pt", model_config=UNet3DConfig(**U_TINY), cfg=cfg)
    torch.manual_seed(cfg.seed)
    before_net = UNet3D(UNet3DConfig(**U_TINY)).eval()
    after_net, config, meta = load_unet3d(out)
    assert tuple(config["segments"]) == ("A", "B") and meta["arch"] == "unet3d"
    c = _case(2)
    img = torch.from_numpy(c.image[:8].astype(np.float32))[None, None]
    tgt = torch.from_numpy(np.stack([c.masks["A"][:8], c.masks["B"][:8]]).astype(np.float32))[None]
    kn = torch.ones(1, 2, 8)
    with torch.no_grad():
        before, after = float(patch_loss(before_net(img), tgt, kn)), float(patch_loss(after_net(img), tgt, kn))
    assert after < 0.8 * before


def test_unet3d_patches_of_a_case_shorter_than_the_patch_are_padded_as_unknown():
    from ifssnet.baselines.unet3d import _sample_patch

    img, tgt, kn = _sample_patch(_case(0, K=5), ["A", "B"], (8, 32, 32), np.random.default_rng(0), UNet3DTrainConfig())
    assert img.shape == (8, 32, 32) and tgt.shape == (2, 8, 32, 32) and kn.shape == (2, 8)
    assert kn[:, :5].all() and not kn[:, 5:].any() and not tgt[:, 5:].any()


class _Oracle(UNet3D):
    """Channel 0: foreground everywhere; channel 1: where the image is bright; channel 2: nowhere."""

    def forward(self, x):
        return torch.cat([torch.full_like(x, 8.0), 8.0 * torch.sign(x - 1.0), torch.full_like(x, -8.0)], 1)


class _Identity(UNet3D):
    def forward(self, x):
        return x.expand(-1, len(self.config.segments), -1, -1, -1)


def test_sliding_window_covers_and_blends_exactly():
    assert window_starts(21, 8) == [0, 4, 8, 12, 13] and window_starts(5, 8) == [0]
    for K in (21, 5):                                            # longer and shorter than the patch
        net = _Identity(UNet3DConfig(size=32, segments=("A",), width=4, patch=(8, 16, 16)))
        work = torch.randn(K, 32, 32)
        sw = SlidingWindow(net, work, "cpu", batch=3)
        parts = [sw.predict(k0, min(K, k0 + 8)) for k0 in range(0, K, 8)]   # consecutive ranges
        prob = torch.cat(parts, dim=1)[0]
        assert torch.allclose(prob, torch.sigmoid(work), atol=1e-6)
        assert sw.done == sw.total                                # no window computed twice


def test_unet3d_method_picks_the_muscle_from_the_seeds():
    case = _case(5, K=20)
    vol = _volume(case)
    net = _Oracle(UNet3DConfig(size=32, segments=("GM", "GL", "SOL"), width=4, patch=(8, 32, 32)))
    grid = InPlaneGrid((32, 32), 32)                              # the net's input: the volume, z-scored
    bright = (normalized_work_volume(vol, grid, *intensity_stats(vol)) > 1.0).numpy().astype(np.uint8)
    seeds = cut_seeds(case.masks["A"], [3, 4, 5, 15])
    mask = unet3d(vol, seeds, (1, 1, 1), model=net, device="cpu")        # GL (channel 1) overlaps best
    assert mask.shape == vol.shape and mask.dtype == np.uint8
    assert np.array_equal(mask[[3, 4, 5, 15]], case.masks["A"][[3, 4, 5, 15]])
    free = [k for k in range(20) if k not in (3, 4, 5, 15)]
    assert np.array_equal(mask[free], bright[free])
    everything = unet3d(vol, seeds, (1, 1, 1), model=net, device="cpu", segment="gm")
    assert everything[free].all()
    with pytest.raises(InputError, match="GM, GL, SOL"):
        unet3d(vol, seeds, (1, 1, 1), model=net, device="cpu", segment="TA")


# ----------------------------------------------------------------------------------------- both


@pytest.mark.parametrize("name,fn,env", [("pgnet", pgnet, "IFSSNET_PGNET_MODEL"),
                                         ("unet3d", unet3d, "IFSSNET_UNET3D_MODEL")])
def test_registry_and_missing_checkpoint(name, fn, env, tmp_path, monkeypatch):
    assert registry.get(name) is fn
    assert name in registry.available()
    monkeypatch.setenv(env, str(tmp_path / "nothing.pt"))
    case = _case(6, K=8)
    with pytest.raises(ModelError) as err:
        fn(_volume(case), cut_seeds(case.masks["A"], [3]), (1, 1, 1), device="cpu")
    assert f"ifssnet train CASES --arch {name} --out Resources/Models/{name}.pt" in str(err.value)
    assert "nothing.pt" in str(err.value)


def test_checkpoint_round_trip_and_arch_checks(tmp_path):
    from ifssnet.baselines.pgnet import _build as build_pg
    from ifssnet.baselines.unet3d import _build as build_u
    from ifssnet.model.checkpoint import load_checkpoint

    net = PGNet(PGNetConfig(**PG_TINY))
    path = save_model(tmp_path / "p.pt", net, "pgnet", net.config.to_dict(), {"command": "x", "step": 3})
    raw = torch.load(path, weights_only=True)                     # IFSS-Net's file layout, weights only
    assert {"arch", "format_version", "config", "derived", "package_version", "created", "state_dict",
            "extra"} <= set(raw)
    back, config, meta = load_model_file(path, "pgnet", build_pg)
    assert config == net.config.to_dict() and meta["step"] == 3 and not back.training
    for p, q in zip(net.state_dict().values(), back.state_dict().values()):
        assert torch.equal(p, q)
    with pytest.raises(ModelError, match="PG-Net"):
        load_model_file(path, "unet3d", build_u)
    with pytest.raises(ModelError):
        load_checkpoint(path)                                      # IFSS-Net's loader refuses it too
    u = UNet3D(UNet3DConfig(**U_TINY))
    upath = save_model(tmp_path / "u.pt", u, "unet3d", u.config.to_dict())
    back_u, _, _ = load_model_file(upath, "unet3d", build_u)
    assert back_u.config == u.config
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError):
        load_model_file(tmp_path / "bad.pt", "pgnet", build_pg)


def test_cli_trains_both_and_the_comparison_runs_them(tmp_path):
    from ifssnet.cli import main
    from ifssnet.compare import compare
    from ifssnet.phantom import write_phantom

    ph = write_phantom(tmp_path / "case0", seed=0, shape=(24, 32, 40))
    common = ["--size", "32", "--epochs", "1", "--steps", "2", "--width-mult", "0.25", "--run-length", "8"]
    assert main(["train", str(tmp_path / "case0"), "--arch", "pgnet", "--out", str(tmp_path / "pg.pt")] + common) == 0
    assert main(["train", str(tmp_path / "case0"), "--arch", "unet3d", "--out", str(tmp_path / "u.pt")] + common) == 0
    assert main(["train", str(tmp_path / "case0"), "--arch", "pgnet", "--mode", "fewshot",
                 "--out", str(tmp_path / "x.pt")] + common) == 2
    for extra in (["--batch", "4"], ["--strides", "1,3"], ["--time-limit", "5"], ["--mask-jitter", "0.5"],
                  ["--feedback-grad"], ["--jitter-radius", "0"], ["--image-aux", "1"]):
        assert main(["train", str(tmp_path / "case0"), "--arch", "unet3d", "--out", str(tmp_path / "y.pt")]
                    + common + extra) == 2                        # IFSS-Net's options are refused, not ignored
    assert not (tmp_path / "y.pt").exists()
    assert main(["train", str(tmp_path / "case0"), "--arch", "pgnet", "--from", str(tmp_path / "pg.pt"),
                 "--out", str(tmp_path / "pg2.pt"), "--epochs", "2", "--steps", "1", "--size", "64"]) == 0
    # The stored size wins over --size; the default --run-length (32) is longer than the case (24 slices).
    assert load_pgnet(tmp_path / "pg2.pt")[1]["size"] == 32
    _, ucfg, _ = load_unet3d(tmp_path / "u.pt")
    assert tuple(ucfg["segments"]) == ("GM", "GL", "SOL") and tuple(ucfg["patch"]) == (8, 32, 32)
    rows = compare(ph.volume, {"SOL": ph.labels["SOL"]}, ph.geometry.spacing_kji, methods=["pgnet", "unet3d"],
                   method_options={"pgnet": {"model": str(tmp_path / "pg.pt"), "device": "cpu"},
                                   "unet3d": {"model": str(tmp_path / "u.pt"), "device": "cpu"}})
    assert [r["method"] for r in rows] == ["pgnet", "unet3d"]
    assert all(r["error"] == "" and np.isfinite(r["dice"]) for r in rows)


def test_a_trailing_comma_in_a_baselines_segment_list_names_no_empty_segment(tmp_path):
    """``ifssnet train --arch unet3d --segments GM,`` asked for a segment named '' ("Case 'case0' has no segment ;
    the 3-D U-Net predicts GM, ."); empty names are left out, as for IFSS-Net's --segments (d5ce2c9)."""
    from ifssnet.cli import main
    from ifssnet.phantom import write_phantom

    write_phantom(tmp_path / "case0", seed=0, shape=(24, 32, 40))
    assert main(["train", str(tmp_path / "case0"), "--arch", "unet3d", "--segments", "GM,", "--out",
                 str(tmp_path / "u.pt"), "--size", "32", "--epochs", "1", "--steps", "1", "--run-length", "8"]) == 0
    assert tuple(load_unet3d(tmp_path / "u.pt")[1]["segments"]) == ("GM",)


@pytest.mark.parametrize("extra, named", [(["--val", "CASE"], "--val"), (["--burn-in", "8"], "--burn-in"),
                                          (["--tversky-beta", "0.65"], "--tversky-beta"), (["--ema", "0.99"], "--ema"),
                                          (["--val-every", "5"], "--val-every"), (["--cycle", "4"], "--cycle"),
                                          (["--cycle", "0"], "--cycle"), (["--warmup", "0"], "--warmup")])
def test_options_a_baseline_would_ignore_are_refused_by_name(tmp_path, capsys, extra, named):
    """Every IFSS-Net option outside what --arch pgnet / unet3d read is refused before any case is read (--val
    was silently ignored): the message names it, exit 2, nothing written; also typed at its default value
    (--cycle 0, --warmup 0 were accepted and ignored)."""
    from cli_output import error_line
    from ifssnet.cli import main

    case = tmp_path / "case0"
    case.mkdir()                                  # no volume in it: a case read would fail with another message
    extra = [str(case) if e == "CASE" else e for e in extra]
    capsys.readouterr()
    assert main(["train", str(case), "--arch", "pgnet", "--out", str(tmp_path / "m.pt"), "--lr", "1e-3",
                 "--epochs", "1"] + extra) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith(f"ifssnet: {named}: implemented for IFSS-Net only, not PG-Net"), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case0"]


def test_pgnet_cross_entropy_term_is_added_to_the_dice_loss():
    torch.manual_seed(0)
    model = PGNet(PGNetConfig(size=32, width=4))
    image = torch.randn(2, 6, 32, 32)
    mask = torch.zeros(2, 6, 32, 32)
    mask[:, :, 8:20, 10:22] = 1
    mask[1, 3:] = 0                                           # the muscle ends: empty targets
    known = torch.ones(2, 6, dtype=torch.bool)
    torch.manual_seed(1)
    dice = chain_loss(model, image, mask, known, 2, 3)
    torch.manual_seed(1)
    both = chain_loss(model, image, mask, known, 2, 3, bce_weight=1.0)
    assert both.item() > dice.item() > 0                     # cross-entropy of an untrained net is > 0
    both.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_bce_weight_is_refused_for_the_unet_which_has_no_such_term(tmp_path, capsys):
    """--bce-weight is PG-Net's (its chain loss's cross-entropy term); the 3-D U-Net's training has none, so
    ``--arch unet3d --bce-weight 1`` is refused by name, not ignored (exit 2, nothing written)."""
    from cli_output import error_line
    from ifssnet.cli import main

    case = tmp_path / "case0"
    case.mkdir()
    capsys.readouterr()
    assert main(["train", str(case), "--arch", "unet3d", "--out", str(tmp_path / "m.pt"), "--bce-weight", "1"]) == 2
    line = error_line(capsys.readouterr().err)
    assert line.startswith("ifssnet: --bce-weight: implemented for IFSS-Net and PG-Net only, not 3-D U-Net."), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case0"]
