"""Review 42, training: what a fine-tune sees against what propagation sees at run time, and the memory estimate."""
from __future__ import annotations

import numpy as np


def _sparse_case(K=81, spacing=0.25, painted=(21, 22, 23, 60, 61, 62), empty=()):
    """A case whose image holds each slice's index, painted on ``painted`` (``empty``: painted "no muscle")."""
    from ifssnet.dataset import Case

    img = np.broadcast_to(np.arange(K, dtype=np.float16)[:, None, None], (K, 8, 8)).copy()
    m = np.zeros((K, 8, 8), np.uint8)
    m[10:70, 2:5, 2:5] = 1
    m[list(empty)] = 0
    known = np.zeros(K, bool)
    known[list(painted) + list(empty)] = True
    return Case("c", img, {"A": m}, {"A": known}, spacing, held=("A", "B"))


def _propagation_frames(case, network_mm):
    """The frames propagation runs on for the case's paint (ifssnet.propagate.frames_for)."""
    from types import SimpleNamespace

    from ifssnet.propagate import frames_for
    from ifssnet.seeds import SeedSet

    seeds = {}
    for n, known in case.known.items():
        sl = np.flatnonzero(known)
        mask = np.zeros((case.n_slices, 1, 1), np.uint8)
        mask[sl, 0, 0] = case.masks[n][sl].reshape(len(sl), -1).any(axis=1)
        seeds[n] = SeedSet(mask, tuple(sl))
    net = SimpleNamespace(config=SimpleNamespace(slice_spacing_mm=network_mm))
    return frames_for(case.n_slices, case.slice_spacing_mm, net, True, seeds).frames


def test_a_thinned_training_case_runs_on_propagations_frames_and_its_groups_stay_whole():
    """thin_case kept the regular frame next to each painted slice beside it (slices 20 and 24 around a group
    painted on 21-23 of a 0.25 mm sweep thinned to 1 mm): training stepped 0.25 mm from 20 to the paint and from
    the paint to 24, steps propagation never takes (it puts the paint in those frames' place)."""
    from ifssnet.dataset import thin_case

    for empty in ((), (40,)):
        case = _sparse_case(empty=empty)
        thinned = thin_case(case, 1.0)
        frames = thinned.image[:, 0, 0].astype(int)             # the slices kept (the image holds their index)
        painted = np.flatnonzero(case.known["A"])
        expected = np.union1d(_propagation_frames(case, 1.0), painted)
        assert frames.tolist() == expected.tolist()
        assert 20 not in frames and 24 not in frames            # the frames the paint replaces
        assert 40 in frames if empty else True                  # "no muscle here" is a frame of its own
        known = np.flatnonzero(thinned.known["A"])
        assert frames[known].tolist() == painted.tolist()       # every painted slice, each group whole
        assert thinned.held == ("A", "B")
    full = _sparse_case(painted=range(81))
    assert thin_case(full, 1.0).image[:, 0, 0].astype(int).tolist() == list(range(0, 81, 4))


_READ_PEAK = r'''
import sys
from ifssnet.io import read_segmentation, read_volume
from ifssnet.peak_memory import PeakMemory, malloc_trim
img = read_volume(sys.argv[1])
geometry, shape = img.geometry, img.array.shape
del img
read_segmentation(sys.argv[2], reference=geometry, reference_shape=shape)     # imports, first allocations
malloc_trim()
with PeakMemory() as mem:
    seg = read_segmentation(sys.argv[2], reference=geometry, reference_shape=shape)
print(mem.peak_mb * 2 ** 20)
'''


