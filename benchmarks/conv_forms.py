"""Convolution forms on the CPU, compared in one run, plus per-window timings of the network.

Part 1 (issue 7): a depthwise in-plane dilated convolution on a window ``(1, C, w, H, W)`` as
  (a) the naive form: ``Conv3d`` with kernel (1, 3, 3), dilation (1, r, r), groups = C;
  (b) the fast form used by ``ifssnet.model``: slices folded into the batch, ``(w, C, H, W)``,
      channels_last, 2-D depthwise conv (``SliceConv3d``);
and a dense 3x3x3 conv as ``Conv3d`` vs the stacked-neighbours 2-D form. Same weights, outputs
checked equal (max abs difference printed), ratio naive / fast printed.

Part 2 (``--net``): forward (eval, no grad) and forward+backward (train) time per window of
IFSSNet at a given size and width multipliers, with parameter counts and GFLOP per window.

Part 3 (``--dilations``): the depthwise 3x3 convolution of the shipped network's first level (6 slices =
both directions of a window, 15 channels, 128 x 128) at each dilation, channels_last (the network's
layout) against NCHW: oneDNN slows down sharply at large dilations on some CPUs.

Timings are the MINIMUM over repeats (the machine is shared; the minimum is the least disturbed).
The process CPU time is printed too: with ``--threads 1`` it is close to the undisturbed wall time
even when other processes load the cores.

    python benchmarks/conv_forms.py [--threads 2] [--size 128] [--channels 120] [--net --mults 1.0 0.5] [--dilations]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from ifssnet.model import IFSSNet, IFSSNetConfig, count_parameters, flops_per_window
from ifssnet.model.layers import SliceConv3d, fold, reference_conv3d, unfold


CPU_MS: list = []  # process CPU time of the last best_ms call (min over repeats), ms


def best_ms(fn, reps: int = 7, warmup: int = 2) -> float:
    """Minimum wall time over ``reps`` calls, in ms; the matching minimum CPU time goes to CPU_MS[-1].

    With 1 thread, CPU time is close to the undisturbed wall time even on a loaded machine.
    """
    for _ in range(warmup):
        fn()
    ts, cs = [], []
    for _ in range(reps):
        c = time.process_time()
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    CPU_MS.append(min(cs) * 1000)
    return min(ts) * 1000


def conv_forms(channels: int, depth: int, size: int, reps: int) -> list[dict]:
    rows = []
    torch.manual_seed(0)
    x5 = torch.randn(1, channels, depth, size, size)
    xf = fold(x5)
    cases = [("depthwise (1,3,3) r=1", (1, 3, 3), (1, 1), channels),
             ("depthwise (1,3,3) r=6", (1, 3, 3), (6, 6), channels),
             ("depthwise (1,3,3) r=12", (1, 3, 3), (12, 12), channels),
             ("dense 3x3x3 C/4->C/4", (3, 3, 3), (1, 1), 1)]
    for name, k, dil, groups in cases:
        c = channels if groups > 1 else max(4, channels // 4)
        m = SliceConv3d(c, c, k, dil, groups=groups, bias=False)
        xi5, xif = (x5, xf) if c == channels else (x5[:, :c].contiguous(), fold(x5[:, :c].contiguous()))
        with torch.no_grad():
            diff = float((unfold(m(xif, depth), 1) - reference_conv3d(m, xi5)).abs().max())
            naive = best_ms(lambda: reference_conv3d(m, xi5), reps)
            fast = best_ms(lambda: m(xif, depth), reps)
        rows.append({"case": name, "channels": c, "naive_ms": naive, "fast_ms": fast,
                     "ratio": naive / fast, "max_abs_diff": diff})
    return rows


def dilation_timings(reps: int, shape=(6, 15, 128, 128), rates=(1, 6, 8, 12, 18)) -> list[dict]:
    """Depthwise 3x3 at each dilation, channels_last vs NCHW, same data and weights (ms, min of reps)."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    x = torch.randn(*shape)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(shape[1], 1, 3, 3)
    rows = []
    with torch.no_grad():
        for r in rates:
            cl = best_ms(lambda: F.conv2d(x_cl, w, padding=r, dilation=r, groups=shape[1]), reps)
            nchw = best_ms(lambda: F.conv2d(x, w, padding=r, dilation=r, groups=shape[1]), reps)
            rows.append({"dilation": r, "channels_last_ms": cl, "nchw_ms": nchw})
    return rows


