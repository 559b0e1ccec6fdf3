"""Logic of the IFSS-Net Comparison module: run several methods from the same seeds and tabulate the metrics.

Imports ``slicer`` (MRML), ``vtk``, ``numpy`` and ``ifssnet`` only (no qt, ctk or ScriptedLoadableModule).
Every method runs through the core runner ``ifssnet.compare.compare`` (registered methods, timing, memory,
scores from ``ifssnet.metrics``). This file only moves data between MRML and numpy (transposing so that
the seed slices' axis comes first, as the core expects) and builds the table, plot and segmentation nodes.

Outputs: one table node (one row per method and segment), a "Dice along the sweep" chart, a "Volume error"
chart (signed: ``volume_diff_pct``, as ``ifssnet compare --plot`` draws it), and one segmentation node per
method holding its result. A cancelled or failed run removes every node it created, so the scene is as it was.

Cancel. ``compute`` with a cancel flag (the module runs it on a worker thread) gives Fill between slices
and Grow from seeds ``isolate="auto"`` unless ``methodOptions`` set it: their ITK filter on a large crop
(4 M voxels for Grow from seeds, 40 M for Fill between slices) runs in a child process that Cancel kills
at once. In this process FastGrowCut sees no cancel and holds Python's GIL, which Slicer's own Python
(the Cancel button's handler included) then waits for; the contour interpolator polls rarely. A smaller
crop runs here, because loading ITK in a child costs more than the run: 4-8 s (FastGrowCut) and about
12 s (contour interpolator) on 2 shared cores, against 0.06-0.14 s for Grow from seeds on the 3-seeds
crops of a 400 x 128 x 128 phantom (``ifssnet.baselines.child_process``). Watershed runs here:
SimpleITK's progress events see cancel several times a second (at most 0.21 s apart on that phantom).
"""
from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence

import numpy as np
import slicer
import vtk

from ifssnet.errors import InputError, SeedError
from ifssnet.progress import check_cancel, report
from ifssnet.seeds import PROTOCOLS as _CORE_PROTOCOLS

from IFSSNetSegmentationLib import logic as segmentationLogic
from IFSSNetSegmentationLib import mrml_arrays as mrmlArrays

PROTOCOLS = ("seeds",) + tuple(_CORE_PROTOCOLS)   # the painted slices, or cut from the reference
METHOD_LABELS = {"ifssnet": "IFSS-Net", "fbs": "Fill between slices", "gfs": "Grow from seeds",
                 "ws": "Watershed", "pgnet": "PG-Net", "unet3d": "3-D U-Net"}


def methodLabel(method) -> str:
    if not isinstance(method, str):
        return getattr(method, "__name__", "custom")
    try:
        from ifssnet.baselines import registry

        return registry.label(method)
    except Exception:  # an unknown or unregistered name keeps its own label
        return METHOD_LABELS.get(method, method)


def availableMethods() -> List[str]:
    """Method names the core can run here (the registry's, IFSS-Net included when torch is present)."""
    try:
        from ifssnet.baselines import registry

        return list(registry.available())
    except Exception:
        return []


def _uniqueName(name: str) -> str:
    """``name``, or ``name (2)``, ``name (3)``... where the scene has a node of that name already."""
    unique, n = name, 1
    while slicer.mrmlScene.GetFirstNodeByName(unique) is not None:
        n += 1
        unique = f"{name} ({n})"
    return unique


def _doubleColumn(name: str, values) -> "vtk.vtkDoubleArray":
    """A table column ``name`` holding ``values`` as doubles (NaN stays NaN: a plot leaves that point out)."""
    column = vtk.vtkDoubleArray()
    column.SetName(name)
    column.SetNumberOfTuples(len(values))
    for i, v in enumerate(values):
        column.SetValue(i, float(v))
    return column


def _newNode(className: str, name: str):
    """A new node of ``className`` named ``name``, or ``name (2)``, ``name (3)``... where the scene has a node of that
    name already: a second comparison's table, charts, plot series and result segmentations are told apart from the
    first's (and from a node of the user's that happens to bear the name) in the Data module, the node selectors and
    the plots' legends."""
    return slicer.mrmlScene.AddNewNodeByClass(className, _uniqueName(name))


def _segmentIdByName(segmentationNode, name: str) -> Optional[str]:
    sid = segmentationNode.GetSegmentation().GetSegmentIdBySegmentName(name)
    return sid or None


