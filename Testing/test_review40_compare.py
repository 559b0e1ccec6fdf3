"""Review of the comparison's metrics, CSV output and summaries (session 40): each test failed before its fix."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from ifssnet import compare as C
from ifssnet.baselines import registry
from ifssnet.errors import SeedError


def _copy_seeds(volume, seeds, spacing_kji, *, progress=None, cancel=None):
    return seeds.mask.copy()


def _broken(volume, seeds, spacing_kji, *, progress=None, cancel=None):
    raise SeedError("broken on purpose", "nothing to do")


@pytest.fixture
def copy_and_broken():
    registry.register("r40copy", _copy_seeds, "Copy")
    registry.register("r40broken", _broken, "Broken")
    yield
    registry.unregister("r40copy")
    registry.unregister("r40broken")


def _bar(K=60):
    ref = np.zeros((K, 8, 8), np.uint8)
    ref[5:K - 5, 2:6, 2:6] = 1
    ref[30, 1:7, 1:7] = 1                  # the largest cross-section, well inside
    return np.full(ref.shape, 50, np.uint8), ref


def test_csv_of_a_run_with_a_failed_method_has_no_per_slice_dice_array_column(copy_and_broken, tmp_path):
    """A failed row carries slice_dice=None; that made write_csv take slice_dice for a scalar column and write
    every other row's per-slice array, as numpy's multi-line text, into the CSV."""
    vol, ref = _bar()
    rows = C.compare(vol, {"GM": ref}, (1.0, 0.5, 0.5), ["r40copy", "r40broken"], "3-seeds")
    assert rows[1]["error"] and rows[0]["slice_dice"] is not None
    path = C.write_csv(rows, tmp_path / "out.csv")
    with open(path, newline="") as f:
        got = list(csv.DictReader(f))
    assert len(got) == 2 and "slice_dice" not in got[0]
    assert len(path.read_text().strip().splitlines()) == 3        # header + 2 rows, nothing spread over lines


def test_summarize_reads_blank_cells_of_a_merged_csv_as_missing(tmp_path):
    """results_table.py --merge of a CSV from before past_ends_pct and a newer one writes blank cells; summarize
    of the merged CSV's rows raised ValueError (float('')) instead of counting them as missing."""
    rows = [{"method": "ifssnet", "muscle": "GM", "case": "s1", "dice": 0.8, "time_s": 1.0, "error": ""},
            {"method": "ifssnet", "muscle": "GM", "case": "s2", "dice": 0.6, "time_s": 1.0, "past_ends_pct": 4.0,
             "error": ""}]
    path = C.write_csv(rows, tmp_path / "merged.csv")
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert back[0]["past_ends_pct"] == ""
    s = C.summarize(back)[0]
    assert s["dice_mean"] == pytest.approx(0.7) and s["past_ends_pct_mean"] == pytest.approx(4.0)
    assert s["past_ends_pct_nonfinite"] == 1


def test_tables_say_when_a_mean_covers_only_the_runs_with_a_finite_value():
    """A run with no slice holding both masks has slice_hd = inf; summarize leaves it out of the mean, and the
    tables printed that mean next to n = all runs (README: 3-D U-Net per-slice HD 24.0 over 6 of its 15 runs)."""
    from benchmark_scripts import load_benchmark

    rt = load_benchmark("results_table")
    rows = [{"method": "unet3d", "muscle": "GM", "case": f"s{c}", "dice": 0.5, "slice_hd": hd, "time_s": 1.0,
             "error": ""} for c, hd in enumerate((10.0, 20.0, math.inf))]
    text = rt.table(rows)
    assert "| 15.0 ± 5.0 (2 of 3) |" in text and "| 0.500 ± 0.000 |" in text
    summary = C.format_summary(C.summarize(rows))
    assert "15.0 ± 5.0 (2/3)" in summary and "0.500 ± 0.000 (" not in summary


@pytest.fixture
def small_case(tmp_path):
    from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume

    vol, ref = _bar(40)
    geo = Geometry(spacing=(0.5, 0.5, 1.0))
    write_volume(Image(vol, geo), tmp_path / "volume.nrrd")
    write_segmentation(segmentation_from_masks({"GM": ref}, geo), tmp_path / "reference.seg.nrrd")
    return tmp_path


