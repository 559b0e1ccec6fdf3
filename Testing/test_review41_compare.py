"""Review of the comparison and its baselines (session 41): each test failed before its fix."""
from __future__ import annotations

import numpy as np
import pytest

from ifssnet import compare as C
from ifssnet.baselines import registry
from ifssnet.errors import SeedError
from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume
from ifssnet.seeds import cut_seeds, make_seed_segmentation

from cli_output import error_line, run_cli  # noqa: E402
from test_compare_errors import _volume  # noqa: E402
from slicer_nodes import scene_nodes  # noqa: E402,F401  (fixture; puts the Slicer modules on sys.path)
from slicer_fixture import slicer_app, slicer_scene  # noqa: E402,F401  (fixtures)

_FIXTURES = (scene_nodes, slicer_app, slicer_scene)  # used by name in the tests' arguments

K, J, I = 40, 20, 24
GEO = Geometry(spacing=(0.5, 0.5, 0.8))


def _muscle():
    m = np.zeros((K, J, I), np.uint8)
    m[4:36, 5:15, 6:18] = 1
    return m


@pytest.fixture
def ran():
    """A cheap registered method ('r41copy': the seeds, nothing else); ``ran`` lists its calls' seed counts."""
    calls = []

    def copy(volume, seeds, spacing_kji, *, progress=None, cancel=None):
        calls.append(len(seeds.slices))
        return seeds.mask

    registry.register("r41copy", copy, "Copy")
    yield calls
    registry.unregister("r41copy")


# ------------------------------------------------------------------------------------------------
# 1. Seeds that Propagate refuses (fewer than 3 painted slices) are refused by the comparison, up front


def test_the_comparison_refuses_seeds_on_two_slices_before_any_method_runs(ran, tiny_model):
    """compare() ran every baseline on 2 painted slices and reported IFSS-Net's refusal ('The segment is painted
    on 2 slices only') as an error row beside them: a table of baselines IFSS-Net was never compared with."""
    m = _muscle()
    seeds = {"GM": cut_seeds(m, (10, 25))}
    with pytest.raises(SeedError) as err:
        C.compare(_volume(m), {"GM": m}, GEO.spacing_kji, ["r41copy", "ifssnet"], seeds=seeds,
                  method_options={"ifssnet": {"model": tiny_model, "device": "cpu"}})
    text = str(err.value)
    assert "'GM' is painted on 2 slices only" in text and "at least 3" in text, text
    assert "Paint 'GM' on at least 3 slices" in text and "compare again" in text, text
    assert ran == []
    # the same rule as Propagate's: a slice marked 'no muscle here' does not count toward the 3 (session 42)
    with pytest.raises(SeedError, match="besides 1 slice marked 'no muscle here'"):
        C.compare(_volume(m), {"GM": m}, GEO.spacing_kji, ["r41copy"], seeds={"GM": cut_seeds(m, (10, 25)).with_empty([38])})
    assert ran == []
    rows = C.compare(_volume(m), {"GM": m}, GEO.spacing_kji, ["r41copy"],
                     seeds={"GM": cut_seeds(m, (10, 18, 25)).with_empty([38])})
    assert ran == [4] and not rows[0]["error"]


def test_a_protocol_count_under_3_is_refused_before_any_case_is_read(ran, tmp_path, monkeypatch):
    m = _muscle()
    with pytest.raises(SeedError, match=r"'GM' is painted on 2 slices only.*count 3"):
        C.compare(_volume(m), {"GM": m}, GEO.spacing_kji, ["r41copy"], "3-seeds", count=2)
    assert ran == []
    read = []
    monkeypatch.setattr(C, "load_case", lambda *a, **k: read.append(a) or (_volume(m), {"GM": m}, GEO.spacing_kji))
    with pytest.raises(SeedError, match=r"count 3"):
        C.compare_set([tmp_path, tmp_path], ["r41copy"], "3-seeds", count=2)
    assert read == [] and ran == []


def test_ifssnet_compare_refuses_a_seed_file_with_two_painted_slices_and_writes_nothing(ran, tmp_path, capsys):
    m = _muscle()
    write_volume(Image(_volume(m), GEO), tmp_path / "volume.nrrd")
    ref = segmentation_from_masks({"GM": m}, GEO)
    write_segmentation(ref, tmp_path / "reference.seg.nrrd")
    write_segmentation(make_seed_segmentation(ref, ["GM"], at=12, count=2), tmp_path / "two.seg.nrrd")
    code, _, err = run_cli(capsys, "compare", tmp_path / "volume.nrrd", tmp_path / "two.seg.nrrd",
                           tmp_path / "reference.seg.nrrd", "--methods", "r41copy", "--csv", tmp_path / "out.csv")
    line = error_line(err)
    assert code == 2 and "'GM' is painted on 2 slices only" in line and "two.seg.nrrd" in line, line
    assert "or give '-'" in line, line
    assert ran == [] and not (tmp_path / "out.csv").exists()


