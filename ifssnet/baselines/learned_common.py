"""What the two learned baselines (PG-Net, 3-D U-Net) share: checkpoints, model lookup, the training loop.

Checkpoints use IFSS-Net's file layout (:mod:`ifssnet.model.checkpoint`): a dict saved with
``torch.save`` and read back with ``torch.load(weights_only=True)``::

    arch             "pgnet" | "unet3d"
    format_version   int (ifssnet.model.checkpoint.FORMAT_VERSION)
    config           the network's configuration as a JSON string
    derived          JSON string, information only (parameter count)
    package_version  ifssnet.__version__ of the writer
    created          UTC ISO time
    state_dict       the weights
    extra            command, data, and ``training`` = {config, step}; the ``.ckpt.pt`` adds ``optimizer`` for ``--resume``

``load_checkpoint`` in :mod:`ifssnet.model.checkpoint` builds IFSS-Net only, so the learned baselines
load through :func:`load_model_file` here; the safety checks (``weights_only``, refusing pickled code,
corrupt or truncated files) are the same function (``checkpoint._read``).

Training (:func:`fit`) is one loop for both: Adam, ``lr`` then ``lr_final`` for the last two epochs,
gradient clipping, a ``.ckpt.pt`` every ``checkpoint_every`` steps with the optimiser state, and the
data and initialisation of step n drawn from generators seeded with ``(seed, n)``, so ``resume``
continues exactly. A cancel stops before the next step and leaves ``out_path`` as it was.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import InputError, ModelError
from ..progress import CancelLike, ProgressFn, check_cancel, report

ARCHS = ("pgnet", "unet3d")
_ENV = {"pgnet": "IFSSNET_PGNET_MODEL", "unet3d": "IFSSNET_UNET3D_MODEL"}
_LABEL = {"pgnet": "PG-Net", "unet3d": "3-D U-Net", "ifssnet": "IFSS-Net"}


# --------------------------------------------------------------------------------------------------
# Where the weights are


def default_model_path(arch: str) -> Path:
    """``$IFSSNET_PGNET_MODEL`` / ``$IFSSNET_UNET3D_MODEL``, else ``Resources/Models/<arch>.pt`` beside the package."""
    env = os.environ.get(_ENV[arch])
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "Resources" / "Models" / f"{arch}.pt"


def train_command(arch: str) -> str:
    return f"ifssnet train CASES --arch {arch} --out Resources/Models/{arch}.pt"


def missing_model_error(arch: str, path: Path) -> ModelError:
    return ModelError(
        f"The {_LABEL[arch]} baseline has no trained weights: {path} does not exist.",
        f"Train it once on annotated volumes (e.g. phantom folders from `ifssnet phantom`): "
        f"`{train_command(arch)}`, or point ${_ENV[arch]} (or the method's model= option) at a {arch} checkpoint.")


# --------------------------------------------------------------------------------------------------
# Checkpoints


def save_model(path: Union[str, Path], model, arch: str, config: dict, extra: Optional[dict] = None) -> Path:
    """Write ``model`` atomically in IFSS-Net's checkpoint layout with ``arch`` and a JSON ``config``.

    Raises ``TypeError`` if ``extra`` holds what ``weights_only`` loading refuses, :class:`ResourceError`
    if the folder cannot be written.
    """
    from ..model.checkpoint import write_weights

    n_params = int(sum(p.numel() for p in model.parameters()))
    return write_weights(path, model, arch, json.dumps(config, sort_keys=True),
                         json.dumps({"parameters": n_params}), extra)


def load_model_file(path: Union[str, Path], arch: str, build: Callable[[dict], Any],
                    map_location="cpu") -> Tuple[Any, dict, dict]:
    """Load a ``arch`` checkpoint written by :func:`save_model`: ``(model in eval mode, config dict, meta)``.

    ``build(config_dict)`` makes the empty network. ``meta`` holds every field but the weights, with
    ``extra`` merged in. Raises :class:`ModelError` for a missing, corrupt, unsafe or foreign file.
    """
    from ..model.checkpoint import _read, check_format_version, checkpoint_meta, weights_mismatch_error

    path = Path(path)
    obj = _read(path, map_location)
    if not isinstance(obj, dict) or "arch" not in obj or "state_dict" not in obj:
        raise ModelError(f"The file {path} is not an IFSS-Net or baseline checkpoint.",
                         f"Choose a {arch} model file (.pt) written by `ifssnet train --arch {arch}`.")
    if obj["arch"] != arch:
        raise ModelError(f"The file {path} holds a {_LABEL.get(obj['arch'], obj['arch'])} network, "
                         f"not {_LABEL[arch]}.", f"Choose a model file written by `ifssnet train --arch {arch}`.")
    check_format_version(obj, path)
    try:
        config = json.loads(obj.get("config") or "{}")
        model = build(config)
        model.load_state_dict(obj["state_dict"], strict=True)
    except ModelError:
        raise
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise weights_mismatch_error(path, exc) from exc
    model.to(map_location if map_location is not None else "cpu")
    model.eval()
    return model, config, checkpoint_meta(obj)


def resolve_model(model, arch: str, build: Callable[[dict], Any], cls: type, device: str):
    """``None`` (default path), a checkpoint path or a network of class ``cls`` -> the network on ``device``, eval mode."""
    if model is None:
        path = default_model_path(arch)
        if not path.is_file():
            raise missing_model_error(arch, path)
        model = path
    if isinstance(model, (str, Path)):
        if not Path(model).is_file():
            raise ModelError(f"The {_LABEL[arch]} model file {model} does not exist.",
                             f"Check the path, or train one: `{train_command(arch)}`.")
        model, _, _ = load_model_file(model, arch, build, map_location="cpu")
    if not isinstance(model, cls):
        raise ModelError(f"Expected a {_LABEL[arch]} model file or network, not {type(model).__name__}.",
                         f"Give a .pt file written by `ifssnet train --arch {arch}`.")
    return model.to(device).eval()


def resolve_device(device: str = "auto") -> str:
    from ..propagate import resolve_device as _resolve

    return _resolve(device)


def prepare_torch() -> None:
    """Registry ``prepare`` hook: import torch outside the timed call."""
    from ..errors import DependencyError

    try:
        import torch  # noqa: F401
    except ModuleNotFoundError as exc:
        raise DependencyError("The learned baselines need PyTorch, which is not installed.",
                              "Install it with: python -m pip install torch (in Slicer: the PyTorch extension).") from exc


# --------------------------------------------------------------------------------------------------
# Losses


# --------------------------------------------------------------------------------------------------
# Training loop


@dataclass
class BaselineTrainConfig:
    """Fields shared by both baselines' training configurations (stored in the checkpoint)."""

    epochs: int = 10
    steps_per_epoch: int = 100
    lr: float = 1e-3
    lr_final: float = 1e-4            # last two epochs, as for IFSS-Net
    weight_decay: float = 1e-5
    batch: int = 2
    seed: int = 0
    checkpoint_every: int = 50
    augment: bool = True
    grad_clip: float = 5.0

    def validate(self) -> None:
        if self.epochs < 1 or self.steps_per_epoch < 1 or self.batch < 1:
            raise InputError("Epochs, steps per epoch and batch must be at least 1.", "Check --epochs and --steps.")

    def lr_at(self, step: int) -> float:
        epoch = step // self.steps_per_epoch
        return self.lr_final if self.epochs > 2 and epoch >= self.epochs - 2 else self.lr


