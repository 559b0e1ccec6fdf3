"""Review 42 (seeds): which slices are seeds, read the same way on the command line and in Slicer, on files as
Slicer 5.x saves them (slicer-core's real ``vtkMRMLSegmentationStorageNode``) and on grids other than the volume's."""
from __future__ import annotations

import json

import numpy as np
import pytest

# slicer_nodes first: it puts the Slicer module folders on sys.path.
from slicer_nodes import (_arrays_module, _ijk_to_ras, _nearest_seed_method, _paint, _propagated_gm,  # noqa: F401
                          _save_segmentation, scene_nodes)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401,F811  (fixtures)
from cli_output import run_cli as _cli  # noqa: E402

from ifssnet import io

needs_slicer = [pytest.mark.slicer,
                pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
                pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")]


def slicer_test(test):
    for mark in needs_slicer:
        test = mark(test)
    return test


@pytest.fixture
def copy_net(monkeypatch):
    """The network replaced by CopyModel (fast, exact): the CLI's seeds are what is tested."""
    import ifssnet.propagate as prop
    from fake_models import CopyModel

    monkeypatch.setattr(prop, "load_model", lambda model=None, device="cpu": CopyModel(size=32))


def _lps(ras):
    return io.Geometry.from_ijk_to_lps(np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras)


def _save_volume(slicer, volumeNode, path):
    voxels = slicer.util.arrayFromVolume(volumeNode).copy()
    return io.write_volume(io.Image(voxels, _lps(_ijk_to_ras())), path)


def _corrected_result(scene_nodes):
    """GM painted on 6, 10, 15 and propagated in Slicer, then slice 8 repainted and slice 12 erased whole: returns
    (segment ID, its voxels as corrected, the seeds Slicer's next Propagate takes: 6, 8, 10, 12, 15)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    a, L, arrays, g, corrected = _propagated_gm(scene_nodes)
    corrected[8] = 0
    corrected[8, 9:14, 10:18] = 1                                  # repainted
    corrected[12] = 0                                              # erased: the muscle is not there
    arrays.writeSegment(segNode, a, corrected, g)
    seeds = L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method).segments[0].seedSlices
    assert seeds == (6, 8, 10, 12, 15)
    return a, corrected, seeds


@slicer_test
@pytest.mark.parametrize("crop", [False, True])
def test_the_command_line_seeds_a_result_corrected_in_slicer_with_its_corrections(scene_nodes, tmp_path, copy_net,
                                                                                  capsys, crop):
    """Propagate in Slicer, correct a slice of the result (repaint it) and erase another whole, save: Slicer's next
    Propagate takes the corrected slice for a seed and the erased one for 'no muscle here' (``IFSSNet.ResultSliceCRC``),
    but ``ifssnet propagate`` (and ``compare``, ``evaluate --exclude-annotated``) read the annotated-slices tag only:
    the correction was propagated over, and the erased slice filled again. Both now read the seeds in
    ``ifssnet.io.seed_slices``."""
    slicer, volumeNode, segNode, truth = scene_nodes
    a, corrected, slicer_seeds = _corrected_result(scene_nodes)
    seg_path = _save_segmentation(slicer, segNode, tmp_path / "corrected.seg.nrrd", crop=crop)
    vol_path = _save_volume(slicer, volumeNode, tmp_path / "us.nrrd")

    read = io.read_segmentation(seg_path, reference=_lps(_ijk_to_ras()), reference_shape=truth.shape)
    assert read.get("GM").annotated == io.AnnotatedSlices(0, slicer_seeds)
    assert io.read_segmentation(seg_path).get("GM").annotated == io.AnnotatedSlices(0, slicer_seeds)
    from ifssnet.compare_cli import _seed_sets_from_file          # ifssnet compare VOLUME SEEDS REF reads them so
    assert _seed_sets_from_file(seg_path, ["GM"], _lps(_ijk_to_ras()), truth.shape)["GM"].slices == slicer_seeds

    code, out, err = _cli(capsys, "propagate", vol_path, seg_path, "-o", tmp_path / "out.seg.nrrd")
    assert code == 0, err
    res = io.read_segmentation(tmp_path / "out.seg.nrrd")
    assert res.get("GM").annotated == io.AnnotatedSlices(0, slicer_seeds)
    np.testing.assert_array_equal(res.mask("GM")[8], corrected[8])      # the correction kept, as painted
    assert not res.mask("GM")[12].any()                                 # the erased slice stays empty


def _reoriented(slicer, volumeNode):
    """The volume with its axes in another order and one flipped, as Orient Scalar Volume leaves it: new
    (k', j', i') = (i, k flipped, j), so old axis k is new axis j (1)."""
    voxels = slicer.util.arrayFromVolume(volumeNode)
    old, nk = _ijk_to_ras(), voxels.shape[0]
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2] = old[:3, 1], -old[:3, 2], old[:3, 0]
    m[:3, 3] = old[:3, 3] + old[:3, 2] * (nk - 1)
    return slicer.util.addVolumeFromArray(np.ascontiguousarray(np.transpose(voxels[::-1], (2, 0, 1))), m, "US rot")


@slicer_test
def test_the_time_estimate_on_a_reoriented_volume_reads_the_seeds_across_its_own_axis(scene_nodes, monkeypatch):
    """The seed tags name their axis on the grid they were written on (``IFSSNet.SeedGrid``). On a reoriented copy
    of the volume (Orient Scalar Volume) the estimate took that axis number on the new grid until the first run
    there: painted across k (22 slices), it estimated a run along the new k (the old i: 30 slices, 0.7 mm apart)
    instead of the new j (the old k: 22 slices, 1.6 mm apart), as Propagate will run."""
    slicer, volumeNode, segNode, truth = scene_nodes
    import ifssnet.estimate as core
    from IFSSNetSegmentationLib import logic

    calls = []
    monkeypatch.setattr(core, "expected_seconds", lambda shape, n, preset, device, model, seed_groups=1,
                        slice_spacing_mm=None: calls.append((list(shape), seed_groups, slice_spacing_mm)) or 1.0)
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (3, 4, 15), name="GM")
    L = logic.IFSSNetSegmentationLogic()
    L.markNoMuscle(volumeNode, segNode, a, 19)                       # tags written on the volume's grid
    L.expectedSeconds(volumeNode, segNode, [a])
    assert calls[-1] == ([22, 26, 30], 3, pytest.approx(1.6))       # across k: groups 3-4, 15, 19
    other = _reoriented(slicer, volumeNode)
    assert L.prepare(other, segNode, [a], method=_nearest_seed_method).segments[0].axis == 1
    L.expectedSeconds(other, segNode, [a])
    assert calls[-1] == ([22, 30, 26], 3, pytest.approx(1.6))       # across the new j (the old k), as Propagate runs


