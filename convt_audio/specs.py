"""Layer kinds: what each layer or block is, its validation and its shape facts; no torch here.

Every kind is one frozen dataclass that owns everything about itself:

- what it is and how it is checked (``validate``), and the tensors it needs (``tensor_shapes``);
- its shape facts: ``out_channels_for``, ``output_frames``, ``rate_factor``, ``input_span``
  (which input frames an output range reads: look-ahead and receptive field), ``flops_per_frame``;
- its whole-signal ``forward`` and its streaming form (``streamer``), which import torch only
  when they run (:mod:`convt_audio.layers`, :mod:`convt_audio.stream`).

A stack is a sequence of specs; :class:`ResidualSpec` and :class:`ParallelSpec` hold sequences
of their own, to any depth. Parameters (``{"weight", "bias", "alpha"}`` dicts) belong to the
leaves; a composite's parameters are its children's, nested as its sequences are (:func:`nest`).
Importing this module (and :mod:`convt_audio.config`) does not import torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from fractions import Fraction
from typing import Iterator, Sequence, Union

from .errors import ConfigError, InputTooShortError

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "elu", "gelu", "silu")
REDUCTIONS = ("sum", "mean")


# Upper bounds, checked before anything is allocated: far above any published model (HiFi-GAN V1's
# largest layer is 512·256·16 = 2.1 M weights), far below what would exhaust memory.
MAX_CHANNELS = 1 << 16
MAX_KERNEL = 1 << 24  # a resampler's stage holds L × its taps per phase (44,101/88,200: 838k)
MAX_STRIDE = 1 << 20  # stride and dilation: every rate pair up to 768 kHz is one L/M
MAX_PADDING = 1 << 24
MAX_LAYER_WEIGHTS = 1 << 28  # 1 GiB of float32


def _check_int(where: str, name: str, value, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{where}.{name}: must be {what}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{where}.{name}: must be at most {maximum}, got {value!r}")


def _expect_channels(where: str, name: str, value: int, produced: int | None) -> None:
    """A layer's channel field must equal what the layer before it produces (when known)."""
    if produced is not None and value != produced:
        raise ConfigError(f"{where}.{name}: {value} does not match the {produced} channels the previous layer produces")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class _Leaf:
    """Shared behaviour of the layers that hold tensors themselves (no children)."""

    index: int
    path: str | None

    @property
    def where(self) -> str:
        """The YAML path of this layer, e.g. ``layers[4].branches[1][2]``."""
        return self.path or f"layers[{self.index}]"

    def sequences(self) -> tuple:
        return ()

    def sequence_labels(self) -> tuple:
        return ()

    def leaves(self) -> Iterator["_Leaf"]:
        yield self

    def first_starved(self, frames: int):
        """``(leaf, frames)`` if this layer would get too few frames to produce one, else None."""
        return None


