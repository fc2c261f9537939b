"""Per-frame kinds with per-channel tensors, as today's generators use them (Vocos's ConvNeXt
blocks): ``layer_norm`` normalises each frame over its channels (PyTorch's ``LayerNorm`` on the
channels-last view), ``scale`` multiplies each channel by a learned factor (ConvNeXt's layer
scale ``gamma``). Both map each frame on its own, so they stream with no state."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from ..core.errors import ConfigError
from .base import PerChannel, check_int, register


@dataclass(frozen=True)
class _PerChannel(PerChannel):
    """Shared by the per-channel kinds here: tensors of shape (channels,), named by ``key``."""

    key: str | None = None


@register
@dataclass(frozen=True)
class LayerNormSpec(_PerChannel):
    """``y[:, :, t] = (x[:, :, t] − mean) / sqrt(var + eps) · weight + bias`` over the channels of
    each frame (``torch.nn.LayerNorm(channels)`` on ``x.transpose(1, 2)``); ``affine: false``
    has no tensors. With ``conditions: N`` it is Vocos's ``AdaLayerNorm``: ``weight`` and ``bias``
    are row ``row`` of the embeddings ``scale.weight`` and ``shift.weight`` (N, channels), the row
    chosen by the config's ``condition`` (vocos-encodec-24khz: the bandwidth)."""

    eps: float = 1e-5
    affine: bool = True
    conditions: int | None = None
    row: int | None = None  # set from the config's condition (Config.with_condition)
    type: str = field(default="layer_norm", init=False)
    names: ClassVar[tuple] = ("layer_norm",)
    int_fields: ClassVar[tuple] = ("channels", "conditions", "row")

    def validate(self) -> None:
        super().validate()
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not 0 < self.eps < math.inf:
            raise ConfigError(f"{self.where}.eps: must be a number > 0, got {self.eps!r}")
        if not isinstance(self.affine, bool):
            raise ConfigError(f"{self.where}.affine: must be true or false, got {self.affine!r}")
        if self.conditions is not None:
            check_int(self.where, "conditions", self.conditions, 1, 1024)
            if not self.affine:
                raise ConfigError(f"{self.where}.conditions: an adaptive layer_norm is affine; drop affine: false")
        if self.row is not None:
            if self.conditions is None:
                raise ConfigError(f"{self.where}.row: only for a layer_norm with conditions")
            check_int(self.where, "row", self.row, 0, self.conditions - 1)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        if self.conditions is not None:
            return {"scale.weight": (self.conditions, self.channels), "shift.weight": (self.conditions, self.channels)}
        return {"weight": (self.channels,), "bias": (self.channels,)} if self.affine else {}

    def init_params(self, generator=None) -> dict:
        import torch

        if self.conditions is not None:  # AdaLayerNorm's init: every row the identity
            return {
                "scale.weight": torch.ones(self.conditions, self.channels),
                "shift.weight": torch.zeros(self.conditions, self.channels),
            }
        return {"weight": torch.ones(self.channels), "bias": torch.zeros(self.channels)} if self.affine else {}

    def flops_per_frame(self):
        from fractions import Fraction

        return Fraction(8 * self.channels)

    def affine_params(self, params: dict) -> tuple:
        """``(weight, bias)``: the stored ones, or the condition's row of the embeddings."""
        if self.conditions is None:
            return params.get("weight"), params.get("bias")
        if self.row is None:
            raise ConfigError(f"{self.where}: an adaptive layer_norm needs the config's condition chosen")
        return params["scale.weight"][self.row], params["shift.weight"][self.row]

    def forward(self, x, params=None):
        import torch.nn.functional as F

        weight, bias = self.affine_params(params or {})
        y = F.layer_norm(x.transpose(1, 2), (self.channels,), weight, bias, float(self.eps))
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
