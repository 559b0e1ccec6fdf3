"""One IFSS-Net network step on the CPU in four forms: the weights as stored, then as propagation loads
them (negligible weights zeroed) in eager float32, bfloat16 autocast and torch.compile.

Issue 7 asks what limits the CPU; this checks cheap levers on one step of the shipped network
(batch 2 = both directions of one seed group, w x size x size windows). It prints the median step time
of each form, its ratio to eager (zeroed) in the same run, how many mask pixels (> 0.5) differ from it, and
the compile time. The forms alternate, so a change of load hits all of them. A benchmark, not a test:
nothing is asserted.

    python benchmarks/cpu_step_variants.py [--model Resources/Models/ifssnet.pt] [--threads 1] [--no-compile]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from ifssnet.model.checkpoint import NEGLIGIBLE_WEIGHT, load_checkpoint, zero_negligible_weights
from ifssnet.propagate import default_model_path


def median_seconds(fns, reps: int = 8) -> list:
    """Median seconds of each callable; they take turns, so a change of the machine's load hits all."""
    for fn in fns:
        fn()                               # warm-up (allocators, kernel selection)
    times = [[] for _ in fns]
    for _ in range(reps):
        for fn, acc in zip(fns, times):
            start = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - start)
    return [sorted(t)[reps // 2] for t in times]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(default_model_path()))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (about a minute to compile)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    stored = load_checkpoint(args.model, map_location="cpu")[0].eval()     # the weights as in the file
    net = copy.deepcopy(stored)
    zeroed = zero_negligible_weights(net)                                   # as load_model does
    w, size = net.config.window, net.config.size
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 1, w, size, size, generator=gen)
    mask = (torch.rand(2, 1, w, size, size, generator=gen) > 0.7).float()

    def fg(logits):
        return torch.softmax(logits.float(), dim=1)[:, 1] > 0.5

    with torch.inference_mode():
        ref = fg(net(image, mask)[0])

        def bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(image, mask)
        forms = [("weights as stored", lambda: stored(image, mask), None),
                 ("eager float32 (as loaded: negligible weights zeroed)", lambda: net(image, mask), None),
                 ("bfloat16 autocast", bf16, None)]
        if not args.no_compile:
            compiled = torch.compile(net)
            start = time.perf_counter()
            compiled(image, mask)
            forms.append(("torch.compile", lambda: compiled(image, mask), time.perf_counter() - start))
        secs = median_seconds([f for _, f, _ in forms])
        eager = secs[1]
        rows = [(name, sec, int((fg(f()[0]) != ref).sum()), comp) for (name, f, comp), sec in zip(forms, secs)]
    print(f"{args.model}: batch 2 x {w} x {size} x {size}, {args.threads} thread(s), torch {torch.__version__}; "
          f"{zeroed} weights below {NEGLIGIBLE_WEIGHT:g} zeroed")
    print("| form | s per step | x eager (zeroed) | mask pixels differing | compile s |")
    print("|---|---|---|---|---|")
    for name, sec, diff, comp in rows:
        print(f"| {name} | {sec:.3f} | {sec / eager:.2f} | {diff} | {'' if comp is None else f'{comp:.0f}'} |")


if __name__ == "__main__":
    main()
