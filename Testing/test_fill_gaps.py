"""--fill-gap: few-shot slices between two nearby painted groups labelled by Fill between slices (ifssnet/fill_gaps.py)."""
import numpy as np
import pytest

from ifssnet.bench import dice
from ifssnet.dataset import Case
from ifssnet.errors import InputError
from ifssnet.fill_gaps import fill_gaps, gap_slices
from ifssnet.model import IFSSNetConfig
from ifssnet.model.checkpoint import load_checkpoint
from ifssnet.train import TrainConfig, decremental_cases, train

from test_train import TINY

pytest.importorskip("itk")
pytestmark = pytest.mark.filterwarnings("ignore:builtin type .* has no __module__ attribute:DeprecationWarning")

GROUPS = [(2, 3, 4), (12, 13, 14), (33, 34, 35)]   # gaps of 7 (5..11) and 18 (15..32) slices


def _cone(K=40, S=32, last=None):
    """A disk whose radius grows from 5 to 12 pixels along the sweep (absent past slice ``last``)."""
    yy, xx = np.mgrid[:S, :S]
    m = np.zeros((K, S, S), np.uint8)
    for k in range(K if last is None else last + 1):
        m[k] = (yy - S / 2) ** 2 + (xx - S / 2) ** 2 <= (5 + 7 * k / K) ** 2
    return m


def _sparse_case(truth, groups=GROUPS):
    known = np.zeros(truth.shape[0], bool)
    known[[k for g in groups for k in g]] = True
    image = np.zeros(truth.shape, np.float16)
    return Case("cone", image, {"A": truth * known[:, None, None]}, {"A": known})


def _filled(out, case):
    """Per segment, the slices ``fill_gaps`` made known."""
    return {n: int((out.known[n] & ~case.known[n]).sum()) for n in case.known}


def test_a_short_gap_between_painted_groups_is_filled_and_known_and_a_long_one_is_not():
    truth = _cone()
    case = _sparse_case(truth)
    out = fill_gaps(case, 10)
    gap = np.arange(5, 12)
    assert _filled(out, case) == {"A": 7}
    assert out.known["A"][gap].all() and not out.known["A"][15:33].any()
    assert dice(out.masks["A"][gap], truth[gap]) > 0.9
    assert not out.masks["A"][15:33].any()                           # the long gap stays unlabelled
    painted = case.known["A"]
    np.testing.assert_array_equal(out.masks["A"][painted], truth[painted])   # paint kept as painted
    np.testing.assert_array_equal(out.painted["A"], painted)         # and the filled slices are not painted ones
    assert not case.known["A"][gap].any()                            # the input case is not changed


def test_a_gap_next_to_a_group_with_an_empty_slice_is_not_filled():
    """The segment ends inside the second group (slice 14 is empty): where it ends between the groups is unknown."""
    truth = _cone(last=13)
    case = _sparse_case(truth)
    assert gap_slices(case.known["A"], case.masks["A"], 40).tolist() == []
    out = fill_gaps(case, 40)
    assert _filled(out, case) == {"A": 0}
    np.testing.assert_array_equal(out.known["A"], case.known["A"])


def test_fully_known_segments_and_a_gap_of_zero_leave_the_case_alone():
    truth = _cone()
    full = Case("full", np.zeros(truth.shape, np.float16), {"A": truth}, {"A": np.ones(truth.shape[0], bool)})
    assert fill_gaps(full, 40) == full
    sparse = _sparse_case(truth)
    assert fill_gaps(sparse, 0) == sparse


@pytest.mark.parametrize("bad, match", [(dict(fill_gap=-1), "fill-gap"), (dict(fill_gap=8, mode="full"), "fewshot")])
def test_fill_gap_is_refused_where_it_means_nothing(bad, match):
    with pytest.raises(InputError, match=match):
        TrainConfig(**{"mode": "fewshot", **bad}).validate()


