"""The ``ifssnet`` command line under bad input, faults and Ctrl-C (issue 8).

Every error of the core is one line on stderr and its exit code (2 input, 3 model, 4 resources,
5 dependency, 130 cancelled); anything else is a bug: one "internal error" line and exit 70. No
traceback unless ``--debug``. A failed or interrupted run leaves no output file, and an existing
output untouched. The CLI never touches the network.
"""
import errno
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from fake_models import CopyModel
from cli_output import error_line as _error_line, interrupting_progress, recording_progress  # noqa: E402
from cli_output import run_cli as _cli  # noqa: E402
from ifssnet.cli import EXIT_INTERNAL
from ifssnet.io import (AnnotatedSlices, Geometry, Image, read_segmentation, segmentation_from_masks,
                        write_segmentation, write_volume)

REPO = Path(__file__).resolve().parent.parent
K, J, I = 10, 24, 28
OBLIQUE = Geometry(spacing=(0.3, 0.45, 1.6), origin=(-12.5, 3.0, 100.25),      # anisotropic and oblique
                   direction=tuple(np.array([[0.0, -1.0, 0.0], [0.8, 0.0, 0.6], [-0.6, 0.0, 0.8]]).ravel()))


def _muscle():
    m = np.zeros((K, J, I), np.uint8)
    m[:, 6:16, 8:20] = 1
    return m


def _write_case(folder: Path, volume=None, painted=None, slices=(4, 5, 6), tag=True, geometry=OBLIQUE):
    vol = volume if volume is not None else np.random.default_rng(0).integers(0, 255, (K, J, I)).astype(np.uint8)
    write_volume(Image(vol, geometry), folder / "volume.nrrd")
    m = _muscle() if painted is None else painted
    seeds = np.zeros_like(m)
    seeds[list(slices)] = m[list(slices)]
    ann = {"GM": AnnotatedSlices(0, tuple(slices))} if tag else None
    write_segmentation(segmentation_from_masks({"GM": seeds}, geometry, ann), folder / "seeds.seg.nrrd")
    return folder / "volume.nrrd", folder / "seeds.seg.nrrd"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A real, untrained, tiny IFSS-Net saved as a checkpoint."""
    from ifssnet.model import IFSSNet, IFSSNetConfig, save_checkpoint

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    return save_checkpoint(path, IFSSNet(IFSSNetConfig(size=32, width_mult=0.25)))


@pytest.fixture
def copy_net(monkeypatch):
    """Replace the network by CopyModel (fast, exact) for tests of the plumbing."""
    import ifssnet.propagate as prop

    monkeypatch.setattr(prop, "load_model", lambda model=None, device="cpu": CopyModel(size=32))


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a socket fails the test."""
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    for name in ("socket", "create_connection", "getaddrinfo", "socketpair"):
        monkeypatch.setattr(socket, name, refuse)


def _leftovers(folder: Path):
    return [p.name for p in folder.iterdir() if ".partial" in p.name or p.name.endswith(".tmp")]


# ------------------------------------------------------------------------------- happy paths
def test_propagate_with_a_real_tiny_network_and_no_network_access(tmp_path, tiny_model, offline, capsys):
    vol, seeds = _write_case(tmp_path)
    code, out, err = _cli(capsys, "propagate", vol, seeds, "-o", tmp_path / "out.seg.nrrd",
                          "--model", tiny_model, "--device", "cpu")
    assert code == 0, err
    res = read_segmentation(tmp_path / "out.seg.nrrd")
    assert res.geometry.same_as(OBLIQUE, tol=1e-5) and res.shape == (K, J, I)
    assert res.get("GM").annotated == AnnotatedSlices(0, (4, 5, 6))
    np.testing.assert_array_equal(res.mask("GM")[4:7], _muscle()[4:7])         # painted slices as painted
    side = json.loads((tmp_path / "out.confidence.json").read_text())
    assert side["axis"] == 0 and len(side["confidence"]["GM"]) == K
    assert side["frames"] == K and side["frame_spacing_mm"] == pytest.approx(OBLIQUE.spacing[2])  # the file's k spacing
    nxt = side["paint_next"]["GM"]
    assert nxt is None or (0 <= nxt < K and nxt not in (4, 5, 6) and f"paint slice {nxt}" in out)
    assert "wrote" in out and not _leftovers(tmp_path)


