"""Layer specs and their validation: what a layer is, with no tensors and no torch.

A spec is a frozen dataclass named and checked as PyTorch's ``ConvTranspose1d``/``Conv1d``
(plus activations); the tensors it needs are described by :meth:`tensor_shapes`. Importing this
module (and :mod:`convt_audio.config`) does not import torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Sequence, Union

from .errors import ConfigError, InputTooShortError

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "elu", "gelu", "silu")


def _check_int(where: str, name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{where}.{name}: must be {what}, got {value!r}")


@dataclass(frozen=True)
class _ConvSpec:
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
    index: int = field(default=0, compare=False)

    @property
    def where(self) -> str:
        return f"layers[{self.index}]"

    def validate(self) -> None:
        where = self.where
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "groups", "dilation"):
            _check_int(where, name, getattr(self, name), 1)
        _check_int(where, "padding", self.padding, 0)
        if not isinstance(self.bias, bool):
            raise ConfigError(f"{where}.bias: must be true or false, got {self.bias!r}")
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) % self.groups:
                raise ConfigError(
                    f"{where}.{name}: {getattr(self, name)} is not divisible by groups={self.groups}"
                )
        if self.padding_mode not in PADDING_MODES:
            raise ConfigError(
                f"{where}.padding_mode: {self.padding_mode!r} is not one of {sorted(PADDING_MODES)}"
            )

    @property
    def receptive(self) -> int:
        """Frames one kernel spans: ``dilation·(kernel_size − 1) + 1``."""
        return self.dilation * (self.kernel_size - 1) + 1

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"weight": self.weight_shape}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes


@dataclass(frozen=True)
class ConvTranspose1dSpec(_ConvSpec):
    """``torch.nn.ConvTranspose1d`` with every parameter, padding modes included."""

    output_padding: int = 0
    type: str = field(default="conv_transpose1d", init=False)

    def validate(self) -> None:
        super().validate()
        _check_int(self.where, "output_padding", self.output_padding, 0)
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
        return (frames - 1) * self.stride - 2 * self.padding + self.receptive + self.output_padding

    def min_input_frames(self) -> int:
        need = 2 * self.padding - self.receptive - self.output_padding + 1  # L_out ≥ 1
        return max(1, -(-need // self.stride) + 1)

    def extension(self) -> tuple[int, int]:
        """Input frames needed beyond each end: ``(left, right)``; none for ``zeros``.

        Output t gathers inputs i with ``i·stride + k·dilation − padding = t``; over t in
        [0, L_out) that reaches ``i ≥ −⌊(d(K−1) − p)/s⌋`` and ``i ≤ L − 1 + ⌊(d(K−1) + op − p)/s⌋``.
        """
        if self.padding_mode == "zeros":
            return 0, 0
        span = self.receptive - 1
        left = max(0, (span - self.padding) // self.stride)
        right = max(0, (span + self.output_padding - self.padding) // self.stride)
        return left, right

    def rate_factor(self) -> tuple[int, int]:
        return self.stride, 1

    def fan_in(self) -> int:
        # PyTorch's kaiming_uniform_(a=√5) reads fan_in from weight.size(1)·K = (out/groups)·K
        return self.out_channels // self.groups * self.kernel_size


@dataclass(frozen=True)
class Conv1dSpec(_ConvSpec):
    """``torch.nn.Conv1d``; non-zeros padding extends the input by ``padding`` per side."""

    type: str = field(default="conv1d", init=False)

    @property
    def weight_shape(self) -> tuple[int, int, int]:
        return (self.out_channels, self.in_channels // self.groups, self.kernel_size)

    def output_frames(self, frames: int) -> int:
        if frames < 1:
            return 0
        usable = frames + 2 * self.padding - self.receptive
        return usable // self.stride + 1 if usable >= 0 else 0

    def min_input_frames(self) -> int:
        return max(1, self.receptive - 2 * self.padding)

    def extension(self) -> tuple[int, int]:
        return self.padding, self.padding

    def rate_factor(self) -> tuple[int, int]:
        return 1, self.stride

    def fan_in(self) -> int:
        return self.in_channels // self.groups * self.kernel_size


@dataclass(frozen=True)
class ActivationSpec:
    """A pointwise activation; ``parameter`` is leaky_relu's negative_slope or elu's alpha."""

    type: str
    parameter: float | None = None
    index: int = field(default=0, compare=False)

    def validate(self) -> None:
        if self.type not in ACTIVATIONS:
            raise ConfigError(f"layers[{self.index}].type: {self.type!r} is not an activation")
        if self.parameter is not None and (
            isinstance(self.parameter, bool) or not isinstance(self.parameter, (int, float))
        ):
            name = "negative_slope" if self.type == "leaky_relu" else "alpha"
            raise ConfigError(f"layers[{self.index}].{name}: must be a number, got {self.parameter!r}")

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}


@dataclass(frozen=True)
class SnakeSpec:
    """Snake activation ``y = x + sin²(αx)/(α + 1e-9)`` with a learned α of shape (1, C, 1)."""

    channels: int
    type: str = field(default="snake", init=False)
    index: int = field(default=0, compare=False)

    def validate(self) -> None:
        _check_int(f"layers[{self.index}]", "channels", self.channels, 1)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"alpha": (1, self.channels, 1)}


def parameter_count(spec) -> int:
    """Number of parameters a layer spec's tensors hold."""
    return sum(math.prod(shape) for shape in spec.tensor_shapes().values())


