"""Every script in benchmarks/ against today's core: the ifssnet names it imports exist, and --help answers.

The scripts are not run by the suite (most of them take minutes), so a renamed function or module in
``ifssnet/`` would only show when someone runs the script. The check reads each script's source (imports
inside functions too) and resolves every ``from ifssnet... import NAME``, every ``import ifssnet...`` and every
``module.attr`` taken from such a module.
"""
import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))


def _unresolved(path: Path) -> list:
    tree = ast.parse(path.read_text(), str(path))
    missing, modules = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "ifssnet":
            mod = importlib.import_module(node.module)
            for a in node.names:
                if hasattr(mod, a.name):
                    obj = getattr(mod, a.name)
                    if isinstance(obj, type(sys)):
                        modules[a.asname or a.name] = obj
                    continue
                try:
                    modules[a.asname or a.name] = importlib.import_module(f"{node.module}.{a.name}")
                except ImportError:
                    missing.append(f"{path.name}:{node.lineno}: from {node.module} import {a.name}")
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "ifssnet":
                    mod = importlib.import_module(a.name)
                    if a.asname:
                        modules[a.asname] = mod
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules
                and not hasattr(modules[node.value.id], node.attr)):
            missing.append(f"{path.name}:{node.lineno}: {node.value.id}.{node.attr}")
    return missing


def test_there_are_scripts():
    assert len(SCRIPTS) > 20


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_imports_resolve(path):
    assert _unresolved(path) == []


@pytest.mark.parametrize("name", ["output_threshold_probe", "output_smoothing_probe"])
def test_probe_scripts_answer_help_and_missing_arguments(name):
    """These two take their numbers from sys.argv (the rest goes to compare-set): --help printed a
    ValueError traceback ("could not convert string to float: '--help'"), and so did no arguments (IndexError)."""
    script = str(BENCHMARKS / f"{name}.py")
    r = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout.lower() and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "usage" in r.stderr.lower() and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, script, "x", "0.5", "case"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr
