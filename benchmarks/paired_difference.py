"""Paired difference of two networks (or methods) scored on the same held-out cases: is one really better?

    python benchmarks/paired_difference.py BASE.csv OTHER.csv [BASE2.csv OTHER2.csv ...] [--metric dice]
    python benchmarks/paired_difference.py heldout-baselines-3-seeds.csv@fbs heldout-ifssnet-bt65-3-seeds.csv

Each argument pair is two ``ifssnet compare-set`` CSVs of the same cases and protocol (e.g. full supervision
and few-shot trained with one seed; a second pair, the same two recipes with another seed). Rows are paired
by case (the case folder's name) and muscle; OTHER - BASE is taken per pair of rows. ``FILE.csv@METHOD`` takes
only that method's rows of a CSV that holds several (the baselines' CSVs hold fbs, gfs and ws;
:func:`results_table.read_rows`). The unit of the
statistics is a case of one pair of CSVs (its muscles averaged; per muscle in the muscle rows), since the
muscles of one phantom are not independent draws. Pairs scored on the same cases share them, so the interval
pooled over several pairs (seeds) is narrower than their independence would justify; read it with the per-pair
tables. Printed per muscle and over all: the number of units, the
mean difference, its standard deviation, a 95 % t-interval of the mean, and how many units OTHER wins
(larger Dice, IoU, precision or recall; smaller volume error or distance). Rows with an error, or a metric
that is not a number, are left out of both CSVs' pairing; a row without its partner is counted and reported.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_table import read_rows  # noqa: E402  (benchmarks/ is not a package)

#: Metrics where a larger value is better; every other column (errors, distances, time) is better smaller.
LARGER_IS_BETTER = ("dice", "iou", "precision", "recall")


def _key(row) -> tuple:
    return os.path.basename(os.path.normpath(row.get("case", ""))), row["muscle"]


def _scores(rows, metric: str) -> dict:
    """``{(case, muscle): value}`` of the rows without an error whose ``metric`` is a number. Raises SystemExit
    where two rows share a case and muscle (a CSV of several methods: select one with ``FILE.csv@METHOD``)."""
    out = {}
    for r in rows:
        if _key(r) in out:
            methods = sorted({x["method"] for x in rows})
            raise SystemExit(f"Two rows for case {_key(r)[0]}, muscle {_key(r)[1]} (methods {', '.join(methods)}): "
                             "pick one method with FILE.csv@METHOD.")
        try:
            v = float(r.get(metric, "nan"))
        except ValueError:
            continue
        if not r.get("error") and math.isfinite(v):
            out[_key(r)] = v
    return out


def _partner_failed(pairs, metric: str) -> int:
    """Rows scored in one CSV of a pair whose partner row is in the other CSV but failed or has no finite ``metric``."""
    n = 0
    for base, other in pairs:
        a, b = _scores(base, metric), _scores(other, metric)
        present_a, present_b = {_key(r) for r in base}, {_key(r) for r in other}
        n += len((a.keys() - b.keys()) & present_b) + len((b.keys() - a.keys()) & present_a)
    return n


def paired_units(pairs, metric: str = "dice"):
    """The paired differences OTHER - BASE of ``metric``. ``pairs``: [(base_rows, other_rows), ...].
    Returns (``{muscle: [diff per unit]}``, ``[diff per unit, muscles averaged]``, unpaired row count), a unit
    being one case of one pair."""
    per_muscle, overall, unpaired = defaultdict(list), [], 0
    for p, (base, other) in enumerate(pairs):
        a, b = _scores(base, metric), _scores(other, metric)
        unpaired += len(a.keys() ^ b.keys())
        by_case = defaultdict(list)
        for key in sorted(a.keys() & b.keys()):
            d = b[key] - a[key]
            per_muscle[key[1]].append(d)
            by_case[(p, key[0])].append(d)
        overall += [float(np.mean(v)) for v in by_case.values()]
    return dict(per_muscle), overall, unpaired


def describe(diffs, larger_is_better: bool) -> dict:
    """n, mean, std (ddof 1), the 95 % t-interval of the mean and the wins of OTHER, for one list of differences."""
    d = np.asarray(diffs, dtype=float)
    n = d.size
    mean = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
    wins = int((d > 0).sum() if larger_is_better else (d < 0).sum())
    return {"n": n, "mean": mean, "std": sd, "low": mean - half, "high": mean + half, "wins": wins}


def table(pairs, metric: str = "dice") -> str:
    """A markdown table of the paired differences (see the module's docstring)."""
    per_muscle, overall, unpaired = paired_units(pairs, metric)
    if not overall:
        raise SystemExit("No (case, muscle) is scored in both CSVs of any pair: are they the same cases?")
    better = metric in LARGER_IS_BETTER
    digits = 3 if better else 1
    lines = [f"| {metric}: OTHER - BASE | n | mean | std | 95 % interval | OTHER better |", "|---|---|---|---|---|---|"]

    def num(x: float, sign: str = "+") -> str:
        return f"{x:{sign}.{digits}f}" if math.isfinite(x) else "-"

    for name, diffs in sorted(per_muscle.items()) + [("all (muscles averaged per case)", overall)]:
        s = describe(diffs, better)
        lines.append(f"| {name} | {s['n']} | {num(s['mean'])} | {num(s['std'], '')} "
                     f"| [{num(s['low'])}, {num(s['high'])}] | {s['wins']} of {s['n']} |")
    if unpaired:
        failed = _partner_failed(pairs, metric)
        lines.append(f"\n{unpaired} row(s) had no partner in the other CSV of their pair and were left out"
                     + (f"; {failed} of them because the partner's run failed or its {metric} is not a finite "
                        "number (a distance to an empty mask is inf): those cases' worst failures are not in "
                        "the differences" if failed else "") + ".")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", nargs="+", help="BASE.csv OTHER.csv, and more such pairs (FILE.csv@METHOD: one method's rows)")
    p.add_argument("--metric", default="dice", help="a compare-set column (default dice; e.g. volume_error_pct)")
    a = p.parse_args(argv)
    if len(a.csv) % 2:
        p.error("give the CSVs in pairs: BASE.csv OTHER.csv [BASE2.csv OTHER2.csv ...]")
    pairs = [(read_rows([a.csv[i]]), read_rows([a.csv[i + 1]])) for i in range(0, len(a.csv), 2)]
    print(table(pairs, a.metric))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
