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

from typing import Any, Dict, Mapping, Optional, Tuple

#: TrainConfig fields a fine-tune inherits, in the order the command line reports them.
RECIPE_FIELDS = ("run_length", "batch", "bce_weight", "learn_tversky", "feedback_grad", "strides",
                 "mask_jitter", "jitter_first_only", "jitter_shift", "jitter_radius", "mask_box", "burn_in",
                 "weight_decay", "end_weight", "tversky_beta")


def inherit_recipe(base_meta: Optional[dict], given: Mapping[str, Any], *,
                   cycle: bool = False) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The recipe of a run: ``given`` fields as given, the rest from ``base_meta`` (the third value of
    :func:`~ifssnet.model.checkpoint.load_checkpoint` for the base model; None for a new network or a
    resumed run, whose checkpoint holds its own config), else TrainConfig's defaults.

    ``given``: TrainConfig field -> value; None values count as not given. ``cycle``: a ``--cycle`` run takes no
    burn-in from the base model (its runs start on their annotation).
    Returns ``(recipe, inherited)``: every field of :data:`RECIPE_FIELDS` -> its value, and the fields taken
    from the base model whose value differs from the default (what is worth telling the user).
    """
    from .train import TrainConfig

    stored = dict(((base_meta or {}).get("training") or {}).get("config") or {})
    default = TrainConfig()
    recipe: Dict[str, Any] = {}
    inherited: Dict[str, Any] = {}
    for key in RECIPE_FIELDS:
        if given.get(key) is not None:
            recipe[key] = given[key]
        elif key == "burn_in" and cycle:
            recipe[key] = 0
        elif key in stored:
            recipe[key] = stored[key]
            if stored[key] != getattr(default, key):
                inherited[key] = stored[key]
        else:
            recipe[key] = getattr(default, key)
    return recipe, inherited
