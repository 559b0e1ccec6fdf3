"""Validation on sparsely painted cases (ifssnet.held_out_groups): seeds from the largest painted group, scores
on the other annotated slices, and the Validator and `ifssnet train --val` taking such cases."""
import numpy as np
import pytest
import torch

from ifssnet.errors import InputError
from ifssnet.held_out_groups import (PROTOCOL, SparseReference, held_out_rows, held_out_scores, split_groups)
from ifssnet.io import AnnotatedSlices, read_segmentation, write_segmentation
from ifssnet.model import IFSSNet, IFSSNetConfig
from ifssnet.phantom import write_phantom
from ifssnet.validation import Validator

from test_train import TINY


def _ref(areas, marks=()):
    """A SparseReference on 40 slices of 8 x 8: ``areas`` {slice: painted pixels}, ``marks``: slices marked
    'no muscle here'."""
    mask = np.zeros((40, 8, 8), np.uint8)
    for k, a in areas.items():
        mask[k].flat[:a] = 1
    return SparseReference(mask, tuple(sorted(set(areas) | set(marks))))


def test_the_largest_group_seeds_and_the_other_annotated_slices_are_scored():
    ref = _ref({5: 9, 6: 9, 7: 9, 20: 20, 21: 20, 22: 20, 23: 20, 35: 4}, marks=(2, 38))
    split = split_groups(ref, "GM", "c")
    assert split.seeds == (20, 21, 22, 23)                        # the most painted slices
    assert split.scored == (2, 5, 6, 7, 35, 38)                   # painted and 'no muscle here' alike
    # on a tie of lengths, the group with the largest cross-section seeds
    assert split_groups(_ref({5: 9, 6: 30, 7: 9, 20: 20, 21: 20, 22: 20}), "GM", "c").seeds == (5, 6, 7)


def test_single_painted_slices_are_joined_nearest_first_until_propagate_has_three():
    ref = _ref({10: 9, 14: 9, 30: 9, 31: 9, 36: 9}, marks=(0,))
    split = split_groups(ref, "GL", "c")
    assert split.seeds == (30, 31, 36)                            # (30, 31), then the nearest group, 36
    assert split.scored == (0, 10, 14)


def test_a_segment_with_nothing_left_to_score_is_refused_with_what_to_paint():
    with pytest.raises(InputError, match="'SOL' of validation case c.seg.nrrd .* in one group") as err:
        split_groups(_ref({10: 9, 11: 9, 12: 9}, marks=(30,)), "SOL", "c.seg.nrrd")
    assert "one more group of slices" in err.value.todo
    with pytest.raises(InputError, match="3 slices in 2 groups: .* leave none"):
        split_groups(_ref({10: 9, 11: 9, 30: 9}), "SOL", "c")


def test_only_the_scored_slices_count():
    ref = _ref({5: 10, 6: 10, 7: 10, 20: 16}, marks=(30,)).mask
    pred = np.zeros_like(ref)
    assert held_out_scores(pred, ref, (20, 30)) == (0.0, 100.0)   # a collapsed network
    pred[20] = ref[20]
    assert held_out_scores(pred, ref, (20, 30)) == (1.0, 0.0)
    pred[12] = 1                                                   # an unannotated slice: not scored
    assert held_out_scores(pred, ref, (20, 30)) == (1.0, 0.0)
    pred[30].flat[:16] = 1                                         # paint where 'no muscle here' was marked
    assert held_out_scores(pred, ref, (20, 30)) == (pytest.approx(2 * 16 / 48), 100.0)


def _net(background_bias):
    """A tiny network whose head says background (bias > 0: a collapsed network) or muscle (< 0) everywhere."""
    torch.manual_seed(0)
    net = IFSSNet(IFSSNetConfig(**TINY)).eval()
    with torch.no_grad():
        net.decoder.head.weight.zero_()
        net.decoder.head.bias.copy_(torch.tensor([background_bias, -background_bias]))
    return net


