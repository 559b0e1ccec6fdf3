"""The recipe a fine-tune takes from its base model (ifssnet/train_recipe.py): which fields, what wins, and the
two exceptions (--cycle takes no burn-in, --mode fewshot no Tversky beta)."""
from __future__ import annotations

import argparse

from ifssnet.train import TrainConfig
from ifssnet.train_cli import add_train_arguments, fill_recipe
from ifssnet.train_recipe import (FEWSHOT_BETA, FINETUNE_LR, RECIPE_FIELDS, default_lr, differs_from_default,
                                  inherit_recipe, recipe_options)

SHIPPED_LIKE = {"training": {"config": {"run_length": 8, "batch": 2, "bce_weight": 1.0, "learn_tversky": False,
                                        "burn_in": 32, "end_weight": 16.0, "tversky_beta": 0.65, "lr": 3e-4}}}


def test_a_fine_tune_takes_what_is_not_given_from_the_base_model_and_the_rest_from_the_defaults():
    recipe, inherited = inherit_recipe(SHIPPED_LIKE, {"run_length": 12, "batch": None})
    default = TrainConfig()
    assert set(recipe) == set(RECIPE_FIELDS) and "lr" not in recipe          # the schedule is not inherited
    assert (recipe["run_length"], recipe["batch"], recipe["tversky_beta"], recipe["strides"]) == (12, 2, 0.65,
                                                                                                default.strides)
    assert inherited == {"batch": 2, "bce_weight": 1.0, "learn_tversky": False, "burn_in": 32, "end_weight": 16.0,
                         "tversky_beta": 0.65}
    recipe, inherited = inherit_recipe(None, {})                              # a new network: the defaults
    assert inherited == {} and all(recipe[k] == getattr(default, k) for k in RECIPE_FIELDS)


def test_few_shot_takes_no_beta_and_cycle_no_burn_in_from_the_base_model():
    recipe, inherited = inherit_recipe(SHIPPED_LIKE, {}, mode="fewshot")
    assert recipe["tversky_beta"] == FEWSHOT_BETA == 0.5 and "tversky_beta" not in inherited
    assert recipe["burn_in"] == 32 and recipe["end_weight"] == 16.0          # the rest is still the base model's
    assert inherit_recipe(SHIPPED_LIKE, {"tversky_beta": 0.65}, mode="fewshot")[0]["tversky_beta"] == 0.65
    recipe, inherited = inherit_recipe(SHIPPED_LIKE, {}, cycle=True)
    assert recipe["burn_in"] == 0 and "burn_in" not in inherited and recipe["tversky_beta"] == 0.65


def test_the_command_line_reports_the_inherited_options_in_its_own_words():
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    args = p.parse_args(["case", "--out", "m.pt", "--mode", "fewshot", "--run-length", "16"])
    fragment = fill_recipe(args, SHIPPED_LIKE)
    assert fragment == "--batch 2 --bce-weight 1.0 --fixed-tversky --burn-in 32 --end-weight 16.0"
    assert (args.run_length, args.batch, args.fixed_tversky, args.tversky_beta) == (16, 2, True, 0.5)
    assert recipe_options({"strides": [1, 3], "feedback_grad": False, "learn_tversky": True}) == \
        "--no-fixed-tversky --no-feedback-grad --strides 1,3"
    assert differs_from_default({"batch": 1, "batch_size": 4, "burn_in": 8}) == {"burn_in": 8}


def test_a_fine_tune_of_a_network_trained_to_propagate_defaults_to_a_tenth_of_the_papers_rate():
    """1e-5 from a network trained in full or few-shot mode; the paper's 1e-4 for a new network, a network
    pretrained on images alone, or a file that records no training."""
    paper = TrainConfig().lr
    assert (paper, FINETUNE_LR) == (1e-4, 1e-5)
    for mode, rate in (("full", FINETUNE_LR), ("fewshot", FINETUNE_LR), ("image", paper)):
        assert default_lr({"training": {"config": {"mode": mode, "lr": 3e-4}}}) == rate
    assert default_lr(None) == default_lr({"command": "by hand"}) == paper
    args = argparse.Namespace(lr=None)
    fill_recipe(args, {"training": {"config": {"mode": "full"}}})
    assert args.lr == FINETUNE_LR
    args = argparse.Namespace(lr=2e-4)
    fill_recipe(args, {"training": {"config": {"mode": "full"}}})
    assert args.lr == 2e-4                                           # given: kept
