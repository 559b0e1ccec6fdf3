"""``ifssnet train``: the command line of :func:`ifssnet.train.train`, one process or many under torchrun.

CASES are phantom folders (volume.nrrd + reference.seg.nrrd) or VOLUME:ANNOTATION pairs, read onto the
network's working grid (:func:`ifssnet.dataset.load_case`). Under ``torchrun`` every process reads the
environment's RANK and WORLD_SIZE, makes the process group (gloo on CPU, nccl on GPUs) and trains on its
share of the cases; ``python -m ifssnet.train`` and ``torchrun -m ifssnet.train`` take the same arguments.
Ctrl-C during training exits 130 with a line that says what was kept: the model file is written only at the end,
and the checkpoint saved so far can be resumed (``--resume OUT.ckpt.pt``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import List, Sequence

from .dataset import case_names, load_case, require_painted, require_segments
from .errors import InputError
from .io import parse_names, same_file
from .train import DRAWS, StepLog, TrainConfig, train
from .train_recipe import (FEWSHOT_BETA, FINETUNE_LR, RECIPE, cli_value, inherit_recipe, learning_rates,
                           recipe_options, stored_config, withheld_from_base)
from .validation import VALIDATION_CHOICES, best_model_path as _best_path, collapse_note, recorded_history



def _case_paths(items: Sequence[str]) -> List[tuple]:
    """CASES: phantom folders (volume.nrrd + reference.seg.nrrd) or VOLUME:ANNOTATION pairs."""
    pairs = []
    for it in items:
        if ":" in it and not Path(it).exists():
            v, a = _split_pair(it)
            pairs.append((Path(v), Path(a)))
        else:
            d = Path(it)
            pairs.append((d / "volume.nrrd", d / "reference.seg.nrrd"))
    return pairs


def _split_pair(item: str) -> tuple:
    """``VOLUME:ANNOTATION`` -> ``(VOLUME, ANNOTATION)``, where either path may start with a Windows drive
    (``C:\\data\\v.nrrd:C:\\data\\a.seg.nrrd``, as Slicer's Training module passes them on Windows): the colon
    that splits is the first one that is not a drive's, preferring one where both files exist."""
    cuts = [i for i, ch in enumerate(item) if ch == ":"
            and not (i == 1 and item[0].isalpha())                          # the volume's drive
            and not (i >= 2 and item[i - 2] == ":" and item[i - 1].isalpha())]   # the annotation's drive
    cuts = cuts or [item.index(":")]
    for i in cuts:
        if Path(item[:i]).exists() and Path(item[i + 1:]).exists():
            return item[:i], item[i + 1:]
    return item[:cuts[0]], item[cuts[0] + 1:]


def fill_recipe(args, base_meta=None) -> str:
    """Set every recipe option (:data:`RECIPE`) the user did not give: from ``base_meta`` (the metadata of
    the ``--from`` model, :func:`~ifssnet.model.checkpoint.load_checkpoint`'s third value) where its training
    config has it, else TrainConfig's default; ``--cycle`` takes no burn-in from the base model (its runs
    start on their annotation), and ``--mode fewshot`` no Tversky beta (:data:`~ifssnet.train_recipe.FEWSHOT_BETA`).
    ``--lr`` and ``--lr-final`` not given come from :func:`~ifssnet.train_recipe.learning_rates` (1e-5 for a
    fine-tune of a network trained to propagate, else the paper's 1e-4; a tenth of it for the last two epochs).
    Returns the inherited options that differ from the defaults as a command-line fragment ('' when none)."""
    if hasattr(args, "lr"):
        args.lr, args.lr_final = learning_rates(base_meta, args.lr, getattr(args, "lr_final", None))
    given = {key: (not value if dest == "fixed_tversky" else value) for dest, key in RECIPE
             if (value := getattr(args, dest, None)) is not None}     # strides stay '1,3' (read in _train_ranked)
    recipe, inherited = inherit_recipe(base_meta, given, cycle=bool(getattr(args, "cycle", 0)),
                                       mode=getattr(args, "mode", "full"))
    for dest, key in RECIPE:
        if key not in given:
            setattr(args, dest, cli_value(dest, recipe[key]))
    return recipe_options(inherited)


#: The progress stage of reading the training cases.
READING_CASES = "reading cases"


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train or fine-tune IFSS-Net on annotated volumes",
                       description="CASES are phantom folders (volume.nrrd + reference.seg.nrrd) or VOLUME:ANNOTATION pairs.")
    add_train_arguments(p)
    p.set_defaults(func=_train_cli)


