"""Review 41b (the researcher's journey: fine-tuning on a few annotated volumes of their own, then comparing):
each test failed before its fix."""
from __future__ import annotations

import os

import numpy as np
import pytest

from ifssnet.errors import InputError
from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume

from slicer_nodes import _ijk_to_ras, _reference_segmentation, scene_nodes  # noqa: F401  (a fixture)
from slicer_fixture import available, slicer_app, slicer_scene  # noqa: E402,F401  (fixtures)



def _slicer(test):
    """Marks a test on Slicer's real MRML (slicer-core), as the test_slicer_*.py modules mark theirs."""
    for mark in (pytest.mark.slicer,
                 pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning"),
                 pytest.mark.skipif(not available(), reason="slicer-core is not installed (pip install slicer-core)")):
        test = mark(test)
    return test

K, J, I = 20, 40, 24
GEOMETRY = Geometry(spacing=(0.3, 0.3, 2.0), origin=(0.0, 0.0, 0.0))    # anisotropic: 2 mm between slices


def _box(k0=2, k1=18):
    m = np.zeros((K, J, I), np.uint8)
    m[k0:k1, 10:25, 5:18] = 1
    return m


def _write_case(folder, masks, dtype=np.int16):
    """volume.nrrd (int16 with negatives) and annotation.seg.nrrd in ``folder``; (volume, annotation) paths."""
    folder.mkdir(parents=True, exist_ok=True)
    vol = np.random.default_rng(0).integers(-1000, -500, (K, J, I)).astype(dtype)
    for m in masks.values():
        vol[m > 0] += 300
    write_volume(Image(vol, GEOMETRY), folder / "volume.nrrd")
    write_segmentation(segmentation_from_masks(masks, GEOMETRY), folder / "annotation.seg.nrrd")
    return folder / "volume.nrrd", folder / "annotation.seg.nrrd"


def test_a_validation_annotation_painted_on_some_slices_without_a_tag_is_scored_on_its_painted_slices(tmp_path):
    """A segmentation painted on a few slices in Slicer and saved (no painted-slice tag) trains as a sparse
    annotation (``dataset._untagged_annotation``), but as a validation case it was taken for a complete reference:
    every propagated slice between the painted ones was scored against "no muscle", so the validation Dice, and the
    best network kept as OUT.best.pt, were chosen on wrong scores. Review 41b refused it; since session 46 it is read
    as training reads it and scored on its held-out painted groups (:mod:`ifssnet.held_out_groups`), and paint in
    one group only, which leaves nothing to score, is refused."""
    from ifssnet.held_out_groups import PROTOCOL
    from ifssnet.validation import Validator

    sparse = _box()
    keep = np.zeros(K, bool)
    keep[[3, 4, 5, 12, 13, 14]] = True
    sparse[~keep] = 0
    case = _write_case(tmp_path / "painted", {"tendon": sparse})
    assert Validator([case]).description()["protocols"] == ["3-seeds", PROTOCOL]
    held = Validator([(np.zeros((K, J, I), np.int16), {"tendon": sparse}, (2.0, 0.3, 0.3))])   # Slicer's nodes
    assert held.description()["protocols"] == ["3-seeds", PROTOCOL]
    one = _box()
    one[~np.isin(np.arange(K), [3, 4, 9, 10])] = 0       # all 4 slices needed to seed: none left to score
    with pytest.raises(InputError, match="'tendon' of validation case .*annotation.seg.nrrd is painted on 4 "
                                         "slices in 2 groups") as err:
        Validator([_write_case(tmp_path / "one", {"tendon": one})])
    assert "one more group" in err.value.todo
    # a complete annotation, and a sparse segment that is not validated, are accepted as before
    assert Validator([_write_case(tmp_path / "complete", {"tendon": _box()})]).description()["protocols"] == ["3-seeds"]
    Validator([_write_case(tmp_path / "both", {"tendon": _box(), "notes": one})], segments=["tendon"])


TINY_CLI = ["--size", "32", "--width-mult", "0.15", "--run-length", "6", "--epochs", "1", "--steps", "1"]