def _cropped_case(tmp_path, K=100, J=360, I=360):
    """A uint8 volume with 3 small muscles and their annotation saved cropped to them, as Slicer saves a .seg.nrrd."""
    from ifssnet.io import Geometry, Image, Segment, Segmentation, write_segmentation, write_volume

    g = Geometry((0.5, 0.5, 1.0))
    vol = np.random.default_rng(0).integers(0, 255, (K, J, I), dtype=np.uint8)
    write_volume(Image(vol, g), tmp_path / "volume.nrrd")
    box = (slice(10, 90), slice(100, 220), slice(80, 240))            # about a tenth of the volume
    masks = []
    for n in range(3):
        m = np.zeros((80, 120, 160), np.uint8)
        m[5 + 20 * n:30 + 20 * n, 20:100, 20:140] = 1
        masks.append(Segment(f"M{n}", m))
    origin = tuple((g.ijk_to_lps @ np.array([box[2].start, box[1].start, box[0].start, 1.0]))[:3])
    write_segmentation(Segmentation(masks, Geometry(g.spacing, origin, g.direction)), tmp_path / "ann.seg.nrrd")
    return tmp_path / "volume.nrrd", tmp_path / "ann.seg.nrrd"


def test_reading_an_annotation_saved_cropped_is_counted_at_the_volumes_size(tmp_path):
    """case_shape counted resampling a cropped annotation at the file's own (small) size: the volume's grid and a
    segment resampled onto it, both the volume's size, were left out (measured 111 MiB against 82 counted for a
    105 x 136 x 279 annotation of a 120 x 400 x 400 phantom)."""
    import os
    import subprocess
    import sys

    from ifssnet.train_memory import case_shape

    volume, annotation = _cropped_case(tmp_path)
    shape = case_shape(volume, annotation)
    counted = shape.read_bytes + shape.resampled_bytes + shape.file_segments * shape.voxels   # + the masks it makes
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _READ_PEAK, str(volume), str(annotation)], env=env,
                         capture_output=True, text=True, check=True)
    measured = float(out.stdout.split()[-1])
    assert measured <= counted <= 2 * measured, (measured / 2 ** 20, counted / 2 ** 20)
    same = case_shape(volume, volume)                                  # the volume's own grid: nothing resampled
    assert same.resampled_bytes == 0


_VALIDATION_PEAK = r'''
import sys
from ifssnet.peak_memory import PeakMemory
from ifssnet.propagate import load_model
from ifssnet.validation import Validator
from ifssnet.dataset import load_case
net = load_model(None, "cpu")
case = load_case(sys.argv[1], sys.argv[2], net.config.size)       # as ifssnet train reads its cases first
validator = Validator([(sys.argv[1], sys.argv[2])])
with PeakMemory() as mem:                      # the first validation, as a fine-tune's at step 0
    validator(net, 0)
print(mem.peak_mb * 2 ** 20, net.config.size, net.config.width_mult, net.config.window)
'''


def test_a_first_validation_of_a_small_case_stays_within_its_estimate(tmp_path):
    """The validation share of the training estimate was below the peak of a first validation at small sizes
    (118 MiB against 144-162 measured for a 60 x 64 x 64 phantom, the shipped network, 3 segments): it left out the
    scoring modules' imports and torch's first inference allocations (a fine-tune validates before any step),
    about 40 MiB, and the heap's spread from call to call. Measured in a fresh process that has read a training case,
    as ``ifssnet train --from MODEL --val CASE`` validates (benchmarks/case_memory.py)."""
    import os
    import subprocess
    import sys

    from ifssnet.cli import main
    from ifssnet.train_memory import case_shape, validation_bytes, validation_runs

    assert main(["phantom", str(tmp_path), "--seed", "1", "--shape", "60", "64", "64"]) == 0
    volume, annotation = tmp_path / "volume.nrrd", tmp_path / "reference.seg.nrrd"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _VALIDATION_PEAK, str(volume), str(annotation)], env=env,
                         capture_output=True, text=True, check=True)
    measured, size, width, window = out.stdout.split()[-4:]
    shape = case_shape(volume, annotation)
    estimated = validation_bytes(shape, int(size), float(width), int(window), validation_runs(shape))
    assert float(measured) <= estimated <= 2 * float(measured), (float(measured) / 2 ** 20, estimated / 2 ** 20)