@pytest.fixture(scope="module")
def sparse_case(tmp_path_factory):
    """A phantom whose GM is painted on 3 groups of 3 slices (the paper protocol's layout) and whose GL is
    complete: ``(volume path, annotation path)``."""
    root = tmp_path_factory.mktemp("sparse")
    write_phantom(root, seed=3, shape=(40, 32, 40))
    seg = read_segmentation(root / "reference.seg.nrrd")
    gm = seg.get("GM")
    rows = np.flatnonzero(gm.mask.reshape(gm.mask.shape[0], -1).any(axis=1))
    first = int(rows[0]) + 1
    slices = tuple(first + g * 10 + c for g in range(3) for c in range(3) if first + g * 10 + c <= rows[-1])
    keep = np.zeros(gm.mask.shape[0], bool)
    keep[list(slices)] = True
    gm.mask[~keep] = 0
    gm.annotated = AnnotatedSlices(0, slices)
    seg.segments = [s for s in seg.segments if s.name in ("GM", "GL")]
    write_segmentation(seg, root / "sparse.seg.nrrd")
    return root / "volume.nrrd", root / "sparse.seg.nrrd"


def test_a_collapsed_network_scores_zero_on_a_sparse_validation_case(sparse_case):
    """The point of it: a few-shot run that collapsed to empty masks is caught without a complete reference."""
    from ifssnet.io import read_volume

    image = read_volume(sparse_case[0])
    seg = read_segmentation(sparse_case[1])
    gm = seg.get("GM")
    ref = {"GM": SparseReference(gm.mask, gm.annotated.slices)}
    empty = held_out_rows(image.array, ref, image.geometry.spacing_kji, _net(10.0))
    full = held_out_rows(image.array, ref, image.geometry.spacing_kji, _net(-10.0))
    assert empty[0]["protocol"] == PROTOCOL and empty[0]["error"] == ""
    assert empty[0]["seed_slices_n"] == 3 and empty[0]["scored_slices_n"] == len(gm.annotated.slices) - 3
    assert empty[0]["dice"] == 0.0 and empty[0]["volume_error_pct"] == 100.0
    assert 0.0 < full[0]["dice"] < 1.0                               # the muscle everywhere: found, and too big


def test_the_validator_scores_sparse_segments_by_held_out_groups_and_complete_ones_as_before(sparse_case):
    val = Validator([sparse_case])
    assert val.description()["protocols"] == ["3-seeds", PROTOCOL]
    score = val(_net(10.0), 5)
    assert set(score.per_protocol) == {"3-seeds", PROTOCOL}
    assert score.per_protocol[PROTOCOL][0] == 0.0 and score.per_segment["GM"] == 0.0
    # Slicer's node pairs reach the Validator as a Segmentation in memory, tags and all: scored the same
    from ifssnet.io import read_volume

    image = read_volume(sparse_case[0])
    seg = read_segmentation(sparse_case[1])
    mem = Validator([(image.array, seg, image.geometry.spacing_kji)], segments=["GM"])
    assert mem.description()["protocols"] == ["3-seeds", PROTOCOL]
    assert mem(_net(10.0), 5).per_segment == {"GM": 0.0}
    # a complete case alone is scored as before, under its protocols only
    assert Validator([sparse_case], segments=["GL"]).description()["protocols"] == ["3-seeds"]


def test_train_validates_on_a_sparse_case_from_the_command_line(tmp_path, sparse_case, capsys):
    import json

    from ifssnet.cli import main

    train_dir = tmp_path / "t"
    write_phantom(train_dir, seed=4, shape=(24, 32, 40))
    log = tmp_path / "log.jsonl"
    rc = main(["train", str(train_dir), "--mode", "fewshot", "--out", str(tmp_path / "m.pt"), "--size", "32",
               "--width-mult", "0.15", "--run-length", "6", "--epochs", "1", "--steps", "2", "--segments", "GM",
               "--val", f"{sparse_case[0]}:{sparse_case[1]}", "--log", str(log)])
    assert rc == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    validated = [r for r in records if "val_dice" in r]
    assert validated and all(0.0 <= r["val_dice"] <= 1.0 for r in validated)
    assert (tmp_path / "m.best.pt").is_file()
    out = capsys.readouterr()
    assert "area error on the held-out painted slices" in out.out and "validation Dice" in out.err
