"""``ifssnet bench``: speed, memory and agreement of IFSS-Net's presets and of FBS, GFS and WS in ONE run.

One phantom (:func:`ifssnet.phantom.make_phantom`), one set of seeds, every method in the same
process, one after the other, so the ratios compare like with like on whatever load the machine has.

- Seeds: the ``3-seeds`` protocol (3 consecutive slices at the largest cross-section) for IFSS-Net,
  GFS and WS. Fill between slices only interpolates *between* painted slices, so from one group of
  3 it returns exactly the seeds; it gets the ``paper`` protocol instead (3 consecutive slices every
  100), which the table states in its ``seeds`` column.
- Time and memory: as :mod:`ifssnet.compare` measures them (wall time of the call; peak RSS above
  the RSS just before the call, kernel high-water mark reset per call). Loading the network and
  one warm-up forward are left out, as :func:`ifssnet.baselines.registry.prepare` leaves out imports.
- Ratios: time and peak memory of every row divided by FBS's, measured in the same run.
- Network throughput: ``flops_per_window x windows / network seconds`` (encode + sequential steps),
  against a float32 matmul measured in the same run (``torch.mm`` 1024 x 1024 on the device).
- Agreement: Dice of every result against the ``accurate`` preset (the full working resolution,
  every window overlapping by w - 1 slices); also Dice against the phantom's reference.

Without a trained model (``Resources/Models/ifssnet.pt`` missing and no ``--model``), an untrained
network of the default configuration runs instead and the output says ``UNTRAINED: timings only``:
its masks are noise, so only the timings, memory and GFLOP/s mean anything.

    ifssnet bench --size small --json bench.json --md bench.md
    python benchmarks/bench_propagation.py --size medium --threads 1
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import InputError

SIZES = {"full": (1400, 512, 512), "medium": (700, 256, 256), "small": (120, 64, 64)}
DEFAULT_METHODS = ("ifssnet", "fbs", "gfs", "ws")
MUSCLES = ("GM", "GL", "SOL")
#: The presets the benchmark runs by default: the three offered ones, and ``reference`` (the
#: straightforward path, one ``net(...)`` per step, whole-slice resampling) to show the speed-up of the
#: optimised path in the same run (its Dice vs accurate is 1 up to float rounding).
BENCH_PRESETS = ("accurate", "balanced", "fast", "reference")
UNTRAINED_BANNER = "UNTRAINED: timings only (no trained model found; the masks of an untrained network are noise)"


# --------------------------------------------------------------------------------------------------
# The machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str = "cpu") -> dict:
    """CPU model, logical cores, torch threads, the device's name, load average, versions."""
    import torch

    info = {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "device": device, "device_name": _cpu_model()}
    try:
        info["load_avg"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        info["load_avg"] = None
    if str(device).startswith("cuda"):
        info["device_name"] = torch.cuda.get_device_name(0)
    return info


def matmul_gflops(device: str = "cpu", n: int = 1024, reps: int = 5, dtype=None) -> float:
    """Best-of-``reps`` GFLOP/s of a float32 (or ``dtype``) ``n x n`` matmul on ``device``."""
    import torch

    dtype = dtype or torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    cuda = str(device).startswith("cuda")
    torch.mm(a, b)
    best = float("inf")
    for _ in range(reps):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        torch.mm(a, b)
        if cuda:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


# --------------------------------------------------------------------------------------------------
# Helpers


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two binary masks over the whole volume (1.0 when both are empty)."""
    a = np.asarray(a) != 0
    b = np.asarray(b) != 0
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int(np.logical_and(a, b).sum()) / s


def _load_network(model, device: str):
    """(network in eval mode, description dict). ``model``: None (shipped or untrained fallback), a path, or a module."""
    import torch

    from .propagate import default_model_path, load_model

    if model is None:
        path = default_model_path()
        if Path(path).exists():
            return load_model(path, device), {"source": str(path), "trained": True}
        from .model import IFSSNet, IFSSNetConfig

        torch.manual_seed(0)
        return IFSSNet(IFSSNetConfig()).to(device).eval(), {"source": "untrained IFSSNetConfig()", "trained": False}
    if isinstance(model, (str, Path)):
        from .model.checkpoint import load_checkpoint, zero_negligible_weights

        net, _, extra = load_checkpoint(model, map_location="cpu")
        zero_negligible_weights(net)          # as load_model does with a file
        trained = not bool((extra or {}).get("untrained", False))   # a checkpoint saved untrained says so
        return load_model(net, device), {"source": str(model), "trained": trained}
    trained = bool(getattr(model, "trained", True))   # a given module counts as trained unless it says otherwise
    return load_model(model, device), {"source": type(model).__name__ + " (given)", "trained": trained}


def _warm_up(net, device: str) -> None:
    """One forward at batch 2 (not timed): oneDNN/cuDNN pick their kernels on the first call."""
    import torch

    cfg = net.config
    x = torch.rand(2, 1, cfg.window, cfg.size, cfg.size, device=device)
    with torch.inference_mode():
        net(x, x)


def _measure(fn):
    """(result, seconds, peak RSS MiB above baseline, GPU peak MiB, source) of ``fn()``, as compare measures."""
    from .peak_memory import PeakMemory, gpu_peak_mb, gpu_reset

    gpu_reset()
    with PeakMemory() as mem:
        t0 = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - t0
    return out, seconds, mem.peak_mb, gpu_peak_mb(), mem.source


def _finite(v):
    if isinstance(v, (float, np.floating)):
        return None if not math.isfinite(float(v)) else float(v)
    return v


# --------------------------------------------------------------------------------------------------
# The benchmark


def run_bench(size: str = "small", device: str = "cpu", methods: Sequence[str] = DEFAULT_METHODS, model=None,
              presets: Optional[Sequence[str]] = None, muscles: Sequence[str] = ("GM",), all_muscles: bool = False,
              seed: int = 0, shape: Optional[Sequence[int]] = None, progress=None) -> dict:
    """Run the benchmark; returns a JSON-able dict (see :func:`format_markdown` for the table).

    ``size``: ``full`` (1400 x 512 x 512) | ``medium`` (700 x 256 x 256) | ``small`` (120 x 64 x 64),
    or ``shape`` (K, J, I) to override. ``methods``: any of ifssnet, fbs, gfs, ws (registry names).
    ``presets``: IFSS-Net presets (default :data:`BENCH_PRESETS`; ``accurate`` always runs, it is the Dice reference).
    ``muscles``: muscles benchmarked one at a time; ``all_muscles`` adds one IFSS-Net run per preset
    with GM, GL and SOL propagated together in one batch.
    """
    import torch

    from .baselines.registry import get as get_method
    from .compare import method_names, protocol_seeds, run_method, score
    from .phantom import make_phantom
    from .propagate import propagate, resolve_device, resolve_preset

    if shape is None:
        if size not in SIZES:
            raise InputError(f"Unknown size {size!r}.", f"Choose one of: {', '.join(SIZES)}.")
        shape = SIZES[size]
    shape = tuple(int(v) for v in shape)
    methods = method_names(methods)
    for m in methods:
        get_method(m)  # unknown or uninstalled method: fail before any work
    presets = list(presets or BENCH_PRESETS)
    for p in presets:
        resolve_preset(p, 3)
    if "ifssnet" in methods and "accurate" not in presets:
        presets.insert(0, "accurate")
    presets.sort(key=lambda p: 0 if p == "accurate" else 1)  # the Dice reference first
    muscles = [m.upper() for m in muscles]
    for m in muscles:
        if m not in MUSCLES:
            raise InputError(f"Unknown muscle {m!r}.", f"Choose from {', '.join(MUSCLES)}.")
    dev = resolve_device(device)

    out: dict = {"size": size if shape == SIZES.get(size) else "custom", "shape": list(shape),
                 "machine": machine_info(dev), "notes": [], "rows": []}
    t = time.perf_counter()
    ph = make_phantom(seed, shape, progress=progress)
    out["phantom_seconds"] = time.perf_counter() - t
    spacing = ph.spacing_kji
    out["spacing_kji"] = list(spacing)
    out["matmul_gflops"] = matmul_gflops(dev)
    if dev.startswith("cuda"):
        out["matmul_bf16_gflops"] = matmul_gflops(dev, 4096, dtype=torch.bfloat16)

    net = None
    gflop_window = math.nan
    if "ifssnet" in methods:
        from .model import flops_per_window

        net, desc = _load_network(model, dev)
        out["model"] = dict(desc, config=net.config.to_dict() if hasattr(net.config, "to_dict") else {})
        if not desc["trained"]:
            out["banner"] = UNTRAINED_BANNER
        gflop_window = flops_per_window(net.config)
        out["gflop_per_window"] = gflop_window
        _warm_up(net, dev)
    # An untrained network predicts nothing, so its runs would stop a few slices past the seeds; let
    # them run to the volume's ends instead (the upper bound of a real run's window count).
    stop_at_end = bool(out.get("model", {}).get("trained", True))
    if not stop_at_end:
        out["notes"].append("Untrained network: runs go to the volume's ends (stop_at_end=False), the upper bound "
                            "of the windows a trained network runs (it stops about 5 slices past the muscle's end).")
    out["notes"].append("FBS gets the 'paper' protocol seeds (3 consecutive slices every 100 of 1400 slices, "
                        f"scaled to every {max(5, int(round(100 * shape[0] / SIZES['full'][0])))} of {shape[0]} "
                        "here): from a single group of 3 (the '3-seeds' protocol) Fill between slices returns "
                        "only the seeds.")
    out["notes"].append("Dice vs accurate: against the IFSS-Net 'accurate' preset result of the same muscle(s); "
                        "Dice vs reference: against the phantom's ground truth, seed slices excluded, over the "
                        "muscle's extent (ifssnet.compare.score).")

    # The paper's "3 every 100 slices" is at its 1400-slice sweep; the phantom spans the whole calf at
    # any K, so the gap is scaled to keep the same distance in mm between groups.
    paper_every = max(5, int(round(100 * shape[0] / SIZES["full"][0])))
    out["paper_every"] = paper_every
    accurate: Dict[str, np.ndarray] = {}
    rows: List[dict] = out["rows"]
    groups = [[m] for m in muscles] + ([list(MUSCLES)] if all_muscles and "ifssnet" in methods else [])
    for group in groups:
        label = "+".join(group)
        refs = {m: ph.labels[m] for m in group}
        seeds3 = {m: protocol_seeds(refs[m], "3-seeds") for m in group}
        single = len(group) == 1
        for method in methods:
            if method != "ifssnet" and not single:
                continue
            if method == "ifssnet":
                for preset in presets:
                    res, sec, peak, gpeak, src = _measure(
                        lambda: propagate(ph.volume, seeds3, net, device=dev, preset=preset, progress=progress,
                                          stop_at_end=stop_at_end, slice_spacing_mm=spacing[0]))
                    net_s = res.timings.get("encode", 0.0) + res.timings.get("step", 0.0)
                    row = {"method": "ifssnet", "preset": preset, "muscle": label, "seeds": "3-seeds",
                           "time_s": sec, "peak_mb": peak, "gpu_peak_mb": gpeak, "mem_source": src,
                           "windows": res.windows, "network_s": net_s, "timings": dict(res.timings),
                           "gflops": gflop_window * res.windows / net_s if net_s > 0 else math.nan,
                           "gflops_total": gflop_window * res.windows / sec if sec > 0 else math.nan}
                    masks = res.masks
                    if preset == "accurate":
                        accurate.update({f"{label}/{m}": masks[m] for m in group})
                    row["dice_vs_accurate"] = float(np.mean([dice(masks[m], accurate[f"{label}/{m}"]) for m in group]))
                    row["dice_vs_reference"] = float(np.mean([score(masks[m], refs[m], spacing, seeds3[m].slices)["dice"]
                                                              for m in group]))
                    rows.append(row)
                    del res, masks
            else:
                m = group[0]
                s = protocol_seeds(refs[m], "paper", every=paper_every) if method == "fbs" else seeds3[m]
                mask, sec, peak, gpeak, src = run_method(method, ph.volume, s, spacing, progress=progress)
                row = {"method": method, "preset": "", "muscle": label,
                       "seeds": "paper" if method == "fbs" else "3-seeds", "time_s": sec, "peak_mb": peak,
                       "gpu_peak_mb": gpeak, "mem_source": src,
                       "dice_vs_reference": float(score(mask, refs[m], spacing, s.slices)["dice"])}
                row["dice_vs_accurate"] = dice(mask, accurate[f"{label}/{m}"]) if f"{label}/{m}" in accurate else math.nan
                rows.append(row)
                del mask
    # Ratios to FBS of the same muscle (multi-muscle rows: to the sum of FBS over those muscles).
    fbs = {r["muscle"]: r for r in rows if r["method"] == "fbs"}
    for r in rows:
        parts = r["muscle"].split("+")
        if all(p in fbs for p in parts):
            t_f = sum(fbs[p]["time_s"] for p in parts)
            m_f = max(fbs[p]["peak_mb"] for p in parts)
            r["time_vs_fbs"] = r["time_s"] / t_f if t_f > 0 else math.nan
            r["mem_vs_fbs"] = r["peak_mb"] / m_f if m_f and m_f > 0 else math.nan
        else:
            r["time_vs_fbs"] = math.nan
            r["mem_vs_fbs"] = math.nan
    if net is not None:
        from .estimate import expected_seconds

        out["expected_seconds"] = {p: expected_seconds(shape, 1, p, dev, net, slice_spacing_mm=spacing[0]) for p in presets}
    out["machine"]["load_avg_end"] = machine_info(dev)["load_avg"]
    return _jsonable(out)


def profile_propagation(size: str = "small", device: str = "cpu", model=None, preset: str = "fast", muscle: str = "GM",
                        seed: int = 0, shape: Optional[Sequence[int]] = None, top: int = 20) -> str:
    """``torch.profiler`` table (top ``top`` ops by self CPU time) of one IFSS-Net propagation on the
    phantom, plus propagate's own stage timings. The profile says what limits the CPU target."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from .compare import protocol_seeds
    from .phantom import make_phantom
    from .propagate import propagate, resolve_device

    shape = tuple(int(v) for v in (shape or SIZES[size]))
    dev = resolve_device(device)
    ph = make_phantom(seed, shape)
    net, desc = _load_network(model, dev)
    _warm_up(net, dev)
    seeds = {muscle: protocol_seeds(ph.labels[muscle], "3-seeds")}
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.startswith("cuda") else [])
    with profile(activities=acts) as prof:
        res = propagate(ph.volume, seeds, net, device=dev, preset=preset, slice_spacing_mm=ph.spacing_kji[0])
    key = "self_cuda_time_total" if dev.startswith("cuda") else "self_cpu_time_total"
    head = (f"profile: {' x '.join(map(str, shape))}, {muscle}, preset {preset}, {desc['source']}, device {dev}, "
            f"{torch.get_num_threads()} threads; {res.windows} windows in {res.seconds:.2f} s; stages "
            + ", ".join(f"{k} {v:.2f} s" for k, v in res.timings.items()))
    return head + "\n" + prof.key_averages().table(sort_by=key, row_limit=top)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return _finite(obj)
    return obj