def add_train_arguments(p) -> None:
    p.add_argument("cases", nargs="+")
    p.add_argument("--arch", choices=["ifssnet", "pgnet", "unet3d"], default="ifssnet",
                   help="network: IFSS-Net (default) or a learned baseline, PG-Net or the 3-D U-Net "
                        "(full supervision; --run-length is PG-Net's run / the U-Net's patch depth)")
    p.add_argument("--mode", choices=["full", "fewshot", "image"], default="full",
                   help="full: every slice annotated (eq. 4); fewshot: sparse annotations and pseudo-labels; "
                        "image: pretrain the shared encoder to find each segment in the image alone (image-only "
                        "head, no mask input; --batch windows per step), before a full run with --image-aux")
    p.add_argument("--no-curriculum", action="store_true",
                   help="fewshot: draw every case from the first step (default: the decremental order)")
    p.add_argument("--draw", choices=DRAWS, default="auto",
                   help="which case each step's run comes from: case (each case of the pool alike, the prototype's), "
                        "paint (in proportion to its painted slices, so that the densely painted cases keep teaching "
                        "few-shot runs once the sparse ones join), auto (default: paint in --mode fewshot, else case)")
    p.add_argument("--out", type=Path, required=True, help="output model file (.pt)")
    p.add_argument("--from", dest="base", type=Path, default=None, help="fine-tune from this model")
    p.add_argument("--resume", type=Path, default=None, help="continue a run from its .ckpt.pt")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps", type=int, default=100, help="steps per epoch")
    p.add_argument("--run-length", type=int, default=None,
                   help=f"slices per training run (default {TrainConfig.run_length}; with --from, the base model's)")
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default: the paper's 1e-4; 1e-5 for a fine-tune --from a network "
                        "trained to propagate, model card 'Fine-tuning on sweeps of another look')")
    p.add_argument("--lr-final", type=float, default=None, help="for the last two epochs (default: lr / 10)")
    p.add_argument("--size", type=int, default=128, help="in-plane working size (multiple of 32)")
    p.add_argument("--width-mult", type=float, default=1.0)
    p.add_argument("--mask-sees-image", action="store_true",
                   help="new network only: the mask stream takes (image, mask) into its first layer, as PG-Net "
                        "does, not only the image stream's added skips (IFSSNetConfig.mask_sees_image)")
    p.add_argument("--segments", default=None, help="segments to train on, comma-separated (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bce-weight", type=float, default=None,
                   help="add this weight x voxel-wise cross-entropy to the Tversky loss (default 0, the paper's loss)")
    p.add_argument("--fixed-tversky", action=argparse.BooleanOptionalAction, default=None,
                   help="keep alpha = beta = 0.5 (the Dice loss) instead of learning them; a learned alpha "
                        "that falls makes false positives cheap, and masks leak (model card)")
    p.add_argument("--tversky-beta", type=float, default=None,
                   help="where the Tversky loss's beta (the weight of missed voxels) starts, alpha = 1 - beta; "
                        "with --fixed-tversky it stays there (default 0.5, the Dice loss; above 0.5 counters masks "
                        "that come out too small)")
    p.add_argument("--mask-jitter", type=float, default=None,
                   help="probability, per window, that the mask input is shifted and dilated/eroded (default 0)")
    p.add_argument("--jitter-first-only", action=argparse.BooleanOptionalAction, default=None,
                   help="--mask-jitter deforms only each run's first mask input (the annotation), as the shipped "
                        "weights' stage 3 was trained; default: any window's")
    p.add_argument("--strides", default=None,
                   help="window strides, comma-separated; one is drawn per step (default 1, the paper's; "
                        "1,3 also trains the fast preset's step of w = 3 slices)")
    p.add_argument("--batch", type=int, default=None,
                   help="runs per step (default 1, the prototype's); on a GPU 8-16 keep it busy")
    p.add_argument("--jitter-shift", type=int, default=None,
                   help=f"--mask-jitter: largest in-plane shift in pixels of the working grid (default {TrainConfig.jitter_shift})")
    p.add_argument("--jitter-radius", type=int, default=None,
                   help=f"--mask-jitter: largest dilation/erosion radius in pixels; 0 shifts only (default {TrainConfig.jitter_radius})")
    p.add_argument("--feedback-grad", action=argparse.BooleanOptionalAction, default=None,
                   help="backpropagate through the mask each window feeds to the next (default: detached, "
                        "only the ConvLSTM state carries gradient)")
    p.add_argument("--burn-in", type=int, default=None, metavar="N",
                   help="propagate the first N slices of each run as inference does (no gradient, the network's "
                        "own masks fed forward from the annotation), then train on the next --run-length slices "
                        "with true targets: the network learns to correct its own drift and leaks (default 0)")
    p.add_argument("--reach", type=int, default=0, metavar="N",
                   help="fewshot mode: draw runs N slices longer and propagate each without gradient to just before "
                        "its next annotated group, so the trained --run-length slices end on real annotation, not "
                        "only on the network's own pseudo-labels (runs with no group within reach: --burn-in; default 0)")
    p.add_argument("--cycle", type=float, default=0.0, metavar="W",
                   help="propagate each run forward from its annotated slices, then back to them, and add W x the "
                        "way back's loss, whose last windows are scored against the annotation: a mask that drifts "
                        "or grows on the way out is penalised (few-shot's pseudo-labels are not; default 0: off)")
    p.add_argument("--annotated-total", type=float, default=None, metavar="SHARE",
                   help="fewshot mode: the largest share of the completely annotated cases' slices kept painted, "
                        "the groups every case and muscle keeps included (default "
                        f"{TrainConfig.annotated_total}, the paper's 3.5 %% margin)")
    p.add_argument("--decay-ratio", type=float, default=None, metavar="R",
                   help="fewshot mode: painted share of one case over the one before (default "
                        f"{TrainConfig.decay_ratio}, the paper's decremental schedule; 1: every case the same share)")
    p.add_argument("--paint-group", type=int, default=None, metavar="G",
                   help=f"fewshot mode: consecutive slices per painted group (default {TrainConfig.paint_group}); "
                        "groups shorter than the window need --fill-gap, since runs start on a window of labels")
    p.add_argument("--fill-gap", type=int, default=0, metavar="N",
                   help="fewshot mode: fill each gap of up to N slices between two painted groups with Slicer's Fill "
                        "between slices and train on it as on painted slices (longer gaps keep the network's own "
                        "pseudo-labels; default 0: off). N counts the sweep's slices, also where a sweep finer than "
                        "the network's spacing is thinned to its frames")
    p.add_argument("--empty-past-ends", action="store_true",
                   help="fewshot mode: a muscle is one run of slices, so where a slice painted empty lies beyond every "
                        "slice painted with the muscle, train on the slices from it to the sweep's end as empty "
                        "(instead of the network's own pseudo-labels, which a leak past the end satisfies)")
    p.add_argument("--anchor", choices=("known", "painted"), default="known",
                   help="fewshot mode: re-anchor the mask input on every labelled slice (known, the default), or on "
                        "the painted ones alone (painted): slices labelled by --fill-gap or --empty-past-ends are then "
                        "targets only, and the network is fed its own predictions over them, as in propagation")
    p.add_argument("--end-weight", type=float, default=None, metavar="W",
                   help="add W x the area predicted in windows past a muscle's end (a fraction of the annotated "
                        "area; the Tversky and cross-entropy terms hardly see such a leak; default 0). fewshot mode: "
                        "windows labelled empty on every slice, such as --empty-past-ends labels")
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY",
                   help="keep an exponential moving average of the weights (e.g. 0.99: about the last 100 steps); "
                        "the model files hold it and --val scores it (default 0: the last step's weights)")
    p.add_argument("--warmup", type=int, default=0, metavar="STEPS",
                   help="raise the learning rate linearly to --lr over the first STEPS steps (default 0)")
    p.add_argument("--mask-box", type=float, default=None, metavar="P",
                   help="probability, per window, that the mask input is replaced by its bounding boxes (grown by "
                        "up to --jitter-shift px): the network must find the outline in the image")
    p.add_argument("--image-aux", type=float, default=0.0, metavar="W",
                   help="add an image-only head (one output per trained segment) and W x its loss (BCE + soft "
                        "Dice): the shared encoder must find the muscles in the image alone; propagation never "
                        "uses the head (default 0: none, the paper's network)")
    p.add_argument("--weight-decay", choices=["decoupled", "coupled"], default=None,
                   help="how the L2 term (1e-5) is applied: decoupled (AdamW, default) or coupled (in the gradient, "
                        "plain Adam, as the paper's loss is written; it drives the fusion and the Bi-ConvLSTM to 0)")
    p.add_argument("--checkpoint-every", type=int, default=50)
    p.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                   help="stop after this many minutes of training and write the checkpoint and the model there "
                        "(--resume continues); for a machine lent for a fixed time")
    p.add_argument("--val", nargs="+", default=None, metavar="CASE",
                   help="held-out annotated cases (as CASES) to propagate every --val-every steps; a segment "
                        "painted on some slices only is propagated from its largest painted group and scored on its "
                        "other painted slices (held-out groups); the best network by mean Dice is kept as "
                        "MODEL.best.pt where the run ends (MODEL.ckpt.best.pt while it goes; default: no validation)")
    p.add_argument("--val-every", type=int, default=None, metavar="N",
                   help="steps between validations (default: --checkpoint-every)")
    p.add_argument("--val-protocol", choices=VALIDATION_CHOICES, default="3-seeds",
                   help="how validation cuts seeds from each annotation (as ifssnet compare; default 3-seeds); "
                        "both: every case under each, and the best network by the mean over all of them")
    p.add_argument("--device", default="cpu")
    p.add_argument("--log", type=Path, default=None,
                   help="append one JSON line per step (and one per validation, with val_* keys)")