def test_a_sweep_finer_than_the_network_runs_on_fewer_frames_unless_every_frame(tmp_path, monkeypatch, capsys):
    import ifssnet.memory as memory
    import ifssnet.propagate as prop

    def coarse(model=None, device="cpu"):
        net = CopyModel(size=32)
        net.config.slice_spacing_mm = 1.0                   # trained on frames 1 mm apart
        return net
    monkeypatch.setattr(prop, "load_model", coarse)
    checked = []                                            # frames the CLI's own memory check counts
    real_check = memory.check_propagation_memory
    monkeypatch.setattr(memory, "check_propagation_memory",
                        lambda *a, **kw: (checked.append(kw.get("frames")), real_check(*a, **kw))[1])
    fine = Geometry(spacing=(0.5, 0.5, 0.25))              # frames 0.25 mm apart along k
    m = np.zeros((41, J, I), np.uint8)
    m[:, 6:16, 8:20] = 1
    vol = np.random.default_rng(0).integers(0, 255, (41, J, I)).astype(np.uint8)
    volume, seeds = _write_case(tmp_path, vol, m, slices=(19, 20, 21), geometry=fine)
    for extra, frames in (((), 11), (("--every-frame",), 41)):
        code, out, err = _cli(capsys, "propagate", volume, seeds, "-o", tmp_path / "o.seg.nrrd", *extra)
        assert code == 0, err
        side = json.loads((tmp_path / "o.confidence.json").read_text())
        assert side["frames"] == frames and (("propagated on 11 of 41 frames" in out) == (frames == 11))
        assert checked.pop() == frames                      # checked on the frames it runs on, not every frame
        res = read_segmentation(tmp_path / "o.seg.nrrd")
        assert res.mask("GM").shape == (41, J, I) and (res.mask("GM") != m).sum() / m.sum() < 0.1


def test_no_muscle_at_stops_the_mask_where_the_muscle_ends(tmp_path, copy_net, capsys):
    """A copier leaks the painted mask through the whole sweep; a slice marked 'no muscle here' ends it there."""
    vol, seeds = _write_case(tmp_path)                       # painted on 4, 5, 6; the copier runs to both ends
    out = tmp_path / "o.seg.nrrd"
    code, _, err = _cli(capsys, "propagate", vol, seeds, "-o", out)
    assert code == 0, err and read_segmentation(out).mask("GM")[8].any()        # leaks on without the mark
    code, _, err = _cli(capsys, "propagate", vol, seeds, "-o", out, "--no-muscle-at", "GM:9", "--no-muscle-at", "0")
    assert code == 0, err
    res = read_segmentation(out)
    got = res.mask("GM")
    assert not got[9].any() and not got[0].any()            # nothing on a marked slice
    np.testing.assert_array_equal(got[4:7], _muscle()[4:7])  # painted slices as painted
    assert got[7].any() and got[3].any()                    # next to the paint: propagated
    assert not got[8].any() and not got[1].any()            # next to a mark: its 'no muscle' weighs more
    assert res.get("GM").annotated == AnnotatedSlices(0, (0, 4, 5, 6, 9))      # a rerun keeps the marks
    side = json.loads((tmp_path / "o.confidence.json").read_text())
    assert side["ends"]["GM"] == [3, 7]                       # the mask's first and last slice: where to check


