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
