"""The benchmark command and the fast propagation path (issue 7).

- ``ifssnet bench --size small`` runs end to end with a tiny untrained network (no timing assertions):
  JSON and markdown structure, ratios to FBS, GFLOP/s, Dice columns.
- The optimised path (image stream pre-encoded in batches, sparse resampling of the output) gives the
  same result as the straightforward one (``preset="reference"``) on a tiny real IFSSNet.
- Every preset runs; ``fast`` steps by w slices; ``expected_seconds`` gives a positive estimate.
"""
import json

import numpy as np
import pytest
import torch

from ifssnet.model import IFSSNet, IFSSNetConfig
from ifssnet.preprocess import InPlaneGrid
from ifssnet.estimate import expected_seconds
from ifssnet.propagate import PRESET_NAMES, PRESETS, propagate, resolve_preset
from ifssnet.seeds import cut_seeds
from ifssnet.errors import InputError


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    return IFSSNet(IFSSNetConfig(size=32, width_mult=0.25)).eval()


def _case(K=24, J=64, I=64, seed=0):
    rng = np.random.default_rng(seed)
    vol = rng.integers(0, 255, (K, J, I)).astype(np.uint8)
    m = np.zeros((K, J, I), np.uint8)
    m[:, 12:44, 16:50] = 1
    vol[m > 0] //= 2
    return vol, m


@pytest.fixture
def pre_encode_on_cpu(monkeypatch):
    """Pre-encoding is a GPU default; switch it on here so the CPU tests exercise that path."""
    import ifssnet.network_runner as N

    monkeypatch.setattr(N, "PRE_ENCODE_ON_CPU", True)


@pytest.mark.parametrize("shape", [(24, 64, 64), (20, 50, 70)])   # integer and non-integer in-plane scale
def test_optimised_path_equals_straightforward_path(shape, pre_encode_on_cpu):
    net = _tiny_net()
    vol, m = _case(*shape)
    seeds = {"T": cut_seeds(m, (8, 9, 10)), "U": cut_seeds(m, (2, 3, 4, 16, 17, 18))}
    ref = propagate(vol, seeds, net, device="cpu", preset="reference", stop_at_end=False)
    for preset in ("accurate", "balanced"):
        opt = propagate(vol, seeds, net, device="cpu", preset=preset, stop_at_end=False)
        assert opt.windows == ref.windows > 0
        assert opt.timings["encode"] > 0 and ref.timings["encode"] == 0
        for name in seeds:
            differ = int((opt.masks[name] != ref.masks[name]).sum())
            assert differ <= 2, (preset, name, differ)      # float rounding at a 0.5 tie, at most
            np.testing.assert_allclose(opt.confidence[name], ref.confidence[name], atol=1e-4)


def test_pre_encoding_in_small_chunks_changes_nothing(monkeypatch, pre_encode_on_cpu):
    import ifssnet.network_runner as N

    net = _tiny_net(1)
    vol, m = _case()
    seeds = {"T": cut_seeds(m, (8, 9, 10))}
    a = propagate(vol, seeds, net, device="cpu", preset="accurate", stop_at_end=False)
    monkeypatch.setattr(N, "PRE_ENCODE_BYTES", 1)      # one step ahead at a time
    monkeypatch.setattr(N, "ENCODE_BATCH", 1)
    b = propagate(vol, seeds, net, device="cpu", preset="accurate", stop_at_end=False)
    assert (a.masks["T"] != b.masks["T"]).sum() <= 2 and b.timings["encode"] > 0


def test_sparse_output_resampling_equals_full_resampling():
    from ifssnet.propagate_output import threshold_to_volume

    rng = np.random.default_rng(3)
    for shape_ji, S in (((64, 64), 32), ((60, 64), 16), ((50, 70), 32), ((32, 32), 32)):
        grid = InPlaneGrid(shape_ji, S)
        prob = torch.from_numpy(rng.random((6, S, S)).astype(np.float32)) * 0.5   # all <= 0.5
        prob[1, 3:9, 4:12] = 0.9                 # a blob
        prob[4, 0:3, S - 4:S] = 0.8              # a blob at the border
        prob[4, 10, 10] = 0.51                   # a single hot sample
        full = (grid.to_volume(prob) > 0.5).numpy().astype(np.uint8)
        out = np.zeros((6,) + shape_ji, np.uint8)
        threshold_to_volume(grid, prob, out)
        assert int((out != full).sum()) == 0, shape_ji