def test_segments_named_for_training_that_some_cases_lack_train_on_the_cases_that_have_them(tmp_path, capsys):
    """``ifssnet train A B --segments GM,SOL`` where B's annotation has GM alone (its sweep missed SOL): training
    stopped with 'The segmentation has no segment named 'SOL'. Choose one of: GM.', naming neither the case nor the
    file, and what it said to do (train GM alone) drops A's SOL. Each case trains the named segments it has (as
    without --segments, where each case trains its own); a named segment that no case has (a typo), and a case that
    has none of them, are refused by name."""
    from cli_output import error_line, run_cli
    from ifssnet.model.checkpoint import read_meta

    a = _write_case(tmp_path / "a", {"GM": _box(), "SOL": _box(6, 16)})
    b = _write_case(tmp_path / "b", {"GM": _box(4, 18), "tendon": _box(2, 8)})
    pairs = [f"{v}:{s}" for v, s in (a, b)]
    out = tmp_path / "out" / "m.pt"
    code, _, err = run_cli(capsys, "train", *pairs, "--segments", "GM,SOL", "--out", out, *TINY_CLI)
    assert code == 0, err
    assert read_meta(out)["data"] == "a, b"
    assert "b has no segment SOL" in err                       # said, since a misspelt name would be left out too

    code, _, err = run_cli(capsys, "train", *pairs, "--segments", "GM,Sol", "--out", tmp_path / "n.pt", *TINY_CLI)
    line = error_line(err)
    assert code == 2 and "'Sol'" in line and "No training case" in line and "SOL" in line and "tendon" in line
    assert not (tmp_path / "n.pt").exists()

    c = _write_case(tmp_path / "c", {"tendon": _box()})
    code, _, err = run_cli(capsys, "train", *pairs, f"{c[0]}:{c[1]}", "--segments", "GM,SOL", "--out",
                           tmp_path / "n.pt", *TINY_CLI)
    line = error_line(err)
    assert code == 2 and "'c'" in line and "none of the segments GM, SOL" in line and "tendon" in line
    assert not (tmp_path / "n.pt").exists()