LayerSpec = Union[ConvTranspose1dSpec, Conv1dSpec, ActivationSpec, SnakeSpec]
CONV_TYPES = {"conv_transpose1d": ConvTranspose1dSpec, "conv1d": Conv1dSpec}


def spec_fields(cls) -> list[str]:
    """The config keys a conv spec accepts (``type`` and ``index`` are not user fields)."""
    return [f.name for f in fields(cls) if f.init and f.name != "index"]


def chain_channels(specs: Sequence[LayerSpec], first_in: int | None = None) -> None:
    """Check that each layer's in_channels equals what the previous layer produces."""
    channels = first_in
    for spec in specs:
        if isinstance(spec, _ConvSpec):
            if channels is not None and spec.in_channels != channels:
                raise ConfigError(
                    f"layers[{spec.index}].in_channels: {spec.in_channels} does not match the "
                    f"{channels} channels the previous layer produces"
                )
            channels = spec.out_channels
        elif isinstance(spec, SnakeSpec):
            if channels is not None and spec.channels != channels:
                raise ConfigError(
                    f"layers[{spec.index}].channels: {spec.channels} does not match the "
                    f"{channels} channels the previous layer produces"
                )
            channels = spec.channels


class StackShape:
    """Shape facts of a sequence of specs (``self.specs``): channels, frames, rates."""

    specs: tuple

    @property
    def convs(self) -> list:
        return [s for s in self.specs if isinstance(s, _ConvSpec)]

    @property
    def in_channels(self) -> int:
        return input_channels(self.specs)

    @property
    def out_channels(self) -> int:
        channels = self.in_channels
        for spec in self.specs:
            if isinstance(spec, _ConvSpec):
                channels = spec.out_channels
        return channels

    def output_frames(self, frames: int) -> int:
        """Frames the stack produces from ``frames`` input frames (0 if too short)."""
        return frames_through(self.specs, frames)

    def min_input_frames(self) -> int:
        """The fewest input frames that give every layer at least one output frame."""
        low, high = 1, 1
        while self.output_frames(high) < 1:
            high *= 2
            if high > 1 << 40:
                raise ConfigError("the stack produces no output for any input length")
        while low < high:
            mid = (low + high) // 2
            if self.output_frames(mid) >= 1:
                high = mid
            else:
                low = mid + 1
        return low

    def check_frames(self, frames: int) -> None:
        """Raise :class:`InputTooShortError` naming the first layer that would get too little."""
        for spec in self.specs:
            if isinstance(spec, _ConvSpec):
                out = spec.output_frames(frames)
                if out < 1:
                    raise InputTooShortError(
                        f"input too short: {frames} frames reach {spec.where} ({spec.type}), which "
                        f"needs at least {spec.min_input_frames()}; the stack needs at least "
                        f"{self.min_input_frames()} input frames"
                    )
                frames = out


def input_channels(specs: Sequence[LayerSpec]) -> int:
    """Channels a stack takes: the first convolution's (or a leading snake's) in_channels."""
    for spec in specs:
        if isinstance(spec, _ConvSpec):
            return spec.in_channels
        if isinstance(spec, SnakeSpec):
            return spec.channels
    raise ConfigError("layers: needs at least one conv1d or conv_transpose1d layer")


def frames_through(specs: Sequence[LayerSpec], frames: int) -> int:
    """Frames out of ``specs`` for ``frames`` frames in (0 if some layer gets too few)."""
    for spec in specs:
        if isinstance(spec, _ConvSpec):
            frames = spec.output_frames(frames)
            if frames < 1:
                return 0
    return frames
