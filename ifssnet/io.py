"""Volumes and segmentations on disk, with their geometry.

Arrays are indexed (k, j, i), like Slicer's ``arrayFromVolume``. Geometry is kept in ITK order
(i, j, k) and LPS coordinates, like SimpleITK: ``physical = origin + direction @ diag(spacing) @ (i, j, k)``.

Volumes: .nrrd, .nhdr, .nii, .nii.gz, .mha, .mhd (SimpleITK).
Segmentations: Slicer's .seg.nrrd (slicerio: names, colours, overlapping layers, tags; also saved by Slicer as
.seg.nhdr, .nrrd or .nhdr, told by its segment fields: :func:`is_segmentation_file`) and plain labelmaps in any
volume format (label v becomes segment ``Label_v``).

Which slices of a segment were annotated travels in the segment tag ``IFSSNet.AnnotatedSlices``
(``axis:s0,s1,...``, axis in array order, 0 = k), which Slicer keeps when it loads and saves the file.
So an annotated slice with no foreground ("no muscle here") differs from an unannotated one. Next to it,
``IFSSNet.ResultSliceCRC`` holds a checksum of every slice across that axis as written (:func:`slice_crcs`):
a slice whose checksum changed (painted or corrected in Slicer) is a seed too, and a painted slice erased whole
since is dropped (the paint taken back). :func:`seed_slices` is that rule, for Slicer's Propagate and for every
file read here alike; the Slicer module's ``IFSSNet.SeedGrid`` names the grid the tags number their slices on, and
:func:`annotated_on_grid` carries them onto another grid (a crop, a flip, a finer or coarser sweep).

Every write goes to a temporary file in the target folder and is renamed into place: a failure
(unwritable folder, full disk) leaves no partial file and leaves an existing file untouched.
"""
from __future__ import annotations

import json
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .errors import GeometryError, InputError, ResourceError, SeedError, StrokesOffSlices, VolumeError
from .progress import CancelLike, ProgressFn, check_cancel, report

VOLUME_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd")
ANNOTATED_TAG = "IFSSNet.AnnotatedSlices"
RESULT_CRC_TAG = "IFSSNet.ResultSliceCRC"
SEED_GRID_TAG = "IFSSNet.SeedGrid"   # written by the Slicer module: the grid the two tags above number slices on
DEFAULT_COLORS = {
    "GM": (0.89, 0.36, 0.72),   # pink, as in the paper's figures
    "GL": (0.35, 0.78, 0.35),   # green
    "SOL": (0.55, 0.40, 0.85),  # violet
}


# --------------------------------------------------------------------------------------------------
# Geometry


@dataclass(frozen=True)
class Geometry:
    """Voxel grid geometry in ITK order (i, j, k), LPS, mm.

    ``spacing`` = (sx, sy, sz); ``origin`` = (x, y, z) of voxel (0, 0, 0); ``direction`` = the 3x3
    direction matrix, row-major (9 numbers), as ``SimpleITK.Image.GetDirection()``.
    """

    spacing: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: Tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        sp = tuple(float(s) for s in self.spacing)
        if len(sp) != 3 or not all(np.isfinite(sp)) or min(sp) <= 0:
            raise GeometryError(f"Voxel spacing {sp} is not three positive numbers.",
                                "Fix the volume's spacing in its header (Volumes module > Volume Information).")
        object.__setattr__(self, "spacing", sp)
        object.__setattr__(self, "origin", tuple(float(o) for o in self.origin))
        d = tuple(float(v) for v in np.asarray(self.direction, dtype=float).ravel())
        if len(d) != 9:
            raise GeometryError("The direction matrix must have 9 numbers.", "Check the volume's header.")
        object.__setattr__(self, "direction", d)

    @property
    def spacing_kji(self) -> Tuple[float, float, float]:
        """Spacing in array order (sz, sy, sx), mm."""
        return (self.spacing[2], self.spacing[1], self.spacing[0])

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def ijk_to_lps(self) -> np.ndarray:
        """4x4 homogeneous matrix from (i, j, k) to LPS mm."""
        m = np.eye(4)
        m[:3, :3] = np.asarray(self.direction).reshape(3, 3) @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    @classmethod
    def from_ijk_to_lps(cls, matrix: np.ndarray) -> "Geometry":
        m = np.asarray(matrix, dtype=float)
        cols = m[:3, :3]
        spacing = np.linalg.norm(cols, axis=0)
        if np.any(spacing <= 0):
            raise GeometryError("The image-to-physical matrix has a zero column.", "Check the file's header.")
        return cls(tuple(spacing), tuple(m[:3, 3]), tuple((cols / spacing).ravel()))

    @classmethod
    def from_sitk(cls, image) -> "Geometry":
        return cls(image.GetSpacing()[:3], image.GetOrigin()[:3], image.GetDirection()[:9])

    def apply_to(self, image) -> None:
        """Copy this geometry onto a SimpleITK image."""
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)

    def same_as(self, other: "Geometry", tol: float = 1e-4) -> bool:
        return (np.allclose(self.spacing, other.spacing, rtol=tol, atol=tol)
                and np.allclose(self.origin, other.origin, rtol=tol, atol=tol)
                and np.allclose(self.direction, other.direction, atol=tol))


@dataclass
class Image:
    """A scalar volume: ``array`` (K, J, I) and its :class:`Geometry`."""

    array: np.ndarray
    geometry: Geometry = field(default_factory=Geometry)


# --------------------------------------------------------------------------------------------------
# Segmentations


@dataclass(frozen=True)
class AnnotatedSlices:
    """Which slices of a segment were annotated: ``axis`` in array order (0 = k), sorted ``slices``."""

    axis: int
    slices: Tuple[int, ...]

    def to_tag(self) -> str:
        return f"{self.axis}:" + ",".join(str(s) for s in self.slices)

    @classmethod
    def from_tag(cls, text: str) -> "AnnotatedSlices":
        try:
            axis, _, rest = text.partition(":")
            slices = tuple(sorted(int(s) for s in rest.split(",") if s.strip()))
            axis = int(axis)
            if axis not in (0, 1, 2) or (slices and slices[0] < 0):
                raise ValueError("an axis is 0, 1 or 2, and a slice is 0 or more")
            return cls(axis, slices)
        except ValueError as exc:
            raise InputError(f"The segment tag {ANNOTATED_TAG}='{text}' is not 'axis:slice,slice,...' (axis 0, 1 "
                             "or 2; slices 0 or more).",
                             "Recreate the seed file with `ifssnet seeds`, or remove the tag from the segment "
                             "(its painted slices are then found from the paint).") from exc


def slice_crcs(mask: np.ndarray, axis: int) -> List[int]:
    """A checksum (CRC-32 of the slice's voxels > 0) of every slice of the 3-D ``mask`` across ``axis``: the
    ``IFSSNet.ResultSliceCRC`` tag, against which Slicer's Propagate finds the slices edited since."""
    moved = np.moveaxis(np.asarray(mask), axis, 0)
    return [zlib.crc32(np.ascontiguousarray(moved[s] > 0).tobytes()) for s in range(moved.shape[0])]


def crcs_from_tag(text: Optional[str]) -> Optional[List[int]]:
    """The checksums of an ``IFSSNet.ResultSliceCRC`` tag; None where there is no tag or it does not parse (then the
    seeds are the annotated slices as tagged: no slice is taken for edited)."""
    try:
        return [int(c) for c in (text or "").split(",") if c.strip()] or None
    except ValueError:
        return None


@dataclass
class Segment:
    """One segment: ``mask`` uint8 (K, J, I) with 1 inside, ``color`` RGB in 0..1.

    ``annotated``: its seeds (:func:`seed_slices`), numbered on ``annotated_grid`` ((geometry, shape (K, J, I)) of the
    grid they were recorded on, where that is not the segmentation's own grid: a file Slicer saved cropped, or whose
    tags name another grid); ``notes``: sentences for the user about slices read otherwise than painted; ``fields``:
    Slicer's other fields of the segment in the file it was read from (:func:`kept_fields`: its ID, terminology,
    label value, tags ...), which :func:`write_segmentation` writes back, so a result keeps its seed's."""

    name: str
    mask: np.ndarray
    color: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    annotated: Optional[AnnotatedSlices] = None
    annotated_grid: Optional[Tuple[Geometry, Tuple[int, int, int]]] = None
    notes: List[str] = field(default_factory=list)
    fields: dict = field(default_factory=dict)


#: Slicer's segment fields (slicerio's keys) that a segment keeps from the file it is read from to the files written
#: from it (a result keeps its seed's, the seeds cut from a reference keep the reference's): :func:`kept_fields`.
KEPT_FIELDS = ("id", "terminology", "status", "nameAutoGenerated", "colorAutoGenerated", "labelValue")


def kept_fields(info: dict) -> dict:
    """The :data:`KEPT_FIELDS` of a segment's slicerio ``info``, and its tags other than IFSSNet's own (which
    :func:`write_segmentation` writes anew for the voxels it writes)."""
    kept = {key: info[key] for key in KEPT_FIELDS if key in info}
    tags = {key: value for key, value in (info.get("tags") or {}).items()
            if key not in (ANNOTATED_TAG, RESULT_CRC_TAG, SEED_GRID_TAG)}
    if tags:
        kept["tags"] = tags
    return kept


# --------------------------------------------------------------------------------------------------
# Which slices are seeds: one rule for the command line and Slicer's Propagate


