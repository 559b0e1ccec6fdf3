"""The comparison runner: rows for every (muscle, method), CSV, table, plot, several cases, CLI."""
from __future__ import annotations

import argparse
import csv
import math

import numpy as np
import pytest

from ifssnet import compare as C
from ifssnet import compare_cli as CC
from ifssnet.baselines import registry
from ifssnet.errors import Cancelled, InputError
from ifssnet.io import AnnotatedSlices, Geometry, Image, segmentation_from_masks, write_segmentation, write_volume
from ifssnet.progress import CancelToken
from ifssnet.seeds import cut_seeds
from cli_output import recording_progress  # noqa: E402  (Testing/ is on sys.path: conftest)

pytest.importorskip("itk")
pytest.importorskip("SimpleITK")

SPACING = (0.8, 0.4, 0.4)


def tiny_case(K=36, J=40, I=44, seed=0):
    """Two blob 'muscles' drifting along the sweep, on a speckled image. Returns (volume, refs)."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(np.arange(K), np.arange(J), np.arange(I), indexing="ij")
    a = (((j - 14 - 3 * np.sin(k / 6)) / 7) ** 2 + ((i - 15) / 9) ** 2 < 1) & (k >= 2) & (k < K - 3)
    b = (((j - 28) / 6) ** 2 + ((i - 28 - 3 * np.cos(k / 7)) / 10) ** 2 < 1) & ~a & (k >= 6) & (k < K - 6)
    img = 40 + 40 * a + 25 * b + rng.normal(0, 8, a.shape)
    return np.clip(img, 0, 255).astype(np.uint8), {"GM": a.astype(np.uint8), "SOL": b.astype(np.uint8)}


@pytest.fixture(scope="module")
def rows():
    vol, refs = tiny_case()
    return C.compare(vol, refs, SPACING, ["fbs", "gfs", "ws"], "paper", every=12)


def test_compare_returns_a_row_per_muscle_and_method(rows):
    assert [(r["muscle"], r["method"]) for r in rows] == [(m, x) for m in ("GM", "SOL") for x in ("fbs", "gfs", "ws")]
    for r in rows:
        assert not r["error"]
        for col in ("dice", "iou", "hd", "hd95", "asd", "slice_hd", "slice_asd", "precision", "recall",
                    "volume_cm3", "volume_error_pct", "time_s", "peak_mb"):
            assert col in r and isinstance(r[col], float), col
        assert 0.0 <= r["dice"] <= 1.0 and r["time_s"] > 0 and r["peak_mb"] >= 0
        assert r["protocol"] == "paper" and r["seed_slices_n"] % 3 == 0
        assert r["slice_dice"].shape == (36,)
        assert all(np.isnan(r["slice_dice"][s]) for s in r["seed_slices"])  # annotated slices not scored
    assert max(r["dice"] for r in rows) > 0.5  # the methods do something sensible here


def test_scores_exclude_seed_slices_and_cover_reference_extent():
    vol, refs = tiny_case()
    ref = refs["GM"]
    seeds = cut_seeds(ref, (10, 11, 12))
    perfect = C.score(ref.copy(), ref, SPACING, seeds.slices)
    assert perfect["dice"] == 1.0 and perfect["hd"] == 0.0 and perfect["extent"] == (2, 32)
    only_seeds = C.score(seeds.mask, ref, SPACING, seeds.slices)
    assert only_seeds["dice"] == 0.0  # copying the seeds earns nothing
    leak = ref.copy()
    leak[0] = 1  # outside the reference's extent
    assert C.score(leak, ref, SPACING, seeds.slices)["dice"] == 1.0
    assert C.score(leak, ref, SPACING, seeds.slices, score_extent="volume")["dice"] < 1.0


def test_the_volume_past_the_muscles_ends_is_reported_whatever_the_extent_scored():
    vol, refs = tiny_case()
    ref = refs["GM"]
    seeds = cut_seeds(ref, (10, 11, 12))
    assert C.score(ref.copy(), ref, SPACING, seeds.slices)["past_ends_pct"] == 0.0
    leak = ref.copy()
    leak[0, :4, :5] = 1                                   # 20 voxels before the reference's first slice (2)
    leak[35, :2, :5] = 1                                  # and 10 past its last (32)
    leak[20] = 0                                          # inside the extent: not a leak past the ends
    want = 100.0 * 30 / np.count_nonzero(ref)
    for extent in ("reference", "volume"):
        assert C.score(leak, ref, SPACING, seeds.slices, score_extent=extent)["past_ends_pct"] == pytest.approx(want)


def test_new_method_joins_with_no_runner_change():
    vol, refs = tiny_case()

    def oracle(volume, seeds, spacing_kji, *, progress=None, cancel=None, truth=None):
        return truth

    registry.register("oracle", oracle, "Oracle")
    try:
        out = C.compare(vol, {"GM": refs["GM"]}, SPACING, ["oracle"], "3-seeds",
                        method_options={"oracle": {"truth": refs["GM"]}})
    finally:
        registry.unregister("oracle")
    assert len(out) == 1 and out[0]["dice"] == 1.0 and out[0]["protocol"] == "3-seeds"
    assert out[0]["seed_slices_n"] == 3


def test_failed_method_gives_an_error_row_and_unknown_method_fails_early():
    vol, refs = tiny_case()

    def broken(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        raise InputError("broken on purpose.", "")

    registry.register("broken", broken)
    try:
        out = C.compare(vol, {"GM": refs["GM"]}, SPACING, ["broken"])
    finally:
        registry.unregister("broken")
    assert out[0]["error"].startswith("broken") and math.isnan(out[0]["dice"])
    assert "error" in C.format_table(out)
    with pytest.raises(InputError):
        C.compare(vol, refs, SPACING, ["fbs", "nope"])


def test_compare_cancel_raises():
    vol, refs = tiny_case()
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        C.compare(vol, refs, SPACING, ["fbs"], cancel=token)


def test_csv_table_and_plot(rows, tmp_path):
    path = C.write_csv(rows, tmp_path / "out.csv")
    with open(path, newline="") as f:
        got = list(csv.DictReader(f))
    assert len(got) == len(rows) and got[0]["method"] == "fbs" and "slice_dice" not in got[0]
    assert float(got[0]["dice"]) == pytest.approx(rows[0]["dice"])
    table = C.format_table(rows)
    for word in ("Dice", "HD95", "sASD", "err %", "time s", "peak MB", "fbs", "SOL"):
        assert word in table
    pytest.importorskip("matplotlib")
    png = C.plot(rows, tmp_path / "out.png")
    assert png.stat().st_size > 5000


def _write_case(d, seed):
    vol, refs = tiny_case(seed=seed)
    geo = Geometry(spacing=SPACING[::-1])
    d.mkdir()
    write_volume(Image(vol, geo), d / "volume.nrrd")
    write_segmentation(segmentation_from_masks(refs, geo), d / "reference.seg.nrrd")
    return vol, refs, geo


def test_compare_set_mean_and_std(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    for n, d in enumerate(dirs):
        _write_case(d, n)
    res = C.compare_set(dirs, ["fbs", "ws"], "paper", segments=["GM"], every=12)
    assert len(res["rows"]) == 4 and {r["case"] for r in res["rows"]} == {str(d) for d in dirs}
    by = {s["method"]: s for s in res["summary"]}
    assert set(by) == {"fbs", "ws"} and by["fbs"]["n"] == 2
    dice = [r["dice"] for r in res["rows"] if r["method"] == "fbs"]
    assert by["fbs"]["dice_mean"] == pytest.approx(np.mean(dice))
    assert by["fbs"]["dice_std"] == pytest.approx(np.std(dice))
    assert "±" in C.format_summary(res["summary"])


def test_cli_compare_with_seed_file_and_protocol(tmp_path, capsys):
    vol, refs, geo = _write_case(tmp_path / "case", 0)
    seeds = {n: cut_seeds(m, (8, 9, 10, 24, 25, 26)) for n, m in refs.items()}
    seg = segmentation_from_masks({n: s.mask for n, s in seeds.items()}, geo,
                                  {n: AnnotatedSlices(0, s.slices) for n, s in seeds.items()})
    write_segmentation(seg, tmp_path / "seeds.seg.nrrd")
    parser = argparse.ArgumentParser()
    CC.add_commands(parser.add_subparsers(dest="command"))
    case = tmp_path / "case"
    args = parser.parse_args(["compare", str(case / "volume.nrrd"), str(tmp_path / "seeds.seg.nrrd"),
                              str(case / "reference.seg.nrrd"), "--segment", "GM", "--methods", "fbs,ws",
                              "--csv", str(tmp_path / "o.csv")])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "fbs" in out and "ws" in out and (tmp_path / "o.csv").exists()
    with open(tmp_path / "o.csv", newline="") as f:
        got = list(csv.DictReader(f))
    assert [r["protocol"] for r in got] == ["given", "given"] and got[0]["seed_slices_n"] == "6"
    args = parser.parse_args(["compare", str(case / "volume.nrrd"), "-", str(case / "reference.seg.nrrd"),
                              "--methods", "gfs", "--protocol", "3-seeds", "--json"])
    assert args.func(args) == 0
    assert '"protocol": "3-seeds"' in capsys.readouterr().out
    args = parser.parse_args(["compare-set", str(case), "--methods", "fbs", "--protocol", "paper", "--every", "12"])
    assert args.func(args) == 0
    assert "±" in capsys.readouterr().out


def test_method_options_are_checked_and_parsed():
    assert CC.parse_options(["ws.feature_dtype=uint16", "gfs.extent_growth=none", "gfs.seed_locality=1.5",
                            "fbs.isolate=true"]) == {"ws": {"feature_dtype": "uint16"},
                                                     "gfs": {"extent_growth": None, "seed_locality": 1.5},
                                                     "fbs": {"isolate": True}}
    with pytest.raises(InputError):
        CC.parse_options(["ws=3"])
    vol, refs = tiny_case()
    with pytest.raises(InputError, match="object_scale_mm"):
        C.compare(vol, refs, SPACING, ["ws"], method_options={"ws": {"object_scale": 3}})
    assert CC.parse_options(["gfs.isolate=auto"]) == {"gfs": {"isolate": "auto"}}
    with pytest.raises(InputError, match="isolate='sometimes' of 'gfs' is not true, false or auto"):
        C.compare(vol, refs, SPACING, ["gfs"], method_options={"gfs": {"isolate": "sometimes"}})


def _results_table():
    from benchmark_scripts import load_benchmark

    return load_benchmark("results_table")


def test_results_table_merges_renames_and_times_per_volume(tmp_path):
    """The README's tables: part CSVs merge into one, FILE=NAME renames a run, time/volume sums a case's muscles."""
    rt = _results_table()

    def part(name, method, times):
        rows = [{"method": method, "muscle": m, "case": c, "dice": d, "time_s": t, "error": ""}
                for (c, m, d, t) in times]
        C.write_csv(rows, tmp_path / name)
        return str(tmp_path / name)

    a = part("a.csv", "ifssnet", [("s1", "GM", 0.8, 10.0), ("s1", "GL", 0.6, 20.0)])
    b = part("b.csv", "ifssnet", [("s2", "GM", 0.4, 40.0), ("s2", "GL", 0.2, 50.0)])
    rows = rt.read_rows([a, b + "=ifssnet-ws"])
    assert [r["method"] for r in rows] == ["ifssnet"] * 2 + ["ifssnet-ws"] * 2
    times = rt.volume_times(rt.read_rows([a, b]))
    assert times["ifssnet"] == pytest.approx((60.0, 30.0))  # cases: 30 s and 90 s
    text = rt.table(rows)
    assert "| IFSS-Net | 2 | 0.700 ± 0.100 |" in text and "| IFSS-Net-WS | 2 | 0.300 ± 0.100 |" in text
    assert rt.main([a, b, "--merge", str(tmp_path / "m.csv"), "--plot", str(tmp_path / "m.png")]) == 0
    with open(tmp_path / "m.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert (tmp_path / "m.png").stat().st_size > 0


def test_results_table_adds_precision_and_recall_when_asked(tmp_path):
    rt = _results_table()
    rows = [{"method": "ifssnet", "muscle": "GM", "case": c, "dice": 0.5, "precision": p, "recall": 0.9, "time_s": 1.0,
             "error": ""} for c, p in (("s1", 0.3), ("s2", 0.5))]
    assert "precision" not in rt.table(rows)
    text = rt.table(rows, precision_recall=True)
    assert "| precision | recall |" in text
    assert "| 0.40 ± 0.10 | 0.90 ± 0.00 |" in text
    rows[0]["past_ends_pct"], rows[1]["past_ends_pct"] = 30.0, 10.0
    assert "| past ends % |" in rt.table(rows, past_ends=True) and "| 20.0 ± 10.0 |" in rt.table(rows, past_ends=True)
    old = [{k: v for k, v in r.items() if k != "past_ends_pct"} for r in rows]   # a CSV from before the column
    assert "| 0.40 ± 0.10 | 0.90 ± 0.00 | - |" in rt.table(old, precision_recall=True, past_ends=True)


def test_paired_difference_pairs_cases_and_muscles_and_pools_pairs(tmp_path):
    """OTHER - BASE per (case, muscle) across CSVs whose case paths differ; a case of one pair is the unit; rows
    with an error or no partner are left out; the interval is the t-interval of the mean; wins follow the metric."""
    from benchmark_scripts import load_benchmark

    pdiff = load_benchmark("paired_difference")

    def rows(folder, dices, errors=()):
        return [{"method": "ifssnet", "muscle": m, "case": f"{folder}/s{c}", "dice": d, "volume_error_pct": 10 * d,
                 "error": "boom" if (c, m) in errors else ""} for (c, m), d in dices.items()]

    base = rows(".data/test", {(1, "GM"): 0.6, (1, "GL"): 0.5, (2, "GM"): 0.7, (2, "GL"): 0.4, (3, "GM"): 0.1})
    other = rows("/elsewhere/test", {(1, "GM"): 0.5, (1, "GL"): 0.6, (2, "GM"): 0.6, (2, "GL"): 0.2, (3, "GM"): 0.9},
                 errors={(3, "GM")})
    per_muscle, overall, unpaired = pdiff.paired_units([(base, other)])
    assert per_muscle["GM"] == pytest.approx([-0.1, -0.1]) and per_muscle["GL"] == pytest.approx([0.1, -0.2])
    assert overall == pytest.approx([0.0, -0.15]) and unpaired == 1  # case 3 failed in OTHER
    s = pdiff.describe([-0.1, -0.2, -0.3], larger_is_better=True)
    assert s["mean"] == pytest.approx(-0.2) and s["std"] == pytest.approx(0.1) and s["wins"] == 0
    assert (s["high"] - s["mean"]) == pytest.approx(4.302653 * 0.1 / 3 ** 0.5, rel=1e-5)  # t(0.975, 2 dof)
    assert pdiff.describe([-5.0, 2.0], larger_is_better=False)["wins"] == 1  # a smaller error wins
    _, pooled, _ = pdiff.paired_units([(base, other), (base, base)])
    assert pooled == pytest.approx([0.0, -0.15, 0.0, 0.0, 0.0])  # 2 cases of the first pair, 3 of the second
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    C.write_csv(base, a)
    C.write_csv(other, b)
    text = pdiff.table([(pdiff.read_rows([str(a)]), pdiff.read_rows([str(b)]))])
    assert "| GM | 2 | -0.100 |" in text and "| all (muscles averaged per case) | 2 | -0.075 |" in text
    assert "1 row(s) had no partner" in text
    assert pdiff.main([str(a), str(b), "--metric", "volume_error_pct"]) == 0
    with pytest.raises(SystemExit):
        pdiff.main([str(a)])  # not a pair
    with pytest.raises(SystemExit, match="same cases"):
        pdiff.table([(base, rows("x", {(9, "SOL"): 0.5}))])
    several = tmp_path / "several.csv"  # a baselines CSV: one row per method, case and muscle
    C.write_csv(base + [dict(r, method="fbs", dice=0.0) for r in base], several)
    with pytest.raises(SystemExit, match="FILE.csv@METHOD"):
        pdiff.main([str(several), str(b)])
    assert [r["dice"] for r in pdiff.read_rows([f"{several}@fbs"])] == ["0.0"] * 5
    assert {r["method"] for r in pdiff.read_rows([f"{several}@fbs=FBS"])} == {"FBS"}   # picked, then renamed
    with pytest.raises(SystemExit, match="no rows of method 'ws'"):
        pdiff.read_rows([f"{several}@ws"])


def test_joint_methods_run_once_on_all_muscles_and_the_others_per_muscle():
    vol, refs = tiny_case()
    calls = []

    def together(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        calls.append(sorted(seeds) if isinstance(seeds, dict) else "one")
        return {n: refs[n] for n in seeds} if isinstance(seeds, dict) else refs["GM"]

    together.joint = True
    registry.register("together", together)
    try:
        out = C.compare(vol, refs, SPACING, ["together", "fbs"], "3-seeds", joint=True)
        assert calls == [["GM", "SOL"]]
        alone = C.compare(vol, refs, SPACING, ["together"], "3-seeds")
        assert calls[1:] == ["one", "one"]
    finally:
        registry.unregister("together")
    mine = [r for r in out if r["method"] == "together"]
    assert [r["muscle"] for r in mine] == ["GM", "SOL"] and all(r["dice"] == 1.0 and r["joint"] == 1 for r in mine)
    assert all("joint" not in r for r in alone)
    # Fill between slices always runs on all muscles at once, as Slicer's effect (test_review41_compare.py)
    assert all(r["joint"] == 1 for r in out if r["method"] == "fbs")
    assert mine[0]["seed_slices"] == alone[0]["seed_slices"]


def test_a_failed_joint_run_gives_an_error_row_per_muscle():
    vol, refs = tiny_case()

    def half(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        return {"GM": refs["GM"]}                   # forgets SOL

    half.joint = True
    registry.register("half", half)
    try:
        out = C.compare(vol, refs, SPACING, ["half"], "3-seeds", joint=True)
    finally:
        registry.unregister("half")
    assert len(out) == 2 and all("returned" in r["error"] and math.isnan(r["dice"]) for r in out)


def test_ifssnet_joint_and_exclusive_through_the_runner():
    pytest.importorskip("torch")
    from fake_models import CopyModel
    from ifssnet.exclusive import overlap_voxels

    vol, refs = tiny_case()
    refs = {"GM": refs["GM"], "SOL": refs["SOL"].copy()}
    refs["SOL"][:, 14:24, 12:20] = 1                # the two references now overlap
    opts = {"ifssnet": {"model": CopyModel(size=32), "device": "cpu", "exclusive": False}}
    plain = C.compare(vol, refs, SPACING, ["ifssnet"], "3-seeds", method_options=opts, joint=True, keep_masks=True)
    del opts["ifssnet"]["exclusive"]                # the default keeps them apart
    apart = C.compare(vol, refs, SPACING, ["ifssnet"], "3-seeds", method_options=opts, joint=True, keep_masks=True)
    assert overlap_voxels({r["muscle"]: r["mask"] for r in plain}) > 0
    assert overlap_voxels({r["muscle"]: r["mask"] for r in apart}) == 0


def test_error_by_distance_bins_the_area_and_dice_from_the_seeds_to_the_ends():
    """benchmarks/error_by_distance.py: a mask right near the seeds and twice too large on the last two slices
    before one end shows in the last bin alone; a leak before the other end is the past-ends share."""
    from benchmark_scripts import load_benchmark

    ebd = load_benchmark("error_by_distance")
    ref = np.zeros((60, 16, 16), bool)
    ref[10:50, 4:12, 4:12] = True                         # 64 px a slice, slices 10..49; seeds 29-31
    pred = ref.copy()
    pred[48:50, 0:16, 4:12] = True                        # 128 px on slices 48, 49
    pred[3, 4:12, 4:12] = True                            # 64 px past the first end
    out = ebd.distance_bins(pred, ref, (29, 30, 31), bins=5)
    assert out["area_ratio"][:4] == [1.0] * 4 and out["dice"][:4] == [1.0] * 4
    # the last bin: slices 10-14 (at least 16 of 20 slices from the seeds' middle) and 46-49 (15.2 of 19)
    assert out["area_ratio"][4] == pytest.approx((7 * 64 + 2 * 128) / (9 * 64))
    assert out["dice"][4] == pytest.approx(2 * 9 * 64 / (7 * 64 + 2 * 128 + 9 * 64))
    assert out["past_ends_pct"] == pytest.approx(100 * 64 / (40 * 64))
    text = ebd.table([{"GM": out}, {"GM": out, "SOL": ebd.distance_bins(ref, ref, (29, 30, 31), bins=5)}], 5)
    assert "| GM | 2 | 1.00 | 1.00 | 1.00 | 1.00 | 1.22 |" in text and "| all | 3 |" in text


def test_scoring_reports_progress_and_stops_on_cancel():
    """Scoring a result (3-D and per-slice surface distances: 1.6-4 s per muscle on a full-size sweep) shows its
    stages and sees Cancel: a token set from the callback while a slice distance is computed stops the comparison."""
    vol, refs = tiny_case()

    def copy_ref(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        return refs["GM"].copy()

    registry.register("copyref", copy_ref)
    try:
        seen = []
        C.compare(vol, {"GM": refs["GM"]}, SPACING, ["copyref"], progress=lambda s, d, t: seen.append(s))
        assert "Surface distances" in seen and "Slice distances" in seen
        token, stages = CancelToken(), []

        def progress(stage, done, total):
            stages.append(stage)
            if stage == "Slice distances" and done > 0:
                token.cancel()

        with pytest.raises(Cancelled):
            C.compare(vol, {"GM": refs["GM"]}, SPACING, ["copyref"], progress=progress, cancel=token)
        assert stages[-1] == "Slice distances" and "Compare" not in stages[stages.index("Slice distances"):]
    finally:
        registry.unregister("copyref")


def test_reading_the_cases_and_files_shows_and_a_cancel_while_reading_stops_before_any_method(tmp_path, monkeypatch,
                                                                                              capsys):
    """Reading a full-size reference takes ~10 s: compare-set shows it and sees Cancel there; compare's bar shows it."""
    import ifssnet.progress as progress_module
    from ifssnet.io import STAGE_READING

    _write_case(tmp_path / "a", 0)
    token, stages = CancelToken(), []

    def progress(stage, done, total):
        stages.append(stage)
        if stage == STAGE_READING and done >= 1:
            token.cancel()

    with pytest.raises(Cancelled):
        C.compare_set([tmp_path / "a"], ["ws"], "paper", progress=progress, cancel=token, every=12)
    assert stages[-1] == STAGE_READING and "Compare" not in stages
    seen = []

    monkeypatch.setattr(progress_module, "TqdmProgress", recording_progress(seen))
    parser = argparse.ArgumentParser()
    CC.add_commands(parser.add_subparsers(dest="command"))
    case = tmp_path / "a"
    args = parser.parse_args(["compare", str(case / "volume.nrrd"), "-", str(case / "reference.seg.nrrd"),
                              "--methods", "ws", "--protocol", "paper", "--every", "12", "--segment", "GM"])
    assert args.func(args) == 0
    assert seen.index(STAGE_READING) < seen.index("Compare")
