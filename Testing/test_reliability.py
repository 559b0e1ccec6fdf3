"""Issue 8 in the core: bad input, faults and cancel give a clear error and change nothing.

Rows of issue 8 already covered elsewhere (not repeated here):

- no seed slices, fewer than 3 painted slices, an empty segment, a 2-D / 4-D / constant volume,
  negative floats, CUDA requested but absent, cancel between windows: ``test_propagate.py``;
- three far-apart slices are enough, painted in two views: ``test_seeds.py``;
- missing, truncated, corrupt checkpoint, another architecture, a newer format, pickled code,
  weights that do not match: ``test_model.py::test_checkpoint_errors``;
- RGB / 2-D / truncated files, a failed write keeps the old file: ``test_io.py``;
- training interrupted (cancel mid-step), then resumed exactly: ``test_train.py::test_resume_after_a_kill_continues_exactly``;
- the CLI (exit codes, Ctrl-C, disk full, offline run, torch missing): ``test_cli.py``;
- anything else a user can feed ``propagate`` and ``evaluate``: ``test_fuzz.py``.
"""
import errno
import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from fake_models import CopyModel
from ifssnet import memory
from ifssnet.errors import (Cancelled, DependencyError, GeometryError, IFSSNetError, InputError, ModelError,
                            ResourceError, SeedError, VolumeError, missing_dependency, require)
from ifssnet.io import (AnnotatedSlices, Image, Segment, Segmentation, atomic_write, write_segmentation,
                        write_volume)
from ifssnet.progress import CancelToken
from ifssnet.propagate import propagate
from ifssnet.propagate_cli import seeds_from_segmentation
from ifssnet.seeds import SeedSet, cut_seeds

K, J, I = 12, 20, 24


def _volume(dtype=np.uint8, seed=0):
    v = np.random.default_rng(seed).integers(0, 255, (K, J, I))
    return v.astype(dtype)


def _box():
    m = np.zeros((K, J, I), np.uint8)
    m[:, 5:14, 6:18] = 1
    return m


def _run(volume, seeds, **kw):
    return propagate(volume, {"T": seeds}, CopyModel(size=32), device="cpu", **kw)


# ------------------------------------------------------------------------------- volumes
def test_int16_volume_with_negative_values():
    vol = (_volume(np.int16) - 1000).astype(np.int16)          # CT-like: mostly negative
    out = _run(vol, cut_seeds(_box(), (4, 5, 6))).masks["T"]
    assert out.shape == (K, J, I) and (out[:, 5:14, 6:18].mean() > 0.9)


def test_float64_volume_with_a_tiny_range_and_an_offset():
    vol = 1e-4 * _volume(np.float64) - 7.5
    assert _run(vol, cut_seeds(_box(), (4, 5, 6))).masks["T"][:, 5:14, 6:18].mean() > 0.9


@pytest.mark.parametrize("shape, match", [
    ((2, J, I), "2 slices"),             # fewer slices than one window
    ((K, 5, I), "only 5 x"),             # slices too small to hold a muscle
    ((K, J, 3), "x 3 voxels"),
    ((1, J, I), "2-D image"),            # a single frame saved as a 3-D file (what Slicer holds)
    ((K, 1, I), "2-D image"),            # the same frame, cut across another axis
])
def test_volume_smaller_than_one_window(shape, match):
    vol = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    m = np.ones(shape, np.uint8)
    with pytest.raises(VolumeError, match=match):
        _run(vol, cut_seeds(m, range(min(3, shape[0]))))


def test_rgb_array_is_refused():
    rgb = np.zeros((K, J, I, 3), np.uint8)
    with pytest.raises(VolumeError, match="RGB or vector"):
        _run(rgb, cut_seeds(_box(), (4, 5, 6)))


def test_empty_volume():
    empty = np.zeros((0, J, I), np.uint8)
    with pytest.raises(IFSSNetError):
        _run(empty, SeedSet(np.zeros((0, J, I), np.uint8), ()))


def test_nan_voxels_do_not_break_propagation():
    vol = _volume(np.float32)
    vol[7, 3:9, 3:9] = np.nan                                  # a hole in the reconstruction
    out = _run(vol, cut_seeds(_box(), (4, 5, 6))).masks["T"]
    assert out.shape == (K, J, I)


# --------------------------------------------------------------------------------- seeds
def test_disconnected_pieces_on_one_slice_propagate_together_as_one_mask():
    """Two separate pieces painted on the same slices are one segment: both are propagated, in the
    same run (the network sees the whole mask), and both come back on every propagated slice."""
    m = np.zeros((K, J, I), np.uint8)
    m[:, 2:8, 2:8] = 1
    m[:, 12:18, 14:22] = 1
    out = _run(_volume(), cut_seeds(m, (4, 5, 6))).masks["T"]
    for k in (0, 3, 8, 11):
        assert out[k, 2:8, 2:8].mean() > 0.8 and out[k, 12:18, 14:22].mean() > 0.8
        assert out[k, 9:11].sum() == 0                         # the gap between them stays empty


