"""``alias_free``: an activation run at a higher rate, as BigVGAN's ``Activation1d`` runs it.

    x ──▶ up ×U (kaiser-windowed sinc, replicate edges) ──▶ activation ──▶ low-pass, ↓D ──▶ y

The two filters are computed from the kind's parameters exactly as the official code computes
them (``kaiser_sinc_filter1d``, float32), never stored in a weights file; only the activation's
tensors (a snake's α, β: ``<key>.act.alpha``, as BigVGAN names them) are. Inside, the stage is an ordinary sequence of this package's kinds
— a depthwise ``conv_transpose1d`` (stride U, ``replicate``), the activation, a depthwise
``conv1d`` (stride D, ``replicate``) — so its shape facts, whole-signal forward and exact
streaming are theirs::

    BigVGAN UpSample1d(U, K):   pad K//U − 1 frames (replicate), conv_transpose1d(stride U) × U,
                                crop pad·U + (K − U)//2 at the start  →  our conv_transpose1d
                                with padding (K − U)/2, weight U·filter (for an odd K − U, one
                                zero tap in front and padding (K − U + 1)/2)
    BigVGAN LowPassFilter1d:    pad (K//2 − 1 if K even else K//2, K//2) (replicate), conv1d(stride D)
                                → our conv1d with padding K//2: for an even K one zero tap in front
                                makes the padding symmetric
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import ClassVar

from ..core.errors import ConfigError
from .base import Kind, check_int, check_keys, parse_key, parse_layer, register
from .conv import Conv1dSpec, ConvTranspose1dSpec
from .stage import ComputedStage

MAX_RATIO = 16
MAX_FILTER = 1024


@lru_cache(maxsize=64)
def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int):
    """BigVGAN's ``kaiser_sinc_filter1d`` (from julius): a (kernel_size,) float32 torch tensor
    summing to 1, computed with the official code's operations and precision."""
    import torch

    even = kernel_size % 2 == 0
    half_size = kernel_size // 2
    delta_f = 4 * half_width
    attenuation = 2.285 * (half_size - 1) * math.pi * delta_f + 7.95
    if attenuation > 50.0:
        beta = 0.1102 * (attenuation - 8.7)
    elif attenuation >= 21.0:
        beta = 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21.0)
    else:
        beta = 0.0
    window = torch.kaiser_window(kernel_size, beta=beta, periodic=False)
    time = torch.arange(-half_size, half_size) + 0.5 if even else torch.arange(kernel_size) - half_size
    taps = 2 * cutoff * window * torch.sinc(2 * cutoff * time)
    return taps / taps.sum()


