"""``linear``: PyTorch's ``nn.Linear`` applied to each frame (the channels-last layers of
ConvNeXt blocks and of Vocos's head): ``y[:, :, t] = W · x[:, :, t] + b``, with the tensors as
``nn.Linear`` stores them (``weight`` (out, in), ``bias`` (out)). Each frame maps on its own, so
it streams with no state, like an activation; it may change the channel count."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import ClassVar

from ..core.errors import ConfigError
from .base import MAX_CHANNELS, MAX_LAYER_WEIGHTS, Pointwise, check_int, expect_channels, register


@register
@dataclass(frozen=True)
class LinearSpec(Pointwise):
    """``in_features`` channels in, ``out_features`` out, per frame."""

    in_features: int
    out_features: int
    bias: bool = True
    key: str | None = None
    type: str = field(default="linear", init=False)

    names: ClassVar[tuple] = ("linear",)
    # a 64-frame block ran Vocos's 60 s in 2.19 s, 256 frames in 1.47 s (its Linear 512→1536
    # runs as one matrix product per block, slow on few rows); larger blocks gained nothing
    gemm_rows: ClassVar[int] = 256
    int_fields: ClassVar[tuple] = ("in_features", "out_features")

    def validate(self) -> None:
        check_int(self.where, "in_features", self.in_features, 1, MAX_CHANNELS)
        check_int(self.where, "out_features", self.out_features, 1, MAX_CHANNELS)
        if not isinstance(self.bias, bool):
            raise ConfigError(f"{self.where}.bias: must be true or false, got {self.bias!r}")
        if self.in_features * self.out_features > MAX_LAYER_WEIGHTS:
            raise ConfigError(
                f"{self.where}: {self.in_features} × {self.out_features} weights is over {MAX_LAYER_WEIGHTS:,}"
            )

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": (self.out_features, self.in_features)}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def init_params(self, generator=None) -> dict:
        """PyTorch's default: weight and bias ~ U(−1/√in, 1/√in)."""
        import torch

        bound = 1.0 / math.sqrt(self.in_features)
        return {
            name: torch.empty(shape).uniform_(-bound, bound, generator=generator)
            for name, shape in self.tensor_shapes().items()
        }

    def input_channels(self) -> int | None:
        return self.in_features

    def out_channels_for(self, channels: int | None) -> int:
        return self.out_features

    def check_channels(self, channels: int | None) -> int:
        expect_channels(self.where, "in_features", self.in_features, channels)
        return self.out_features

    def flops_per_frame(self) -> Fraction:
        return Fraction(2 * self.in_features * self.out_features)

    def held_elements(self, channels: int | None, channels_out: int | None, held: int) -> int:
        return (channels_out or self.out_features) * held

    def forward(self, x, params):
        import torch.nn.functional as F

        return F.linear(x.transpose(1, 2), params["weight"], params.get("bias")).transpose(1, 2)
