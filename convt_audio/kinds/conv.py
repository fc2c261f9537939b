"""The convolutions: ``conv_transpose1d`` and ``conv1d``, every PyTorch parameter and the four
padding modes (and EnCodec's ``reflect_zeros`` for ``conv1d``) (README.md, "Padding modes"). Their torch code is :mod:`.conv_torch`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import ClassVar

from ..core.errors import ConfigError
from ..core.options import CONV1D_PADDING_MODES, PADDING_MODES, REFLECTING
from .base import (
    MAX_CHANNELS,
    MAX_KERNEL,
    MAX_LAYER_WEIGHTS,
    MAX_PADDING,
    MAX_STRIDE,
    Kind,
    check_int,
    expect_channels,
    register,
)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class ConvKind(Kind):
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0
    groups: int = 1
    bias: bool = True
    dilation: int = 1
    padding_mode: str = "zeros"
    key: str | None = None

    padding_modes: ClassVar[tuple] = PADDING_MODES
    int_fields: ClassVar[tuple] = (
        "in_channels",
        "out_channels",
        "kernel_size",
        "stride",
        "padding",
        "output_padding",
        "groups",
        "dilation",
    )

    def validate(self) -> None:
        where = self.where
        limits = {
            "in_channels": MAX_CHANNELS,
            "out_channels": MAX_CHANNELS,
            "kernel_size": MAX_KERNEL,
            "stride": MAX_STRIDE,
            "groups": MAX_CHANNELS,
            "dilation": MAX_STRIDE,
        }
        for name, maximum in limits.items():
            check_int(where, name, getattr(self, name), 1, maximum)
        self.check_padding()
        if not isinstance(self.bias, bool):
            raise ConfigError(f"{where}.bias: must be true or false, got {self.bias!r}")
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) % self.groups:
                raise ConfigError(f"{where}.{name}: {getattr(self, name)} is not divisible by groups={self.groups}")
        modes = self.padding_modes
        if not isinstance(self.padding_mode, str) or self.padding_mode not in modes:
            raise ConfigError(f"{where}.padding_mode: {self.padding_mode!r} is not one of {sorted(modes)}")
        weights = math.prod(self.weight_shape)
        if weights > MAX_LAYER_WEIGHTS:
            raise ConfigError(
                f"{where}: a weight of shape {self.weight_shape} holds {weights:,} values; "
                f"a layer may hold at most {MAX_LAYER_WEIGHTS:,}"
            )

    def check_padding(self) -> None:
        if isinstance(self.padding, (list, tuple)):
            raise ConfigError(
                f"{self.where}.padding: [left, right] is for conv1d; {self.type} pads both ends alike, got {list(self.padding)}"
            )
        check_int(self.where, "padding", self.padding, 0, MAX_PADDING)

    @property
    def receptive(self) -> int:
        """Frames one kernel spans: ``dilation·(kernel_size − 1) + 1``."""
        return self.dilation * (self.kernel_size - 1) + 1

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": self.weight_shape}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def input_channels(self) -> int | None:
        return self.in_channels

    def out_channels_for(self, channels: int | None) -> int:
        return self.out_channels

    def check_channels(self, channels: int | None) -> int:
        expect_channels(self.where, "in_channels", self.in_channels, channels)
        return self.out_channels

    def first_starved(self, frames: int):
        return (self, frames) if self.output_frames(frames) < 1 else None

    def rate(self) -> Fraction:
        up, down = self.rate_factor()
        return Fraction(up, down)

    def period(self) -> int:
        return self.stride

    def leading_convs(self) -> list:
        return [self]

    def holds(self, leading: bool) -> str:
        left = self.extension()[0]
        if self.padding_mode == "circular" and left:
            return "input tail (seek)" if leading else "whole input"
        if self.padding_mode in REFLECTING and left:
            return f"first {left + 1} frames"
        return ""

    def held_elements(self, channels: int | None, channels_out: int | None, held: int) -> int:
        # the carried window, and the frames a transposed kernel spreads past the block
        return (channels or 1) * self.receptive + (channels_out or 1) * (held + self.receptive)

    def info_columns(self) -> dict:
        return {
            "kernel": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "output_padding": getattr(self, "output_padding", None),
            "groups": self.groups,
            "dilation": self.dilation,
            "padding_mode": self.padding_mode,
            "buffers": "",  # what it holds back: filled in by ``info``, which knows the leading layers
        }

    def init_params(self, generator=None) -> dict:
        """PyTorch's default: weight and bias ~ U(−√k, √k), k = 1 / fan_in."""
        import torch

        bound = 1.0 / math.sqrt(self.fan_in())
        params = {}
        for name, shape in self.tensor_shapes().items():
            params[name] = torch.empty(shape, dtype=torch.float32).uniform_(-bound, bound, generator=generator)
        return params


