"""NumPy streaming of a one-channel transposed convolution (an interpolator), without torch.

The built-in ``sinc-xL`` configs are a single ``ConvTranspose1d`` with one channel in and out,
groups 1 and zeros padding. For those, loading torch (≈1.3 s here) costs more than the whole
computation, so this module computes the same layer with NumPy FFTs, phase by phase, in float64
(more exact than the float32 torch path). The result equals
:func:`torch.nn.functional.conv_transpose1d` within float rounding, streamed exactly like
:class:`~convt_audio.stream.StreamingConvTranspose1d`: same frames, ``L_out`` of them.

Polyphase form: with the taps dilated (``h[k·d] = w[k]``, length ``D = d(K−1) + 1``), raw output
``u = q·s + r`` is ``Σ_m x[q − m]·g_r[m]`` with ``g_r[m] = h[m·s + r]``, ``m ≤ M = ⌊(D−1)/s⌋``::

    input  q:        q−2     q−1      q          stride 3: phases r = 0, 1, 2
    raw    u:                       3q 3q+1 3q+2 <- x[q]·g_r[0] + x[q−1]·g_r[1] + x[q−2]·g_r[2]

so raw frames ``3q…3q+2`` are final once x[q] has arrived; ``history`` keeps the last M inputs.
Output t is raw ``t + padding``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .specs import ConvTranspose1dSpec, StackShape

FFT_SIZE = 1 << 13  # measured fastest here for 100-400 taps (float64, pocketfft)
BLOCKS_PER_CHUNK = 8  # FFT blocks per preferred input chunk: fewer Python calls per second


def eligible(specs) -> bool:
    """True for a stack that is one 1→1 ConvTranspose1d with groups 1 and zeros padding."""
    return (len(specs) == 1 and isinstance(specs[0], ConvTranspose1dSpec)
            and specs[0].in_channels == 1 and specs[0].out_channels == 1
            and specs[0].groups == 1 and specs[0].padding_mode == "zeros")


class FftInterpolator(StackShape):
    """One 1→1 ConvTranspose1d computed by FFT overlap-save per phase (float64).

    Parameters
    ----------
    spec : the layer (see :func:`eligible`).
    weight : array ``(1, 1, K)``; bias : array ``(1,)`` or None.
    dtype : ``"float32"`` or ``"float64"``, the dtype of the returned frames.
    """

    name = "numpy-fft"
    device = "cpu"

    def __init__(self, spec: ConvTranspose1dSpec, weight: np.ndarray, bias: np.ndarray | None = None,
                 dtype: str = "float32"):
        assert eligible((spec,))
        self.specs = (spec,)
        self.spec = spec
        self.dtype = np.dtype(dtype)
        taps = np.zeros(spec.receptive)
        taps[:: spec.dilation] = np.asarray(weight, dtype=np.float64).reshape(-1)
        self.delays = (spec.receptive - 1) // spec.stride  # M
        phases = np.zeros((spec.stride, self.delays + 1))
        for r in range(spec.stride):
            part = taps[r :: spec.stride]
            phases[r, : part.shape[0]] = part
        self.phases = phases
        self.fft_size = max(FFT_SIZE, 1 << (8 * (self.delays + 1) - 1).bit_length())
        self._spectra: dict[int, np.ndarray] = {}
        self.bias = None if bias is None else float(np.asarray(bias).reshape(-1)[0])

    def spectra(self, size: int) -> np.ndarray:
        """The phases' spectra for an FFT size, ``[s, size/2 + 1]`` (cached)."""
        if size not in self._spectra:
            self._spectra[size] = np.fft.rfft(self.phases, size)
        return self._spectra[size]

    def preferred_chunk(self) -> int:
        """Input frames per block: a whole number of full FFT blocks."""
        return max(BLOCKS_PER_CHUNK * (self.fft_size - self.delays), self.min_input_frames())

    def leading_circular_frames(self) -> int:
        return 0

    def open_stream(self, batch: int, tail: np.ndarray | None = None) -> "InterpolatorStream":
        return InterpolatorStream(self, batch)


