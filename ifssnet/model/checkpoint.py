"""Checkpoints: safe to load (``torch.load(weights_only=True)``), self-describing, written atomically.

Layout (a dict saved with ``torch.save``)::

    arch             "ifssnet"
    format_version   int (FORMAT_VERSION); a newer one is refused with a clear message
    config           IFSSNetConfig as a JSON string
    derived          channels / layer rates / bottleneck (information only)
    package_version  ifssnet.__version__ of the writer
    created          UTC ISO time
    state_dict       the weights
    extra            dict from the caller: training_command, data, step, optimizer, rng, ...

``extra`` must hold only what ``weights_only`` loading accepts: tensors, str, int, float, bool, None,
and lists/tuples/dicts of those. Convert numpy RNG state to lists or tensors first; anything else is
refused at save time (so a checkpoint that was written can always be read back).
"""
from __future__ import annotations

import datetime as _dt
import dataclasses
import json
import pickle
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import torch
from torch import nn

from .. import __version__
from ..errors import ModelError
from .config import IFSSNetConfig
from .net import IFSSNet

FORMAT_VERSION = 1
ARCH = "ifssnet"
_SAFE_SCALARS = (str, int, float, bool, type(None), torch.Tensor, torch.dtype, torch.device, torch.Size)


def _check_safe(obj: Any, where: str = "extra") -> None:
    if isinstance(obj, _SAFE_SCALARS):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_safe(v, f"{where}[{i}]")
        return
    if isinstance(obj, (dict, OrderedDict)):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint {where} has a key of type {type(k).__name__}")
            _check_safe(v, f"{where}[{k!r}]")
        return
    raise TypeError(f"checkpoint {where} holds a {type(obj).__name__}, which weights_only loading refuses; "
                    "convert it to tensors, numbers, strings, lists or dicts")


def save_checkpoint(path: Union[str, Path], model: nn.Module, config: Optional[IFSSNetConfig] = None,
                    extra: Optional[dict] = None) -> Path:
    """Write ``model`` (an :class:`IFSSNet`, possibly wrapped in DDP) atomically to ``path``.

    Raises ``TypeError`` if ``extra`` holds objects that ``weights_only`` loading would refuse,
    :class:`ResourceError` if the folder cannot be written.
    """
    net = getattr(model, "module", model)  # DistributedDataParallel
    config = config if config is not None else net.config
    return write_weights(path, net, ARCH, config.to_json(), json.dumps(config.derived()), extra)


def write_weights(path: Union[str, Path], net: nn.Module, arch: str, config_json: str, derived_json: str,
                  extra: Optional[dict] = None) -> Path:
    """The checkpoint layout shared by every architecture (IFSS-Net, PG-Net, 3-D U-Net), written atomically:
    the file appears complete or not at all (:func:`ifssnet.io.atomic_write`)."""
    from ..io import atomic_write

    path = Path(path)
    extra = dict(extra or {})
    _check_safe(extra)
    payload = {
        "arch": arch,
        "format_version": FORMAT_VERSION,
        "config": config_json,
        "derived": derived_json,
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
        "extra": extra,
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp), make_folder=True)


def set_slice_spacing(path: Union[str, Path], spacing_mm: Optional[float], out: Union[str, Path, None] = None) -> Path:
    """Record the slice spacing (mm) of a network's training sweeps in an IFSS-Net, PG-Net or 3-D U-Net model
    file (``IFSSNetConfig.slice_spacing_mm``, ``PGNetConfig.slice_spacing_mm``, ``UNet3DConfig.slice_spacing_mm``),
    for files written before it was recorded. The weights and every other field stay as they are. Writes ``out``
    (default: in place, atomically). :class:`ModelError` for another file or architecture."""
    import json

    from ..io import atomic_write

    path = Path(path)
    obj = _read(path, "cpu")                                  # once, whatever the architecture
    if isinstance(obj, dict) and obj.get("arch") in ("pgnet", "unet3d"):
        if obj["arch"] == "pgnet":
            from ..baselines.pgnet import PGNetConfig as BaselineConfig
        else:
            from ..baselines.unet3d import UNet3DConfig as BaselineConfig

        check_format_version(obj, path)
        config = BaselineConfig.from_dict(dict(json.loads(obj.get("config") or "{}"), slice_spacing_mm=spacing_mm))
        obj["config"] = json.dumps(config.to_dict(), sort_keys=True)
    else:
        _check_ifssnet(obj, path)
        config = dataclasses.replace(IFSSNetConfig.from_json(obj.get("config")), slice_spacing_mm=spacing_mm)
        obj["config"] = config.to_json()
    return atomic_write(Path(out) if out is not None else path, lambda tmp: torch.save(obj, tmp), make_folder=True)


def _read_ifssnet(path: Path, map_location) -> dict:
    """The raw checkpoint dict of an IFSS-Net file; :class:`ModelError` for another file, another
    architecture or a newer format."""
    return _check_ifssnet(_read(path, map_location), path)


def _check_ifssnet(obj, path: Path) -> dict:
    """``obj`` (a loaded file) if it is an IFSS-Net checkpoint of a format this code reads, else :class:`ModelError`."""
    if not isinstance(obj, dict) or "arch" not in obj or "state_dict" not in obj:
        raise ModelError(f"The file {path} is not an IFSS-Net checkpoint.",
                         "Choose a model file written by IFSS-Net (.pt).")
    if obj["arch"] != ARCH:
        raise ModelError(f"The file {path} holds a {obj['arch']!r} network, not IFSS-Net.",
                         "Choose an IFSS-Net model file.")
    check_format_version(obj, path)
    return obj


