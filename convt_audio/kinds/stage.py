"""A kind that is a fixed sequence of other kinds with weights computed from its parameters
(BigVGAN's anti-aliased activation, parallel-wavegan's PQMF synthesis): its shape facts, forward
and streaming are those of the sequence (:meth:`ComputedStage.stage`)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from fractions import Fraction

from ..core.shapes import (
    block_elements,
    first_starved,
    flops_of,
    forward,
    frames_through,
    min_input_frames,
    span_through,
)
from ..core.streaming import StreamingModule, StreamingSequential
from .base import Kind


@dataclass(frozen=True)
class ComputedStage(Kind):
    """Subclasses give :meth:`stage` (the kinds, for a channel count) and :meth:`stage_params`
    (their tensors: computed ones in the dtype and device of ``like``, and the layer's own)."""

    @abstractmethod
    def stage(self, channels: int | None = None) -> tuple:
        """The kinds this stage is, for ``channels`` input channels."""

    @abstractmethod
    def stage_params(self, like, params: dict) -> list:
        """Their tensors: the computed ones in the dtype and device of ``like``, and the layer's own."""

    def output_frames(self, frames: int) -> int:
        return frames_through(self.stage(), frames)

    def min_input_frames(self) -> int:
        return min_input_frames(self.stage())

    def first_starved(self, frames: int):
        return first_starved(self.stage(), frames)

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        return span_through(self.stage(), first, last)

    def flops_per_frame(self) -> Fraction:
        return flops_of(self.stage())

    def held_elements(self, channels: int | None, channels_out: int | None, held: int) -> int:
        rate = self.rate()
        frames = max(1, int(held / rate) + 1)
        return sum(n for _, n in block_elements(self.stage(channels), frames, Fraction(1), channels))

    def forward(self, x, params):
        return forward(self.stage(x.shape[1]), self.stage_params(x, params), x)

    def streamer(self, params, tail=None, kernel: str = "auto"):
        return StreamingStage(self, params, kernel)


class StreamingStage(StreamingModule):
    """The stage's kinds streamed in sequence; built at the first chunk, whose dtype and device
    the computed weights take."""

    poolable = True

    def __init__(self, spec: ComputedStage, params: dict, kernel: str = "auto"):
        self.spec, self.params, self.kernel = spec, params, kernel
        super().__init__()

    def _push(self, chunk):
        if not self.children:
            stage = self.spec.stage(chunk.shape[1])
            self.children = (StreamingSequential(stage, self.spec.stage_params(chunk, self.params), None, self.kernel),)
        return self.children[0].push(chunk)

    def _flush(self):
        return self.children[0].flush()
