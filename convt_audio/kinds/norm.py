"""Per-frame kinds with per-channel tensors, as today's generators use them (Vocos's ConvNeXt
blocks): ``layer_norm`` normalises each frame over its channels (PyTorch's ``LayerNorm`` on the
channels-last view), ``scale`` multiplies each channel by a learned factor (ConvNeXt's layer
scale ``gamma``). Both map each frame on its own, so they stream with no state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ..core.errors import ConfigError
from .base import PerChannel, register


@dataclass(frozen=True)
class _PerChannel(PerChannel):
    """Shared by the per-channel kinds here: tensors of shape (channels,), named by ``key``."""

    key: str | None = None


@register
@dataclass(frozen=True)
class LayerNormSpec(_PerChannel):
    """``y[:, :, t] = (x[:, :, t] − mean) / sqrt(var + eps) · weight + bias`` over the channels of
    each frame (``torch.nn.LayerNorm(channels)`` on ``x.transpose(1, 2)``); ``affine: false``
    has no tensors."""

    eps: float = 1e-5
    affine: bool = True
    type: str = field(default="layer_norm", init=False)
    names: ClassVar[tuple] = ("layer_norm",)

    def validate(self) -> None:
        super().validate()
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not 0 < self.eps < math.inf:
            raise ConfigError(f"{self.where}.eps: must be a number > 0, got {self.eps!r}")
        if not isinstance(self.affine, bool):
            raise ConfigError(f"{self.where}.affine: must be true or false, got {self.affine!r}")

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"weight": (self.channels,), "bias": (self.channels,)} if self.affine else {}

    def init_params(self, generator=None) -> dict:
        import torch

        return {"weight": torch.ones(self.channels), "bias": torch.zeros(self.channels)} if self.affine else {}

    def flops_per_frame(self):
        from fractions import Fraction

        return Fraction(8 * self.channels)

    def forward(self, x, params=None):
        import torch.nn.functional as F

        params = params or {}
        y = F.layer_norm(x.transpose(1, 2), (self.channels,), params.get("weight"), params.get("bias"), float(self.eps))
        return y.transpose(1, 2)


@register
@dataclass(frozen=True)
class ScaleSpec(_PerChannel):
    """``y[:, c, t] = gamma[c] · x[:, c, t]``: ConvNeXt's layer scale."""

    type: str = field(default="scale", init=False)
    names: ClassVar[tuple] = ("scale",)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"gamma": (self.channels,)}

    def init_params(self, generator=None) -> dict:
        import torch

        return {"gamma": torch.ones(self.channels)}

    def flops_per_frame(self):
        from fractions import Fraction

        return Fraction(self.channels)

    def forward(self, x, params):
        return x * params["gamma"][None, :, None]
