"""Review of session 40 (network, CLI, phantom, progress): the bugs it found, each pinned by a test.

Small phantoms and tiny networks only; the file runs in seconds on 2 cores.
"""
from __future__ import annotations

import pytest

from cli_output import error_line, run_cli  # noqa: E402  (Testing/ is on sys.path: conftest)


# ----------------------------------------------------------------------------------- CLI: phantom
@pytest.mark.parametrize("spacing", ["0", "-0.5"])
def test_phantom_refuses_a_spacing_that_is_not_positive(tmp_path, capsys, spacing):
    """``--spacing 0`` was falsy, so it was dropped and the default spacing written without a word."""
    code, _, err = run_cli(capsys, "phantom", tmp_path / "out", "--shape", 20, 32, 32, "--spacing", spacing)
    assert code == 2
    assert "is not a positive number of mm" in error_line(err)
    assert not (tmp_path / "out" / "volume.nrrd").exists()