def _check_log(path) -> None:
    """Refuse a ``--log`` that cannot be appended to (:func:`ifssnet.io.check_output_file`)."""
    from .io import check_output_file

    check_output_file(path, file_hint="Give --log a file name, e.g. run.jsonl.")


def _open_log(path, resumed_step=None):
    """``--log`` opened to append, its folder made where missing, as the model's folder is (``--out``): a missing
    folder stopped the run with an internal FileNotFoundError once its cases were read. ``resumed_step``: the step
    of the checkpoint a ``--resume`` continues; the records the stopped run wrote past it are dropped first
    (:func:`trim_log`), so that the log reads as if the run had never stopped."""
    from .errors import ResourceError
    from .io import make_folders

    make_folders(Path(path).parent)
    _check_log(path)
    if resumed_step is not None:
        trim_log(path, resumed_step)
    try:
        return open(path, "a")
    except OSError as exc:
        raise ResourceError(f"Could not open the log '{path}': {exc.strerror or exc}.",
                            "Give --log a file in a folder you can write to.") from exc


def trim_log(path, step: int) -> int:
    """Drop the last records of the JSON-lines log ``path`` whose ``step`` is past ``step`` (the checkpoint a
    ``--resume`` continues): the steps and validations that a run killed or cancelled after that checkpoint logged,
    and that the resumed run takes and logs again (they were in the log twice). Only the log's tail is read back,
    up to the last record at or before ``step``, so an earlier run's records above it are kept; a last line cut
    short by the kill (no newline) is dropped, as a line that does not read as a record is. Written atomically;
    a log without such records is left as it is. Returns how many lines were dropped."""
    from .io import atomic_write

    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.readlines()
    keep = len(lines)
    while keep:
        line = lines[keep - 1]
        try:
            past = int(json.loads(line)["step"]) > step
        except (ValueError, KeyError, TypeError):
            past = not line.endswith("\n")          # cut short by the kill; other lines are not ours to judge
        if not past:
            break
        keep -= 1
    kept = lines[:keep]
    if kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"                             # the next record starts a line of its own
    if kept == lines:
        return 0

    def write(tmp) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.writelines(kept)

    atomic_write(path, write)
    return len(lines) - keep