@_slicer
def test_the_training_logic_trains_each_pair_on_the_named_segments_it_has(scene_nodes, tmp_path):
    """The Training Logic with ``segmentNames=["GM", "SOL"]`` and a pair whose segmentation has GM alone stopped with
    the same message as the command line; it trains as ``ifssnet train --segments`` now does, and refuses a name
    that no pair has."""
    pytest.importorskip("torch")
    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    other = slicer.util.addVolumeFromArray(slicer.util.arrayFromVolume(volumeNode).copy(), _ijk_to_ras(), "Other")
    sol = truth.copy()
    sol[:, :sol.shape[1] // 2] = 0
    pairs = [(volumeNode, _reference_segmentation(slicer, volumeNode, {"GM": truth, "SOL": sol}, "Both")),
             (other, _reference_segmentation(slicer, other, {"GM": truth}, "GM alone"))]
    small = dict(size=32, widthMult=0.15, runLength=6, stepsPerEpoch=1)
    L = IFSSNetTrainingLogic()
    out = L.train(pairs, "full", 1, outputPath=str(tmp_path / "m.pt"), segmentNames=["GM", "SOL"], **small)
    assert os.path.exists(out)
    with pytest.raises(InputError, match="No training case has a segment named 'XX'"):
        L.train(pairs, "full", 1, outputPath=str(tmp_path / "n.pt"), segmentNames=["GM", "XX"], **small)
    assert not (tmp_path / "n.pt").exists()


def _phantom_dir(folder, masks):
    """A compare-set case folder (volume.nrrd + reference.seg.nrrd)."""
    v, a = _write_case(folder, masks)
    a.rename(folder / "reference.seg.nrrd")
    return folder


def test_compare_set_refuses_a_named_segment_a_later_case_lacks_before_any_case_runs(tmp_path, monkeypatch, capsys):
    """``ifssnet compare-set A B C --segment GM,SOL`` where C's reference has GM alone: A and B were compared (every
    method, every muscle: hours on full-size sweeps), then C stopped the run with 'C: no segment named SOL' and
    nothing was written. The segment names of every case are read from the references' headers first, so the run is
    refused before any case is compared, naming each case that lacks a segment."""
    from cli_output import error_line, run_cli
    import ifssnet.compare as C

    ran = []
    real = C.compare
    monkeypatch.setattr(C, "compare", lambda *a, **k: ran.append(1) or real(*a, **k))
    dirs = [_phantom_dir(tmp_path / "A", {"GM": _box(), "SOL": _box(6, 16)}),
            _phantom_dir(tmp_path / "B", {"GM": _box(), "SOL": _box(6, 16)}),
            _phantom_dir(tmp_path / "C", {"GM": _box()})]
    code, _, err = run_cli(capsys, "compare-set", *dirs, "--segment", "GM,SOL", "--methods", "fbs",
                           "--csv", tmp_path / "out.csv")
    line = error_line(err)
    assert code == 2 and "C" in line and "SOL" in line and "GM" in line, line
    assert ran == [] and not (tmp_path / "out.csv").exists()
    with pytest.raises(InputError, match="no segment named SOL"):      # the core, called from Python
        C.compare_set(dirs, ["fbs"], segments=["GM", "SOL"])
    assert ran == []


def test_a_fine_tune_never_writes_over_or_removes_its_base_model_or_its_cases(tmp_path, tiny_model, capsys):
    """A run to OUT.pt writes OUT.pt, OUT.ckpt.pt and OUT.ckpt.best.pt, moves its best to OUT.best.pt, and without
    validation removes OUT.best.pt (an earlier run's best). So ``ifssnet train --from m.best.pt --out m.pt`` (in
    Slicer: the base model 'my-ifssnet.best' and the default output name 'my-ifssnet') deleted the base model when it
    ended, ``--from m.pt --out m.pt`` replaced it, and ``--out`` (or ``--log``) onto a case's file replaced (or
    appended to) the user's volume. Each is refused before anything is read or written, naming the file."""
    import hashlib
    import shutil

    from cli_output import error_line, run_cli

    def digest(p):
        return hashlib.sha256(p.read_bytes()).hexdigest()

    v, a = _write_case(tmp_path / "c", {"tendon": _box()})
    case = f"{v}:{a}"
    shutil.copy(tiny_model, tmp_path / "m.pt")
    shutil.copy(tiny_model, tmp_path / "m.best.pt")
    before = {p: digest(p) for p in (tmp_path / "m.pt", tmp_path / "m.best.pt", v, a)}
    tiny = ["--epochs", "1", "--steps", "1", "--run-length", "6"]
    for extra in (["--from", tmp_path / "m.best.pt", "--out", tmp_path / "m.pt"],
                  ["--from", tmp_path / "m.pt", "--out", tmp_path / "m.pt"],
                  ["--from", tmp_path / "m.pt", "--out", v],
                  ["--from", tmp_path / "m.pt", "--out", tmp_path / "n.pt", "--log", a]):
        code, _, err = run_cli(capsys, "train", case, *extra, *tiny)
        line = error_line(err)
        assert code == 2 and ("would replace" in line or "would append to" in line) and "Choose another" in line, \
            (extra, line)
    assert {p: digest(p) for p in before} == before
    assert not list(tmp_path.glob("*.ckpt*")) and not (tmp_path / "n.pt").exists()


@_slicer
def test_the_training_logic_never_removes_its_base_model(scene_nodes, tmp_path, tiny_model):
    """The Training panel's default output 'my-ifssnet' with the base model 'my-ifssnet.best' (the effect and the
    panel list it): the run without validation removed my-ifssnet.best.pt when it ended. Refused before any pair is
    read."""
    import shutil

    slicer, volumeNode, _, truth = scene_nodes
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    shutil.copy(tiny_model, tmp_path / "my-ifssnet.best.pt")
    data = (tmp_path / "my-ifssnet.best.pt").read_bytes()
    pair = (volumeNode, _reference_segmentation(slicer, volumeNode, {"GM": truth}, "Reference"))
    with pytest.raises(InputError, match="which is the base model"):
        IFSSNetTrainingLogic().train([pair], "full", 1, baseModel=str(tmp_path / "my-ifssnet.best.pt"),
                                     outputPath=str(tmp_path / "my-ifssnet.pt"), runLength=6, stepsPerEpoch=1)
    assert (tmp_path / "my-ifssnet.best.pt").read_bytes() == data and not (tmp_path / "my-ifssnet.pt").exists()


def test_fewshot_keeps_a_painted_group_on_each_muscle_of_a_fully_annotated_case(tmp_path, capsys):
    """``--mode fewshot`` keeps a completely annotated case's annotation on groups of slices spread evenly over the
    whole sweep (:func:`ifssnet.dataset.sparsify`). A muscle that spans part of the sweep (a tendon, a muscle of a
    sweep that runs on past it) got no group on it: a single fully annotated case was refused with 'No training case
    has 3 consecutive annotated slices where a segment is present. Annotate at least one group ...', and among
    several the case taught nothing of that muscle. Where no group holds the muscle, one more group is kept at its
    largest cross-section (where the 3-seeds protocol paints); a muscle with a group on it keeps the groups it had."""
    from cli_output import run_cli
    from ifssnet.dataset import Case, sparsify

    K2 = 40
    m = np.zeros((K2, 32, 32), np.uint8)
    m[2:12, 8:20, 6:22] = 1
    m[6, 8:22, 6:24] = 1                                             # its largest cross-section
    long = np.zeros_like(m)
    long[1:39, 4:12, 4:12] = 1
    case = Case("c", np.zeros((K2, 32, 32), np.float16), {"tendon": m, "long": long},
                {"tendon": np.ones(K2, bool), "long": np.ones(K2, bool)})
    few = sparsify(case, 0.035)
    assert np.flatnonzero(few.known["long"]).tolist() == [19, 20, 21]            # as before: the middle group
    assert np.flatnonzero(few.known["tendon"]).tolist() == [5, 6, 7, 19, 20, 21]

    v, a = _write_case(tmp_path / "c", {"tendon": _box(2, 7)})              # slices 2-6 of 20: the group was 9-11
    code, _, err = run_cli(capsys, "train", f"{v}:{a}", "--mode", "fewshot", "--out", tmp_path / "m.pt", *TINY_CLI)
    assert code == 0, err


@_slicer
def test_the_training_logic_refuses_a_validation_file_that_is_a_training_file(scene_nodes, tmp_path):
    """``IFSSNetTrainingLogic().train(pairs, validationPairs=...)`` with file pairs (the Python console) compared the
    volumes with ``is``: two strings of one path are two objects, so a training volume was validated on without a
    word (its scores are not held out). File paths are compared as files, as ``ifssnet train --val`` does."""
    from IFSSNetTrainingLib.logic import IFSSNetTrainingLogic

    v, a = _write_case(tmp_path / "c", {"tendon": _box()})
    with pytest.raises(InputError, match="also a training volume"):
        IFSSNetTrainingLogic().train([(str(v), str(a))], "full", 1, outputPath=str(tmp_path / "m.pt"), size=32,
                                     widthMult=0.15, runLength=6, stepsPerEpoch=1,
                                     validationPairs=[(str(tmp_path / "c" / "volume.nrrd"), str(a))])
    assert not (tmp_path / "m.pt").exists()


def test_compare_names_the_seed_file_that_lacks_a_reference_segment(tmp_path, capsys):
    """``ifssnet compare VOL SEEDS REF`` where the seed file's segment is named otherwise ('Segment_1', Slicer's
    default) or holds fewer muscles than the reference: 'The segmentation has no segment named 'GM'. Choose one of:
    Segment_1.' did not say that the seed file was meant, nor how to compare the muscles it holds."""
    from cli_output import error_line, run_cli
    v, ref = _write_case(tmp_path / "c", {"GM": _box(), "SOL": _box(6, 16)})
    seeds = tmp_path / "my seeds.seg.nrrd"
    painted = _box()
    painted[[k for k in range(K) if k not in (8, 9, 10)]] = 0
    write_segmentation(segmentation_from_masks({"Segment_1": painted}, GEOMETRY), seeds)
    code, _, err = run_cli(capsys, "compare", v, seeds, ref, "--methods", "fbs")
    line = error_line(err)
    assert code == 2 and "my seeds.seg.nrrd" in line and "GM, SOL" in line and "Segment_1" in line, line
    assert "'-'" in line, line
    write_segmentation(segmentation_from_masks({"GM": painted}, GEOMETRY), seeds)     # seeds of GM alone
    code, _, err = run_cli(capsys, "compare", v, seeds, ref, "--methods", "fbs")
    line = error_line(err)
    assert code == 2 and "no segment named SOL" in line and "--segment GM" in line, line


def test_a_trailing_comma_in_a_segment_list_names_no_empty_segment(tmp_path, capsys):
    """``--segments GM,`` (train) and ``--segment GM,`` (compare-set) asked for a segment named '' and were refused
    ('No training case has a segment named ''', ': no segment named .'), where ``ifssnet compare --segment GM,``
    compares GM (io.split_names leaves empty names out). Empty names are left out everywhere."""
    from cli_output import run_cli

    v, a = _write_case(tmp_path / "c", {"GM": _box(), "SOL": _box(6, 16)})
    code, _, err = run_cli(capsys, "train", f"{v}:{a}", "--segments", "GM,", "--out", tmp_path / "m.pt", *TINY_CLI)
    assert code == 0, err
    folder = _phantom_dir(tmp_path / "p", {"GM": _box(), "SOL": _box(6, 16)})
    code, out, err = run_cli(capsys, "compare-set", folder, "--segment", "GM, ", "--methods", "fbs", "--json")
    assert code == 0, err
    assert '"muscle": "SOL"' not in out and '"muscle": "GM"' in out


def test_validation_scores_the_named_segments_each_held_out_case_has(tmp_path):
    """Training takes ``--segments GM,SOL`` with a case that has GM alone (each case trains the named segments it has,
    33b513a); a held-out case with GM alone was still refused ('Validation case ... has no segment named SOL'), so the
    user had to drop SOL from training to validate. It is scored on the named segments it has; a case with none of
    them is refused as before."""
    from ifssnet.validation import Validator

    both = _write_case(tmp_path / "both", {"GM": _box(), "SOL": _box(6, 16)})
    gm = _write_case(tmp_path / "gm", {"GM": _box(), "tendon": _box(2, 8)})
    val = Validator([both, gm], segments=["GM", "SOL"])
    assert [sorted(val._load(c)[1]) for c in val.cases] == [["GM", "SOL"], ["GM"]]
    with pytest.raises(InputError, match="no segment named SOL"):
        Validator([gm], segments=["SOL"])


def test_compare_set_refuses_a_missing_case_file_before_any_case_runs(tmp_path, monkeypatch, capsys):
    """``ifssnet compare-set A B C`` where C is misspelt or lacks its reference: A and B were compared, then C stopped
    the run ('C/reference.seg.nrrd does not exist') and nothing was written. Every case's files are checked first."""
    from cli_output import error_line, run_cli
    import ifssnet.compare as C

    ran = []
    real = C.compare
    monkeypatch.setattr(C, "compare", lambda *a, **k: ran.append(1) or real(*a, **k))
    a = _phantom_dir(tmp_path / "A", {"GM": _box()})
    b = _phantom_dir(tmp_path / "B", {"GM": _box()})
    (b / "reference.seg.nrrd").rename(b / "annotation.seg.nrrd")
    code, _, err = run_cli(capsys, "compare-set", a, b, tmp_path / "missing", "--methods", "fbs", "--csv",
                           tmp_path / "out.csv")
    line = error_line(err)
    assert code == 2 and "reference.seg.nrrd" in line and "missing" in line and str(b) in line, line
    assert ran == [] and not (tmp_path / "out.csv").exists()


def test_a_segment_named_twice_is_taken_once_and_a_validation_link_to_a_training_volume_is_refused(
        tmp_path, monkeypatch, capsys):
    """``train --segments GM,GM`` counted GM twice in the memory estimate (every other command took each name once;
    ``compare-set --segment GM,GM``, checked here too, gave one row already); and ``--val`` compared paths with
    ``resolve()``, so a hard link to a training volume was validated on, where the Training Logic refuses it
    (``same_file``)."""
    from cli_output import error_line, run_cli

    v, a = _write_case(tmp_path / "c", {"GM": _box(), "SOL": _box(6, 16)})
    seen = []

    def shape(volume, annotation, segments=None, **options):
        seen.append(segments)
        raise InputError("stop here", "nothing")

    monkeypatch.setattr("ifssnet.train_memory.case_shape", shape)
    run_cli(capsys, "train", f"{v}:{a}", "--segments", "GM,GM", "--out", tmp_path / "m.pt", *TINY_CLI)
    assert seen == [["GM"]]
    monkeypatch.undo()
    folder = _phantom_dir(tmp_path / "p", {"GM": _box(), "SOL": _box(6, 16)})
    code, out, err = run_cli(capsys, "compare-set", folder, "--segment", "GM,GM", "--methods", "fbs", "--json")
    assert code == 0, err
    import json

    assert [r["muscle"] for r in json.loads(out)["rows"]] == ["GM"]
    link = tmp_path / "link.nrrd"
    os.link(v, link)
    code, _, err = run_cli(capsys, "train", f"{v}:{a}", "--val", f"{link}:{a}", "--out", tmp_path / "m2.pt",
                           *TINY_CLI)
    assert code == 2 and "is also a training case" in error_line(err)