def test_fewshot_training_fills_the_gaps_and_records_it(tmp_path, monkeypatch):
    import ifssnet.train as tr

    seen = []
    real = tr.fill_gaps

    def spy(case, max_gap):
        out = real(case, max_gap)
        seen.append((max_gap, _filled(out, case)))
        return out

    monkeypatch.setattr(tr, "fill_gaps", spy)
    truth = _cone()
    rng = np.random.default_rng(0)
    image = (rng.normal(size=truth.shape) + 1.5 * truth).astype(np.float16)
    case = Case("cone", image, {"A": truth}, {"A": np.ones(truth.shape[0], bool)})
    cfg = TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=2, run_length=8, checkpoint_every=2,
                      annotated_total=0.3, fill_gap=10)
    train([case], tmp_path / "f.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg)
    assert len(seen) == 1 and seen[0][0] == 10 and seen[0][1]["A"] == 28   # 0.3 of 40 slices: 4 groups, gaps of 9, 10, 9
    _, _, meta = load_checkpoint(tmp_path / "f.ckpt.pt")
    assert meta["training"]["config"]["fill_gap"] == 10


def test_single_painted_slices_train_once_their_gaps_are_filled(tmp_path):
    """--paint-group 1: a run starts on a window of labels, so single painted slices train only where
    --fill-gap joins them; without it the run says what to do."""
    truth = _cone()
    case = Case("cone", (1.5 * truth).astype(np.float16), {"A": truth}, {"A": np.ones(truth.shape[0], bool)})
    cfg = dict(mode="fewshot", epochs=1, steps_per_epoch=1, run_length=8, checkpoint_every=1, annotated_total=0.2,
               decay_ratio=1.0, paint_group=1)
    with pytest.raises(InputError, match="consecutive annotated slices") as refusal:
        train([case], tmp_path / "a.pt", model_config=IFSSNetConfig(**TINY), cfg=TrainConfig(**cfg))
    assert "--fill-gap N" in str(refusal.value)
    train([case], tmp_path / "b.pt", model_config=IFSSNetConfig(**TINY), cfg=TrainConfig(**cfg, fill_gap=8))
    _, _, meta = load_checkpoint(tmp_path / "b.ckpt.pt")
    assert meta["training"]["config"]["paint_group"] == 1 and meta["training"]["config"]["decay_ratio"] == 1.0


def test_the_label_benchmark_scores_the_filled_slices_against_the_reference(tmp_path, capsys):
    """benchmarks/fill_gap_labels.py: painted shares 0.4 and 0.2 of 40 slices give 5 groups (gaps of 6-7
    slices, filled) and 3 groups (gaps of 15-16, left); the filled cone slices match the reference."""
    from benchmark_scripts import load_benchmark

    from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume

    truth = _cone()
    for name in ("c1", "c2"):
        d = tmp_path / name
        d.mkdir()
        write_volume(Image((100 * truth).astype(np.float32), Geometry()), d / "volume.nrrd")
        write_segmentation(segmentation_from_masks({"A": truth}, Geometry()), d / "reference.seg.nrrd")
    load_benchmark("fill_gap_labels").main([str(tmp_path / "c1"), str(tmp_path / "c2"), "--fill-gap", "8", "--size", "32",
                                             "--annotated-total", "0.3"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:-1]]
    first = {r[0]: r for r in rows}["c1"]
    assert int(first[4]) > 0 and float(first[5]) > 0.9
    assert {r[0]: r for r in rows}["c2"][4] == "0"          # its gaps are longer than 8


def test_the_written_labels_train_as_the_filled_case(tmp_path, capsys):
    """fill_gap_labels.py --write: read back as a partly annotated case, the labels are the painted and filled
    slices that --fill-gap trains on, mask and known alike, with no ITK needed to read them."""
    from benchmark_scripts import load_benchmark

    from ifssnet.dataset import load_case
    from ifssnet.io import Geometry, Image, segmentation_from_masks, write_segmentation, write_volume

    d = tmp_path / "c1"
    d.mkdir()
    truth = _cone()
    write_volume(Image((100 * truth).astype(np.float32), Geometry()), d / "volume.nrrd")
    write_segmentation(segmentation_from_masks({"A": truth}, Geometry()), d / "reference.seg.nrrd")
    args = [str(d), "--fill-gap", "8", "--size", "32", "--annotated-total", "0.2", "--decay-ratio", "1",
            "--paint-group", "1"]
    load_benchmark("fill_gap_labels").main(args + ["--write", str(tmp_path / "labels")])
    full = load_case(d / "volume.nrrd", d / "reference.seg.nrrd", 32)
    cfg = TrainConfig(mode="fewshot", annotated_total=0.2, decay_ratio=1.0, paint_group=1)
    expected = fill_gaps(decremental_cases([full], cfg)[0], 8)
    back = load_case(d / "volume.nrrd", tmp_path / "labels" / "c1.seg.nrrd", 32)
    assert np.array_equal(back.known["A"], expected.known["A"]) and back.known["A"].sum() > 8
    assert np.array_equal(back.masks["A"][back.known["A"]], expected.masks["A"][expected.known["A"]])
    with pytest.raises(InputError, match="in-plane"):
        load_benchmark("fill_gap_labels").main(args[:4] + ["16"] + args[5:] + ["--write", str(tmp_path / "x")])