@dataclass
class BaselineStepLog:
    step: int
    loss: float
    lr: float
    seconds: float


def fit(*, arch: str, build: Callable[[dict], Any], model_config: dict, cfg: BaselineTrainConfig,
        step_loss: Callable, out_path, resume=None, base_model=None, command: str = "",
        data_description: str = "", progress: Optional[ProgressFn] = None, cancel: CancelLike = None,
        on_step: Optional[Callable[[BaselineStepLog], None]] = None, device: str = "cpu") -> Path:
    """The training loop of a learned baseline; writes ``out_path`` and returns it.

    ``step_loss(model, rng, cfg, device) -> scalar loss tensor`` draws one batch with ``rng`` and
    computes its loss. ``resume``: a ``.ckpt.pt`` written by this loop (continues exactly, with its
    stored training configuration); ``base_model``: a checkpoint to fine-tune from.
    """
    import torch

    from ..model.checkpoint import resume_state
    from ..train import _refuse_other_cases

    cfg.validate()
    out_path = Path(out_path)
    start_step, opt_state = 0, None
    if resume is not None:
        model, model_config, meta = load_model_file(resume, arch, build)
        tr = resume_state(meta, resume)
        _refuse_other_cases(resume, meta, data_description)     # as IFSS-Net's resume: the run's own cases
        cfg = type(cfg)(**tr["config"])
        start_step, opt_state = int(tr["step"]), tr["optimizer"]
    elif base_model is not None:
        model, model_config, _ = load_model_file(base_model, arch, build)
    else:
        torch.manual_seed(cfg.seed)           # the same seed gives the same initial weights
        model = build(model_config)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if opt_state is not None:
        opt.load_state_dict(opt_state)

    total = cfg.epochs * cfg.steps_per_epoch

    def save(step: int, path: Path, optimizer: bool = True) -> None:
        """With the optimiser state for ``--resume`` (the .ckpt.pt); without it for the model file."""
        training = {"config": asdict(cfg), "step": step}
        if optimizer:
            training["optimizer"] = opt.state_dict()
        save_model(path, model, arch, model_config, {"command": command, "data": data_description,
                                                     "training": training})

    report(progress, "training", start_step, total)
    ckpt_path = out_path.with_name(out_path.stem + ".ckpt.pt")
    step = start_step
    while step < total:
        check_cancel(cancel)
        t0 = time.perf_counter()
        torch.manual_seed((cfg.seed * 1_000_003 + step) & 0x7FFFFFFF)
        rng = np.random.default_rng([cfg.seed, step])
        lr = cfg.lr_at(step)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss = step_loss(model, rng, cfg, device)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        if on_step:
            on_step(BaselineStepLog(step, float(loss.detach()), lr, time.perf_counter() - t0))
        report(progress, "training", step, total)
        if step % cfg.checkpoint_every == 0 or step == total:
            save(step, ckpt_path)
    model.eval()
    save(step, out_path, optimizer=False)
    return out_path


