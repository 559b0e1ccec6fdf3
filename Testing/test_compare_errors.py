"""``ifssnet compare``, ``compare-set``, ``evaluate`` and ``seeds`` under bad input, faults and Ctrl-C.

As for ``propagate`` (test_cli.py): one line on stderr with what is wrong and what to do, the error's exit
code, found before the long work where it can be, and an earlier ``--csv``/``--plot``/``-o`` file left
exactly as it was (no half-written file either). Methods here are tiny registered functions, so each
test takes a fraction of a second.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ifssnet import compare as C
from ifssnet import compare_cli as CC
from ifssnet.baselines import registry
from cli_output import error_line as _error_line, interrupting_progress, run_cli as _cli  # noqa: E402
from ifssnet.errors import SeedError, VolumeError
from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume
from ifssnet.seeds import cut_seeds

K, J, I = 16, 20, 24
GEO = Geometry(spacing=(0.5, 0.5, 0.8))


def _muscle():
    m = np.zeros((K, J, I), np.uint8)
    m[2:14, 5:15, 6:18] = 1
    return m


def _volume(m):
    rng = np.random.default_rng(0)
    return (40 + 60 * m + rng.normal(0, 8, m.shape)).clip(0, 255).astype(np.uint8)


@pytest.fixture
def ran():
    """A cheap registered method ('copy': the seeds, nothing else); ``ran`` lists the muscles it was run on."""
    calls = []

    def copy(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        calls.append(len(seeds.slices))
        for n in range(3):
            report(progress, "propagating", n + 1, 3)
        return seeds.mask

    from ifssnet.progress import report

    registry.register("copy", copy, "Copy")
    yield calls
    registry.unregister("copy")


@pytest.fixture
def case(tmp_path):
    """volume.nrrd, reference.seg.nrrd (GM, and SOL empty in empty.seg.nrrd), an earlier out.csv and out.png."""
    m = _muscle()
    write_volume(Image(_volume(m), GEO), tmp_path / "volume.nrrd")
    write_segmentation(segmentation_from_masks({"GM": m}, GEO), tmp_path / "reference.seg.nrrd")
    write_segmentation(segmentation_from_masks({"GM": m, "SOL": np.zeros_like(m)}, GEO), tmp_path / "empty.seg.nrrd")
    (tmp_path / "out.csv").write_text("the previous table")
    (tmp_path / "out.png").write_bytes(b"the previous plot")
    return tmp_path


def _assert_old_outputs_untouched(folder: Path):
    assert (folder / "out.csv").read_text() == "the previous table"
    assert (folder / "out.png").read_bytes() == b"the previous plot"
    assert not [p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".tmp")]


def _compare(case, *extra, ref="reference.seg.nrrd", volume="volume.nrrd"):
    return ["compare", case / volume, "-", case / ref, "--methods", "copy",
            "--csv", case / "out.csv", "--plot", case / "out.png", *extra]


def test_an_empty_reference_segment_is_refused_before_any_work_and_named(case, ran, capsys):
    code, _, err = _cli(capsys, *_compare(case, ref="empty.seg.nrrd"))
    line = _error_line(err)
    assert code == 2 and "Reference segment 'SOL' is empty" in line and "--segment GM" in line, line
    assert ran == []
    _assert_old_outputs_untouched(case)
    # compare-set, whose cases come from `ifssnet phantom`, names the case too
    (case / "reference.seg.nrrd").write_bytes((case / "empty.seg.nrrd").read_bytes())
    code, _, err = _cli(capsys, "compare-set", case, "--methods", "copy", "--csv", case / "out.csv")
    line = _error_line(err)
    assert code == 2 and str(case) in line and "'SOL' is empty" in line, line
    assert ran == []
    _assert_old_outputs_untouched(case)
    # and the core, with seeds given (nothing to cut from the reference)
    m = _muscle()
    with pytest.raises(SeedError, match="'SOL' is empty"):
        C.compare(_volume(m), {"GM": m, "SOL": np.zeros_like(m)}, (0.8, 0.5, 0.5), ["copy"],
                  seeds={"GM": cut_seeds(m, (6, 7, 8)), "SOL": cut_seeds(m, (6, 7, 8))})
    assert ran == []


def test_a_volume_one_slice_thick_is_refused_as_a_2d_image(case, ran, capsys):
    m = _muscle()[6:7]
    write_volume(Image(_volume(m), GEO), case / "frame.nrrd")
    write_segmentation(segmentation_from_masks({"GM": m}, GEO), case / "frame.seg.nrrd")
    for ref in ("frame.seg.nrrd", "reference.seg.nrrd"):     # its own one-slice reference, or the sweep's
        code, _, err = _cli(capsys, *_compare(case, ref=ref, volume="frame.nrrd"))
        line = _error_line(err)
        assert code == 2 and "2-D image (one slice thick" in line and "Load the reconstructed 3-D" in line, line
    assert ran == []
    _assert_old_outputs_untouched(case)
    with pytest.raises(VolumeError, match="one slice thick"):
        C.compare(_volume(m), {"GM": m}, (0.8, 0.5, 0.5), ["copy"], seeds={"GM": cut_seeds(m, (0,))})


def test_a_corrupt_model_is_refused_before_any_work_exit_3(case, ran, tiny_model, capsys):
    bad = case / "half.pt"
    bad.write_bytes(Path(tiny_model).read_bytes()[:5000])
    code, _, err = _cli(capsys, *_compare(case, "--methods", "copy,ifssnet", "--model", bad))
    line = _error_line(err)
    assert code == 3 and "corrupt or truncated" in line and "Download or train it again" in line, line
    code, _, err = _cli(capsys, "compare-set", case, "--methods", "copy,ifssnet", "--model", case / "nope.pt",
                        "--csv", case / "out.csv")
    assert code == 3 and "does not exist" in _error_line(err)
    assert ran == []
    _assert_old_outputs_untouched(case)


def test_an_output_that_cannot_be_written_is_refused_before_any_work(case, ran, monkeypatch, capsys):
    code, _, err = _cli(capsys, *_compare(case)[:-4], "--csv", case / "no" / "o.csv")
    assert code == 4 and "does not exist" in _error_line(err) and "Create it" in _error_line(err)
    code, _, err = _cli(capsys, *_compare(case)[:-4], "--plot", case / "volume.nrrd")
    assert code == 2 and "one of the input files" in _error_line(err)
    from ifssnet.errors import DependencyError

    def no_matplotlib():
        raise DependencyError("Plotting needs matplotlib.", "Install it with: python -m pip install matplotlib")

    monkeypatch.setattr(C, "_pyplot", no_matplotlib)
    code, _, err = _cli(capsys, *_compare(case))
    assert code == 5 and "pip install matplotlib" in _error_line(err)
    assert ran == []
    _assert_old_outputs_untouched(case)


def test_ctrl_c_during_the_comparison_exits_130_and_writes_nothing(case, ran, monkeypatch, capsys):
    import ifssnet.progress as progress

    monkeypatch.setattr(progress, "TqdmProgress", interrupting_progress("propagating"))
    code, _, err = _cli(capsys, *_compare(case))
    assert code == 130 and "Interrupted (Ctrl-C). Nothing was written." in _error_line(err)
    code, _, err = _cli(capsys, "compare-set", case, "--methods", "copy", "--csv", case / "out.csv",
                        "--plot", case / "out.png")
    assert code == 130 and "Nothing was written" in _error_line(err)
    assert len(ran) == 2
    _assert_old_outputs_untouched(case)


def test_a_failure_while_writing_the_plot_leaves_the_csv_as_it_was(case, ran, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    real_plot = CC.plot
    monkeypatch.setattr(CC, "plot", interrupted)         # the CSV comes first
    code, _, err = _cli(capsys, *_compare(case))
    assert code == 130 and "Nothing was written" in _error_line(err)
    _assert_old_outputs_untouched(case)
    monkeypatch.setattr(CC, "plot", real_plot)

    def broken(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        raise SeedError("broken on purpose.", "")

    registry.register("broken", broken)
    try:
        code, out, err = _cli(capsys, *_compare(case, "--methods", "broken"))
    finally:
        registry.unregister("broken")
    assert code == 2 and "nothing to plot: every run failed" in _error_line(err)
    assert "broken on purpose" in out                    # the table it refers to is shown
    _assert_old_outputs_untouched(case)


def test_evaluate_refuses_an_empty_reference_segment_naming_it(case, capsys):
    m = _muscle()
    write_segmentation(segmentation_from_masks({"GM": m, "SOL": m}, GEO), case / "pred.seg.nrrd")
    code, out, err = _cli(capsys, "evaluate", case / "pred.seg.nrrd", case / "empty.seg.nrrd")
    line = _error_line(err)
    assert code == 2 and "Segment 'SOL' is empty in the reference" in line and "--segment GM" in line, line
    assert out == ""                                      # no Dice 0 and infinite distances for it
    code, out, _ = _cli(capsys, "evaluate", case / "pred.seg.nrrd", case / "empty.seg.nrrd", "--segment", "GM")
    assert code == 0 and "GM" in out


def test_seeds_that_fail_leave_an_earlier_output_as_it_was(case, capsys):
    """`ifssnet seeds`: an empty segment, a name not in the file, a bad --at or --count: the message, and the
    earlier -o file untouched."""
    out = case / "seeds.seg.nrrd"
    out.write_bytes(b"the previous seeds")
    for extra, words in ((["--segment", "SOL"], "Segment 'SOL' is empty"), (["--segment", "LG"], "Choose from: GM, SOL"),
                         (["--at", "40"], "Choose a first slice between"), (["--count", "0"], "Use --count 3")):
        code, _, err = _cli(capsys, "seeds", case / "empty.seg.nrrd", "-o", out, *extra)
        assert code == 2 and words in _error_line(err), (extra, err)
        assert out.read_bytes() == b"the previous seeds"
    assert not [p.name for p in case.iterdir() if ".partial" in p.name]