@slicer_test
def test_no_muscle_here_reads_the_segment_once_per_click(scene_nodes, monkeypatch):
    """The button asked ``paintedAxis`` for the axis (reading the segment on the volume's grid and its seeds), then
    ``markNoMuscle`` read it all again: two reads of the whole segment per click (seconds each on a full sweep). The
    Logic now finds the slice a view shows across the painted axis itself (``views``: the slice views' SliceToRAS)."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    arrays = _arrays_module()
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (6, 10, 15), name="GM")
    reads = []
    real = arrays.segmentToArray
    monkeypatch.setattr(arrays, "segmentToArray", lambda *args: reads.append(args[1]) or real(*args))
    ras = _ijk_to_ras()
    view = np.eye(4)
    view[:3, 2] = ras[:3, 2] / np.linalg.norm(ras[:3, 2])           # normal across k
    view[:3, 0] = ras[:3, 0] / np.linalg.norm(ras[:3, 0])
    view[:3, 1] = np.cross(view[:3, 2], view[:3, 0])
    view[:3, 3] = (ras @ np.array([4.0, 5.0, 19.0, 1.0]))[:3]       # shows slice k = 19
    across_i = np.eye(4)
    across_i[:3, 2] = ras[:3, 0] / np.linalg.norm(ras[:3, 0])
    across_i[:3, 3] = ras[:3, 3]
    L = logic.IFSSNetSegmentationLogic()
    mark = L.markNoMuscle(volumeNode, segNode, a, views=[across_i, view])
    assert (mark.axis, mark.slices, mark.index) == (0, (6, 10, 15, 19), 19)
    assert reads.count(a) == 1                                      # once (stored on the volume's grid: not read back)
    with pytest.raises(Exception, match="No slice view shows slices across"):
        L.markNoMuscle(volumeNode, segNode, a, views=[across_i])


def _grid(spacing_k, origin_k=0.0):
    """An axis-aligned grid 0.5 x 0.5 mm in-plane with ``spacing_k`` mm between slices, its first slice at
    ``origin_k`` mm."""
    return io.Geometry((0.5, 0.5, spacing_k), (0.0, 0.0, origin_k))


def _tagged(shape, slices, painted):
    mask = np.zeros(shape, np.uint8)
    for s in painted:
        mask[s, 3:8, 4:10] = 1
    return mask, io.AnnotatedSlices(0, tuple(slices))


@pytest.mark.parametrize("factor", [2, 3])
def test_seeds_on_an_oversampled_grid_land_on_the_volume_slices_they_lie_in(tmp_path, factor):
    """A seed file on a grid ``factor`` times finer along the sweep than the volume (Slicer's oversampled segmentation
    geometry, or seeds painted on a resampled copy): its painted slices and its 'no muscle here' mark were dropped
    (the seeds came back untagged: every painted slice a seed, the mark lost). Each volume slice now takes the tag of
    the file's slices it is read from, where that is one for one."""
    volume = _grid(1.5)
    fine = _grid(1.5 / factor, -0.75 + 0.75 / factor)       # Slicer's oversampling: the same slab, finer slices
    K = 12
    painted = [factor * k + f for k in (3, 4, 8) for f in range(factor)]
    mark = [factor * 10 + f for f in range(factor)]
    mask, annotated = _tagged((K * factor, 10, 12), painted + mark, painted)
    io.write_segmentation(io.Segmentation([io.Segment("GM", mask, annotated=annotated)], fine), tmp_path / "s.seg.nrrd")
    read = io.read_segmentation(tmp_path / "s.seg.nrrd", reference=volume, reference_shape=(K, 10, 12))
    assert read.get("GM").annotated == io.AnnotatedSlices(0, (3, 4, 8, 10))
    assert [int(k) for k in np.flatnonzero(read.mask("GM").any(axis=(1, 2)))] == [3, 4, 8]


