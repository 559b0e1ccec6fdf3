"""The recipe a fine-tune takes from its base model: how its runs and its loss were made.

A network trained with the Dice loss and cross-entropy on runs of 8 (the shipped one) is not fine-tuned with
the paper's learned Tversky loss on runs of 32 because those are :class:`~ifssnet.train.TrainConfig`'s
defaults. Every recipe field (:data:`RECIPE_FIELDS`) the caller does not give is taken from the base model's
recorded training config, else from TrainConfig. The schedule (epochs, steps, lr, seed, ema, warmup), the
mode and the few-shot painting options are the caller's own choice and are not inherited.

``ifssnet train --from`` (:func:`ifssnet.train_cli.fill_recipe`) and Slicer's Training Logic
(``IFSSNetTrainingLogic.train(baseModel=...)``) both build their config here, so that a fine-tune trains
the same way from the command line, from the Training module and from Slicer's Python console.
"""
from __future__ import annotations

import shlex
from typing import Any, Dict, Mapping, Optional, Tuple

#: TrainConfig fields a fine-tune inherits, in the order the command line reports them.
RECIPE_FIELDS = ("run_length", "batch", "bce_weight", "learn_tversky", "feedback_grad", "strides",
                 "mask_jitter", "jitter_first_only", "jitter_shift", "jitter_radius", "mask_box", "burn_in",
                 "weight_decay", "end_weight", "tversky_beta")

#: The recipe fields as (``ifssnet train`` argparse dest, TrainConfig field); the option is ``--`` + dest with
#: dashes (``--fixed-tversky`` is ``learn_tversky`` turned round).
RECIPE = tuple(("fixed_tversky" if key == "learn_tversky" else key, key) for key in RECIPE_FIELDS)


def cli_value(dest: str, value):
    """A TrainConfig value as the command line's: fixed_tversky is not learn_tversky, strides are '1,3'."""
    if dest == "fixed_tversky":
        return not value
    if dest == "strides":
        return ",".join(str(int(v)) for v in value)
    return value


def recipe_options(values: Mapping[str, Any]) -> str:
    """The recipe fields in ``values`` (TrainConfig field -> value) as ``ifssnet train`` options, in
    :data:`RECIPE_FIELDS` order, e.g. ``--run-length 8 --fixed-tversky --strides 1,3``."""
    options = []
    for dest, key in RECIPE:
        if key not in values:
            continue
        value = cli_value(dest, values[key])
        option = "--" + dest.replace("_", "-")
        options.append(option if value is True else f"--no-{option[2:]}" if value is False
                       else f"{option} {shlex.quote(str(value))}")
    return " ".join(options)