@pytest.mark.slicer
@pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning")
def test_the_slicer_comparison_refuses_seeds_on_two_slices_and_adds_nothing(scene_nodes):
    """The Comparison Logic, protocol 'seeds', a segment painted on 2 slices: the table had the baselines' rows
    beside IFSS-Net's failure; now it says what to do in Slicer before anything is computed, and adds no node."""
    from slicer_nodes import _assert_same, _paint, _reference_segmentation, _state

    from IFSSNetComparisonLib.logic import IFSSNetComparisonLogic

    slicer, volumeNode, segNode, truth = scene_nodes
    _paint(slicer, volumeNode, segNode, truth, 1, (9, 15))
    ref = _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference")
    calls = []
    registry.register("r41seen", lambda volume, seeds, spacing_kji, *, progress=None, cancel=None:
                      calls.append(1) or seeds.mask)
    try:
        before, nodes = _state(segNode, volumeNode), slicer.mrmlScene.GetNumberOfNodes()
        with pytest.raises(SeedError) as err:
            IFSSNetComparisonLogic().compare(volumeNode, segNode, ref, ["r41seen"], "seeds")
        text = str(err.value)
        assert "'GM' is painted on 2 slices only" in text and "at least 3" in text, text
        assert "in 'Seg'" in text and "protocol '3-seeds'" in text, text
        assert calls == [] and slicer.mrmlScene.GetNumberOfNodes() == nodes
        _assert_same(before, _state(segNode, volumeNode))
        # a third painted slice: it runs
        _paint(slicer, volumeNode, segNode, truth, 1, (9, 12, 15), name="GM3")
        table = IFSSNetComparisonLogic().compare(volumeNode, segNode,
                                                 _reference_segmentation(slicer, volumeNode, {"GM3": truth}, "R3"),
                                                 ["r41seen"], "seeds")
        assert calls == [1] and table.GetNumberOfRows() == 1
    finally:
        registry.unregister("r41seen")


# ------------------------------------------------------------------------------------------------
# 2. The 3-D U-Net respects the slice spacing it was trained at, as IFSS-Net and PG-Net do


def _unet_classes():
    torch = pytest.importorskip("torch")
    from ifssnet.baselines.unet3d import UNet3D, UNet3DConfig

    class Bright(UNet3D):
        """Channel 0: where the z-scored image is above 0; channel 1 (if any): where it is below."""

        def forward(self, x):
            s = 8.0 * torch.sign(x)
            return torch.cat([s, -s], 1)[:, :len(self.config.segments)]

    return torch, UNet3D, UNet3DConfig, Bright


def test_the_unet_runs_a_finer_sweep_on_its_frames_nearest_to_its_training_spacing():
    """A U-Net trained at 1 mm on a sweep 0.25 mm apart sees 11 of its 41 frames (every 4th), and every slice gets
    the probabilities of the kept frames, linear along the sweep; before, it saw every frame (spacing_kji unused).
    Here the kept frames show the muscle on the left, the others on the right: the mask is on the left throughout,
    and the channel is picked from the seeds (painted on frames that are not kept) on the same probabilities."""
    from ifssnet.baselines.unet3d import unet3d

    torch, _, UNet3DConfig, Bright = _unet_classes()
    K = 41
    left = np.zeros((K, 32, 32), np.uint8)
    left[:, 8:24, :16] = 1
    right = np.zeros_like(left)
    right[:, 8:24, 16:] = 1
    kept = np.arange(K) % 4 == 0
    vol = np.where(kept[:, None, None], left, right).astype(np.uint8) * 100 + 20
    net = Bright(UNet3DConfig(size=32, segments=("GM", "GL"), width=2, patch=(8, 32, 32), slice_spacing_mm=1.0))
    seeds = cut_seeds(left, (9, 10, 11))
    mask = unet3d(vol, seeds, (0.25, 1.0, 1.0), model=net, device="cpu")
    np.testing.assert_array_equal(mask, left)
    # without matching the spacing (the option), or at the network's own spacing: every frame as it is
    every = unet3d(vol, seeds, (0.25, 1.0, 1.0), model=net, device="cpu", match_slice_spacing=False)
    assert not np.array_equal(every, left)
    np.testing.assert_array_equal(every, unet3d(vol, seeds, (1.0, 1.0, 1.0), model=net, device="cpu"))