def test_segments_do_not_overlap_in_the_output_unless_allowed(tmp_path, copy_net, capsys):
    vol, _ = _write_case(tmp_path)
    gm = np.zeros((K, J, I), np.uint8)
    gm[4:7] = _muscle()[4:7]
    sol = np.zeros((K, J, I), np.uint8)
    sol[7:10, 10:20, 14:24] = 1                              # overlaps GM's box, painted elsewhere
    ann = {"GM": AnnotatedSlices(0, (4, 5, 6)), "SOL": AnnotatedSlices(0, (7, 8, 9))}
    write_segmentation(segmentation_from_masks({"GM": gm, "SOL": sol}, OBLIQUE, ann), tmp_path / "two.seg.nrrd")
    for flag, overlap in ((("--allow-overlap",), True), ((), False)):
        out = tmp_path / f"o{len(flag)}.seg.nrrd"      # the default run comes last: its masks are checked below
        code, _, err = _cli(capsys, "propagate", vol, tmp_path / "two.seg.nrrd", "-o", out, *flag)
        assert code == 0, err
        res = read_segmentation(out)
        both = (res.mask("GM") > 0) & (res.mask("SOL") > 0)
        assert both.any() == overlap
    np.testing.assert_array_equal(res.mask("SOL")[7:10], sol[7:10])     # painted slices as painted
    np.testing.assert_array_equal(res.mask("GM")[4:7], gm[4:7])


def test_an_annotated_slices_tag_from_another_volume_is_refused_with_what_to_do(tmp_path, copy_net, capsys):
    vol, _ = _write_case(tmp_path)
    gm = np.zeros((K, J, I), np.uint8)
    gm[4:7] = _muscle()[4:7]
    ann = {"GM": AnnotatedSlices(0, (4, 5, 6, K + 3))}      # a tag made on a longer sweep
    write_segmentation(segmentation_from_masks({"GM": gm}, OBLIQUE, ann), tmp_path / "tag.seg.nrrd")
    code, _, err = _cli(capsys, "propagate", vol, tmp_path / "tag.seg.nrrd", "-o", tmp_path / "o.seg.nrrd")
    line = _error_line(err)
    assert code == 2 and f"[{K + 3}]" in line and "remove it" in line
    assert not (tmp_path / "o.seg.nrrd").exists()


@pytest.mark.parametrize("mark, says", [("GM:5", "Slices [5] are painted"), ("SOL:8", "no segment 'SOL'"),
                                        ("GM:x", "not a list of slice numbers"), ("GM:12", "outside the volume")])
def test_a_wrong_no_muscle_mark_is_refused_and_writes_nothing(tmp_path, copy_net, capsys, mark, says):
    vol, seeds = _write_case(tmp_path)
    code, _, err = _cli(capsys, "propagate", vol, seeds, "-o", tmp_path / "o.seg.nrrd", "--no-muscle-at", mark)
    assert code == 2 and says in err and not (tmp_path / "o.seg.nrrd").exists()


def test_seeds_on_another_grid_and_another_axis_are_resampled_not_refused(tmp_path, copy_net, capsys):
    """A seed file saved on a finer grid (as from another reference volume), painted across j."""
    vol, _ = _write_case(tmp_path)
    fine = Geometry(spacing=(0.15, OBLIQUE.spacing[1], OBLIQUE.spacing[2]), origin=OBLIQUE.origin,
                    direction=OBLIQUE.direction)
    painted = np.zeros((K, J, 2 * I), np.uint8)
    painted[1:9, 9:12, 16:40] = 1                            # slices j = 9, 10, 11, i doubled
    write_segmentation(segmentation_from_masks({"GM": painted}, fine), tmp_path / "fine.seg.nrrd")
    code, _, err = _cli(capsys, "propagate", vol, tmp_path / "fine.seg.nrrd", "-o", tmp_path / "o.seg.nrrd")
    assert code == 0, err
    res = read_segmentation(tmp_path / "o.seg.nrrd")
    assert res.shape == (K, J, I) and res.geometry.same_as(OBLIQUE, tol=1e-5)
    assert res.get("GM").annotated == AnnotatedSlices(1, (9, 10, 11))
    assert json.loads((tmp_path / "o.confidence.json").read_text())["axis"] == 1
    assert res.mask("GM")[1:9, :, 8:20].mean() > 0.9                       # carried along j