def test_pre_encoding_is_off_on_the_cpu_by_default():
    net = _tiny_net()
    vol, m = _case()
    r = propagate(vol, {"T": cut_seeds(m, (8, 9, 10))}, net, device="cpu", preset="accurate", stop_at_end=False)
    assert r.timings["encode"] == 0.0 and r.windows == 21


def test_every_preset_runs_and_fast_uses_fewer_windows():
    net = _tiny_net()
    vol, m = _case()
    seeds = {"T": cut_seeds(m, (8, 9, 10))}
    res = {p: propagate(vol, seeds, net, device="cpu", preset=p, stop_at_end=False) for p in PRESET_NAMES}
    for p, r in res.items():
        assert r.preset == p and r.masks["T"].shape == vol.shape
        np.testing.assert_array_equal(r.masks["T"][8:11], m[8:11])
    # 2 runs: 13 and 8 new slices -> stride 1: 21 windows; stride 3: 5 + 3
    assert res["accurate"].windows == 21 and res["fast"].windows == 8
    assert set(PRESET_NAMES) <= set(PRESETS)
    assert resolve_preset("fast", 3)["stride"] == 3 and resolve_preset("accurate", 3)["stride"] == 1
    stride2 = propagate(vol, seeds, net, device="cpu", preset="stride2", stop_at_end=False)   # benchmark only
    assert "stride2" not in PRESET_NAMES and stride2.windows == 7 + 4   # ceil(13 / 2) + ceil(8 / 2)
    np.testing.assert_array_equal(stride2.masks["T"][8:11], m[8:11])
    with pytest.raises(InputError, match="preset"):
        propagate(vol, seeds, net, device="cpu", preset="turbo")


def test_fast_preset_with_a_stand_in_model_carries_the_mask():
    from fake_models import CopyModel

    vol, m = _case(K=30)
    res = propagate(vol, {"T": cut_seeds(m, (14, 15, 16))}, CopyModel(size=32), device="cpu", preset="fast")
    out = res.masks["T"]
    assert out.any(axis=(1, 2)).all()
    assert (out != m).sum() / m.sum() < 0.1


def test_fast_preset_stops_where_the_muscle_ends():
    from fake_models import EmptyModel

    vol, m = _case(K=40)
    res = propagate(vol, {"T": cut_seeds(m, (18, 19, 20))}, EmptyModel(size=32), device="cpu", preset="fast",
                    patience=4)
    assert res.masks["T"].sum() == m[18:21].sum()
    assert len(res.ended["T"]) == 2


def test_expected_seconds_is_positive_and_fast_is_cheaper():
    net = _tiny_net()
    acc = expected_seconds((300, 64, 64), 1, "accurate", "cpu", net)
    fast = expected_seconds((300, 64, 64), 1, "fast", "cpu", net)
    assert 0 < fast < acc


def test_expected_seconds_loads_and_times_a_model_file_once(tmp_path, monkeypatch):
    """The Slicer panel asks for an estimate at every option change: a model file is loaded (and timed) once
    per version, not per call; a rewritten file is loaded again."""
    import os

    import ifssnet.estimate as P
    from ifssnet.model.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "t.pt", _tiny_net())
    loads, real = [], P.load_model
    monkeypatch.setattr(P, "load_model", lambda model, dev: loads.append(model) or real(model, dev))
    first = expected_seconds((60, 64, 64), 1, "fast", "cpu", str(path))
    assert expected_seconds((60, 64, 64), 1, "fast", "cpu", str(path)) == first    # the cached calibration
    assert len(loads) == 1
    save_checkpoint(path, _tiny_net(seed=1))
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    expected_seconds((60, 64, 64), 1, "fast", "cpu", str(path))
    assert len(loads) == 2


