"""One more painted slice: where does it help most?

For each case, paints every muscle by ``3-seeds`` (or ``--start 3-seeds+ends``: the muscle's ends marked
"no muscle here" as well) and propagates them all together with the shipped
(or a given) network. Then, for each strategy, it paints one more slice per muscle (the reference's
mask on that slice), propagates again, and scores every muscle. Scoring is ``ifssnet.compare.score``:
over the reference's extent, painted slices left out. The strategies are:

- ``paint-next``: the slice of ``PropagationResult.paint_next``, the middle of the longest stretch
  that no painted slice anchors;
- ``least-confident``: the first slice of ``PropagationResult.least_confident``.

With ``--rounds N`` the paint-next loop goes on, as a clinician would: paint the suggested slice,
propagate again, paint the next suggestion, up to N more slices per muscle.

    python benchmarks/paint_next.py .data/test/s100{0,1,2,3,4} [--model M] [--json out.json] [--rounds 3] \
        [--start 3-seeds+ends]
    python benchmarks/paint_next.py --table-from a.json b.json      # the table of earlier runs
"""
from __future__ import annotations

import argparse
import json

import numpy as np

STRATEGIES = ("paint-next", "least-confident")


def run_case(case_dir, net, rounds: int = 1, start: str = "3-seeds") -> list:
    """Rows (case, muscle, strategy, slice, dice, volume_error_pct); strategy ``start`` (a protocol) is the start.
    With ``rounds`` > 1, the paint-next loop goes on: paint the suggested slice, propagate, ask again
    (rows ``paint-next xN``: N more slices per muscle)."""
    from ifssnet.compare import load_case, protocol_seeds, score
    from ifssnet.propagate import propagate
    from ifssnet.seeds import cut_seeds

    volume, refs, spacing = load_case(case_dir)
    seeds = {n: protocol_seeds(m, start) for n, m in refs.items()}
    base = propagate(volume, seeds, net, device="cpu", slice_spacing_mm=spacing[0])
    rows = [dict(case=str(case_dir), muscle=n, strategy=start, slice=None,
                 **_metrics(score(base.masks[n], refs[n], spacing, seeds[n].slices))) for n in refs]
    for strategy in STRATEGIES:
        now, res = seeds, base
        for r in range(1, (rounds if strategy == "paint-next" else 1) + 1):   # the clinician's loop
            pick = {n: res.paint_next(n) if strategy == "paint-next" else res.least_confident(n, 1)[0] for n in refs}
            now = {n: cut_seeds(refs[n].astype(np.uint8), sorted(set(now[n].slices) | {pick[n]}))
                   if pick[n] is not None else now[n] for n in refs}
            res = propagate(volume, now, net, device="cpu", slice_spacing_mm=spacing[0])
            rows += [dict(case=str(case_dir), muscle=n, strategy=strategy if r == 1 else f"{strategy} x{r}",
                          slice=pick[n], **_metrics(score(res.masks[n], refs[n], spacing, now[n].slices)))
                     for n in refs]
    return rows


def _metrics(row: dict) -> dict:
    return {"dice": float(row["dice"]), "volume_error_pct": float(row["volume_error_pct"]),
            "volume_diff_pct": float(row["volume_diff_pct"])}     # signed: + too large, - too small


def table(rows: list) -> str:
    lines = ["| seeds | Dice | volume error | GM | GL | SOL |", "|---|---|---|---|---|---|"]
    loops = sorted({x["strategy"] for x in rows if x["strategy"].startswith("paint-next x")},
                   key=lambda t: int(t.rsplit("x", 1)[1]))
    starts = sorted({x["strategy"] for x in rows if x["strategy"] not in STRATEGIES and x["strategy"] not in loops})
    start = " or ".join(starts)
    for strategy in tuple(starts) + STRATEGIES + tuple(loops):
        r = [x for x in rows if x["strategy"] == strategy]
        per = []
        for m in ("GM", "GL", "SOL"):
            rm = [x for x in r if x["muscle"] == m]
            per.append(f"{np.mean([x['dice'] for x in rm]):.3f} / {np.mean([x['volume_error_pct'] for x in rm]):.1f} %"
                       if rm else "-")
        if strategy.startswith("paint-next x"):
            name = f"{start} + {strategy.rsplit('x', 1)[1]} slices (paint-next, one at a time)"
        else:
            name = strategy if strategy in starts else f"{start} + 1 slice ({strategy})"
        lines.append(f"| {name} | {np.mean([x['dice'] for x in r]):.3f} | "
                     f"{np.mean([x['volume_error_pct'] for x in r]):.1f} % | " + " | ".join(per) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cases", nargs="*", help="folders with volume.nrrd and reference.seg.nrrd")
    p.add_argument("--model", default=None, help="checkpoint (default: the shipped weights)")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--rounds", type=int, default=1, help="paint-next slices per muscle, one at a time (default 1)")
    p.add_argument("--start", default="3-seeds", choices=("3-seeds", "3-seeds+ends"),
                   help="the seeds before the first extra slice (default 3-seeds)")
    p.add_argument("--table-from", nargs="*", default=None, help="only print the table of these --json files (one start)")
    args = p.parse_args(argv)
    if args.table_from is not None:
        rows = [r for f in args.table_from for r in json.load(open(f))]
    else:
        if not args.cases:
            p.error("give one or more cases (or --table-from JSON files)")
        from ifssnet.propagate import load_model

        net = load_model(args.model, "cpu")
        rows = [r for c in args.cases for r in run_case(c, net, args.rounds, args.start)]
        if args.json:
            with open(args.json, "w") as f:
                json.dump(rows, f, indent=1)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
