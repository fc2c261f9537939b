"""A one-channel transposed convolution (optionally then a kernel-1 decimation) by FFT.

The sharp stage of a resampler has hundreds of taps per phase; an FFT computes it for a few
operations per output sample whatever the length. It is the same linear convolution as the
layer, not an approximation: overlap-save with the whole kernel's spectrum, in float64.

With ``s`` the input zero-stuffed by the stride L (``s[i·L] = x[i]``), the layer is a plain
convolution shifted by the padding p::

    y[u] = Σ_i x[i]·h[u + p − i·L] = (s ∗ h)[u + p]

A window of N inputs starting at input a gives, by a circular convolution of length L·N, the
outputs ``u ∈ [L·a + K − 1 − p, L·a + L·N − p)`` exactly (those whose taps all fall inside the
window). Windows advance by ``N − (K − 1)/L`` inputs, so their outputs tile the signal::

    window k:   inputs  a_k … a_k + N − 1            (a_k = a_0 + k·step)
                outputs L·a_k + K−1−p … L·a_k + L·N − p − 1
    window k+1:          outputs continue where window k stopped

The spectrum of ``s`` is the input's N-point spectrum repeated L times, so one ``rfft`` of N
points and one ``irfft`` of L·N points make L·N outputs. A decimation by M keeps every M-th.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..core.engine import NumpyEngine
from ..core.streaming import StreamingModule
from .polyphase import eligible, stage_gain

MAX_WINDOW_OUTPUTS = 1 << 22  # 32 MB of float64 outputs per window: a ×768 stage gets 4096 inputs
MIN_WINDOW = 16384  # inputs per FFT window (more if the kernel reaches far): 10 min of stereo 44.1 → 48 kHz took 7 % less CPU than with 8192, 13 % less than 4096


def fft_eligible(specs) -> bool:
    """A stage :class:`FFTStage` computes: a one-channel transposed convolution shaped as the
    zero-delay designs are (K = 2·L·Z + 1, padding L·Z, output_padding L − 1, no dilation; L·N
    outputs from N inputs), optionally then a kernel-1 decimation."""
    if not eligible(specs):
        return False
    up = specs[0]
    return (
        up.dilation == 1
        and (up.kernel_size - 1) % (2 * up.stride) == 0
        and up.padding == (up.kernel_size - 1) // 2
        and up.output_padding == up.stride - 1
    )


class FFTStage(NumpyEngine):
    """The NumPy FFT engine for one stage; same interface as
    :class:`~convt_audio.resampling.polyphase.PolyphaseResampler`."""

    name = "numpy-fft"

    def __init__(self, specs, params, dtype: str = "float64"):
        assert fft_eligible(specs)
        super().__init__(specs, dtype)
        up = specs[0]
        self.L, self.p = up.stride, up.padding
        self.M = specs[1].stride if len(specs) == 2 else 1
        taps = np.asarray(params[0]["weight"], dtype=np.float64).reshape(-1)
        self.K = taps.shape[0]
        scale, self.offset = stage_gain(specs, params)
        span = (self.K - 1) // self.L  # inputs a window spends on the kernel's reach
        least = 1 << (4 * (span + 1) - 1).bit_length()  # the reach costs at most a quarter of a window
        # MIN_WINDOW inputs, unless L·N outputs would pass MAX_WINDOW_OUTPUTS (a large L)
        room = 1 << max(1, (MAX_WINDOW_OUTPUTS // self.L).bit_length() - 1)
        self.N = max(least, min(MIN_WINDOW, room))
        self.step = self.N - span
        # first window: its first output is u = 0 when L·a_0 + K − 1 − p = 0; a_0 may need to be
        # lower (the kernel's reach is not a multiple of L): then the first outputs are dropped
        lowest = -(-(self.K - 1 - self.p) // self.L)  # ceil((K−1−p)/L)
        self.a0 = -lowest
        self.skip = self.L * self.a0 + self.K - 1 - self.p  # ≤ 0: outputs before u = 0 to drop
        length = self.L * self.N
        spectrum = np.fft.rfft(taps * scale, length)
        # bin b of the stuffed signal's spectrum is bin (b mod N) of the window's, read backwards
        # and conjugated where (b mod N) lies in the upper half (a real signal's spectrum is
        # Hermitian): the L·N/2 + 1 bins are runs alternating forwards and backwards
        half = self.N // 2
        self.runs = []  # (first bin, last bin + 1, forwards?, that slice of the kernel's spectrum)
        for first in range(0, length // 2 + 1, half):
            last = min(first + half, length // 2 + 1)
            forwards = (first // half) % 2 == 0
            self.runs.append((first, last, forwards, spectrum[first:last]))

    def preferred_chunk(self) -> int:
        return max(8 * self.step, self.min_input_frames())

    def open_stream(self, batch: int, tail: np.ndarray | None = None) -> "FFTStream":
        return FFTStream(self, batch)

    def window(self, inputs: np.ndarray) -> np.ndarray:
        """The L·N outputs' valid part, ``[B, L·step]``, of one window of ``[B, N]`` inputs."""
        spectrum = np.fft.rfft(inputs, axis=-1)  # N/2 + 1 bins
        half = self.N // 2
        product = np.empty((inputs.shape[0], self.L * half + 1), dtype=np.complex128)
        for first, last, forwards, kernel in self.runs:
            count = last - first
            if forwards:
                np.multiply(spectrum[:, :count], kernel, out=product[:, first:last])
            else:  # bins half … 1 backwards, conjugated (bin 0 of the next run is forwards)
                np.multiply(np.conj(spectrum[:, half : half - count : -1]), kernel, out=product[:, first:last])
        full = np.fft.irfft(product, self.L * self.N, axis=-1)
        start = self.K - 1
        return full[:, start : start + self.L * self.step]