@pytest.mark.parametrize("spacing", [1.108, 1.05, 2.5])
def test_the_unet_at_its_own_spacing_or_coarser_gives_what_it_gave_before(spacing):
    """Same spacing (the held-out phantoms' 1.108 mm), within 10 %, or coarser: every frame, the same voxels as
    without matching the spacing (the code path the README's held-out rows were made with)."""
    from ifssnet.baselines.unet3d import unet3d

    torch, UNet3D, UNet3DConfig, _ = _unet_classes()
    torch.manual_seed(3)
    net = UNet3D(UNet3DConfig(size=16, segments=("GM", "GL", "SOL"), width=2, patch=(8, 16, 16),
                              slice_spacing_mm=1.108)).eval()
    rng = np.random.default_rng(1)
    vol = rng.integers(0, 255, (30, 16, 20)).astype(np.uint8)
    ref = np.zeros(vol.shape, np.uint8)
    ref[:, 4:12, 5:15] = 1
    seeds = cut_seeds(ref, (14, 15, 16))
    got = unet3d(vol, seeds, (spacing, 0.5, 0.5), model=net, device="cpu", segment="SOL")
    want = unet3d(vol, seeds, (spacing, 0.5, 0.5), model=net, device="cpu", segment="SOL", match_slice_spacing=False)
    np.testing.assert_array_equal(got, want)


def test_the_shipped_unet_records_its_training_phantoms_spacing_with_the_same_weights(tmp_path):
    """unet3d.pt was written before the U-Net knew its spacing; it records its training phantoms' 1.108 mm (model
    card), written with set_slice_spacing, which keeps every weight bit for bit."""
    torch, *_ = _unet_classes()
    from ifssnet.baselines.learned_common import default_model_path
    from ifssnet.baselines.unet3d import load_unet3d
    from ifssnet.model.checkpoint import set_slice_spacing

    shipped = default_model_path("unet3d")
    if not shipped.is_file():
        pytest.skip("no shipped unet3d.pt")
    net, config, _ = load_unet3d(shipped)
    assert config["slice_spacing_mm"] == pytest.approx(1.108) and net.config.slice_spacing_mm == pytest.approx(1.108)
    out = set_slice_spacing(shipped, 0.5, tmp_path / "u.pt")
    again, config2, _ = load_unet3d(out)
    assert config2["slice_spacing_mm"] == 0.5
    for (name, a), b in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_unet_training_records_the_cases_slice_spacing(tmp_path):
    torch, _, UNet3DConfig, _ = _unet_classes()
    from ifssnet.baselines.unet3d import UNet3DTrainConfig, load_unet3d, train_unet3d
    from ifssnet.dataset import Case

    def case(n, mm):
        rng = np.random.default_rng(n)
        img = rng.normal(size=(16, 16, 16)).astype(np.float16)
        m = np.zeros((16, 16, 16), np.uint8)
        m[:, 4:10, 4:12] = 1
        return Case(f"c{n}", img, {"A": m}, {"A": np.ones(16, bool)}, mm)

    cfg = UNet3DTrainConfig(epochs=1, steps_per_epoch=1, batch=1, checkpoint_every=1)
    for spacings, recorded in (((1.0, 1.0, 1.05, None), 1.0), ((0.8, 1.2), None)):   # one spacing (within 10 %), or none
        train_unet3d([case(n, mm) for n, mm in enumerate(spacings)], tmp_path / "u.pt", cfg=cfg,
                     model_config=UNet3DConfig(size=16, segments=("A",), width=2, patch=(8, 16, 16)))
        assert load_unet3d(tmp_path / "u.pt")[1]["slice_spacing_mm"] == (pytest.approx(recorded) if recorded else None)


# ------------------------------------------------------------------------------------------------
# 3. Fill between slices interpolates all segments in one run, as Slicer's effect does (all visible segments)


def _crossing():
    """Two segments painted on slices 0, 10 and 20 that swap sides in between: run one at a time, their
    interpolations overlap (A's and B's shapes cross near slices 5 and 15)."""
    K, J, I = 21, 20, 30
    a = np.zeros((K, J, I), np.uint8)
    b = np.zeros_like(a)
    for k, (ia, ib) in {0: (2, 18), 10: (16, 4), 20: (2, 18)}.items():
        a[k, 5:15, ia:ia + 10] = 1
        b[k, 4:16, ib:ib + 10] = 1
    return np.full(a.shape, 50, np.uint8), a, b