def seed_slices(annotated: Optional[AnnotatedSlices], crcs: Optional[Sequence[int]], painted: np.ndarray,
                name: str = "", notes: Optional[List[str]] = None) -> Tuple[int, Tuple[int, ...]]:
    """(axis, seed slices) of a segment whose voxels are ``painted`` (K, J, I), on the grid its tags were written on:
    ``annotated`` (``IFSSNet.AnnotatedSlices``), plus the slices whose checksum (:func:`slice_crcs`) differs from
    ``crcs`` (``IFSSNet.ResultSliceCRC``: slices corrected since; one erased whole is a 'no muscle here' mark), less
    the painted slices erased since (the paint taken back, as Fill between slices reads an empty slice). A segment
    without tags, or cleared and painted again (:func:`painted_again`), is read from its paint (:func:`fresh_seeds`).
    ``name``: the segment's, for messages; ``notes``: sentences for the user about slices read otherwise than painted
    are appended to it. Raises :class:`SeedError` for a segment with nothing painted and no tag, or paint that lies on
    no slices. Slicer's Propagate (``IFSSNetSegmentationLogic``) and every command that reads seeds call it."""
    if annotated is not None:
        axis, slices = annotated.axis, set(annotated.slices)
        n = painted.shape[axis]
        if crcs:
            previous = list(crcs)
            now = slice_crcs(painted, axis)
            if len(previous) == len(now):
                changed = {s for s, (a, b) in enumerate(zip(previous, now)) if a != b}
                empty = empty_slice_crc(painted, axis)
                fresh = painted_again(painted, axis, annotated.slices, previous, now, changed, empty, name, notes)
                if fresh is not None:
                    return fresh
                erased = sorted(s for s in annotated.slices if 0 <= s < len(now) and previous[s] != empty
                                and now[s] == empty)
                slices = (slices | changed) - set(erased)
                if erased and notes is not None:
                    many, listed = len(erased) > 1, ", ".join(map(str, erased))
                    notes.append(f"'{name}': slice{'s' if many else ''} {listed}, which you had painted, "
                                 f"{'are' if many else 'is'} empty now, so {'they were' if many else 'it was'} taken "
                                 "as not painted and propagated. Where the muscle is not there, go to the slice and "
                                 "click No muscle here.")
        return axis, tuple(sorted(s for s in slices if 0 <= s < n))
    if not painted.any():
        raise SeedError(f"Segment '{name}' is empty: no painted slices.",
                        "Paint the muscle on at least 3 slices (consecutive or far apart), then propagate.")
    return fresh_seeds(painted, name)


FRESH_GROUP_SHARE = 0.25
"""In :func:`painted_again`: paint across another axis than the tags' is fresh paint (not a result with corrections)
when its longest run of consecutive painted slices is at most this share of its count of slices across each other
axis. A few slices painted across i are 1-5 slices thick and span the muscle's length and depth; a whole result is as
thick across any axis as the muscle (a calf muscle's thickness is about 0.3-0.5 of its width)."""


def on_few_slices(mask: np.ndarray, axis: int) -> bool:
    """True when ``mask`` (K, J, I) lies on a few slices across ``axis`` (:data:`FRESH_GROUP_SHARE`)."""
    from .seeds import annotated_slices, seed_groups

    longest = max(len(group) for group in seed_groups(annotated_slices(mask, axis)))
    return all(longest <= FRESH_GROUP_SHARE * len(annotated_slices(mask, a)) for a in range(3) if a != axis)


STROKE_OVERLAP = 0.2
""":func:`require_strokes_on_slices`: freshly painted consecutive slices whose paint overlaps (in-plane, as a share of
the smaller) less than this on every adjacent pair are one stroke's bands on a plane tilted to the volume's slices.
Adjacent cross-sections of a muscle overlap far more (the test volume: 0.8 and more at 1.6 mm spacing)."""


def require_strokes_on_slices(painted: np.ndarray, axis: int, slices: Sequence[int], name: str) -> None:
    """Raise SeedError (what to do) when the fresh paint of segment ``name`` does not lie on slices of the volume:
    strokes painted in slice views rotated against its grid (an oblique volume in Slicer's default views) each leave
    a band on several consecutive slices, and those bands do not overlap. Needs 2 adjacent painted pairs at least;
    slices painted far apart, or on one slice each, pass."""
    from .seeds import seed_groups

    moved = np.moveaxis(painted, axis, 0)
    overlaps = []
    for group in seed_groups(tuple(slices)):
        for a, b in zip(group[:-1], group[1:]):
            sa, sb = moved[a] > 0, moved[b] > 0
            smaller = min(int(sa.sum()), int(sb.sum()))
            if smaller:
                overlaps.append(np.logical_and(sa, sb).sum() / smaller)
    if len(overlaps) >= 2 and max(overlaps) < STROKE_OVERLAP:
        names = ("k", "j", "i")
        raise StrokesOffSlices(
            f"The paint of '{name}' does not lie on slices of the volume: each stroke crosses several of its slices "
            f"across {names[axis]} ({len(slices)} slices hold a part of one), as when the slice views are rotated "
            "against the volume's axes (an oblique volume in the default views).",
            "Align the slice views with the volume (the Segment Editor's rotated-view warning button, or the slice "
            "view menu: Rotate to volume plane), erase the strokes and paint the slices again.")


def fresh_seeds(painted: np.ndarray, name: str = "") -> Tuple[int, Tuple[int, ...]]:
    """(axis, seed slices) of paint taken as fresh seeds (no tags, or tags that cannot apply): the axis the painted
    slices lie across (:func:`~ifssnet.seeds.find_axis`) and its non-empty slices, refused where the strokes lie on
    no slices (:func:`require_strokes_on_slices`). ``painted`` (K, J, I) holds paint."""
    from .seeds import annotated_slices, find_axis

    axis = int(find_axis(painted))
    slices = tuple(annotated_slices(painted, axis))
    require_strokes_on_slices(painted, axis, slices, name)
    return axis, slices


def empty_slice_crc(mask: np.ndarray, axis: int) -> int:
    """The ``IFSSNet.ResultSliceCRC`` checksum of an empty slice of ``mask`` across ``axis``."""
    return slice_crcs(np.zeros((1,) + np.moveaxis(mask, axis, 0).shape[1:], np.uint8), 0)[0]


def painted_again(painted, axis, annotated, previous, now, changed, empty: int, name: str = "",
                  notes: Optional[List[str]] = None) -> Optional[Tuple[int, Tuple[int, ...]]]:
    """(axis, seeds) of a segment cleared and painted again since its tags were written (a muscle started
    over), else None. Then every slice that had the muscle was changed, and either most of them are now empty
    (painted again across the same axis), or the paint lies on a few slices across another axis, which cross
    them all (:data:`FRESH_GROUP_SHARE`). A correction edits a few slices, or crosses them all from another view
    and leaves the result there: the whole result is no few slices across any axis. Without this, every slice
    of the old result would be a seed (empty ones 'no muscle here' marks), and nothing would be propagated.
    The segment is then painted afresh (``find_axis``); across the same axis, its 'no muscle here' marks that
    are still empty and lie beyond the new paint stay; across another, they cannot apply, and a sentence that
    says so (and what to do) goes to ``notes``. ``previous``, ``now``: the slices' checksums as tagged and now;
    ``changed``: the slices whose checksum differs; ``empty``: the checksum of an empty slice
    (:func:`empty_slice_crc`)."""
    from .seeds import annotated_slices, find_axis

    had = {s for s, c in enumerate(previous) if c != empty}
    if not had or not had <= changed or not painted.any():
        return None
    keptMost = 2 * sum(now[s] != empty for s in had) > len(had)     # most slices of the old result hold paint
    if keptMost and not any(on_few_slices(painted, a) for a in range(3) if a != axis):
        return None     # the result is still there, corrected (before find_axis, which reads every voxel)
    try:
        newAxis = int(find_axis(painted))
    except SeedError:   # not a fresh paint after all: the tags stand
        return None
    fresh = tuple(annotated_slices(painted, newAxis))
    if not fresh or keptMost and (newAxis == axis or not on_few_slices(painted, newAxis)):
        return None
    require_strokes_on_slices(painted, newAxis, fresh, name)
    marks = {s for s in annotated if 0 <= s < len(now) and previous[s] == empty and now[s] == empty}
    if newAxis == axis:
        return newAxis, tuple(sorted(set(fresh) | {s for s in marks if s < fresh[0] or s > fresh[-1]}))
    if notes is not None:
        names = ("k", "j", "i")
        note = (f"'{name}' is now painted across {names[newAxis]} (its recorded seeds were across {names[axis]}), "
                f"so its paint was taken as new seeds across {names[newAxis]}.")
        if marks:
            plural = "s" if len(marks) > 1 else ""
            note += (f" Its 'no muscle here' mark{plural} across {names[axis]} (slice{plural} "
                     f"{', '.join(map(str, sorted(marks)))}) cannot apply across {names[newAxis]}: go to the first "
                     "slice past each end of the muscle in the view you painted in and click No muscle here.")
        notes.append(note)
    return newAxis, fresh


