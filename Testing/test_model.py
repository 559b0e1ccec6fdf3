"""IFSS-Net network: shapes per module, weight sharing, state carry-over, fast-form equivalence, checkpoints.

Tiny configurations (size 64, width_mult 0.25) keep the file well under a minute on 2 cores.
"""
from __future__ import annotations

import pickle

import pytest

torch = pytest.importorskip("torch")

from ifssnet.errors import InputError, ModelError  # noqa: E402
from ifssnet.model import (FORMAT_VERSION, IFSSNet, IFSSNetConfig, count_parameters,  # noqa: E402
                           flops_per_window, load_checkpoint, save_checkpoint)
from ifssnet.model.convlstm import BiConvLSTM, ConvLSTMCell  # noqa: E402
from ifssnet.model.decoder import Decoder  # noqa: E402
from ifssnet.model.encoder import SiameseEncoder  # noqa: E402
from ifssnet.model.fusion import GlobalFeatureMatching  # noqa: E402
from ifssnet.model.layers import (AtrousSeparable, SliceConv3d, fold, reference_conv3d,  # noqa: E402
                                  unfold)

S, W = 64, 3


@pytest.fixture(scope="module")
def cfg():
    return IFSSNetConfig(size=S, width_mult=0.25)


@pytest.fixture(scope="module")
def net(cfg):
    torch.manual_seed(0)
    return IFSSNet(cfg).eval()


def _inputs(b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, 1, W, S, S, generator=g)
    m = (torch.rand(b, 1, W, S, S, generator=g) > 0.5).float()
    return x, m


# ------------------------------------------------------------------------- config
def test_config_json_roundtrip_and_rates(cfg):
    again = IFSSNetConfig.from_json(cfg.to_json())
    assert again == cfg
    rates = IFSSNetConfig(size=128).layer_rates()
    assert rates[0] == [1, 6, 12, 18] and rates[3] == [1, 6, 12, 15] and rates[4] == [1, 6, 7]
    for s, rs in zip(cfg.map_sizes(), cfg.layer_rates()):
        assert all(r < s for r in rs)
    assert IFSSNetConfig().channels() == [30, 30, 60, 60, 120]


@pytest.mark.parametrize("bad", [dict(size=100), dict(norm="batch"), dict(widths=(1, 2)),
                                 dict(lstm_dropout=1.5), dict(arch="unet"), dict(dropout_mode="x")])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ModelError):
        IFSSNetConfig(**bad)


def test_config_rejects_unknown_fields():
    with pytest.raises(ModelError):
        IFSSNetConfig.from_dict({"window": 3, "future_field": 1})


# -------------------------------------------------------------- fast form == naive
@pytest.mark.parametrize("kernel,dil,groups", [((3, 3, 3), (1, 1), 1), ((1, 3, 3), (6, 6), 8),
                                               ((1, 3, 3), (2, 2), 1), ((3, 1, 1), (1, 1), 1),
                                               ((1, 5, 1), (1, 1), 1), ((1, 1, 5), (1, 1), 1)])
def test_slice_conv_equals_conv3d(kernel, dil, groups):
    torch.manual_seed(1)
    m = SliceConv3d(8, 8, kernel, dil, groups=groups)
    x5 = torch.randn(2, 8, W, 16, 16, requires_grad=True)
    ref = reference_conv3d(m, x5)
    got = unfold(m(fold(x5), W), 2)
    assert torch.allclose(got, ref, atol=1e-5)
    gy = torch.randn_like(ref)
    g_ref = torch.autograd.grad(ref, [x5, m.weight], gy)
    g_got = torch.autograd.grad(got, [x5, m.weight], gy)
    for a, b in zip(g_got, g_ref):
        assert torch.allclose(a, b, atol=1e-4)


def test_fold_unfold_roundtrip():
    x = torch.randn(2, 5, 3, 8, 8)
    assert torch.equal(unfold(fold(x), 2), x)