def _run_cli(capsys, *argv):
    from ifssnet.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_option_for_a_method_that_is_not_compared_is_refused(small_case, copy_and_broken, capsys):
    """--option METHOD.KEY=VALUE was checked only for the compared methods: a typo in the method's name
    ('wss.feature_dtype=uint16' with --methods ws) or an option for a method left out was ignored without a word."""
    code, out, err = _run_cli(capsys, "compare", small_case / "volume.nrrd", "-", small_case / "reference.seg.nrrd",
                              "--methods", "r40copy", "--option", "wss.feature_dtype=uint16")
    assert code == 2 and "wss" in err and "--methods" in err
    assert "Dice" not in out                                       # refused before any work


def test_csv_and_plot_to_one_file_is_refused(small_case, copy_and_broken, capsys):
    """--csv X --plot X wrote the table, then replaced it with the figure: the CSV was lost without a word."""
    pytest.importorskip("matplotlib")
    out_file = small_case / "out.png"
    code, out, err = _run_cli(capsys, "compare", small_case / "volume.nrrd", "-", small_case / "reference.seg.nrrd",
                              "--methods", "r40copy", "--csv", out_file, "--plot", out_file)
    assert code == 2 and "--csv" in err and "--plot" in err
    assert not out_file.exists()


def test_csv_onto_the_model_file_is_refused(small_case, copy_and_broken, capsys, tiny_model):
    """The --model checkpoint is an input of the comparison too; --csv/--plot onto it replaced the model."""
    import shutil

    model = small_case / "model.pt"
    shutil.copyfile(tiny_model, model)
    before = model.read_bytes()
    code, out, err = _run_cli(capsys, "compare", small_case / "volume.nrrd", "-", small_case / "reference.seg.nrrd",
                              "--methods", "r40copy,ifssnet", "--model", model, "--csv", model)
    assert code == 2 and "input" in err
    assert model.read_bytes() == before


def test_the_scored_extent_is_recorded_in_rows_and_named_by_the_table(copy_and_broken, tmp_path):
    """score_extent='volume' scores every slice, but the rows (and so the CSV) did not say which extent was scored,
    and the table's footer always said 'scored over the reference's extent'."""
    vol, ref = _bar()
    for extent, words in (("volume", "every slice"), ("reference", "the reference's extent")):
        rows = C.compare(vol, {"GM": ref}, (1.0, 0.5, 0.5), ["r40copy"], "3-seeds", score_extent=extent)
        assert rows[0]["score_extent"] == extent
        with open(C.write_csv(rows, tmp_path / "out.csv"), newline="") as f:
            assert next(csv.DictReader(f))["score_extent"] == extent
        footer = C.format_table(rows).splitlines()[-1]
        assert words in footer


def test_paired_difference_says_when_a_partner_was_left_out_for_failing():
    """A row whose partner failed (error, or an infinite distance: an empty mask) was reported as having 'no partner
    in the other CSV', as if the CSVs covered different cases; the drop of the worst failures went unexplained."""
    from benchmark_scripts import load_benchmark

    pdiff = load_benchmark("paired_difference")

    def rows(hd):
        return [{"method": "m", "muscle": "GM", "case": f"s{c}", "hd95": v, "error": ""} for c, v in enumerate(hd)]

    text = pdiff.table([(rows([5.0, 6.0, 7.0]), rows([4.0, 5.0, math.inf]))], "hd95")
    assert "1 row(s) had no partner" in text and "1 of them because the partner's run failed" in text
    text = pdiff.table([(rows([5.0, 6.0, 7.0]), rows([4.0, 5.0]))], "hd95")    # truly missing: no such clause
    assert "1 row(s) had no partner" in text and "because" not in text


@pytest.mark.parametrize("value", ["nan", "inf", "1e400"])
def test_available_memory_that_is_not_finite_is_a_clear_error(monkeypatch, value):
    """IFSSNET_AVAILABLE_MEMORY=nan or inf raised ValueError/OverflowError from int() (exit 70, an internal error)."""
    from ifssnet.errors import ResourceError
    from ifssnet.memory import ENV_VAR, available_bytes

    monkeypatch.setenv(ENV_VAR, value)
    with pytest.raises(ResourceError, match="is not a number of bytes"):
        available_bytes()


def test_an_unknown_score_extent_is_refused_before_any_method_runs():
    """compare(score_extent='volumes') ran the first method to the end before score() refused the extent."""
    from ifssnet.errors import InputError

    ran = []

    def recording(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        ran.append(1)
        return seeds.mask.copy()

    registry.register("r40rec", recording, "Recording")
    try:
        vol, ref = _bar()
        with pytest.raises(InputError, match="score extent"):
            C.compare(vol, {"GM": ref}, (1.0, 0.5, 0.5), ["r40rec"], "3-seeds", score_extent="volumes")
    finally:
        registry.unregister("r40rec")
    assert ran == []
