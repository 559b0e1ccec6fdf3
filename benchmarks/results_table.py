"""Markdown tables (mean ± std per method, as the README prints them) from `ifssnet compare-set` CSVs.

    python benchmarks/results_table.py benchmarks/results/heldout-ifssnet-3-seeds.csv [MORE.csv ...] [--by-muscle]
    python benchmarks/results_table.py fs.csv=ifssnet-fs ws.csv=ifssnet-ws   # same method, two models
    python benchmarks/results_table.py benchmarks/results/heldout-ifssnet-uu32c-3-seeds.csv --precision-recall

Several CSVs (e.g. the baselines and the network, run separately on the same cases and protocol) are
merged: each row is one (method, muscle, case). ``FILE.csv=NAME`` renames the method of every row of that
file (for two runs of one method with different weights, e.g. the full and the few-shot IFSS-Net);
``FILE.csv@METHOD`` keeps one method's rows. Annotated slices are already excluded in the CSVs.
``--merge OUT.csv`` also writes the merged rows as one CSV, and ``--plot OUT.png`` the bar chart that
``compare-set --plot`` draws (mean ± std of Dice and volume error per method and muscle): the two files a
single compare-set run over all the cases would have written (table1_baselines.sh runs cases in parallel).
"""
from __future__ import annotations

import argparse
import csv
import math

from ifssnet.compare import plot_summary, summarize, write_csv

NAMES = {"ifssnet": "IFSS-Net", "ifssnet-fs": "IFSS-Net-FS", "ifssnet-ws": "IFSS-Net-WS", "fbs": "Fill between slices", "gfs": "Grow from seeds", "ws": "Watershed",
         "pgnet": "PG-Net", "unet3d": "3-D U-Net"}
COLUMNS = (("Dice", "dice", 3), ("IoU", "iou", 3), ("per-slice HD (mm)", "slice_hd", 1),
           ("per-slice ASD (mm)", "slice_asd", 2), ("HD95 (mm)", "hd95", 1), ("vol err %", "volume_error_pct", 1),
           ("time/muscle (s)", "time_s", 1))
#: ``--precision-recall``: where a mask's error lies (precision below recall: it is too large).
OVERLAP_COLUMNS = (("precision", "precision", 2), ("recall", "recall", 2))
#: ``--past-ends``: the volume predicted past the muscle's ends, % of the muscle's (CSVs from before session 34: -).
PAST_ENDS_COLUMNS = (("past ends %", "past_ends_pct", 1),)


def _cell(s: dict, key: str, digits: int) -> str:
    """``mean ± std``; where some runs' values are not finite (an infinite distance: no slice holds both masks;
    a column the run's CSV lacks), the mean covers only the others and the cell says so: ``(6 of 15)``."""
    m, sd = s[f"{key}_mean"], s[f"{key}_std"]
    if not math.isfinite(m):
        return "-"
    missing = int(s.get(f"{key}_nonfinite", 0))
    return f"{m:.{digits}f} ± {sd:.{digits}f}" + (f" ({s['n'] - missing} of {s['n']})" if missing else "")


def read_rows(paths):
    """Rows of the CSVs; ``PATH=NAME`` gives every row of that file the method NAME; ``PATH@METHOD`` keeps only
    that method's rows (SystemExit where it has none), e.g. one of the baselines' CSV (``PATH@fbs=FBS``: both)."""
    rows = []
    for p in paths:
        path, _, name = p.rpartition("=") if "=" in p else (p, "", "")
        path, _, method = path.rpartition("@") if "@" in path else (path, "", "")
        with open(path, newline="") as f:
            part = list(csv.DictReader(f))
        if method:
            part = [r for r in part if r["method"] == method]
            if not part:
                raise SystemExit(f"{path} holds no rows of method '{method}'.")
        if name:
            for r in part:
                r["method"] = name
        rows.extend(part)
    return rows


def volume_times(rows) -> dict:
    """Wall time per volume (s) per method: the sum over a case's muscles, then ``summarize``'s mean and
    std over the cases. Returns ``{method: (mean, std)}``."""
    per_case: dict = {}
    for r in rows:
        if not r.get("error"):
            key = (r["method"], r.get("case", ""))
            per_case[key] = per_case.get(key, 0.0) + float(r["time_s"])
    cases = [{"method": m, "time_s": t} for (m, _), t in per_case.items()]
    return {s["method"]: (s["time_s_mean"], s["time_s_std"]) for s in summarize(cases, ("method",))}


def table(rows, by_muscle: bool = False, precision_recall: bool = False, past_ends: bool = False) -> str:
    """A markdown table, one row per method (and muscle); without ``by_muscle`` it adds the time per volume,
    with ``precision_recall`` the mean precision and recall (:data:`OVERLAP_COLUMNS`), with ``past_ends`` the
    volume past the muscle's ends (:data:`PAST_ENDS_COLUMNS`)."""
    by = ("method", "muscle") if by_muscle else ("method",)
    columns = COLUMNS + (OVERLAP_COLUMNS if precision_recall else ()) + (PAST_ENDS_COLUMNS if past_ends else ())
    head = ["method"] + (["muscle"] if by_muscle else []) + ["n"] + [c[0] for c in columns]
    head += [] if by_muscle else ["time/volume (s)"]
    per_volume = volume_times(rows)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summarize(rows, by):
        cells = [NAMES.get(s["method"], s["method"])] + ([s["muscle"]] if by_muscle else []) + [str(s["n"])]
        cells += [_cell(s, k, d) for _, k, d in columns]
        if not by_muscle:
            m, sd = per_volume.get(s["method"], (math.nan, math.nan))
            cells.append(f"{m:.1f} ± {sd:.1f}" if math.isfinite(m) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", nargs="+")
    p.add_argument("--by-muscle", action="store_true", help="one row per method and muscle")
    p.add_argument("--merge", default=None, help="write the merged rows to this CSV")
    p.add_argument("--plot", default=None, help="write the per-method-and-muscle bar chart (PNG) to this file")
    p.add_argument("--title", default="", help="the plot's title")
    p.add_argument("--precision-recall", action="store_true", help="add the mean precision and recall")
    p.add_argument("--past-ends", action="store_true",
                   help="add the volume predicted past the muscle's ends, %% of the muscle's volume")
    a = p.parse_args(argv)
    rows = read_rows(a.csv)
    if a.merge:
        write_csv(rows, a.merge)
    if a.plot:
        plot_summary(summarize(rows, ("method", "muscle")), a.plot, title=a.title)
    print(table(rows, a.by_muscle, a.precision_recall, a.past_ends))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