def test_seeds_on_a_coarser_grid_cover_the_volume_slices_inside_each_painted_slice(tmp_path):
    """A seed file with slices twice as thick as the volume's: each painted slice covers two volume slices, which
    both hold its paint once resampled, and both are seeds (the tag was dropped)."""
    volume = _grid(1.0)
    coarse = _grid(2.0, 0.5)                                 # file slice s spans volume slices 2s and 2s + 1
    mask, annotated = _tagged((8, 10, 12), (2, 5, 7), (2, 5))
    io.write_segmentation(io.Segmentation([io.Segment("GM", mask, annotated=annotated)], coarse),
                          tmp_path / "s.seg.nrrd")
    read = io.read_segmentation(tmp_path / "s.seg.nrrd", reference=volume, reference_shape=(16, 10, 12))
    assert read.get("GM").annotated == io.AnnotatedSlices(0, (4, 5, 10, 11, 14, 15))
    assert [int(k) for k in np.flatnonzero(read.mask("GM").any(axis=(1, 2)))] == [4, 5, 10, 11]


def test_a_painted_slice_between_the_volume_slices_reads_the_paint_afresh_as_slicer_does(tmp_path, copy_net, capsys):
    """On a grid twice as fine, a painted slice whose neighbour in the same volume slice is not annotated cannot be
    placed: the volume slice reads one of the two, and which one is a rounding of a half. As Slicer's Propagate does
    with tags it cannot map, the paint on the volume is taken as fresh seeds and the output says why (no seed taken
    for 'no muscle here', none silently lost)."""
    volume = _grid(1.5)
    fine = _grid(0.75, -0.375)
    painted = (6, 7, 8, 9, 12, 13, 16)                                            # 16 without 17
    mask, annotated = _tagged((24, 10, 12), painted, painted)
    io.write_segmentation(io.Segmentation([io.Segment("GM", mask, annotated=annotated)], fine), tmp_path / "s.seg.nrrd")
    read = io.read_segmentation(tmp_path / "s.seg.nrrd", reference=volume, reference_shape=(12, 10, 12))
    assert read.get("GM").annotated is None and "another volume's grid" in " ".join(read.get("GM").notes)
    noise = np.random.default_rng(0).integers(0, 200, (12, 10, 12)).astype(np.int16)
    io.write_volume(io.Image(noise, volume), tmp_path / "v.nrrd")
    code, out, err = _cli(capsys, "propagate", tmp_path / "v.nrrd", tmp_path / "s.seg.nrrd", "-o", tmp_path / "o.seg.nrrd")
    assert code == 0, err
    assert "'GM' was painted or propagated on another volume's grid" in out
    seeds = io.read_segmentation(tmp_path / "o.seg.nrrd").get("GM").annotated
    present = [int(k) for k in np.flatnonzero(read.mask("GM").any(axis=(1, 2)))]
    assert seeds == io.AnnotatedSlices(0, tuple(present)) and {3, 4, 6} <= set(present)