def net_timings(size: int, mults, reps: int, window: int = 3) -> list[dict]:
    rows = []
    for wm in mults:
        cfg = IFSSNetConfig(size=size, width_mult=wm, window=window)
        torch.manual_seed(0)
        net = IFSSNet(cfg)
        x = torch.randn(1, 1, window, size, size)
        m = (torch.rand_like(x) > 0.5).float()
        net.eval()
        with torch.no_grad():
            fwd = best_ms(lambda: net(x, m), reps)
            fwd_cpu = CPU_MS[-1]
            feats = net.encode_image(x)
            step = best_ms(lambda: net.forward_from_features(feats, m), reps)
            xb = x.expand(8, -1, -1, -1, -1).contiguous()
            img8 = best_ms(lambda: net.encode_image(xb), max(2, reps // 2)) / 8
        net.train()

        def fb():
            logits, _ = net(x, m)
            logits.float().square().mean().backward()
        train = best_ms(fb, reps)
        train_cpu = CPU_MS[-1]
        gf = flops_per_window(cfg)
        rows.append({"size": size, "width_mult": wm, "channels": cfg.channels(),
                     "params": count_parameters(net), "gflop_per_window": gf,
                     "forward_ms": fwd, "mask_stream_step_ms": step, "image_stream_batched8_ms": img8,
                     "fwd_bwd_train_ms": train, "achieved_gflops_fwd": gf / (fwd / 1000),
                     "forward_cpu_ms": fwd_cpu, "fwd_bwd_train_cpu_ms": train_cpu})
    return rows


def matmul_gflops(reps: int) -> float:
    a = torch.randn(1024, 1024)
    return 2 * 1024 ** 3 / (best_ms(lambda: a @ a, reps) / 1000) / 1e9


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--channels", type=int, default=120)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--net", action="store_true", help="also time the network per window")
    ap.add_argument("--mults", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--dilations", action="store_true",
                    help="also time the first level's depthwise conv at each dilation, channels_last vs NCHW")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = {"threads": a.threads, "torch": torch.__version__, "matmul_gflops": matmul_gflops(a.reps)}
    print(f"torch {torch.__version__}, {a.threads} threads, matmul 1024: {out['matmul_gflops']:.1f} GFLOP/s")
    out["conv_forms"] = conv_forms(a.channels, a.depth, a.size, a.reps)
    print(f"\nwindow (1, {a.channels}, {a.depth}, {a.size}, {a.size}); min of {a.reps} runs")
    print(f"{'case':26s} {'C':>4s} {'naive ms':>9s} {'fast ms':>8s} {'ratio':>6s} {'max|diff|':>10s}")
    for r in out["conv_forms"]:
        print(f"{r['case']:26s} {r['channels']:4d} {r['naive_ms']:9.2f} {r['fast_ms']:8.2f} {r['ratio']:6.1f} "
              f"{r['max_abs_diff']:10.2e}")
    if a.net:
        out["net"] = net_timings(a.size, a.mults, a.reps)
        print(f"\nIFSSNet per window (w=3, {a.size}x{a.size}); min of {a.reps} runs")
        for r in out["net"]:
            print(f"width_mult {r['width_mult']:.2f} {r['channels']}: {r['params'] / 1e6:.2f} M params, "
                  f"{r['gflop_per_window']:.2f} GFLOP | forward {r['forward_ms']:.0f} ms "
                  f"({r['achieved_gflops_fwd']:.1f} GFLOP/s), mask-stream step {r['mask_stream_step_ms']:.0f} ms, "
                  f"image stream batched {r['image_stream_batched8_ms']:.0f} ms/window | "
                  f"fwd+bwd train {r['fwd_bwd_train_ms']:.0f} ms | process CPU: forward "
                  f"{r['forward_cpu_ms']:.0f} ms, fwd+bwd {r['fwd_bwd_train_cpu_ms']:.0f} ms")
    if a.dilations:
        out["dilations"] = dilation_timings(a.reps)
        print(f"\ndepthwise 3x3 on 6 x 15 x 128 x 128; min of {a.reps} runs")
        for r in out["dilations"]:
            print(f"dilation {r['dilation']:2d}: channels_last {r['channels_last_ms']:.2f} ms, NCHW {r['nchw_ms']:.2f} ms")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
