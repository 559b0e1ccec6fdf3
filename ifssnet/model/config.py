"""Configuration of the IFSS-Net network: everything that fixes the architecture.

The configuration is stored in every checkpoint as a JSON string, so a checkpoint always rebuilds
the network that made it. Only plain JSON types appear here.

What the network expects as input (the caller prepares it):

* ``image``: float32 ``(B, 1, w, size, size)``, z-scored **per volume** by the caller
  (``(v - v.mean()) / v.std()`` over the whole volume, or a robust equivalent). No constants from any
  data set are baked in, so the net does not assume a probe, a gain or an anatomy.
* ``prev_mask``: float32 ``(B, 1, w, size, size)`` in [0, 1] (a binary mask or probabilities of the
  foreground) for the previous window.
* ``size`` must be a multiple of 32 (five in-plane poolings by 2). Propagation resamples each slice
  to ``size x size`` in-plane and the output back.
"""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Optional

from ..errors import ModelError

PAPER_WIDTHS = (30, 30, 60, 60, 120)
PAPER_RATES = (1, 6, 12, 18)
NORMS = ("group", "layer", "instance", "none")


#: How each field of :class:`IFSSNetConfig` that a user sets is set (what :meth:`IFSSNetConfig.validate` says to do);
#: the others are the paper's architecture, set in Python only.
SET_BY = {
    "size": "Set it with `ifssnet train --size` (the Training Logic's size), or IFSSNetConfig(size=...)",
    "width_mult": "Set it with `ifssnet train --width-mult` (the Training Logic's widthMult), or "
                  "IFSSNetConfig(width_mult=...)",
    "mask_sees_image": "Set it with `ifssnet train --mask-sees-image`, or IFSSNetConfig(mask_sees_image=...)",
    "image_head": "`ifssnet train --image-aux` sets it to the training cases' segment names; in Python, "
                  "IFSSNetConfig(image_head=[...])",
    "slice_spacing_mm": "Training sets it from the training volumes' slice spacing; in Python, "
                        "IFSSNetConfig(slice_spacing_mm=...)",
}


def _integer(v, low: int) -> bool:
    """Whether ``v`` is an integer (not a bool) of at least ``low``."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= low


def _number(v) -> bool:
    """Whether ``v`` is a finite real number (not a bool)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _integers(values):
    """A list or tuple as a tuple, its whole numbers (30.0, numpy integers) as int; anything else is left as it is
    for :meth:`IFSSNetConfig.validate` to refuse with a message (``int('a')`` raised ValueError, an internal
    error)."""
    if not isinstance(values, (list, tuple)):
        return values
    return tuple(int(v) if _number(v) and float(v).is_integer() else v for v in values)


def _odd_at_least(n: int) -> int:
    """Smallest odd integer >= n (kernels need a centre for symmetric 'same' padding)."""
    return n if n % 2 == 1 else n + 1