@slicer_test
def test_seeds_recorded_on_a_volume_follow_it_resampled_finer_along_the_sweep(scene_nodes):
    """After a run, the volume resampled to twice as many slices (each old slice split in two, as Resample Scalar
    Volume or an oversampled grid leaves it): the tags' slices are not slices of the new grid, so the whole result was
    taken for fresh paint (and refused as 'painted in two views'). Each seed now lands on the two new
    slices inside it, and a slice corrected before the resampling stays a seed."""
    slicer, volumeNode, segNode, truth = scene_nodes
    a, L, arrays, g0, out = _propagated_gm(scene_nodes)
    out[12] = 0                                                      # a 'no muscle here' correction
    arrays.writeSegment(segNode, a, out, g0)
    m = _ijk_to_ras()
    m[:3, 3] -= m[:3, 2] / 4                                        # the same slab, slices half as thick
    m[:3, 2] /= 2
    fine = slicer.util.addVolumeFromArray(np.repeat(slicer.util.arrayFromVolume(volumeNode), 2, axis=0), m, "US fine")
    job = L.prepare(fine, segNode, [a], method=_nearest_seed_method)
    assert (job.segments[0].axis, job.segments[0].seedSlices) == (0, (12, 13, 20, 21, 24, 25, 30, 31))
    assert not job.segments[0].notes
    assert L.paintedAxis(fine, segNode, a) == 0


def _rotated_strokes(folder, name=""):
    """Writes ``v{name}.nrrd`` (noise on the oblique test grid), ``s{name}.seg.nrrd`` (GM painted as axial strokes:
    planes of constant S, which cut the volume's slices in bands) and ``r{name}.seg.nrrd`` (the whole GM)."""
    from slicer_nodes import _ellipsoid

    truth = _ellipsoid()
    m = _ijk_to_ras()
    k, j, i = np.indices(truth.shape)
    s = m[2, 0] * i + m[2, 1] * j + m[2, 2] * k + m[2, 3]
    painted = np.zeros(truth.shape, np.uint8)
    for c in (12.0, 16.0, 20.0):
        painted[(np.abs(s - c) < 0.35) & (truth > 0)] = 1
    geometry = _lps(m)
    io.write_segmentation(io.Segmentation([io.Segment("GM", painted)], geometry), folder / f"s{name}.seg.nrrd")
    io.write_segmentation(io.Segmentation([io.Segment("GM", truth)], geometry), folder / f"r{name}.seg.nrrd")
    noise = np.random.default_rng(0).integers(0, 200, truth.shape).astype(np.int16)
    io.write_volume(io.Image(noise, geometry), folder / f"v{name}.nrrd")


def test_the_command_line_refuses_strokes_painted_in_views_rotated_against_the_volume(tmp_path, copy_net, capsys):
    """A seed file painted in Slicer's default views on an oblique volume and saved without a run (no tags): each
    stroke leaves a band on several consecutive slices. Slicer's Propagate refuses such paint and says to align the
    views; ``ifssnet propagate`` took the 10 slices holding a band for 10 painted slices and propagated from partial
    cross-sections. It now refuses it as Slicer does (``io.require_strokes_on_slices``), writing nothing."""
    _rotated_strokes(tmp_path)
    code, _, err = _cli(capsys, "propagate", tmp_path / "v.nrrd", tmp_path / "s.seg.nrrd", "-o", tmp_path / "o.seg.nrrd")
    assert code == 2 and "does not lie on slices of the volume" in err and "Rotate to volume plane" in err
    assert not (tmp_path / "o.seg.nrrd").exists()