def _check_new_network(args) -> None:
    """Refuse a new network's ``--size`` or ``--width-mult`` that cannot build one, naming the option (the
    network's own check said 'Invalid IFSS-Net configuration ... use a checkpoint made by this version')."""
    size, width = args.size, args.width_mult
    if size < 32 or size % 32:
        near = max(32, int(round(size / 32)) * 32)
        raise InputError(f"--size {size} is not a multiple of 32: the network halves each slice five times.",
                         f"Give --size {near} (or another multiple of 32; 128 by default).")
    if not 0 < width <= 8:
        raise InputError(f"--width-mult {width:g} is outside (0, 8].",
                         "Give --width-mult above 0 and at most 8 (1 by default; the shipped network's is 0.5).")


def _train_cli(args) -> int:
    from .train import refuse_writing_over_inputs

    refuse_writing_over_inputs(args.out, [p for pair in _case_paths(args.cases + (args.val or [])) for p in pair],
                               base_model=None if args.resume else args.base, log=args.log, resume=args.resume)
    if args.log is not None and Path(args.log).parent.is_dir():
        _check_log(args.log)             # a folder or a write-protected file, before any case is read
    if getattr(args, "arch", "ifssnet") != "ifssnet":
        from .baselines.learned_common import refuse_ifssnet_only, train_cli

        parser, _ = _train_options()
        refuse_ifssnet_only(args, parser)     # --val, --burn-in ... would be ignored: say so
        fill_recipe(args)                     # the defaults: a baseline's file records no IFSS-Net recipe
        return train_cli(args)
    loaded, stored, meta = None, None, None   # the --resume / --from file: (model, configuration, metadata)
    if args.resume or args.base:
        from .model.checkpoint import load_checkpoint

        loaded = load_checkpoint(args.resume or args.base)
        _, stored, meta = loaded
    if args.resume:
        refuse_changes_on_resume(args, stored, meta)
        refuse_a_finished_run(args.resume, meta)
    elif args.base:
        refuse_network_changes_on_fine_tune(args, stored)
    else:
        _check_new_network(args)
    base_meta = meta if args.base and not args.resume else None          # --resume: its own config
    base_beta = withheld_from_base(base_meta, {"tversky_beta": args.tversky_beta}, mode=args.mode).get("tversky_beta")
    lr_given = args.lr is not None
    inherited = fill_recipe(args, base_meta)
    first_rank = int(os.environ.get("RANK", "0")) == 0                  # say things once under torchrun
    if inherited and first_rank:
        print(f"Fine-tuning with the recipe {args.base} was trained with: {inherited} (give an option to change it)",
              file=sys.stderr, flush=True)
    if base_beta is not None and first_rank:
        print(f"Few-shot: Tversky beta {FEWSHOT_BETA:g}, not the base model's {base_beta:g}: above 0.5 the "
              "pseudo-labels teach each window to grow the last one's mask (model card, 'Beta 0.5 for few-shot "
              f"fine-tunes'). Give --tversky-beta {base_beta:g} to keep it.", file=sys.stderr, flush=True)
    if not lr_given and args.lr == FINETUNE_LR and first_rank:
        print(f"Fine-tune: learning rate {FINETUNE_LR:g}, a tenth of the paper's: every fine-tune of the shipped model "
              "at 1e-4 ended below it, and at 1e-5 they drifted less (model card, 'Fine-tuning on sweeps of another "
              "look'). Give --lr 1e-4 for the paper's.", file=sys.stderr, flush=True)
    if args.mode == "full" and args.end_weight > 0 and stored is None and first_rank:
        print(f"Note: --end-weight {args.end_weight:g} on a new network. In full mode a new network's masks fill "
              "the windows past each end, and with --end-weight 16 one learnt to predict nothing at all in 600 "
              "steps (model card, 'The leak loss on the end marks'). The shipped network took the leak loss in a "
              "fine-tune: train without it first, then fine-tune --from that network with it, and validate as you "
              "go (--val).", file=sys.stderr, flush=True)
    args.device = training_device(args.device)
    rank, world, own_group = _init_distributed(args.device)
    try:
        return _train_ranked(args, rank, world, stored.size if stored is not None else args.size,
                             stored, meta if args.resume else None, loaded)
    finally:
        if own_group:
            import torch.distributed as dist

            dist.destroy_process_group()  # PyTorch asks every rank to; a group left to exit may abort the process