def _requireUniqueNames(segmentationNode, names: Sequence[str], role: str) -> None:
    """Refuse a name of ``names`` that more than one segment of ``segmentationNode`` bears (Slicer allows it, and
    finds a segment by its name ignoring letter case: the second would be read as the first), as the command line
    does (``ifssnet.io.check_unique_names``)."""
    segmentation = segmentationNode.GetSegmentation()
    have = [segmentation.GetNthSegment(n).GetName().lower() for n in range(segmentation.GetNumberOfSegments())]
    twice: List[str] = []
    for name in names:
        if have.count(name.lower()) > 1 and name.lower() not in (t.lower() for t in twice):
            twice.append(name)
    if twice:
        raise InputError(f"{role} '{segmentationNode.GetName()}' has more than one segment named "
                         f"{', '.join(map(repr, twice))} (letter case aside): the second would be read as the first.",
                         "Give each segment its own name (Segment Editor: double-click the name), then compare again.")


#: The methods' colours in the plots, in the order the methods ran: matplotlib's tab10, as ``ifssnet compare --plot``
#: draws them.
METHOD_COLORS = segmentationLogic.SERIES_COLORS


def _seriesStyles(rows) -> Dict[str, tuple]:
    """``{"<method label> <muscle>": (colour, line style)}`` for the "Dice along the sweep" series: a colour per method
    (``METHOD_COLORS``), a line style per muscle (solid, dash, dot, dash-dot, ...), so each series can be told apart
    in the plot; a plot series node is black unless its colour is set."""
    colors = _methodColors(rows)
    muscles = list(dict.fromkeys(r["muscle"] for r in rows))
    P = slicer.vtkMRMLPlotSeriesNode
    lines = (P.LineStyleSolid, P.LineStyleDash, P.LineStyleDot, P.LineStyleDashDot, P.LineStyleDashDotDot)
    return {f"{m} {mu}": (color, lines[j % len(lines)]) for m, color in colors.items() for j, mu in enumerate(muscles)}


def _methodColors(rows) -> Dict[str, tuple]:
    """``{method label: RGB in [0, 1]}``: ``METHOD_COLORS`` in the order the methods ran, the colour of the method's
    lines in "Dice along the sweep" and of its result segmentation's segments."""
    methods = list(dict.fromkeys(methodLabel(r["method"]) for r in rows))
    return {m: METHOD_COLORS[i % len(METHOD_COLORS)] for i, m in enumerate(methods)}


