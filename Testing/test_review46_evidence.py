"""Session 46's figures (model card "Session 46", README) are those of the files they cite: the validation log of
the re-run seed-2 few-shot run, the held-out trajectory of its checkpoints, its best file's held-out scores and the
annotation shares."""
from __future__ import annotations

import csv
import json
from collections import defaultdict

import numpy as np

from test_review42_evidence import RESULTS, _norm, _overall, _text


def _section() -> str:
    card = _norm(_text("Resources/Models/README.md"))
    return card[card.index("## Session 46"):card.index("# Model card: `pgnet.pt`")]


def _log(name: str):
    return [json.loads(line) for line in (RESULTS / name).read_text().splitlines()]


def test_validation_left_the_training_as_it_was():
    new = [r for r in _log("train-ws46paint-seed2-val-log.jsonl") if "loss" in r]
    old = [r for r in _log("train-ws45paint-seed2-log.jsonl") if "loss" in r]
    assert len(new) == len(old) == 250
    assert [(r["step"], r["loss"]) for r in new] == [(r["step"], r["loss"]) for r in old]
    assert "250 losses are those of ws45paint-seed2, step for step" in _section()


def test_the_trajectory_table_is_the_log_and_the_csv():
    val = {r["step"]: r["val_dice"] for r in _log("train-ws46paint-seed2-val-log.jsonl") if "val_dice" in r}
    dice = defaultdict(list)
    for r in csv.DictReader(open(RESULTS / "fewshot-trajectory-ws45paint-seed2-heldout-3-seeds.csv", encoding="utf-8")):
        dice[int(r["step"])].append(0.0 if r["error"] else float(r["dice"]))
    held = {s: f"{np.mean(v):.3f}" for s, v in dice.items()}
    steps = (25, 50, 75, 100, 125)
    assert sorted(val) == sorted(held) == list(range(25, 251, 25))
    assert all(val[s] == 0.0 and held[s] == "0.000" for s in range(125, 251, 25))
    section = _section()
    assert "| held-out groups (validation) | " + " | ".join(f"{val[s]:.3f}" for s in steps) + " | 0.000 |" in section
    assert "| phantoms 1000-1004, `3-seeds` | " + " | ".join(held[s] for s in steps) + " | 0.000 |" in section
    best_val = max(val, key=lambda s: val[s])
    best_held = max(held, key=lambda s: float(held[s]))
    assert (best_val, best_held) == (50, 100)
    assert f"The best checkpoint held out was step {best_held} ({held[best_held]})" in section


def test_the_best_file_and_the_shares_are_the_files():
    section = _section()
    d, v = _overall("heldout-ifssnet-ws46paint-seed2-best-3-seeds.csv")
    ws = _overall("heldout-ifssnet-ws-3-seeds.csv")[0]
    assert f"`M.best.pt` is step 50, and it scores {d} / {v} % held out" in section
    assert f"the shipped `ifssnet-ws.pt` ({ws})" in section
    readme = _norm(_text("README.md"))
    assert f"the collapsed seed-2 run kept step 50, which scores {d} held out" in readme
    lines = (RESULTS / "fewshot-share-train-valsparse.txt").read_text().splitlines()
    assert lines[-1] == "validation: 93 of 1600 slices; training and validation: 652 of 17600 slices, 3.70%"
    assert any(line.startswith("annotated: 559 of 16000 slices") for line in lines)
    assert "93 painted slices of 1600; with training's 559 of 16000 that is 3.70 %" in section
    assert f"would make it {(559 + 1600) / 17600:.2%}".replace("%", " %") in section


def test_complete_validation_would_have_kept_the_held_out_best():
    rows = list(csv.DictReader(open(RESULTS / "validation-complete-ws45paint-seed2-checkpoints.csv", encoding="utf-8")))
    dice = {int(r["step"]): float(r["val_dice"]) for r in rows}
    assert sorted(dice) == [25, 50, 75, 100] and max(dice, key=dice.get) == 100
    quoted = ", ".join(f"{dice[s]:.3f}" for s in (25, 50, 75)) + f" and {dice[100]:.3f} at steps 25-100"
    assert quoted in _section() and "would have kept step 100, the best held out" in _section()