# --------------------------------------------------------------------------------- errors
def _corrupt(tmp_path, tiny_model):
    p = tmp_path / "half.pt"
    p.write_bytes(Path(tiny_model).read_bytes()[:5000])
    return p


def _newer(tmp_path, tiny_model):
    obj = torch.load(tiny_model, weights_only=True)
    obj["format_version"] = 99
    torch.save(obj, tmp_path / "new.pt")
    return tmp_path / "new.pt"


def _flat(tmp_path):
    sitk.WriteImage(sitk.Image([I, J], sitk.sitkUInt8), str(tmp_path / "flat.nrrd"))
    return tmp_path / "flat.nrrd"


def _rgb(tmp_path):
    sitk.WriteImage(sitk.Image([I, J, K], sitk.sitkVectorUInt8, 3), str(tmp_path / "rgb.nrrd"))
    return tmp_path / "rgb.nrrd"


def _two_views(tmp_path):
    m = np.zeros((K, J, I), np.uint8)
    m[4:7, 6:16, 8:20] = 1
    m[0:10, 18:22, 24] = 1                                    # a stroke painted in the sagittal view
    write_segmentation(segmentation_from_masks({"GM": m}, OBLIQUE), tmp_path / "two.seg.nrrd")
    return tmp_path / "two.seg.nrrd"


def _one_slice(tmp_path, args):
    """A single frame saved as a 3-D file (1 x J x I), painted on it: what Slicer holds for a 2-D image."""
    folder = tmp_path / "frame"
    folder.mkdir()
    vol, seeds = _write_case(folder, volume=np.zeros((1, J, I), np.uint8), painted=_muscle()[5:6], slices=(0,))
    args.update(volume=vol, seeds=seeds)


def _one_empty_segment(tmp_path):
    m = _muscle()
    seeds = np.zeros_like(m)
    seeds[[4, 5, 6]] = m[[4, 5, 6]]
    masks = {"GM": seeds, "SOL": np.zeros_like(m)}
    write_segmentation(segmentation_from_masks(masks, OBLIQUE), tmp_path / "gm-sol.seg.nrrd")
    return tmp_path / "gm-sol.seg.nrrd"


def _constant(tmp_path):
    write_volume(Image(np.full((K, J, I), 9, np.int16), OBLIQUE), tmp_path / "const.nrrd")
    return tmp_path / "const.nrrd"


