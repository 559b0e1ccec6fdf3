"""Review of session 40 (network, CLI, phantom, progress): the bugs it found, each pinned by a test.

Small phantoms and tiny networks only; the file runs in seconds on 2 cores.
"""
from __future__ import annotations

import pytest

from cli_output import error_line, run_cli  # noqa: E402  (Testing/ is on sys.path: conftest)


# ----------------------------------------------------------------------------------- CLI: phantom
@pytest.mark.parametrize("spacing", ["0", "-0.5"])
def test_phantom_refuses_a_spacing_that_is_not_positive(tmp_path, capsys, spacing):
    """``--spacing 0`` was falsy, so it was dropped and the default spacing written without a word."""
    code, _, err = run_cli(capsys, "phantom", tmp_path / "out", "--shape", 20, 32, 32, "--spacing", spacing)
    assert code == 2
    assert "is not a positive number of mm" in error_line(err)
    assert not (tmp_path / "out" / "volume.nrrd").exists()


def test_phantom_to_a_path_that_is_a_file_is_a_resource_error_before_rendering(tmp_path, capsys, monkeypatch):
    """An output folder that is a file was an internal error (FileExistsError, exit 70), after the whole phantom
    had been rendered."""
    import ifssnet.phantom as phantom

    out = tmp_path / "taken"
    out.write_text("not a folder")
    rendered = []
    real = phantom.make_phantom
    monkeypatch.setattr(phantom, "make_phantom", lambda *a, **k: rendered.append(1) or real(*a, **k))
    code, _, err = run_cli(capsys, "phantom", out, "--shape", 20, 32, 32)
    assert code == 4, err
    assert "taken" in error_line(err)
    assert not rendered
    assert out.read_text() == "not a folder"


def test_demo_to_a_path_that_is_a_file_is_a_resource_error(tmp_path, capsys, monkeypatch):
    import ifssnet.phantom as phantom

    out = tmp_path / "taken"
    out.write_text("not a folder")
    monkeypatch.setattr(phantom, "write_phantom", lambda *a, **k: pytest.fail("the demo started on an unusable folder"))
    code, _, err = run_cli(capsys, "demo", out)
    assert code == 4, err
    assert "taken" in error_line(err)
    assert out.read_text() == "not a folder"


# ----------------------------------------------------------------------------------- mask_noise
def test_jitter_shift_does_not_wrap_a_mask_round_to_the_opposite_edge():
    """The shift was ``torch.roll``: a mask touching one edge of the working grid came back on the opposite edge
    (a strip of muscle where there is none). A shift moves the mask and fills with background."""
    torch = pytest.importorskip("torch")
    from ifssnet.mask_noise import jitter_mask

    m = torch.zeros(1, 3, 32, 32)
    m[..., 8:20, 0:10] = 1            # touches the left edge, as a muscle cut by the probe's field of view does
    m[..., 0:6, 12:20] = 1            # and the top edge
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        j = jitter_mask(m, max_shift=3, max_radius=0)
        assert not j[..., :, 24:].any() and not j[..., 24:, :].any(), "mask wrapped round to the opposite edge"
        assert j.sum() <= m.sum()
        seen.add(bool(torch.equal(j, m)))
    assert False in seen


# ----------------------------------------------------------------------------------- progress
def test_tqdm_progress_shows_a_stage_again_after_close():
    """``close()`` forgot the bar but not its stage, so the same stage reported afterwards showed no bar at all
    (a reused progress looked stalled)."""
    pytest.importorskip("tqdm")
    from ifssnet.progress import TqdmProgress

    bar = TqdmProgress(disable=True)
    bar("Reading", 1, 4)
    bar.close()
    bar("Reading", 2, 4)
    assert bar._bar is not None and bar._bar.n == 2 and bar._bar.total == 4
    bar.close()
    assert bar._bar is None


# ----------------------------------------------------------------------------------- phantom
@pytest.mark.parametrize("seed", ["-1", "-1000"])
def test_phantom_and_demo_refuse_a_negative_seed_as_bad_input(tmp_path, capsys, seed):
    """A negative --seed reached numpy's SeedSequence: 'ValueError: expected non-negative integer', an internal
    error (exit 70)."""
    code, _, err = run_cli(capsys, "phantom", tmp_path / "out", "--seed", seed, "--shape", 20, 32, 32)
    assert code == 2, err
    assert "seed" in error_line(err).lower()
    code, _, err = run_cli(capsys, "demo", tmp_path / "demo", "--seed", seed, "--shape", 20, 32, 32)
    assert code == 2, err
    assert "seed" in error_line(err).lower()


# ----------------------------------------------------------------------------------- CLI: evaluate
def test_evaluate_exclude_annotated_leaves_out_the_annotated_slices_across_their_own_axis(tmp_path, capsys):
    """``--exclude-annotated`` took the annotated slice numbers as k slices whatever axis they lie across (a
    propagation across j or i records axis 1 or 2): it left out the wrong slices and scored the seed slices."""
    import json

    import numpy as np

    from ifssnet.io import AnnotatedSlices, Geometry, segmentation_from_masks, write_segmentation

    geo = Geometry(spacing=(0.5, 0.7, 1.1))
    ref = np.zeros((12, 20, 24), np.uint8)
    ref[2:10, 4:16, 3:21] = 1
    pred = ref.copy()
    pred[:, :, 9:12] = 0                          # differs from the reference only on the annotated i slices 9-11
    pred[:, 4:16, 9:12] = 0
    write_segmentation(segmentation_from_masks({"GM": ref}, geo), tmp_path / "ref.seg.nrrd")
    write_segmentation(segmentation_from_masks({"GM": pred}, geo, {"GM": AnnotatedSlices(2, (9, 10, 11))}),
                       tmp_path / "pred.seg.nrrd")
    code, out, err = run_cli(capsys, "evaluate", tmp_path / "pred.seg.nrrd", tmp_path / "ref.seg.nrrd",
                             "--exclude-annotated", "--json")
    assert code == 0, err
    m = json.loads(out)["GM"]
    assert m["dice"] == pytest.approx(1.0)
    assert m["volume_cm3"] == pytest.approx(pred.sum() * 0.5 * 0.7 * 1.1 / 1000)   # volumes: the whole masks


def test_ctrl_c_during_the_demo_says_where_its_files_are(tmp_path, capsys, monkeypatch):
    """Ctrl-C during the demo's propagation said "Nothing was written", but the phantom and the seeds were on disk
    by then; the message now says where they are."""
    import ifssnet.propagate as propagate

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(propagate, "propagate", interrupted)
    code, _, err = run_cli(capsys, "demo", tmp_path / "d", "--shape", "40", "32", "32")
    line = error_line(err)
    assert code == 130, err
    assert "Nothing was written" not in line and str(tmp_path / "d") in line, line
    assert (tmp_path / "d" / "volume.nrrd").exists() and (tmp_path / "d" / "seeds.seg.nrrd").exists()