@register
@dataclass(frozen=True)
class AliasFreeSpec(ComputedStage):
    """A pointwise ``activation`` between an ×``up_ratio`` and a ↓``down_ratio`` filter."""

    activation: Kind
    up_ratio: int = 2
    down_ratio: int = 2
    up_kernel_size: int = 12
    down_kernel_size: int = 12
    key: str | None = None
    type: str = field(default="alias_free", init=False)

    names: ClassVar[tuple] = ("alias_free",)

    @classmethod
    def from_config(cls, name: str, entry: dict, index: int, where: str):
        key = parse_key(where, entry)
        allowed = ["activation", "up_ratio", "down_ratio", "up_kernel_size", "down_kernel_size"]
        check_keys(where, name, entry, [*allowed, "key"], ["activation"])
        activation = parse_layer(entry.pop("activation"), 0, f"{where}.activation")
        return cls(activation, **entry, key=key, index=index, path=where)

    def validate(self) -> None:
        where = self.where
        if not isinstance(self.activation, Kind) or not self.activation.pointwise:
            raise ConfigError(f"{where}.activation: must be a pointwise activation (snake, snake_beta, leaky_relu, …)")
        self.activation.validate()
        for name in ("up_ratio", "down_ratio"):
            check_int(where, name, getattr(self, name), 1, MAX_RATIO)
        for name in ("up_kernel_size", "down_kernel_size"):
            check_int(where, name, getattr(self, name), 1, MAX_FILTER)
        if self.up_kernel_size < self.up_ratio:
            raise ConfigError(
                f"{where}.up_kernel_size: {self.up_kernel_size} is shorter than up_ratio {self.up_ratio} "
                f"(the interpolating filter would leave gaps)"
            )
        for inner in self.stage():
            inner.validate()

    # -- the stage as a sequence of kinds ----------------------------------------------------
    @property
    def channels(self) -> int | None:
        return self.activation.input_channels()

    def stage(self, channels: int | None = None) -> tuple:
        """The three kinds this stage is: depthwise up, the activation, depthwise low-pass down."""
        c = channels or self.channels or 1
        u, k_up, d, k_down = self.up_ratio, self.up_kernel_size, self.down_ratio, self.down_kernel_size
        lead = (k_up - u) % 2  # an odd crop difference: one zero tap in front evens it
        up = ConvTranspose1dSpec(
            c, c, k_up + lead, stride=u, padding=(k_up - u + lead) // 2, groups=c, bias=False,
            padding_mode="replicate", path=f"{self.where}.upsample",
        )  # fmt: skip
        even = k_down % 2 == 0
        down = Conv1dSpec(
            c, c, k_down + even, stride=d, padding=k_down // 2, groups=c, bias=False, padding_mode="replicate",
            path=f"{self.where}.downsample",
        )  # fmt: skip
        return (up, self.activation, down)

    def filters(self, like, channels: int):
        """The up and down weights, ``(C, 1, K)``, as ``like``'s dtype and device."""
        import torch

        up = kaiser_sinc_filter(0.5 / self.up_ratio, 0.6 / self.up_ratio, self.up_kernel_size)
        if (self.up_kernel_size - self.up_ratio) % 2:
            up = torch.cat([up.new_zeros(1), up])
        down = kaiser_sinc_filter(0.5 / self.down_ratio, 0.6 / self.down_ratio, self.down_kernel_size)
        if self.down_kernel_size % 2 == 0:
            down = torch.cat([down.new_zeros(1), down])
        as_like = dict(dtype=like.dtype, device=like.device)
        up = up.to(**as_like) * self.up_ratio  # ×U in the compute dtype (3·f is not exact in float32)
        return up.expand(channels, 1, -1).contiguous(), down.to(**as_like).expand(channels, 1, -1).contiguous()

    def stage_params(self, like, params) -> list:
        up, down = self.filters(like, like.shape[1])
        inner = {name.removeprefix("act."): tensor for name, tensor in params.items()}
        return [{"weight": up}, inner, {"weight": down}]

    # -- what every kind says ----------------------------------------------------------------
    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """The activation's tensors, named as in BigVGAN's ``Activation1d`` (``act.alpha``)."""
        return {f"act.{name}": shape for name, shape in self.activation.tensor_shapes().items()}

    def init_params(self, generator=None) -> dict:
        return {f"act.{name}": tensor for name, tensor in self.activation.init_params(generator).items()}

    def computed_tensors(self) -> dict:
        """BigVGAN's registered filter buffers: recomputed here, checked against a checkpoint's."""
        u, d = self.up_ratio, self.down_ratio
        up = kaiser_sinc_filter(0.5 / u, 0.6 / u, self.up_kernel_size)
        down = kaiser_sinc_filter(0.5 / d, 0.6 / d, self.down_kernel_size)
        return {
            "upsample.filter": up.numpy().reshape(1, 1, -1),
            "downsample.lowpass.filter": down.numpy().reshape(1, 1, -1),
        }

    def input_channels(self) -> int | None:
        return self.activation.input_channels()

    def out_channels_for(self, channels: int | None) -> int | None:
        return self.activation.out_channels_for(channels)

    def check_channels(self, channels: int | None) -> int | None:
        return self.activation.check_channels(channels)

    def output_frames(self, frames: int) -> int:
        """``frames·U`` out of the upsampler, then ``⌊(n + 2⌊K/2⌋ − K')/D⌋ + 1`` out of the
        low-pass (K' = K + 1 for an even K: its zero tap); the same as :func:`frames_through`
        on :meth:`stage`, without building it (configs probe lengths by the thousand)."""
        if frames < 1:
            return 0
        upsampled = frames * self.up_ratio
        kernel = self.down_kernel_size + (self.down_kernel_size % 2 == 0)
        usable = upsampled + 2 * (self.down_kernel_size // 2) - kernel
        return usable // self.down_ratio + 1 if usable >= 0 else 0

    def rate(self) -> Fraction:
        return Fraction(self.up_ratio, self.down_ratio)

    def period(self) -> int:
        """Input frames after which the frame count repeats: D / gcd(U, D) (1 for ×2 then ↓2)."""
        return self.down_ratio // math.gcd(self.up_ratio, self.down_ratio)

    def info_columns(self) -> dict:
        return {
            "activation": self.activation.type,
            "up_ratio": self.up_ratio,
            "down_ratio": self.down_ratio,
            "up_kernel_size": self.up_kernel_size,
            "down_kernel_size": self.down_kernel_size,
            "padding_mode": "replicate",
        }