@dataclass
class Segmentation:
    """Segments on one voxel grid (segments may overlap)."""

    segments: List[Segment]
    geometry: Geometry = field(default_factory=Geometry)

    @property
    def names(self) -> List[str]:
        return [s.name for s in self.segments]

    @property
    def shape(self) -> Tuple[int, int, int]:
        return tuple(self.segments[0].mask.shape) if self.segments else ()

    def get(self, name: str) -> Segment:
        for s in self.segments:
            if s.name == name:
                return s
        raise InputError(f"The segmentation has no segment named '{name}'.",
                         f"Choose one of: {', '.join(self.names) or '(none)'}.")

    def mask(self, name: str) -> np.ndarray:
        return self.get(name).mask


# --------------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write(path, write_fn, make_folder: bool = False) -> Path:
    """Call ``write_fn(tmp_path)`` then move what it wrote onto ``path`` (:func:`write_together` of one file).

    ``tmp_path`` has the target's own file name inside a fresh hidden folder next to the target, so
    writers that choose the format from the suffix, and detached headers (.mhd + .raw, .nhdr) that
    name their data file, both work. On any failure the folder is removed and ``path`` is untouched.
    ``make_folder``: create ``path``'s folder first (else a missing folder is an error).
    """
    path = Path(path)
    folder = path.parent
    if make_folder:
        make_folders(folder)
    if not folder.is_dir():
        raise ResourceError(f"The folder '{folder}' does not exist.", "Create it or choose another output path.")
    if not os.access(folder, os.W_OK):
        raise ResourceError(f"The folder '{folder}' is not writable.", "Choose an output path you can write to.")
    write_together([(path, write_fn)])
    return path


def make_folders(folder) -> Path:
    """Create ``folder`` and its parents if missing; a :class:`ResourceError` when it cannot be made."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ResourceError(f"Could not create the folder '{folder}': {exc.strerror or exc}.",
                            "Choose an output path you can write to.") from exc
    return folder


def check_output_file(path, inputs=(), what_it_replaces: str = "it", file_hint: str = "Give a file name.") -> Path:
    """Refuse, before any work, an output file that cannot be written: its folder is missing or not writable,
    it is a folder, it is write-protected (no write permission), or it is one of ``inputs`` (then the message says
    writing it "would replace ``what_it_replaces``"). :class:`ResourceError` or :class:`InputError`; returns
    ``Path(path)``."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise ResourceError(f"The output folder '{folder}' does not exist.", "Create it or choose another output path.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ResourceError(f"The output folder '{folder}' is not writable.", "Choose an output path you can write to.")
    if path.is_dir():
        raise InputError(f"The output '{path}' is a folder.", file_hint)
    # (by its permission bits: the folder's permission would let the new file be renamed over it, and root may write)
    if path.is_file() and not path.stat().st_mode & 0o222:
        raise ResourceError(f"The output '{path}' is write-protected; it was left as it was.",
                            "Choose another output file name, or make it writable (chmod u+w) to replace it.")
    for p in inputs:
        if same_file(p, path):
            raise InputError(f"The output '{path}' is one of the input files; writing it would replace "
                             f"{what_it_replaces}.", "Choose another output file name.")
    return path


def check_output_files(outputs: Sequence[Tuple[str, object]], inputs=(), make_folders: bool = False) -> None:
    """:func:`check_output_file` for each output asked for, ``[(option, path or None)]`` (``("--csv", path)``), and
    refuse two options that name one file (the second written would replace the first). An output named on the
    command line replaces a file of that name, as asked; never one of ``inputs``. ``make_folders``: the command
    makes a missing folder (nothing in it to check)."""
    given = [(option, Path(path)) for option, path in outputs if path is not None]
    for _, path in given:
        if not make_folders or path.parent.is_dir():
            check_output_file(path, inputs)
    for i, (option, path) in enumerate(given):
        for other, before in given[:i]:
            if os.path.abspath(path) == os.path.abspath(before) or same_file(path, before):
                raise InputError(f"{other} and {option} name one file ({path}): one would replace the other.",
                                 f"Give {other} and {option} a file name each.")


#: The hidden file in which ``ifssnet phantom DIR`` and ``ifssnet demo DIR`` record the files they wrote there
#: (:func:`record_made`), so that running them again replaces their own files without ``--force``.
MADE_RECORD = ".ifssnet-made.json"


def _file_stamp(path: Path) -> list:
    """[size in bytes, modification time in ns] of a file: what tells a file written since from the one recorded."""
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def record_made(folder, names: Sequence[str], since_ns: int = 0) -> None:
    """Record in ``folder``'s :data:`MADE_RECORD` that the files ``names`` there, those written at or after
    ``since_ns`` (``time.time_ns()`` when the command started), are the command's own as they are now;
    :func:`refuse_replacing` then lets the next run replace them. Best effort: a record that cannot be written only
    means the next run asks for ``--force``."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    record = folder / MADE_RECORD
    made = _read_made(folder)
    stamps = {name: _file_stamp(folder / name) for name in names if (folder / name).is_file()}
    written = {name: stamp for name, stamp in stamps.items() if stamp[1] >= since_ns}
    if not written:         # nothing of ours there: no record either
        return
    made.update(written)
    try:
        record.write_text(json.dumps(made, indent=1))
    except OSError:
        pass


def _read_made(folder: Path) -> dict:
    """{file name: stamp} of ``folder``'s :data:`MADE_RECORD`; {} where there is none or it does not read."""
    try:
        made = json.loads((folder / MADE_RECORD).read_text())
        return made if isinstance(made, dict) else {}
    except (OSError, ValueError):
        return {}


def refuse_replacing(folder, names: Sequence[str], force: bool = False, command: str = "", inputs=()) -> None:
    """Refuse, before any work, a command that writes the files ``names`` into ``folder`` (``ifssnet phantom DIR``,
    ``ifssnet demo DIR``) where the folder already holds one of them: a user's own ``volume.nrrd`` there would be
    lost. :class:`InputError` naming them, unless ``force``. Files the command wrote there itself, unchanged since
    (:func:`record_made`: same size and modification time), are replaced: running the demo twice needs no ``--force``.
    Whatever ``force``, each must be writable and none may be one of ``inputs`` (:func:`check_output_file`). A
    folder that does not exist yet holds nothing."""
    folder = Path(folder)
    if not folder.is_dir():     # made by the command; a file of that name is make_folders' error
        return
    for name in names:
        check_output_file(folder / name, inputs)
    made = _read_made(folder)
    there = [name for name in names if (folder / name).exists()
             and not ((folder / name).is_file() and made.get(name) == _file_stamp(folder / name))]
    if there and not force:
        them = "it" if len(there) == 1 else "them"
        raise InputError(f"The folder '{folder}' already holds {', '.join(there)}; `ifssnet {command}` would replace "
                         f"{them}.", f"Give a new or empty folder, or add --force to replace {them}.")


def same_file(a, b) -> bool:
    """Whether paths ``a`` and ``b`` are one file (:func:`os.path.samefile`: two spellings of one path, or links to
    it); False where either does not exist."""
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def write_together(writers: Sequence[Tuple[Path, Callable[[str], object]]]) -> None:
    """Write several files as one: ``[(path, write(tmp_path))]``. Each ``write`` gets ``tmp_path`` (str), the
    target's own file name inside a fresh hidden folder next to it; once every one has written, what each wrote is
    moved into place, writer by writer, the named file last (after a detached header's data file). A failure or
    Ctrl-C before the moves leaves every earlier file of those names as it was; an ``OSError`` is a
    :class:`ResourceError`. A writer whose path is None (an output not asked for) is skipped."""
    import shutil

    tmpdirs, written, moving, path = [], [], False, None
    try:
        for path, write in writers:
            if path is None:
                continue
            path = Path(path)
            tmpdirs.append(Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)))
            write(str(tmpdirs[-1] / path.name))
            written.append((tmpdirs[-1], path))
        moving = True
        for tmpdir, path in written:
            for f in sorted(tmpdir.iterdir(), key=lambda p: p.name == path.name):
                os.replace(f, path.parent / f.name)
    except (OSError, ResourceError, RuntimeError) as exc:
        # a writer that writes atomically itself (write_segmentation, a plot) failed on its own temporary path: said
        # of the file asked for, not of a hidden folder that is gone
        cause = exc.__cause__ if isinstance(exc, ResourceError) else exc
        if isinstance(cause, RuntimeError):     # judged here, before the partial files are removed
            full = _full_disk(cause, path)
            if full is not None:
                full.__cause__ = cause
            cause = full
        if not isinstance(cause, OSError):
            raise
        raise ResourceError(f"Could not write '{path}': {cause.strerror or cause}.",
                            "Free some disk space or choose another output path"
                            + ("." if moving else "; nothing was written.")) from cause
    finally:
        for d in tmpdirs:
            shutil.rmtree(d, ignore_errors=True)


#: Free bytes under which a writer's RuntimeError is taken for a full disk (:func:`_full_disk`).
FULL_DISK_BYTES = 1 << 20