def check_cases(cases: Sequence, what: str) -> None:
    """Refuse no cases, or a sparse annotation (a fully supervised baseline would train its unpainted slices as
    empty; :func:`ifssnet.dataset.require_complete`)."""
    from ..dataset import require_complete

    if not cases:
        raise InputError(f"No training cases for {what}.", "Give at least one volume with its annotation.")
    require_complete(cases, f"{what} (fully supervised)", "IFSS-Net in --mode fewshot (--arch ifssnet)")


# --------------------------------------------------------------------------------------------------
# `ifssnet train --arch pgnet|unet3d`


def check_memory(args, pairs, segments, size: int, stored: Optional[dict] = None,
                 resumed_meta: Optional[dict] = None) -> None:
    """Refuse a ``--arch pgnet|unet3d`` run that cannot fit in memory (:func:`ifssnet.train_memory.
    estimate_baseline_training_bytes`) from the files' headers, before any case is read and anything is written.
    The network (width, U-Net patch and segments, PG-Net slice spacing) is the stored one (``stored``: the
    ``--from`` / ``--resume`` configuration) or the options'; the recipe (batch, run length, chain) the resumed
    run's (``resumed_meta``) or the defaults with ``--run-length``."""
    from ..train_memory import (BASELINE_TODO, PGNET_CHAIN, baseline_width, case_shape, check_training_memory,
                                estimate_baseline_training_bytes, trains_on_gpu)
    from ..train_recipe import stored_config

    recipe = stored_config(resumed_meta)
    cases = [case_shape(v, a, segments, training=True) for v, a in pairs]
    stored = stored or {}
    arch = args.arch
    run_length = int(recipe.get("run_length", args.run_length))
    need = estimate_baseline_training_bytes(
        arch, cases, size, int(stored.get("width", baseline_width(args.width_mult))),
        batch=int(recipe.get("batch", BaselineTrainConfig.batch)), run_length=run_length,
        chain=int(recipe.get("chain", PGNET_CHAIN)),
        patch=(stored.get("patch") or (run_length, size, size)) if arch == "unet3d" else None,
        segments=len(stored["segments"]) if arch == "unet3d" and stored.get("segments") else None,
        network_mm=stored.get("slice_spacing_mm"), on_gpu=trains_on_gpu(args.device))
    check_training_memory(need, todo=BASELINE_TODO)


#: ``ifssnet train`` options (argparse dests) that ``--arch pgnet`` and ``unet3d`` both read; any other one given is
#: refused, unless :data:`PGNET_OPTIONS` holds it and the arch is PG-Net.
BASELINE_OPTIONS = frozenset({"cases", "arch", "mode", "base", "resume", "out", "size", "width_mult", "segments",
                              "epochs", "steps", "run_length", "lr", "seed", "checkpoint_every", "device", "log"})
#: options PG-Net reads and the 3-D U-Net does not (its training has no cross-entropy term).
PGNET_OPTIONS = frozenset({"bce_weight"})


def refuse_ifssnet_only(args, parser) -> None:
    """Refuse (:class:`~ifssnet.errors.InputError`, naming them) the ``ifssnet train`` options that ``--arch``
    ``args.arch`` would ignore: every option outside :data:`BASELINE_OPTIONS` (and, for PG-Net,
    :data:`PGNET_OPTIONS`) typed on the command line (:func:`ifssnet.train_cli.typed_options`: also at the parser's
    default, ``--val-every 50``), or, for a namespace built in code, whose value differs from ``parser``'s default.
    Call it before the recipe's defaults are filled in (:func:`ifssnet.train_cli.fill_recipe`)."""
    from ..train_cli import _given, typed_options

    typed = typed_options(args)
    names: dict = {}
    for action in parser._actions:
        if action.option_strings:
            names.setdefault(action.dest, action.option_strings[0])
    read = BASELINE_OPTIONS | (PGNET_OPTIONS if args.arch == "pgnet" else frozenset())
    given = [dest for dest, value in sorted(vars(args).items())
             if dest in names and dest not in read and _given(args, parser, typed, dest)]
    label = _LABEL.get(args.arch, args.arch)
    parts = [(f"{', '.join(names[d] for d in dests)}: implemented for {who} only, not {label}")
             for dests, who in (([d for d in given if d not in PGNET_OPTIONS], "IFSS-Net"),
                                ([d for d in given if d in PGNET_OPTIONS], "IFSS-Net and PG-Net")) if dests]
    if parts:
        raise InputError("; ".join(parts) + ".", "Drop them, or train IFSS-Net (--arch ifssnet).")


