"""Anatomy of the lower-leg phantom: per-subject control curves and per-slice tissue maps.

Everything is laid out in *nominal* millimetres: the field of view is always 141.8 mm wide
(512 x 0.277 mm) whatever the array shape, so a small test volume shows the whole calf at a coarser
voxel size. Lateral position ``x`` runs medial (x = 0, image left) to lateral (image right);
depth ``y`` runs from the probe (y = 0) downward. The sweep runs knee (k = 0) to ankle (k = K - 1),
``t = k / (K - 1)``.

Two kinds of variation along the sweep are used:

* anatomical, in ``t`` (fractions of the leg): where muscles start and end, how thick they are;
* freehand, in slices (time): wobble of the probe path (drift), twist of the leg under the probe,
  sweep seams, jitter. These have wavelengths of 100-400 slices, so the interpolation problem that
  Fill between slices faces (key slices every 100 slices) is about equally hard at any K.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

import numpy as np

FOV_MM = 512 * 0.277  # nominal field of view width, mm
TIP_MM = 4.0          # minimum thickness of a belly's end
BUMP = 0.0            # peak relative compression of the bellies by probe pressure (difficulty 1); 0: off, see docs
DRIFT_W = 2.0         # freehand drift wobble, mm (difficulty 1)
TWIST_W = 2.5         # freehand twist wobble (deep vs superficial slide), mm (difficulty 1)
# Systematic sources of Fill-between-slices error (docs/phantom.md, "Calibration"):
# lobes of the cross-section outline (fascicle bundles) whose bulges and notches drift sideways along the sweep:
# morphological interpolation between two key shapes with displaced bulges gives nearly their union (overfill);
LOBE_AMP = {"GM": 0.47, "GL": 0.31, "SOL": 0.42}  # relative amplitude of the first lobe (difficulty 1)
# the bellies thin fast past their widest part, then run on as a long thin wedge onto the aponeurosis
# (convex area profile: linear interpolation between key slices overfills):
DISTAL_TAPER = 4.0    # multiplier of the distal taper's exponent
# the gastrocnemius heads arise from the femoral condyles just above the knee crease, so they are small at slice 0
HEAD_GM = (-0.03, -0.01)  # where GM starts, fraction of the sweep (negative: above the crease)
HEAD_GL = (-0.025, -0.005)

# tissue echogenicity (backscatter amplitude) and scatterer density (fraction of voxels)
TISSUES = {
    "gel": (0.02, 1.0),
    "skin": (1.5, 1.0),
    "fat": (0.12, 0.45),
    "GM": (0.22, 1.0),
    "GL": (0.20, 1.0),
    "SOL": (0.25, 1.0),
    "deep": (0.24, 1.0),
    "tendon": (0.9, 1.0),
    "bone": (0.02, 1.0),
}


def smooth_curve(rng: np.random.Generator, t: np.ndarray, amp: float, n_terms: int = 4,
                 decay: float = 1.3) -> np.ndarray:
    """A smooth random function of ``t`` in [0, 1]: a few Fourier terms with decaying amplitudes."""
    out = np.zeros_like(t)
    for n in range(1, n_terms + 1):
        a = rng.normal() / n ** decay
        out += a * np.sin(np.pi * n * t + rng.uniform(0, 2 * np.pi))
    s = np.abs(out).max() + 1e-9
    return (amp * out / s).astype(np.float64)


def wobble(rng: np.random.Generator, k: np.ndarray, amp: float, lam=(120.0, 400.0), n_terms: int = 3) -> np.ndarray:
    """A freehand wobble: a few sines with wavelengths ``lam`` in *slices*, peak ``amp``."""
    out = np.zeros(k.shape, dtype=np.float64)
    for _ in range(n_terms):
        L = rng.uniform(*lam)
        out += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * k / L + rng.uniform(0, 2 * np.pi))
    s = np.abs(out).max() + 1e-9
    return amp * out / s


def bumps(rng: np.random.Generator, k: np.ndarray, amp: float, every: float = 100.0,
          width=(12.0, 40.0)) -> np.ndarray:
    """Bumps along the sweep (probe pressure): Gaussians of ``width`` slices (sigma), about one per ``every`` slices."""
    out = np.zeros(k.shape, dtype=np.float64)
    n = max(1, int(round(k.size / every)))
    for c in rng.uniform(-50, k.size + 50, n):
        out += rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((k - c) / rng.uniform(*width)) ** 2)
    return amp * out


def envelope(t: np.ndarray, t0: float, tp: float, t1: float, rise: float = 0.6, fall: float = 0.8) -> np.ndarray:
    """0 outside (t0, t1), 1 at tp, smooth power-law rise and taper."""
    e = np.zeros_like(t)
    a = (t > t0) & (t <= tp)
    e[a] = np.sin(0.5 * np.pi * (t[a] - t0) / (tp - t0)) ** rise
    b = (t > tp) & (t < t1)
    e[b] = np.cos(0.5 * np.pi * (t[b] - tp) / (t1 - tp)) ** fall
    return e


@dataclass
class Subject:
    """Per-slice anatomy parameters (arrays of length K, nominal mm) of one random subject."""

    K: int
    p: Dict[str, np.ndarray]
    lobes: Dict[str, np.ndarray]  # name -> (K, n, 2): amplitude, phase of lateral lobes


def make_subject(seed: int, K: int, difficulty: float = 1.0) -> Subject:
    """Draw a subject: smooth random control curves along the sweep."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xA7A7]))
    k = np.arange(K, dtype=np.float64)
    t = k / max(K - 1, 1)
    d = difficulty
    p: Dict[str, np.ndarray] = {}

    # limb depth scale: the leg thins toward the ankle
    taper = 1.0 - 0.35 * np.clip((t - 0.45) / 0.55, 0, 1) ** 1.2
    p["skin_y"] = 2.0 + 1.0 * rng.uniform() + smooth_curve(rng, t, 0.8)
    p["skin_xc"] = FOV_MM / 2 + rng.uniform(-8, 8) + smooth_curve(rng, t, 6.0)
    p["skin_curv"] = (rng.uniform(0.0012, 0.0024) * (1 + 0.4 * (t - 0.5)) + smooth_curve(rng, t, 0.0003))
    p["skin_th"] = rng.uniform(1.2, 1.8) + smooth_curve(rng, t, 0.2)
    p["fat"] = (rng.uniform(4.0, 8.0) + smooth_curve(rng, t, 2.0)) * (0.75 + 0.25 * taper)
    p["fat_ph"] = rng.uniform(0, 2 * np.pi) + smooth_curve(rng, t, 3.0)

    # leg twist (relative lateral slide of superficial vs deep structures) and freehand drift
    drift = smooth_curve(rng, t, 9.0, n_terms=3) + wobble(rng, k, DRIFT_W * d, lam=(250, 600))
    twist = wobble(rng, k, TWIST_W * d, lam=(150, 450)) + smooth_curve(rng, t, 4.0)
    p["drift"] = drift
    p["twist"] = twist

    # gastrocnemii (nominal mm); GM medial, GL lateral, GL ends first
    gm_end = rng.uniform(0.50, 0.60)
    gl_end = gm_end - rng.uniform(0.04, 0.09)
    # the heads arise just above the knee crease: at slice 0 both bellies are present but still small
    gm_start, gl_start = rng.uniform(*HEAD_GM), rng.uniform(*HEAD_GL)
    eGM = envelope(t, gm_start, rng.uniform(0.16, 0.26), gm_end, rise=1.2, fall=rng.uniform(0.4, 0.7) * DISTAL_TAPER)
    eGL = envelope(t, gl_start, rng.uniform(0.14, 0.22), gl_end, rise=1.2, fall=rng.uniform(0.4, 0.7) * DISTAL_TAPER)
    p["GM_H"] = (rng.uniform(14, 19) + smooth_curve(rng, t, 2.0) + wobble(rng, k, 1.5 * d)) * eGM ** 0.8 \
        * (1 - bumps(rng, k, BUMP * d))
    p["GL_H"] = (rng.uniform(11, 15) + smooth_curve(rng, t, 1.5) + wobble(rng, k, 1.2 * d)) * eGL ** 0.8 \
        * (1 - bumps(rng, k, BUMP * d))
    sep = FOV_MM / 2 + rng.uniform(-4, 8) + smooth_curve(rng, t, 5.0) + wobble(rng, k, 2.5 * d)
    p["sep_x"] = sep + 0.6 * drift + 0.5 * twist
    # widths shrink as the muscles taper
    p["GM_wf"] = rng.uniform(50, 64) + smooth_curve(rng, t, 6.0) + wobble(rng, k, 4.0 * d)
    p["GL_wf"] = rng.uniform(36, 48) + smooth_curve(rng, t, 5.0) + wobble(rng, k, 3.0 * d)
    p["GM_w"] = p["GM_wf"] * (0.12 + 0.88 * eGM ** 0.5) * (eGM > 0)
    p["GL_w"] = p["GL_wf"] * (0.12 + 0.88 * eGL ** 0.5) * (eGL > 0)
    # bellies end in a compact tip (>= TIP_MM thick), not a sliver
    p["GM_H"] = np.maximum(p["GM_H"], TIP_MM * np.clip(eGM / 0.005, 0, 1))
    p["GL_H"] = np.maximum(p["GL_H"], TIP_MM * np.clip(eGL / 0.005, 0, 1))
    p["GM_skew"] = smooth_curve(rng, t, 0.35) + wobble(rng, k, 0.25 * d)
    p["GL_skew"] = smooth_curve(rng, t, 0.35) + wobble(rng, k, 0.25 * d)
    p["sep_slope"] = rng.uniform(-0.9, -0.3) + smooth_curve(rng, t, 0.3) + wobble(rng, k, 0.3 * d)
    p["gap"] = 0.8 + 0.3 * rng.uniform() + smooth_curve(rng, t, 0.2)
    p["apo_th"] = rng.uniform(1.0, 1.6) + smooth_curve(rng, t, 0.3)
    p["apo_th"] = p["apo_th"] * (1 + 0.6 * np.clip((t - gl_end + 0.05) / 0.3, 0, 1))  # Achilles aponeurosis thickens

    # soleus
    s0, s1 = rng.uniform(0.10, 0.20), rng.uniform(0.85, 0.90)
    eS = envelope(t, s0, rng.uniform(0.42, 0.58), s1, rise=rng.uniform(0.5, 0.8), fall=rng.uniform(0.35, 0.6) * DISTAL_TAPER)
    p["SOL_H"] = (rng.uniform(16, 22) + smooth_curve(rng, t, 3.0) + wobble(rng, k, 2.0 * d)) * eS ** 0.8 * taper ** 0.5 \
        * (1 - bumps(rng, k, BUMP * d))
    p["SOL_xc"] = FOV_MM / 2 + rng.uniform(-5, 5) + smooth_curve(rng, t, 5.0) + drift - 0.6 * twist
    p["SOL_w"] = (rng.uniform(85, 105) + smooth_curve(rng, t, 10.0) + wobble(rng, k, 6.0 * d)) * (0.12 + 0.88 * eS ** 0.5)
    p["SOL_H"] = np.maximum(p["SOL_H"], TIP_MM * np.clip(eS / 0.005, 0, 1))
    p["SOL_skew"] = smooth_curve(rng, t, 0.3) + wobble(rng, k, 0.25 * d)
    p["SOL_p"] = rng.uniform(0.45, 0.7) + smooth_curve(rng, t, 0.15)
    p["GM_p"] = rng.uniform(0.5, 0.8) + smooth_curve(rng, t, 0.15)
    p["GL_p"] = rng.uniform(0.5, 0.8) + smooth_curve(rng, t, 0.15)

    # deep flexors and bones
    p["deep_H"] = (rng.uniform(10, 16) + smooth_curve(rng, t, 2.5)) * taper
    p["tib_x"] = FOV_MM * 0.27 + rng.uniform(-5, 5) + smooth_curve(rng, t, 4.0) + drift - 1.0 * twist
    p["fib_x"] = FOV_MM * 0.78 + rng.uniform(-5, 5) + smooth_curve(rng, t, 4.0) + drift - 1.0 * twist
    p["tib_r"] = rng.uniform(9, 13) + smooth_curve(rng, t, 1.5)
    p["fib_r"] = rng.uniform(5, 8) + smooth_curve(rng, t, 1.0)
    p["tib_dy"] = rng.uniform(-2, 2) + smooth_curve(rng, t, 2.0)
    p["fib_dy"] = rng.uniform(2, 6) + smooth_curve(rng, t, 2.0)
    p["tendon"] = np.clip((t - gm_end) / 0.25, 0, 1)  # Achilles tendon grows as the bellies end
    p["t"] = t
    p["septa_seed"] = np.full(K, rng.integers(1 << 30), dtype=np.float64)

    lobes = {}
    for name, amp in LOBE_AMP.items():
        n = 3
        arr = np.zeros((K, n, 2))
        for m in range(n):
            arr[:, m, 0] = amp * d * (0.6 + 0.4 * np.abs(np.sin(np.pi * t * rng.uniform(1, 3) + rng.uniform(0, 6)))) / (m + 1) ** 0.6
            arr[:, m, 1] = rng.uniform(0, 2 * np.pi) + wobble(rng, k, 2.2 * d, lam=(140, 420)) + smooth_curve(rng, t, 2.0)
        lobes[name] = arr
    return Subject(K, p, lobes)


