"""One error hierarchy for the whole core, with messages written for a clinician.

Every error says what is wrong and what to do about it. The CLI maps each class to an exit code
and prints one line on stderr (no traceback unless ``--debug``). The Slicer modules show the same
message in a dialog. An operation that raises one of these has changed nothing on disk or in the
user's segmentation.
"""
from __future__ import annotations


class IFSSNetError(Exception):
    """Base class. ``str(err)`` is the full message: what is wrong, then what to do."""

    exit_code = 1

    def __init__(self, what: str, todo: str = "") -> None:
        self.what = what
        self.todo = todo
        super().__init__(f"{what} {todo}".strip())


class InputError(IFSSNetError):
    """The volume, the segmentation or the arguments cannot be used as given."""

    exit_code = 2


class VolumeError(InputError):
    """The image itself is unusable (2-D, 4-D, empty, wrong type, too small)."""


class SeedError(InputError):
    """The painted slices are unusable (too few, empty, on two axes)."""


class StrokesOffSlices(SeedError):
    """Fresh paint whose strokes lie on no slices of the volume, each crossing several of them
    (``io.require_strokes_on_slices``)."""


class GeometryError(InputError):
    """Spacing, origin or direction cannot be reconciled."""


class ModelError(IFSSNetError):
    """A checkpoint is missing, corrupt, unsafe, or of another architecture or format."""

    exit_code = 3


class ResourceError(IFSSNetError):
    """Not enough memory or disk, an unwritable path, or a missing device."""

    exit_code = 4


class DependencyError(IFSSNetError):
    """An optional dependency (torch, ITK filters, matplotlib) is not installed."""

    exit_code = 5


class Cancelled(IFSSNetError):
    """The user cancelled. Nothing was changed."""

    exit_code = 130

    def __init__(self, what: str = "Cancelled by the user.", todo: str = "Nothing was changed.") -> None:
        super().__init__(what, todo)


#: How to install each optional dependency, for :class:`DependencyError` messages.
INSTALL_HINTS = {
    "torch": "Install PyTorch: in 3D Slicer, install the 'PyTorch' extension (PyTorch Utils module); "
             "on the command line, run: python -m pip install torch",
    "matplotlib": "Install it: python -m pip install matplotlib",
    "itk": "Install the ITK filters: python -m pip install \"ifssnet[baselines]\"",
    "tqdm": "Install it: python -m pip install tqdm",
}


def missing_dependency(exc: ImportError) -> "DependencyError | None":
    """The :class:`DependencyError` for an ``ImportError`` of an optional third-party package, or
    ``None`` when the import that failed is not one of those (a bug, not a missing install)."""
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name not in INSTALL_HINTS:
        return None
    label = "PyTorch (torch)" if name == "torch" else name
    return DependencyError(f"{label} is not installed, and this command needs it.", INSTALL_HINTS[name])


def require(module_name: str):
    """Import ``module_name`` or raise :class:`DependencyError` with the install command."""
    import importlib

    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        err = missing_dependency(exc)
        if err is None:
            raise
        raise err from exc
