"""Blocks: ``residual`` (x + f(x)) and ``parallel`` (branches summed or averaged), to any depth.

A block is a composite: its shape facts come from its sequences, and its streaming form streams
its children (README.md, "Blocks").
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import TYPE_CHECKING, ClassVar, Iterator, Sequence

from ..core.errors import ConfigError
from ..core.shapes import (
    chain,
    first_starved,
    flops_of,
    forward,
    frames_through,
    input_channels,
    leading_convs,
    leaves,
    min_input_frames,
    out_channels_of,
    probe_lengths,
    rate_of,
    span_through,
)
from ..core.streaming import StreamingModule, StreamingSequential, cat
from .base import Kind, check_keys, parse_sequence, register

if TYPE_CHECKING:
    from torch import Tensor

REDUCTIONS = ("sum", "mean")


@dataclass(frozen=True)
class Block(Kind):
    """Shared behaviour of the composites: their facts come from their sequences."""

    def leaves(self) -> Iterator:
        for sequence in self.sequences():
            yield from leaves(sequence)

    @abstractmethod
    def with_sequences(self, sequences: tuple) -> Block:
        """The same block holding ``sequences`` (one per :meth:`sequences`) instead."""

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

    def leading_convs(self) -> list:
        return [conv for sequence in self.sequences() for conv in leading_convs(sequence)]

    def held_elements(self, channels: int | None, channels_out: int | None, held: int) -> int:
        return 0  # its layers' rows count what it holds

    def min_input_frames(self) -> int:
        return min_input_frames((self,))


@register
@dataclass(frozen=True)
class ResidualSpec(Block):
    """``y = x + f(x)``, f the ``layers``: f keeps the channel count and the number of frames."""

    layers: tuple
    type: str = field(default="residual", init=False)
    names: ClassVar[tuple] = ("residual",)

    @classmethod
    def from_config(cls, name: str, entry: dict, index: int, where: str):
        check_keys(where, name, entry, ["layers"])
        if "layers" not in entry:
            raise ConfigError(f"{where}.layers: required for residual (the layers f of x + f(x))")
        return cls(parse_sequence(entry["layers"], f"{where}.layers"), index=index, path=where)

    def sequences(self) -> tuple:
        return (self.layers,)

    def with_sequences(self, sequences: tuple) -> ResidualSpec:
        return replace(self, layers=tuple(sequences[0]))

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
        return StreamingResidual(self, StreamingSequential(self.layers, params[0], tail, kernel))


@register
@dataclass(frozen=True)
class ParallelSpec(Block):
    """``y = reduce(b_1(x), …, b_n(x))`` over ``branches`` that map x to the same shape."""

    branches: tuple
    reduce: str = "sum"
    type: str = field(default="parallel", init=False)
    names: ClassVar[tuple] = ("parallel",)

    @classmethod
    def from_config(cls, name: str, entry: dict, index: int, where: str):
        check_keys(where, name, entry, ["branches", "reduce"])
        branches = entry.get("branches")
        if not isinstance(branches, list) or not branches:
            raise ConfigError(
                f"{where}.branches: must be a non-empty list of branches (lists of layers), got {branches!r}"
            )
        parsed = tuple(parse_sequence(branch, f"{where}.branches[{b}]") for b, branch in enumerate(branches))
        return cls(parsed, entry.get("reduce", "sum"), index=index, path=where)

    def info_columns(self) -> dict:
        return {"reduce": self.reduce, "branches": len(self.branches)}

    def sequences(self) -> tuple:
        return self.branches

    def with_sequences(self, sequences: tuple) -> ParallelSpec:
        return replace(self, branches=tuple(tuple(branch) for branch in sequences))

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
        return StreamingParallel(
            self,
            [
                StreamingSequential(branch, branch_params, tail, kernel)
                for branch, branch_params in zip(self.branches, params)
            ],
        )


class StreamingResidual(StreamingModule):
    """``x + body(x)``: holds the input frames whose body output has not come out yet.

    The body keeps the frame count, so output t is ``x[t] + body(x)[t]``; the body lags by its
    look-ahead, and ``state.held`` (at most that lag) waits for it::

        x:        0 1 2 3 4 5 6 7        body lag 2
        body(x):  0 1 2 3 4 5            -> y[0..5] out; x[6], x[7] held
    """

    @dataclass
    class State:
        held: Tensor | None = None  # input frames [emitted, pushed)

    poolable = True

    def __init__(self, spec, body: StreamingSequential):
        self.spec, self.body = spec, body
        self.children = (body,)
        super().__init__()

    def _match(self, x: Tensor, y: Tensor) -> Tensor:
        held = self.state.held
        n = y.shape[-1]
        h = 0 if held is None else held.shape[-1]
        if n <= h or not h or not hasattr(y, "new_empty"):  # all held frames, none held, or NumPy
            held = x if not h else cat([held, x]) if x.shape[-1] else held
            self.state.held = held[..., n:].copy() if hasattr(held, "copy") else held[..., n:].clone()
            return held[..., :n] + y
        # held frames then the chunk's, added into one new tensor without joining them first
        import torch

        out = torch.empty_like(y)
        torch.add(held, y[..., :h], out=out[..., :h])
        torch.add(x[..., : n - h], y[..., h:], out=out[..., h:])
        self.state.held = x[..., n - h :].clone()
        return out

    def _push(self, chunk: Tensor) -> Tensor:
        return self._match(chunk, self.body.push(chunk))

    def _flush(self) -> Tensor:
        return self._ends(self._like, self.body.flush())

    def _finish(self, chunk: Tensor) -> Tensor:
        self._ended()
        return self._ends(chunk, self.body.finish(chunk))

    def _ends(self, x: Tensor, y: Tensor) -> Tensor:
        out = self._match(x, y)
        assert not self.state.held.shape[-1], "a residual body must keep the frame count"
        return out


class StreamingParallel(StreamingModule):
    """``reduce(b_1(x), …, b_n(x))``: a frame is emitted once every branch has produced it.

    ``state.surplus[b]`` holds what branch b has produced ahead of the slowest branch.
    """

    @dataclass
    class State:
        surplus: dict = field(default_factory=dict)  # branch -> frames ahead of the slowest

    poolable = True

    def __init__(self, spec, branches: Sequence[StreamingSequential]):
        self.spec, self.children = spec, tuple(branches)
        super().__init__()

    def _combine(self, outs: list[Tensor]) -> Tensor:
        surplus = self.state.surplus
        joined = []
        for b, y in enumerate(outs):
            held = surplus.get(b)
            joined.append(y if held is None or not held.shape[-1] else cat([held, y]))
        n = min(y.shape[-1] for y in joined)
        total = None
        for b, y in enumerate(joined):
            surplus[b] = y[..., n:].clone()  # a copy, so the branch's output can go
            total = y[..., :n] if total is None else total + y[..., :n]
        return total / len(joined) if self.spec.reduce == "mean" else total

    def _push(self, chunk: Tensor) -> Tensor:
        return self._combine([branch.push(chunk) for branch in self.children])

    def _flush(self) -> Tensor:
        return self._ends([branch.flush() for branch in self.children])

    def _finish(self, chunk: Tensor) -> Tensor:
        self._ended()
        return self._ends([branch.finish(chunk) for branch in self.children])

    def _ends(self, outs: list[Tensor]) -> Tensor:
        out = self._combine(outs)
        assert not any(y.shape[-1] for y in self.state.surplus.values()), "branches must agree"
        return out
