"""The training diagnostics in benchmarks/: the image probe tells a network that reads the image from one
that carries its mask forward."""
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import torch

from ifssnet.dataset import Run


def _load_diagnostic():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mask_copy_diagnostic.py"
    spec = importlib.util.spec_from_file_location("mask_copy_diagnostic", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _runs(n=3, L=12, S=16):
    """Runs where the muscle (bright square) shrinks to nothing at slice 8; the reference follows it."""
    runs = []
    for i in range(n):
        img = np.zeros((L, S, S), np.float32)
        msk = np.zeros((L, S, S), np.float32)
        for k in range(L):
            h = max(0, 6 - k // 2) if k < 8 else 0
            msk[k, 4:4 + h, 4 + i:4 + i + h] = 1
        img[msk > 0] = 3.0
        runs.append(Run(img, msk, np.ones(L, bool), "A"))
    return runs


def _logits(p):
    p = p.clamp(1e-4, 1 - 1e-4)
    return torch.stack([torch.log(1 - p), torch.log(p)], dim=1)[:, :, 0]   # (B, 2, w, S, S)


def copier(img, prev, state=None):
    return _logits(prev), state                  # carries its mask input forward, ignores the image


def reader(img, prev, state=None):
    return _logits((img > 1.5).float()), state   # reads the image only


def test_image_probe_separates_a_copier_from_a_network_that_reads_the_image():
    diag = _load_diagnostic()
    runs = _runs()
    for model, reads in ((copier, False), (reader, True)):
        leak, dice, _ = diag.run_model(model, runs, show=0)
        wrong = [diag.run_model(model, [dataclasses.replace(r, image=f(r.image)) for r in runs], show=0)
                 for f in diag.PROBES.values()]
        if reads:
            assert dice > 0.95 and leak == 0
            assert all(d < dice - 0.3 for _, d, _ in wrong)          # a wrong image costs it the muscle
        else:
            assert leak > 0
            assert all(d == dice and lk == leak for lk, d, _ in wrong)   # the copier cannot tell
