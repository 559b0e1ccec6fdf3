"""The Slicer extension's packaging, checked without Slicer (the real build is Slicer's).

- every file the CMake lists exists, and every module file is listed (so it gets installed);
- IFSSNet.json (Extension Index entry) agrees with the top-level CMakeLists.txt;
- the module files compile; the Logic files import no qt/ctk/ScriptedLoadableModule and no torch at
  module level; the core (ifssnet/) imports no slicer, qt, vtk or ctk anywhere.
"""
from __future__ import annotations

import ast
import json
import py_compile
import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = ("IFSSNetSegmentation", "IFSSNetTraining", "IFSSNetComparison")
GUI_PACKAGES = {"qt", "ctk", "slicer.ScriptedLoadableModule", "SegmentEditorEffects"}
CORE_FORBIDDEN = {"slicer", "qt", "vtk", "ctk", "vtkmodules", "slicer_core", "SegmentEditorEffects"}


def _cmake_commands(text: str, command: str) -> list:
    """The argument lists of every ``command(...)`` call: quoted arguments keep spaces, ``#`` comments skipped."""
    calls = []
    for m in re.finditer(r"(?m)^\s*" + re.escape(command) + r"\s*\(", text):
        args, i, depth, current, quoted = [], m.end(), 1, "", False
        while i < len(text):
            c = text[i]
            if quoted:
                if c == "\\":
                    current += text[i:i + 2]
                    i += 2
                    continue
                if c == '"':
                    quoted = False
                    args.append(current)
                    current = None
                else:
                    current += c
            elif c == '"':
                quoted, current = True, ""
            elif c == "#":
                i = text.index("\n", i)
                continue
            elif c in " \t\n" or c == ")" and depth == 1:
                if current:
                    args.append(current)
                current = ""
                if c == ")":
                    break
            else:
                depth += c == "("
                depth -= c == ")"
                current = (current or "") + c
            i += 1
            if current is None:
                current = ""
        calls.append(args)
    return calls


def _cmake_sets(text: str) -> dict:
    """``set(NAME value ...)`` -> {NAME: value (one argument) or list (several)}."""
    out = {}
    for args in _cmake_commands(text, "set"):
        if args:
            out[args[0]] = args[1] if len(args) == 2 and '"' + args[1] + '"' in text else args[1:]
    return out


def _top_cmake() -> tuple:
    text = (ROOT / "CMakeLists.txt").read_text()
    return text, _cmake_sets(text)


def _module_cmake(module: str) -> tuple:
    text = (ROOT / module / "CMakeLists.txt").read_text()
    sets = _cmake_sets(text)
    name = sets["MODULE_NAME"][0]

    def expand(items):
        return [i.replace("${MODULE_NAME}", name) for i in items]

    return text, name, expand(sets.get("MODULE_PYTHON_SCRIPTS", [])), expand(sets.get("MODULE_PYTHON_RESOURCES", []))