# (name, how to change the arguments, exit code, words in the message)
CASES = [
    ("missing volume", lambda t, a: a.update(volume=t / "nope.nrrd"), 2, "does not exist"),
    ("2-D image", lambda t, a: a.update(volume=_flat(t)), 2, "2-D image"),
    ("one-slice 3-D file", _one_slice, 2, "2-D image (one slice thick"),
    ("RGB volume", lambda t, a: a.update(volume=_rgb(t)), 2, "components per voxel"),
    ("constant volume", lambda t, a: a.update(volume=_constant(t)), 2, "constant"),
    ("2 painted slices", lambda t, a: a.update(seeds=_write_case(t, slices=(4, 5))[1]), 2, "at least 3"),
    ("nothing painted", lambda t, a: a.update(seeds=_write_case(t, painted=np.zeros((K, J, I), np.uint8),
                                                                  tag=False)[1]), 2, "Nothing is painted"),
    ("painted in two views", lambda t, a: a.update(seeds=_two_views(t)), 2, "two views"),
    ("axis contradicts the paint", lambda t, a: a.extra.extend(["--axis", "1"]), 2,
     "Segment 'GM': --axis 1 (j) was given, but its tag says axis 0 (k). Leave --axis out, or give --axis 0."),
    ("one segment empty", lambda t, a: a.update(seeds=_one_empty_segment(t)), 2,
     "Segment 'SOL': Nothing is painted in this segment. Paint it, or leave it out: --segment GM."),
    ("unknown segment", lambda t, a: a.extra.extend(["--segment", "SOL"]), 2, "No segment named SOL"),
    ("stop area not a fraction", lambda t, a: a.extra.extend(["--stop-area", "10"]), 2,
     "--stop-area 10.0 is not a share of the painted area in [0, 1). Give a fraction"),
    ("missing model", lambda t, a: a.update(model=t / "nope.pt"), 3, "does not exist"),
    ("truncated model", lambda t, a: a.update(model=_corrupt(t, a.tiny)), 3, "corrupt"),
    ("newer model format", lambda t, a: a.update(model=_newer(t, a.tiny)), 3, "newer"),
    ("no output folder", lambda t, a: a.update(output=t / "no" / "o.seg.nrrd"), 4, "does not exist"),
    ("output suffix", lambda t, a: a.update(output=t / "o.nrrd"), 2, "does not end in .seg.nrrd"),
    ("output is the seeds", lambda t, a: a.update(output=a["seeds"]), 2, "replace your painted slices"),
]


class _Args(dict):
    def __init__(self, tmp_path, tiny):
        vol, seeds = _write_case(tmp_path)
        super().__init__(volume=vol, seeds=seeds, output=tmp_path / "out.seg.nrrd", model=tiny)
        self.extra, self.tiny = [], tiny

    def argv(self):
        return ["propagate", self["volume"], self["seeds"], "-o", self["output"], "--model", self["model"],
                "--device", "cpu"] + self.extra


def never_propagate(monkeypatch):
    """These errors must be found before the long work starts."""
    import ifssnet.propagate as prop

    def boom(*a, **k):
        raise AssertionError("propagation started")

    monkeypatch.setattr(prop, "propagate", boom)


@pytest.fixture(name="never_propagate")
def _never_propagate(monkeypatch):
    never_propagate(monkeypatch)


@pytest.mark.parametrize("name, change, code, words", CASES, ids=[c[0] for c in CASES])
def test_each_error_is_one_line_and_its_exit_code(tmp_path, tiny_model, monkeypatch, capsys,
                                                  name, change, code, words):
    if name != "constant volume":         # found by the intensity statistics, at the start of propagate
        never_propagate(monkeypatch)
    args = _Args(tmp_path, tiny_model)
    change(tmp_path, args)
    _old_outputs(tmp_path)                # an earlier result, which must stay as it was
    seeds_before = Path(args["seeds"]).read_bytes()
    got, out, err = _cli(capsys, *args.argv())
    line = _error_line(err)
    assert got == code, (name, err)
    assert line.startswith("ifssnet: ") and words in line, line
    _assert_old_outputs_untouched(tmp_path)
    assert Path(args["seeds"]).read_bytes() == seeds_before