def test_bench_small_smoke(tmp_path, monkeypatch):
    """``ifssnet bench --size small`` with a tiny untrained network: structure only, no timings asserted."""
    from ifssnet.bench import TABLE_COLUMNS, UNTRAINED_BANNER
    from ifssnet.cli import main
    from ifssnet.model.checkpoint import save_checkpoint

    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)   # keep the session's threads
    ckpt = save_checkpoint(tmp_path / "tiny.pt", _tiny_net())
    js, md = tmp_path / "b.json", tmp_path / "b.md"
    rc = main(["bench", "--size", "small", "--shape", "40", "48", "48", "--model", str(ckpt), "--threads", "1",
               "--json", str(js), "--md", str(md)])
    assert rc == 0
    r = json.loads(js.read_text())
    assert r["shape"] == [40, 48, 48] and r["machine"]["cores"] >= 1 and r["machine"]["torch_threads"] == threads
    assert r["matmul_gflops"] > 0 and r["gflop_per_window"] > 0
    rows = r["rows"]
    got = {(x["method"], x["preset"]) for x in rows}
    assert got == {("ifssnet", "accurate"), ("ifssnet", "balanced"), ("ifssnet", "fast"), ("ifssnet", "reference"),
                   ("fbs", ""), ("gfs", ""), ("ws", "")}
    for x in rows:
        assert x["time_s"] > 0 and "time_vs_fbs" in x and "mem_vs_fbs" in x and "dice_vs_reference" in x
        assert x["time_vs_fbs"] is not None
    fbs = next(x for x in rows if x["method"] == "fbs")
    assert fbs["seeds"] == "paper" and fbs["time_vs_fbs"] == pytest.approx(1.0)
    acc = next(x for x in rows if x["preset"] == "accurate")
    assert acc["dice_vs_accurate"] == pytest.approx(1.0) and acc["windows"] > 0 and acc["gflops"] > 0
    assert set(r["expected_seconds"]) == {"accurate", "balanced", "fast", "reference"}
    ref = next(x for x in rows if x["preset"] == "reference")
    assert ref["dice_vs_accurate"] > 0.999 and ref["windows"] == acc["windows"]
    text = md.read_text()
    assert "| " + " | ".join(TABLE_COLUMNS) + " |" in text
    assert text.count("\n| ifssnet |") == 4
    assert "matmul" in text and "paper" in text
    assert r.get("banner") is None or r["banner"] == UNTRAINED_BANNER


def test_bench_falls_back_to_an_untrained_network_with_a_banner(monkeypatch, tmp_path):
    """No shipped model and no --model: an untrained default network, and the report says so.
    (A bench run of the default-size network is too slow for CI; the fallback and banner are checked.)"""
    import ifssnet.bench as B
    import ifssnet.propagate as P

    monkeypatch.setattr(P, "default_model_path", lambda: tmp_path / "missing.pt")
    net, desc = B._load_network(None, "cpu")
    assert desc["trained"] is False and isinstance(net, IFSSNet) and not net.training
    res = {"banner": B.UNTRAINED_BANNER, "machine": B.machine_info("cpu"), "shape": [1, 1, 1], "size": "small",
           "rows": []}
    assert B.format_markdown(res).startswith("**" + B.UNTRAINED_BANNER)


def test_bench_writes_its_json_and_markdown_together(tmp_path, monkeypatch):
    """Ctrl-C while the second report is written (after a run of minutes) leaves both old reports as they were."""
    import pathlib

    import ifssnet.bench as bench
    from ifssnet.cli import main

    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: {"rows": []})
    monkeypatch.setattr(bench, "format_markdown", lambda result: "| table |\n")
    js, md = tmp_path / "out" / "b.json", tmp_path / "out" / "b.md"
    assert main(["bench", "--json", str(js), "--md", str(md)]) == 0
    assert json.loads(js.read_text()) == {"rows": []} and md.read_text() == "| table |\n"
    js.write_text("old json")
    md.write_text("old md")
    real = pathlib.Path.write_text

    def interrupted(self, *a, **k):
        if self.name == "b.md":
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(pathlib.Path, "write_text", interrupted)
    assert main(["bench", "--json", str(js), "--md", str(md)]) == 130
    assert js.read_text() == "old json" and md.read_text() == "old md"
    assert sorted(p.name for p in js.parent.iterdir()) == ["b.json", "b.md"]