def _read(path: Path, map_location) -> Any:
    if not path.is_file():
        raise ModelError(f"The model file {path} does not exist.",
                         "Check the path, or leave the model empty to use the shipped weights.")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": we report our own error
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "global" in msg.lower() or "unsupported class" in msg.lower():  # a class or function was pickled
            raise ModelError(f"The model file {path} contains Python code or objects, not only weights; "
                             "it was refused because loading it could run code.",
                             "Use a checkpoint written by IFSS-Net's save_checkpoint.") from exc
        raise ModelError(f"The model file {path} is corrupt or not a PyTorch weights file.",
                         "Download or train it again.") from exc
    except Exception as exc:  # zip/stream errors, truncation, EOF, not a torch file
        raise ModelError(f"The model file {path} is corrupt or truncated ({type(exc).__name__}).",
                         "Download or train it again.") from exc


def check_format_version(obj: dict, path) -> int:
    """The checkpoint's ``format_version``; :class:`ModelError` if it is missing or newer than this version reads."""
    version = obj.get("format_version")
    if not isinstance(version, int):
        raise ModelError(f"The file {path} has no valid format version.", "Download or train it again.")
    if version > FORMAT_VERSION:
        raise ModelError(f"The model file {path} was written by a newer IFSS-Net (format {version}; this "
                         f"version reads up to {FORMAT_VERSION}).", "Update the IFSS-Net extension.")
    return version


def weights_mismatch_error(path, exc: Exception) -> ModelError:
    """The error for weights that do not fit their stored configuration (``load_state_dict`` failed)."""
    first = str(exc).strip().splitlines()[0][:300] if str(exc) else type(exc).__name__
    return ModelError(f"The weights in {path} do not match their stored configuration ({first}).",
                      "The file is damaged or was edited; use another checkpoint.")


def checkpoint_meta(obj: dict) -> dict:
    """Every field of a checkpoint but the weights, with the ``extra`` entries merged in at top level."""
    meta = {k: v for k, v in obj.items() if k not in ("state_dict", "extra")}
    extra = obj.get("extra") or {}
    if isinstance(extra, dict):
        meta.update(extra)
    return meta


def resume_state(meta: dict, path) -> dict:
    """The ``training`` block of a checkpoint's metadata that ``--resume`` continues from (config, step,
    optimiser state). A model file holds weights only (no optimiser state): a clear error instead of
    continuing with a fresh Adam."""
    tr = meta.get("training") or {}
    if not tr or "optimizer" not in tr:
        raise ModelError(f"'{path}' holds no optimiser state, so it cannot be resumed exactly.",
                         "Resume from a .ckpt.pt written during training, or fine-tune with --from.")
    return tr


def load_checkpoint(path: Union[str, Path], map_location="cpu") -> Tuple[IFSSNet, IFSSNetConfig, dict]:
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns ``(model in eval mode, config, meta)``; ``meta`` holds every field but the weights
    (format_version, package_version, created, derived, and the ``extra`` entries merged in at top
    level, e.g. training_command, data, step, optimizer, rng).
    Raises :class:`ModelError` for a missing, corrupt, truncated or unsafe file, another architecture,
    a newer format, or weights that do not match the stored configuration.
    """
    path = Path(path)
    obj = _read_ifssnet(path, map_location)
    config = IFSSNetConfig.from_json(obj.get("config"))
    model = IFSSNet(config)
    try:
        model.load_state_dict(obj["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise weights_mismatch_error(path, exc) from exc
    model.to(map_location if map_location is not None else "cpu")
    model.eval()
    return model, config, checkpoint_meta(obj)


def read_meta(path: Union[str, Path]) -> dict:
    """:func:`load_checkpoint`'s ``meta`` alone, without building the network: for what a file records (its training
    config and step), with the same checks on the file but the weights'."""
    return checkpoint_meta(_read_ifssnet(Path(path), "cpu"))


#: Weights smaller than this (absolute) are set to 0 when a model file is loaded for propagation or
#: fine-tuning (:func:`zero_negligible_weights`).
NEGLIGIBLE_WEIGHT = 1e-15


def negligible_share(model, below: float = NEGLIGIBLE_WEIGHT) -> float:
    """Share of the model's parameter entries with ``|w| < below`` (exact zeros included), in [0, 1]."""
    small = total = 0
    with torch.no_grad():
        for p in model.parameters():
            small += int((p.abs() < below).sum())
            total += p.numel()
    return small / total if total else 0.0


def zero_negligible_weights(model, below: float = NEGLIGIBLE_WEIGHT) -> int:
    """Set every parameter entry with ``|w| < below`` to exactly 0, in place; returns how many.

    Weights that get no gradient decay under the L2 term towards 0 without reaching it (the shipped
    weights hold entries of 1e-21 to 1e-24). Multiplied by the small activations that such weights
    produce, they give subnormal floats, and x86 CPUs compute on subnormals many times slower: one
    network step of the shipped weights took 1.2x as long (``benchmarks/cpu_step_variants.py``). An
    entry below 1e-15 changes no output measurably (activations are O(1) after normalisation, and
    float32 resolves 1e-7 of them); the masks are identical (tested).
    """
    count = 0
    with torch.no_grad():
        for p in model.parameters():
            tiny = (p.abs() < below) & (p != 0)
            n = int(tiny.sum())
            if n:
                p.masked_fill_(tiny, 0.0)
                count += n
    return count
