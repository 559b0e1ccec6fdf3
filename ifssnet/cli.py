"""The ``ifssnet`` command line: ``demo | phantom | seeds | evaluate | propagate | train | compare | compare-set | bench``.

Each sub-command lives with the code it drives; this file only wires them. Errors of the core
(:mod:`ifssnet.errors`) become one line on stderr and the error's exit code; ``--debug`` shows the
traceback. Ctrl-C cancels cleanly (exit 130) and leaves no partial output file.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import List, Optional

from . import __version__
from .errors import Cancelled, IFSSNetError

# (module, function that adds the sub-parsers). Modules are imported only when the CLI starts, and
# a module whose optional parts are missing still lets the others work.
_COMMAND_PROVIDERS = [
    ("ifssnet.cli_data", "add_commands"),      # phantom, seeds, evaluate
    ("ifssnet.demo", "add_commands"),          # demo
    ("ifssnet.propagate_cli", "add_commands"),  # propagate
    ("ifssnet.train", "add_commands"),         # train
    ("ifssnet.compare", "add_commands"),       # compare, compare-set
    ("ifssnet.bench", "add_commands"),         # bench
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ifssnet",
        description="IFSS-Net: propagate a muscle painted on a few slices through a 3-D ultrasound sweep.")
    parser.add_argument("--version", action="version", version=f"ifssnet {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, fn_name in _COMMAND_PROVIDERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("ifssnet"):
                continue  # that part of the package is not built yet
            raise
        getattr(module, fn_name)(sub)
    return parser


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=float))


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
        return int(result or 0)
    except KeyboardInterrupt:
        err = Cancelled("Interrupted (Ctrl-C).", "Nothing was written.")
        print(f"ifssnet: {err}", file=sys.stderr)
        return err.exit_code
    except IFSSNetError as err:
        if args.debug:
            raise
        print(f"ifssnet: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
