"""Image formation of the phantom: convolution speckle, envelope, attenuation, log compression.

Per slice (B-mode is formed per scan plane), the scatterer field is

    s = A(tissue) * n * [u < density] * shadow  +  perimysium dots/streaks (muscle only)

with ``n`` a white Gaussian field that is smoothly blended between key fields a few slices apart
(elevational beam width: neighbouring slices share speckle). ``s`` is convolved with an analytic
PSF (a Gaussian envelope times exp(2 pi i f0 y) along depth, a Gaussian laterally), done as one
product in the 2-D FFT domain, so ``|s * h|`` is already the envelope. Coherent (specular) reflectors
are added to the envelope with their angle-of-incidence weighting. Then depth attenuation with an
imperfect time-gain compensation, the sweep's gain, electronic noise, and log compression to uint8.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

from .phantom_anatomy import FOV_MM, Subject, slice_anatomy

DR_DB = 42.0           # displayed dynamic range
FLOOR_DB = -20.0       # envelope level shown as black (dB re 1)
PSF_AXIAL_MM = 0.26    # Gaussian sigma of the pulse envelope along depth
PSF_LATERAL_MM = 0.55  # Gaussian sigma of the beam laterally
CARRIER_MM = 0.6       # apparent carrier wavelength after demodulation (clamped to >= 3 px)


@dataclass
class Schedule:
    """Freehand acquisition along the sweep: per-slice artefact parameters (arrays of length K)."""

    sweep: np.ndarray      # int: which of the compounded sweeps a slice belongs to
    seams: Tuple[int, ...]
    dx: np.ndarray         # in-plane misalignment, nominal mm
    dy: np.ndarray
    gain_db: np.ndarray
    blur: np.ndarray       # PSF widening factor (>= 1)
    tgc: np.ndarray        # residual attenuation after TGC, dB/mm
    contrast: np.ndarray   # boundary visibility (1 = normal, ~0.15 = nearly gone)
    clip_mm: np.ndarray    # lateral edge of the sweep's coverage, nominal mm (FOV = none)
    clip_side: np.ndarray  # +1: lateral side clipped, -1: medial side


def make_schedule(seed: int, K: int, difficulty: float = 1.0) -> Schedule:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EE9]))
    k = np.arange(K)
    n_sweeps = int(rng.integers(4, 7))
    rng.uniform(0.1, 0.9, n_sweeps - 1)  # unused draw, kept so that published seeds stay the same
    # seams spread along the sweep, kept apart
    cuts = np.linspace(0, 1, n_sweeps + 1)[1:-1] + rng.uniform(-0.35, 0.35, n_sweeps - 1) / n_sweeps
    seams = tuple(int(c * K) for c in cuts)
    sweep = np.searchsorted(np.asarray(seams), k, side="right")
    # per-sweep misalignment: consecutive sweeps differ by 0.5-2 mm
    off = np.zeros((n_sweeps, 2))
    for s in range(1, n_sweeps):
        ang = rng.uniform(0, 2 * np.pi)
        step = rng.uniform(0.5, 2.0) * difficulty
        off[s] = off[s - 1] + step * np.array([np.cos(ang), 0.6 * np.sin(ang)])
    off -= off.mean(0)
    micro = lambda: (np.convolve(rng.normal(0, 1, K + 40), np.hanning(41) / np.hanning(41).sum(), "same")[20:K + 20] * 0.8
                     + rng.normal(0, 0.04, K))
    dx = off[sweep, 0] + micro() * 0.25
    dy = off[sweep, 1] + micro() * 0.12
    gain = rng.normal(0, 1.6, n_sweeps)[sweep]
    blur = rng.uniform(1.0, 1.5, n_sweeps)[sweep]
    tgc = rng.uniform(0.06, 0.16, n_sweeps)[sweep]
    # seams: a short band of extra blur where two sweeps overlap
    for s in seams:
        w = max(2, K // 150)
        lo, hi = max(0, s - w), min(K, s + w)
        blur[lo:hi] *= 1.3
    # poor-contrast stretches
    contrast = np.ones(K)
    for _ in range(int(rng.integers(2, 4))):
        c = rng.uniform(0.1, 0.9) * K
        L = rng.uniform(0.03, 0.07) * K
        depth = rng.uniform(0.8, 0.92)
        contrast *= 1 - depth * np.exp(-0.5 * ((k - c) / (L / 2)) ** 2)
    # one sweep whose lateral (or medial) edge clips the field of view
    clip_mm = np.full(K, FOV_MM * 2)
    side = np.ones(K)
    if n_sweeps >= 3:
        s = int(rng.integers(0, min(n_sweeps, 3)))  # among the first sweeps, where GM/GL live
        sel = sweep == s
        clip_mm[sel] = FOV_MM - rng.uniform(12, 24)
        side[sel] = 1 if rng.uniform() < 0.6 else -1
    return Schedule(sweep, seams, dx, dy, gain, blur, tgc, contrast, clip_mm, side)


def _key_field(seed: int, stream: int, q: int, shape, kind: str) -> np.ndarray:
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), stream, int(q)]))
    if kind == "normal":
        return rng.standard_normal(shape, dtype=np.float32)
    if kind == "uniform":
        return rng.random(shape, dtype=np.float32)
    # perimysium: sparse bright dots, some stretched into short streaks
    from scipy.ndimage import uniform_filter1d

    J, I = shape
    f = np.zeros(shape, np.float32)
    px_mm2 = (FOV_MM / I) ** 2
    n = int(0.07 * px_mm2 * J * I)
    jj, ii = rng.integers(0, J, n), rng.integers(0, I, n)
    f[jj, ii] = rng.uniform(10.0, 22.0, n).astype(np.float32) * rng.choice([-1, 1], n)
    streak = np.zeros(shape, np.float32)
    m = (2 * n) // 3
    streak[jj[:m], ii[:m]] = f[jj[:m], ii[:m]]
    f[jj[:m], ii[:m]] = 0
    L = max(2, int(round(3.0 / (FOV_MM / I))))
    streak = uniform_filter1d(streak, L, axis=1) * np.sqrt(L)
    return f + streak


class _Keys:
    """Smoothly blended random fields along the sweep (keys every ``m`` slices)."""

    def __init__(self, seed: int, stream: int, m: int, shape, kind: str):
        self.seed, self.stream, self.m, self.shape, self.kind = seed, stream, max(1, m), shape, kind
        self.cache: Dict[int, np.ndarray] = {}

    def get(self, q: int) -> np.ndarray:
        if q not in self.cache:
            if len(self.cache) > 4:
                self.cache.pop(min(self.cache))
            self.cache[q] = _key_field(self.seed, self.stream, q, self.shape, self.kind)
        return self.cache[q]

    def at(self, k: int) -> np.ndarray:
        q, r = divmod(k, self.m)
        if r == 0:
            return self.get(q)
        w = 0.5 * np.pi * r / self.m
        return np.cos(w) * self.get(q) + np.sin(w) * self.get(q + 1)


class Renderer:
    """Renders slices of one subject; keeps the blended random fields between calls."""

    def __init__(self, sub: Subject, sched: Schedule, seed: int, J: int, I: int):
        self.sub, self.sched, self.J, self.I = sub, sched, J, I
        self.mm = FOV_MM / I
        m_speckle = int(round(0.8 / self.mm))
        m_perim = int(round(2.5 / self.mm))
        self.noise = _Keys(seed, 1, m_speckle, (J, I), "normal")
        self.unif = _Keys(seed, 2, m_speckle, (J, I), "uniform")
        self.noise2 = _Keys(seed, 5, m_speckle, (J, I), "normal")
        self.perim = _Keys(seed, 3, m_perim, (J, I), "perim")
        self.enoise = np.random.default_rng(np.random.SeedSequence([int(seed), 4]))
        self._H: Dict[float, np.ndarray] = {}
        self.depth_mm = (np.arange(J) + 0.5) * self.mm
        self.x_mm = (np.arange(I) + 0.5) * self.mm

    def transfer(self, blur: float) -> np.ndarray:
        key = round(float(blur), 2)
        if key not in self._H:
            J, I, mm = self.J, self.I, self.mm
            sy = max(PSF_AXIAL_MM * blur ** 0.5 / mm, 0.6)
            sx = max(PSF_LATERAL_MM * blur / mm, 0.8)
            f0 = min(mm / CARRIER_MM, 1 / 3)
            fy = np.fft.fftfreq(J)[:, None]
            fx = np.fft.fftfreq(I)[None, :]
            H = np.exp(-0.5 * ((fy - f0) * 2 * np.pi * sy) ** 2) * np.exp(-0.5 * (fx * 2 * np.pi * sx) ** 2)
            H *= np.sqrt(J * I / np.sum(H ** 2))  # unit output power for unit white input
            self._H[key] = H.astype(np.complex64)
        return self._H[key]

    def render(self, ks: List[int]) -> Tuple[np.ndarray, np.ndarray]:
        """Slices ``ks`` -> (uint8 image (n, J, I), uint8 labels (n, J, I): 0, 1 GM, 2 GL, 3 SOL)."""
        import scipy.fft as sfft

        sc, J, I = self.sched, self.J, self.I
        n = len(ks)
        scat = np.empty((n, J, I), np.float32)
        coh = np.empty((n, J, I), np.float32)
        labels = np.empty((n, J, I), np.uint8)
        for a, k in enumerate(ks):
            an = slice_anatomy(self.sub, k, J, I, (sc.dx[k], sc.dy[k]), float(sc.contrast[k]))
            field = self.noise.at(k)
            sparse = an.density < 1
            if sparse.any():
                field = np.where(sparse & (self.unif.at(k) > an.density), field * 0.15, field)
            s = an.tissue * field
            s += (0.22 * an.muscle) * self.perim.at(k)
            s += an.specular * 0.7 * self.noise2.at(k)  # speckled part of the reflectors
            scat[a] = s * an.shadow
            coh[a] = an.specular * an.shadow
            labels[a] = an.labels
        spec = sfft.fft2(scat, axes=(1, 2), workers=2)
        env = np.empty((n, J, I), np.float32)
        for a, k in enumerate(ks):
            env[a] = np.abs(sfft.ifft2(spec[a] * self.transfer(float(sc.blur[k])), workers=2))
        del spec, scat
        env += 0.6 * coh
        # attenuation after imperfect TGC, sweep gain, electronic noise
        for a, k in enumerate(ks):
            loss_db = -sc.tgc[k] * self.depth_mm - 0.25 * np.clip(self.depth_mm - 70, 0, None) \
                + 1.2 * np.sin(2 * np.pi * self.depth_mm / 45.0 + 0.3 * sc.sweep[k]) + sc.gain_db[k]
            env[a] *= (10 ** (loss_db / 20)).astype(np.float32)[:, None]
        env += 0.012 * np.abs(self.enoise.standard_normal(env.shape, dtype=np.float32))
        img = (20 * np.log10(env + 1e-6) - FLOOR_DB) * (255.0 / DR_DB)
        img = np.clip(img, 0, 255).astype(np.uint8)
        # the sweep's coverage edge: no data beyond it, and the reference cannot show it either
        for a, k in enumerate(ks):
            if sc.clip_mm[k] < FOV_MM:
                if sc.clip_side[k] > 0:
                    cut = self.x_mm > sc.clip_mm[k]
                else:
                    cut = self.x_mm < FOV_MM - sc.clip_mm[k]
                img[a][:, cut] = 0
                labels[a][:, cut] = 0
        return img, labels
