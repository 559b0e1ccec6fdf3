"""Session 44's few-shot figures (model card "Session 44", README, reproduce.sh) are the means of the CSVs they cite."""
from __future__ import annotations

import re

from test_review43_evidence import _norm, _overall, _text

RUNS = ("ws4786731-train9", "ws4786731-train", "ws43wd", "ws44", "ws44wd", "ws44c")


def rows_unlike_csvs(text: str, runs, columns_between: int) -> list:
    """The table rows of ``text`` (``| run | ... | Dice / vol err % |``, ``columns_between`` columns between the two)
    whose ``3-seeds`` figures are not the means of ``heldout-ifssnet-<run>-3-seeds.csv``, as lines to report."""
    wrong = []
    for run in runs:
        want = " / ".join(_overall(f"heldout-ifssnet-{run}-3-seeds.csv")) + " %"
        row = re.search(rf"\| {re.escape(run)} \|" + r"[^|]*\|" * columns_between + r" \**([^|*]*)\** \|", text)
        if row is None or row.group(1).strip() != want:
            wrong.append(f"{run}: {row.group(1) if row else None} != {want}")
    return wrong


def test_session_44_fewshot_rows_are_the_csvs():
    """Each row of the card's session-44 table gives its CSV's mean Dice / volume error under ``3-seeds``."""
    wrong = rows_unlike_csvs(_norm(_text("Resources/Models/README.md")), RUNS, 3)
    assert not wrong, "\n".join(wrong)


def test_session_44_fewshot_figures_in_readme_and_reproduce_are_the_csvs():
    good = " / ".join(_overall("heldout-ifssnet-ws4786731-train-3-seeds.csv")) + " %"
    collapsed = " / ".join(_overall("heldout-ifssnet-ws4786731-train9-3-seeds.csv")) + " %"
    ws44 = _overall("heldout-ifssnet-ws44-3-seeds.csv")[0]
    readme = _norm(_text("README.md"))
    assert f"phantoms too ({ws44}), where the code of commit 4786731 trains {good} from that command" in readme
    script = _norm(_text("Resources/Models/reproduce.sh").replace("\n#", ""))
    assert f"it collapses to empty masks, {collapsed} held out" in script
    assert f"4786731's phantom code it gives {good};" in script