def test_segments_painted_across_different_axes_are_refused():
    a = np.zeros((K, J, I), np.uint8)
    a[4:7, 5:14, 6:18] = 1                                     # 3 slices across k
    b = np.zeros((K, J, I), np.uint8)
    b[2:10, 8:11, 4:20] = 1                                    # 3 slices across j
    seg = Segmentation([Segment("A", a), Segment("B", b)])
    with pytest.raises(SeedError, match="different axes"):
        seeds_from_segmentation(seg, ["A", "B"])
    seed_map, axis = seeds_from_segmentation(seg, ["B"])      # one at a time is fine
    assert axis == 1 and seed_map["B"].slices == (8, 9, 10)


@pytest.mark.parametrize("tagged", [False, True])
def test_an_axis_that_contradicts_the_paint_is_refused(tagged):
    """Painted on k = 4-6: --axis 1 would take j = 5..13, every slice the paint crosses, for seeds."""
    m = np.zeros((K, J, I), np.uint8)
    m[4:7, 5:14, 6:18] = 1
    seg = Segmentation([Segment("A", m, annotated=AnnotatedSlices(0, (4, 5, 6)) if tagged else None)])
    with pytest.raises(SeedError, match=r"Segment 'A': --axis 1 \(j\) was given.*axis 0 \(k\).*give --axis 0"):
        seeds_from_segmentation(seg, ["A"], axis=1)
    seed_map, axis = seeds_from_segmentation(seg, ["A"], axis=0)     # the same axis is fine
    assert axis == 0 and seed_map["A"].slices == (4, 5, 6)


def test_an_axis_settles_a_paint_whose_axis_is_unclear():
    m = np.zeros((K, J, I), np.uint8)
    m[4:7, 5:14, 6:18] = 1
    m[2:9, 5:14, 12] = 1                                       # a stroke across i as well: unclear
    seg = Segmentation([Segment("A", m)])
    with pytest.raises(SeedError, match="Segment 'A': .*two views"):
        seeds_from_segmentation(seg, ["A"])
    seed_map, axis = seeds_from_segmentation(seg, ["A"], axis=0)
    assert axis == 0 and seed_map["A"].slices == tuple(range(2, 9))


def test_an_empty_segment_among_several_is_named():
    m = np.zeros((K, J, I), np.uint8)
    m[4:7, 5:14, 6:18] = 1
    seg = Segmentation([Segment("GM", m), Segment("SOL", np.zeros_like(m))])
    with pytest.raises(SeedError, match=r"Segment 'SOL': Nothing is painted.*--segment GM"):
        seeds_from_segmentation(seg, ["GM", "SOL"])
    with pytest.raises(SeedError, match=r"Segment 'SOL': Nothing is painted"):
        seeds_from_segmentation(seg, ["GM", "SOL"], axis=0)


def test_a_stroke_in_another_view_that_crosses_a_small_group_is_refused():
    from ifssnet.seeds import find_axis

    m = np.zeros((K, J, I), np.uint8)
    m[4:7, 5:14, 6:18] = 1
    m[2:9, 5:14, 12] = 1                                       # a sagittal stroke through the group
    with pytest.raises(SeedError, match="two views"):
        find_axis(m)


def test_annotated_tag_wins_over_the_painted_slices():
    m = np.zeros((K, J, I), np.uint8)
    m[4:7, 5:14, 6:18] = 1
    seg = Segmentation([Segment("A", m, annotated=AnnotatedSlices(0, (4, 5, 6, 10)))])
    seed_map, axis = seeds_from_segmentation(seg, ["A"])
    assert axis == 0 and seed_map["A"].slices == (4, 5, 6, 10) and seed_map["A"].empty_slices == (10,)


# ------------------------------------------------------------------- inputs never change
def test_inputs_are_unchanged_after_success_failure_and_cancel():
    vol = _volume()
    seeds = cut_seeds(_box(), (4, 5, 6))
    v0, s0 = vol.copy(), seeds.mask.copy()
    _run(vol, seeds)
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        _run(vol, seeds, cancel=token)
    with pytest.raises(ModelError):
        propagate(vol, {"T": seeds}, "no-such-model.pt", device="cpu")
    np.testing.assert_array_equal(vol, v0)
    np.testing.assert_array_equal(seeds.mask, s0)


