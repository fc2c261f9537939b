"""The shape algebra of a sequence of layers: channels, frames, rates, spans, cost.

A stack is a sequence of specs (:mod:`convt_audio.kinds`); a block holds sequences of its own,
to any depth. Everything here asks the specs (``output_frames``, ``rate``, ``input_span``,
``sequences()``, …) and never which kind they are. Parameters (``{"weight", "bias", "alpha"}``
dicts) belong to the leaves; a composite's parameters are its children's, nested as its
sequences are (:func:`nest`). No torch here.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Iterator, Sequence

from .errors import ConfigError, InputTooShortError


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
        if not spec.pointwise:
            return spec.leading_convs()
    return []


def map_leaves(specs: Sequence, change) -> tuple:
    """``specs`` with every leaf layer replaced by ``change(leaf)``, blocks rebuilt around them."""
    return tuple(
        spec.with_sequences(tuple(map_leaves(s, change) for s in spec.sequences()))
        if spec.sequences()
        else change(spec)
        for spec in specs
    )


def nest(specs: Sequence, flat: Sequence):
    """Per-leaf parameters (depth-first) → one entry per spec: a dict, or a block's nested lists."""
    it = iter(flat)

    def take(sequence):
        out = []
        for spec in sequence:
            if spec.sequences():
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


def gemm_frames(specs: Sequence, rate: Fraction = Fraction(1)) -> int:
    """The fewest input frames per block that give every matrix-product kind (``gemm_rows``)
    the rows it wants, at the rate it runs at; 0 when the stack has none."""
    frames = 0
    for spec in specs:
        for sequence in spec.sequences():
            frames = max(frames, gemm_frames(sequence, rate))
        if spec.gemm_rows:
            frames = max(frames, math.ceil(spec.gemm_rows / rate))
        rate *= spec.rate()
    return frames


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
        if not spec.sequences():  # a block's layers have their own rows
            out.append((spec.where, spec.held_elements(channels, channels_out, math.ceil(frames * rate_out))))
        channels, rate = channels_out, rate_out
    return out


def stride_period(specs: Sequence) -> int:
    """The product of the strides (capped): the frame arithmetic repeats with this period."""
    period = 1
    for leaf in leaves(specs):
        period = min(period * leaf.period(), 1 << 12)
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