@slicer_test
def test_a_run_or_a_mark_on_a_crop_keeps_the_seeds_outside_it(scene_nodes):
    """Painted on the whole volume (k 5, 11, 14, 16), then cropped (Crop Volume, as the out-of-memory message advises) to
    k 8 on: a 'No muscle here' mark or a run on the crop wrote the tags anew on the crop's grid, which dropped the
    painted slice 5 outside it. Back on the whole volume, slice 5 was no seed any more, and Propagate ran over the
    clinician's paint there. The tags now stay on the grid they were recorded on, the seeds outside the crop kept."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    arrays = _arrays_module()
    a, painted = _paint(slicer, volumeNode, segNode, truth, 0, (5, 11, 14, 16), name="GM")
    L = logic.IFSSNetSegmentationLogic()
    m = _ijk_to_ras()
    m[:3, 3] = m[:3, :3] @ np.array([0.0, 0.0, 8.0]) + m[:3, 3]
    crop = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode)[8:].copy(), m, "US cropped")
    assert L.markNoMuscle(crop, segNode, a, 12).slices == (3, 6, 8, 12)      # on the crop: 11, 14, 16, the mark at 20
    assert L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method).segments[0].seedSlices == (5, 11, 14, 16, 20)
    L.propagate(crop, segNode, [a], method=_nearest_seed_method)
    assert L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method).segments[0].seedSlices == (5, 11, 14, 16, 20)
    L.propagate(volumeNode, segNode, [a], method=_nearest_seed_method)
    out = arrays.segmentToArray(segNode, a, arrays.referenceGeometry(volumeNode, segNode))
    np.testing.assert_array_equal(out[[5, 11, 14, 16]], painted[[5, 11, 14, 16]])   # painted slices as painted
    assert not out[20].any()


@slicer_test
def test_a_command_line_result_opened_in_slicer_on_a_cropped_volume_keeps_its_seeds_where_they_were(scene_nodes,
                                                                                                       tmp_path):
    """``ifssnet propagate`` writes its tags on the file's grid (the volume it ran on) and no ``IFSSNet.SeedGrid``.
    Opened in Slicer with a cropped copy of that volume, the Logic read the tags' slice numbers on the crop: painted
    k 6, 10, 15 became seeds 6, 10, 15 of the crop (9, 13, 18 of the volume), slices of the result that nobody
    painted, and the painted ones were propagated over. The Logic now reads such tags on the segmentation's own grid
    (its reference image geometry, the file's), as ``ifssnet.io`` reads them."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetSegmentationLib import logic
    painted = np.zeros_like(truth)
    painted[[6, 10, 15]] = truth[[6, 10, 15]]
    io.write_segmentation(io.Segmentation([io.Segment("GM", painted, annotated=io.AnnotatedSlices(0, (6, 10, 15)))],
                                          _lps(_ijk_to_ras())), tmp_path / "cli.seg.nrrd")
    loaded = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "CLI result")
    storage = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(tmp_path / "cli.seg.nrrd"))
    loaded.SetAndObserveStorageNodeID(storage.GetID())
    assert storage.ReadData(loaded)
    sid = loaded.GetSegmentation().GetNthSegmentID(0)
    m = _ijk_to_ras()
    m[:3, 3] = m[:3, :3] @ np.array([0.0, 0.0, 3.0]) + m[:3, 3]
    crop = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode)[3:].copy(), m, "US cropped")
    L = logic.IFSSNetSegmentationLogic()
    assert L.prepare(crop, loaded, [sid], method=_nearest_seed_method).segments[0].seedSlices == (3, 7, 12)
    assert L.prepare(volumeNode, loaded, [sid], method=_nearest_seed_method).segments[0].seedSlices == (6, 10, 15)