def test_cuda_requested_but_absent(tmp_path, tiny_model, never_propagate, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = _Args(tmp_path, tiny_model)
    code, _, err = _cli(capsys, *args.argv()[:-2], "--device", "cuda")
    assert code == 4 and "GPU (CUDA) was requested" in _error_line(err)


def test_too_large_for_memory_is_refused_before_starting_with_the_size(tmp_path, copy_net, never_propagate,
                                                                       monkeypatch, capsys):
    vol, seeds = _write_case(tmp_path)
    out = _old_outputs(tmp_path)
    seeds_before = seeds.read_bytes()
    monkeypatch.setenv("IFSSNET_AVAILABLE_MEMORY", "40M")
    code, _, err = _cli(capsys, "propagate", vol, seeds, "-o", out)
    line = _error_line(err)
    assert code == 4 and "needs about" in line and "GB are free" in line and "crop the volume" in line
    _assert_old_outputs_untouched(tmp_path)
    assert seeds.read_bytes() == seeds_before
    monkeypatch.setenv("IFSSNET_AVAILABLE_MEMORY", "1K")       # not even room to read the volume
    code, _, err = _cli(capsys, "propagate", vol, seeds, "-o", out)
    assert code == 4 and "Reading the volume and its seeds needs about" in _error_line(err)
    _assert_old_outputs_untouched(tmp_path)


def test_running_out_of_memory_midway_says_what_to_do_and_writes_nothing(tmp_path, copy_net, monkeypatch, capsys):
    import ifssnet.propagate as prop

    def oom(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(prop, "propagate", oom)
    vol, seeds = _write_case(tmp_path)
    out = _old_outputs(tmp_path)
    code, _, err = _cli(capsys, "propagate", vol, seeds, "-o", out)
    line = _error_line(err)
    assert code == 4 and "ran out of memory" in line and "Close other programs" in line
    _assert_old_outputs_untouched(tmp_path)


def test_debug_shows_the_traceback(tmp_path, tiny_model, capsys):
    args = _Args(tmp_path, tiny_model)
    args.update(model=tmp_path / "nope.pt")
    code, _, err = _cli(capsys, "--debug", *args.argv())
    assert code == 3 and "Traceback" in err and err.rstrip().splitlines()[-1].startswith("ifssnet: ")


def test_an_unexpected_exception_is_an_internal_error_exit_70(tmp_path, copy_net, monkeypatch, capsys):
    import ifssnet.propagate as prop

    def bug(*a, **k):
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(prop, "propagate", bug)
    vol, seeds = _write_case(tmp_path)
    code, _, err = _cli(capsys, "propagate", vol, seeds, "-o", tmp_path / "o.seg.nrrd")
    line = _error_line(err)
    assert code == EXIT_INTERNAL == 70
    assert "internal error" in line and "--debug" in line and "ZeroDivisionError" in line
    code, _, err = _cli(capsys, "--debug", "propagate", vol, seeds, "-o", tmp_path / "o.seg.nrrd")
    assert code == 70 and "Traceback" in err and "bug" in err
    assert not (tmp_path / "o.seg.nrrd").exists()


# ------------------------------------------------------------------ Ctrl-C and disk full
def _old_outputs(tmp_path):
    out = tmp_path / "out.seg.nrrd"
    out.write_bytes(b"the previous result")
    (tmp_path / "out.confidence.json").write_text("{}")
    return out


def _assert_old_outputs_untouched(tmp_path):
    assert (tmp_path / "out.seg.nrrd").read_bytes() == b"the previous result"
    assert (tmp_path / "out.confidence.json").read_text() == "{}"
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("stage", ["propagating", "Writing segmentation"])
def test_ctrl_c_while_propagating_or_writing_exits_130_and_leaves_the_old_outputs(tmp_path, copy_net, monkeypatch,
                                                                               capsys, stage):
    """Ctrl-C in the network's stage or while the result is written (a stage of its own: about 5 s for three
    full-size segments) exits 130 and leaves the earlier outputs as they were."""
    import ifssnet.progress as progress

    monkeypatch.setattr(progress, "TqdmProgress", interrupting_progress(stage))
    vol, seeds = _write_case(tmp_path)
    _old_outputs(tmp_path)
    code, _, err = _cli(capsys, "propagate", vol, seeds, "-o", tmp_path / "out.seg.nrrd")
    assert code == 130 and "Interrupted (Ctrl-C). Nothing was written." in _error_line(err)
    _assert_old_outputs_untouched(tmp_path)


def test_ctrl_c_between_the_two_output_files_leaves_both_as_they_were(tmp_path, copy_net, monkeypatch, capsys):
    import ifssnet.io as io

    def interrupted(obj, path):
        raise KeyboardInterrupt

    monkeypatch.setattr(io, "write_json", interrupted)      # the .seg.nrrd is already written by then
    vol, seeds = _write_case(tmp_path)
    _old_outputs(tmp_path)
    code, _, _ = _cli(capsys, "propagate", vol, seeds, "-o", tmp_path / "out.seg.nrrd")
    assert code == 130
    _assert_old_outputs_untouched(tmp_path)


def test_seeds_and_evaluate_show_reading_writing_and_distances_and_ctrl_c_while_writing_seeds_writes_nothing(
        tmp_path, monkeypatch, capsys):
    """On a full-size sweep reading a .seg.nrrd takes ~7 s and writing one ~5 s: the bars show them."""
    import ifssnet.cli_data as cli_data

    vol, seeds = _write_case(tmp_path)
    seen = []
    monkeypatch.setattr(cli_data, "TqdmProgress", recording_progress(seen))
    code, _, err = _cli(capsys, "seeds", seeds, "-o", tmp_path / "s.seg.nrrd")
    assert code == 0, err
    assert "Reading segmentation" in seen and "Writing segmentation" in seen
    seen.clear()
    code, _, err = _cli(capsys, "evaluate", seeds, seeds)
    assert code == 0, err
    assert {"Reading segmentation", "Surface distances", "Slice distances"} <= set(seen)
    monkeypatch.setattr(cli_data, "TqdmProgress", interrupting_progress("Writing segmentation"))
    code, _, err = _cli(capsys, "seeds", seeds, "-o", tmp_path / "t.seg.nrrd")
    assert code == 130 and "Interrupted (Ctrl-C)" in _error_line(err)
    assert not (tmp_path / "t.seg.nrrd").exists() and not _leftovers(tmp_path)

def test_disk_full_while_writing(tmp_path, copy_net, monkeypatch, capsys):
    import slicerio

    def full(path, *a, **k):
        Path(path).write_bytes(b"NRRD0004\n")                 # a partial file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    vol, seeds = _write_case(tmp_path)
    monkeypatch.setattr(slicerio, "write_segmentation", full)
    _old_outputs(tmp_path)
    code, _, err = _cli(capsys, "propagate", vol, seeds, "-o", tmp_path / "out.seg.nrrd")
    line = _error_line(err)
    assert code == 4 and "No space left on device" in line and "Free some disk space" in line
    _assert_old_outputs_untouched(tmp_path)


def test_output_folder_not_writable(tmp_path, copy_net, never_propagate, monkeypatch, capsys):
    vol, seeds = _write_case(tmp_path)
    out_dir = tmp_path / "locked"
    out_dir.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == out_dir else real(p, m, **k))
    code, _, err = _cli(capsys, "propagate", vol, seeds, "-o", out_dir / "o.seg.nrrd")
    assert code == 4 and "not writable" in _error_line(err)


# ----------------------------------------------------------------------- other commands
def test_evaluate_and_seeds_errors(tmp_path, capsys):
    vol, seeds = _write_case(tmp_path)
    code, out, err = _cli(capsys, "evaluate", seeds, seeds, "--json")
    assert code == 0 and json.loads(out)["GM"]["dice"] == 1.0
    code, _, err = _cli(capsys, "evaluate", seeds, seeds, "--segment", "SOL")
    assert code == 2 and "not in both files" in _error_line(err)
    code, _, err = _cli(capsys, "seeds", seeds, "-o", seeds)
    assert code == 2 and "replace your painted slices" in _error_line(err)
    code, _, err = _cli(capsys, "seeds", tmp_path / "nope.seg.nrrd", "-o", tmp_path / "s.seg.nrrd")
    assert code == 2 and "does not exist" in _error_line(err)


# ---------------------------------------------------------------------- real processes
def _python(code: str, cwd: Path, timeout=300):  # a safety net for a busy machine, not a timing assertion
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "Testing")]),
               OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_without_torch_propagate_says_how_to_install_it_and_the_rest_works(tmp_path):
    vol, seeds = _write_case(tmp_path)
    res = _python(f"""
        import sys
        sys.modules["torch"] = None                     # as if PyTorch were not installed
        from ifssnet.cli import main
        code = main(["propagate", {str(vol)!r}, {str(seeds)!r}, "-o", "out.seg.nrrd"])
        ok = main(["evaluate", {str(seeds)!r}, {str(seeds)!r}])
        sys.exit(code * 10 + ok)
        """, tmp_path)
    assert res.returncode == 50, res.stderr
    line = _error_line(res.stderr)
    assert "PyTorch (torch) is not installed" in line and "pip install torch" in line
    assert "PyTorch" in line and "extension" in line
    assert not (tmp_path / "out.seg.nrrd").exists()