#: ``ifssnet train`` options (argparse dest) whose TrainConfig field has another name or form: dest -> (field, how
#: the option's value reads as the field's).
_CONFIG_OF_OPTION = {"steps": ("steps_per_epoch", int), "no_curriculum": ("curriculum", lambda v: not v),
                     "fixed_tversky": ("learn_tversky", lambda v: not v),
                     "strides": ("strides", lambda v: [int(x) for x in str(v).split(",") if x.strip()])}
#: Options of the network itself (IFSSNetConfig), which a resumed run keeps.
_NETWORK_OPTIONS = ("size", "width_mult", "mask_sees_image")


def _train_options():
    """A parser of ``ifssnet train``'s options alone (their defaults), and its option names: dest -> first option
    string (``--width-mult``)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_train_arguments(parser)
    return parser, {a.dest: a.option_strings[0] for a in parser._actions if a.option_strings}


def typed_options(args):
    """The ``ifssnet train`` options (argparse dests) typed on ``args``' command line, whatever their values, so that
    an option typed at the parser's default (``--epochs 10``) is told from one not given: the command line that
    :func:`ifssnet.cli.main` records (``args.command_line``, the arguments as given) parsed again by the options'
    parser with every default suppressed. None where ``args`` records no command line (a namespace built in code)."""
    import shlex

    words = shlex.split(getattr(args, "command_line", None) or "")[1:]      # ifssnet [--debug] train ...
    if "train" not in words:
        return None
    parser, names = _train_options()
    for action in parser._actions:
        action.default = argparse.SUPPRESS        # not set_defaults: it puts the sentinel in the namespace too
    try:
        typed, _ = parser.parse_known_args(words[words.index("train") + 1:])
    except SystemExit:                    # not raised: cli.main parsed the same words
        return None
    return set(vars(typed)) & set(names)


def _given(args, parser, typed, dest: str) -> bool:
    """Whether option ``dest`` was given: typed on the command line (``typed``, :func:`typed_options`), or, where
    that is unknown, set to a value other than ``parser``'s default."""
    if typed is not None:
        return dest in typed
    value = getattr(args, dest, None)
    return value is not None and value != parser.get_default(dest)


def refuse_changes_on_resume(args, stored, meta) -> None:
    """Raise :class:`InputError` when ``--resume`` is given with options that would change the run: ``--resume``
    continues the checkpoint's own run exactly (its TrainConfig and network), so such options were silently
    ignored (``--resume ... --epochs 20`` still ended at the run's own last step). An option counts when it was typed
    (:func:`typed_options`; also at the parser's default value: ``--epochs 10`` on a run of 20 epochs was taken for
    no option and ignored) and its value is not the resumed run's own, so the command that started the run may be
    repeated with ``--resume`` added. ``stored``, ``meta``: the checkpoint's network config and metadata."""
    from dataclasses import fields

    from .train_recipe import stored_config

    parser, names = _train_options()
    typed = typed_options(args)
    config = stored_config(meta)
    known = {f.name for f in fields(TrainConfig)}
    changed = []
    for dest, option in names.items():
        value = getattr(args, dest, None)
        if value is None or not _given(args, parser, typed, dest):
            continue
        if dest in _NETWORK_OPTIONS:
            have = getattr(stored, dest, None)
            wanted = value
        else:
            key, read = _CONFIG_OF_OPTION.get(dest, (dest, lambda v: v))
            if key not in known or key not in config:
                continue
            have, wanted = config[key], read(value)
        if wanted != have:
            if dest in ("fixed_tversky", "no_curriculum"):           # the option is the field turned round
                have = not have
            elif dest == "strides":
                have = cli_value(dest, have)
            changed.append(f"{option} {value} (the run's: {have})")
    base = getattr(args, "base", None)
    if base is not None:              # --from: the network the run started from is the checkpoint's own (base_lineage)
        lineage = meta.get("base") if isinstance(meta.get("base"), dict) else {}
        was = lineage.get("file")
        if was != Path(base).name:
            changed.append(f"--from {base} (the run's: {was or 'a new network'})")
    if changed:
        raise InputError(f"--resume continues {args.resume} exactly as its run was started, so these options would "
                         f"be ignored: {'; '.join(changed)}.",
                         f"Leave them out to continue the run, or start a new run from its weights with --from "
                         f"{args.resume} and these options (a fine-tune).")


