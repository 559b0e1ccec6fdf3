"""Session 45's few-shot figures (model card "Session 45", README, train.py's docstring) are those of the CSVs they
cite: the held-out means, the paired differences, and the checkpoints' trajectory on phantom 1000."""
from __future__ import annotations

import csv
import importlib.util
from collections import defaultdict

import numpy as np

from test_review42_evidence import RESULTS, ROOT, _norm, _overall, _per_muscle, _text
from test_review44_evidence import rows_unlike_csvs

RUNS = ("ws4786731-train", "ws4786731-train-seed1", "ws44", "ws45-seed1", "ws45paint", "ws45paint-seed1",
        "ws45paint-seed2", "ws45paint-train9")


def _paired():
    spec = importlib.util.spec_from_file_location("paired_difference", ROOT / "benchmarks" / "paired_difference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _diff(base: str, other: str, metric: str = "dice") -> str:
    """``+0.388 [+0.355, +0.420]`` (Dice) or ``+4.9 [-0.5, +10.3]`` (points), as the docs quote it."""
    pd = _paired()
    rows = [list(csv.DictReader(open(RESULTS / f, encoding="utf-8"))) for f in (base, other)]
    _, overall, _ = pd.paired_units([tuple(rows)], metric)
    s = pd.describe(overall, metric == "dice")
    fmt = "{:+.3f}" if metric == "dice" else "{:+.1f}"
    return f"{fmt.format(s['mean'])} [{fmt.format(s['low'])}, {fmt.format(s['high'])}]"


def test_session_45_rows_are_the_csvs():
    card = _norm(_text("Resources/Models/README.md"))
    section = card[card.index("## Session 45"):card.index("# Model card: `pgnet.pt`")]
    wrong = rows_unlike_csvs(section, RUNS, 4)
    assert not wrong, "\n".join(wrong)


def test_session_45_paired_differences_and_muscles_are_the_csvs():
    section = _norm(_text("Resources/Models/README.md"))
    section = section[section.index("## Session 45"):section.index("# Model card: `pgnet.pt`")]
    shipped = "heldout-ifssnet-ws-3-seeds.csv"
    quoted = [
        f"**{_diff('heldout-ifssnet-ws44-3-seeds.csv', 'heldout-ifssnet-ws45paint-3-seeds.csv')}** (seed 0",
        f"**{_diff('heldout-ifssnet-ws45-seed1-3-seeds.csv', 'heldout-ifssnet-ws45paint-seed1-3-seeds.csv')}** (seed 1)",
        f"seed 0 {_diff(shipped, 'heldout-ifssnet-ws45paint-3-seeds.csv')} Dice and "
        f"{_diff(shipped, 'heldout-ifssnet-ws45paint-3-seeds.csv', 'volume_error_pct')} points",
        f"seed 1 {_diff(shipped, 'heldout-ifssnet-ws45paint-seed1-3-seeds.csv')} and "
        f"{_diff(shipped, 'heldout-ifssnet-ws45paint-seed1-3-seeds.csv', 'volume_error_pct')}.",
        "SOL is their weak muscle: {} and {}, against the shipped file's {}".format(
            _per_muscle("heldout-ifssnet-ws45paint-3-seeds.csv")["SOL"][0],
            _per_muscle("heldout-ifssnet-ws45paint-seed1-3-seeds.csv")["SOL"][0], _per_muscle(shipped)["SOL"][0]),
    ]
    quoted.append(f"seed 0 trains {' / '.join(_overall('heldout-ifssnet-ws45paint-train9-3-seeds.csv'))} %: "
                  f"{_diff('heldout-ifssnet-ws43-3-seeds.csv', 'heldout-ifssnet-ws45paint-train9-3-seeds.csv')} Dice "
                  "against ws43, 5 of 5 cases")
    quoted.append(f"seed 2 collapsed ({_overall('heldout-ifssnet-ws45paint-seed2-3-seeds.csv')[0]}). Drawn by painted "
                  "slices, 1 of 4 runs collapsed; drawn alike, 9 of 10")
    missing = [q for q in quoted if q not in section]
    assert not missing, missing


def test_session_45_trajectory_is_the_csv():
    dice = defaultdict(list)
    for r in csv.DictReader(open(RESULTS / "fewshot-trajectory-s1000-3-seeds.csv", encoding="utf-8")):
        dice[(r["run"], int(r["step"]))].append(float(r["dice"]))
    mean = {k: f"{np.mean(v):.3f}" for k, v in dice.items()}
    card = _norm(_text("Resources/Models/README.md"))
    assert (f"ws44 reaches {mean[('ws44', 75)]} at step 75, then {mean[('ws44', 125)]} at 125 and "
            f"{mean[('ws44', 150)]} from 150 on") in card
    assert all(mean[("ws44", s)] == "0.000" for s in (150, 175, 250))
    assert (f"ws4786731-train is at {mean[('ws4786731-train', 75)]}, {mean[('ws4786731-train', 125)]} and "
            f"{mean[('ws4786731-train', 150)]} at steps 75, 125 and 150") in card


def test_session_45_readme_figures_are_the_csvs():
    readme = _norm(_text("README.md"))
    seed1 = _overall("heldout-ifssnet-ws4786731-train-seed1-3-seeds.csv")[0]
    p0 = " / ".join(_overall("heldout-ifssnet-ws45paint-3-seeds.csv")) + " %"
    p1 = " / ".join(_overall("heldout-ifssnet-ws45paint-seed1-3-seeds.csv")) + " %"
    case0, case1 = (_overall(f"heldout-ifssnet-{r}-3-seeds.csv")[0] for r in ("ws44", "ws45-seed1"))
    assert f"On seed 1 that code collapses too ({seed1})" in readme
    assert f"trains {p0} (seed 0) and {p1} (seed 1) at 3.49 % annotated" in readme
    assert case0 == case1 == "0.000" and "each case alike gave 0.000 on both seeds" in readme
    seed2 = _overall("heldout-ifssnet-ws45paint-seed2-3-seeds.csv")[0]
    assert f"seed 2 still ended at {seed2} (1 of 4 runs, against 9 of 10 drawing alike)" in readme


def test_nine_of_ten_uniform_draws_collapsed_and_the_shares_are_the_file():
    collapsed = ("ws43", "ws43c", "ws43wd", "ws4786731-train9", "ws44", "ws44wd", "ws44c", "ws45-seed1",
                 "ws4786731-train-seed1")
    dice = {run: float(_overall(f"heldout-ifssnet-{run}-3-seeds.csv")[0]) for run in collapsed + ("ws4786731-train",)}
    assert max(dice[r] for r in collapsed) == 0.054 and dice["ws4786731-train"] > 0.6
    card = _norm(_text("Resources/Models/README.md"))
    assert "9 of the 10 runs of this recipe measured in sessions 43-45" in card and "Dice 0.000-0.054" in card
    painted = {}
    for line in (RESULTS / "fewshot-share-train-s44.txt").read_text().splitlines():
        parts = line.split()
        if parts and parts[0].startswith(".data/train/s"):
            painted[parts[0].rsplit("/", 1)[1]] = [int(p.split(":")[1]) for p in parts[1:4]]
    assert [painted[c][0] for c in ("s1", "s10", "s11", "s12")] == [165, 84, 42, 21]
    rest = [n for c, v in painted.items() if c not in ("s1", "s10", "s11", "s12") for n in v]
    assert len(painted) == 40 and (min(rest), max(rest)) == (3, 12)
    assert "(s1 and s10: 165 and 84 painted slices per muscle" in card and "s11 and s12 hold 42 and 21" in card
    assert "the other 36 3-12 per muscle" in card