def test_a_real_sigint_exits_130_and_leaves_no_output(tmp_path):
    vol, seeds = _write_case(tmp_path)
    res = _python(f"""
        import os, signal, sys, time
        # As in a terminal: a process started in the background by a non-interactive shell (CI run
        # with &, nohup) inherits SIGINT ignored, and Ctrl-C would never reach it.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import ifssnet.progress as progress
        import ifssnet.propagate as prop
        from fake_models import CopyModel
        prop.load_model = lambda model=None, device="cpu": CopyModel(size=32)

        class SendsSigint:
            def __init__(self, *a, **k): pass
            def close(self): pass
            def __call__(self, stage, done, total):
                if stage == "propagating" and done > 0:
                    os.kill(os.getpid(), signal.SIGINT)   # what Ctrl-C in a terminal sends
                    time.sleep(30)

        progress.TqdmProgress = SendsSigint
        from ifssnet.cli import main
        sys.exit(main(["propagate", {str(vol)!r}, {str(seeds)!r}, "-o", "out.seg.nrrd"]))
        """, tmp_path)
    assert res.returncode == 130, res.stderr
    assert "Interrupted (Ctrl-C)" in _error_line(res.stderr)
    assert not (tmp_path / "out.seg.nrrd").exists() and not _leftovers(tmp_path)