@dataclass(frozen=True)
class _ConvSpec(_Leaf):
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
    path: str | None = field(default=None, compare=False)

    pointwise = False

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
            _check_int(where, name, getattr(self, name), 1, maximum)
        _check_int(where, "padding", self.padding, 0, MAX_PADDING)
        if not isinstance(self.bias, bool):
            raise ConfigError(f"{where}.bias: must be true or false, got {self.bias!r}")
        for name in ("in_channels", "out_channels"):
            if getattr(self, name) % self.groups:
                raise ConfigError(f"{where}.{name}: {getattr(self, name)} is not divisible by groups={self.groups}")
        if not isinstance(self.padding_mode, str) or self.padding_mode not in PADDING_MODES:
            raise ConfigError(f"{where}.padding_mode: {self.padding_mode!r} is not one of {sorted(PADDING_MODES)}")
        weights = math.prod(self.weight_shape)
        if weights > MAX_LAYER_WEIGHTS:
            raise ConfigError(
                f"{where}: a weight of shape {self.weight_shape} holds {weights:,} values; "
                f"a layer may hold at most {MAX_LAYER_WEIGHTS:,}"
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

    def input_channels(self) -> int | None:
        return self.in_channels

    def out_channels_for(self, channels: int | None) -> int:
        return self.out_channels

    def check_channels(self, channels: int | None) -> int:
        _expect_channels(self.where, "in_channels", self.in_channels, channels)
        return self.out_channels

    def first_starved(self, frames: int):
        return (self, frames) if self.output_frames(frames) < 1 else None

    def rate(self) -> Fraction:
        up, down = self.rate_factor()
        return Fraction(up, down)


@dataclass(frozen=True)
class ConvTranspose1dSpec(_ConvSpec):
    """``torch.nn.ConvTranspose1d`` with every parameter, padding modes included."""

    output_padding: int = 0
    type: str = field(default="conv_transpose1d", init=False)

    def validate(self) -> None:
        super().validate()
        _check_int(self.where, "output_padding", self.output_padding, 0, MAX_STRIDE)
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
        return max(0, (frames - 1) * self.stride - 2 * self.padding + self.receptive + self.output_padding)

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

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        """Input frames that outputs ``first…last`` read: ``i·s + k·d − p = t``."""
        p, s = self.padding, self.stride
        return _ceil_div(first + p - (self.receptive - 1), s), (last + p) // s

    def flops_per_frame(self) -> Fraction:
        """Multiply-adds ×2 per input frame."""
        return Fraction(2 * self.in_channels * (self.out_channels // self.groups) * self.kernel_size)

    def auto_kernel(self) -> str:
        """How torch computes this layer's chunks under ``auto``: as a Conv1d with out·stride
        outputs then interleaved (``polyphase``) where that measured faster on CPU (≥ 8 input
        channels per group, stride > 1), else ``conv_transpose1d`` (``transposed``)."""
        return "polyphase" if self.stride > 1 and self.in_channels // self.groups >= 8 else "transposed"

    def fan_in(self) -> int:
        # PyTorch's kaiming_uniform_(a=√5) reads fan_in from weight.size(1)·K = (out/groups)·K
        return self.out_channels // self.groups * self.kernel_size

    def forward(self, x, params):
        from .layers import conv_transpose1d

        return conv_transpose1d(x, params["weight"], params.get("bias"), self)

    def streamer(self, params, tail=None, kernel: str = "auto"):
        from .stream import StreamingConvTranspose1d

        chosen = self.auto_kernel() if kernel == "auto" else kernel
        return StreamingConvTranspose1d(self, params["weight"], params.get("bias"), tail, chosen)


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

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        """Output q reads inputs ``q·s − p … q·s − p + d(K−1)``."""
        return first * self.stride - self.padding, last * self.stride - self.padding + self.receptive - 1

    def flops_per_frame(self) -> Fraction:
        return Fraction(2 * self.out_channels * (self.in_channels // self.groups) * self.kernel_size, self.stride)

    def fan_in(self) -> int:
        return self.in_channels // self.groups * self.kernel_size

    def forward(self, x, params):
        from .layers import conv1d

        return conv1d(x, params["weight"], params.get("bias"), self)

    def streamer(self, params, tail=None, kernel: str = "auto"):
        from .stream import StreamingConv1d

        return StreamingConv1d(self, params["weight"], params.get("bias"), tail)


class _Pointwise(_Leaf):
    """A layer that maps each frame on its own: same channels, same frames, no state."""

    pointwise = True

    def output_frames(self, frames: int) -> int:
        return max(frames, 0)

    def rate_factor(self) -> tuple[int, int]:
        return 1, 1

    def rate(self) -> Fraction:
        return Fraction(1)

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        return first, last

    def flops_per_frame(self) -> Fraction:
        return Fraction(0)

    def streamer(self, params, tail=None, kernel: str = "auto"):
        from .stream import StreamingPointwise

        return StreamingPointwise(self, params)


@dataclass(frozen=True)
class ActivationSpec(_Pointwise):
    """A pointwise activation; ``parameter`` is leaky_relu's negative_slope or elu's alpha."""

    type: str
    parameter: float | None = None
    index: int = field(default=0, compare=False)
    path: str | None = field(default=None, compare=False)

    def validate(self) -> None:
        if self.type not in ACTIVATIONS:
            raise ConfigError(f"{self.where}.type: {self.type!r} is not an activation")
        if self.parameter is not None and (
            isinstance(self.parameter, bool)
            or not isinstance(self.parameter, (int, float))
            or not math.isfinite(self.parameter)
        ):
            name = "negative_slope" if self.type == "leaky_relu" else "alpha"
            raise ConfigError(f"{self.where}.{name}: must be a finite number, got {self.parameter!r}")

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def input_channels(self) -> int | None:
        return None

    def out_channels_for(self, channels: int | None) -> int | None:
        return channels

    def check_channels(self, channels: int | None) -> int | None:
        return channels

    def forward(self, x, params):
        from .layers import activation

        return activation(self, x)


@dataclass(frozen=True)
class SnakeSpec(_Pointwise):
    """Snake activation ``y = x + sin²(αx)/(α + 1e-9)`` with a learned α of shape (1, C, 1)."""

    channels: int
    type: str = field(default="snake", init=False)
    index: int = field(default=0, compare=False)
    path: str | None = field(default=None, compare=False)

    def validate(self) -> None:
        _check_int(self.where, "channels", self.channels, 1, MAX_CHANNELS)

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"alpha": (1, self.channels, 1)}

    def input_channels(self) -> int | None:
        return self.channels

    def out_channels_for(self, channels: int | None) -> int:
        return self.channels

    def check_channels(self, channels: int | None) -> int:
        _expect_channels(self.where, "channels", self.channels, channels)
        return self.channels

    def flops_per_frame(self) -> Fraction:
        return Fraction(0)

    def forward(self, x, params):
        from .layers import snake

        return snake(x, params["alpha"])


# --------------------------------------------------------------------------------------------
# blocks


class _Block:
    """Shared behaviour of the composites: their facts come from their sequences."""

    index: int
    path: str | None
    pointwise = False

    @property
    def where(self) -> str:
        return self.path or f"layers[{self.index}]"

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {}

    def leaves(self) -> Iterator:
        for sequence in self.sequences():
            yield from leaves(sequence)

    def input_channels(self) -> int | None:
        for sequence in self.sequences():
            channels = input_channels(sequence, required=False)
            if channels is not None:
                return channels
        return None

    def validate(self) -> None:
        for sequence in self.sequences():
            for spec in sequence:
                spec.validate()


@dataclass(frozen=True)
class ResidualSpec(_Block):
    """``y = x + f(x)``, f the ``layers``: f keeps the channel count and the number of frames."""

    layers: tuple
    index: int = field(default=0, compare=False)
    path: str | None = field(default=None, compare=False)
    type: str = field(default="residual", init=False)

    def sequences(self) -> tuple:
        return (self.layers,)

    def sequence_labels(self) -> tuple:
        """How tensor names continue into each sequence: ``<i>.<j>``."""
        return ("",)

    def validate(self) -> None:
        if not self.layers:
            raise ConfigError(f"{self.where}.layers: must be a non-empty list of layers")
        super().validate()

    def check_channels(self, channels: int | None) -> int | None:
        if channels is None:
            channels = input_channels(self.layers, required=False)
        produced = chain(self.layers, channels)
        if channels is not None and produced != channels:
            raise ConfigError(
                f"{self.where}: a residual must keep its channels, but its layers turn {channels} "
                f"channels into {produced}"
            )
        if rate_of(self.layers) != 1:
            raise ConfigError(
                f"{self.where}: a residual must keep its frames, but its layers change the rate "
                f"by ×{rate_of(self.layers)}"
            )
        for frames in probe_lengths(self.layers):
            out = frames_through(self.layers, frames)
            if out and out != frames:
                raise ConfigError(
                    f"{self.where}: a residual must keep its frames, but its layers turn "
                    f"[{channels}, {frames}] into [{produced}, {out}]"
                )
        return channels

    def out_channels_for(self, channels: int | None) -> int | None:
        return channels if channels is not None else input_channels(self.layers, required=False)

    def output_frames(self, frames: int) -> int:
        return frames if frames_through(self.layers, frames) >= 1 else 0

    def first_starved(self, frames: int):
        return first_starved(self.layers, frames)

    def rate_factor(self) -> tuple[int, int]:
        return 1, 1

    def rate(self) -> Fraction:
        return Fraction(1)

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        lo, hi = span_through(self.layers, first, last)
        return min(lo, first), max(hi, last)

    def flops_per_frame(self) -> Fraction:
        return flops_of(self.layers)

    def forward(self, x, params):
        return x + forward(self.layers, params[0], x)

    def streamer(self, params, tail=None, kernel: str = "auto"):
        from .stream import StreamingResidual, StreamingSequential

        return StreamingResidual(self, StreamingSequential(self.layers, params[0], tail, kernel))


@dataclass(frozen=True)
class ParallelSpec(_Block):
    """``y = reduce(b_1(x), …, b_n(x))`` over ``branches`` that map x to the same shape."""

    branches: tuple
    reduce: str = "sum"
    index: int = field(default=0, compare=False)
    path: str | None = field(default=None, compare=False)
    type: str = field(default="parallel", init=False)

    def sequences(self) -> tuple:
        return self.branches

    def sequence_labels(self) -> tuple:
        """How tensor names continue into each branch: ``<i>.<b>.<j>``."""
        return tuple(f"{b}." for b in range(len(self.branches)))

    def validate(self) -> None:
        if not self.branches:
            raise ConfigError(f"{self.where}.branches: must be a non-empty list of branches")
        for b, branch in enumerate(self.branches):
            if not branch:
                raise ConfigError(f"{self.where}.branches[{b}]: must be a non-empty list of layers")
        if self.reduce not in REDUCTIONS:
            raise ConfigError(f"{self.where}.reduce: {self.reduce!r} is not one of {list(REDUCTIONS)}")
        super().validate()

    def check_channels(self, channels: int | None) -> int | None:
        if channels is None:
            channels = self.input_channels()
        produced = [chain(branch, channels) for branch in self.branches]
        rates = [rate_of(branch) for branch in self.branches]
        for b in range(1, len(self.branches)):
            if produced[b] != produced[0] or rates[b] != rates[0]:
                raise ConfigError(
                    f"{self.where}.branches[{b}]: gives {produced[b]} channels at ×{rates[b]} the "
                    f"rate, but branches[0] gives {produced[0]} channels at ×{rates[0]}"
                )
        for frames in probe_lengths(self.branches[0], *self.branches[1:]):
            first = frames_through(self.branches[0], frames)
            for b in range(1, len(self.branches)):
                out = frames_through(self.branches[b], frames)
                if out != first:
                    raise ConfigError(
                        f"{self.where}.branches[{b}]: turns [{channels}, {frames}] into "
                        f"[{produced[b]}, {out}], but branches[0] gives [{produced[0]}, {first}]"
                    )
        return produced[0]

    def out_channels_for(self, channels: int | None) -> int | None:
        return out_channels_of(self.branches[0], channels)

    def output_frames(self, frames: int) -> int:
        outs = [frames_through(branch, frames) for branch in self.branches]
        return min(outs)

    def first_starved(self, frames: int):
        for branch in self.branches:
            starved = first_starved(branch, frames)
            if starved:
                return starved
        return None

    def rate_factor(self) -> tuple[int, int]:
        rate = rate_of(self.branches[0])
        return rate.numerator, rate.denominator

    def rate(self) -> Fraction:
        return rate_of(self.branches[0])

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        spans = [span_through(branch, first, last) for branch in self.branches]
        return min(s[0] for s in spans), max(s[1] for s in spans)

    def flops_per_frame(self) -> Fraction:
        return sum((flops_of(branch) for branch in self.branches), Fraction(0))

    def forward(self, x, params):
        total = None
        for branch, branch_params in zip(self.branches, params):
            y = forward(branch, branch_params, x)
            total = y if total is None else total + y
        return total / len(self.branches) if self.reduce == "mean" else total

    def streamer(self, params, tail=None, kernel: str = "auto"):
        from .stream import StreamingParallel, StreamingSequential

        return StreamingParallel(
            self,
            [
                StreamingSequential(branch, branch_params, tail, kernel)
                for branch, branch_params in zip(self.branches, params)
            ],
        )


LayerSpec = Union[ConvTranspose1dSpec, Conv1dSpec, ActivationSpec, SnakeSpec, ResidualSpec, ParallelSpec]
CONV_TYPES = {"conv_transpose1d": ConvTranspose1dSpec, "conv1d": Conv1dSpec}
BLOCK_TYPES = {"residual": ResidualSpec, "parallel": ParallelSpec}


def spec_fields(cls) -> list[str]:
    """The config keys a conv spec accepts (``type``, ``index``, ``path`` are not user fields)."""
    return [f.name for f in fields(cls) if f.init and f.name not in ("index", "path")]


def parameter_count(spec) -> int:
    """Number of parameters a spec's tensors hold (a block's: all of its layers')."""
    return sum(math.prod(shape) for leaf in spec.leaves() for shape in leaf.tensor_shapes().values())


# --------------------------------------------------------------------------------------------
# sequences of specs


def leaves(specs: Sequence) -> Iterator:
    """Every leaf layer of a stack, depth first: the order of its parameter list."""
    for spec in specs:
        yield from spec.leaves()


def index_paths(specs: Sequence, prefix: str = "") -> list[str]:
    """Each leaf's index path, depth first: ``i``; ``i.j`` in a residual; ``i.b.j`` in a parallel."""
    out = []
    for i, spec in enumerate(specs):
        here = f"{prefix}{i}"
        if not spec.sequences():
            out.append(here)
        for label, sequence in zip(spec.sequence_labels(), spec.sequences()):
            out.extend(index_paths(sequence, f"{here}.{label}"))
    return out


def leading_convs(specs: Sequence) -> list:
    """The convolutions that see the stack's input through pointwise layers only.

    Those can be given the input's last frames up front (a ``circular`` tail); the streaming
    stack hands the tail down by the same rule.
    """
    for spec in specs:
        if spec.pointwise:
            continue
        if isinstance(spec, _ConvSpec):
            return [spec]
        return [conv for sequence in spec.sequences() for conv in leading_convs(sequence)]
    return []


def nest(specs: Sequence, flat: Sequence):
    """Per-leaf parameters (depth-first) → one entry per spec: a dict, or a block's nested lists."""
    it = iter(flat)

    def take(sequence):
        out = []
        for spec in sequence:
            if isinstance(spec, _Block):
                out.append([take(s) for s in spec.sequences()])
            else:
                out.append(next(it))
        return out

    nested = take(specs)
    if next(it, None) is not None:
        raise ValueError("more parameter dicts than leaf layers")
    return nested


def forward(specs: Sequence, params: Sequence, x):
    """Whole-signal forward of a sequence of specs with nested params (:func:`nest`)."""
    for spec, spec_params in zip(specs, params):
        x = spec.forward(x, spec_params)
    return x


def chain(specs: Sequence, channels: int | None = None) -> int | None:
    """Check that each layer takes the channels the previous one produces; return the last's."""
    for spec in specs:
        channels = spec.check_channels(channels)
    return channels


def input_channels(specs: Sequence, required: bool = True) -> int | None:
    """Channels a stack takes: its first convolution's (or a leading snake's) in_channels."""
    for spec in specs:
        channels = spec.input_channels()
        if channels is not None:
            return channels
    if required:
        raise ConfigError("layers: needs at least one conv1d or conv_transpose1d layer")
    return None


def out_channels_of(specs: Sequence, channels: int | None = None) -> int | None:
    for spec in specs:
        channels = spec.out_channels_for(channels)
    return channels


def frames_through(specs: Sequence, frames: int) -> int:
    """Frames out of ``specs`` for ``frames`` frames in (0 if some layer gets too few)."""
    for spec in specs:
        frames = spec.output_frames(frames)
        if frames < 1:
            return 0
    return frames


def first_starved(specs: Sequence, frames: int):
    """The first leaf (depth first) that would get too few frames, with the frames it gets."""
    for spec in specs:
        starved = spec.first_starved(frames)
        if starved:
            return starved
        frames = spec.output_frames(frames)
    return None


def rate_of(specs: Sequence) -> Fraction:
    """Output rate / input rate."""
    rate = Fraction(1)
    for spec in specs:
        rate *= spec.rate()
    return rate


def span_through(specs: Sequence, first: int, last: int) -> tuple[int, int]:
    """Input frames that output frames ``first…last`` of ``specs`` read (edges ignored)."""
    for spec in reversed(specs):
        first, last = spec.input_span(first, last)
    return first, last


def flops_of(specs: Sequence) -> Fraction:
    """FLOPs (2 per multiply-add of the convolutions) per input frame."""
    total, rate = Fraction(0), Fraction(1)
    for spec in specs:
        total += spec.flops_per_frame() * rate
        rate *= spec.rate()
    return total


def widest_activation(specs: Sequence, rate: Fraction = Fraction(1), channels: int | None = None) -> Fraction:
    """The largest ``channels × rate`` of any activation in the stack, inside blocks too
    (elements per input frame)."""
    channels = input_channels(specs) if channels is None else channels
    widest = channels * rate
    for spec in specs:
        for sequence in spec.sequences():
            widest = max(widest, widest_activation(sequence, rate, channels))
        channels, rate = spec.out_channels_for(channels), rate * spec.rate()
        widest = max(widest, channels * rate)
    return widest


def block_elements(
    specs: Sequence, frames: int, rate: Fraction = Fraction(1), channels: int | None = None
) -> list[tuple[str, int]]:
    """``(where, elements)`` per layer for one block of ``frames`` input frames (per batch item).

    An upper bound on what a push holds: every layer's output for the block (inside blocks,
    every branch's, as a parallel block holds them until it reduces them), plus a convolution's
    carried window and the frames its kernel spreads past the block. Used to refuse, before
    the first block, a stack whose buffers would not fit in memory.
    """
    channels = input_channels(specs) if channels is None else channels
    out = []
    for spec in specs:
        for sequence in spec.sequences():
            out.extend(block_elements(sequence, frames, rate, channels))
        channels_out = spec.out_channels_for(channels)
        rate_out = rate * spec.rate()
        held = math.ceil(frames * rate_out)
        if isinstance(spec, _ConvSpec):
            held += spec.receptive  # a transposed kernel spreads past the block
            out.append((spec.where, (channels or 1) * spec.receptive + (channels_out or 1) * held))
        elif not spec.sequences():
            out.append((spec.where, (channels_out or 1) * held))
        channels, rate = channels_out, rate_out
    return out


def stride_period(specs: Sequence) -> int:
    """The product of the strides (capped): the frame arithmetic repeats with this period."""
    period = 1
    for leaf in leaves(specs):
        if isinstance(leaf, _ConvSpec):
            period = min(period * leaf.stride, 1 << 12)
    return period


def probe_lengths(*sequences: Sequence) -> range:
    """Input lengths that show whether sequences agree on their output length for every length."""
    start = max(min_input_frames(s) for s in sequences)
    period = max(stride_period(s) for s in sequences)
    return range(start, start + 2 * period + 16)


def min_input_frames(specs: Sequence) -> int:
    """The fewest input frames that give every layer at least one output frame."""
    low, high = 1, 1
    while frames_through(specs, high) < 1:
        high *= 2
        if high > 1 << 40:
            raise ConfigError("the stack produces no output for any input length")
    while low < high:
        mid = (low + high) // 2
        if frames_through(specs, mid) >= 1:
            high = mid
        else:
            low = mid + 1
    return low


class StackShape:
    """Shape facts of a sequence of specs (``self.specs``): channels, frames, rates."""

    specs: tuple

    @property
    def in_channels(self) -> int:
        return input_channels(self.specs)

    @property
    def out_channels(self) -> int:
        return out_channels_of(self.specs, self.in_channels)

    def output_frames(self, frames: int) -> int:
        """Frames the stack produces from ``frames`` input frames (0 if too short)."""
        return frames_through(self.specs, frames)

    def min_input_frames(self) -> int:
        return min_input_frames(self.specs)

    def block_bytes(self, frames: int, batch: int) -> tuple[int, str, int]:
        """An upper bound on the bytes one block of ``frames`` input frames holds, with the layer
        holding most and its share (:func:`block_elements`)."""
        rows = block_elements(self.specs, frames)
        itemsize = getattr(getattr(self, "dtype", None), "itemsize", 4) or 4
        where, most = max(rows, key=lambda row: row[1])
        return sum(n for _, n in rows) * batch * itemsize, where, most * batch * itemsize

    def check_frames(self, frames: int) -> None:
        """Raise :class:`InputTooShortError` naming the first layer that would get too little."""
        starved = first_starved(self.specs, frames)
        if starved:
            spec, gets = starved
            raise InputTooShortError(
                f"input too short: {gets} frames reach {spec.where} ({spec.type}), which needs at "
                f"least {spec.min_input_frames()}; the stack needs at least "
                f"{self.min_input_frames()} input frames"
            )