# --------------------------------------------------------------------------------------------------
# Output


def _f(v, digits=2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


TABLE_COLUMNS = ("method", "preset", "muscle", "seeds", "time s", "x FBS time", "peak MB", "x FBS mem",
                 "windows", "GFLOP/s", "Dice vs accurate", "Dice vs reference")


def format_markdown(result: dict) -> str:
    """The markdown report: machine, load, banner, the table, notes."""
    m = result["machine"]
    lines = []
    if result.get("banner"):
        lines += [f"**{result['banner']}**", ""]
    lines.append(f"Phantom {' x '.join(map(str, result['shape']))} (K x J x I, size {result['size']}), "
                 f"device {m['device']} ({m['device_name']}), {m['cores']} cores, torch {m['torch']} "
                 f"with {m['torch_threads']} threads, load average {m.get('load_avg')} -> {m.get('load_avg_end')}.")
    if "gflop_per_window" in result:
        lines.append(f"Network: {_f(result['gflop_per_window'], 3)} GFLOP per window "
                     f"({result.get('model', {}).get('source', '')}); matmul in the same run: "
                     f"{_f(result['matmul_gflops'], 1)} GFLOP/s float32"
                     + (f", {_f(result['matmul_bf16_gflops'], 0)} GFLOP/s bf16" if result.get("matmul_bf16_gflops") else "")
                     + ".")
    lines.append("")
    lines.append("| " + " | ".join(TABLE_COLUMNS) + " |")
    lines.append("|" + "---|" * len(TABLE_COLUMNS))
    for r in result["rows"]:
        cells = [r["method"], r.get("preset") or "", r["muscle"], r["seeds"], _f(r["time_s"]), _f(r.get("time_vs_fbs")),
                 _f(r["peak_mb"], 0), _f(r.get("mem_vs_fbs")), _f(r.get("windows")), _f(r.get("gflops"), 1),
                 _f(r.get("dice_vs_accurate"), 4), _f(r.get("dice_vs_reference"), 3)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if result.get("expected_seconds"):
        lines.append("expected_seconds() for this shape, one muscle (upper bound: runs to the volume's ends): "
                     + ", ".join(f"{k} {_f(v, 1)} s" for k, v in result["expected_seconds"].items()) + ".")
    for n in result.get("notes", []):
        lines.append(f"- {n}")
    lines.append("- GFLOP/s: flops_per_window x windows / network seconds (image encoding + sequential steps; "
                 "resampling in and out excluded).")
    return "\n".join(lines) + "\n"


def _write_text(path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (:func:`ifssnet.io.atomic_write`), making its folder."""
    from .io import atomic_write

    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), make_folder=True)


# --------------------------------------------------------------------------------------------------
# Command line


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", choices=tuple(SIZES), default="small",
                   help="phantom size: full 1400x512x512, medium 700x256x256, small 120x64x64 (default)")
    p.add_argument("--shape", type=int, nargs=3, default=None, metavar=("K", "J", "I"), help="override --size")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated (default ifssnet,fbs,gfs,ws)")
    p.add_argument("--presets", default=None, help="IFSS-Net presets, comma-separated (default accurate,balanced,fast,reference; "
                        "reference = the straightforward path, for the speed-up)")
    p.add_argument("--muscles", default="GM", help="muscles benchmarked one at a time (default GM)")
    p.add_argument("--all-muscles", action="store_true", help="also propagate GM, GL and SOL together in one batch")
    p.add_argument("--model", default=None, help="IFSS-Net checkpoint (default: shipped; untrained if none)")
    p.add_argument("--seed", type=int, default=0, help="phantom subject (default 0)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice). On a loaded machine 1 thread avoids "
                        "OpenMP threads waiting for each other (see docs/performance.md)")
    p.add_argument("--profile", type=Path, default=None, metavar="OUT.txt",
                   help="instead of the benchmark: torch.profiler top ops of one IFSS-Net run (first preset of "
                        "--presets, default fast), written here")
    p.add_argument("--json", type=Path, default=None, dest="json_out", help="write the result as JSON here (replaced if it exists)")
    p.add_argument("--md", type=Path, default=None, help="write the markdown table here (replaced if it exists)")


def cli(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(int(args.threads))
    from .io import check_output_files
    from .progress import TqdmProgress

    # before the minutes of benchmark: a folder or write-protected file, the --model file, two options on one file
    check_output_files([("--profile", args.profile)] if args.profile else
                       [("--json", args.json_out), ("--md", args.md)],
                       inputs=[args.model] if args.model else (), make_folders=True)
    if args.profile:
        preset = args.presets.split(",")[0] if args.presets else "fast"
        text = profile_propagation(args.size, args.device, args.model, preset, args.muscles.split(",")[0].upper(),
                                   args.seed, args.shape)
        _write_text(args.profile, text)
        print(text)
        return 0
    bar = TqdmProgress()
    try:
        result = run_bench(args.size, args.device, args.methods.split(","), args.model,
                           args.presets.split(",") if args.presets else None, args.muscles.split(","),
                           args.all_muscles, args.seed, args.shape, progress=bar)
    finally:
        bar.close()
    text = format_markdown(result)
    _write_texts([(args.json_out, json.dumps(result, indent=2, sort_keys=True)), (args.md, text)])
    print(text)
    return 0


def _write_texts(items) -> None:
    """Write ``[(path or None, text)]`` together (:func:`ifssnet.io.write_together`), making the folders: Ctrl-C
    or a failure before all are written leaves every one as it was."""
    from .io import make_folders, write_together

    items = [(Path(path), text) for path, text in items if path]
    for path, _ in items:
        make_folders(path.parent)
    write_together([(path, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8")) for path, text in items])


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the ``ifssnet`` command line."""
    p = sub.add_parser("bench", help="time and memory of IFSS-Net presets vs FBS, GFS and WS in one run",
                       description=(__doc__ or "").split("\n\n")[0])
    add_arguments(p)
    p.set_defaults(func=cli)