class FFTStream(StreamingModule):
    """One file's stream through an :class:`FFTStage`: inputs not yet windowed, outputs kept."""

    @dataclass
    class State:
        start: int  # absolute input index of buffer[:, 0]; zeros before 0
        buffer: np.ndarray
        made: int  # absolute output index of the next output made (negative: dropped)
        received: int = 0
        emitted: int = 0  # outputs after decimation returned
        pending: list = field(default_factory=list)  # chunks not yet joined to the buffer (small pushes
        pending_frames: int = 0  # join once a window is complete, not once per push)

    def __init__(self, engine: FFTStage, batch: int):
        self.engine = engine
        self.batch = batch
        super().__init__()

    def initial_state(self) -> "FFTStream.State":
        engine = self.engine
        return self.State(engine.a0, np.zeros((self.batch, -engine.a0)), engine.skip)

    def _run(self, end: int) -> list[np.ndarray]:
        """Window the inputs while a whole window lies before absolute input ``end``."""
        engine, outs = self.engine, []
        while self.state.start + engine.N <= end:
            outs.append(engine.window(self.state.buffer[:, : engine.N]))
            self.state.buffer = self.state.buffer[:, engine.step :]
            self.state.start += engine.step
        return outs

    def _keep(self, outs: list[np.ndarray], total: int | None) -> np.ndarray:
        """Decimate the outputs made, drop those before 0 (and past ``total``), add the offset."""
        engine = self.engine
        made = np.concatenate(outs, axis=-1) if outs else np.zeros((self.batch, 0))
        first = self.state.made
        self.state.made += made.shape[-1]
        # absolute outputs first … first + n − 1; keep u ≥ 0, u ≡ 0 (mod M), u // M ≥ emitted
        begin = max(self.state.emitted * engine.M, first)
        begin += (-begin) % engine.M
        stop = self.state.made if total is None else min(self.state.made, (total - 1) * engine.M + 1)
        kept = made[:, begin - first : max(begin - first, stop - first) : engine.M]
        self.state.emitted += kept.shape[-1]
        if engine.offset:
            kept = kept + engine.offset
        return kept.astype(engine.dtype, copy=False)[:, None, :]

    def _push(self, chunk: np.ndarray) -> np.ndarray:
        """Take ``[B, 1, n]`` input frames; return the ``[B, 1, m]`` output frames now final."""
        if chunk.shape[-1]:
            self.state.pending.append(np.array(chunk[:, 0, :], dtype=np.float64))
            self.state.pending_frames += chunk.shape[-1]
            self.state.received += chunk.shape[-1]
        if self.state.buffer.shape[-1] + self.state.pending_frames < self.engine.N:
            return self._keep([], None)  # no whole window yet
        self._join()
        return self._keep(self._run(self.state.start + self.state.buffer.shape[-1]), None)

    def _join(self) -> None:
        if self.state.pending:
            self.state.buffer = np.concatenate([self.state.buffer, *self.state.pending], axis=-1)
            self.state.pending, self.state.pending_frames = [], 0

    def _check_end(self) -> None:
        self.engine.check_frames(self.state.received)

    def _flush(self) -> np.ndarray:
        """End the stream: inputs past the end are zeros; return the remaining output frames."""
        engine = self.engine
        self._join()
        total = engine.output_frames(self.state.received)  # after decimation
        last = (total - 1) * engine.M  # the last output made that is kept
        outs = []
        while self.state.made + sum(o.shape[-1] for o in outs) <= last:
            missing = self.state.start + engine.N - (self.state.start + self.state.buffer.shape[-1])
            if missing > 0:
                self.state.buffer = np.concatenate([self.state.buffer, np.zeros((self.batch, missing))], axis=-1)
            outs.extend(self._run(self.state.start + self.state.buffer.shape[-1]))
        return self._keep(outs, total)
