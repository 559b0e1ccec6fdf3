"""Propagation benchmark: IFSS-Net presets vs Fill between slices, Grow from seeds and Watershed in ONE run.

The same entry point as ``ifssnet bench`` (see :mod:`ifssnet.bench` for what is measured and how):

    python benchmarks/bench_propagation.py --size small --json bench.json --md bench.md
    python benchmarks/bench_propagation.py --size full --threads 2 --all-muscles     # by hand, ~1 h on 2 cores
"""
from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    from ifssnet.bench import add_arguments, cli

    parser = argparse.ArgumentParser(prog="bench_propagation", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
