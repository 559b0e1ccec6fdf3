"""One registry of propagation methods, so that every method joins the comparison table the same way.

A *method* is a callable::

    fn(volume, seeds, spacing_kji, *, progress=None, cancel=None) -> np.ndarray

- ``volume``: (K, J, I) array (uint8, uint16, int16 or float), axis 0 is the sweep (propagation) axis.
- ``seeds``: :class:`ifssnet.seeds.SeedSet`, the target segment on its annotated slices (axis 0).
- ``spacing_kji``: (sz, sy, sx) voxel size in mm.
- returns a uint8 (K, J, I) mask (0/1) of the target segment on the whole volume; the annotated
  slices come out exactly as annotated.

Methods are registered by name. A method can be registered eagerly (:func:`register` with the
callable) or lazily (:func:`register_lazy` with ``"package.module:function"``): the module is then
imported only by :func:`get`, so importing the registry never pulls in ITK or torch. The runner
(:mod:`ifssnet.compare`) only ever calls :func:`get` and :func:`available`; a new method (the
network ``ifssnet``, the learned baselines ``pgnet`` and ``unet3d``) joins the table by one
``register``/``register_lazy`` call, with no change to the runner.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Mapping, Optional

from ..errors import DependencyError, InputError

Method = Callable[..., "object"]


@dataclass
class _Entry:
    name: str
    label: str
    fn: Optional[Method] = None
    target: Optional[str] = None  # "package.module:function", imported on first get()
    requires: str = ""            # pip requirement to print when the import fails


_LOCK = threading.Lock()
_REGISTRY: Dict[str, _Entry] = {}


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or "," in name or " " in name.strip():
        raise InputError(f"Method name {name!r} is not usable.", "Use a short name without spaces or commas, e.g. 'fbs'.")
    return name.strip().lower()


def register(name: str, fn: Method, label: str = "", *, replace: bool = True) -> None:
    """Register ``fn`` under ``name`` (case-insensitive). ``label`` is the human-readable name.

    Registering an existing name replaces it unless ``replace=False`` (then InputError).
    """
    if not callable(fn):
        raise InputError(f"Method {name!r} is not callable.", "Pass a function fn(volume, seeds, spacing_kji, ...).")
    key = _check_name(name)
    with _LOCK:
        if not replace and key in _REGISTRY:
            raise InputError(f"A method named {key!r} is already registered.", "Choose another name.")
        _REGISTRY[key] = _Entry(key, label or key, fn=fn)


def register_lazy(name: str, target: str, label: str = "", *, requires: str = "", replace: bool = True) -> None:
    """Register ``"package.module:function"`` under ``name``; the module is imported on first :func:`get`.

    ``requires`` is the pip requirement shown in the DependencyError if the import fails because a
    third-party module is missing (e.g. ``"torch"``).
    """
    if ":" not in target:
        raise InputError(f"Lazy target {target!r} for method {name!r} is malformed.", "Write it as 'package.module:function'.")
    key = _check_name(name)
    with _LOCK:
        if not replace and key in _REGISTRY:
            raise InputError(f"A method named {key!r} is already registered.", "Choose another name.")
        _REGISTRY[key] = _Entry(key, label or key, target=target, requires=requires)


def unregister(name: str) -> None:
    """Remove a method (no error if it is not there). For tests and plug-ins."""
    with _LOCK:
        _REGISTRY.pop(str(name).strip().lower(), None)


def available(*, all_registered: bool = False) -> List[str]:
    """Names of the registered methods, in registration order (built-ins first).

    A lazily registered method is listed only if its module exists in this installation (checked
    with ``importlib.util.find_spec``, which imports nothing heavy); ``all_registered=True`` lists
    every entry. A listed method can still raise DependencyError on :func:`get` when a third-party
    package (ITK, torch) is missing.
    """
    with _LOCK:
        entries = list(_REGISTRY.values())
    if all_registered:
        return [e.name for e in entries]
    return [e.name for e in entries if e.fn is not None or _module_exists(e.target.partition(":")[0])]


def _module_exists(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def label(name: str) -> str:
    """The human-readable label of a registered method (e.g. ``"Fill between slices"``)."""
    return _entry(name).label


def _entry(name: str) -> _Entry:
    key = str(name).strip().lower()
    with _LOCK:
        entry = _REGISTRY.get(key)
    if entry is None:
        raise InputError(f"Unknown method {name!r}.", f"Choose from: {', '.join(available()) or '(none registered)'}.")
    return entry


def get(name: str) -> Method:
    """The callable of a registered method; imports a lazily registered one on first use.

    Raises InputError for an unknown name and DependencyError (with the pip command) when the
    module behind a lazy entry needs a package that is not installed.
    """
    entry = _entry(name)
    if entry.fn is not None:
        return entry.fn
    module_name, _, attr = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == "ifssnet" or exc.name.startswith("ifssnet.")):
            raise DependencyError(f"Method {entry.name!r} is registered but its module {module_name} is missing.",
                                  "Update the ifssnet package.") from exc
        pip = entry.requires or (exc.name or "").split(".")[0]
        raise DependencyError(f"Method {entry.name!r} needs the Python package {exc.name!r}, which is not installed.",
                              f"Install it with: python -m pip install {pip}") from exc
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise DependencyError(f"Method {entry.name!r}: {module_name} has no function {attr!r}.", "Update the ifssnet package.")
    with _LOCK:
        entry.fn = fn
    return fn


def prepare(name: str) -> None:
    """Do a method's one-off set-up (imports, loading wrappings or weights) so that timing leaves it out.

    A method opts in by carrying a ``prepare`` attribute (a zero-argument callable); others need nothing.
    """
    fn = get(name)
    hook = getattr(fn, "prepare", None)
    if callable(hook):
        hook()


def load_once(name: str, options: Optional[dict]) -> dict:
    """``options`` of method ``name`` with what it would read on every call read once: a method opts in with a
    ``load_once`` attribute, ``options -> options`` (the networks: the ``model`` file, or the shipped one, becomes
    the loaded network). :func:`ifssnet.compare.compare` and ``compare_set`` call it once per run, so the file
    is not read again for each muscle and case. A new dict; the caller's is left as it is."""
    hook = getattr(get(name), "load_once", None)
    opts = dict(options or {})
    return hook(opts) if callable(hook) else opts