def _lens(x: np.ndarray, xl: float, xr: float, H: float, power: float, skew: float, lobes: np.ndarray) -> np.ndarray:
    """Thickness profile of a lens/crescent-shaped muscle belly between xl and xr (0 outside)."""
    if xr <= xl + 1e-3 or H <= 0.05:
        return np.zeros_like(x)
    u = (x - xl) / (xr - xl) * 2 - 1
    inside = np.abs(u) < 1
    uu = np.where(inside, u, 0.0)
    h = (1 - uu * uu) ** max(power, 0.2) * (1 + skew * uu)
    for m in range(lobes.shape[0]):
        h = h * (1 + lobes[m, 0] * np.cos((m + 1.5) * np.pi * uu + lobes[m, 1]))
    return np.where(inside, np.maximum(h, 0) * H, 0.0)


@dataclass
class SliceAnatomy:
    """One slice: per-column boundary curves (px) and the 2-D maps the image model needs."""

    labels: np.ndarray     # uint8 (J, I): 0 none, 1 GM, 2 GL, 3 SOL
    tissue: np.ndarray     # float32 (J, I): diffuse backscatter amplitude
    density: np.ndarray    # float32 (J, I): scatterer density
    specular: np.ndarray   # float32 (J, I): coherent reflector amplitude (angle-weighted)
    shadow: np.ndarray     # float32 (J, I): transmission below bones (1 = none)
    muscle: np.ndarray     # bool (J, I): where perimysium texture goes


