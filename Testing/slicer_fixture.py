"""A headless Slicer "application" on slicer-core, for tests of the modules' Logic classes.

``slicer.util`` and the scripted modules expect what Slicer's application sets up at start-up:
``slicer.mrmlScene``, ``slicer.app.applicationLogic()``, and ``slicer.modules.<name>.logic()`` for
the core modules. :func:`install` builds that from slicer-core's *real* logic classes, the way
``qSlicerCoreApplication`` and each module's ``setup()`` do: one scene, one
``vtkSlicerApplicationLogic``, and module logics that know the application logic and the scene and
are registered under their module names (so C++ code that calls ``GetModuleLogic("Colors")`` finds
them). Nothing here is a mock of MRML; only the Qt application object is a small stand-in.

Use it from a test module::

    from slicer_fixture import slicer_app, slicer_scene  # noqa: F401  (pytest fixtures)

``slicer_app`` is session-wide (start-up costs about a second); ``slicer_scene`` gives each test a
cleared scene, as File > Close Scene does.
"""
from __future__ import annotations

import types

import pytest

# Module name -> (logic class name in slicer-core, name the application logic registers it under).
_MODULE_LOGICS = {
    "colors": ("vtkSlicerColorLogic", "Colors"),
    "volumes": ("vtkSlicerVolumesLogic", "Volumes"),
    "segmentations": ("vtkSlicerSegmentationsModuleLogic", "Segmentations"),
    "tables": ("vtkSlicerTablesLogic", "Tables"),
    "plots": ("vtkSlicerPlotsLogic", "Plots"),
    "subjecthierarchy": ("vtkSlicerSubjectHierarchyModuleLogic", "SubjectHierarchy"),
}


class _Module:
    """What ``slicer.modules.<name>`` offers to Python code: ``logic()`` and ``name``."""

    def __init__(self, name: str, logic) -> None:
        self.name = name
        self._logic = logic

    def logic(self):
        return self._logic


class _App:
    """The few ``slicer.app`` calls that Logic code makes, without Qt."""

    def __init__(self, scene, app_logic) -> None:
        self._scene = scene
        self._app_logic = app_logic
        self.commandOptions = lambda: types.SimpleNamespace(noMainWindow=True)
        self.testingEnabled = lambda: True

    def mrmlScene(self):
        return self._scene

    def applicationLogic(self):
        return self._app_logic

    def processEvents(self, *args) -> None:  # no event loop headless
        return None


def available() -> bool:
    """True when slicer-core (Slicer's MRML libraries) can be imported."""
    try:
        import slicer  # noqa: F401

        return hasattr(slicer, "vtkMRMLScene") and hasattr(slicer, "vtkSlicerSegmentationsModuleLogic")
    except Exception:  # pragma: no cover - any import failure means "not available"
        return False


def install():
    """Set up ``slicer.mrmlScene``, ``slicer.app`` and ``slicer.modules`` like the application does.

    Returns the ``slicer`` module. Safe to call more than once (returns the same set-up).
    """
    import slicer
    import slicer.util  # noqa: F401  (makes sure slicer.util is the real one)

    if getattr(slicer, "_ifssnet_headless", False):
        return slicer

    scene = slicer.vtkMRMLScene()
    app_logic = slicer.vtkSlicerApplicationLogic()
    app_logic.SetMRMLScene(scene)
    modules = types.SimpleNamespace()
    color_logic = None
    for module_name, (class_name, registered_name) in _MODULE_LOGICS.items():
        cls = getattr(slicer, class_name, None)
        if not isinstance(cls, type):  # e.g. a name shadowed by a module object
            continue
        logic = cls()
        logic.SetMRMLApplicationLogic(app_logic)
        if module_name == "colors":
            color_logic = logic
            app_logic.SetColorLogic(logic)
        app_logic.SetModuleLogic(registered_name, logic)
        logic.SetMRMLScene(scene)  # the colors logic adds the default colour tables here
        setattr(modules, module_name, _Module(registered_name, logic))
    assert color_logic is not None, "slicer-core lacks vtkSlicerColorLogic"

    slicer.mrmlScene = scene
    slicer.app = _App(scene, app_logic)
    slicer.modules = modules
    slicer._ifssnet_headless = True
    return slicer


def clear_scene(slicer) -> None:
    """Remove the user's nodes and keep the default ones, as File > Close Scene does."""
    slicer.mrmlScene.Clear(False)
    # Default colour nodes are singletons that Clear() keeps; nothing else to restore.


@pytest.fixture(scope="session")
def slicer_app():
    """Session-wide headless Slicer; skips the test if slicer-core is not installed."""
    if not available():
        pytest.skip("slicer-core is not installed (pip install slicer-core)")
    return install()


@pytest.fixture()
def slicer_scene(slicer_app):
    """``slicer.mrmlScene``, cleared before and after the test."""
    clear_scene(slicer_app)
    yield slicer_app.mrmlScene
    clear_scene(slicer_app)
