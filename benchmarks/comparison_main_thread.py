"""How long the Comparison module's main-thread steps take (``prepare`` and ``publish``, which read and write MRML in
Slicer's Qt main loop), against ``compute`` (the worker thread), on one case folder (``volume.nrrd`` and
``reference.seg.nrrd``, e.g. a 400 x 128 x 128 test phantom), on slicer-core's real MRML, headless.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/comparison_main_thread.py .data/test/s1000 --methods fbs,gfs,ws
    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/comparison_main_thread.py .data/test/s1000 --painted

``--painted``: the protocol 'seeds', from a seed segmentation painted on the slices ``3-seeds`` cuts (prepare then
also reads the seed segments and their tags, as with the user's painted seeds).

Prints one line per step and sub-step, in seconds (one run: a one-off timing, not a benchmark).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _timed(label, fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    print(f"{label:45s} {time.perf_counter() - start:7.3f} s", flush=True)
    return out


def _load(case: Path):
    """The case's volume and reference as MRML nodes (as Slicer loads them)."""
    import slicer

    from ifssnet.io import read_segmentation, read_volume
    from IFSSNetSegmentationLib import mrml_arrays as A

    image = read_volume(case / "volume.nrrd")
    ijkToRas = np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.geometry.ijk_to_lps
    volumeNode = slicer.util.addVolumeFromArray(image.array, ijkToRas, "Volume")
    seg = read_segmentation(case / "reference.seg.nrrd", reference=image.geometry, reference_shape=image.array.shape)
    ref = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Reference")
    ref.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    geometry = A.referenceGeometry(volumeNode, ref)
    for name in seg.names:
        A.writeSegment(ref, ref.GetSegmentation().AddEmptySegment("", name), seg.mask(name), geometry)
    return volumeNode, ref


def _painted(volumeNode, ref):
    """A seed segmentation with each reference segment painted on the slices the protocol '3-seeds' cuts."""
    import slicer

    from ifssnet.compare import protocol_seeds
    from IFSSNetSegmentationLib import mrml_arrays as A

    seeds = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Seeds")
    seeds.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    geometry = A.referenceGeometry(volumeNode, ref)
    for n in range(ref.GetSegmentation().GetNumberOfSegments()):
        segment = ref.GetSegmentation().GetNthSegment(n)
        mask = A.segmentToArray(ref, ref.GetSegmentation().GetNthSegmentID(n), geometry)
        cut = protocol_seeds(mask, "3-seeds")
        painted = np.zeros_like(mask)
        painted[list(cut.slices)] = mask[list(cut.slices)]
        A.writeSegment(seeds, seeds.GetSegmentation().AddEmptySegment("", segment.GetName()), painted,
                       A.referenceGeometry(volumeNode, seeds))
    return seeds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("case", type=Path, help="folder with volume.nrrd and reference.seg.nrrd")
    p.add_argument("--methods", default="fbs,gfs,ws", help="comma-separated method names (default fbs,gfs,ws)")
    p.add_argument("--protocol", default="3-seeds")
    p.add_argument("--painted", action="store_true", help="protocol 'seeds' from painted seed slices (see above)")
    args = p.parse_args(argv)
    for folder in (ROOT / "Testing", ROOT / "IFSSNetSegmentation", ROOT / "IFSSNetComparison"):
        sys.path.insert(0, str(folder))
    from slicer_fixture import install

    install()
    from IFSSNetComparisonLib import logic as C
    from IFSSNetSegmentationLib import mrml_arrays as A

    volumeNode, ref = _load(args.case)
    print("volume", " x ".join(map(str, A.volumeToArray(volumeNode).shape)), "segments",
          ref.GetSegmentation().GetNumberOfSegments())
    seedNode, protocol = None, args.protocol
    if args.painted:
        seedNode, protocol = _painted(volumeNode, ref), "seeds"
    L = C.IFSSNetComparisonLogic()
    methods = args.methods.split(",")
    # sub-steps of prepare, each as prepare runs it
    _timed("  volumeToArray", A.volumeToArray, volumeNode)
    geometry = A.referenceGeometry(volumeNode, ref)
    sid = ref.GetSegmentation().GetNthSegmentID(0)
    _timed("  segmentToArray (one segment)", A.segmentToArray, ref, sid, geometry)
    job = _timed("prepare (main thread)", L.prepare, volumeNode, seedNode, ref, methods, protocol)
    _timed("compute (worker thread)", L.compute, job, cancel=lambda: False)
    rows = job["rows"]
    created = []
    _timed("  _metricsTable", L._metricsTable, rows, created)
    byMethod = {}
    for r in rows:
        byMethod.setdefault(C.methodLabel(r["method"]), {})[r["muscle"]] = r["mask"]
    label, masks = next(iter(byMethod.items()))
    _timed("  mask.full() (one mask)", lambda: [m.full() for m in list(masks.values())[:1]])
    _timed(f"  _resultSegmentation ({len(masks)} segments)", L._resultSegmentation, volumeNode, ref, label, masks,
           created)
    for node in created:
        slicer_scene = node.GetScene()
        if slicer_scene is not None:
            slicer_scene.RemoveNode(node)
    _timed(f"publish (main thread, {len(byMethod)} segmentations)", L.publish, job)
    return 0


if __name__ == "__main__":
    sys.exit(main())
