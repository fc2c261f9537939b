"""``istft``: the inverse STFT that Vocos's head ends with, as the transposed convolution it is.

Each input frame holds a spectrum: ``n_fft/2 + 1`` log-magnitudes then as many phases (Vocos's
``ISTFTHead``: magnitude ``exp(·)`` clipped at 100, ``S = mag·(cos p + i·sin p)``), or real then
imaginary parts. ``irfft`` of a frame is linear in those parts, so the frames' windowed inverse
transforms, overlap-added, are ``conv_transpose1d(n_fft + 2 → 1, kernel n_fft, stride hop,
padding pad)`` with the window × inverse-DFT basis as its kernel; the result is divided by the
same transposed convolution of ones with kernel window² (the envelope), as Vocos's ``ISTFT`` (and
``torch.istft``) divide. ``pad`` is ``(n_fft − hop)/2`` for ``padding: same`` (Vocos), ``n_fft/2``
for ``center`` (``torch.istft(center=True)``).

It streams exactly with no added latency: an output sample is final once no later frame reaches
it, and its envelope then depends only on its place from the start of the stream (the left edge);
the right edge's envelope uses the frame count, known at flush, when those samples are final::

    frames   i:   0        1        2        3           hop 2, n_fft 4, pad 1
    samples t: -1 0 1 2
                    1 2 3 4
                        3 4 5 6
                            5 6 7 8   -> t ≤ 2i (pad trimmed) final after frame i

The stored window (``<key>.window``, Vocos's ``head.istft.window`` buffer) is read, never
recomputed: a float64 Hann differs from the stored float32 one by 1.3e-7.

In float32 and float64 the transposed convolution's sums are computed as the authors compute
them, ``irfft`` of each frame times the window, overlap-added (``fold``): the same numbers in
O(n log n) a frame instead of the kernel's (n_fft + 2)·n_fft (Vocos 60 s: 0.12 s of 1.5 s);
half precisions, which CPU FFTs lack, use the kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import ClassVar

from ..core.errors import ConfigError
from ..core.streaming import StreamingModule
from .base import Kind, check_int, check_number, expect_channels, register
from .conv import ConvTranspose1dSpec

INPUTS = ("log_magnitude_phase", "real_imag")
PADDINGS = ("same", "center")


@register
@dataclass(frozen=True)
class IstftSpec(Kind):
    """``n_fft + 2`` channels in (two halves of ``n_fft/2 + 1``), one channel out at ``hop``× the rate."""

    n_fft: int
    hop_length: int
    padding: str = "same"
    input: str = "log_magnitude_phase"
    magnitude_max: float = 100.0  # Vocos clips exp(log magnitude) at 1e2
    key: str | None = None
    type: str = field(default="istft", init=False)

    names: ClassVar[tuple] = ("istft",)
    int_fields: ClassVar[tuple] = ("n_fft", "hop_length")

    def validate(self) -> None:
        check_int(self.where, "n_fft", self.n_fft, 2, 1 << 16)
        if self.n_fft % 2:
            raise ConfigError(f"{self.where}.n_fft: must be even, got {self.n_fft}")
        check_int(self.where, "hop_length", self.hop_length, 1, self.n_fft)
        if self.padding not in PADDINGS:
            raise ConfigError(f"{self.where}.padding: {self.padding!r} is not one of {list(PADDINGS)}")
        if self.input not in INPUTS:
            raise ConfigError(f"{self.where}.input: {self.input!r} is not one of {list(INPUTS)}")
        if self.padding == "same" and (self.n_fft - self.hop_length) % 2:
            raise ConfigError(
                f"{self.where}.padding: same needs n_fft − hop_length even, got {self.n_fft - self.hop_length}"
            )
        check_number(self.where, "magnitude_max", self.magnitude_max)
        if not self.magnitude_max > 0:
            raise ConfigError(f"{self.where}.magnitude_max: must be > 0, got {self.magnitude_max}")

    @property
    def pad(self) -> int:
        return (self.n_fft - self.hop_length) // 2 if self.padding == "same" else self.n_fft // 2

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def conv(self) -> ConvTranspose1dSpec:
        """The overlap-add as the transposed convolution it is."""
        return ConvTranspose1dSpec(
            2 * self.bins,
            1,
            self.n_fft,
            stride=self.hop_length,
            padding=self.pad,
            bias=False,
            path=f"{self.where}.overlap_add",
        )

    # -- tensors -------------------------------------------------------------------------------------
    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"window": (self.n_fft,)}

    def init_params(self, generator=None) -> dict:
        import torch

        return {"window": torch.hann_window(self.n_fft)}  # Vocos's: periodic, float32

    # -- shape facts ---------------------------------------------------------------------------------
    def input_channels(self) -> int:
        return 2 * self.bins

    def out_channels_for(self, channels: int | None) -> int:
        return 1

    def check_channels(self, channels: int | None) -> int:
        expect_channels(self.where, "n_fft", 2 * self.bins, channels)
        return 1

    def output_frames(self, frames: int) -> int:
        return self.conv().output_frames(frames)

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        return self.conv().input_span(first, last)

    def first_starved(self, frames: int):
        return (self, frames) if self.output_frames(frames) < 1 else None

    def min_input_frames(self) -> int:
        return self.conv().min_input_frames()

    def rate(self) -> Fraction:
        return Fraction(self.hop_length)

    def period(self) -> int:
        return self.hop_length

    def flops_per_frame(self) -> Fraction:
        return self.conv().flops_per_frame() + 10 * self.bins

    def held_elements(self, channels: int | None, channels_out: int | None, held: int) -> int:
        return self.conv().held_elements(channels, 1, held)

    def info_columns(self) -> dict:
        return {"kernel": self.n_fft, "stride": self.hop_length, "padding": self.pad}

    # -- computing -----------------------------------------------------------------------------------
    def basis(self, window):
        """The kernel ``[n_fft + 2, 1, n_fft]``: row k < bins is the real part's inverse-DFT
        row ``c_k·cos(2πkn/N)/N``, row bins + k the imaginary part's ``−c_k·sin(2πkn/N)/N``
        (c = 1 at DC and Nyquist, else 2: irfft's Hermitian sum), times the window."""
        import torch

        n = self.n_fft
        k = torch.arange(self.bins, dtype=torch.float64)[:, None]
        t = torch.arange(n, dtype=torch.float64)[None, :]
        scale = torch.full((self.bins, 1), 2.0 / n, dtype=torch.float64)
        scale[0], scale[-1] = 1.0 / n, 1.0 / n
        angle = 2 * math.pi * k * t / n
        rows = torch.cat([scale * torch.cos(angle), -scale * torch.sin(angle)]) * window.to(torch.float64)[None, :]
        return rows.to(dtype=window.dtype, device=window.device)[:, None, :]

    def fft_ready(self, x) -> bool:
        """Whether ``x``'s dtype has an FFT here (float32, float64), else the kernel is used."""
        import torch

        return x.dtype in (torch.float32, torch.float64)

    def overlap_add(self, x, window):
        """The untrimmed transposed convolution of the spectra ``x [B, n_fft + 2, T]``: each
        frame's inverse DFT times the window, overlap-added, ``[B, 1, (T − 1)·hop + n_fft]``."""
        import torch
        import torch.nn.functional as F

        frames = torch.fft.irfft(torch.complex(x[:, : self.bins], x[:, self.bins :]), n=self.n_fft, dim=1)
        frames = frames * window[None, :, None]
        size = (x.shape[-1] - 1) * self.hop_length + self.n_fft
        fold = F.fold(frames, output_size=(1, size), kernel_size=(1, self.n_fft), stride=(1, self.hop_length))
        return fold[:, :, 0, :]

    def spectrum(self, x):
        """The input frames as real and imaginary parts, ``[B, n_fft + 2, T]``."""
        import torch

        if self.input == "real_imag":
            return x
        magnitude, phase = x[:, : self.bins], x[:, self.bins :]
        magnitude = torch.clip(torch.exp(magnitude), max=self.magnitude_max)
        return torch.cat([magnitude * torch.cos(phase), magnitude * torch.sin(phase)], dim=1)

    def envelope(self, window, first: int, count: int, frames: int | None):
        """The overlap-added window² at output samples ``first … first + count − 1`` of a stream
        of ``frames`` input frames (None: as many as reach them — every sample final before flush)."""
        import torch

        squared = window.to(torch.float64) ** 2
        t = torch.arange(first, first + count, dtype=torch.int64) + self.pad
        total = torch.zeros(count, dtype=torch.float64)
        last_frame = (t // self.hop_length) if frames is None else torch.clamp(t // self.hop_length, max=frames - 1)
        for back in range(self.n_fft // self.hop_length + 1):
            i = last_frame - back  # frames i with 0 ≤ t − i·hop < n_fft
            k = t - i * self.hop_length
            ok = (i >= 0) & (k < self.n_fft) & (k >= 0)
            total += torch.where(ok, squared[k.clamp(0, self.n_fft - 1)], torch.zeros((), dtype=torch.float64))
        return total.to(dtype=window.dtype, device=window.device)

    def divide(self, y, window, first: int, frames: int | None):
        envelope = self.envelope(window, first, y.shape[-1], frames)
        if y.shape[-1] and not bool((envelope > 1e-11).all()):
            raise ConfigError(f"{self.where}: the window's overlap-added square vanishes (is the window zero?)")
        return y / envelope

    def forward(self, x, params):
        from .conv_torch import conv_transpose1d

        window = params["window"].to(dtype=x.dtype, device=x.device)
        spectrum = self.spectrum(x)
        if not self.fft_ready(x):
            return self.divide(
                conv_transpose1d(spectrum, self.basis(window), None, self.conv()), window, 0, x.shape[-1]
            )
        frames = self.conv().output_frames(x.shape[-1])
        if frames < 1:  # the kernel's path says how many frames it needs
            conv_transpose1d(spectrum[..., :0], window[None, None, :0], None, self.conv())
        y = self.overlap_add(spectrum, window)[..., self.pad : self.pad + frames]
        return self.divide(y, window, 0, x.shape[-1])

    def streamer(self, params, tail=None, kernel: str = "auto"):
        return StreamingIstft(self, params, kernel)


class StreamingIstft(StreamingModule):
    """The overlap-add streamed as its transposed convolution; each sample divided by its
    envelope once final, by its place in the stream (and, at flush, the frame count)."""

    @dataclass
    class State:
        emitted: int = 0  # output samples returned so far
        frames: int = 0  # input frames pushed so far

    poolable = True
    positions = ("emitted", "frames")

    def __init__(self, spec: IstftSpec, params: dict, kernel: str = "auto"):
        self.spec, self.params, self.kernel = spec, params, kernel
        self.window = None
        super().__init__()

    def _push(self, chunk):
        if self.window is None:  # built at the first chunk, in its dtype and on its device
            self.window = self.params["window"].to(dtype=chunk.dtype, device=chunk.device)
            conv = self.spec.conv()
            if self.spec.fft_ready(chunk):
                from .conv_torch import StreamingConvTranspose1d

                window, full = self.window, self.spec.overlap_add
                self.children = (StreamingConvTranspose1d(conv, None, None, full=lambda x: full(x, window)),)
            else:
                self.children = (conv.streamer({"weight": self.spec.basis(self.window)}, None, self.kernel),)
        self.state.frames += chunk.shape[-1]
        out = self.children[0].push(self.spec.spectrum(chunk))
        return self._divided(out, None)

    def _flush(self):
        return self._divided(self.children[0].flush(), self.state.frames)

    def steady(self) -> bool:
        """Past the first ``n_fft`` samples the envelope repeats every hop: streams whose places
        differ by whole frames divide alike."""
        return self.state.emitted + self.spec.pad >= self.spec.n_fft

    def _divided(self, y, frames):
        out = self.spec.divide(y, self.window, self.state.emitted, frames)
        self.state.emitted += y.shape[-1]
        return out
