"""``pqmf_synthesis``: parallel-wavegan's PQMF synthesis, the last step of multi-band MelGAN.

    subbands (B, S, T) ─▶ conv_transpose1d(S→S, stride S, S·identity at tap 0) ─▶
    conv1d(S→1, taps + 1, zero padding taps/2, the cosine-modulated Kaiser filters) ─▶ (B, 1, S·T)

The filters are computed from ``subbands``, ``taps``, ``cutoff_ratio`` and ``beta`` as
``parallel_wavegan/layers/pqmf.py`` computes them (float64, stored as float32); a checkpoint
holds none of them. Parameters of checkpoints from its versions up to 0.4.2 are ``cutoff_ratio:
0.15``; later ones 0.142 (the default).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import ClassVar

import numpy as np

from ..core.errors import ConfigError
from .base import check_int, check_number, expect_channels, register
from .conv import Conv1dSpec, ConvTranspose1dSpec
from .stage import ComputedStage


def pqmf_synthesis_filter(subbands: int, taps: int, cutoff_ratio: float, beta: float) -> np.ndarray:
    """``(1, subbands, taps + 1)`` float32: parallel-wavegan's ``h_synthesis``."""
    n = np.arange(taps + 1) - 0.5 * taps
    omega_c = np.pi * cutoff_ratio
    with np.errstate(invalid="ignore", divide="ignore"):
        h_i = np.sin(omega_c * n) / (np.pi * n)
    h_i[taps // 2] = np.cos(0) * cutoff_ratio
    h_proto = h_i * np.kaiser(taps + 1, beta)
    synthesis = np.zeros((subbands, taps + 1))
    for k in range(subbands):
        synthesis[k] = 2 * h_proto * np.cos((2 * k + 1) * (np.pi / (2 * subbands)) * n - (-1) ** k * np.pi / 4)
    return synthesis.astype(np.float32)[None]


MAX_BETA = 100.0


@register
@dataclass(frozen=True)
class PqmfSynthesisSpec(ComputedStage):
    """``subbands`` channels at 1/``subbands`` of the rate in, one channel out."""

    subbands: int = 4
    taps: int = 62
    cutoff_ratio: float = 0.142
    beta: float = 9.0
    type: str = field(default="pqmf_synthesis", init=False)

    names: ClassVar[tuple] = ("pqmf_synthesis",)
    int_fields: ClassVar[tuple] = ("subbands", "taps")

    def validate(self) -> None:
        check_int(self.where, "subbands", self.subbands, 2, 64)
        check_int(self.where, "taps", self.taps, 2, 1 << 12)
        if self.taps % 2:
            raise ConfigError(
                f"{self.where}.taps: must be even (the filter has taps + 1 coefficients), got {self.taps}"
            )
        for name in ("cutoff_ratio", "beta"):
            check_number(self.where, name, getattr(self, name))
        if not 0 < self.cutoff_ratio < 1:
            raise ConfigError(f"{self.where}.cutoff_ratio: must be between 0 and 1, got {self.cutoff_ratio}")
        # np.kaiser's values underflow past beta ~700 (beta 1000 gave an all-zero filter: a silent,
        # or NaN, decode); windows worth using stay far below (parallel-wavegan's 9)
        if not 0 <= self.beta <= MAX_BETA:
            raise ConfigError(
                f"{self.where}.beta: the Kaiser window's beta must be in [0, {MAX_BETA}], got {self.beta}"
            )

    def stage(self, channels: int | None = None) -> tuple:
        s = self.subbands
        up = ConvTranspose1dSpec(s, s, s, stride=s, bias=False, path=f"{self.where}.updown")
        synthesis = Conv1dSpec(s, 1, self.taps + 1, padding=self.taps // 2, bias=False, path=f"{self.where}.synthesis")
        return (up, synthesis)

    def stage_params(self, like, params) -> list:
        import torch

        s = self.subbands
        updown = torch.zeros(s, s, s, dtype=like.dtype, device=like.device)
        for k in range(s):
            updown[k, k, 0] = float(s)
        filters = torch.from_numpy(pqmf_synthesis_filter(s, self.taps, self.cutoff_ratio, self.beta))
        return [{"weight": updown}, {"weight": filters.to(dtype=like.dtype, device=like.device)}]

    def input_channels(self) -> int:
        return self.subbands

    def out_channels_for(self, channels: int | None) -> int:
        return 1

    def check_channels(self, channels: int | None) -> int:
        expect_channels(self.where, "subbands", self.subbands, channels)
        return 1

    def output_frames(self, frames: int) -> int:
        return max(frames, 0) * self.subbands

    def rate(self) -> Fraction:
        return Fraction(self.subbands)

    def info_columns(self) -> dict:
        return {"subbands": self.subbands, "kernel": self.taps + 1, "stride": self.subbands}
