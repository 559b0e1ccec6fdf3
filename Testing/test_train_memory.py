"""The memory check before training (:mod:`ifssnet.train_memory`): the estimate from the files' headers, and
``ifssnet train`` refusing a run too large for memory before it reads a case or writes anything."""
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cli_output import error_line
from ifssnet import memory, train_memory
from ifssnet.cli import main
from ifssnet.errors import ResourceError, VolumeError
from ifssnet.io import (Geometry, Image, read_header, read_segmentation, read_volume, segmentation_from_masks,
                        write_segmentation, write_volume)
from ifssnet.train_memory import CaseShape, estimate_training_bytes

GEOMETRY = Geometry(spacing=(0.5, 0.5, 1.0), origin=(-3.0, 2.0, 10.0))
TINY = ["--size", "32", "--width-mult", "0.15", "--run-length", "6"]


def _case(folder: Path, shape=(12, 30, 30), segments=("GM",), dtype=np.uint8) -> str:
    """volume.nrrd and annotation.seg.nrrd in ``folder`` (a box muscle per segment); the CASE argument."""
    K, J, I = shape
    folder.mkdir(parents=True, exist_ok=True)
    vol = np.random.default_rng(0).integers(0, 60, shape).astype(dtype)
    masks = {}
    for n, name in enumerate(segments):
        m = np.zeros(shape, np.uint8)
        m[:, J // 4:J // 2, I // 6 + n * I // 3:I // 6 + n * I // 3 + I // 4] = 1     # side by side: one layer
        masks[name] = m
        vol[m > 0] += 80
    write_volume(Image(vol, GEOMETRY), folder / "volume.nrrd")
    write_segmentation(segmentation_from_masks(masks, GEOMETRY), folder / "annotation.seg.nrrd")
    return f"{folder / 'volume.nrrd'}:{folder / 'annotation.seg.nrrd'}"


# ------------------------------------------------------------------------------------------------ headers
def test_headers_give_shape_type_spacing_and_segments_without_the_voxels(tmp_path, monkeypatch):
    _case(tmp_path / "c", (7, 20, 30), ("GM", "GL"), np.int16)
    overlapping = {"A": np.ones((7, 20, 30), np.uint8), "B": np.ones((7, 20, 30), np.uint8)}
    write_segmentation(segmentation_from_masks(overlapping, GEOMETRY), tmp_path / "two-layers.seg.nrrd")
    labels = np.zeros((7, 20, 30), np.uint16)
    labels[2:4, 5:9, 5:9] = 3
    write_volume(Image(labels, GEOMETRY), tmp_path / "labels.nii.gz")
    import ifssnet.io

    monkeypatch.setattr(ifssnet.io, "read_volume", None)          # headers only: no voxel is read
    vol = read_header(tmp_path / "c" / "volume.nrrd")
    assert vol.shape_kji == (7, 20, 30) and vol.itemsize == 2 and vol.spacing_kji == (1.0, 0.5, 0.5)
    assert vol.segments is None and vol.voxels == 7 * 20 * 30
    seg = read_header(tmp_path / "c" / "annotation.seg.nrrd")
    assert (seg.segments, seg.layers, seg.itemsize, seg.spacing_kji) == (2, 1, 1, (1.0, 0.5, 0.5))
    assert read_header(tmp_path / "two-layers.seg.nrrd").layers == 2
    lab = read_header(tmp_path / "labels.nii.gz")
    assert lab.segments is None and lab.itemsize == 2 and lab.shape_kji == (7, 20, 30)

    shape = train_memory.case_shape(tmp_path / "c" / "volume.nrrd", tmp_path / "c" / "annotation.seg.nrrd")
    assert (tuple(shape.shape_kji), shape.itemsize, shape.segments, shape.slice_spacing_mm) == ((7, 20, 30), 2, 2, 1.0)
    assert train_memory.case_shape(tmp_path / "c" / "volume.nrrd", tmp_path / "c" / "annotation.seg.nrrd",
                                   ["GM"]).segments == 1


def test_a_header_that_is_not_a_3d_scalar_image_is_refused_as_the_read_would(tmp_path):
    sitk.WriteImage(sitk.Image([30, 20], sitk.sitkUInt8), str(tmp_path / "frame.nrrd"))
    with pytest.raises(VolumeError, match="2-D image"):
        read_header(tmp_path / "frame.nrrd")
    with pytest.raises(VolumeError, match="2-D image"):
        read_volume(tmp_path / "frame.nrrd")
    (tmp_path / "broken.seg.nrrd").write_bytes(b"not a nrrd")
    with pytest.raises(Exception, match="Could not read the segmentation") as from_header:
        read_header(tmp_path / "broken.seg.nrrd")
    with pytest.raises(Exception, match="Could not read the segmentation") as from_read:
        read_segmentation(tmp_path / "broken.seg.nrrd")
    assert type(from_header.value) is type(from_read.value)
    with pytest.raises(Exception, match="does not exist"):
        read_header(tmp_path / "missing.nrrd")


# ----------------------------------------------------------------------------------------------- estimate
def test_the_estimate_grows_with_the_number_and_the_size_of_the_cases():
    one = CaseShape((200, 256, 256), 1, 2, slice_spacing_mm=1.0)
    base = estimate_training_bytes([one], 128)
    store = train_memory.case_store_bytes(200, 128, 2)
    assert estimate_training_bytes([one, one], 128) >= base + store
    assert estimate_training_bytes([one] * 10, 128) >= base + 9 * store
    longer = CaseShape((800, 256, 256), 1, 2, slice_spacing_mm=1.0)
    assert estimate_training_bytes([longer], 128) > base
    wider = CaseShape((200, 512, 512), 2, 3, slice_spacing_mm=1.0)
    # Reading a case holds its volume, its masks and one mask's float32 copy at full resolution.
    assert estimate_training_bytes([wider], 128) - memory.OVERHEAD_BYTES >= (2 + 3 + 4) * 200 * 512 * 512
    # The working size, the batch, the run length and the width each grow the network's share.
    assert estimate_training_bytes([one], 256) > 3 * (base - memory.OVERHEAD_BYTES)
    for option in ({"batch": 4}, {"run_length": 64}, {"width_mult": 2.0}, {"cycle": True}):
        assert estimate_training_bytes([one], 128, **option) > base, option
    # A network trained on a GPU keeps its working memory there.
    assert estimate_training_bytes([one], 128, on_gpu=True) < base
    # Validation reads one held-out case at a time.
    val = estimate_training_bytes([one], 32, validation=[wider])
    assert val > estimate_training_bytes([one], 32)
    assert estimate_training_bytes([one], 32, validation=[wider, wider]) == val
    # A case finer than the network keeps a thinned copy beside it.
    fine = CaseShape((200, 256, 256), 1, 2, slice_spacing_mm=0.25)
    assert estimate_training_bytes([fine], 128, network_mm=1.0) > estimate_training_bytes([fine], 128)
    # The paper's scale (29 sweeps of 1400 x 512 x 512, 3 muscles, S = 128, width 0.5) needs a few GB.
    paper = CaseShape((1400, 512, 512), 1, 3, read_bytes=5 * 1400 * 512 * 512, slice_spacing_mm=0.5)
    assert 4e9 < estimate_training_bytes([paper] * 29, 128, width_mult=0.5) < 12e9


def test_the_refusal_says_what_is_needed_what_is_free_and_what_to_do():
    with pytest.raises(ResourceError) as err:
        train_memory.check_training_memory(int(7.6e9), available=int(3.1e9))
    msg = str(err.value)
    assert msg.startswith("This training run needs about 7.6 GB of memory, 3.1 GB are free.")
    for hint in ("fewer or smaller cases", "--size", "--batch", "--run-length", "close other programs",
                 "IFSSNET_AVAILABLE_MEMORY"):
        assert hint in err.value.todo, hint
    train_memory.check_training_memory(int(1e9), available=int(3.1e9))
    # The propagation's message is as it was.
    with pytest.raises(ResourceError, match="propagate fewer segments"):
        memory.check_memory(int(7.6e9), available=int(3.1e9))


# ---------------------------------------------------------------------------------------------- ifssnet train
def test_ifssnet_train_refuses_a_run_too_large_before_it_reads_a_case_or_writes(tmp_path, capsys, monkeypatch):
    import ifssnet.train_cli

    case = _case(tmp_path / "c")
    out, log = tmp_path / "out" / "m.pt", tmp_path / "out" / "log.jsonl"
    out.parent.mkdir()
    out.write_bytes(b"an earlier model")
    card = out.with_suffix(".md")
    card.write_text("# m\n")
    read = []
    real_load = ifssnet.train_cli.load_case
    monkeypatch.setattr(ifssnet.train_cli, "load_case", lambda *a, **k: read.append(a) or real_load(*a, **k))
    monkeypatch.setenv(memory.ENV_VAR, "20M")
    code = main(["train", case, "--out", str(out), "--log", str(log), "--epochs", "1", "--steps", "1", *TINY])
    line = error_line(capsys.readouterr()[1])
    assert code == 4 and "This training run needs about" in line and "0.02 GB are free" in line
    assert "--run-length" in line and "IFSSNET_AVAILABLE_MEMORY" in line
    assert read == []
    assert out.read_bytes() == b"an earlier model" and card.read_text() == "# m\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["m.md", "m.pt"]

    monkeypatch.setenv(memory.ENV_VAR, "64G")
    code = main(["train", case, "--out", str(out), "--log", str(log), "--epochs", "1", "--steps", "1", *TINY])
    assert code == 0 and len(read) == 1 and out.read_bytes() != b"an earlier model" and log.exists()


def test_ifssnet_train_counts_validation_cases_and_leaves_an_unreadable_one_to_the_validator(tmp_path, capsys,
                                                                                         monkeypatch):
    import ifssnet.train_cli

    needs = []
    monkeypatch.setattr(train_memory, "check_training_memory", lambda need, available=None: needs.append(need))
    monkeypatch.setattr(ifssnet.train_cli, "load_case", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    small = _case(tmp_path / "small")
    big = _case(tmp_path / "big", (60, 200, 200), ("GM", "GL"))
    args = ["--out", str(tmp_path / "m.pt"), "--epochs", "1", "--steps", "1", *TINY]
    for extra in ([], ["--val", big], ["--val", f"{tmp_path / 'missing.nrrd'}:{tmp_path / 'missing.seg.nrrd'}"]):
        main(["train", small, *args, *extra])
    err = capsys.readouterr()[1]
    assert needs[1] > needs[0] and needs[2] == needs[0]     # a missing file: left to the validator's own message
    assert "Validation file" in err and "does not exist" in err


def test_image_mode_counts_its_batch_as_windows_not_runs(tmp_path, monkeypatch):
    """--mode image trains the encoder on --batch single windows: its step is counted as runs of one slice (it
    was counted as runs of --run-length, so gpu_session.sh's batch of 16 windows needed "60.7 GB")."""
    import ifssnet.train_cli

    needs = []
    monkeypatch.setattr(train_memory, "check_training_memory", lambda need, available=None: needs.append(need))
    monkeypatch.setattr(ifssnet.train_cli, "load_case", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    case = _case(tmp_path / "c")
    for mode in ("full", "image"):
        main(["train", case, "--mode", mode, "--out", str(tmp_path / "m.pt"), "--batch", "16", "--run-length", "32",
              "--size", "64", "--width-mult", "0.5"])
    step = train_memory.network_training_bytes
    assert needs[0] - needs[1] == step(64, 0.5, 16, 32) - step(64, 0.5, 16, 1)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS is read from Linux's VmHWM")
def test_a_small_training_run_stays_within_its_estimate_and_grows_with_its_case_as_the_estimate(tmp_path,
                                                                                               monkeypatch):
    """Measured peak resident memory of ``ifssnet train`` (reading the case, 1 step) is within the estimate the
    check computes, and a larger volume grows the peak by no more than it grows the estimate (reading it: the
    volume, its masks, one mask's float32 copy and its padded copy). Measured with this set-up: the first run in a
    fresh process (imports, torch's first allocations) 346 MiB of 371 estimated (the fixed overhead covers it);
    40 x 64 x 64 again 44 MiB; the growth to 120 x 200 x 320 (2 segments) 0.57 of the estimate's growth."""
    from ifssnet.peak_memory import PeakMemory

    needs = []
    real_check = train_memory.check_training_memory
    monkeypatch.setattr(train_memory, "check_training_memory",
                        lambda need, available=None: needs.append(need) or real_check(need, available))
    monkeypatch.setenv(memory.ENV_VAR, "64G")
    mib = 2 ** 20
    peaks = []
    small = _case(tmp_path / "small", (40, 64, 64))
    for n, case in enumerate((small, small, _case(tmp_path / "big", (120, 200, 320), ("GM", "GL")))):
        with PeakMemory() as mem:              # the first run (imports, torch's first allocations) is not counted
            code = main(["train", case, "--out", str(tmp_path / f"m{n}.pt"), "--epochs", "1", "--steps", "1",
                         "--size", "32", "--width-mult", "0.5", "--run-length", "8"])
        assert code == 0
        peaks.append(mem.peak_mb)
        assert mem.peak_mb <= needs[-1] / mib, (n, mem.peak_mb, needs[-1] / mib)
    growth, expected = peaks[2] - peaks[1], (needs[2] - needs[1]) / mib
    assert 0 < growth <= expected, (growth, expected)


def test_only_a_gpu_device_leaves_the_steps_working_memory_out(monkeypatch):
    import torch

    from ifssnet.train_memory import trains_on_gpu

    assert not trains_on_gpu("cpu") and not trains_on_gpu("CPU")
    assert trains_on_gpu("cuda") and trains_on_gpu("cuda:1") and trains_on_gpu("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not trains_on_gpu("auto") and not trains_on_gpu(None)     # auto on a computer without a GPU: the CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trains_on_gpu("auto")


# ------------------------------------------------------------------------------------ ifssnet train --arch
@pytest.mark.parametrize("arch", ["pgnet", "unet3d"])
def test_a_baseline_run_too_large_is_refused_before_it_reads_a_case_or_writes(arch, tmp_path, capsys, monkeypatch):
    import ifssnet.dataset

    case = _case(tmp_path / "c")
    out, log = tmp_path / "out" / "m.pt", tmp_path / "out" / "log.jsonl"
    out.parent.mkdir()
    out.write_bytes(b"an earlier model")
    read = []
    real_load = ifssnet.dataset.load_case
    monkeypatch.setattr(ifssnet.dataset, "load_case", lambda *a, **k: read.append(a) or real_load(*a, **k))
    monkeypatch.setenv(memory.ENV_VAR, "20M")
    args = ["train", case, "--arch", arch, "--out", str(out), "--log", str(log), "--epochs", "1", "--steps", "1",
            *TINY]
    code = main(args)
    line = error_line(capsys.readouterr()[1])
    assert code == 4 and "This training run needs about" in line and "0.02 GB are free" in line
    assert "--width-mult" in line and "IFSSNET_AVAILABLE_MEMORY" in line and "--batch" not in line
    assert read == []
    assert out.read_bytes() == b"an earlier model" and sorted(p.name for p in out.parent.iterdir()) == ["m.pt"]

    monkeypatch.setenv(memory.ENV_VAR, "64G")
    assert main(args) == 0
    assert len(read) == 1 and out.read_bytes() != b"an earlier model" and log.exists()


@pytest.mark.parametrize("arch", ["pgnet", "unet3d"])
def test_a_baseline_estimate_takes_the_stored_networks_width_and_the_options_size(arch, tmp_path, monkeypatch):
    import ifssnet.dataset

    needs = []
    monkeypatch.setattr(train_memory, "check_training_memory", lambda need, **kw: needs.append(need))
    monkeypatch.setattr(ifssnet.dataset, "load_case", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    case = _case(tmp_path / "c", (40, 64, 64), ("GM", "GL"))
    common = ["--arch", arch, "--epochs", "1", "--steps", "1", "--run-length", "8"]
    for extra in (["--size", "32"], ["--size", "64"], ["--size", "32", "--width-mult", "2"],
                  ["--size", "32", "--device", "cuda"]):
        main(["train", case, "--out", str(tmp_path / "m.pt"), *common, *extra])     # stopped at the first read
    assert needs[1] > needs[0] and needs[2] > needs[0] and needs[3] < needs[0]
    # --from: the stored network's width and size, whatever --width-mult and --size say.
    from ifssnet.baselines.learned_common import save_model
    from ifssnet.baselines.pgnet import PGNet, PGNetConfig
    from ifssnet.baselines.unet3d import UNet3D, UNet3DConfig

    net = (PGNet(PGNetConfig(size=32, width=16)) if arch == "pgnet"
           else UNet3D(UNet3DConfig(size=32, segments=("GM", "GL"), width=16, patch=(8, 32, 32))))
    save_model(tmp_path / "base.pt", net, arch, net.config.to_dict())
    main(["train", case, "--out", str(tmp_path / "m.pt"), *common, "--size", "64", "--width-mult", "2",
          "--from", str(tmp_path / "base.pt")])
    assert len(needs) == 5 and needs[4] == needs[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS is read from Linux's VmHWM")
@pytest.mark.parametrize("arch", ["pgnet", "unet3d"])
def test_a_small_baseline_training_run_stays_within_its_estimate(arch, tmp_path, monkeypatch):
    """Measured peak resident memory of ``ifssnet train --arch`` (reading the case, 2 steps) is within the estimate
    its check computes, the first run in the process (imports, torch's first allocations) included, and a larger
    working size grows the peak by no more than it grows the estimate (the step's working memory). Measured with
    this set-up, the U-Net first in a fresh process: its first run 366 MiB of 387 estimated (the fixed overhead
    covers the imports); again at S = 32 55-71 MiB; the growth to S = 64 169 MiB of 192 (U-Net), 81 of 133
    (PG-Net)."""
    from ifssnet.peak_memory import PeakMemory

    needs = []
    real_check = train_memory.check_training_memory
    monkeypatch.setattr(train_memory, "check_training_memory",
                        lambda need, **kw: needs.append(need) or real_check(need, **kw))
    monkeypatch.setenv(memory.ENV_VAR, "64G")
    case = _case(tmp_path / "c", (40, 64, 96), ("GM", "GL"))
    peaks = []
    for n, size in enumerate((32, 32, 64)):
        with PeakMemory() as mem:
            code = main(["train", case, "--arch", arch, "--out", str(tmp_path / f"m{n}.pt"), "--epochs", "1",
                         "--steps", "2", "--size", str(size), "--run-length", "16"])
        assert code == 0
        peaks.append(mem.peak_mb)
        assert mem.peak_mb <= needs[-1] / 2 ** 20, (n, mem.peak_mb, needs[-1] / 2 ** 20)
    growth, expected = peaks[2] - peaks[1], (needs[2] - needs[1]) / 2 ** 20
    assert growth <= expected, (growth, expected)
