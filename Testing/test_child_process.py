"""ifssnet.baselines.child_process: a module-level function on numpy arrays in a child Python process
(numpy only here, so each child starts in well under a second): its result, its failures, its time limit,
the interpreter it starts, and the ``isolate`` option's values."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from ifssnet.baselines import child_process as CP
from ifssnet.baselines import marker_labels
from ifssnet.errors import Cancelled, DependencyError, IFSSNetError, InputError, ResourceError


def _mask():
    mask = np.zeros((5, 4, 3), np.uint8)
    mask[1, 1:3, 1] = mask[3, 0, :] = 1
    return mask


def test_the_child_returns_the_functions_result():
    out = CP.run_in_child(marker_labels, [_mask()], {"slices": [1, 3]}, what="Markers")
    assert out.dtype == np.uint8 and np.array_equal(out, marker_labels(_mask(), [1, 3]))


def test_a_failing_child_raises_with_its_error_and_no_result():
    with pytest.raises(IFSSNetError, match=r"Markers failed in its worker process \(exit code 1\).*IndexError"):
        CP.run_in_child(marker_labels, [_mask()], {"slices": [9]}, what="Markers")


def test_past_its_time_limit_the_child_is_killed():
    with pytest.raises(ResourceError, match="Markers did not finish within 0 s. Crop it."):
        CP.run_in_child(marker_labels, [_mask()], {"slices": [1]}, what="Markers", timeout_s=0.001,
                        timeout_todo="Crop it.")


def test_a_cancel_set_before_the_child_ends_raises_cancelled():
    with pytest.raises(Cancelled):
        CP.run_in_child(marker_labels, [_mask()], {"slices": [1]}, what="Markers", cancel=lambda: True)


def test_only_a_module_level_function_can_run_in_a_child():
    def local(a):
        return a

    with pytest.raises(TypeError, match="module-level"):
        CP.run_in_child(local, [_mask()], what="Local")


@pytest.mark.skipif(sys.platform == "win32", reason="a shell script stands in for PythonSlicer")
def test_inside_the_slicer_application_the_child_is_pythonslicer(monkeypatch, tmp_path):
    assert CP.python_executable() == sys.executable
    slicer_bin = tmp_path / "bin"
    slicer_bin.mkdir()
    monkeypatch.setattr(sys, "executable", str(slicer_bin / "SlicerApp-real"))  # Slicer's sys.executable
    launcher = tmp_path / "PythonSlicer"
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))  # Slicer puts PythonSlicer's folder on its PATH
    assert CP.python_executable() == str(launcher)
    launcher.rename(slicer_bin / "PythonSlicer")  # or beside Slicer's executable
    assert CP.python_executable() == str(slicer_bin / "PythonSlicer")
    (slicer_bin / "PythonSlicer").unlink()
    with pytest.raises(DependencyError, match="SlicerApp-real is not one.*PythonSlicer"):
        CP.python_executable()


def test_isolate_is_true_false_or_auto_by_input_size():
    assert CP.wants_child(True, 1, 100) and not CP.wants_child(False, 10 ** 9, 100)
    assert not CP.wants_child("auto", 99, 100) and CP.wants_child("auto", 100, 100)
    with pytest.raises(InputError, match=r"isolate='sometimes' of 'gfs'.*gfs.isolate=true"):
        CP.check_isolate("sometimes", "gfs")