def refuse_a_finished_run(resume, meta) -> None:
    """Raise :class:`InputError` where the ``--resume`` checkpoint (metadata ``meta``) holds a run that has taken all
    its steps: there is nothing to continue, and the run took no step but wrote its model again (recording one more
    'resumed' command), as the Training module already refuses (IFSSNetTrainingLogic.train)."""
    from .train import steps_of

    steps = steps_of(meta)
    if steps is not None and steps[0] >= steps[1]:
        raise InputError(f"{resume} holds a run that has finished (step {steps[0]} of {steps[1]}): there is nothing "
                         "to resume.", "Train a new run (leave out --resume), or fine-tune its model with --from.")


def refuse_network_changes_on_fine_tune(args, stored) -> None:
    """Raise :class:`InputError` when ``--from`` is given with a network option (``--size``, ``--width-mult``,
    ``--mask-sees-image``) typed (:func:`typed_options`, also at the parser's default value) with a value other than
    the base network's own: a fine-tune trains the base network as it is (its cases are read at its size), so such
    an option was silently ignored."""
    parser, names = _train_options()
    typed = typed_options(args)
    changed = [f"{names[dest]} {getattr(args, dest)} (the base network's: {getattr(stored, dest)})"
               for dest in _NETWORK_OPTIONS
               if _given(args, parser, typed, dest) and getattr(args, dest) != getattr(stored, dest)]
    if changed:
        raise InputError(f"A fine-tune (--from {args.base}) trains that network as it is, so these options would be "
                         f"ignored: {'; '.join(changed)}.",
                         "Leave them out to fine-tune it, or leave out --from to train a new network with them.")


def _schedule(args) -> dict:
    """The few-shot painting options the user gave, as TrainConfig fields; refused outside --mode fewshot."""
    given = {field: getattr(args, field) for field in ("annotated_total", "decay_ratio", "paint_group")
             if getattr(args, field) is not None}
    if given and args.mode != "fewshot":
        names = ", ".join("--" + f.replace("_", "-") for f in given)
        raise InputError(f"{names}: these choose which slices of each case stay painted in --mode fewshot, and "
                         f"this run is --mode {args.mode}.", "Leave them out, or train with --mode fewshot.")
    return given


