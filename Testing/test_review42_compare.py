"""Review 42 (the comparison runner, ``ifssnet compare`` / ``compare-set``): each test failed before its fix."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cli_output import run_cli as _cli  # noqa: E402
from ifssnet.baselines import registry  # noqa: E402
from ifssnet.errors import SeedError  # noqa: E402
from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume  # noqa: E402

K, J, I = 16, 20, 24
GEO = Geometry(spacing=(0.5, 0.5, 0.8))


def _case(folder: Path, brightness: int) -> Path:
    m = np.zeros((K, J, I), np.uint8)
    m[2:14, 5:15, 6:18] = 1
    rng = np.random.default_rng(0)
    vol = (brightness + 60 * m + rng.normal(0, 8, m.shape)).clip(0, 255).astype(np.uint8)
    folder.mkdir()
    write_volume(Image(vol, GEO), folder / "volume.nrrd")
    write_segmentation(segmentation_from_masks({"GM": m}, GEO), folder / "reference.seg.nrrd")
    return folder


@pytest.fixture
def fails_on_dark():
    """A registered method that copies the seeds, and fails on a dark volume (as a method fails on one case)."""
    def method(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        if volume.mean() < 40:
            raise SeedError("too dark to propagate on purpose.", "Brighten it.")
        return seeds.mask

    registry.register("r42dark", method, "Dark")
    yield "r42dark"
    registry.unregister("r42dark")


def test_compare_set_says_which_runs_failed_and_why(tmp_path, capsys, fails_on_dark):
    """compare-set's text output showed the means over the runs that succeeded with n, and neither how many runs
    failed nor their errors (only --csv and --json had them): a method that failed on one case of two read as a
    method run once, with no reason given."""
    bright, dark = _case(tmp_path / "bright", 60), _case(tmp_path / "dark", 5)
    code, out, err = _cli(capsys, "compare-set", bright, dark, "--methods", fails_on_dark)
    assert code == 0, err
    assert "failed" in out.splitlines()[1]                       # the summary's header has the column
    assert "1 run(s) failed and are left out of the means" in out
    assert f"{dark} r42dark GM: too dark to propagate on purpose. Brighten it." in out
    code, out, err = _cli(capsys, "compare-set", bright, "--methods", fails_on_dark)
    assert code == 0 and "failed" not in out                      # nothing failed: nothing more said


def test_the_reference_given_as_the_seed_file_is_refused_not_scored_a_dice_of_1(tmp_path, capsys):
    """`ifssnet compare VOL REF REF` (or a copy of the reference, or a propagated result, as SEEDS) took every slice of
    the muscle for a seed; seed slices are not scored, so nothing was, and every method printed Dice 1.000, HD 0.0.
    Slicer refused the reference node itself as the seeds, but not a clone of it. Now refused before any method runs,
    saying what to give instead; nothing is written."""
    case = _case(tmp_path / "case", 60)
    out_csv = tmp_path / "out.csv"
    code, out, err = _cli(capsys, "compare", case / "volume.nrrd", case / "reference.seg.nrrd",
                          case / "reference.seg.nrrd", "--methods", "ws", "--csv", out_csv)
    assert code == 2 and "1.000" not in out
    # (10: its slices across j, the axis its paint is read across, as `ifssnet propagate` reads it, review 43)
    assert "cover every slice the reference has it on (10 slices)" in err and "'-' for SEEDS" in err
    assert not out_csv.exists()


def test_a_protocol_that_cuts_every_slice_of_a_short_muscle_gives_its_rows_the_error_and_the_others_run():
    """A muscle no longer than the protocol cuts (3 slices under '3-seeds': GL clipped by the sweep's edge) had every
    slice a seed and scored Dice 1 over nothing. Its rows now carry the error (a compare-set goes on to the next
    case, and lists it among the failed runs); the other muscles are scored."""
    from ifssnet import compare as C

    short = np.zeros((20, 8, 8), np.uint8)
    short[4:7, 2:6, 2:6] = 1                       # 3 slices: '3-seeds' cuts all of them
    long_ = np.zeros_like(short)
    long_[2:18, 1:5, 3:7] = 1
    vol = np.full(short.shape, 50, np.uint8)
    vol[(short | long_) > 0] = 120
    rows = C.compare(vol, {"GL": short, "GM": long_}, (1.0, 0.5, 0.5), ["ws", "fbs"], "3-seeds")
    by = {(r["muscle"], r["method"]): r for r in rows}
    for method in ("ws", "fbs"):
        assert "no slice is left to score" in by["GL", method]["error"] and np.isnan(by["GL", method]["dice"])
        assert "--segment" in by["GL", method]["error"]
        assert not by["GM", method]["error"] and 0 <= by["GM", method]["dice"] < 1   # scored (fbs: 0, nothing between)


def test_compare_csv_rows_name_their_sweep_so_csvs_of_several_sweeps_merge(tmp_path, capsys):
    """compare-set's rows name their case; `ifssnet compare`'s did not, so the CSVs of a researcher's sweeps, each
    compared on its own (their files are not named volume.nrrd / reference.seg.nrrd) and merged
    (benchmarks/results_table.py), could not be told apart, and the time per volume summed every sweep into one."""
    import csv

    from benchmark_scripts import load_benchmark

    rt = load_benchmark("results_table")
    paths = []
    for n in (1, 2):
        case = _case(tmp_path / f"sweep{n}", 60)
        out = tmp_path / f"sweep{n}.csv"
        code, _, err = _cli(capsys, "compare", case / "volume.nrrd", "-", case / "reference.seg.nrrd",
                            "--methods", "ws", "--csv", out)
        assert code == 0, err
        with open(out, newline="") as f:
            assert [r["case"] for r in csv.DictReader(f)] == [str(case / "volume.nrrd")]
        paths.append(str(out))
    rows = rt.read_rows(paths)
    mean, std = rt.volume_times(rows)["ws"]
    assert mean == pytest.approx(np.mean([float(r["time_s"]) for r in rows]))   # per sweep, not their sum


def test_compare_set_on_one_case_shows_no_spread_rather_than_a_std_of_zero(tmp_path, capsys):
    """compare-set over one case printed each muscle's line as '0.315 ± 0.000' (the population std of one run): read
    as a method that varied by nothing across cases, and copied so into a paper's table."""
    case = _case(tmp_path / "one", 60)
    code, out, err = _cli(capsys, "compare-set", case, "--methods", "ws")
    assert code == 0, err
    line = next(t for t in out.splitlines() if t.startswith("ws ") and "GM" in t)
    assert "± -" in line and "± 0.000" not in line


def test_cropped_masks_are_the_masks_in_their_bounding_box():
    """keep_masks='cropped' (the Slicer module's): each row holds its prediction's bounding box, not a whole volume."""
    from ifssnet import compare as C

    ref = np.zeros((40, 30, 20), np.uint8)
    ref[5:35, 8:20, 4:15] = 1
    vol = np.full(ref.shape, 50, np.uint8)
    vol[ref > 0] = 120
    whole = C.compare(vol, {"GM": ref}, (1.0, 0.5, 0.5), ["ws"], "3-seeds", keep_masks=True)[0]["mask"]
    kept = C.compare(vol, {"GM": ref}, (1.0, 0.5, 0.5), ["ws"], "3-seeds", keep_masks="cropped")[0]["mask"]
    assert isinstance(kept, C.CroppedMask) and whole.any()
    np.testing.assert_array_equal(kept.full(), whole)
    assert kept.array.nbytes < whole.nbytes / 2
    for source, destination in ((0, 1), (0, 2), (2, 0), (1, 1)):
        np.testing.assert_array_equal(kept.moveaxis(source, destination).full(), np.moveaxis(whole, source, destination))
    empty = C.CroppedMask.of(np.zeros((4, 5, 6), np.uint8))
    assert empty.array.size == 0 and empty.full().shape == (4, 5, 6) and not empty.full().any()


def test_model_without_ifssnet_among_the_methods_is_refused_not_ignored(tmp_path, capsys):
    """--model is the 'ifssnet' method's checkpoint; with --methods pgnet (a researcher's own PG-Net checkpoint) or
    ws it went to no method, and the shipped weights ran (or none) without a word: exit 0 even for a missing file."""
    case = _case(tmp_path / "case", 60)
    for command in (["compare", case / "volume.nrrd", "-", case / "reference.seg.nrrd"], ["compare-set", case]):
        code, out, err = _cli(capsys, *command, "--methods", "ws", "--model", tmp_path / "my_pgnet.pt",
                              "--csv", tmp_path / "out.csv")
        assert code == 2 and "--model gives the checkpoint of the 'ifssnet' method" in err
        assert "--option pgnet.model=PATH" in err and not (tmp_path / "out.csv").exists()


def test_a_misspelt_ifssnet_option_is_refused_before_any_work_with_the_options_it_has():
    """``--option ifssnet.blnd=mean`` reached ``propagate`` through ``**options`` and ended in a TypeError, exit 70
    ("internal error"); the methods without ``**options`` were already checked."""
    from ifssnet.compare import _check_options
    from ifssnet.baselines.registry import get
    from ifssnet.errors import InputError

    with pytest.raises(InputError, match=r"no option 'blnd'") as err:
        _check_options("ifssnet", get("ifssnet"), {"blnd": "mean"})
    assert all(name in err.value.todo for name in ("blend", "exclusive", "model", "device"))
    _check_options("ifssnet", get("ifssnet"), {"blend": "mean", "exclusive": False, "model": None, "device": "cpu"})