@register
@dataclass(frozen=True)
class ConvTranspose1dSpec(ConvKind):
    """``torch.nn.ConvTranspose1d`` with every parameter, padding modes included."""

    output_padding: int = 0
    trim: tuple | None = None  # [left, right]: frames cut from each end instead of padding's alike
    type: str = field(default="conv_transpose1d", init=False)
    names: ClassVar[tuple] = ("conv_transpose1d",)

    def __post_init__(self) -> None:
        if isinstance(self.trim, list):  # as YAML gives it: hashable, as a spec is
            object.__setattr__(self, "trim", tuple(self.trim))

    def crop(self) -> tuple[int, int]:
        """Output frames cut from the start and the end of the full transposed convolution:
        ``padding`` at both, or ``trim: [left, right]`` (EnCodec's causal transposed
        convolutions cut ``K − stride`` from the right only)."""
        return tuple(self.trim) if self.trim is not None else (self.padding, self.padding)

    def validate(self) -> None:
        super().validate()
        if self.trim is not None:
            if not isinstance(self.trim, tuple) or len(self.trim) != 2:
                raise ConfigError(f"{self.where}.trim: [left, right], got {self.trim!r}")
            for value in self.trim:
                check_int(self.where, "trim", value, 0, MAX_PADDING)
            if self.padding:
                raise ConfigError(f"{self.where}.trim: replaces padding (which cuts both ends alike); give one")
        check_int(self.where, "output_padding", self.output_padding, 0, MAX_STRIDE)
        if not (self.output_padding < self.stride or self.output_padding < self.dilation):
            raise ConfigError(
                f"{self.where}.output_padding: must be smaller than stride or dilation, got "
                f"{self.output_padding} (stride={self.stride}, dilation={self.dilation})"
            )

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.out_channels // self.groups, self.kernel_size)

    def output_frames(self, frames: int) -> int:
        """``(L − 1)·stride − 2·padding + dilation·(K − 1) + output_padding + 1`` (≤ 0: none)."""
        if frames < 1:
            return 0
        return max(0, (frames - 1) * self.stride - sum(self.crop()) + self.receptive + self.output_padding)

    def min_input_frames(self) -> int:
        need = sum(self.crop()) - self.receptive - self.output_padding + 1  # L_out ≥ 1
        return max(1, -(-need // self.stride) + 1)

    def extension(self) -> tuple[int, int]:
        """Input frames needed beyond each end: ``(left, right)``; none for ``zeros``.

        Output t gathers inputs i with ``i·stride + k·dilation − padding = t``; over t in
        [0, L_out) that reaches ``i ≥ −⌊(d(K−1) − p)/s⌋`` and ``i ≤ L − 1 + ⌊(d(K−1) + op − p)/s⌋``.
        """
        if self.padding_mode == "zeros":
            return 0, 0
        span = self.receptive - 1
        cut_left, cut_right = self.crop()
        left = max(0, (span - cut_left) // self.stride)
        right = max(0, (span + self.output_padding - cut_right) // self.stride)
        return left, right

    def rate_factor(self) -> tuple[int, int]:
        return self.stride, 1

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        """Input frames that outputs ``first…last`` read: ``i·s + k·d − p = t``."""
        p, s = self.crop()[0], self.stride
        return ceil_div(first + p - (self.receptive - 1), s), (last + p) // s

    def flops_per_frame(self) -> Fraction:
        """Multiply-adds ×2 per input frame."""
        return Fraction(2 * self.in_channels * (self.out_channels // self.groups) * self.kernel_size)

    def auto_kernel(self) -> str:
        """How torch computes this layer's chunks under ``auto``: as a Conv1d with out·stride
        outputs then interleaved (``polyphase``) where that measured faster on CPU (≥ 8 input
        channels per group, stride > 1), else ``conv_transpose1d`` (``transposed``)."""
        return "polyphase" if self.stride > 1 and self.in_channels // self.groups >= 8 else "transposed"

    def streaming_kernel(self, kernel: str = "auto") -> str:
        """The kernel this layer's streams take under ``kernel`` (``auto``: :meth:`auto_kernel`);
        the form :meth:`store_for_streams` keeps follows it."""
        return self.auto_kernel() if kernel == "auto" else kernel

    def fan_in(self) -> int:
        # PyTorch's kaiming_uniform_(a=√5) reads fan_in from weight.size(1)·K = (out/groups)·K
        return self.out_channels // self.groups * self.kernel_size

    def computed_as(self) -> str:
        return self.auto_kernel()

    def forward(self, x, params):
        from .conv_torch import conv_transpose1d, transposed_weight

        weight = params["weight"] if "weight" in params else transposed_weight(params["polyphase"], self)
        return conv_transpose1d(x, weight, params.get("bias"), self)

    def store_for_streams(self, params: dict, kernel: str = "auto") -> None:
        """The polyphase form alone where the streams take it (:func:`.conv_torch.store_polyphase`)."""
        if self.streaming_kernel(kernel) == "polyphase":
            from .conv_torch import store_polyphase

            store_polyphase(params, self)

    def streamer(self, params, tail=None, kernel: str = "auto"):
        from .conv_torch import StreamingConvTranspose1d

        return StreamingConvTranspose1d(
            self,
            params.get("weight"),
            params.get("bias"),
            tail,
            self.streaming_kernel(kernel),
            polyphase=params.get("polyphase"),
        )


@register
@dataclass(frozen=True)
class Conv1dSpec(ConvKind):
    """``torch.nn.Conv1d``; non-zeros padding extends the input by ``padding`` per side."""

    type: str = field(default="conv1d", init=False)
    names: ClassVar[tuple] = ("conv1d",)
    padding_modes: ClassVar[tuple] = CONV1D_PADDING_MODES
    frames_last_tensors: ClassVar[tuple] = ("weight",)  # conv_torch.channels_last_weight's layout

    def __post_init__(self) -> None:
        if isinstance(self.padding, list):  # [left, right], as YAML gives it: hashable, as a spec is
            object.__setattr__(self, "padding", tuple(self.padding))

    def check_padding(self) -> None:
        """``padding`` is one number for both ends, or ``[left, right]`` (a causal convolution:
        ``[d·(K−1), 0]``, EnCodec's and moshi's), in every padding mode."""
        if not isinstance(self.padding, tuple):
            check_int(self.where, "padding", self.padding, 0, MAX_PADDING)
            return
        if len(self.padding) != 2:
            raise ConfigError(f"{self.where}.padding: a number, or [left, right], got {list(self.padding)}")
        for value in self.padding:
            check_int(self.where, "padding", value, 0, MAX_PADDING)

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, self.kernel_size)

    def output_frames(self, frames: int) -> int:
        if frames < 1:
            return 0
        left, right = self.extension()
        usable = frames + left + right - self.receptive
        return usable // self.stride + 1 if usable >= 0 else 0

    def min_input_frames(self) -> int:
        return max(1, self.receptive - sum(self.extension()))

    def extension(self) -> tuple[int, int]:
        """Frames added before and after the input: ``padding`` at each end, or ``[left, right]``."""
        return tuple(self.padding) if isinstance(self.padding, tuple) else (self.padding, self.padding)

    def rate_factor(self) -> tuple[int, int]:
        return 1, self.stride

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        """Output q reads inputs ``q·s − p … q·s − p + d(K−1)`` (p: the left padding)."""
        left = self.extension()[0]
        return first * self.stride - left, last * self.stride - left + self.receptive - 1

    def flops_per_frame(self) -> Fraction:
        return Fraction(2 * self.out_channels * (self.in_channels // self.groups) * self.kernel_size, self.stride)

    def fan_in(self) -> int:
        return self.in_channels // self.groups * self.kernel_size

    def forward(self, x, params):
        from .conv_torch import conv1d

        return conv1d(x, params["weight"], params.get("bias"), self)

    def streamer(self, params, tail=None, kernel: str = "auto"):
        from .conv_torch import StreamingConv1d, store_channels_last

        store_channels_last(params)
        return StreamingConv1d(self, params["weight"], params.get("bias"), tail)