def _full_disk(exc: RuntimeError, path) -> Optional[OSError]:
    """SimpleITK's writers and ``torch.save`` report a disk that filled up during a write as a ``RuntimeError``
    ("Exception thrown in SimpleITK ImageFileWriter_Execute", "unexpected pos 64 vs 0"), not an ``OSError``: an
    ``ENOSPC`` ``OSError`` where ``path``'s folder has under :data:`FULL_DISK_BYTES` free, else None (any other
    RuntimeError is not taken for one)."""
    import errno
    import shutil

    try:
        free = shutil.disk_usage(Path(path).parent).free
    except (OSError, TypeError):
        return None
    if path is None or free >= FULL_DISK_BYTES:
        return None
    return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({free // 1024} kB free)")


# --------------------------------------------------------------------------------------------------
# Volumes


def _sitk():
    import SimpleITK as sitk

    return sitk


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise InputError(f"The file '{path}' does not exist.", "Check the path.")
    if path.is_dir():
        raise InputError(f"'{path}' is a folder, not a file.", "Give the volume file inside it.")


def read_volume(path) -> Image:
    """Read a scalar 3-D volume. Returns :class:`Image` with ``array`` (K, J, I) in the file's dtype.

    Raises :class:`VolumeError` for 2-D, 4-D or multi-component (RGB, vector) images, and :class:`InputError` for a
    segmentation (:func:`is_segmentation_file`: Slicer's segments in the header).
    """
    sitk = _sitk()
    path = Path(path)
    _check_readable(path)
    if is_segmentation_file(path):
        raise InputError(f"'{path}' is a segmentation, not a volume.",
                         "Give the image volume where a volume is asked for: `ifssnet propagate VOLUME SEEDS -o OUT` "
                         "and `ifssnet compare` take the volume first, the segmentation second.")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(f"Could not read '{path}' as an image.",
                         "Use .nrrd, .nii, .nii.gz, .mha or .mhd, and check that the file is complete.") from exc
    check_scalar_3d(img.GetDimension(), img.GetNumberOfComponentsPerPixel(), str(path), img.GetPixelIDTypeAsString())
    return Image(sitk.GetArrayFromImage(img), Geometry.from_sitk(img))


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says of its image, read without its voxels (:func:`read_header`).

    ``shape_kji``: (K, J, I) in array order; ``itemsize``: bytes per voxel (per layer); ``spacing_kji``: mm.
    ``layers``: label layers of a .seg.nrrd (Slicer puts overlapping segments on separate layers), else 1.
    ``segments``: how many segments a .seg.nrrd holds; None for a plain labelmap or a volume (a labelmap's
    labels are known only from its voxels). ``geometry``: the file's grid (LPS; its origin and directions as well
    as the spacing), None where the header does not say.
    """

    shape_kji: Tuple[int, int, int]
    itemsize: int
    spacing_kji: Tuple[float, float, float]
    layers: int = 1
    segments: Optional[int] = None
    geometry: Optional[Geometry] = None

    @property
    def voxels(self) -> int:
        """K x J x I."""
        return int(np.prod(self.shape_kji))


def read_header(path) -> ImageHeader:
    """The :class:`ImageHeader` of a volume, labelmap or .seg.nrrd file, from its header only: what memory a read
    will take is known before any voxel is read (:mod:`ifssnet.train_memory`). A missing file, one that is not an
    image, and a 2-D, 4-D or multi-component volume raise the errors :func:`read_volume` and
    :func:`read_segmentation` raise."""
    path = Path(path)
    _check_readable(path)
    if is_segmentation_file(path):
        return _seg_nrrd_header(path)
    sitk = _sitk()
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"Could not read '{path}' as an image.",
                         "Use .nrrd, .nii, .nii.gz, .mha or .mhd, and check that the file is complete.") from exc
    size, components = reader.GetSize(), reader.GetNumberOfComponents()
    check_scalar_3d(len(size), components, str(path), sitk.GetPixelIDValueAsString(reader.GetPixelID()))
    probe = sitk.Image([1, 1, 1], reader.GetPixelID(), max(1, components))
    itemsize = int(sitk.GetArrayViewFromImage(probe).itemsize)
    sx, sy, sz = (float(v) for v in reader.GetSpacing())
    try:
        geometry = Geometry(reader.GetSpacing(), reader.GetOrigin(), reader.GetDirection())
    except GeometryError:
        geometry = None                  # reading the voxels says what is wrong with it
    return ImageHeader((int(size[2]), int(size[1]), int(size[0])), itemsize, (sz, sy, sx), geometry=geometry)


def _grid_corners(shape: Sequence[int], edge: float) -> np.ndarray:
    """(4, 8) homogeneous (i, j, k, 1) of the 8 corners of a grid of ``shape`` (K, J, I): the voxel centres at the
    ends of each axis, moved out by ``edge`` voxels (-0.5: the voxels' outer edges, 0: the centres)."""
    K, J, I = (int(v) for v in shape)
    return np.array([[i, j, k, 1.0] for i in (edge, I - 1 - edge) for j in (edge, J - 1 - edge)
                     for k in (edge, K - 1 - edge)]).T


def grids_overlap(geometry: Geometry, shape: Sequence[int], other: Geometry, other_shape: Sequence[int]) -> bool:
    """Whether the box of ``other``'s grid of ``other_shape`` (K, J, I; voxel edges, not centres) and that of
    ``geometry``'s grid of ``shape`` share some volume: the box of ``other``'s corners in ``geometry``'s voxel
    indices meets ``geometry``'s own (a rotated grid may count where only the boxes meet)."""
    ijk = np.linalg.solve(geometry.ijk_to_lps, other.ijk_to_lps @ _grid_corners(other_shape, -0.5))[:3]
    size = np.array([int(shape[2]), int(shape[1]), int(shape[0])], dtype=float)
    return bool(np.all(ijk.min(axis=1) < size - 0.5 - 1e-6) and np.all(ijk.max(axis=1) > -0.5 + 1e-6))


def require_annotation_overlaps(annotation_path, volume_geometry: Geometry, volume_shape: Sequence[int],
                                volume_name: str = "the volume") -> None:
    """Raise :class:`InputError` where the grid of the annotation file ``annotation_path`` (a .seg.nrrd, also one
    saved cropped, or a labelmap; from its header, :func:`read_header`) lies wholly outside the volume's grid
    (``volume_geometry``, ``volume_shape`` (K, J, I)): read onto the volume's grid (:func:`read_segmentation`
    with ``reference``) every segment came out empty, which training took for a segment painted empty. A header
    that gives no grid is left to the reader."""
    head = read_header(annotation_path)
    if head.geometry is None or grids_overlap(volume_geometry, volume_shape, head.geometry, head.shape_kji):
        return

    def span(geometry: Geometry, shape: Sequence[int]) -> str:
        lps = (geometry.ijk_to_lps @ _grid_corners(shape, 0.0))[:3]
        return " x ".join(f"{lo:.1f}..{hi:.1f}" for lo, hi in zip(lps.min(axis=1), lps.max(axis=1)))

    raise InputError(f"The annotation '{annotation_path}' lies outside {volume_name}: its voxels span "
                     f"{span(head.geometry, head.shape_kji)} mm (LPS), the volume's {span(volume_geometry, volume_shape)}"
                     " mm, so no voxel of it falls in the volume.",
                     "Pair the volume with the segmentation painted on it; in Slicer, check that neither was moved "
                     "(Transforms module) and save the segmentation again with the volume as its reference geometry.")


def is_segmentation_file(path) -> bool:
    """Whether ``path`` is a segmentation as Slicer saves one: a .seg.nrrd, or a .nrrd / .nhdr (.seg.nhdr included,
    all four in Slicer's save dialog) whose header holds Slicer's segment fields (``Segment0_ID`` ...); else it is
    read as a volume or a plain labelmap."""
    name = Path(path).name.lower()
    if name.endswith(".seg.nrrd"):
        return True
    if not name.endswith((".nrrd", ".nhdr")):
        return False
    import nrrd  # pynrrd, which slicerio reads with

    try:
        header = nrrd.read_header(str(path))
    except Exception:  # not a NRRD header: the volume reader says what is wrong
        return False
    return any(key.startswith("Segment") and "_" in key and key[7:key.index("_")].isdigit() for key in header)


def _seg_nrrd_header(path: Path) -> ImageHeader:
    import re

    import nrrd  # pynrrd, which slicerio reads with

    try:
        header = nrrd.read_header(str(path))
        sizes = [int(v) for v in header["sizes"]]
        allDirections = np.asarray(header.get("space directions"), dtype=float)
        if header.get("kinds"):
            layered = len(sizes) == 4 and header["kinds"][0] != "domain"
        else:  # no kinds field (slicerio reads such a file): layers are the one axis without a space direction
            layered = len(sizes) == 4 and (len(allDirections) == 3 or not np.all(np.isfinite(allDirections[0])))
        layers = sizes.pop(0) if layered else 1
        directions = allDirections[-3:]
        spacing = tuple(float(v) for v in np.linalg.norm(directions, axis=1))
        itemsize = _nrrd_itemsize(str(header.get("type", "")))
    except Exception as exc:  # pynrrd raises many types for a damaged header
        raise InputError(f"Could not read the segmentation '{path}': {exc}.",
                         "Check that it is a complete .seg.nrrd saved by Slicer or by ifssnet.") from exc
    if len(sizes) != 3:
        check_scalar_3d(len(sizes), 1, str(path))
    # (none: a labelmap saved as .seg.nrrd, whose segments are known only from its voxels, as a plain labelmap's)
    segments = sum(1 for key in header if re.fullmatch(r"Segment\d+_ID", key)) or None
    return ImageHeader((sizes[2], sizes[1], sizes[0]), itemsize, (spacing[2], spacing[1], spacing[0]), layers, segments,
                       _nrrd_geometry(header, directions))


def _nrrd_geometry(header: dict, directions: np.ndarray) -> Optional[Geometry]:
    """The LPS grid of a NRRD header (its ``space``, ``space origin`` and the image axes' ``space directions``, one
    row per axis i, j, k), as slicerio reads it; None where the header does not give it."""
    try:
        flip = {"left-posterior-superior": 1.0, "right-anterior-superior": -1.0}[str(header.get("space", "")).lower()]
        ijk_to_lps = np.eye(4)
        ijk_to_lps[:3, :3] = np.asarray(directions, dtype=float).T
        ijk_to_lps[:3, 3] = np.asarray(header["space origin"], dtype=float)
        ijk_to_lps[:2] *= flip               # RAS -> LPS: x and y change sign
        return Geometry.from_ijk_to_lps(ijk_to_lps)
    except (KeyError, TypeError, ValueError, GeometryError):
        return None


def _nrrd_itemsize(kind: str) -> int:
    """Bytes per voxel of an NRRD ``type`` field (``uint8``, ``unsigned char``, ``short``, ``float`` ...); 8 when
    it is not one of the standard names."""
    kind = kind.lower()
    for names, size in ((("8", "char"), 1), (("16", "short"), 2), (("64", "long", "double"), 8),
                        (("32", "int", "float"), 4)):
        if any(n in kind for n in names):
            return size
    return 8


def check_scalar_3d(dimension: int, components: int = 1, what: str = "The volume", pixel: str = "") -> None:
    """Raise :class:`VolumeError` unless the image is scalar and 3-D. ``pixel``: SimpleITK's name of its voxel type
    (``"complex of 32-bit float"``: two components that are no colour)."""
    if dimension == 2:
        raise VolumeError(f"{what} is a 2-D image; IFSS-Net propagates through a 3-D sweep.",
                          "Load the reconstructed 3-D ultrasound volume, not a single frame.")
    if dimension != 3:
        raise VolumeError(f"{what} has {dimension} dimensions; IFSS-Net needs a 3-D scalar volume.",
                          "Extract one 3-D frame first (Sequences module, or Volumes > Convert).")
    if "complex" in pixel:
        raise VolumeError(f"{what} holds complex numbers ({pixel}); IFSS-Net needs real intensities.",
                          "Convert it to a real scalar volume first, e.g. its magnitude (SimpleITK's "
                          "ComplexToModulus, or numpy.abs).")
    if components != 1:
        raise VolumeError(f"{what} has {components} components per voxel (RGB or vector).",
                          "Convert it to a scalar volume first (Vector to Scalar Volume module).")


def write_volume(image: Image, path) -> Path:
    """Write ``image`` with its geometry, atomically. The format follows the suffix."""
    sitk = _sitk()
    arr = np.ascontiguousarray(image.array)
    if arr.ndim != 3:
        check_scalar_3d(arr.ndim, 1, "The array to write")
    img = sitk.GetImageFromArray(arr)
    image.geometry.apply_to(img)
    return atomic_write(path, lambda tmp: sitk.WriteImage(img, tmp, True))


# --------------------------------------------------------------------------------------------------
# Segmentations


#: Progress stages of reading and writing a segmentation, one step per segment.
STAGE_READING = "Reading segmentation"
STAGE_WRITING = "Writing segmentation"


def read_segmentation(path, reference: Optional[Geometry] = None,
                      reference_shape: Optional[Sequence[int]] = None, *, progress: Optional[ProgressFn] = None,
                      cancel: CancelLike = None, cover: bool = False) -> Segmentation:
    """Read a .seg.nrrd or a plain labelmap into a :class:`Segmentation` (masks (K, J, I) uint8).

    With ``reference`` (and ``reference_shape`` (K, J, I)), segments are resampled (nearest neighbour)
    onto that grid when the file's geometry differs, so they line up with the volume voxel for voxel.
    ``cover``: onto that grid grown by whole voxels to cover the file's segments (:func:`covering_grid`), so that no
    voxel inside a segment is left outside it (a reference saved cropped is smaller than a prediction's grid). Without
    ``reference``, a .seg.nrrd that Slicer saved cropped is read on the grid of the image it was drawn on (its
    'Reference image geometry'), where its slice numbers and segment tags are.
    ``progress`` gets :data:`STAGE_READING` once per segment of a .seg.nrrd and ``cancel`` is checked between
    them (:class:`~ifssnet.errors.Cancelled`).

    A segment's ``annotated`` holds its seeds as Slicer's Propagate reads them (:func:`seed_slices`): its annotated
    slices plus those edited since they were tagged (``IFSSNet.ResultSliceCRC``), read on the grid the tags were
    written on, and ``notes`` says where a slice was read otherwise than painted.
    """
    path = Path(path)
    _check_readable(path)
    if is_segmentation_file(path):
        seg, drawn_on = _read_seg_nrrd(path, progress, cancel)
        if reference is None and drawn_on is not None:    # saved cropped: back on the grid it was drawn on
            reference, reference_shape = covering_grid(*drawn_on, seg.geometry, seg.shape)
    else:
        seg = _read_labelmap(path)
    if reference is not None:
        shape = tuple(reference_shape) if reference_shape is not None else seg.shape
        box = bounding_box([s.mask for s in seg.segments]) if cover and seg.segments else None
        if box is not None:             # cover the file's voxels inside, not all of its grid (maybe far larger)
            inside = _grid_from_voxel(seg.geometry, box[2].start, box[1].start, box[0].start)
            reference, shape = covering_grid(reference, shape, inside, tuple(b.stop - b.start for b in box))
        if not seg.geometry.same_as(reference) or seg.shape != shape:
            return resample_segmentation(seg, reference, shape, progress=progress, cancel=cancel)
    return _annotations_on_own_grid(seg)


def _read_seg_nrrd(path: Path, progress: Optional[ProgressFn] = None,
                   cancel: CancelLike = None) -> Tuple[Segmentation, Optional[Tuple[Geometry, Tuple[int, int, int]]]]:
    """The file's segments on its own grid, and the grid of the image they were drawn on (:func:`_drawn_on`)."""
    import slicerio

    try:
        raw = slicerio.read_segmentation(str(path))
    except Exception as exc:  # slicerio/pynrrd raise many types for a damaged header
        raise InputError(f"Could not read the segmentation '{path}': {exc}.",
                         "Check that it is a complete .seg.nrrd saved by Slicer or by ifssnet.") from exc
    voxels = np.asarray(raw["voxels"])
    geometry = Geometry.from_ijk_to_lps(raw["ijkToLPS"])
    if not raw.get("segments") and voxels.ndim == 3:    # no segment fields: a labelmap saved as .seg.nrrd
        return _labels_as_slicer_reads_them(voxels, geometry), None
    # Slicer saved cropped ('crop to minimum extent'): voxel 0 of the file is voxel `offset` (i, j, k) of the grid
    # the segment tags were written on, so a tag's slice s is the file's slice s - offset (maybe outside the file).
    offset_kji = [int(v) for v in (raw.get("referenceImageExtentOffset") or (0, 0, 0))][::-1]
    segments, tagged = [], []
    infos = raw.get("segments", [])
    report(progress, STAGE_READING, 0, len(infos))
    for n, info in enumerate(infos):
        check_cancel(cancel)
        # A file of Slicer before 4.11 has no layer fields and one segment per component, in order (as Slicer reads it).
        layer = voxels[int(info.get("layer", n))] if voxels.ndim == 4 else voxels
        # (i, j, k) -> (k, j, i): pynrrd's array is Fortran-ordered, so the transposed mask is C-contiguous and
        # the bool -> uint8 view copies nothing (a cast copied 1-3 s per segment of a 1400 x 512 x 512 grid).
        mask = np.ascontiguousarray((layer == int(info.get("labelValue", 1))).transpose(2, 1, 0)).view(np.uint8)
        tags = info.get("tags", {}) or {}
        annotated = AnnotatedSlices.from_tag(tags[ANNOTATED_TAG]) if ANNOTATED_TAG in tags else None
        color = tuple(info.get("color", DEFAULT_COLORS.get(info.get("name", ""), (0.5, 0.5, 0.5))))
        segments.append(Segment(info.get("name", info.get("id", "Segment")), mask, color, annotated,
                                fields=kept_fields(info)))
        tagged.append((segments[-1], crcs_from_tag(tags.get(RESULT_CRC_TAG)), grid_from_tag(tags.get(SEED_GRID_TAG))))
        report(progress, STAGE_READING, n + 1, len(infos))
    seg = Segmentation(segments, geometry)
    drawn_on = _drawn_on(raw, seg)
    for segment, crcs, grid in tagged:
        if segment.annotated is not None:
            _read_seeds(segment, crcs, grid or drawn_on, seg, offset_kji)
    return seg, drawn_on


def _labels_as_slicer_reads_them(voxels: np.ndarray, geometry: Geometry) -> Segmentation:
    """The segments of a .seg.nrrd without segment fields (a plain labelmap that another tool saved as .seg.nrrd),
    ``voxels`` (i, j, k) on ``geometry``, as Slicer's segmentation reader makes them: one per label value v,
    ID and name ``Segment_v``; none when every voxel is 0."""
    labels = [int(v) for v in np.unique(voxels) if v != 0]
    return Segmentation([Segment(f"Segment_{v}", np.ascontiguousarray((voxels == v).transpose(2, 1, 0)).view(np.uint8),
                                 _auto_color(n), fields={"id": f"Segment_{v}", "labelValue": v})
                         for n, v in enumerate(labels)], geometry)


def _read_seeds(segment: Segment, crcs: Optional[List[int]], grid: Optional[Tuple[Geometry, Tuple[int, int, int]]],
                seg: Segmentation, offset_kji: Sequence[int]) -> None:
    """Replace ``segment.annotated`` (its tag as written) by its seeds (:func:`seed_slices`), read on ``grid`` (the
    grid its tags number their slices on: its ``IFSSNet.SeedGrid``, else the image a file saved cropped was drawn on),
    else on the file's own grid ``seg`` (less a crop's ``offset_kji``). A tag that names slices outside that grid is
    left as it is (refused where its seeds are read: from another volume)."""
    annotated = segment.annotated
    if grid is not None and grid[0].same_as(seg.geometry) and tuple(grid[1]) == seg.shape:
        grid = None
    if grid is None:
        if offset_kji[annotated.axis]:   # numbered on the grid the file was cropped from
            annotated = AnnotatedSlices(annotated.axis, tuple(s - offset_kji[annotated.axis] for s in annotated.slices))
        segment.annotated = annotated
        painted, count = segment.mask, seg.shape[annotated.axis]
    else:
        segment.annotated_grid = (grid[0], tuple(int(v) for v in grid[1]))
        painted, count = None, int(grid[1][annotated.axis])
    if any(not 0 <= s < count for s in annotated.slices):
        return
    if painted is None:
        painted = _resampled(segment.mask, seg.geometry, *grid)
    segment.annotated = AnnotatedSlices(*seed_slices(annotated, crcs, painted, segment.name, segment.notes))


def grid_tag(geometry: Geometry, shape: Sequence[int]) -> str:
    """The ``IFSSNet.SeedGrid`` tag of ``geometry``'s grid of ``shape`` (K, J, I), as the Slicer module writes it: the
    image-to-world matrix in RAS, 3 x 4 row by row, then ``;`` and the extent (:func:`grid_from_tag` reads it)."""
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ geometry.ijk_to_lps
    extent = (0, int(shape[2]) - 1, 0, int(shape[1]) - 1, 0, int(shape[0]) - 1)
    return ",".join(repr(float(v)) for v in ras[:3].ravel()) + ";" + ",".join(map(str, extent))


def grid_from_tag(text: Optional[str]) -> Optional[Tuple[Geometry, Tuple[int, int, int]]]:
    """``(geometry, shape (K, J, I))`` in LPS of an ``IFSSNet.SeedGrid`` tag (the Slicer module's record of the grid
    its seed tags number their slices on: the volume's image-to-world matrix in the segmentation's RAS frame, 3 x 4
    row by row, then ``;`` and the extent); the geometry's voxel 0 is the extent's first voxel. None where there is
    no tag or it does not parse."""
    try:
        matrix_text, extent_text = (text or "").split(";")
        values = [float(v) for v in matrix_text.split(",")]
        extent = [int(e) for e in extent_text.split(",")]
        if len(values) != 12 or len(extent) != 6:
            return None
        return _extent_grid(np.vstack([np.reshape(values, (3, 4)), [0, 0, 0, 1]]), extent)
    except (ValueError, GeometryError, np.linalg.LinAlgError):
        return None


def _extent_grid(ijk_to_ras: np.ndarray, extent: Sequence[int]) -> Optional[Tuple[Geometry, Tuple[int, int, int]]]:
    """``(geometry, shape (K, J, I))`` in LPS of the grid of image-to-world matrix ``ijk_to_ras`` (4 x 4) and extent
    (i0, i1, j0, j1, k0, k1), voxel 0 at the extent's first voxel; None for an empty extent. Raises what
    :meth:`Geometry.from_ijk_to_lps` raises."""
    if any(extent[2 * a + 1] < extent[2 * a] for a in range(3)):
        return None
    ijk_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ijk_to_ras
    ijk_to_lps[:, 3] = ijk_to_lps @ np.array([extent[0], extent[2], extent[4], 1.0])   # voxel 0 of the extent
    return (Geometry.from_ijk_to_lps(ijk_to_lps),
            (extent[5] - extent[4] + 1, extent[3] - extent[2] + 1, extent[1] - extent[0] + 1))


def _drawn_on(raw: dict, seg: Segmentation) -> Optional[Tuple[Geometry, Tuple[int, int, int]]]:
    """``(geometry, shape (K, J, I))`` of the image a .seg.nrrd that Slicer saved cropped ('crop to minimum extent')
    was drawn on: Slicer's conversion parameter 'Reference image geometry' (IJK-to-RAS row by row, then the extent),
    where the file's grid is a whole-voxel part of it other than all of it; else None."""
    text = next((p.get("value", "") for p in raw.get("conversionParameters", []) or []
                 if p.get("name") == "Reference image geometry"), "")
    try:
        values = [float(v) for v in text.split(";") if v.strip()]
        if len(values) != 22:
            return None
        drawn_on = _extent_grid(np.array(values[:16]).reshape(4, 4), [int(round(v)) for v in values[16:]])
    except (ValueError, GeometryError, np.linalg.LinAlgError):
        return None
    if drawn_on is None:
        return None
    grid, shape = drawn_on
    if not seg.segments or voxel_offset(seg.geometry, grid) is None \
            or (shape == seg.shape and seg.geometry.same_as(grid)):
        return None
    return grid, shape


def _read_labelmap(path: Path) -> Segmentation:
    image = read_volume(path)
    arr = image.array
    if not np.issubdtype(arr.dtype, np.integer):
        if not np.all(np.equal(np.mod(arr, 1), 0)):
            raise InputError(f"'{path}' has non-integer voxel values, so it is not a labelmap.",
                             "Give a .seg.nrrd or an integer labelmap.")
        arr = arr.astype(np.int64)
    labels = np.unique(arr)
    if _looks_like_an_image(arr, labels):
        raise InputError(f"'{path}' looks like an image volume, not a segmentation: it holds {len(labels)} different "
                         "values, and neighbouring voxels seldom share one.",
                         "Give the segmentation (.seg.nrrd or a labelmap) here, and the image volume where a volume "
                         "is asked for (`ifssnet propagate VOLUME SEEDS -o OUT`: the volume first).")
    segments = [Segment(f"Label_{int(v)}", (arr == v).astype(np.uint8), fields={"labelValue": int(v)})
                for v in labels if v != 0]
    return Segmentation(segments, image.geometry)


#: A labelmap with more labels than this is checked for being an image volume (:func:`_looks_like_an_image`).
MANY_LABELS = 32


def _looks_like_an_image(arr: np.ndarray, labels: np.ndarray) -> bool:
    """Whether an integer volume ``arr`` (K, J, I) read as a labelmap, with distinct values ``labels``, is an image:
    more than :data:`MANY_LABELS` values, and under half of its non-zero voxels have the same value as one of their
    4 neighbours in their slice. Every voxel of a labelmap's regions (and of a 4-connected outline) has one; in
    ultrasound speckle each neighbour shares a voxel's value about 1 time in 25 (the phantoms and the sweeps of
    .data), so a labelmap would otherwise become hundreds of 'segments' of one grey level each. Every 8th slice
    along k is enough to tell."""
    if len(labels) <= MANY_LABELS or arr.ndim != 3:
        return False
    sample = arr[::8]
    same = np.zeros(sample.shape, bool)
    for axis in (1, 2):     # j, i
        lo = (slice(None),) * axis + (slice(None, -1),)
        hi = (slice(None),) * axis + (slice(1, None),)
        equal = sample[lo] == sample[hi]
        same[lo] |= equal
        same[hi] |= equal
    inside = sample != 0
    return bool(inside.any()) and (same & inside).sum() < 0.5 * inside.sum()


def resample_segmentation(seg: Segmentation, reference: Geometry, shape: Sequence[int], *,
                          progress: Optional[ProgressFn] = None, cancel: CancelLike = None) -> Segmentation:
    """Resample every segment onto ``reference`` with grid ``shape`` (K, J, I), nearest neighbour. Annotated slices
    (numbered on the segment's ``annotated_grid``, else on ``seg``'s) follow the slices they are resampled onto
    (:func:`annotated_on_grid`: a whole-voxel shift of the grid, a flip or an exchange of its axes, finer or coarser
    slices), and are dropped where the slices are rotated or do not map one for one (the segment's ``notes`` say
    so).
    ``progress`` gets ``"Resampling segmentation"`` once per segment;
    ``cancel`` is checked between them."""
    out = []
    for n, s in enumerate(seg.segments):
        report(progress, "Resampling segmentation", n, len(seg.segments))
        check_cancel(cancel)
        source = s.annotated_grid[0] if s.annotated_grid is not None else seg.geometry
        notes = list(s.notes)
        out.append(Segment(s.name, _resampled(s.mask, seg.geometry, reference, shape), s.color,
                           _annotated_on(s.annotated, source, reference, shape, s.name, notes), notes=notes,
                           fields=dict(s.fields)))
    report(progress, "Resampling segmentation", len(seg.segments), len(seg.segments))
    return Segmentation(out, reference)


def _resampled(mask: np.ndarray, geometry: Geometry, reference: Geometry, shape: Sequence[int]) -> np.ndarray:
    """``mask`` (K, J, I) on ``geometry``'s grid resampled onto ``reference``'s grid of ``shape`` (K, J, I), nearest
    neighbour, uint8 (0 outside ``mask``'s grid)."""
    sitk = _sitk()
    ref = sitk.Image([int(shape[2]), int(shape[1]), int(shape[0])], sitk.sitkUInt8)
    reference.apply_to(ref)
    img = sitk.GetImageFromArray(np.ascontiguousarray(mask, dtype=np.uint8))
    geometry.apply_to(img)
    return sitk.GetArrayFromImage(sitk.Resample(img, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                sitk.sitkUInt8))


def _annotations_on_own_grid(seg: Segmentation) -> Segmentation:
    """``seg`` with each segment's annotated slices numbered on its own grid (from the segment's ``annotated_grid``:
    :func:`_annotated_on`)."""
    for s in seg.segments:
        if s.annotated_grid is not None:
            s.annotated = _annotated_on(s.annotated, s.annotated_grid[0], seg.geometry, seg.shape, s.name, s.notes)
            s.annotated_grid = None
    return seg


def covering_grid(geometry: Geometry, shape: Sequence[int], other: Geometry,
                  other_shape: Sequence[int]) -> Tuple[Geometry, Tuple[int, int, int]]:
    """``geometry``'s grid of ``shape`` (K, J, I), grown by whole voxels (the same spacing and directions) until it
    holds every voxel centre of ``other``'s grid of ``other_shape``: ``(geometry, shape)`` of the grown grid, the
    given one when it already does. A segmentation on ``geometry`` resamples onto it exactly (:func:`voxel_offset`)."""
    K, J, I = (int(v) for v in other_shape)
    corners = np.array([[i, j, k, 1.0] for i in (0, I - 1) for j in (0, J - 1) for k in (0, K - 1)]).T
    ijk = np.linalg.solve(geometry.ijk_to_lps, other.ijk_to_lps @ corners)[:3]
    size = np.array([int(shape[2]), int(shape[1]), int(shape[0])])
    lo = np.minimum(np.floor(ijk.min(axis=1) + 1e-6), 0).astype(int)
    hi = np.maximum(np.ceil(ijk.max(axis=1) - 1e-6).astype(int), size - 1)
    if not lo.any() and np.array_equal(hi, size - 1):
        return geometry, (int(shape[0]), int(shape[1]), int(shape[2]))
    n = hi - lo + 1
    return _grid_from_voxel(geometry, *lo), (int(n[2]), int(n[1]), int(n[0]))


def _grid_from_voxel(geometry: Geometry, i, j, k) -> Geometry:
    """``geometry``'s grid (the same spacing and directions) starting at its voxel (i, j, k)."""
    origin = geometry.ijk_to_lps @ np.array([i, j, k, 1.0])
    return Geometry(geometry.spacing, tuple(origin[:3]), geometry.direction)


def voxel_offset(source: Geometry, target: Geometry, tol: float = 1e-3) -> Optional[Tuple[int, int, int]]:
    """``(dk, dj, di)`` such that voxel (k, j, i) of ``source``'s grid is voxel (k + dk, j + dj, i + di) of
    ``target``'s, where the two grids differ by whole voxels only (the same spacing and directions: a file saved
    cropped, or padded); None otherwise."""
    m = np.linalg.solve(target.ijk_to_lps, source.ijk_to_lps)
    shift = m[:3, 3]
    if not np.allclose(m[:3, :3], np.eye(3), atol=tol) or not np.allclose(shift, np.round(shift), atol=tol):
        return None
    di, dj, dk = (int(v) for v in np.round(shift))
    return dk, dj, di


def _annotated_on(annotated: Optional[AnnotatedSlices], source: Geometry, target: Geometry,
                  shape: Sequence[int], name: str = "", notes: Optional[List[str]] = None) -> Optional[AnnotatedSlices]:
    """A segment's annotated slices on ``source``'s grid, on the ``target`` grid of ``shape`` (K, J, I)
    (:func:`annotated_on_grid`): None (not known: the paint is then read as fresh seeds) where no slices of one lie
    parallel to slices of the other, or they do not map one for one (then :func:`other_grid_note` goes to
    ``notes``, as Slicer's Propagate says it)."""
    if annotated is None:
        return None
    try:
        moved = annotated_on_grid(annotated, np.linalg.solve(target.ijk_to_lps, source.ijk_to_lps), shape, name)
    except SeedError:
        if notes is not None:
            notes.append(other_grid_note(name))
        return None
    return moved if moved is not None and moved.slices else None


def other_grid_note(name: str) -> str:
    """The sentence for the user when a segment's seed tags cannot apply to the grid it is propagated on, and its
    paint there was taken as fresh seeds."""
    return (f"'{name}' was painted or propagated on another volume's grid (resampled, rotated or moved), so its paint "
            "on this volume was taken as new seeds, and its 'no muscle here' marks do not apply here.")


def annotated_on_grid(annotated: AnnotatedSlices, m: np.ndarray, shape: Sequence[int], name: str = "",
                      tolerance: float = 1e-3) -> Optional[AnnotatedSlices]:
    """The annotated slices of a segment, numbered on one grid, on another grid of ``shape`` (K, J, I), onto which
    its voxels are resampled with nearest neighbour: ``m`` (4 x 4) maps the first grid's (i, j, k, 1) to the
    second's. Where the slices across ``annotated.axis`` lie parallel to slices across an axis of the second grid,
    a slice there is annotated when the slice it is read from is (a crop, a flip or the axes in another order: one
    for one; a finer grid, as Slicer's oversampled segmentation geometry: each slice there takes the tag of the
    slices that lie in it; a coarser one: each painted slice covers the slices whose centres it holds). Slices
    outside the second grid are dropped (the result may hold none); None where the slices lie parallel to none of
    its slices (rotated: not known). Raises :class:`SeedError` (what to do) where that is not one for one: a slice
    there lies halfway between an annotated slice and one that is not, or an annotated slice is read by no slice
    of its own (painted on one of the finer slices inside a volume slice, and the volume slice reads another)."""
    m = np.asarray(m, dtype=float)
    c = 2 - int(annotated.axis)                                      # array axis k, j, i = IJK index 2, 1, 0
    others = [col for col in range(3) if col != c]
    rows = [r for r in range(3) if abs(m[r, c]) > tolerance and np.allclose(m[r, others], 0, atol=tolerance)]
    if len(rows) != 1:
        return None
    r = rows[0]
    axis, scale, shift = 2 - r, float(m[r, c]), float(m[r, 3])      # slice s lies at scale * s + shift there
    n = int(shape[axis])
    marked = set(annotated.slices)
    if abs(abs(scale) - 1) < tolerance and abs(shift - round(shift)) < tolerance:   # the same slices: one for one
        sign, offset = int(round(scale)), int(round(shift))
        return AnnotatedSlices(axis, tuple(sorted(t for t in (sign * s + offset for s in marked) if 0 <= t < n)))

    def nearest(x: float) -> Tuple[int, int]:    # the slice nearest to x, or the two at a tie (rounding decides)
        return int(np.floor(x + 0.5 - tolerance)), int(np.floor(x + 0.5 + tolerance))

    kept, unsure = [], []
    for t in range(n):
        below, above = nearest((t - shift) / scale)
        if (below in marked) != (above in marked):
            unsure.append(t)
        elif below in marked:
            kept.append(t)
    lost = []
    for s in sorted(marked):
        inside = [t for t in set(nearest(scale * s + shift)) if 0 <= t < n]
        if inside and not any(t in kept for t in inside):
            lost.append(s)
    if unsure or lost:
        names = ("k", "j", "i")
        listed = ", ".join(map(str, (lost or [round((t - shift) / scale, 2) for t in unsure])[:8]))
        raise SeedError(f"The painted slices of '{name}' were recorded on a grid whose slices across "
                        f"{names[annotated.axis]} are {abs(scale):.3g} times as far apart as this volume's, and they "
                        f"do not fall on its slices one for one (slice {listed} of that grid lies between two of the "
                        "volume's, next to a slice that is not painted).",
                        "Paint those slices again on this volume's own slices (in Slicer: on the volume you "
                        "propagate, which then reads them there), and save the seeds again.")
    return AnnotatedSlices(axis, tuple(kept))


def write_segmentation(seg: Segmentation, path, *, progress: Optional[ProgressFn] = None,
                       cancel: CancelLike = None) -> Path:
    """Write a .seg.nrrd that Slicer opens as is (names, colours, tags), atomically.

    Non-overlapping segments share one layer; overlapping ones go to further layers, as Slicer does. A segment's
    ``fields`` (read from a seed or reference file: :func:`kept_fields`) are written back: its ID where no other segment
    has it, its terminology, status and tags, and its label value where its layer leaves it free. A segment's name and
    colour are written as not auto-generated unless its ``fields`` say so (Slicer would rename and recolour it from a
    terminology chosen later).
    ``progress`` gets :data:`STAGE_WRITING`, one step per segment (:func:`add_to_layers`) and one for the file;
    ``cancel`` is checked before each of them, and a cancelled write (:class:`~ifssnet.errors.Cancelled`) leaves
    ``path`` as it was. 3 segments of a 1400 x 512 x 512 grid: about 5 s, 16.7x faster than with
    ``slicerio.add_segment`` (``benchmarks/segmentation_io_speed.py``).
    """
    import slicerio

    path = Path(path)
    if not path.name.lower().endswith(".seg.nrrd"):
        raise InputError(f"'{path.name}' does not end in .seg.nrrd.", "Name the output file like 'result.seg.nrrd'.")
    if not seg.segments:
        raise InputError("The segmentation has no segments to write.", "Add at least one segment.")
    for s in seg.segments:
        if s.mask.shape != seg.shape:
            raise InputError(f"Segment '{s.name}' has shape {s.mask.shape}, not {seg.shape}.",
                             "All segments must lie on the same grid.")
    raw = slicerio.create_segmentation((1, 1, 1), seg.geometry.ijk_to_lps, dtype="uint8")   # the header fields
    layers: List[np.ndarray] = []
    steps = len(seg.segments) + 1
    ids = segment_ids(seg.segments)
    for i, s in enumerate(seg.segments):
        report(progress, STAGE_WRITING, i, steps)
        check_cancel(cancel)
        # named and coloured on purpose (the phantom's muscles, a seed's result): Slicer reads a segment without these
        # fields as auto-generated, and a terminology picked later would replace its name and colour; a seed file's own
        # flags, in s.fields, win
        info = {"nameAutoGenerated": False, "colorAutoGenerated": False,
                **s.fields, "id": ids[i], "name": s.name, "color": list(map(float, s.color))}
        tags = dict(s.fields.get("tags") or {})
        if s.annotated is not None:
            # the checksums as written: a slice painted or corrected in Slicer afterwards joins the seeds
            # and the grid they number slices on, so Slicer maps them onto a crop of it as its own (IFSSNet.SeedGrid)
            tags.update({ANNOTATED_TAG: s.annotated.to_tag(),
                         RESULT_CRC_TAG: ",".join(str(c) for c in slice_crcs(s.mask, s.annotated.axis)),
                         SEED_GRID_TAG: grid_tag(seg.geometry, seg.shape)})
        info.pop("tags", None)
        if tags:
            info["tags"] = tags
        placed = add_to_layers(layers, raw["segments"], np.asarray(s.mask) > 0, s.fields.get("labelValue"))
        raw["segments"].append({**info, **placed})
    # (L, K, J, I) -> the file's (i, j, k) order as a view: Fortran-ordered, so pynrrd writes it without a copy.
    raw["voxels"] = layers[0].transpose(2, 1, 0) if len(layers) == 1 else np.stack(layers).transpose(0, 3, 2, 1)
    raw["containedRepresentationNames"] = ["Binary labelmap"]
    raw["masterRepresentation"] = "Binary labelmap"
    report(progress, STAGE_WRITING, steps - 1, steps)
    check_cancel(cancel)
    written = atomic_write(path, lambda tmp: slicerio.write_segmentation(tmp, raw, compression_level=1))
    report(progress, STAGE_WRITING, steps, steps)
    return written


def segment_ids(segments: Sequence[Segment]) -> List[str]:
    """The ``Segment<N>_ID`` of each of ``segments`` in a written file: the ID it was read with (``fields["id"]``)
    where it has one that no other of them has, else ``Segment_<n>`` (the first n from its place, 1-based, that no
    other has)."""
    read = [str(s.fields.get("id") or "") for s in segments]
    ids = [i if i and read.count(i) == 1 else "" for i in read]
    used = set(ids)
    for place, given in enumerate(ids):
        n = place + 1
        while not given:
            given = f"Segment_{n}" if f"Segment_{n}" not in used else ""
            n += 1
        ids[place] = given
        used.add(given)
    return ids


def add_to_layers(layers: List[np.ndarray], placed: Sequence[dict], mask: np.ndarray,
                  label: Optional[int] = None) -> dict:
    """Lay one segment's bool ``mask`` (K, J, I) into ``layers`` (uint8 (K, J, I) arrays, one per layer; a new one
    is appended when needed) as Slicer stores segments and ``slicerio.add_segment`` does: in the first layer where
    it overlaps no voxel of another segment, with that layer's next label value (at most 255), else in a new layer
    with label 1. ``label``: the label value it had in the file it was read from (1..255), taken where that layer
    has no segment with it. ``placed``: the segments laid so far, with their ``layer`` and ``labelValue``. Returns the
    segment's ``labelValue``, ``layer`` and ``extent`` ([i0, i1, j0, j1, k0, k1]; [0, -1, 0, -1, 0, -1] when empty).

    Our own rather than ``slicerio.add_segment`` (the same layers, label values and extents: ``Testing/test_io.py``),
    because it works inside the mask's bounding box on the (K, J, I) array. ``add_segment`` takes the (i, j, k)
    mask, a transposed view of ours, and spent 39.5 of the 43 s that writing 3 segments of a 1400 x 512 x 512 grid
    took in boolean indexing with it and ``np.nonzero`` over the whole grid (profiled, session 39).
    """
    if not layers:
        layers.append(np.zeros(mask.shape, np.uint8))
    box = bounding_box([mask])
    sub = mask[box] if box is not None else None
    wanted = int(label) if label is not None and 0 < int(label) <= 255 else None
    for index, layer in enumerate(layers):
        used = {int(p["labelValue"]) for p in placed if int(p.get("layer", 0)) == index}
        value = wanted if wanted is not None and wanted not in used else max(used, default=0) + 1
        if value <= 255 and (box is None or not layer[box][sub].any()):
            break
    else:
        layers.append(np.zeros(mask.shape, np.uint8))
        index, value = len(layers) - 1, wanted or 1
    if box is not None:
        layers[index][box][sub] = value
    extent = [0, -1, 0, -1, 0, -1] if box is None else [v for sl in box[::-1] for v in (sl.start, sl.stop - 1)]
    return {"labelValue": value, "layer": index, "extent": extent}


def bounding_box(masks: Sequence[np.ndarray]) -> Optional[Tuple[slice, slice, slice]]:
    """Bounding box (tuple of slices) of the union of non-zero voxels of 3-D masks; None if all empty.

    Reduces along axis 0 first on the whole array, then along the other axes only inside the
    occupied rows, so a 512 x 512 x 1400 mask is read about twice. (Here, not in :mod:`ifssnet.metrics`,
    which uses it too: writing a segmentation need not import SciPy.)
    """
    rows = np.zeros(masks[0].shape[0], dtype=bool)
    for m in masks:
        rows |= m.reshape(m.shape[0], -1).any(axis=1)
    if not rows.any():
        return None
    k = np.flatnonzero(rows)
    ks = slice(int(k[0]), int(k[-1]) + 1)
    plane = np.zeros(masks[0].shape[1:], dtype=bool)
    for m in masks:
        plane |= m[ks].any(axis=0)
    j = np.flatnonzero(plane.any(axis=1))
    i = np.flatnonzero(plane.any(axis=0))
    return ks, slice(int(j[0]), int(j[-1]) + 1), slice(int(i[0]), int(i[-1]) + 1)


def segmentation_from_masks(masks: dict, geometry: Geometry, annotated: Optional[dict] = None,
                            like: Optional[Segmentation] = None) -> Segmentation:
    """Build a :class:`Segmentation` from ``{name: mask (K, J, I)}``: a segment that ``like`` (the seeds it was
    propagated from) has by that name takes its colour and Slicer fields (ID, terminology, label value ...), the
    others the default muscle colours."""
    annotated = annotated or {}
    source = {s.name: s for s in like.segments} if like is not None else {}
    segs = []
    for i, (name, m) in enumerate(masks.items()):
        color = source[name].color if name in source else DEFAULT_COLORS.get(name, _auto_color(i))
        fields = dict(source[name].fields) if name in source else {}
        segs.append(Segment(name, np.asarray(m, dtype=np.uint8), color, annotated.get(name), fields=fields))
    return Segmentation(segs, geometry)


def _auto_color(i: int) -> Tuple[float, float, float]:
    palette = [(0.9, 0.6, 0.2), (0.2, 0.6, 0.9), (0.9, 0.9, 0.3), (0.6, 0.3, 0.2), (0.3, 0.8, 0.8)]
    return palette[i % len(palette)]


def parse_names(text: Optional[str]) -> List[str]:
    """The names of a comma-separated segment list (``--segment GM,SOL``): stripped, empty ones left out (a
    trailing comma), in the order given, each once (``GM,GM`` trained, compared or counted in a memory estimate
    twice before); [] for ``None`` or an empty text."""
    names = [n.strip() for n in text.split(",") if n.strip()] if text else []
    return list(dict.fromkeys(names))


def split_names(text: Optional[str], available: Iterable[str]) -> List[str]:
    """Parse a comma-separated segment list (``None`` = all available) and check every name exists."""
    available = list(available)
    names = parse_names(text) if text else available
    missing = [n for n in names if n not in available]
    if missing:
        raise InputError(f"No segment named {', '.join(missing)}.", f"Choose from: {', '.join(available)}.")
    check_unique_names(names, available)
    return names


def check_unique_names(names: Iterable[str], available: Sequence[str], where: str = "The segmentation") -> None:
    """Refuse (:class:`InputError`) a name of ``names`` that more than one segment of ``available`` has (Slicer allows
    it): a segment is found by its name, so the second one would be read as the first."""
    twice = sorted({n for n in names if list(available).count(n) > 1})
    if twice:
        raise InputError(f"{where} has more than one segment named {', '.join(map(repr, twice))}.",
                         "Give each segment its own name (in Slicer: double-click the name in Segment Editor), "
                         "save, and try again.")


def write_json(obj, path) -> Path:
    """Write ``obj`` as JSON, atomically (used for the sidecars: confidence, reports)."""
    import json

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, default=float)

    return atomic_write(path, _write)