def test_compare_reads_a_seed_file_as_propagate_does_notes_and_rotated_strokes(tmp_path, capsys):
    """``ifssnet compare VOLUME SEEDS REF`` read its seed file without saying where slices were read otherwise than
    painted (``ifssnet propagate`` prints the notes), and took strokes painted in views rotated against an oblique
    volume for painted slices, which propagate and Slicer refuse. Both now as propagate."""
    volume, fine = _grid(1.5), _grid(0.75, -0.375)
    painted = (6, 7, 8, 9, 12, 13, 16)                      # 16 without 17: no one-to-one map, read afresh with a note
    mask, annotated = _tagged((24, 10, 12), painted, painted)
    io.write_segmentation(io.Segmentation([io.Segment("GM", mask, annotated=annotated)], fine), tmp_path / "s.seg.nrrd")
    ref = np.zeros((12, 10, 12), np.uint8)
    ref[2:10, 3:8, 4:10] = 1
    io.write_segmentation(io.Segmentation([io.Segment("GM", ref)], volume), tmp_path / "r.seg.nrrd")
    noise = np.random.default_rng(0).integers(0, 200, (12, 10, 12)).astype(np.int16)
    io.write_volume(io.Image(noise, volume), tmp_path / "v.nrrd")
    code, out, err = _cli(capsys, "compare", tmp_path / "v.nrrd", tmp_path / "s.seg.nrrd", tmp_path / "r.seg.nrrd",
                          "--methods", "fbs", "--json")
    assert code == 0, err
    assert "'GM' was painted or propagated on another volume's grid" in err
    json.loads(out)                                                    # the JSON on stdout stays clean

    _rotated_strokes(tmp_path, "2")
    code, _, err = _cli(capsys, "compare", tmp_path / "v2.nrrd", tmp_path / "s2.seg.nrrd", tmp_path / "r2.seg.nrrd",
                        "--methods", "fbs", "--csv", tmp_path / "c.csv")
    assert code == 2 and "does not lie on slices of the volume" in err and "Rotate to volume plane" in err
    assert not (tmp_path / "c.csv").exists()


@slicer_test
def test_the_training_module_reads_a_corrected_result_as_propagate_reads_its_seeds(scene_nodes):
    """The Training Logic read a pair's known slices from the annotated-slices tag alone: a result propagated and
    corrected in Slicer trained as known on the painted slices only, the corrections (``IFSSNet.ResultSliceCRC``)
    left to pseudo-labels, while ``ifssnet train`` on the saved file (``io.seed_slices``) and Propagate take them."""
    slicer, volumeNode, segNode, truth = scene_nodes
    from IFSSNetTrainingLib.logic import segmentationFromNodes
    _, _, seeds = _corrected_result(scene_nodes)
    assert segmentationFromNodes(volumeNode, segNode).get("GM").annotated == io.AnnotatedSlices(0, seeds)
    plain = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "complete")   # untagged: known everywhere
    plain.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    _paint(slicer, volumeNode, plain, truth, 0, tuple(range(truth.shape[0])), name="GM")
    assert segmentationFromNodes(volumeNode, plain).get("GM").annotated is None


@slicer_test
def test_slices_marked_no_muscle_here_do_not_count_toward_the_three_painted_slices(scene_nodes):
    """DESIGN: "the user has painted at least 3 slices of the selected segment". A "no muscle here" mark counted as
    one of them, so 1 painted slice and 2 marks propagated the muscle from a single cross-section. Refused now, in the
    core and in Slicer, saying the marks do not count; 3 painted slices and the marks run."""
    from ifssnet.errors import SeedError
    from ifssnet.seeds import cut_seeds, validate_seeds

    slicer, volumeNode, segNode, truth = scene_nodes
    marked = truth.copy()
    marked[[4, 18]] = 0
    with pytest.raises(SeedError, match=r"painted on 1 slice only \(besides 2 slices marked 'no muscle here'"):
        validate_seeds(cut_seeds(marked, (4, 10, 18)), name="GM")
    validate_seeds(cut_seeds(marked, (4, 8, 10, 12, 18)))
    from IFSSNetSegmentationLib import logic
    a, _ = _paint(slicer, volumeNode, segNode, truth, 0, (10,), name="GM")
    L = logic.IFSSNetSegmentationLogic()
    with pytest.raises(SeedError, match="painted on 1 slice only"):
        L.markNoMuscle(volumeNode, segNode, a, 4)
        L.markNoMuscle(volumeNode, segNode, a, 18)
        L.prepare(volumeNode, segNode, [a], method=_nearest_seed_method)
