"""Review 40: propagation bugs found on small synthetic inputs (each test failed before its fix)."""
import numpy as np
import pytest
import torch

from fake_models import BrightModel, CopyModel
from ifssnet.propagate import propagate
from ifssnet.seeds import cut_seeds


class _SpacedCopy(CopyModel):
    """A copier that knows its training slice spacing (1 mm), so a finer sweep is thinned."""

    def __init__(self, size=32):
        super().__init__(size=size)
        self.config.slice_spacing_mm = 1.0


def test_a_thinned_sweep_has_no_empty_slices_next_to_the_painted_ones():
    """On a sweep finer than the network's spacing, the slices between a painted frame and the next kept
    frame are interpolated from the two. The painted frame's probability must be its painted mask, not 0
    (no run writes there): with 0, the slice half-way to the next kept frame came out empty."""
    K, J, I = 81, 40, 40
    m = np.zeros((K, J, I), np.uint8)
    m[:, 10:30, 8:32] = 1
    vol = np.random.default_rng(0).integers(0, 255, (K, J, I)).astype(np.uint8)
    res = propagate(vol, {"T": cut_seeds(m, (39, 40, 41))}, _SpacedCopy(), device="cpu", slice_spacing_mm=0.25)
    assert res.frames < K                                # thinned: frames every 4 slices
    area = res.masks["T"].sum(axis=(1, 2))
    assert area.min() > 0.9 * m[0].sum(), area          # slices 38 and 42 were empty


def test_fast_preset_does_not_end_a_run_at_the_sweeps_end_or_erase_muscle_there():
    """With a window stride of w (preset ``fast``) the last window of a run is clipped at the sweep's end.
    Its new slices were counted from the previous window's newest slice minus the stride, so slices
    already counted were counted again, with probabilities read at negative window positions: three quiet
    slices counted as six ended the run (patience 5) and erased a slice that has the muscle."""
    K, J, I = 19, 32, 32
    vol = np.zeros((K, J, I), np.float32)
    vol[:16, 8:24, 8:24] = 100.0                         # the structure ends after slice 15
    m = np.zeros((K, J, I), np.uint8)
    m[:16, 8:24, 8:24] = 1
    seeds = {"T": cut_seeds(m, (0, 1, 2))}
    ref = propagate(vol, seeds, BrightModel(size=32), device="cpu", preset="accurate")
    fast = propagate(vol, seeds, BrightModel(size=32), device="cpu", preset="fast")
    present = fast.masks["T"].any(axis=(1, 2))
    np.testing.assert_array_equal(present, ref.masks["T"].any(axis=(1, 2)))
    assert present[15] and not present[16:].any()
    assert fast.ended["T"] == ref.ended["T"] == []       # 3 quiet slices < patience 5: the sweep ended, not the run


def test_a_nan_voxel_does_not_blank_the_slices_around_it():
    """A NaN voxel (no data, as some reconstructions write outside the scan) went through the z-score
    into the network's input and spread through the convolutions: every slice a run reached after it
    came out empty, silently. It is now taken as the volume's lowest value, like the padding."""
    from ifssnet.model import IFSSNet, IFSSNetConfig

    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(size=32, width_mult=0.25)).eval()
    K, J, I = 20, 32, 32
    vol = np.random.default_rng(0).normal(100, 20, (K, J, I)).astype(np.float32)
    m = np.zeros((K, J, I), np.uint8)
    m[:, 8:24, 8:24] = 1
    seeds = {"T": cut_seeds(m, (9, 10, 11))}
    clean = propagate(vol, seeds, net, device="cpu", stop_at_end=False)
    low = vol.copy()
    low[5, 0, 0] = vol.min()
    holed = vol.copy()
    holed[5, 0, 0] = np.nan
    as_low = propagate(low, seeds, net, device="cpu", stop_at_end=False)
    res = propagate(holed, seeds, net, device="cpu", stop_at_end=False)
    assert clean.masks["T"][:8].any(axis=(1, 2)).all()
    np.testing.assert_array_equal(res.masks["T"], as_low.masks["T"])
    assert np.isfinite(res.confidence["T"]).all()


def test_the_empty_segment_hint_gives_an_option_that_keeps_every_other_segment(tmp_path, capsys, monkeypatch):
    """``--segment`` takes one comma-separated list; the hint for an empty segment said
    ``--segment GM --segment GL``, which argparse reads as ``--segment GL``: followed, it dropped GM."""
    import ifssnet.propagate as prop
    from cli_output import error_line, run_cli
    from ifssnet.io import Geometry, Image, read_segmentation, segmentation_from_masks, write_segmentation, write_volume

    monkeypatch.setattr(prop, "load_model", lambda model=None, device="cpu": CopyModel(size=32))
    K, J, I = 10, 24, 28
    geo = Geometry(spacing=(0.5, 0.5, 1.0))
    write_volume(Image(np.random.default_rng(0).integers(0, 255, (K, J, I)).astype(np.uint8), geo), tmp_path / "v.nrrd")
    gm = np.zeros((K, J, I), np.uint8)
    gm[4:7, 6:16, 8:14] = 1
    gl = np.zeros((K, J, I), np.uint8)
    gl[4:7, 6:16, 16:22] = 1
    write_segmentation(segmentation_from_masks({"GM": gm, "GL": gl, "SOL": np.zeros_like(gm)}, geo),
                       tmp_path / "s.seg.nrrd")
    out = tmp_path / "o.seg.nrrd"
    code, _, err = run_cli(capsys, "propagate", tmp_path / "v.nrrd", tmp_path / "s.seg.nrrd", "-o", out)
    line = error_line(err)
    assert code == 2 and "--segment GM,GL" in line, line
    hint = line.split("leave it out: ")[1].rstrip(".").split()
    code, _, err = run_cli(capsys, "propagate", tmp_path / "v.nrrd", tmp_path / "s.seg.nrrd", "-o", out, *hint)
    assert code == 0, err
    res = read_segmentation(out)
    assert res.mask("GM").any() and res.mask("GL").any()


def test_the_whole_quiet_tail_of_a_run_that_ends_is_background():
    """A run ends after ``patience`` quiet slices, and that tail is dropped as background. Its first
    slice had already gone into the blend (positions before the window are flushed each step), so it kept
    the network's speck: one slice past each end with a few voxels, and ``ends`` one slice too wide."""

    class SpeckModel(CopyModel):
        def prob(self, image, prev):
            out = torch.zeros_like(prev)
            out[..., 10:14, 10:14] = 1.0          # 7 % of the painted area: quiet (below 10 %)
            return out

    K, J, I = 40, 50, 70
    m = np.zeros((K, J, I), np.uint8)
    m[:, 12:34, 20:55] = 1
    vol = np.random.default_rng(0).integers(0, 255, (K, J, I)).astype(np.uint8)
    for patience in (2, 5):
        res = propagate(vol, {"T": cut_seeds(m, (18, 19, 20))}, SpeckModel(size=32), device="cpu", patience=patience)
        assert len(res.ended["T"]) == 2
        present = np.flatnonzero(res.masks["T"].any(axis=(1, 2)))
        assert present.tolist() == [18, 19, 20], (patience, present)
