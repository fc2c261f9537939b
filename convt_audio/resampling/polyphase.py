"""A rational L/M resampler stack computed as a matrix product, with NumPy and without torch.

The stack is a one-channel ``conv_transpose1d`` (stride L: the interpolation filter ``h``),
optionally followed by a one-channel ``conv1d`` with kernel 1 and stride M (keep every M-th
sample). Run literally, the transposed convolution makes L samples per input and the
decimation drops all but one in M; here only the kept samples are computed::

    z[u] = b0 + Σ_i x[i]·h[u + p − i·L]      (u < U = (N−1)L − 2p + d(K−1) + op + 1)
    y[t] = w1·z[t·M] + b1                    (t < ⌈U / M⌉)

Output t reads inputs ``i ∈ [⌈(tM + p − D + 1)/L⌉, ⌊(tM + p)/L⌋]`` (D = d(K−1) + 1, the dilated
kernel). The pattern repeats every ``P`` outputs, over which the inputs advance by
``A = P·M/L``: so P consecutive outputs are one row of W inputs times a fixed ``[W, P]`` matrix
of taps, and a block of groups is one BLAS product ``[groups, W] @ [W, P]`` (float64)::

    inputs   i:  gA+lo ..................... gA+hi      (W = hi − lo + 1 of them)
    outputs  t:  gP, gP+1, …, gP+P−1                   (y = window @ taps)

The P outputs go in slices of ~64, each with the narrower window its own outputs read, so an
output costs about ``taps/L + 64·M/L`` multiply-adds whatever L and M are (44.1k → 48k: 151
for 92 taps per phase; 64 measured faster than 16, 32 or 128): the cost follows the output, never L× more. Streaming is exact: a group is computed once its last input
has arrived, frames past the end are zeros, and exactly ``⌈U/M⌉`` frames come out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..core.engine import NumpyEngine
from ..core.streaming import StreamingModule
from ..kinds.conv import Conv1dSpec, ConvTranspose1dSpec

GROUP_OUTPUTS = 64  # P is the smallest multiple of the pattern's period reaching this
SUB_OUTPUTS = 64  # at most this many outputs a slice, each slice with its own narrower window
BLOCK_ROWS = 1 << 17  # window elements per BLAS product (1 MB of float64), whatever W is
MATRIX_ELEMENTS = 1 << 22  # the slices' tap matrices together, where the taps allow (32 MB of float64)


def stage_gain(specs, params) -> tuple[float, float]:
    """``(scale, offset)``: what a stage's decimation weight and the biases do to the filtered
    signal (y = scale·(h ∗ x) + offset)."""

    def first(array) -> float:
        return float(np.asarray(array).reshape(-1)[0])

    scale, offset = 1.0, first(params[0]["bias"]) if "bias" in params[0] else 0.0
    if len(specs) == 2:
        scale = first(params[1]["weight"])
        offset = scale * offset + (first(params[1]["bias"]) if "bias" in params[1] else 0.0)
    return scale, offset


def dilated_taps(up, params: dict) -> np.ndarray:
    """A one-channel transposed convolution's kernel as float64 taps, zeros between dilated ones
    (``up.receptive`` of them)."""
    taps = np.zeros(up.receptive)
    taps[:: up.dilation] = np.asarray(params["weight"], dtype=np.float64).reshape(-1)
    return taps


def eligible(specs) -> bool:
    """A one-channel, zeros-padded transposed convolution, alone or then a kernel-1 decimation."""
    if not specs or len(specs) > 2:
        return False
    up = specs[0]
    if not (
        isinstance(up, ConvTranspose1dSpec)
        and up.in_channels == up.out_channels == 1
        and up.groups == 1
        and up.padding_mode == "zeros"
        and up.trim is None  # the NumPy engines cut padding from both ends alike
    ):
        return False
    if len(specs) == 1:
        return True
    down = specs[1]
    return (
        isinstance(down, Conv1dSpec)
        and down.in_channels == down.out_channels == 1
        and down.kernel_size == 1
        and down.padding == 0
    )


class PolyphaseResampler(NumpyEngine):
    """The NumPy engine for :func:`eligible` stacks: ``open_stream`` → ``push``/``flush``.

    Parameters
    ----------
    specs : the one or two layer specs.
    params : their arrays: ``[{"weight": (1, 1, K), "bias"?}, {"weight": (1, 1, 1), "bias"?}]``.
    dtype : ``"float32"`` or ``"float64"``, the dtype of the returned frames.
    """

    name = "numpy-polyphase"

    def __init__(self, specs, params, dtype: str = "float32"):
        assert eligible(specs)
        super().__init__(specs, dtype)
        up = specs[0]
        self.L = up.stride
        self.M = specs[1].stride if len(specs) == 2 else 1
        self.p = up.padding
        self.D = up.receptive
        taps = dilated_taps(up, params[0])
        scale, self.offset = stage_gain(specs, params)
        L, M = self.L, self.M
        period = L // math.gcd(L, M)
        # each output's taps (about D/L) are held once per output of a group: a long kernel gets
        # fewer outputs a group (44.1 kHz -> 5 Hz: 1.86 M taps, 64 outputs held 3.8 GB)
        per_output = -(-self.D // L) + 1
        self.P = period * max(1, min(-(-GROUP_OUTPUTS // period), MATRIX_ELEMENTS // (period * per_output)))
        self.A = self.P * M // L
        self.lo = -(-(self.p - self.D + 1) // L)  # first input of output 0 (may be negative)
        hi = ((self.P - 1) * M + self.p) // L  # last input of output P − 1
        self.W = hi - self.lo + 1
        # a slice of S outputs reads (S − 1)·M/L + taps/L inputs: S near 2·taps·L/M spends about
        # two thirds of its multiply-adds on zeros, but fewer, larger BLAS calls win: on the
        # 80/147 stage of 44.1 → 48 kHz, S = 23 took 25 % less CPU time than S = 11 (16-32 alike)
        sub = max(16, min(SUB_OUTPUTS, round(2 * self.D / M) + 1))
        # and no more a slice than keeps its matrix (its window reads (S − 1)·M/L more inputs,
        # all zeros but one tap's share: a large decimation's) within the budget
        while sub > 1 and ((sub - 1) * M // L + per_output) * sub > MATRIX_ELEMENTS:
            sub = (sub + 1) // 2
        self.slices = []  # (first output, last output + 1, first input offset, width, taps [width, outputs])
        for j0 in range(0, self.P, sub):
            j1 = min(self.P, j0 + sub)
            lo = -(-(j0 * M + self.p - self.D + 1) // L)
            width = ((j1 - 1) * M + self.p) // L - lo + 1
            j = np.arange(j0, j1)
            k = j[None, :] * M + self.p - (lo + np.arange(width))[:, None] * L  # [width, outputs]
            inside = (k >= 0) & (k < self.D)
            matrix = np.where(inside, taps[np.clip(k, 0, self.D - 1)], 0.0)
            self.slices.append((j0, j1, lo, width, matrix * scale))
        self.block_groups = max(1, BLOCK_ROWS // max(1, self.W))

    def preferred_chunk(self) -> int:
        """Input frames per block: a few BLAS products' worth."""
        return max(4 * self.block_groups * self.A, self.min_input_frames())

    def open_stream(self, batch: int, tail: np.ndarray | None = None) -> "PolyphaseStream":
        return PolyphaseStream(self, batch)