@dataclass
class InterpolatorStream:
    """Streaming state: the last M inputs, and computed raw frames not yet emitted."""

    engine: FftInterpolator
    batch: int
    frames_in: int = 0  # q: input frames consumed
    emitted: int = 0  # output frames returned
    ready_start: int = 0  # raw position of ready[..., 0]

    def __post_init__(self) -> None:
        self.history = np.zeros((self.batch, self.engine.delays))
        self.ready = np.zeros((self.batch, 0))
        self.buffer = np.empty((self.batch, self.engine.fft_size))  # overlap-save input

    def _phases(self, joined: np.ndarray, frames: int, size: int) -> np.ndarray:
        """``[B, s, frames]``: each phase's valid outputs for ``joined = [history, block]``."""
        engine, delays = self.engine, self.engine.delays
        if frames + delays <= 64:  # tiny blocks: direct sums beat an FFT
            rows = [np.convolve(row, g)[delays : delays + frames] for row in joined for g in engine.phases]
            return np.stack(rows).reshape(joined.shape[0], engine.spec.stride, frames)
        spectrum = np.fft.rfft(joined, size)  # [B, N/2 + 1]
        phases = np.fft.irfft(spectrum[:, None, :] * engine.spectra(size)[None], size)
        return phases[..., delays : delays + frames]

    def _convolve(self, x: np.ndarray) -> np.ndarray:
        """Raw frames ``[q0·s, (q0 + n)·s)`` for inputs ``x [B, n]``, by overlap-save (float64)."""
        engine = self.engine
        delays, size, stride = engine.delays, engine.fft_size, engine.spec.stride
        hop = size - delays
        frames = x.shape[-1]
        raw = np.empty((self.batch, frames, stride))
        for start in range(0, frames, hop):
            take = min(hop, frames - start)
            if take == hop:  # a full FFT block, in the preallocated buffer (no zeroing needed:
                joined = self.buffer  # outputs M..M+take−1 read only indices < M + take)
                joined[:, :delays] = self.history
                joined[:, delays:] = x[:, start : start + take]
                n_fft = size
            else:
                joined = np.concatenate([self.history, x[:, start : start + take]], axis=-1)
                n_fft = 1 << (joined.shape[-1] - 1).bit_length()
            raw[:, start : start + take, :] = self._phases(joined, take, n_fft).transpose(0, 2, 1)
            if delays:
                self.history = joined[:, take : take + delays].copy()
        return raw.reshape(self.batch, frames * stride)  # interleaved: raw[q·s + r]

    def _emit(self, end: int, raw: np.ndarray | None = None) -> np.ndarray:
        """Return output frames [emitted, end) from ``ready`` + ``raw``, cast once to the dtype."""
        spec, dtype = self.engine.spec, self.engine.dtype
        pieces = [self.ready] if raw is None else [self.ready, raw]
        available = sum(p.shape[-1] for p in pieces)
        start = self.emitted + spec.padding - self.ready_start
        stop = end + spec.padding - self.ready_start
        if stop <= start:
            if raw is not None:
                self.ready = np.concatenate(pieces, axis=-1)
            return np.zeros((self.batch, 1, 0), dtype=dtype)
        if stop > available:  # output_padding past the raw end: bias-only frames
            pieces.append(np.zeros((self.batch, stop - available)))
        y = np.empty((self.batch, stop - start), dtype=dtype)
        at, filled = 0, 0
        for piece in pieces:  # copy [start, stop) out of the pieces, casting as we go
            lo, hi = max(start - at, 0), min(stop - at, piece.shape[-1])
            if hi > lo:
                y[:, filled : filled + hi - lo] = piece[:, lo:hi]
                filled += hi - lo
            at += piece.shape[-1]
        self.ready = self._rest(pieces, stop)
        self.ready_start += stop
        self.emitted = end
        if self.engine.bias is not None:
            y += self.engine.bias
        return y[:, None, :]

    @staticmethod
    def _rest(pieces: list, stop: int) -> np.ndarray:
        """What follows raw index ``stop`` in the concatenated pieces (a small copy)."""
        at, rest = 0, []
        for piece in pieces:
            if at + piece.shape[-1] > stop:
                rest.append(piece[:, max(stop - at, 0):])
            at += piece.shape[-1]
        if not rest:
            return pieces[0][:, :0]
        return np.concatenate(rest, axis=-1) if len(rest) > 1 else rest[0].copy()

    def push(self, chunk: np.ndarray) -> np.ndarray:
        """Take ``[B, 1, n]`` input frames; return the ``[B, 1, m]`` output frames now final."""
        raw = None
        if chunk.shape[-1]:
            raw = self._convolve(chunk[:, 0, :])
            self.frames_in += chunk.shape[-1]
        spec = self.engine.spec
        final = self.frames_in * spec.stride - spec.padding
        return self._emit(min(final, spec.output_frames(self.frames_in)), raw)

    def flush(self) -> np.ndarray:
        """End the stream: the last M phases run on zeros past the end; return the rest."""
        self.engine.check_frames(self.frames_in)
        raw = self._convolve(np.zeros((self.batch, self.engine.delays))) if self.engine.delays else None
        return self._emit(self.engine.spec.output_frames(self.frames_in), raw)