def _train_ranked(args, rank: int, world: int, size: int, stored=None, resumed_meta=None, loaded=None) -> int:
    """One process's training; ``size``: the working size the cases are read at (the stored network's);
    ``stored``: the ``--from`` / ``--resume`` network's configuration, ``resumed_meta`` the ``--resume``
    checkpoint's metadata (its recipe), ``loaded``: that file as read (:func:`ifssnet.train.train` reads it no more)."""
    from .model import IFSSNetConfig
    from .progress import TqdmProgress

    segments = parse_names(args.segments) or None
    try:
        strides = [int(v) for v in str(args.strides).split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--strides {args.strides!r} is not a list of whole numbers.", "Give e.g. --strides 1,3.")
    train_pairs = _case_paths(args.cases)
    _check_memory(args, train_pairs, segments, size, stored, resumed_meta)    # from the headers, before any read
    validator = _validator(args, train_pairs, segments)
    cases = _read_cases(train_pairs, size, segments, TqdmProgress(disable=rank != 0))
    notes = require_segments(cases, segments)
    require_painted(cases)                    # before --log is opened (train checks them again, cheaply)
    if rank == 0:
        for note in notes:
            print(note, file=sys.stderr, flush=True)
    cfg = TrainConfig(mode=args.mode, epochs=args.epochs, steps_per_epoch=args.steps, run_length=args.run_length,
                      lr=args.lr, lr_final=args.lr_final,
                      seed=args.seed, checkpoint_every=args.checkpoint_every,
                      mask_jitter=args.mask_jitter, bce_weight=args.bce_weight, curriculum=not args.no_curriculum,
                      draw=args.draw, strides=strides, jitter_first_only=args.jitter_first_only, batch=args.batch,
                      feedback_grad=args.feedback_grad, jitter_shift=args.jitter_shift,
                      jitter_radius=args.jitter_radius, image_aux=args.image_aux, mask_box=args.mask_box,
                      weight_decay=args.weight_decay, learn_tversky=not args.fixed_tversky, burn_in=args.burn_in,
                      reach=args.reach, cycle=args.cycle, fill_gap=args.fill_gap, **_schedule(args),
                      empty_past_ends=args.empty_past_ends, anchor=args.anchor,
                      ema=args.ema, warmup=args.warmup, end_weight=args.end_weight,
                      tversky_beta=args.tversky_beta)
    logs: list = []                        # --log, opened at its first line: a run refused in train() writes none
    resumed_step = (int((resumed_meta.get("training") or {}).get("step", 0))
                    if args.resume and resumed_meta else None)   # --resume: the log goes on from its checkpoint

    # the run's validation scores in step order (a resumed run's, its checkpoint's first), for collapse_note
    validated = recorded_history(resumed_meta) if args.resume else []
    earlier = len(validated)          # validations of an earlier process: this one warns anew at its first

    def write_log(record: dict) -> None:
        if args.log and rank == 0:
            if not logs:
                logs.append(_open_log(args.log, resumed_step))
            logs[0].write(json.dumps(record) + "\n")
            logs[0].flush()

    def on_step(log: StepLog) -> None:
        write_log(asdict(log))

    def on_validation(score) -> None:
        write_log(score.log_record())
        print(score.summary(), file=sys.stderr, flush=True)
        validated.append(score)
        note = collapse_note(validated, _best_path(args.out).name)
        if note and rank == 0 and (len(validated) == earlier + 1 or not collapse_note(validated[:-1])):  # once per fall
            print(f"Warning: {note}", file=sys.stderr, flush=True)

    bar = TqdmProgress(disable=rank != 0)
    kept = _FilesKept(args.out, args.resume)
    try:
        train(cases, args.out, model_config=IFSSNetConfig(size=args.size, width_mult=args.width_mult,
                                                           mask_sees_image=args.mask_sees_image), cfg=cfg,
              base_model=args.base, resume=args.resume, command=args.command_line,
              data_description=", ".join(c.name for c in cases), progress=bar, on_step=on_step,
              rank=rank, world=world, device=args.device,
              time_limit_s=args.time_limit * 60 if args.time_limit is not None else None,
              validator=validator, val_every=args.val_every, on_validation=on_validation, loaded=loaded)
    except KeyboardInterrupt:
        raise kept.interrupted() from None
    except MemoryError:
        raise kept.out_of_memory() from None
    except RuntimeError as exc:                  # torch.cuda.OutOfMemoryError is one
        if type(exc).__name__ != "OutOfMemoryError":
            raise
        raise kept.out_of_memory(gpu=True) from None
    finally:
        bar.close()
        for f in logs:
            f.close()
    if rank == 0:
        print(f"wrote {args.out}")
        if validator is not None:
            from .validation import best_model_path, best_score

            path = best_model_path(args.out)
            score = best_score(path)
            print(f"best validation Dice {score.dice:.3f} ({score.error_name} {score.volume_error_pct:.1f} %) "
                  f"at step {score.step}: {path}")
            if score.step == 0:                  # only a fine-tune validates at step 0: its starting network
                base = args.base or "the network it started from"
                print(f"No training step beat {base} on validation, so {path} is that network. Keep using "
                      f"{base}, or fine-tune on more (or fully annotated) volumes.")
    return 0


class _FilesKept:
    """What a run to ``out`` has written so far, for the Ctrl-C message: the model file and ``OUT.best.pt`` are
    written only at the end, but the checkpoint (``OUT.ckpt.pt``) and the run's best model by validation so far
    (``OUT.ckpt.best.pt``, which becomes ``OUT.best.pt`` where the run ends) may already be there, each written
    atomically. A file counts as this run's when it appeared or changed since the run began. ``resume``: the
    checkpoint the run continues (``--resume``), which is as it was where the run saved none of its own."""

    def __init__(self, out, resume=None) -> None:
        from .train import checkpoint_best_path, checkpoint_path
        from .validation import best_model_path

        self.out = Path(out)
        self.resume = resume
        self.ckpt = checkpoint_path(self.out)
        self.best = checkpoint_best_path(self.out)
        self.final_best = best_model_path(self.out)
        self.out_existed = self.out.exists()
        self.final_best_existed = self.final_best.exists()
        self.before = {p: self._stamp(p) for p in (self.ckpt, self.best)}

    @staticmethod
    def _stamp(path: Path):
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _written(self, path: Path) -> bool:
        stamp = self._stamp(path)
        return stamp is not None and stamp != self.before[path]

    def kept(self) -> str:
        """What this run left behind and how to go on, as a sentence."""
        todo = f"{self.out} was not written" + (" (the earlier file is as it was)" if self.out_existed else "")
        if self._written(self.ckpt):
            todo += (f"; this run's checkpoint {self.ckpt} is kept: continue the run with "
                     f"--resume {self.ckpt}")
        elif self.resume is not None and Path(self.resume).exists():
            todo += (f"; no new checkpoint was saved, so --resume {self.resume} continues from the step this run "
                     "started at")
        else:
            todo += "; no checkpoint was saved yet, so start the run again"
        if self._written(self.best) and (self._written(self.ckpt) or self.resume is not None):
            todo += (f"; its best network by validation so far is kept in {self.best}, and becomes "
                     f"{self.final_best} when the run is resumed to its end")
            if self.final_best_existed:
                todo += " (the earlier one is as it was)"
        return todo + "."

    def interrupted(self):
        """The :class:`~ifssnet.errors.Cancelled` that Ctrl-C during training raises: what was kept and how to go on."""
        from .errors import Cancelled

        return Cancelled("Interrupted (Ctrl-C).", self.kept())

    def out_of_memory(self, gpu: bool = False):
        """The :class:`~ifssnet.errors.ResourceError` for a ``MemoryError`` during training (``gpu``: PyTorch's
        ``OutOfMemoryError`` on a GPU): what was kept."""
        from .errors import ResourceError

        if gpu:
            return ResourceError("The GPU ran out of memory while training.",
                                 "Train with a smaller --batch or --run-length (a step's memory grows with both; "
                                 "--resume keeps the run's own --batch and --run-length, so a smaller one is a new "
                                 "run), or free the GPU of other programs; " + self.kept())
        return ResourceError("The computer ran out of memory while training.",
                             "Close other programs, or train on fewer or cropped volumes (or a smaller --batch); "
                             + self.kept())


def _read_cases(pairs, size: int, segments, progress) -> list:
    """The training cases on the working grid (:func:`~ifssnet.dataset.load_case`), with a "reading cases" bar:
    a full-size case (1400 x 512 x 512) takes about 10 s. Ctrl-C here stops before anything is written."""
    from .progress import report

    cases = []
    names = case_names([volume for volume, _ in pairs])       # a/leg and b/leg, not 'leg' twice
    try:
        for n, (volume, annotation) in enumerate(pairs):
            report(progress, READING_CASES, n, len(pairs))
            cases.append(load_case(volume, annotation, size, segments, names[n]))
        report(progress, READING_CASES, len(pairs), len(pairs))
    finally:
        progress.close()                      # before any error message, which would share the bar's line
    return cases


def _check_memory(args, train_pairs, segments, size: int, stored=None, resumed_meta=None) -> None:
    """Refuse a run that cannot fit in memory (:mod:`ifssnet.train_memory`) from the files' headers, before any
    case is read and anything is written. The recipe is the resumed run's (``resumed_meta``) or the options';
    the network's width and slice spacing the stored network's (``stored``) or the options'. Processes that
    torchrun starts on this machine (``LOCAL_WORLD_SIZE``) each need as much. A validation file that cannot be
    read is left out here: the validator says what is wrong with it."""
    from .errors import IFSSNetError
    from .train_memory import case_shape, check_training_memory, estimate_training_bytes, trains_on_gpu

    recipe = stored_config(resumed_meta)

    def option(key, default):
        given = getattr(args, key, None)
        return recipe.get(key, given if given is not None else default)

    cases = [case_shape(v, a, segments, training=True) for v, a in train_pairs]
    held_out = []
    for v, a in _case_paths(getattr(args, "val", None) or []):
        try:
            held_out.append(case_shape(v, a, segments, training=True))
        except IFSSNetError:
            pass
    mode = option("mode", "full")
    need = estimate_training_bytes(
        cases, size, width_mult=stored.width_mult if stored is not None else args.width_mult,
        batch=int(option("batch", 1)), run_length=1 if mode == "image" else int(option("run_length", 32)),
        window=int(stored.window) if stored is not None else 3, cycle=bool(option("cycle", 0)),
        validation=held_out, paper_protocol=getattr(args, "val_protocol", "3-seeds") in ("paper", "both"),
        network_mm=stored.slice_spacing_mm if stored is not None else None,
        added_labels=mode == "fewshot" and bool(option("fill_gap", 0) or option("empty_past_ends", False)),
        on_gpu=trains_on_gpu(args.device))
    check_training_memory(need * max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def _validator(args, train_pairs, segments):
    """The :class:`~ifssnet.validation.Validator` of ``--val`` (None without it); a validation case that is
    also a training case is an error, since its scores would not be held out."""
    if not getattr(args, "val", None):
        return None
    from .validation import Validator

    val_pairs = _case_paths(args.val)
    shared = [str(v) for v, _ in val_pairs if any(same_file(v, t) for t, _ in train_pairs)]
    if shared:
        raise InputError(f"Validation volume {', '.join(shared)} is also a training case.",
                         "Validate on volumes the network does not train on.")
    return Validator(val_pairs, protocol=args.val_protocol, segments=segments)


def training_device(device: str) -> str:
    """The device this process trains on: ``--device`` checked (an unknown name or CUDA without a GPU is an
    :class:`InputError` / :class:`~ifssnet.errors.ResourceError`, not a PyTorch traceback; ``auto`` and ``gpu`` as
    in propagation), and under torchrun a bare ``cuda`` becomes this process's own GPU, ``cuda:LOCAL_RANK``
    (every rank on GPU 0 made NCCL refuse the group, or shared one GPU)."""
    import torch

    from .propagate import resolve_device

    name = str(device or "cpu").strip().lower()
    if name in ("auto", "gpu") or name.startswith("cuda"):
        name = resolve_device(name)
    else:
        try:
            torch.device(name)
        except (RuntimeError, ValueError):
            raise InputError(f"Unknown device '{device}'.", "Use cpu, cuda (or cuda:N) or auto.") from None
    if name == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1 and "LOCAL_RANK" in os.environ:
        name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    if name.startswith("cuda:"):
        torch.cuda.set_device(torch.device(name))
    return name


def _init_distributed(device: str = "cpu"):
    """(rank, world, created) from torchrun's environment; initialises the process group when world > 1, with the
    backend of the device the ranks train on: nccl for CUDA, gloo otherwise (nccl was chosen whenever a GPU was
    present, so ``--device cpu`` on a GPU machine failed at the first all-reduce of CPU tensors).

    ``created`` is True when this call made the group, so that the caller destroys it at the end.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
            return rank, world, True
    return rank, world, False


def main(argv=None) -> int:
    """``python -m ifssnet.train`` (and ``torchrun -m ifssnet.train``): the same arguments as ``ifssnet train``."""
    from .cli import main as cli_main

    return cli_main(["train"] + (argv if argv is not None else sys.argv[1:]))