class _OomOnce(CopyModel):
    """Raises CUDA's out-of-memory error on its first call, as a too-small GPU does."""

    def __init__(self):
        super().__init__(size=32)
        self.calls = 0

    def forward(self, image, prev_mask, state=None):
        self.calls += 1
        if self.calls == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(image, prev_mask, state)


def test_gpu_out_of_memory_falls_back_to_the_cpu_with_a_notice():
    seeds = cut_seeds(_box(), (4, 5, 6))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = propagate(_volume(), {"T": seeds}, _OomOnce(), device="cpu")
    assert res.device == "cpu"
    assert any("ran out of memory" in str(w.message) for w in caught)
    ref = _run(_volume(), seeds).masks["T"]
    np.testing.assert_array_equal(res.masks["T"], ref)


# ------------------------------------------------------------------------- checkpoints
class _Trap:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoint_with_pickled_code_is_refused_and_the_code_never_runs(tmp_path):
    trap = tmp_path / "code-ran"
    torch.save({"arch": "ifssnet", "format_version": 1, "state_dict": {}, "x": _Trap(str(trap))},
               tmp_path / "evil.pt")
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Trap(str(trap))))
    for name in ("evil.pt", "evil.pkl"):
        with pytest.raises(ModelError, match="refused|corrupt"):
            propagate(_volume(), cut_seeds(_box(), (4, 5, 6)), tmp_path / name, device="cpu")
    assert not trap.exists()


def test_propagate_refuses_a_missing_or_corrupt_model_file(tmp_path):
    (tmp_path / "half.pt").write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    for path, match in ((tmp_path / "nope.pt", "does not exist"), (tmp_path / "half.pt", "corrupt")):
        with pytest.raises(ModelError, match=match):
            propagate(_volume(), cut_seeds(_box(), (4, 5, 6)), path, device="cpu")


# ------------------------------------------------------------------------------ writing
def _enospc(tmp):
    with open(tmp, "wb") as f:
        f.write(b"half a file")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)


def test_disk_full_while_writing_leaves_no_partial_file_and_the_old_one_untouched(tmp_path):
    target = tmp_path / "result.seg.nrrd"
    with pytest.raises(ResourceError, match="No space left on device"):
        atomic_write(target, _enospc)
    assert os.listdir(tmp_path) == []                          # nothing, not even a temp file
    write_volume(Image(np.ones((3, 3, 3), np.uint8)), tmp_path / "v.nrrd")
    before = (tmp_path / "v.nrrd").read_bytes()
    with pytest.raises(ResourceError, match="Free some disk space"):
        atomic_write(tmp_path / "v.nrrd", _enospc)
    assert (tmp_path / "v.nrrd").read_bytes() == before
    assert os.listdir(tmp_path) == ["v.nrrd"]


def test_output_path_not_writable(tmp_path, monkeypatch):
    seg = Segmentation([Segment("A", np.ones((3, 4, 5), np.uint8))])
    with pytest.raises(ResourceError, match="does not exist"):
        write_segmentation(seg, tmp_path / "missing" / "a.seg.nrrd")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ResourceError):
        write_segmentation(seg, tmp_path / "file" / "a.seg.nrrd")  # a file where a folder should be
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(tmp_path) else real_access(p, mode))
    with pytest.raises(ResourceError, match="not writable"):
        write_segmentation(seg, tmp_path / "a.seg.nrrd")
    assert not (tmp_path / "a.seg.nrrd").exists()


# ------------------------------------------------------------------------------- memory
def test_memory_estimate_counts_what_propagation_allocates():
    base = memory.estimate_propagation_bytes((100, 200, 300), 1, 128)
    plane = 4 * 100 * 128 * 128
    assert base > (1 + memory.ACCUMULATOR_ARRAYS + memory.FINAL_STAGE_ARRAYS) * plane + 100 * 200 * 300
    # Each more segment adds its accumulators and its output mask (and runs to the batch).
    two = memory.estimate_propagation_bytes((100, 200, 300), 2, 128)
    assert two - base >= memory.ACCUMULATOR_ARRAYS * plane + 100 * 200 * 300
    assert memory.estimate_propagation_bytes((200, 200, 300), 1, 128) > base
    assert memory.estimate_propagation_bytes((100, 200, 300), 1, 256) > 3 * base // 2
    # Paper scale (1400 x 512 x 512, 3 muscles, S = 128) needs a few GB, not tens.
    paper = memory.estimate_propagation_bytes((1400, 512, 512), 3, 128)
    assert 1e9 < paper < 8e9
    # On 351 kept frames the working-grid arrays shrink; the output masks keep every slice.
    thinned = memory.estimate_propagation_bytes((1400, 512, 512), 3, 128, frames=351)
    plane_saved = 4 * (1400 - 351) * 128 * 128
    assert paper - thinned >= (1 + 3 * memory.ACCUMULATOR_ARRAYS + memory.FINAL_STAGE_ARRAYS) * plane_saved
    assert thinned > 3 * 1400 * 512 * 512