def slice_anatomy(sub: Subject, k: int, J: int, I: int, shift_mm=(0.0, 0.0), contrast: float = 1.0) -> SliceAnatomy:
    """Evaluate the subject at slice ``k`` on a (J, I) grid. ``shift_mm`` = (dx, dy) freehand misalignment."""
    P = {n: float(v[k]) for n, v in sub.p.items()}
    mm = FOV_MM / I  # nominal mm per pixel
    x = (np.arange(I) + 0.5) * mm - shift_mm[0]
    Y = ((np.arange(J) + 0.5) * mm - shift_mm[1])[:, None]

    def band(curve, th, amp):
        """Gaussian line of thickness th (mm) along y = curve(x), weighted by angle of incidence."""
        slope = np.gradient(curve, mm)
        cosang = 1.0 / np.sqrt(1.0 + slope ** 2)
        return (amp * cosang ** 3)[None, :] * np.exp(-0.5 * ((Y - curve[None, :]) / max(th, 0.5 * mm)) ** 2)

    skin = P["skin_y"] + P["skin_curv"] * (x - P["skin_xc"]) ** 2
    dermis = skin + P["skin_th"]
    fat_th = P["fat"] * (1 + 0.25 * np.sin(2 * np.pi * x / 70 + P["fat_ph"]))
    fascia = dermis + fat_th

    # gastrocnemii
    sep = P["sep_x"]
    # each belly shrinks toward its own centre as it tapers (full-width span: septum +- 6 mm)
    gm_c = sep + 6.0 - 0.5 * P["GM_wf"]
    gl_c = sep - 6.0 + 0.5 * P["GL_wf"]
    gm_l, gm_r = gm_c - 0.5 * P["GM_w"], min(gm_c + 0.5 * P["GM_w"], sep + 6.0)
    gl_l, gl_r = max(gl_c - 0.5 * P["GL_w"], sep - 6.0), gl_c + 0.5 * P["GL_w"]
    hGM = _lens(x, gm_l, gm_r, P["GM_H"], P["GM_p"], P["GM_skew"], sub.lobes["GM"][k])
    hGL = _lens(x, gl_l, gl_r, P["GL_H"], P["GL_p"], P["GL_skew"], sub.lobes["GL"][k])
    g_top = fascia + P["gap"]
    septum_x = sep + P["sep_slope"] * (Y - g_top[None, :])  # (J, I): oblique septum line
    X = x[None, :]
    inGM = (X < septum_x) & (Y > g_top[None, :]) & (Y < (g_top + hGM)[None, :])
    inGL = (X >= septum_x) & (Y > g_top[None, :]) & (Y < (g_top + hGL)[None, :])
    hG = np.where(x < sep, np.maximum(hGM, 0), np.maximum(hGL, 0))
    hG = np.maximum(hG, np.where(x < sep, hGL * (x > gl_l), hGM * (x < gm_r)))
    g_bot = g_top + hG
    apo = P["apo_th"]

    # soleus: under the aponeurosis, or under the fascia where no gastrocnemius
    hGs = _smooth1d(hG, 4.0 / mm)
    s_top = np.where(hG > 0.05, g_bot + apo, fascia + P["gap"] + 0.6 * apo)
    sxc, sw = P["SOL_xc"], P["SOL_w"]
    hS = _lens(x, sxc - sw / 2, sxc + sw / 2, P["SOL_H"], P["SOL_p"], P["SOL_skew"], sub.lobes["SOL"][k])
    s_bot = fascia + P["gap"] + hGs + apo + hS
    inS = (Y > s_top[None, :]) & (Y < s_bot[None, :]) & (hS[None, :] > 0.05)
    s_floor = np.where(hS > 0.05, s_bot, fascia + P["gap"] + hGs + apo)

    # deep flexors down to the bones
    deep_bot = s_floor + 1.5 + P["deep_H"] * (0.8 + 0.2 * np.cos(2 * np.pi * (x - P["skin_xc"]) / FOV_MM))
    tib_y = float(np.interp(P["tib_x"], x, deep_bot)) + P["tib_dy"]
    fib_y = float(np.interp(P["fib_x"], x, deep_bot)) + P["fib_dy"]
    tib = tib_y + (x - P["tib_x"]) ** 2 / (2 * P["tib_r"])
    fib = fib_y + (x - P["fib_x"]) ** 2 / (2 * P["fib_r"])
    tib_on = np.abs(x - P["tib_x"]) < 1.1 * P["tib_r"]
    fib_on = np.abs(x - P["fib_x"]) < 1.1 * P["fib_r"]
    bone = np.full(I, np.inf)
    bone = np.where(tib_on, np.minimum(bone, tib), bone)
    bone = np.where(fib_on, np.minimum(bone, fib), bone)
    membrane = np.maximum(deep_bot, np.interp(x, [P["tib_x"], P["fib_x"]], [tib_y, fib_y]))

    labels = np.zeros((J, I), np.uint8)
    labels[inGM] = 1
    labels[inGL] = 2
    labels[inS & (labels == 0)] = 3

    amp = np.full((J, I), TISSUES["deep"][0], np.float32)
    dens = np.ones((J, I), np.float32)
    below_skin = Y > skin[None, :]
    amp[~below_skin] = TISSUES["gel"][0]
    fat = below_skin & (Y < fascia[None, :])
    amp[fat] = TISSUES["fat"][0]
    dens[fat] = TISSUES["fat"][1]
    amp[labels == 1] = TISSUES["GM"][0]
    amp[labels == 2] = TISSUES["GL"][0]
    amp[labels == 3] = TISSUES["SOL"][0]
    # Achilles tendon / aponeurosis thickening distally (bright, fibrillar)
    if P["tendon"] > 0:
        tx = P["sep_x"] - 5
        tw = 8 + 10 * P["tendon"]
        tth = 2 + 5 * P["tendon"]
        tend = (np.abs(X - tx) < tw) & (Y > fascia[None, :] + 0.5) & (Y < fascia[None, :] + 0.5 + tth * np.sqrt(np.clip(1 - ((X - tx) / tw) ** 2, 0, 1)))
        tend &= labels == 0
        amp[tend] = TISSUES["tendon"][0] * (0.6 + 0.4 * P["tendon"])

    spec = np.zeros((J, I), np.float32)
    spec += band(skin, 0.35, 2.5) + band(dermis, 0.5, 0.8)
    # fat septa: fragments roughly parallel to the skin
    srng = np.random.default_rng(int(P["septa_seed"]))
    for m in range(3):
        q = srng.uniform(0.25, 0.8)
        ph = srng.uniform(0, 6.3) + 0.004 * k * srng.uniform(-1, 1)
        curve = dermis + q * fat_th + 0.6 * np.sin(2 * np.pi * x / srng.uniform(15, 40) + ph)
        frag = np.clip(np.sin(2 * np.pi * x / srng.uniform(10, 30) + ph * 1.7) * 2 - 0.4, 0, 1)
        spec += band(curve, 0.22, 0.45) * frag[None, :]
    c = contrast
    spec += band(fascia, 0.45, 3.5 * c)
    apo_mid = np.where(hG > 0.05, g_bot + apo / 2, fascia + P["gap"] + 0.3 * apo)
    spec += band(apo_mid, max(apo / 2.2, 0.35), 4.5 * c) * ((hS > 0.05) | (hG > 0.05))[None, :]
    spec += band(s_floor + 0.75, 0.5, 2.2 * c)
    spec += band(membrane, 0.4, 0.8)
    # GM/GL septum (oblique, faint because steep)
    sept = np.exp(-0.5 * ((X - septum_x) / 0.5) ** 2) * (Y > g_top[None, :]) * (Y < g_bot[None, :])
    spec += (0.55 * c * sept).astype(np.float32)
    # bones: bright curved surfaces, black shadow below
    for on, curve in ((tib_on, tib), (fib_on, fib)):
        spec += band(np.where(on, curve, -1e3), 0.6, 6.0) * on[None, :]
    shadow = np.ones((J, I), np.float32)
    below_bone = Y > bone[None, :] + 0.6
    shadow[below_bone] = 0.03
    muscle = (labels > 0) | ((amp == TISSUES["deep"][0]) & below_skin & ~below_bone)
    return SliceAnatomy(labels, amp, dens, spec.astype(np.float32), shadow, muscle)


def _smooth1d(v: np.ndarray, sigma_px: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(v, max(sigma_px, 0.5), mode="nearest")
