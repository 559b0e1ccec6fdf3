"""A network whose weights lie between two IFSS-Net model files: ``(1 - t) A + t B``, tensor by tensor.

    python benchmarks/weight_interpolation.py A.pt B.pt T --out OUT.pt

A and B must share the configuration (a fine-tune and its base do). Floating-point tensors are
interpolated; integer buffers (GroupNorm has none, but counters would be) are taken from A. OUT is an
ordinary model file (``ifssnet propagate --model OUT.pt``, ``ifssnet compare-set ... --model OUT.pt``);
its metadata names both parents and t. A probe for the model card ("Missed voxels cost more"): the candidate stops at a muscle's end but shrinks every mask, the shipped weights keep the
size but GM runs on; weights between two points of one run can keep something of each. Not a product
feature: the shipped file is chosen on validation, as any other.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ifssnet.model.checkpoint import load_checkpoint, save_checkpoint


def interpolate(a_path, b_path, t: float):
    """``(net, config, meta)``: A's network with weights ``(1 - t) A + t B``; ValueError for t outside [0, 1] or
    two files of different configurations."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"t must lie in [0, 1], not {t}")
    net, config, _ = load_checkpoint(a_path)
    other, other_config, _ = load_checkpoint(b_path)
    if config.to_json() != other_config.to_json():
        raise ValueError(f"{a_path} and {b_path} have different configurations; only one network's weights can be mixed")
    theirs = other.state_dict()
    mixed = {k: torch.lerp(v, theirs[k].to(v.dtype), t) if v.is_floating_point() else v
             for k, v in net.state_dict().items()}
    net.load_state_dict(mixed)
    meta = {"command": " ".join(["python", "benchmarks/weight_interpolation.py", str(a_path), str(b_path), str(t)]),
            "data": f"weights (1 - {t}) x {Path(a_path).name} + {t} x {Path(b_path).name}"}
    return net, config, meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("t", type=float, help="0 gives A, 1 gives B")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    net, config, meta = interpolate(args.a, args.b, args.t)
    save_checkpoint(args.out, net, config, meta)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