def differs_from_default(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The recipe fields of a stored training config whose value is not TrainConfig's default."""
    from .train import TrainConfig

    default = TrainConfig()
    return {key: config[key] for key in RECIPE_FIELDS if key in config and config[key] != getattr(default, key)}


#: The Tversky beta a few-shot fine-tune starts from where none is given, whatever its base model's: the
#: Dice loss. A beta above 0.5 charges a voxel left out of the target more than one added, and a few-shot
#: target is mostly the previous window's own prediction, so each window learns to grow the last one's mask.
#: Fine-tunes of the shipped model (beta 0.65), 100 few-shot steps: beta 0.5 scored +0.064 and +0.076 held-out
#: Dice on two seeds, 5 of 5 cases each (model card, "Beta 0.5 for few-shot fine-tunes").
FEWSHOT_BETA = 0.5


#: The learning rate a fine-tune of a network trained to propagate starts from where none is given: a tenth of
#: the paper's 1e-4. Every fine-tune of the shipped model at 1e-4 ended below it (sessions 33-37), and at 1e-5 the
#: paired runs drifted less each time: few-shot +0.099 held-out Dice on 1e-4 (session 36, fw36c), and a full
#: fine-tune on four sweeps of a finer probe beat the shipped model on held-out sweeps of that look (one of four seeds)
#: where 1e-4 never beat it on validation (session 37; model card, "Fine-tuning on sweeps of another look").
FINETUNE_LR = 1e-5


def default_lr(base_meta: Optional[dict]) -> float:
    """The learning rate of a run that gives none: :data:`FINETUNE_LR` for a fine-tune of a network trained to
    propagate (``base_meta``'s stored mode ``full`` or ``fewshot``), else TrainConfig's, the paper's 1e-4 (a new
    network, or one pretrained on images alone with ``--mode image``, still has everything to learn)."""
    from .train import TrainConfig

    trained = base_meta is not None and stored_config(base_meta).get("mode") in ("full", "fewshot")
    return FINETUNE_LR if trained else TrainConfig().lr


def learning_rates(base_meta: Optional[dict], lr: Optional[float] = None,
                   lr_final: Optional[float] = None) -> Tuple[float, float]:
    """``(lr, lr_final)`` of a run: ``lr`` as given, else :func:`default_lr`; ``lr_final`` (the last two epochs'
    rate) as given, else a tenth of ``lr`` (the paper's schedule). ``ifssnet train`` and the Training Logic both
    take their rates here."""
    lr = float(lr) if lr is not None else default_lr(base_meta)
    return lr, float(lr_final) if lr_final is not None else lr / 10


def stored_config(meta: Optional[dict]) -> Dict[str, Any]:
    """The training config a checkpoint's metadata records (``meta["training"]["config"]``; {} where none)."""
    return dict(((meta or {}).get("training") or {}).get("config") or {})


def _ruled(cycle: bool, mode: str) -> Dict[str, Any]:
    """The recipe fields a run of this kind sets itself instead of taking them from its base model."""
    ruled: Dict[str, Any] = {}
    if cycle:
        ruled["burn_in"] = 0
    if mode == "fewshot":
        ruled["tversky_beta"] = FEWSHOT_BETA
    return ruled


def withheld_from_base(base_meta: Optional[dict], given: Mapping[str, Any], *, cycle: bool = False,
                       mode: str = "full") -> Dict[str, Any]:
    """The base model's values that :func:`inherit_recipe` does not take for this run, though the caller gave no
    value (a ``--cycle`` run's burn-in, a ``fewshot`` run's beta) and they differ from what the run uses: field ->
    the base model's value. What the command line tells the user it overrode."""
    stored = stored_config(base_meta)
    return {key: stored[key] for key, value in _ruled(cycle, mode).items()
            if given.get(key) is None and key in stored and stored[key] != value}


def inherit_recipe(base_meta: Optional[dict], given: Mapping[str, Any], *, cycle: bool = False,
                   mode: str = "full") -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The recipe of a run: ``given`` fields as given, the rest from ``base_meta`` (the third value of
    :func:`~ifssnet.model.checkpoint.load_checkpoint` for the base model; None for a new network or a
    resumed run, whose checkpoint holds its own config), else TrainConfig's defaults.

    ``given``: TrainConfig field -> value; None values count as not given. ``cycle``: a ``--cycle`` run takes no
    burn-in from the base model (its runs start on their annotation). ``mode``: a ``fewshot`` run takes no Tversky
    beta from the base model (:data:`FEWSHOT_BETA`).
    Returns ``(recipe, inherited)``: every field of :data:`RECIPE_FIELDS` -> its value, and the fields taken
    from the base model whose value differs from the default (what is worth telling the user).
    """
    from .train import TrainConfig

    stored = stored_config(base_meta)
    given = {**_ruled(cycle, mode), **{key: value for key, value in given.items() if value is not None}}
    default = TrainConfig()
    recipe = {key: given[key] if key in given else stored.get(key, getattr(default, key)) for key in RECIPE_FIELDS}
    inherited = {key: value for key, value in differs_from_default(stored).items() if key not in given}
    return recipe, inherited