@dataclass
class IFSSNetConfig:
    """Architecture of one IFSS-Net.

    Attributes:
        window: w, slices per window (paper 3).
        size: in-plane working size H = W (paper 512; default 128 for CPU training). Multiple of 32.
        widths: feature maps of the 5 encoder layers before ``width_mult`` (paper [30, 30, 60, 60, 120]).
        width_mult: scales every width (rounded, at least 4), to train a smaller net on few cores.
        rates: in-plane atrous rates of the separable convolutions (paper {1, 6, 12, 18}). Per layer,
            each rate is clipped to ``map_size - 1`` and duplicates dropped (see ``layer_rates``).
        norm: "group" (GroupNorm, up to ``norm_groups`` groups), "layer" (GroupNorm with 1 group),
            "instance", or "none". Normalisation statistics are per slice (see docs of ``make_norm``).
        norm_groups: most groups for "group"; the largest divisor of the channel count <= this is used.
        enc_dropout, lstm_dropout, dec_dropout: paper 0.1, 0.4, 0.1.
        dropout_mode: "channel" (default: drops whole feature maps of a slice, ``Dropout2d``) or
            "element" (``Dropout``) for the encoder and decoder. The paper only says "a dropout
            layer"; element-wise dropout at full resolution costs 15-35 ms per layer per window on
            2 CPU cores (RNG-bound), channel dropout is ~free. The ConvLSTM dropout is element-wise.
        lstm_kernel: ConvLSTM kernel (paper 3).
        aspp_pool_branch: add a global-average-pool branch to each atrous block (prototype's ASPP).
        fusion_attention: channel attention in the fusion module (prototype).
        input_normalisation: documentation of what the net expects (not applied by the net).
        image_head: names of the segments that the image-only head predicts (a training aid, see
            :mod:`ifssnet.model.image_head`; empty: no head, as the paper's network).
        mask_sees_image: the encoder's first layer takes 2 channels, (image, mask): the mask stream gets
            (image window, mask window) and the image stream (image window, zeros), so the mask stream
            meets the image before its first convolution, as PG-Net's does, and not only through the
            added skips after each layer. False: the paper's 1-channel streams.
        slice_spacing_mm: distance between the frames of the training sweeps along the sweep (mm;
            the shipped weights: 1.108). A finer sweep is propagated on its frames nearest to this
            spacing (:mod:`ifssnet.slice_spacing`). None: unknown, every frame is used.
    """

    window: int = 3
    size: int = 128
    widths: tuple = PAPER_WIDTHS
    width_mult: float = 1.0
    rates: tuple = PAPER_RATES
    norm: str = "group"
    norm_groups: int = 8
    enc_dropout: float = 0.1
    lstm_dropout: float = 0.4
    dec_dropout: float = 0.1
    dropout_mode: str = "channel"
    lstm_kernel: int = 3
    aspp_pool_branch: bool = True
    fusion_attention: bool = True
    input_normalisation: str = "per-volume z-score (caller); mask in [0, 1]"
    image_head: tuple = ()
    mask_sees_image: bool = False
    slice_spacing_mm: Optional[float] = None
    arch: str = field(default="ifssnet")

    def __post_init__(self) -> None:
        self.widths = _integers(self.widths)
        self.rates = _integers(self.rates)
        if isinstance(self.image_head, list):
            self.image_head = tuple(self.image_head)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`ModelError` if the configuration cannot build a network: the message names the field, its
        value and what it must be; what to do says where the field is set (:data:`SET_BY`), and that a checkpoint
        holding such a value was damaged or edited."""
        for name, ok, allowed in self._checks():
            if not ok():
                where = SET_BY.get(name, f"Set it in Python, IFSSNetConfig({name}=...): it is the paper's "
                                         "architecture, which no option of ifssnet changes")
                raise ModelError(f"Invalid IFSS-Net configuration: {name} is {getattr(self, name)!r}; it must be "
                                 f"{allowed}.",
                                 f"{where}. Read from a model file, the file is damaged or was edited: use another "
                                 "model file.")

    def _checks(self):
        """``[(field, check() -> bool, what the field must be)]``, in the order :meth:`validate` checks them; each
        check refuses a value of the wrong type (a string, a bool for a number) rather than raise on it."""
        dropouts = [(n, lambda n=n: _number(getattr(self, n)) and 0.0 <= getattr(self, n) < 1.0,
                     "a number from 0 up to (not including) 1, a dropout probability") for n in
                    ("enc_dropout", "lstm_dropout", "dec_dropout")]
        sp = self.slice_spacing_mm
        head = self.image_head
        return [
            ("arch", lambda: self.arch == "ifssnet", "'ifssnet' (this class builds IFSS-Net only)"),
            ("window", lambda: _integer(self.window, 1), "a positive integer, the slices per window (the paper's 3)"),
            ("size", lambda: _integer(self.size, 32) and self.size % 32 == 0,
             "a multiple of 32, at least 32 (the network halves each slice five times; 128 by default)"),
            ("widths", lambda: isinstance(self.widths, tuple) and len(self.widths) == 5
             and all(_integer(w, 1) for w in self.widths), f"5 positive integers (the paper's {PAPER_WIDTHS})"),
            ("width_mult", lambda: _number(self.width_mult) and 0 < self.width_mult <= 8,
             "a number above 0 and at most 8 (1 by default; the shipped network's is 0.5)"),
            ("rates", lambda: isinstance(self.rates, tuple) and len(self.rates) > 0
             and all(_integer(r, 1) for r in self.rates), f"one or more positive integers (the paper's {PAPER_RATES})"),
            ("norm", lambda: self.norm in NORMS, f"one of {', '.join(map(repr, NORMS))}"),
            ("norm_groups", lambda: _integer(self.norm_groups, 1), "a positive integer (8 by default)"),
            *dropouts,
            ("dropout_mode", lambda: self.dropout_mode in ("channel", "element"), "'channel' or 'element'"),
            ("lstm_kernel", lambda: _integer(self.lstm_kernel, 1) and self.lstm_kernel % 2 == 1,
             "an odd positive integer (3 by default)"),
            ("slice_spacing_mm", lambda: sp is None or (_number(sp) and sp > 0),
             "a positive number of mm, or None (unknown: every frame is used)"),
            ("image_head", lambda: isinstance(head, tuple) and all(isinstance(n, str) and n for n in head)
             and len(set(head)) == len(head), "a list of distinct segment names (not one string), or empty"),
            ("mask_sees_image", lambda: isinstance(self.mask_sees_image, bool), "True or False"),
        ]

    # ------------------------------------------------------------- derived
    def channels(self) -> list[int]:
        """Effective widths of the 5 encoder layers after ``width_mult``."""
        return [max(4, int(round(w * self.width_mult))) for w in self.widths]

    def map_sizes(self) -> list[int]:
        """In-plane size at which layer i's atrous block runs (before its pooling): size / 2**i."""
        return [self.size >> i for i in range(5)]

    def layer_rates(self) -> list[list[int]]:
        """Rates per layer, each clipped to < the layer's map size, duplicates removed.

        A 3x3 tap at dilation r >= map size only ever reads zero padding, so such a branch would
        degenerate to a 1x1 convolution; clipping keeps it a real context branch (as the prototype's
        shrinking rates do). At size 128: [[1,6,12,18]]*3, [1,6,12,15], [1,6,7].
        """
        out = []
        for s in self.map_sizes():
            rs: list[int] = []
            for r in self.rates:
                r = max(1, min(r, s - 1))
                if r not in rs:
                    rs.append(r)
            out.append(rs)
        return out

    def bottleneck_size(self) -> int:
        """f: in-plane size of the bottleneck (size / 32)."""
        return self.size // 32

    def fusion_kernels(self) -> tuple[int, int]:
        """(temporal, in-plane) kernel lengths of the global feature matching: odd(w), odd(f)."""
        return _odd_at_least(self.window), _odd_at_least(self.bottleneck_size())

    def derived(self) -> dict[str, Any]:
        """Derived facts recorded next to the config in checkpoints (not read back)."""
        return {"channels": self.channels(), "layer_rates": self.layer_rates(),
                "bottleneck": [self.window, self.bottleneck_size(), self.bottleneck_size()],
                "fusion_kernels": list(self.fusion_kernels())}

    # ------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        d["rates"] = list(self.rates)
        d["image_head"] = list(self.image_head)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "IFSSNetConfig":
        if not isinstance(d, dict):
            raise ModelError("The model configuration is not a JSON object.",
                             "The checkpoint is damaged; use another one.")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"The model configuration has fields this version does not know: {unknown}.",
                             "Update the IFSS-Net extension to use this checkpoint.")
        try:
            return cls(**d)
        except TypeError as exc:  # wrong value types
            raise ModelError(f"The model configuration is invalid: {exc}.",
                             "The checkpoint is damaged; use another one.") from exc

    @classmethod
    def from_json(cls, text: str) -> "IFSSNetConfig":
        try:
            d = json.loads(text)
        except (TypeError, ValueError) as exc:
            raise ModelError("The model configuration is not valid JSON.",
                             "The checkpoint is damaged; use another one.") from exc
        return cls.from_dict(d)
