"""Review 40 (training): resume, TBPTT and checkpoint bookkeeping bugs, each found and fixed with a test."""
import numpy as np
import pytest
import torch

from ifssnet.errors import Cancelled
from ifssnet.model import IFSSNetConfig
from ifssnet.model.checkpoint import load_checkpoint
from ifssnet.progress import CancelToken
from ifssnet.train import TrainConfig, train
from ifssnet.validation import ValidationScore

from test_train import TINY, _case, one_thread  # noqa: F401 (a fixture)


class _Scripted:
    """A validator that records the steps it is called at and scores them step / 100."""

    def __init__(self):
        self.steps = []

    def __call__(self, model, step, rank=0, world=1, cancel=None):
        self.steps.append(step)
        return ValidationScore(step, step / 100, 10.0, 0.0, {"A": step / 100})


def test_resume_keeps_the_validation_schedule_of_the_run_it_continues(tmp_path, one_thread):
    """A run validated every step and checkpointed every 2 steps, killed during step 4, resumed without
    repeating --val-every: it validates at step 3 and 4 as the uninterrupted run does (before the fix the
    resumed run fell back to --checkpoint-every and validated at step 4 only)."""
    cfg = TrainConfig(epochs=1, steps_per_epoch=4, run_length=8, checkpoint_every=2, lr=1e-3)
    whole = _Scripted()
    train([_case(0)], tmp_path / "w.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, validator=whole, val_every=1)
    assert whole.steps == [1, 2, 3, 4]
    token = CancelToken()
    first = _Scripted()
    with pytest.raises(Cancelled):
        train([_case(0)], tmp_path / "r.pt", model_config=IFSSNetConfig(**TINY), cfg=cfg, validator=first,
              val_every=1, progress=lambda stage, done, total: done == 3 and token.cancel(), cancel=token)
    assert first.steps == [1, 2, 3]
    second = _Scripted()
    train([_case(0)], tmp_path / "r.pt", resume=tmp_path / "r.ckpt.pt", validator=second)
    assert second.steps == [3, 4]
    history = load_checkpoint(tmp_path / "r.pt")[2]["training"]["validation"]["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4]