def _muscleShade(color, n: int) -> tuple:
    """The ``n``-th muscle's shade of a method's colour (RGB in [0, 1]): the colour itself for the first, then darker
    (odd ``n``) and lighter (even ``n``) shades of it, so that touching muscles of one method's result can be told
    apart in the views while the hue still names the method."""
    if n == 0:
        return tuple(color)
    step = min(0.6, 0.3 * ((n + 1) // 2))
    target = 0.0 if n % 2 else 1.0
    return tuple(c + (target - c) * step for c in color)


def _requireSeedSegments(seedSegmentationNode, names: Sequence[str]) -> None:
    """Refuse a seed segmentation without a segment of ``names`` (the reference's segments compared), naming all that
    it lacks and what to do: compare the segments it holds (the module's Segments list, ``segmentNames``) or paint."""
    missing = [name for name in names if _segmentIdByName(seedSegmentationNode, name) is None]
    if not missing:
        return
    segmentation = seedSegmentationNode.GetSegmentation()
    have = [segmentation.GetNthSegment(n).GetName() for n in range(segmentation.GetNumberOfSegments())]
    held = [name for name in names if name not in missing]
    seedName = seedSegmentationNode.GetName()
    todo = f"Paint {', '.join(missing)} in '{seedName}' (segments named as the reference's), "
    if held:
        todo += f"or compare on {', '.join(held)} alone: {_chooseSegments(held)}; "
    else:
        todo += "or rename its segments as the reference's (double-click the name in Segment Editor); "
    raise SeedError(f"The seed segmentation '{seedName}' has no segment named {', '.join(map(repr, missing))} "
                    f"(it has: {', '.join(have) or 'none'}).",
                    todo + "or use protocol '3-seeds' to cut the seeds from the reference.")


def _chooseSegments(names: Sequence[str]) -> str:
    """How to compare on ``names`` alone, in the module and from the Python console."""
    return (f"tick {', '.join(names)} alone in the module's Segments list (from the Python console: "
            f"segmentNames={list(names)!r})")


class _ComparisonSlot:
    """A comparison as the holder of Slicer's one propagation slot (``IFSSNetSegmentationLogic._acquire``, which the
    Segmentation module page and its Segment Editor effect share): the ``GetID`` / ``GetName`` the slot keys and names
    its holder by. A comparison runs the same networks and baselines as Propagate (IFSS-Net, with its memory check
    that counts one run), so it takes the slot too; a Propagate meanwhile is refused naming it."""

    def __init__(self, referenceSegmentationNode) -> None:
        self._key = f"IFSSNetComparison:{id(self)}"
        self._name = f"IFSS-Net Comparison against {referenceSegmentationNode.GetName()}"

    def GetID(self) -> str:
        return self._key

    def GetName(self) -> str:
        return self._name


def takePropagationSlot(referenceSegmentationNode) -> _ComparisonSlot:
    """Take Slicer's one propagation slot for a comparison against ``referenceSegmentationNode`` (give it back with
    ``releasePropagationSlot``), or raise InputError naming the propagation or comparison that holds it."""
    slot = _ComparisonSlot(referenceSegmentationNode)
    try:
        segmentationLogic.IFSSNetSegmentationLogic._acquire(slot)
    except InputError as err:   # the slot's own words end in "propagate again"
        raise InputError(f"{err.what} A comparison runs the same networks, and one runs at a time.",
                         "Wait for it to finish or cancel it, then compare again.") from err
    return slot


def releasePropagationSlot(slot: Optional[_ComparisonSlot]) -> None:
    if slot is not None:
        segmentationLogic.IFSSNetSegmentationLogic._release(slot)


class IFSSNetComparisonLogic:
    """``compare(volumeNode, seedSegmentationNode, referenceSegmentationNode, methods, protocol, progress=None,
    cancel=None, *, segmentNames=None, joint=False, model=None, device="auto") -> vtkMRMLTableNode``

    ``protocol``: ``"seeds"`` uses the painted slices of ``seedSegmentationNode``; ``"3-seeds"``, ``"paper"`` and
    ``"3-seeds+ends"`` take the seed slices from the reference (``ifssnet.seeds.protocol_slices``), so
    ``seedSegmentationNode`` may be None. ``segmentNames``: the reference's segments compared (None: all).
    ``model`` / ``device``: the IFSS-Net checkpoint and the learned methods' device, as ``ifssnet compare --model
    --device``. ``joint``: the methods that can (IFSS-Net, PG-Net) segment all
    muscles of one axis in one run, as Propagate does with several segments (``ifssnet.compare``; they do
    not overlap unless ``methodOptions={"ifssnet": {"exclusive": False}}``). Fill between slices always runs on all
    muscles of one axis at once, as Slicer's effect interpolates all visible segments (in the reference's segment
    order: where two muscles' interpolations meet, the later one takes the voxel). After a run, ``lastResult``
    holds the table, the two chart nodes, the result segmentation per method, the rows, and ``notes``: sentences
    about seed slices read otherwise than painted (``notes``), as Propagate's summary has them.

    A comparison holds Slicer's one propagation slot while it runs (``takePropagationSlot``), as Propagate does: a
    Propagate meanwhile (the Segmentation module page, its effect) is refused naming the comparison, and a comparison
    is refused while a Propagate runs, before it adds anything.
    """

    def __init__(self) -> None:
        self.lastResult: Dict[str, object] = {}

    def compare(self, volumeNode, seedSegmentationNode, referenceSegmentationNode, methods: Sequence,
                protocol: str = "seeds", progress=None, cancel=None, *,
                segmentNames: Optional[Sequence[str]] = None, createSegmentations: bool = True,
                methodOptions: Optional[dict] = None, joint: bool = False, model=None, device: str = "auto"):
        job = self.prepare(volumeNode, seedSegmentationNode, referenceSegmentationNode, methods, protocol,
                           progress=progress, segmentNames=segmentNames, methodOptions=methodOptions, joint=joint,
                           model=model, device=device)
        slot = takePropagationSlot(referenceSegmentationNode)   # one propagation or comparison at a time in Slicer
        try:
            self.compute(job, progress=progress, cancel=cancel)
            check_cancel(cancel)
            return self.publish(job, progress=progress, createSegmentations=createSegmentations)
        finally:
            releasePropagationSlot(slot)

    @mrmlArrays.outOfMemoryAsResourceError("reading the volume and the segmentations")
    def prepare(self, volumeNode, seedSegmentationNode, referenceSegmentationNode, methods: Sequence,
                protocol: str = "seeds", *, progress=None, segmentNames: Optional[Sequence[str]] = None,
                methodOptions: Optional[dict] = None, joint: bool = False, model=None,
                device: str = "auto") -> dict:
        """Main thread: read the volume, the reference and the seeds (MRML -> numpy). Changes nothing.

        ``segmentNames``: the reference's segments to compare (None: all). ``model``: the IFSS-Net checkpoint (a path,
        or None / "" for the shipped one; read when the run starts, on the worker thread); ``device``: ``auto`` |
        ``cpu`` | ``cuda`` for the learned methods, as ``ifssnet compare --model --device``
        (``ifssnet.compare.network_options``); ``methodOptions`` override them per method."""
        if referenceSegmentationNode is None:
            raise InputError("No reference segmentation is selected.", "Select the complete (ground truth) segmentation.")
        if not methods:
            raise InputError("No method is selected.", "Tick at least one method to compare.")
        if protocol not in PROTOCOLS:
            raise InputError(f"Unknown protocol '{protocol}'.", f"Use one of: {', '.join(PROTOCOLS)}.")
        if protocol == "seeds" and seedSegmentationNode is None:
            raise InputError("The 'seeds' protocol needs a seed segmentation.", "Select it, or use protocol '3-seeds'.")
        if protocol == "seeds" and seedSegmentationNode is not None and (
                seedSegmentationNode.GetID() == referenceSegmentationNode.GetID()):
            raise InputError(f"The seed segmentation '{seedSegmentationNode.GetName()}' is the reference itself: every "
                             "slice of each muscle would be a seed, and every method would score a Dice of 1.",
                             "Select the segmentation with your painted seed slices, or use protocol '3-seeds' to "
                             "cut the seeds from the reference.")
        options = self._methodOptions(methods, model, device, methodOptions)
        mrmlArrays.requireSegmentationNode(referenceSegmentationNode, "The reference")
        mrmlArrays.requireSegmentationNode(seedSegmentationNode if protocol == "seeds" else None, "The seed segmentation")
        segLogic = segmentationLogic.IFSSNetSegmentationLogic()
        report(progress, "preparing", 0, 1)
        volume = mrmlArrays.volumeToArray(volumeNode)
        from ifssnet.preprocess import check_image

        check_image(volume)  # a 2-D image (Slicer holds it one slice thick): before reading any segment
        spacing = mrmlArrays.spacingKji(volumeNode)
        refGeometry = mrmlArrays.referenceGeometry(volumeNode, referenceSegmentationNode)
        reference = referenceSegmentationNode.GetSegmentation()
        names = list(segmentNames) if segmentNames else [reference.GetSegment(s).GetName() for s in reference.GetSegmentIDs()]
        if not names:
            raise SeedError("The reference segmentation has no segments.", "Load the complete segmentation.")
        _requireUniqueNames(referenceSegmentationNode, names, "The reference")
        if protocol == "seeds":
            _requireUniqueNames(seedSegmentationNode, names, "The seed segmentation")
        refs: Dict[str, np.ndarray] = {}
        seedJobs: List[segmentationLogic.SegmentJob] = []
        for name in names:
            rid = _segmentIdByName(referenceSegmentationNode, name)
            if rid is None:
                have = [reference.GetSegment(s).GetName() for s in reference.GetSegmentIDs()]
                raise InputError(f"The reference has no segment '{name}'.",
                                 f"Choose one of its segments: {', '.join(have) or '(none)'}.")
            refs[name] = mrmlArrays.segmentToArray(referenceSegmentationNode, rid, refGeometry)
        if protocol == "seeds":   # after the reference's names: a name it lacks is the one to fix first
            _requireSeedSegments(seedSegmentationNode, names)
        empty = [name for name in names if not refs[name].any()]
        if empty:   # the core says so too, but with the command line's --segment for what to do
            others = [name for name in names if name not in empty]
            raise SeedError(f"Reference segment {', '.join(map(repr, empty))} is empty (no voxel on this volume's "
                            "grid): there is nothing to score against.",
                            f"Check that '{referenceSegmentationNode.GetName()}' is the complete (ground truth) "
                            "segmentation of this volume" + (
                                f", or compare on {', '.join(others)} alone: {_chooseSegments(others)}."
                                if others else "."))
        for name in names:
            notes: List[str] = []
            if protocol == "seeds":
                sid = _segmentIdByName(seedSegmentationNode, name)
                geometry = mrmlArrays.referenceGeometry(volumeNode, seedSegmentationNode)
                painted = mrmlArrays.segmentToArray(seedSegmentationNode, sid, geometry)
                # as Propagate reads them: tags recorded on another grid (IFSSNet.SeedGrid) mapped onto this volume's
                try:
                    axis, slices = segLogic._seedsOnGrid(seedSegmentationNode, sid, geometry, painted, notes,
                                                         volumeName=volumeNode.GetName())
                except SeedError as err:   # Propagate's reading, in the Comparison's words: compare, not propagate
                    raise type(err)(err.what, err.todo.replace("then propagate", "then compare again")) from err
                self._checkSeeds(name, axis, slices, painted, seedSegmentationNode.GetName())
            else:  # the core runner cuts the seeds from the reference along the sweep (k)
                axis, slices, painted = 0, (), None
            seedJobs.append(segmentationLogic.SegmentJob(name, name, axis, tuple(slices), painted, notes=notes))
        report(progress, "preparing", 1, 1)
        # The nodes themselves, not their IDs: IDs restart after File > Close Scene, so an ID would find the next
        # scene's volume and reference, and the results of this run would be published into it.
        return {"volumeNode": volumeNode, "referenceNode": referenceSegmentationNode,
                "volume": volume, "spacing": spacing, "refs": refs, "seedJobs": seedJobs, "methods": list(methods),
                "protocol": protocol, "methodOptions": options, "joint": bool(joint), "rows": []}

    @staticmethod
    def _methodOptions(methods: Sequence, model, device: str, methodOptions: Optional[dict]) -> dict:
        """The methods' options: ``model`` and ``device`` for the learned methods among ``methods``
        (``ifssnet.compare.network_options``), with ``methodOptions`` on top. A device other than ``auto`` is checked
        here, before the run (``ifssnet.propagate.resolve_device``: unknown, or CUDA where PyTorch sees no GPU)."""
        from ifssnet.compare import NETWORK_METHODS, network_options

        names = [m for m in methods if isinstance(m, str)]
        if (device or "auto") != "auto" and any(m in NETWORK_METHODS for m in names) and (
                segmentationLogic.IFSSNetSegmentationLogic.torchAvailable()):
            from ifssnet.propagate import resolve_device

            resolve_device(device)
        options = network_options(names, model, device)
        for method, extra in (methodOptions or {}).items():
            options[method] = {**options.get(method, {}), **extra}
        return options

    @staticmethod
    def notes(job: dict) -> List[str]:
        """Sentences for the user about seed slices read otherwise than painted, as Propagate's summary has them
        (``IFSSNetSegmentationLogic.notesText``): paint on another volume's grid (``IFSSNet.SeedGrid``) taken as new
        seeds, a painted slice erased since the last run, 'no muscle here' marks across an axis no longer painted.
        Seeds cut from the reference by a protocol are cut across the volume's K axis, as ``ifssnet compare`` cuts
        them: said, since a sweep stored along another axis would be compared across it."""
        notes = [note for seg in job.get("seedJobs", ()) for note in seg.notes]
        if job.get("protocol", "seeds") != "seeds":
            notes.insert(0, f"The '{job['protocol']}' seeds were cut from the reference across the volume's slices as "
                            "stored (its K axis, the third in Slicer's IJK); where the sweep runs along another axis, "
                            "paint the seeds across it and compare with them ('seeds').")
        return notes

    @staticmethod
    def _checkSeeds(name: str, axis: int, slices, painted: np.ndarray, seedNodeName: str) -> None:
        """Propagate's rule for the painted seeds (``ifssnet.compare.check_seeds``), in the main thread before the
        run, with what to do in Slicer: too few painted slices ran every baseline beside IFSS-Net's refusal."""
        from ifssnet.compare import check_seeds
        from ifssnet.seeds import SeedSet

        onSlices = np.take(painted, list(slices), axis=axis) != 0   # the painted slices alone: no volume-sized copy
        check_seeds(name, SeedSet(mask=np.moveaxis(onSlices, axis, 0), slices=range(len(slices))),
                    "Paint {name} on at least 3 slices (consecutive or far apart) in '" + seedNodeName
                    + "', then compare again; or choose the protocol '3-seeds' to cut the seeds from the reference.")

    def compute(self, job: dict, progress=None, cancel=None) -> dict:
        """Any thread: the core runner on numpy arrays, one call per propagation axis. Touches no MRML node. Each
        row's result is kept as its bounding box (``ifssnet.compare.CroppedMask``, on the volume's (k, j, i) axes)
        until ``publish`` writes it."""
        from ifssnet import compare as core

        from ifssnet.baselines.child_process import cancellable_options

        options = self._loadModel(job["methodOptions"]) if "ifssnet" in job["methods"] else job["methodOptions"]
        options = cancellable_options(job["methods"], options) if cancel is not None else options
        byAxis: Dict[int, List[segmentationLogic.SegmentJob]] = {}
        for seg in job["seedJobs"]:
            byAxis.setdefault(seg.axis, []).append(seg)
        rows = []
        for axis, segs in byAxis.items():
            check_cancel(cancel)
            order = [axis] + [a for a in range(3) if a != axis]
            volumeT = np.moveaxis(job["volume"], axis, 0)
            spacingT = tuple(float(job["spacing"][a]) for a in order)
            refsT = {seg.name: np.moveaxis(job["refs"][seg.name], axis, 0) for seg in segs}
            seeds = None
            if job["protocol"] == "seeds":
                seeds = segmentationLogic.seedSetsAlongAxis(segs, axis, volumeT.shape)
            protocol = "3-seeds" if job["protocol"] == "seeds" else job["protocol"]
            found = core.compare(volumeT, refsT, spacingT, job["methods"], protocol, progress=progress,
                                 cancel=cancel, seeds=seeds, method_options=options, keep_masks="cropped",
                                 joint=job.get("joint", False))
            for row in found:
                if row.get("mask") is not None:   # its bounding box (CroppedMask): kept until publish writes it
                    row["mask"] = row["mask"].moveaxis(0, axis)
                row["axis"] = axis
            rows += found
        check_cancel(cancel)
        job["rows"] = rows
        return job

    @staticmethod
    def _loadModel(options: dict) -> dict:
        """``options`` with IFSS-Net's model file (the user's choice) read, as ``ifssnet compare --model`` reads it
        before any work (``ifssnet.propagate.load_model``, the loader every run uses): a file that is not a model
        stops the run with the loader's message before the first method, instead of an error in each of its rows
        after the other methods ran. Worker thread (it imports torch and reads the file)."""
        model = options.get("ifssnet", {}).get("model")
        if not isinstance(model, (str, os.PathLike)) or not str(model):
            return options
        from ifssnet.errors import require

        require("torch")
        from ifssnet.propagate import load_model

        return {**options, "ifssnet": {**options["ifssnet"], "model": load_model(model, "cpu")}}

    @mrmlArrays.outOfMemoryAsResourceError("writing the results")
    def publish(self, job: dict, progress=None, createSegmentations: bool = True):
        """Main thread: the table, the charts and the result segmentations (numpy -> MRML), all or nothing."""
        report(progress, "writing result", 0, 1)
        volumeNode, referenceNode = job["volumeNode"], job["referenceNode"]
        if any(node.GetScene() is None or node.GetScene() != slicer.mrmlScene for node in (volumeNode, referenceNode)):
            raise InputError("The volume or the reference was removed during the run.", "Load it again and compare.")
        shape = tuple(reversed(volumeNode.GetImageData().GetDimensions())) if volumeNode.GetImageData() else ()
        if shape != tuple(job["volume"].shape):   # cropped or replaced meanwhile: the results are of the old grid
            was, now = (" x ".join(str(n) for n in s) or "no" for s in (job["volume"].shape, shape))
            raise InputError(f"The volume '{volumeNode.GetName()}' changed size during the run ({was} voxels, now "
                             f"{now}). Nothing was added.", "Compare again.")
        rows = job["rows"]
        created = []
        try:
            table = self._metricsTable(rows, created)
            sliceDice = {f"{methodLabel(r['method'])} {r['muscle']}": r["slice_dice"] for r in rows
                         if r.get("slice_dice") is not None}
            diceChart = self._diceChart(sliceDice, created, _seriesStyles(rows))
            volumeChart = self._volumeErrorChart(rows, created)
            segmentations = {}
            if createSegmentations:
                byMethod: Dict[str, Dict[str, np.ndarray]] = {}
                for r in rows:
                    if r.get("mask") is not None:
                        byMethod.setdefault(methodLabel(r["method"]), {})[r["muscle"]] = r["mask"]
                colors = _methodColors(rows)
                muscles = list(dict.fromkeys(r["muscle"] for r in rows))   # a muscle's shade alike in every result
                for label, masks in byMethod.items():
                    shades = {mu: _muscleShade(colors[label], muscles.index(mu)) for mu in masks}
                    segmentations[label] = self._resultSegmentation(volumeNode, referenceNode, label, masks, created,
                                                                    shades)
        except BaseException:
            for node in reversed(created):
                if node.GetScene() is not None:
                    slicer.mrmlScene.RemoveNode(node)
            raise
        for r in rows:   # written into the result segmentations: a volume-sized array each, not kept in memory
            r.pop("mask", None)
        report(progress, "writing result", 1, 1)
        self.lastResult = {"table": table, "diceChart": diceChart, "volumeChart": volumeChart,
                           "segmentations": segmentations, "rows": rows, "notes": self.notes(job)}
        return table

    # ---- the results layout's views -------------------------------------------------------------

    #: The Comparison module's results layout: (view node class, singleton tag) of its table view and its two plot
    #: views (the widget's layout XML names the same tags).
    RESULT_VIEWS = (("vtkMRMLTableViewNode", "IFSSNetTable"), ("vtkMRMLPlotViewNode", "IFSSNetPlot1"),
                    ("vtkMRMLPlotViewNode", "IFSSNetPlot2"))

    def showInResultViews(self, table, charts: Sequence) -> int:
        """Show ``table`` in the results layout's table view and ``charts`` (Dice along the sweep, volume error) in
        its two plot views, through their view nodes (found by singleton tag once the layout is set), and take these
        views out of Slicer's table and plot selection (``SetDoPropagateTableSelection(False)``,
        ``SetDoPropagatePlotChartSelection(False)``): ``PropagateTableSelection`` / ``PropagatePlotChartSelection``
        (vtkMRMLApplicationLogic.cxx) set the active table / chart in every view node that allows it, so Segment
        Statistics' table (the Segmentation module's Show volume, ``SegmentStatisticsLogic.showTable``) or the
        Training module's loss chart replaced the comparison's results in these views. Returns the number of views
        found (0 where the layout was not set)."""
        found = 0
        for (cls, tag), node in zip(self.RESULT_VIEWS, [table] + list(charts)):
            view = slicer.mrmlScene.GetSingletonNode(tag, cls)
            if view is None:
                continue
            found += 1
            if cls == "vtkMRMLTableViewNode":
                view.SetDoPropagateTableSelection(False)
                view.SetTableNodeID(node.GetID())
            else:
                view.SetDoPropagatePlotChartSelection(False)
                view.SetPlotChartNodeID(node.GetID())
        return found

    # ---- node builders -------------------------------------------------------------------------

    @staticmethod
    def _metricsTable(rows, created):
        """One row per (method, muscle) with the core runner's columns (``ifssnet.compare.COLUMNS``), each with its
        unit and description (``ifssnet.compare.COLUMN_INFO``: the header's tooltip in Slicer's table view)."""
        from ifssnet.compare import COLUMN_INFO, COLUMNS

        node = _newNode("vtkMRMLTableNode", "IFSS-Net comparison")
        created.append(node)
        table = node.GetTable()
        textual = [c for c in COLUMNS if any(isinstance(r.get(c), str) for r in rows) or c in ("method", "muscle")]
        for name in COLUMNS:
            column = vtk.vtkStringArray() if name in textual else vtk.vtkDoubleArray()
            column.SetName(name)
            table.AddColumn(column)
        table.SetNumberOfRows(len(rows))
        for r, row in enumerate(rows):
            for c, name in enumerate(COLUMNS):
                value = row.get(name)
                if name in textual:
                    text = methodLabel(value) if name == "method" else ("" if value is None else str(value))
                    table.SetValue(r, c, vtk.vtkVariant(text))
                else:
                    table.SetValue(r, c, vtk.vtkVariant(float("nan") if value is None else float(value)))
        for name in COLUMNS:
            unit, description = COLUMN_INFO.get(name, ("", ""))
            node.SetColumnUnitLabel(name, unit)
            node.SetColumnDescription(name, description)
        node.Modified()
        return node

    @staticmethod
    def _chart(title, xTitle, yTitle, created):
        chart = _newNode("vtkMRMLPlotChartNode", title)
        created.append(chart)
        chart.SetTitle(title)
        chart.SetXAxisTitle(xTitle)
        chart.SetYAxisTitle(yTitle)
        return chart

    def _diceChart(self, sliceDice: Dict[str, np.ndarray], created, styles: Optional[dict] = None):
        tableNode = _newNode("vtkMRMLTableNode", "IFSS-Net Dice along the sweep")
        created.append(tableNode)
        length = max((len(v) for v in sliceDice.values()), default=0)
        arrays = [np.arange(length, dtype=float)] + [np.pad(v, (0, length - len(v)), constant_values=np.nan)
                                                      for v in sliceDice.values()]
        table = tableNode.GetTable()
        for name, values in zip(["slice"] + list(sliceDice), arrays):
            table.AddColumn(_doubleColumn(name, values))
        chart = self._chart("Dice along the sweep", "slice", "Dice", created)
        for name in sliceDice:   # the series (its legend entry) named as no other node: "IFSS-Net GM (2)" on a rerun
            unique = _uniqueName(name)
            series = segmentationLogic.addLinePlotSeries(slicer.mrmlScene, chart, tableNode, name, "slice")
            created.append(series)
            series.SetName(unique)
            color, lineStyle = (styles or {}).get(name, (None, None))
            if color is not None:   # else every series is black (a plot series node's default colour)
                series.SetColor(*color)
                series.SetLineStyle(lineStyle)
        return chart

    def _volumeErrorChart(self, rows, created):
        """The signed volume error (``volume_diff_pct``: + larger, - smaller than the reference) as grouped bars: a
        row per segment, a column and a bar series per method in the method's colour (``_methodColors``, as its
        lines in "Dice along the sweep" and its result segmentation), so each bar says whose it is and the legend
        names the methods. NaN where a method has no row for a segment (VTK leaves that bar out)."""
        tableNode = _newNode("vtkMRMLTableNode", "IFSS-Net volume error")
        created.append(tableNode)
        table = tableNode.GetTable()
        muscles = list(dict.fromkeys(r["muscle"] for r in rows))
        colors = _methodColors(rows)
        errors = {m: [float("nan")] * len(muscles) for m in colors}
        for row in rows:
            errors[methodLabel(row["method"])][muscles.index(row["muscle"])] = float(
                row.get("volume_diff_pct", float("nan")))
        labels = vtk.vtkStringArray()
        labels.SetName("segment")
        for muscle in muscles:
            labels.InsertNextValue(muscle)
        table.AddColumn(labels)
        for method, values in errors.items():
            table.AddColumn(_doubleColumn(method, values))
        chart = self._chart("Volume error", "segment", "volume error (%): + larger, - smaller than the reference",
                            created)
        for method, color in colors.items():
            series = _newNode("vtkMRMLPlotSeriesNode", f"{method} volume error")
            created.append(series)
            series.SetAndObserveTableNodeID(tableNode.GetID())
            series.SetLabelColumnName("segment")
            series.SetYColumnName(method)
            series.SetPlotType(slicer.vtkMRMLPlotSeriesNode.PlotTypeBar)
            series.SetColor(*color)
            chart.AddAndObservePlotSeriesNodeID(series.GetID())
        return chart

    @staticmethod
    def _resultSegmentation(volumeNode, referenceSegmentationNode, label, masks, created, colors=None):
        """The segmentation "<method label> result" with one segment per muscle of ``masks``, named as the
        reference's. ``colors``: muscle -> RGB in [0, 1] (publish: the method's colour, that of its lines in "Dice
        along the sweep", the n-th muscle in its n-th shade, ``_muscleShade``); a muscle without one takes the
        reference segment's colour."""
        node = _newNode("vtkMRMLSegmentationNode", f"{label} result")
        created.append(node)
        node.CreateDefaultDisplayNodes()
        if node.GetDisplayNode() is not None:   # a node of its own in the scene: removed too when publish fails
            created.append(node.GetDisplayNode())
        node.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        geometry = mrmlArrays.referenceGeometry(volumeNode, node)
        reference = referenceSegmentationNode.GetSegmentation()
        for name, mask in masks.items():
            sid = node.GetSegmentation().AddEmptySegment("", name)
            rid = reference.GetSegmentIdBySegmentName(name)
            if (colors or {}).get(name) is not None:   # the method's: its result and the reference look different
                node.GetSegmentation().GetSegment(sid).SetColor(*colors[name])
            elif rid:
                node.GetSegmentation().GetSegment(sid).SetColor(reference.GetSegment(rid).GetColor())
            mrmlArrays.writeSegment(node, sid, mask.full() if hasattr(mask, "full") else mask, geometry)
        return node
