"""One IFSS-Net network step on the CPU in three forms: eager float32, bfloat16 autocast, torch.compile.

Issue 7 asks what limits the CPU; this checks two cheap levers on one step of the shipped network
(batch 2 = both directions of one seed group, w x size x size windows). It prints the median step time
of each form, its ratio to eager in the same run, how many mask pixels (> 0.5) differ from eager, and the
compile time. A benchmark, not a test: nothing is asserted.

    python benchmarks/cpu_step_variants.py [--model Resources/Models/ifssnet.pt] [--threads 1] [--no-compile]
"""
from __future__ import annotations

import argparse
import time

import torch

from ifssnet.propagate import default_model_path, load_model


def median_seconds(fn, reps: int = 8) -> float:
    fn()                                   # warm-up (allocators, kernel selection)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[reps // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(default_model_path()))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile (about a minute to compile)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    net = load_model(args.model, "cpu")
    w, size = net.config.window, net.config.size
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 1, w, size, size, generator=gen)
    mask = (torch.rand(2, 1, w, size, size, generator=gen) > 0.7).float()

    def fg(logits):
        return torch.softmax(logits.float(), dim=1)[:, 1] > 0.5

    with torch.inference_mode():
        ref = fg(net(image, mask)[0])
        eager = median_seconds(lambda: net(image, mask))
        rows = [("eager float32", eager, 0, None)]

        def bf16():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return net(image, mask)
        rows.append(("bfloat16 autocast", median_seconds(bf16), int((fg(bf16()[0]) != ref).sum()), None))
        if not args.no_compile:
            compiled = torch.compile(net)
            start = time.perf_counter()
            compiled(image, mask)
            compile_s = time.perf_counter() - start
            rows.append(("torch.compile", median_seconds(lambda: compiled(image, mask)),
                         int((fg(compiled(image, mask)[0]) != ref).sum()), compile_s))
    print(f"{args.model}: batch 2 x {w} x {size} x {size}, {args.threads} thread(s), torch {torch.__version__}")
    print("| form | s per step | x eager | mask pixels differing | compile s |")
    print("|---|---|---|---|---|")
    for name, sec, diff, comp in rows:
        print(f"| {name} | {sec:.3f} | {sec / eager:.2f} | {diff} | {'' if comp is None else f'{comp:.0f}'} |")


if __name__ == "__main__":
    main()