def train_cli(args) -> int:
    """The ``ifssnet train`` command for ``--arch pgnet`` or ``--arch unet3d`` (one process)."""
    from ..dataset import load_case
    from ..io import parse_names
    from ..progress import TqdmProgress
    from ..dataset import case_names
    from ..train_cli import _case_paths, _open_log

    arch = args.arch
    if arch not in ARCHS:
        raise InputError(f"Unknown architecture '{arch}'.", "Use --arch ifssnet, pgnet or unet3d.")
    if getattr(args, "mode", "full") != "full":
        raise InputError(f"{_LABEL[arch]} is a fully supervised baseline; --mode {args.mode} is for IFSS-Net.",
                         "Drop --mode, or train IFSS-Net (--arch ifssnet) in few-shot mode.")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError(f"Distributed training is implemented for IFSS-Net only, not {_LABEL[arch]}.",
                         "Run `ifssnet train --arch ...` as one process (it uses the GPU with --device cuda).")
    if arch == "pgnet":
        from .pgnet import PGNet, PGNetConfig, PGNetTrainConfig, train_pgnet as train_fn

        build, config_cls = (lambda d: PGNet(PGNetConfig.from_dict(d))), PGNetConfig
    else:
        from .unet3d import UNet3D, UNet3DConfig, UNet3DTrainConfig, train_unet3d as train_fn

        build, config_cls = (lambda d: UNet3D(UNet3DConfig.from_dict(d))), UNet3DConfig
    segments = parse_names(args.segments) or None
    size = args.size
    stored: Optional[Dict[str, Any]] = None
    meta: dict = {}
    if args.resume or args.base:
        _, stored, meta = load_model_file(args.resume or args.base, arch, build)
        size = int(stored["size"])
        if arch == "unet3d" and not segments:
            segments = list(stored["segments"])
    pairs = _case_paths(args.cases)
    check_memory(args, pairs, segments, size, stored, meta if args.resume else None)   # headers only, before any read
    names = case_names([v for v, _ in pairs])           # a/leg and b/leg, not 'leg' twice (as ifssnet train)
    cases = [load_case(v, a, size, segments, name) for (v, a), name in zip(pairs, names)]
    check_cases(cases, _LABEL[arch])          # before --log is opened (train_fn checks them again, cheaply)
    if stored is not None:     # --from / --resume: the stored network, whatever --size or --width-mult say
        model_config = config_cls.from_dict(stored)
    if arch == "pgnet":
        if stored is None:
            model_config = PGNetConfig(size=size, width=max(4, int(round(16 * args.width_mult))))
        cfg = PGNetTrainConfig(epochs=args.epochs, steps_per_epoch=args.steps, run_length=args.run_length,
                               lr=args.lr, seed=args.seed, checkpoint_every=args.checkpoint_every,
                               bce_weight=args.bce_weight)
    else:
        if stored is None:
            names = segments or list(cases[0].masks)
            model_config = UNet3DConfig(size=size, segments=tuple(names), width=max(4, int(round(16 * args.width_mult))),
                                        patch=(args.run_length, size, size))
        cfg = UNet3DTrainConfig(epochs=args.epochs, steps_per_epoch=args.steps, lr=args.lr, seed=args.seed,
                                checkpoint_every=args.checkpoint_every)
    logs: list = []                # --log, opened at its first record (as ifssnet train's): a refused run writes none
    resumed_step = int((meta.get("training") or {}).get("step", 0)) if args.resume else None

    def on_step(log: BaselineStepLog) -> None:
        if args.log:
            if not logs:              # --resume: the records past its checkpoint are dropped first (trim_log)
                logs.append(_open_log(args.log, resumed_step))
            logs[0].write(json.dumps(asdict(log)) + "\n")
            logs[0].flush()

    bar = TqdmProgress()
    try:
        train_fn(cases, args.out, model_config=model_config, cfg=cfg, base_model=args.base, resume=args.resume,
                 command=args.command_line,
                 data_description=", ".join(c.name for c in cases), progress=bar, on_step=on_step,
                 device=resolve_device(args.device))
    finally:
        bar.close()
        for f in logs:
            f.close()
    print(f"wrote {args.out}")
    return 0