def test_check_memory_refuses_with_the_size_needed(monkeypatch):
    with pytest.raises(ResourceError) as err:
        memory.check_memory(int(12.3e9), "This propagation", available=int(4e9))
    msg = str(err.value)
    assert "needs about 12.3 GB" in msg and "4.0 GB are free" in msg and "crop the volume" in msg
    memory.check_memory(int(1e9), available=int(4e9))
    monkeypatch.setenv(memory.ENV_VAR, "2G")
    assert memory.available_bytes() == 2 * 2 ** 30
    with pytest.raises(ResourceError, match="GB are free"):
        memory.check_memory(int(3e9))
    monkeypatch.setenv(memory.ENV_VAR, "lots")
    with pytest.raises(ResourceError, match="not a number"):
        memory.available_bytes()
    monkeypatch.delenv(memory.ENV_VAR)
    free = memory.available_bytes()
    assert free is None or free > 0
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    memory.check_memory(10 ** 15)                              # cannot tell: let it run


def test_a_propagation_too_large_for_memory_is_refused_before_it_starts(monkeypatch):
    seeds = {"A": cut_seeds(_box(), (4, 5, 6)), "B": cut_seeds(_box(), (1, 2, 3, 9, 10, 11))}
    net = CopyModel(size=32)
    need = memory.propagation_bytes((K, J, I), seeds, net)
    assert need == memory.estimate_propagation_bytes((K, J, I), 2, 32, runs=6, width_mult=1.0)
    monkeypatch.setenv(memory.ENV_VAR, str(need // 2))
    with pytest.raises(ResourceError, match="This propagation needs about"):
        memory.check_propagation_memory((K, J, I), seeds, net)
    monkeypatch.setenv(memory.ENV_VAR, str(2 * need))
    memory.check_propagation_memory((K, J, I), seeds, net)



@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="peak RSS is read from Linux's VmHWM")
def test_propagation_streams_its_windows_and_stays_within_its_memory_estimate():
    """Measured peak resident memory of real propagations (a copying network: propagation's own arrays,
    not a network's) is within what the refusal check estimates, and grows with the sweep as the estimate's
    per-slice arrays do: windows are streamed. Measured with this set-up: the growth is 1.01-1.02x the
    estimate's; a network whose every window's output is kept (0.2 MB a slice) makes it 1.5x."""
    from benchmark_scripts import load_benchmark

    measure = load_benchmark("propagation_memory").measure_propagation
    mib = 2 ** 20
    peaks, needs = {}, {}
    for k in (100, 1200):
        peak, need, boxes, masks = measure(k, size=96, work=64, segments=1)
        assert (masks["S0"] != boxes["S0"]).mean() < 0.01       # it did run through the whole sweep
        peaks[k], needs[k] = peak, need / mib
        assert peaks[k] <= needs[k], (k, peaks[k], needs[k])
    growth, expected = peaks[1200] - peaks[100], needs[1200] - needs[100]
    assert 0.4 * expected < growth < 1.4 * expected, (growth, expected)


def test_the_memory_benchmark_prints_measured_and_estimated_peaks(capsys):
    from benchmark_scripts import load_benchmark

    load_benchmark("propagation_memory").main(["--size", "48", "--work", "32", "--segments", "2", "--slices", "20"])
    row = capsys.readouterr().out.strip().splitlines()[-1].split()
    assert row[0] == "20" and 0 <= float(row[1]) <= float(row[2])

# -------------------------------------------------------------------------- dependencies
def test_missing_torch_becomes_a_dependency_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "torch", None)
    with pytest.raises(DependencyError, match="pip install torch") as err:
        require("torch")
    assert err.value.exit_code == 5 and "PyTorch" in str(err.value)
    assert missing_dependency(ModuleNotFoundError("No module named 'foo'", name="foo")) is None
    assert isinstance(missing_dependency(ModuleNotFoundError("x", name="matplotlib.pyplot")), DependencyError)


def test_error_classes_map_to_distinct_exit_codes():
    codes = {cls: cls("x").exit_code for cls in (InputError, ModelError, ResourceError, DependencyError)}
    assert codes == {InputError: 2, ModelError: 3, ResourceError: 4, DependencyError: 5}
    assert Cancelled().exit_code == 130 and "Nothing was changed" in str(Cancelled())
    assert all(issubclass(c, InputError) for c in (VolumeError, SeedError, GeometryError))
