"""Test-wide settings.

ITK's MorphologicalContourInterpolator corrupts the heap intermittently when it runs with several
threads (the process then aborts at exit, after correct results). ``ifssnet.baselines.fbs`` always
runs it single-threaded; the tests that call the raw filter, or Slicer's own vtkITK copy of it for
comparison, get the same protection from ITK's environment variable, which both ITK builds (the
``itk`` wheels and slicer-core's) read when they start.
"""
import os
import sys

os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))  # Testing/ helpers (fake_models, slicer_fixture)

import pytest  # noqa: E402


@pytest.fixture
def child_processes(monkeypatch):
    """The processes :mod:`ifssnet.baselines.child_process` starts during the test, in order (it still starts them)."""
    from ifssnet.baselines import child_process

    started, real_popen = [], child_process.subprocess.Popen

    def recording_popen(*args, **kwargs):
        proc = real_popen(*args, **kwargs)
        started.append(proc)
        return proc

    monkeypatch.setattr(child_process.subprocess, "Popen", recording_popen)
    return started


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A real, untrained, tiny IFSS-Net (size 32, width 0.25) saved as a checkpoint, once per session."""
    torch = pytest.importorskip("torch")
    from ifssnet.model import IFSSNet, IFSSNetConfig, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", IFSSNet(IFSSNetConfig(size=32, width_mult=0.25)))