# ---------------------------------------------------------------- module shapes
def test_encoder_shapes(cfg):
    enc = SiameseEncoder(cfg)
    x, m = _inputs()
    fi = enc(fold(x), W)
    fm = enc(fold(m), W, guide=fi)
    ch = cfg.channels()
    for i, (a, b) in enumerate(zip(fi.skips, fm.skips)):
        assert a.shape == b.shape == (2 * W, ch[i], S >> i, S >> i)
    assert fm.bottleneck.shape == (2 * W, ch[-1], S // 32, S // 32)
    assert fi.batch == 2 and fi.depth == W


def test_atrous_block_shape():
    blk = AtrousSeparable(8, [1, 6, 12], pool_branch=True)
    assert blk(torch.randn(6, 8, 32, 32)).shape == (6, 8, 32, 32)


@pytest.mark.parametrize("norm", ["group", "none"])
def test_atrous_block_is_concatenate_then_project(norm):
    """The paper's block: branches concatenated, one 1x1 projection, norm, ReLU. The fast form sums the
    branches' products instead; values and gradients must be the same."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    blk = AtrousSeparable(8, [1, 6, 12], norm=norm, pool_branch=True).train()
    blk.drop = torch.nn.Identity()
    x = torch.randn(6, 8, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_()

    def paper(x):
        branches = torch.cat([x] + [dw(x) for dw in blk.dw], dim=1)
        y = F.conv2d(branches, torch.cat([pw.weight for pw in blk.pw], dim=1), blk.pw[0].bias)
        return F.relu(blk.norm(y + blk.pool_proj(x.mean(dim=(2, 3), keepdim=True))))

    fast, ref = blk(x), paper(x)
    assert fast.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad((fast * g).sum(), x)[0],
                               torch.autograd.grad((ref * g).sum(), x)[0], atol=1e-5, rtol=1e-5)


def test_fusion_lstm_decoder_shapes(cfg):
    c5, f = cfg.channels()[-1], cfg.bottleneck_size()
    a = torch.randn(2 * W, c5, f, f)
    g = GlobalFeatureMatching(cfg)(a, torch.randn_like(a), W)
    assert g.shape == a.shape
    out, (h, c) = BiConvLSTM(c5, 3, 0.4)(g, W)
    assert out.shape == a.shape and h.shape == c.shape == (2, c5, f, f)
    skips = [torch.randn(2 * W, ch, S >> i, S >> i) for i, ch in enumerate(cfg.channels())]
    assert Decoder(cfg)(out, skips).shape == (2 * W, 2, S, S)


def test_net_shapes_and_probabilities(net, cfg):
    x, m = _inputs()
    with torch.no_grad():
        logits, (h, c) = net(x, m)
    assert logits.shape == (2, 2, W, S, S)
    assert h.shape == (2, cfg.channels()[-1], S // 32, S // 32)
    p = net.probabilities(logits)
    assert torch.allclose(p.sum(1), torch.ones(2, W, S, S), atol=1e-5)
    assert net.foreground(logits).shape == (2, 1, W, S, S)


def test_net_rejects_wrong_shapes(net):
    with pytest.raises(InputError):
        net(torch.zeros(1, 1, W, 48, 48), torch.zeros(1, 1, W, 48, 48))


# --------------------------------------------------------------- sharing
def test_twin_encoders_share_one_module(cfg):
    torch.manual_seed(0)
    net = IFSSNet(cfg)
    assert sum(isinstance(mod, SiameseEncoder) for mod in net.modules()) == 1
    enc_params = {id(p) for p in net.encoder.parameters()}
    x, m = _inputs(1)
    # image stream alone
    fi = net.encoder(fold(x), W)
    fi.bottleneck.sum().backward()
    got_img = {id(p) for p in net.encoder.parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    net.zero_grad(set_to_none=True)
    # mask stream alone (image features detached, so every gradient comes from the mask stream)
    fi = net.encoder(fold(x), W)
    guide = type(fi)(tuple(s.detach() for s in fi.skips), fi.bottleneck.detach(), fi.batch, fi.depth)
    fm = net.encoder(fold(m), W, guide=guide)
    fm.bottleneck.sum().backward()
    got_mask = {id(p) for p in net.encoder.parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert got_img == got_mask
    assert len(got_img) > 0.9 * len(enc_params)  # (norm biases may sit behind a ReLU that is off)


def test_bilstm_reuses_one_cell(cfg):
    c5 = cfg.channels()[-1]
    lstm = BiConvLSTM(c5, 3, 0.0)
    cells = [mod for mod in lstm.modules() if isinstance(mod, ConvLSTMCell)]
    assert len(cells) == 1
    assert count_parameters(lstm) == count_parameters(cells[0]) == 2 * (4 * c5 * c5 * 9) + 4 * c5
    # the backward pass exists: slice 0's output depends on slice 2's input (forward alone cannot)
    x = torch.randn(W, c5, 2, 2, requires_grad=True)
    out, _ = lstm(x, W)
    (gx,) = torch.autograd.grad(out[0].sum(), x)
    assert gx[2].abs().sum() > 0
    # ...and slice 2's output depends on slice 0 (forward direction)
    (gx,) = torch.autograd.grad(lstm(x, W)[0][2].sum(), x)
    assert gx[0].abs().sum() > 0


def test_carried_state_is_after_first_slice(cfg):
    c5 = cfg.channels()[-1]
    lstm = BiConvLSTM(c5, 3, 0.0).eval()
    x = torch.randn(2 * W, c5, 2, 2)
    _, carry = lstm(x, W)
    first = x.reshape(2, W, c5, 2, 2)[:, 0]
    _, ref = lstm(first, 1)
    assert torch.allclose(carry[0], ref[0], atol=1e-6) and torch.allclose(carry[1], ref[1], atol=1e-6)
    _, last = lstm(x, W, carry_index=W - 1)
    assert not torch.allclose(last[0], carry[0])


def test_state_changes_output(net):
    x, m = _inputs(1)
    with torch.no_grad():
        a, st = net(x, m)
        a2, _ = net(x, m)
        b, _ = net(x, m, state=(st[0] + 1.0, st[1] + 1.0))
    assert torch.equal(a, a2)                 # eval mode is deterministic
    assert not torch.allclose(a, b)


def test_batched_image_encoding_matches_forward(net):
    x, m = _inputs(3)
    with torch.no_grad():
        ref, st_ref = net(x[1:2], m[1:2])
        feats = net.encode_image(x)
        got, st = net.forward_from_features(feats.select(1, 2), m[1:2])
    assert torch.allclose(got, ref, atol=1e-5)
    assert torch.allclose(st[0], st_ref[0], atol=1e-6)


def test_gradients_reach_every_part(cfg):
    torch.manual_seed(0)
    net = IFSSNet(cfg).train()
    x, m = _inputs(1)
    logits, _ = net(x, m)
    logits[:, 1].mean().backward()
    for name in ("encoder", "fusion", "lstm", "decoder"):
        mod = getattr(net, name)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in mod.parameters()), name


def test_counts(cfg):
    assert count_parameters(IFSSNet(cfg)) > 0
    assert 0 < flops_per_window(cfg) < flops_per_window(IFSSNetConfig(size=64))


# ------------------------------------------------------------------- checkpoints
def test_checkpoint_roundtrip(tmp_path, net, cfg):
    path = save_checkpoint(tmp_path / "m.pt", net, cfg,
                           {"training_command": "ifssnet train a b", "data": {"cases": 2}, "step": 7,
                            "rng": torch.get_rng_state()})
    assert not [p for p in tmp_path.iterdir() if p.name != "m.pt"]  # no temp file left
    model, cfg2, meta = load_checkpoint(path)
    assert cfg2 == cfg and meta["step"] == 7 and meta["training_command"] == "ifssnet train a b"
    assert meta["format_version"] == FORMAT_VERSION and meta["arch"] == "ifssnet"
    x, m = _inputs(1)
    with torch.no_grad():
        assert torch.equal(model(x, m)[0], net(x, m)[0])


def test_checkpoint_refuses_unsafe_extra(tmp_path, net):
    import numpy as np
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "m.pt", net, extra={"rng": np.zeros(3)})
    assert not (tmp_path / "m.pt").exists()


class _Payload:
    def __reduce__(self):
        return (print, ("this would run on load",))


def _raw(cfg, net, **over):
    d = {"arch": "ifssnet", "format_version": FORMAT_VERSION, "config": cfg.to_json(),
         "state_dict": net.state_dict(), "extra": {}}
    d.update(over)
    return d


def test_checkpoint_errors(tmp_path, net, cfg):
    good = save_checkpoint(tmp_path / "good.pt", net, cfg)
    data = good.read_bytes()
    cases = {}
    cases["missing"] = tmp_path / "nope.pt"
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2]); cases["truncated"] = tmp_path / "trunc.pt"
    (tmp_path / "junk.pt").write_bytes(b"\x00garbage" * 100); cases["corrupt"] = tmp_path / "junk.pt"
    torch.save({"arch": "ifssnet", "x": _Payload()}, tmp_path / "code.pt"); cases["code"] = tmp_path / "code.pt"
    (tmp_path / "pickle.pt").write_bytes(pickle.dumps(_Payload())); cases["plain pickle"] = tmp_path / "pickle.pt"
    torch.save(_raw(cfg, net, arch="pgnet"), tmp_path / "arch.pt"); cases["arch"] = tmp_path / "arch.pt"
    torch.save(_raw(cfg, net, format_version=FORMAT_VERSION + 1), tmp_path / "new.pt")
    cases["newer"] = tmp_path / "new.pt"
    other = IFSSNet(IFSSNetConfig(size=S, width_mult=0.5))
    torch.save(_raw(cfg, other), tmp_path / "mismatch.pt"); cases["mismatch"] = tmp_path / "mismatch.pt"
    torch.save({"weights": 1}, tmp_path / "notours.pt"); cases["not ours"] = tmp_path / "notours.pt"
    words = {"missing": "does not exist", "truncated": "corrupt", "corrupt": "corrupt", "code": "refused",
             "arch": "not IFSS-Net", "newer": "newer", "mismatch": "do not match", "not ours": "not an IFSS-Net"}
    for name, path in cases.items():
        with pytest.raises(ModelError) as err:
            load_checkpoint(path)
        if name in words:
            assert words[name] in str(err.value), (name, str(err.value))


# ------------------------------------------------------------ mask_sees_image
def test_mask_sees_image_feeds_the_image_into_the_mask_streams_first_layer():
    """Option: the first layer takes (image, mask); the image stream keeps its input for the mask stream."""
    cfg2 = IFSSNetConfig(size=S, width_mult=0.25, mask_sees_image=True)
    assert IFSSNetConfig.from_json(cfg2.to_json()) == cfg2
    assert IFSSNetConfig.from_dict({k: v for k, v in IFSSNetConfig().to_dict().items()
                                    if k != "mask_sees_image"}).mask_sees_image is False   # older checkpoints
    torch.manual_seed(0)
    net2 = IFSSNet(cfg2).eval()
    assert net2.encoder.layers[0].conv.conv.c_in == 2
    x, m = _inputs(3)
    with torch.no_grad():
        feats = net2.encode_image(x)
        assert torch.equal(feats.image, x.transpose(1, 2).reshape(9, 1, S, S))
        ref, _ = net2(x[1:2], m[1:2])
        got, _ = net2.forward_from_features(feats.select(1, 2), m[1:2])
        assert torch.allclose(got, ref, atol=1e-5)
        # Same skips and bottleneck, another image: only the mask stream's first layer sees the change.
        f1 = feats.select(1, 2)
        other = f1._replace(image=torch.randn_like(f1.image))
        assert not torch.allclose(net2.forward_from_features(other, m[1:2])[0], got, atol=1e-4)
        # rows() and cat() keep the image with the windows they pick.
        rows = torch.tensor([6, 7, 8, 0, 1, 2])
        picked = feats.rows(rows, 2)
        assert torch.equal(picked.image, feats.image[rows]) and picked.batch == 2
        joined = type(feats).cat([feats.select(0, 1), feats.select(1, 3)])
        assert torch.equal(joined.image, feats.image) and torch.equal(joined.skips[0], feats.skips[0])


def test_paper_config_keeps_one_channel_and_no_image(net):
    assert net.encoder.layers[0].conv.conv.c_in == 1
    x, _ = _inputs(1)
    with torch.no_grad():
        assert net.encode_image(x).image is None