def test_progress_bars_follow_tqdms_environment_switch():
    """TQDM_DISABLE=1 (batch jobs, logs) silences the bars; without it they are drawn; disable=True always wins.

    tqdm reads its environment when it is imported, hence a fresh interpreter per case."""
    code = ("import sys; from ifssnet.progress import TqdmProgress; b = TqdmProgress(disable=sys.argv[1] == '1'); "
            "b('propagating', 3, 10); b.close()")

    def drawn(disable: str, env_value):
        env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
        if env_value is not None:
            env["TQDM_DISABLE"] = env_value
        r = subprocess.run([sys.executable, "-c", code, disable], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return "propagating" in r.stderr

    assert drawn("0", None) and not drawn("1", None)
    assert not drawn("0", "1")


def test_a_bar_opened_part_way_shows_the_rate_since_it_opened():
    """A stage's bar opened at step ``done`` > 0 (the training bar again after a validation, which now shows its
    own 'validating' bar; a --resume'd run) counts its rate and time left from there, not as if the ``done``
    steps took the moment since it opened (that showed e.g. 1000 it/s and 00:00 left).

    In a child process without ``TQDM_DISABLE``: tqdm reads its environment once, when it is imported, so a
    ``TQDM_DISABLE=1`` in the test run's environment (as batch jobs set it) would hide the rate."""
    import re
    import subprocess
    import sys

    code = ("import time\n"
            "from ifssnet.progress import TqdmProgress\n"
            "bar = TqdmProgress()\n"
            "bar('training', 500, 1000); time.sleep(0.1); bar('training', 501, 1000)\n"
            "print(str(bar._bar)); bar.close()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_")}
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                           timeout=120).stdout
    rate = re.search(r"([\d.]+)it/s", shown)
    assert "s/it" in shown or (rate and float(rate.group(1)) < 100), shown   # 1 step in 0.1 s, not 501