def loaded_once(load: Callable[[object], object]) -> Callable[[dict], dict]:
    """A ``load_once`` hook that replaces ``options["model"]`` (a path, or None for the default file) by
    ``load(model)``, the network on the CPU (each call moves it to its device). A file that cannot be loaded is
    left to the method's call, whose error then goes into the rows as before (one per muscle, the others run)."""
    from ..errors import IFSSNetError

    def hook(options: dict) -> dict:
        model = options.get("model")
        if model is None or isinstance(model, (str, os.PathLike)):
            try:
                options = dict(options, model=load(model))
            except IFSSNetError:
                pass
        return options

    return hook


def _network_method(volume, seeds, spacing_kji, *, model=None, device: str = "auto", progress=None, cancel=None,
                    **options):
    """IFSS-Net as a method: :func:`ifssnet.propagate.propagate` on one SeedSet, returns its uint8 (K, J, I) mask;
    on ``{name: SeedSet}`` (``compare(..., joint=True)``), all segments in one run, returns ``{name: mask}``.

    ``model`` (checkpoint path, loaded net or None = shipped weights), ``device`` and any other
    ``propagate`` option come through ``compare(..., method_options={"ifssnet": {...}})``.
    ``spacing_kji[0]`` is the sweep's slice spacing (``propagate``'s ``slice_spacing_mm``, unless an
    option gives it): a sweep finer than the network's is propagated on its nearest frames.
    """
    try:
        from ..propagate import propagate
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "torch":
            raise DependencyError("IFSS-Net needs PyTorch, which is not installed.",
                                  "Install it with: python -m pip install torch (in Slicer: the PyTorch extension).") from exc
        raise
    options.setdefault("slice_spacing_mm", float(spacing_kji[0]) if spacing_kji is not None else None)
    result = propagate(volume, seeds, model, device=device, progress=progress, cancel=cancel, **options)
    if isinstance(seeds, Mapping):
        return dict(result.masks)
    return next(iter(result.masks.values()))


def _prepare_network() -> None:
    try:
        importlib.import_module("torch")  # the import takes seconds; timing leaves it out
    except ModuleNotFoundError as exc:
        raise DependencyError("IFSS-Net needs PyTorch, which is not installed.",
                              "Install it with: python -m pip install torch (in Slicer: the PyTorch extension).") from exc


def _load_network(model):
    from ..propagate import load_model

    return load_model(model, "cpu")


_network_method.prepare = _prepare_network  # type: ignore[attr-defined]
_network_method.load_once = loaded_once(_load_network)  # type: ignore[attr-defined]
_network_method.joint = True  # type: ignore[attr-defined]


def keyword_options(fn) -> list:
    """The options a method ``fn`` takes through ``compare(..., method_options=)``: its keyword-only parameters but
    ``progress`` and ``cancel``, which the runner passes itself."""
    import inspect

    return [k for k, p in inspect.signature(fn).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in ("progress", "cancel")]


def _network_option_names() -> list:
    """The options ``_network_method`` passes on (``model``, ``device`` and ``propagate``'s keywords), so that
    ``compare`` refuses a misspelt one before any work, as it does for the methods without ``**options``."""
    from ..propagate import propagate

    return ["model", "device"] + [k for k in keyword_options(propagate) if k != "device"]


_network_method.option_names = _network_option_names  # type: ignore[attr-defined]


def _register_builtins() -> None:
    # The three Slicer baselines. Their modules import ITK / SimpleITK only inside the functions,
    # so even get() stays cheap; a missing ITK package raises DependencyError when the method runs.
    register_lazy("fbs", "ifssnet.baselines.fbs:fill_between_slices", "Fill between slices",
                  requires="itk-morphologicalcontourinterpolation")
    register_lazy("gfs", "ifssnet.baselines.gfs:grow_from_seeds", "Grow from seeds", requires="itk-growcut")
    register_lazy("ws", "ifssnet.baselines.ws:watershed", "Watershed", requires="SimpleITK")
    # The network and the learned baselines register their own modules here as they land; the
    # import is lazy, so a missing module only matters when somebody asks for that method.
    register("ifssnet", _network_method, "IFSS-Net")
    register_lazy("pgnet", "ifssnet.baselines.pgnet:pgnet", "PG-Net", requires="torch")
    register_lazy("unet3d", "ifssnet.baselines.unet3d:unet3d", "3-D U-Net", requires="torch")


_register_builtins()