def test_a_log_in_a_new_folder_is_written_and_a_log_that_is_a_folder_is_refused_before_reading(tmp_path, capsys):
    """``--log runs/new/log.jsonl`` stopped the run with an internal FileNotFoundError once its cases were read
    (``--out`` makes its folder); a --log that is a folder is refused before any case is read, nothing written."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_train_cli_errors import TINY, _case

    from cli_output import error_line, run_cli

    case = _case(tmp_path / "c")
    out, log = tmp_path / "new" / "m.pt", tmp_path / "runs" / "new" / "log.jsonl"
    code, _, err = run_cli(capsys, "train", case, "--out", out, "--log", log, "--epochs", "1", "--steps", "1", *TINY)
    assert code == 0, err
    assert out.is_file() and len(log.read_text().splitlines()) == 1
    (tmp_path / "logdir").mkdir()
    code, _, err = run_cli(capsys, "train", case, "--out", tmp_path / "other" / "m.pt", "--log", tmp_path / "logdir",
                           "--epochs", "1", "--steps", "1", *TINY)
    line = error_line(err)
    assert code != 0 and "is a folder" in line and "--log" in line, line
    assert not (tmp_path / "other").exists()


def test_a_run_too_long_for_the_thinned_sweeps_is_refused_before_a_fine_tunes_first_validation(tmp_path):
    """A fine-tune of a network trained at 1 mm on 0.25 mm sweeps with a run longer than their frames validated the
    base network first (minutes at full size), then stopped at its first step saying that 'at most 36 slices' lie
    in a sweep of 120: now refused before that validation and before anything is written, naming the frames each
    case keeps."""
    import pytest

    from ifssnet.dataset import Case
    from ifssnet.errors import InputError
    from ifssnet.model import IFSSNetConfig
    from ifssnet.train import TrainConfig, train
    from ifssnet.validation import ValidationScore

    def case(K, spacing, painted=None):
        img = np.random.default_rng(K).normal(size=(K, 32, 32)).astype(np.float16)
        m = np.zeros((K, 32, 32), np.uint8)
        m[:, 8:20, 6:22] = 1
        known = np.ones(K, bool) if painted is None else np.isin(np.arange(K), painted)
        return Case(f"c{K}", img, {"A": m * known[:, None, None]}, {"A": known}, spacing)

    def score(model, step, **kw):
        validated.append(step)
        return ValidationScore(step, 0.5, 10.0, 0.0)

    base = train([case(40, 1.0)], tmp_path / "base.pt", model_config=IFSSNetConfig(size=32, width_mult=0.15),
                 cfg=TrainConfig(epochs=1, steps_per_epoch=1, run_length=6))
    validated = []
    before = sorted(p.name for p in tmp_path.iterdir())
    sparse = case(81, 0.25, painted=[40, 41, 42])          # 23 frames at 1 mm: the paint's group and 20 others
    with pytest.raises(InputError) as err:
        train([sparse], tmp_path / "ft.pt", base_model=base, validator=score,
              cfg=TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=1, run_length=16))
    assert "c81 keeps 23 of its 81 slices (1 mm apart)" in str(err.value) and "--run-length 16" in str(err.value)
    assert validated == [] and sorted(p.name for p in tmp_path.iterdir()) == before
    # a run that fits those frames trains
    train([sparse], tmp_path / "ft.pt", base_model=base, validator=score,
          cfg=TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=1, run_length=8))
    assert validated == [0, 1]


def test_a_new_networks_size_that_is_not_a_multiple_of_32_is_refused_naming_the_option(tmp_path, capsys):
    """``ifssnet train --size 48`` said 'Invalid IFSS-Net configuration ... Fix the configuration or use a
    checkpoint made by this version', which names neither the option nor a size that works."""
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from test_train_cli_errors import _case

    from cli_output import error_line, run_cli

    case = _case(tmp_path / "c")
    out = tmp_path / "out" / "m.pt"
    for option, value, said, todo in (("--size", "48", "--size 48 is not a multiple of 32", "--size 64"),
                                      ("--width-mult", "0", "--width-mult 0 is outside", "--width-mult")):
        args = {"--size": "32", "--width-mult": "0.15", option: value}
        code, _, err = run_cli(capsys, "train", case, "--out", out, "--epochs", "1", "--steps", "1",
                               "--run-length", "6", *[x for kv in args.items() for x in kv])
        line = error_line(err)
        assert code != 0 and said in line and f"Give {todo}" in line, line
        assert not out.parent.exists()


