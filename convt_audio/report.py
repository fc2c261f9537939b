"""Facts about a stack for ``convt-audio info``: latency, receptive field, FLOPs, buffering."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .specs import Conv1dSpec, ConvTranspose1dSpec


@dataclass(frozen=True)
class StackFacts:
    rate_factor: Fraction  # output rate / input rate
    latency_input_frames: Fraction  # how far past an output frame's time the input must reach
    receptive_input_frames: int  # input frames one output frame depends on
    flops_per_input_frame: int
    parameters: int


def describe(specs, parameters: int) -> StackFacts:
    """Compute the stack's rate factor, latency, receptive field and cost from its specs.

    Latency: a ConvTranspose1d's output t (at input time t/s) is final once input
    ``⌊(t + p)/s⌋`` arrived, ``p/s`` input frames later; a Conv1d's output q (at input time q·s)
    needs input ``q·s + d(K−1) − p``. Each is scaled to the stack's input by the rate before it.
    """
    rate = Fraction(1)
    latency = Fraction(0)
    flops = Fraction(0)
    for spec in specs:
        if isinstance(spec, ConvTranspose1dSpec):
            latency += Fraction(spec.padding, spec.stride) / rate
            flops += 2 * spec.in_channels * (spec.out_channels // spec.groups) * spec.kernel_size * rate
            rate *= spec.stride
        elif isinstance(spec, Conv1dSpec):
            latency += Fraction(spec.receptive - 1 - spec.padding) / rate
            rate /= spec.stride
            flops += 2 * spec.out_channels * (spec.in_channels // spec.groups) * spec.kernel_size * rate
    receptive = 1
    for spec in reversed(specs):
        if isinstance(spec, ConvTranspose1dSpec):
            receptive = (receptive - 1 + spec.receptive - 1) // spec.stride + 1
        elif isinstance(spec, Conv1dSpec):
            receptive = (receptive - 1) * spec.stride + spec.receptive
    return StackFacts(rate, max(latency, Fraction(0)), receptive, math.ceil(flops), parameters)