class PolyphaseStream(StreamingModule):
    """One file's stream: the inputs a group still needs, and groups computed but not emitted."""

    @dataclass
    class State:
        start: int  # absolute input index of buffer[:, 0]; zeros before 0
        buffer: np.ndarray  # [B, inputs] from ``start``
        ready: np.ndarray  # computed outputs [emitted, groups·P)
        received: int = 0  # input frames pushed
        groups: int = 0  # groups computed
        emitted: int = 0  # output frames returned

    def __init__(self, engine: PolyphaseResampler, batch: int):
        self.engine = engine
        self.batch = batch
        super().__init__()

    def initial_state(self) -> "PolyphaseStream.State":
        start = min(self.engine.lo, 0)
        return self.State(start, np.zeros((self.batch, -start)), np.zeros((self.batch, 0)))

    def _compute(self, available: int) -> None:
        """Compute every group whose inputs lie below absolute index ``available``."""
        engine = self.engine
        last = (available - 1 - engine.lo - engine.W + 1) // engine.A  # last computable group
        if last < self.state.groups:
            return
        outputs = []
        while self.state.groups <= last:
            count = min(engine.block_groups, last - self.state.groups + 1)
            out = np.empty((self.batch, count, engine.P))
            for j0, j1, lo, width, matrix in engine.slices:
                first = self.state.groups * engine.A + lo - self.state.start
                span = (count - 1) * engine.A + width
                windows = np.lib.stride_tricks.sliding_window_view(
                    self.state.buffer[:, first : first + span], width, axis=-1
                )[:, :: engine.A]
                rows = np.ascontiguousarray(windows).reshape(self.batch * count, width)
                out[:, :, j0:j1] = (rows @ matrix).reshape(self.batch, count, j1 - j0)
            outputs.append(out.reshape(self.batch, count * engine.P))
            self.state.groups += count
        self.state.ready = np.concatenate([self.state.ready, *outputs], axis=-1)
        # inputs before the next group's window go (those present: A can exceed the window W)
        keep = min(self.state.groups * engine.A + engine.lo - self.state.start, self.state.buffer.shape[-1])
        self.state.buffer = self.state.buffer[:, keep:].copy()
        self.state.start += keep

    def _emit(self, end: int) -> np.ndarray:
        count = max(0, end - self.state.emitted)
        y = self.state.ready[:, :count]
        self.state.ready = self.state.ready[:, count:]
        self.state.emitted += count
        if self.engine.offset:
            y = y + self.engine.offset
        return y.astype(self.engine.dtype)[:, None, :]

    def _push(self, chunk: np.ndarray) -> np.ndarray:
        """Take ``[B, 1, n]`` input frames; return the ``[B, 1, m]`` output frames now final."""
        if chunk.shape[-1]:
            self.state.buffer = np.concatenate([self.state.buffer, chunk[:, 0, :]], axis=-1)
            self.state.received += chunk.shape[-1]
            self._compute(self.state.received)
        return self._emit(min(self.state.groups * self.engine.P, self.engine.output_frames(self.state.received)))

    def _check_end(self) -> None:
        self.engine.check_frames(self.state.received)

    def _flush(self) -> np.ndarray:
        """End the stream: inputs past the end are zeros; return the remaining output frames."""
        engine = self.engine
        total = self.engine.output_frames(self.state.received)
        groups = -(-total // engine.P)
        need = (groups - 1) * engine.A + engine.lo + engine.W  # absolute end of the last window
        pad = max(0, need - (self.state.start + self.state.buffer.shape[-1]))
        self.state.buffer = np.concatenate([self.state.buffer, np.zeros((self.batch, pad))], axis=-1)
        self._compute(need)
        return self._emit(total)
