"""The NumPy resampling engine: a chain of L/M stages, each by FFT or as polyphase products.

A resampler stack (the built-in ``sinc-xL`` configs, ``design sinc`` outputs, ``--rate``'s
designs) splits into stages — a transposed convolution, then optionally a kernel-1 decimation —
and :class:`ResamplerChain` streams them with NumPy, without importing torch: a stage with a long
zero-delay kernel by FFT (:mod:`~convt_audio.resampling.fftconv`), the others computing only the outputs
they keep (:mod:`~convt_audio.resampling.polyphase`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.engine import NumpyEngine
from ..core.streaming import StreamingModule
from ..kinds.conv import Conv1dSpec
from .fftconv import FFTStage, fft_eligible
from .polyphase import PolyphaseResampler, eligible
from .spectral import SpectralResampler, spectral_eligible


def resampler_stages(specs) -> list[tuple] | None:
    """Split a stack into :func:`eligible` stages (a transposed convolution, then optionally a
    kernel-1 decimation), or None when it is not such a chain."""
    stages, i = [], 0
    specs = list(specs)
    while i < len(specs):
        take = 2 if i + 1 < len(specs) and isinstance(specs[i + 1], Conv1dSpec) else 1
        stage = tuple(specs[i : i + take])
        if not eligible(stage):
            return None
        stages.append(stage)
        i += take
    return stages or None


def chain_eligible(specs) -> bool:
    return resampler_stages(specs) is not None


FFT_MIN_TAPS_PER_PHASE = 48  # below, a stage's direct products cost less than its FFTs


def stage_kernel(stage) -> str:
    """How a stage is computed: ``fft`` for a long zero-delay kernel without much decimation,
    else ``polyphase`` (only the kept outputs, as matrix products)."""
    up = stage[0]
    down = stage[1].stride if len(stage) == 2 else 1
    if fft_eligible(stage) and up.kernel_size // up.stride >= FFT_MIN_TAPS_PER_PHASE and down <= 2:
        return "fft"
    return "polyphase"


class ResamplerChain(NumpyEngine):
    """The NumPy engine for resampler stacks: each stage by FFT or as polyphase products
    (:func:`stage_kernel`), float64 between stages, ``dtype`` out of the last — or, for float32
    outputs of a chain that rejects everything beyond the lower Nyquist frequency, the whole chain
    in one pair of FFTs (:mod:`~convt_audio.resampling.spectral`).

    Same interface as the torch engine: ``open_stream(batch)`` → push/flush/reset on ``[B, 1, n]``.
    """

    name = "numpy-resampler"

    def __init__(self, specs, params, dtype: str = "float32", spectral: bool = True):
        stages = resampler_stages(specs)
        assert stages is not None
        super().__init__(specs, dtype)
        self.stages = []
        if spectral and self.dtype == np.float32 and spectral_eligible(stages, params):
            edges = ResamplerChain(specs, params, "float64", spectral=False) if len(stages) > 1 else None
            self.stages.append(SpectralResampler(specs, stages, params, dtype, edges))
            return
        index = 0
        for number, stage in enumerate(stages):
            stage_params = params[index : index + len(stage)]
            index += len(stage)
            kind = FFTStage if stage_kernel(stage) == "fft" else PolyphaseResampler
            inner = "float64" if number < len(stages) - 1 else dtype
            self.stages.append(kind(stage, stage_params, inner))

    def kernels(self) -> list[str]:
        return [stage.name.split("-", 1)[1] for stage in self.stages]

    def preferred_chunk(self) -> int:
        """Input frames per block: about 16k (whole FFT windows or polyphase groups of the first
        stage). benchmarks/resample.py, 10 min of stereo 44.1 → 48 kHz: 8k cost 30 % more CPU
        time, 32k and 64k the same CPU time as 16k but 5 and 11 MB more peak memory."""
        first = self.stages[0]
        if isinstance(first, SpectralResampler):
            return first.preferred_chunk()
        unit = getattr(first, "step", None) or getattr(first, "A", 1)
        return max(unit * max(1, (1 << 14) // unit), self.min_input_frames())

    def open_stream(self, batch: int, tail: np.ndarray | None = None) -> "ChainStream":
        return ChainStream(self, batch)


class ChainStream(StreamingModule):
    """A stream through every stage: what one stage makes, the next takes at once."""

    @dataclass
    class State:
        received: int = 0

    def __init__(self, engine: ResamplerChain, batch: int):
        self.engine = engine
        self.batch = batch
        self.children = tuple(stage.open_stream(batch) for stage in engine.stages)
        super().__init__()

    def _push(self, chunk: np.ndarray) -> np.ndarray:
        self.state.received += chunk.shape[-1]
        for stream in self.children:
            chunk = stream.push(chunk)
        return chunk

    def _check_end(self) -> None:
        self.engine.check_frames(self.state.received)

    def _flush(self) -> np.ndarray:
        out = self.children[0].flush()
        for stream in self.children[1:]:
            out = np.concatenate([stream.push(out), stream.flush()], axis=-1)
        return out