def _imports(path: Path, top_level_only: bool = False) -> list:
    """Imported module names in a file (all, or only the module-level ones)."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # include imports inside module-level try/if blocks
        extra = []
        for node in tree.body:
            if isinstance(node, (ast.Try, ast.If)):
                extra += [n for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
        nodes = list(nodes) + extra
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


def _matches(name: str, packages) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


# --------------------------------------------------------------------------------------------------
# CMake


def test_top_cmake_has_the_extension_fields_and_modules():
    text, sets = _top_cmake()
    for field in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                  "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS"):
        assert field in sets, f"{field} missing from CMakeLists.txt"
    assert sets["EXTENSION_CATEGORY"] == "Segmentation"
    assert sets["EXTENSION_DEPENDS"] == "PyTorch"
    assert "find_package(Slicer REQUIRED)" in text and "include(${Slicer_USE_FILE})" in text
    assert [a[0] for a in _cmake_commands(text, "add_subdirectory")] == list(MODULES)
    assert "include(${Slicer_EXTENSION_CPACK})" in text


def test_top_cmake_installs_the_core_and_the_models():
    text, _ = _top_cmake()
    assert "ifssnet/*.py" in text and "ifssnet/py.typed" in text and "Resources/Models/" in text
    assert "${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}" in text
    assert list((ROOT / "ifssnet").rglob("*.py")), "the core glob matches nothing"
    assert (ROOT / "ifssnet" / "py.typed").is_file()
    assert (ROOT / "Resources" / "Models").is_dir()


@pytest.mark.parametrize("module", MODULES)
def test_module_cmake_lists_existing_files_and_all_of_them(module):
    text, name, scripts, resources = _module_cmake(module)
    assert name == module
    assert scripts and resources
    for rel in scripts + resources:
        assert (ROOT / module / rel).is_file(), f"{module}/CMakeLists.txt lists {rel}, which does not exist"
    listed = {(ROOT / module / rel).resolve() for rel in scripts + resources}
    on_disk = {p.resolve() for p in (ROOT / module).rglob("*.py") if "__pycache__" not in p.parts}
    on_disk |= {p.resolve() for p in (ROOT / module / "Resources").rglob("*") if p.is_file()}
    missing = sorted(str(p.relative_to(ROOT)) for p in on_disk - listed)
    assert not missing, f"not listed in {module}/CMakeLists.txt, so not installed: {missing}"
    assert f"Resources/Icons/{module}.png" in resources, "Slicer finds a module's icon by the module's name"
    assert "slicerMacroBuildScriptedModule(" in text and "WITH_GENERIC_TESTS" in text
    assert "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py)" in text


def _png_size(path: Path) -> tuple:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_icons():
    assert _png_size(ROOT / "Resources" / "Icons" / "IFSSNet.png") == (128, 128)
    for module in MODULES:
        w, h = _png_size(ROOT / module / "Resources" / "Icons" / f"{module}.png")
        assert w == h and w >= 64


# --------------------------------------------------------------------------------------------------
# Extension Index entry


def _repo_of(url: str) -> str:
    m = re.match(r"https://(?:github\.com|raw\.githubusercontent\.com)/([^/#]+/[^/#.]+)", url)
    assert m, url
    return m.group(1).lower()


def test_extension_index_json_matches_cmake():
    entry = json.loads((ROOT / "IFSSNet.json").read_text())
    _, sets = _top_cmake()
    assert entry["category"] == sets["EXTENSION_CATEGORY"]
    assert entry["build_dependencies"] == sets["EXTENSION_DEPENDS"].split(";")
    assert entry["build_subdirectory"] == "."
    assert entry["scm_url"].endswith(".git")
    assert _repo_of(entry["scm_url"]) == _repo_of(sets["EXTENSION_HOMEPAGE"]) == _repo_of(sets["EXTENSION_ICONURL"])
    assert "slicer-extension-catalog-entry-schema" in entry["$schema"]
    assert entry["tier"] in (1, 3, 5)


def test_urls_into_this_repository_point_at_existing_files():
    _, sets = _top_cmake()
    urls = [sets["EXTENSION_ICONURL"]] + [u for u in sets["EXTENSION_SCREENSHOTURLS"].split() if u]
    for url in urls:
        m = re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[^/]+/(.+)", url)
        assert m, f"{url} is not a raw GitHub URL into the repository"
        assert (ROOT / m.group(1)).is_file(), f"{url} points at {m.group(1)}, which does not exist"


# --------------------------------------------------------------------------------------------------
# Python files


def _module_python_files():
    return sorted(p for m in MODULES for p in (ROOT / m).rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", _module_python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_files_compile(path, tmp_path):
    py_compile.compile(str(path), cfile=str(tmp_path / "out.pyc"), doraise=True)


@pytest.mark.parametrize("module", MODULES)
def test_logic_is_headless(module):
    path = ROOT / module / f"{module}Lib" / "logic.py"
    names = _imports(path)
    bad = [n for n in names if _matches(n, GUI_PACKAGES)]
    assert not bad, f"{path.relative_to(ROOT)} imports GUI code: {bad}"
    top = _imports(path, top_level_only=True)
    lazy = [n for n in top if _matches(n, {"torch", "ifssnet.model", "ifssnet.propagate", "ifssnet.train"})]
    assert not lazy, f"{path.relative_to(ROOT)} imports {lazy} at module level; import it inside the function"


@pytest.mark.parametrize("path", _module_python_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_slicer_start_up_does_not_import_torch(path):
    top = _imports(path, top_level_only=True)
    assert not [n for n in top if _matches(n, {"torch", "ifssnet.model"})]


def test_core_imports_no_slicer_qt_vtk_ctk():
    offenders = []
    for path in sorted((ROOT / "ifssnet").rglob("*.py")):
        bad = [n for n in _imports(path) if _matches(n, CORE_FORBIDDEN)]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)}: {bad}")
    assert not offenders, "the core must not import Slicer, Qt, VTK or CTK:\n" + "\n".join(offenders)


@pytest.mark.parametrize("module", MODULES)
def test_module_file_follows_the_scripted_module_template(module):
    tree = ast.parse((ROOT / module / f"{module}.py").read_text())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for suffix, base in (("", "ScriptedLoadableModule"), ("Widget", "ScriptedLoadableModuleWidget"),
                         ("Logic", "ScriptedLoadableModuleLogic"), ("Test", "ScriptedLoadableModuleTest")):
        cls = classes.get(module + suffix)
        assert cls is not None, f"{module}.py lacks class {module + suffix}"
        assert base in [getattr(b, "id", getattr(b, "attr", "")) for b in cls.bases]
    wrappers = [n for n in tree.body if isinstance(n, ast.ClassDef)
                and any(getattr(d, "id", "") == "parameterNodeWrapper" for d in n.decorator_list)]
    assert wrappers, f"{module}.py has no @parameterNodeWrapper parameter node"


def test_effect_is_registered_the_extra_effects_way():
    effect = ast.parse((ROOT / "IFSSNetSegmentation" / "IFSSNetSegmentationLib" / "SegmentEditorEffect.py").read_text())
    classes = {n.name: n for n in effect.body if isinstance(n, ast.ClassDef)}
    assert "SegmentEditorEffect" in classes
    methods = {n.name for n in classes["SegmentEditorEffect"].body if isinstance(n, ast.FunctionDef)}
    assert {"clone", "icon", "helpText", "setupOptionsFrame"} <= methods
    module = (ROOT / "IFSSNetSegmentation" / "IFSSNetSegmentation.py").read_text()
    assert 'slicer.app.connect("startupCompleted()", registerEditorEffect)' in module
    assert "setPythonSource" in module and '"IFSSNetSegmentationLib", "SegmentEditorEffect.py"' in module
    # setPythonSource takes the class name from the file name ("effect.py" looked for class "effectEffect") and
    # looks it up on the already imported package IFSSNetSegmentationLib, so the class is exported there.
    assert "IFSSNetSegmentationLib.SegmentEditorEffect = SegmentEditorEffect" in module