def test_a_long_painted_range_is_thinned_as_propagation_thins_it():
    """thin_case kept every slice of a partial annotation: 41 slices painted on 20-60 of a 0.25 mm sweep stayed 41
    frames 0.25 mm apart where propagation sees 11 at 1 mm. Only a group left on fewer frames than a window keeps
    its other slices beside them."""
    from ifssnet.dataset import thin_case

    case = _sparse_case(painted=tuple(range(20, 61)) + (70, 71, 72))
    thinned = thin_case(case, 1.0)
    frames = thinned.image[:, 0, 0].astype(int).tolist()
    expected = np.union1d(_propagation_frames(case, 1.0), [70, 71, 72]).tolist()
    assert frames == expected and len([f for f in frames if 20 <= f <= 60]) == 11
    assert [f for f in frames if 66 < f < 76] == [70, 71, 72]


def test_fill_gap_counts_the_sweeps_slices_on_a_sweep_thinned_to_the_networks_frames(tmp_path, monkeypatch):
    """``--fill-gap N`` filled gaps of up to N slices of the thinned case, i.e. N frames: on a 0.25 mm sweep thinned
    to a 1 mm network's frames it filled gaps 4x as long as the user asked for. N now counts the sweep's slices."""
    import ifssnet.train as T
    from ifssnet.dataset import Case
    from ifssnet.model import IFSSNetConfig
    from ifssnet.train import TrainConfig, gap_on_frames, train

    assert gap_on_frames(40, 0.25, 1.0) == 10 and gap_on_frames(40, 1.0, 1.0) == 40 and gap_on_frames(40, None, 1.0) == 40
    assert gap_on_frames(2, 0.25, 1.0) == 1 and gap_on_frames(0, 0.25, 1.0) == 0
    K = 161
    img = np.random.default_rng(0).normal(size=(K, 32, 32)).astype(np.float16)
    m = np.zeros((K, 32, 32), np.uint8)
    m[:, 8:20, 6:22] = 1
    known = np.isin(np.arange(K), [20, 21, 22, 100, 101, 102])            # 77 sweep slices apart: about 19 frames
    base = train([Case("b", img[:40], {"A": m[:40]}, {"A": np.ones(40, bool)}, 1.0)], tmp_path / "base.pt",
                 model_config=IFSSNetConfig(size=32, width_mult=0.15), cfg=TrainConfig(epochs=1, steps_per_epoch=1,
                                                                                      run_length=6))
    asked = []
    real = T.fill_gaps
    monkeypatch.setattr(T, "fill_gaps", lambda case, gap: asked.append(gap) or real(case, gap))
    sparse = Case("fine", img, {"A": m * known[:, None, None]}, {"A": known}, 0.25)
    train([sparse], tmp_path / "ft.pt", base_model=base,
          cfg=TrainConfig(mode="fewshot", epochs=1, steps_per_epoch=1, run_length=8, fill_gap=40))
    # 40 sweep slices of 0.25 mm: about 10 frames (the thinned case's frames average a little under 1 mm, the
    # painted slices kept among them), not 40: the gap of about 19 frames stays open
    assert len(asked) == 1 and 9 <= asked[0] <= 12, asked
