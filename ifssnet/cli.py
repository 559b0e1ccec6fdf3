"""The ``ifssnet`` command line: ``demo | phantom | seeds | evaluate | propagate | train | compare | compare-set | bench``.

Each sub-command lives with the code it drives; this file only wires them. Errors of the core
(:mod:`ifssnet.errors`) become one line on stderr and the error's exit code; ``--debug`` shows the
traceback. Ctrl-C cancels cleanly (exit 130) and leaves no partial output file. A full disk (ENOSPC, EDQUOT) is
a resource error (exit 4) wherever it happens. Any other exception is a bug: one line that says so, exit 70 (``EX_SOFTWARE``), and the traceback with ``--debug``.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import json
import shlex
import sys
import traceback
from typing import List, Optional

from . import __version__
from .errors import Cancelled, IFSSNetError, ResourceError, missing_dependency

# (module, function that adds the sub-parsers). Modules are imported only when the CLI starts, and
# a module whose optional parts are missing still lets the others work.
_COMMAND_PROVIDERS = [
    ("ifssnet.cli_data", "add_commands"),      # phantom, seeds, evaluate
    ("ifssnet.demo", "add_commands"),          # demo
    ("ifssnet.propagate_cli", "add_commands"),  # propagate
    ("ifssnet.train_cli", "add_commands"),     # train
    ("ifssnet.compare_cli", "add_commands"),   # compare, compare-set
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
            if missing_dependency(exc) is not None:
                continue  # an optional dependency is missing: the other commands still work
            raise
        getattr(module, fn_name)(sub)
    return parser


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True, default=float))


#: Exit code of an unexpected failure (a bug): EX_SOFTWARE from sysexits.h.
EXIT_INTERNAL = 70
INTERNAL_TODO = "internal error, please report it with the output of the same command run with --debug"


def _fail(err: IFSSNetError, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"ifssnet: {err}", file=sys.stderr)
    return err.exit_code


def main(argv: Optional[List[str]] = None) -> int:
    """Run one sub-command and return the exit code (0 ok, 2 input, 3 model, 4 resources,
    5 dependency, 70 internal error, 130 cancelled). Errors print one line on stderr; ``--debug``
    adds the traceback."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    # What a checkpoint records as its training command: the arguments as given, whichever way in
    # (`ifssnet train ...`, `python -m ifssnet.train ...`, `torchrun -m ifssnet.train ...`).
    args.command_line = "ifssnet " + " ".join(map(shlex.quote, argv))
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    debug = bool(getattr(args, "debug", False))
    try:
        result = args.func(args)
        return int(result or 0)
    except KeyboardInterrupt:
        return _fail(Cancelled("Interrupted (Ctrl-C).", "Nothing was written."), debug)
    except IFSSNetError as err:
        return _fail(err, debug)
    except ImportError as exc:
        err = missing_dependency(exc)
        if err is not None:
            return _fail(err, debug)
        return _internal(exc, debug)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):   # a file written as it goes (train --log), not atomically
            where = f" while writing '{exc.filename}'" if exc.filename else ""
            return _fail(ResourceError(f"The disk is full{where} ({exc.strerror}).",
                                       "Free some disk space, then run the command again."), debug)
        return _internal(exc, debug)
    except MemoryError:
        return _fail(ResourceError("The computer ran out of memory.",
                                   "Close other programs or crop the volume, then try again; nothing was written."),
                     debug)
    except Exception as exc:  # a bug: say so in one line, the traceback is one flag away
        return _internal(exc, debug)


def _internal(exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"ifssnet: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''} "
          f"({INTERNAL_TODO}).", file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