def _slicer_fill_between_slices(labels):
    """Slicer's effect on the merged labelmap (segment n -> label n + 1): slicer-core's vtkITK filter with its own
    defaults where slicer-core is installed, else ITK's filter with Slicer's settings."""
    try:
        import slicer
        import vtk
        from vtk.util import numpy_support as ns
    except ImportError:
        slicer = None
    if slicer is not None and hasattr(slicer, "vtkITKMorphologicalContourInterpolator"):
        img = vtk.vtkImageData()
        img.SetDimensions(labels.shape[2], labels.shape[1], labels.shape[0])
        img.GetPointData().SetScalars(ns.numpy_to_vtk(labels.ravel(), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
        interp = slicer.vtkITKMorphologicalContourInterpolator()
        interp.SetInputData(img)
        interp.Update()
        return ns.vtk_to_numpy(interp.GetOutput().GetPointData().GetScalars()).reshape(labels.shape).copy()
    from ifssnet.baselines.fbs import interpolate

    return interpolate(labels)


def test_fill_between_slices_runs_all_segments_together_as_slicers_effect():
    """Slicer's Fill between slices interpolates the merged labelmap of all visible segments in one run: where two
    segments' interpolations meet, the later segment (higher label) takes the voxel, and nothing overlaps. The
    comparison ran it one muscle at a time, so both segments took those voxels (here 488 of A's)."""
    pytest.importorskip("itk")
    from ifssnet.baselines.fbs import fill_between_slices
    from ifssnet.seeds import SeedSet

    vol, a, b = _crossing()
    slices = (0, 10, 20)
    seeds = {"A": SeedSet(a, slices), "B": SeedSet(b, slices)}
    slicer_out = _slicer_fill_between_slices(a + 2 * b)
    want = {"A": (slicer_out == 1).astype(np.uint8), "B": (slicer_out == 2).astype(np.uint8)}
    alone = {n: fill_between_slices(vol, s, (1.0, 1.0, 1.0)) for n, s in seeds.items()}
    assert (alone["A"] & alone["B"]).sum() > 100                 # the example tells the two apart
    together = fill_between_slices(vol, seeds, (1.0, 1.0, 1.0))
    assert set(together) == {"A", "B"}
    for n in want:
        np.testing.assert_array_equal(together[n], want[n])
    assert not (together["A"] & together["B"]).any()
    # the comparison runs it so, joint or not, with one row per muscle and the run's time shared
    rows = C.compare(vol, {"A": a | want["A"], "B": b | want["B"]}, (1.0, 1.0, 1.0), ["fbs"], seeds=seeds,
                     keep_masks=True)
    for r in rows:
        np.testing.assert_array_equal(r["mask"], want[r["muscle"]])
        assert r["joint"] == 1 and not r["error"]
    # one segment alone is what Slicer gives with that segment the only one visible
    np.testing.assert_array_equal(fill_between_slices(vol, {"A": seeds["A"]}, (1.0, 1.0, 1.0))["A"], alone["A"])


def _slicer_crop(labels):
    """The crop of Slicer's auto-complete effects (AbstractScriptedSegmentEditorAutoCompleteEffect.preview): the
    segments' extent, grown per axis by 10 % of it, at least 3 voxels, clipped to the volume."""
    box = []
    for ax in range(3):
        nz = np.flatnonzero(np.moveaxis(labels, ax, 0).reshape(labels.shape[ax], -1).any(axis=1))
        m = int(max(3, 0.1 * (nz[-1] - nz[0])))
        box.append(slice(max(0, nz[0] - m), min(labels.shape[ax], nz[-1] + m + 1)))
    return tuple(box)


def test_fill_between_slices_crops_as_slicers_effect():
    """FBS ran the filter on the key slices' bounding box + 2 voxels and claimed the same voxels as the whole volume;
    but the interpolated shapes can reach past the key shapes' box (here 15 voxels one row and column out; on the
    held-out phantoms up to 561 voxels of SOL). Slicer's effect runs it on the segments' extent + 10 % (3 voxels at
    least), which cuts what lies beyond; FBS now crops as Slicer does and gives Slicer's voxels."""
    pytest.importorskip("itk")
    from ifssnet.baselines.fbs import fill_between_slices
    from ifssnet.seeds import SeedSet

    K, J, I = 21, 44, 60
    jj, ii = np.ogrid[:J, :I]
    mask = np.zeros((K, J, I), np.uint8)
    for k, ellipses in {0: [(13, 28, 4, 8), (15, 31, 4, 7), (13, 25, 4, 6)],
                        20: [(8, 28, 1, 10), (9, 24, 1, 5), (5, 20, 4, 4)]}.items():
        for cj, ci, rj, ri in ellipses:
            mask[k] |= (((jj - cj - 10) / rj) ** 2 + ((ii - ci - 10) / ri) ** 2 <= 1).astype(np.uint8)
    want = np.zeros_like(mask)
    box = _slicer_crop(mask)
    want[box] = _slicer_fill_between_slices(mask[box]) != 0
    out = fill_between_slices(np.zeros_like(mask), SeedSet(mask, (0, 20)), (1.0, 1.0, 1.0))
    np.testing.assert_array_equal(out, want)
    assert out[1:20].sum() > 100


# ------------------------------------------------------------------------------------------------
# 4. One comparison reads the network's file once, not once per propagation


def test_a_comparison_reads_the_model_file_once(tiny_model, tmp_path, monkeypatch, capsys):
    """compare() handed the checkpoint's path to every propagation, which read it again (48 ms each on the shipped
    file): once per muscle, and per case in compare-set. It is read once per run now, and the rows are the same."""
    pytest.importorskip("torch")
    from ifssnet.model import checkpoint

    reads = []
    real = checkpoint.load_checkpoint

    def counting(*args, **kwargs):
        reads.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(checkpoint, "load_checkpoint", counting)
    m = _muscle()
    other = np.zeros_like(m)
    other[4:36, 15:19, 6:18] = 1
    refs = {"GM": m, "SOL": other}
    options = {"ifssnet": {"model": tiny_model, "device": "cpu"}}
    rows = C.compare(_volume(m), refs, GEO.spacing_kji, ["ifssnet"], method_options=options, keep_masks=True)
    assert len(reads) == 1 and all(not r["error"] for r in rows)
    assert options == {"ifssnet": {"model": tiny_model, "device": "cpu"}}      # the caller's options as they were
    from ifssnet.propagate import propagate

    for r in rows:   # the same masks as a propagation that reads the file itself
        seeds = C.protocol_seeds(refs[r["muscle"]])
        np.testing.assert_array_equal(r["mask"], propagate(_volume(m), seeds, tiny_model, device="cpu",
                                                           slice_spacing_mm=GEO.spacing_kji[0]).masks["segment"])
    for n in (1, 2):
        (tmp_path / f"c{n}").mkdir()
        write_volume(Image(_volume(m), GEO), tmp_path / f"c{n}" / "volume.nrrd")
        write_segmentation(segmentation_from_masks(refs, GEO), tmp_path / f"c{n}" / "reference.seg.nrrd")
    del reads[:]
    C.compare_set([tmp_path / "c1", tmp_path / "c2"], ["ifssnet"], method_options=options)
    assert len(reads) == 1
    del reads[:]   # the command line: the file its check before the work read is the network it runs
    code, _, _ = run_cli(capsys, "compare-set", tmp_path / "c1", tmp_path / "c2", "--methods", "ifssnet",
                         "--model", tiny_model, "--device", "cpu")
    assert code == 0 and len(reads) == 1


def test_a_comparison_reads_a_learned_baselines_file_once_and_a_missing_one_still_fails_per_row(tmp_path, monkeypatch):
    torch, UNet3D, UNet3DConfig, _ = _unet_classes()
    from ifssnet.baselines import learned_common
    from ifssnet.baselines.learned_common import save_model

    cfg = UNet3DConfig(size=16, segments=("GM", "SOL"), width=2, patch=(8, 16, 16))
    path = save_model(tmp_path / "u.pt", UNet3D(cfg), "unet3d", cfg.to_dict())
    reads = []
    real = learned_common.load_model_file
    monkeypatch.setattr(learned_common, "load_model_file", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    m = _muscle()
    other = np.zeros_like(m)
    other[4:36, 15:19, 6:18] = 1
    rows = C.compare(_volume(m), {"GM": m, "SOL": other}, GEO.spacing_kji, ["unet3d"],
                     method_options={"unet3d": {"model": path, "device": "cpu"}})
    assert len(reads) == 1 and all(not r["error"] for r in rows)
    rows = C.compare(_volume(m), {"GM": m, "SOL": other}, GEO.spacing_kji, ["unet3d"],
                     method_options={"unet3d": {"model": tmp_path / "none.pt", "device": "cpu"}})
    assert [("does not exist" in r["error"]) for r in rows] == [True, True]    # as before: an error row per muscle
