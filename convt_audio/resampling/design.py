"""Resampling filters as transposed convolutions: zero-delay windowed-sinc stages.

A ConvTranspose1d with stride L and a low-pass kernel is a polyphase interpolator. With an odd
kernel ``K = 2·L·Z + 1`` centred on tap ``c = L·Z``, ``padding = L·Z`` and
``output_padding = L − 1``, N input frames give exactly ``L·N`` output frames and output frame t
lies at input time ``t / L`` (zero delay)::

    L_out = (N − 1)·L − 2·L·Z + (2·L·Z + 1 − 1) + (L − 1) + 1 = L·N
    y[t] = Σ_i x[i]·h[t + L·Z − i·L],  h peaks at c = L·Z  ->  x[i] lands on t = i·L

A rational factor L/M adds a ``conv1d`` with kernel 1 and stride M that keeps every M-th of
those frames: ⌈L·N/M⌉ output frames, output t at input time ``t·M/L``.

**Alias-free by default** (sox's convention): the stopband starts at the lower of the two
Nyquist frequencies, the passband is flat (±0.01 dB) to 0.91 of it, and everything that would
image or alias is 140 dB down. Band edges are fractions of the lower of the two rates
(``passband`` 0.455, ``stopband`` 0.5); ``allow_aliasing`` gives the older 0.45/0.55 edges,
whose transition straddles the Nyquist frequency.

**Stages.** A sharp filter at a large L needs L·(taps per phase) taps: 44.1 → 48 kHz is 160/147,
~33,000 taps; 44,100 → 44,101 Hz would need 9 million. A ratio that is not an integer either
way is therefore built as two stages, each an ordinary L/M stage of the config:

    stage 1  ×U (U = 1 or 2)   the sharp filter, at a small factor     (computed by FFT)
    stage 2  L/(U·M)           a short filter: its input holds nothing
                               between the lower Nyquist and U·fin − that
                               (stage 1 removed it), so its transition
                               band is half its input rate wide         (~19 taps per phase)

U = 2 when the lower rate exceeds half the input rate (so that stage 2's transition stays wide),
else 1 (stage 1 then only filters). Both stages are zero-delay, so the stack is too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from ..core.errors import UsageError, option
from ..kinds.base import MAX_KERNEL, MAX_STRIDE

PASSBAND, STOPBAND = 0.455, 0.5  # alias-free: fractions of the lower rate (0.91 × its Nyquist, its Nyquist)
ALIASING_EDGES = (0.45, 0.55)  # the older edges, across the Nyquist frequency (allow_aliasing)
ATTENUATION = 140.0


@dataclass(frozen=True)
class Stage:
    """One L/M stage: ``taps`` (float64, the prototype at the rate L·its input rate) and its
    band edges as fractions of its input rate."""

    up: int  # L
    down: int  # M
    taps: np.ndarray
    passband: float
    stopband: float

    @property
    def kernel_size(self) -> int:
        return self.taps.shape[0]

    def layers(self) -> list[dict]:
        """The transposed convolution, then the decimation when M > 1."""
        layers = [
            {
                "type": "conv_transpose1d",
                "in_channels": 1,
                "out_channels": 1,
                "kernel_size": self.kernel_size,
                "stride": self.up,
                "padding": (self.kernel_size - 1) // 2,
                "output_padding": self.up - 1,
                "bias": False,
            }
        ]
        if self.down > 1:
            layers.append(
                {
                    "type": "conv1d",
                    "in_channels": 1,
                    "out_channels": 1,
                    "kernel_size": 1,
                    "stride": self.down,
                    "bias": False,
                }
            )
        return layers


@dataclass(frozen=True)
class SincDesign:
    """A resampler L/M: its stages (one or two) and the band edges it was asked for (fractions
    of the lower of the two rates)."""

    stages: tuple
    passband: float
    stopband: float
    attenuation: float

    @property
    def ratio(self) -> Fraction:
        ratio = Fraction(1)
        for stage in self.stages:
            ratio *= Fraction(stage.up, stage.down)
        return ratio

    @property
    def factor(self) -> int:  # L
        return self.ratio.numerator

    @property
    def down(self) -> int:  # M
        return self.ratio.denominator

    @property
    def kernel_size(self) -> int:
        """Taps in all (every stage's kernel)."""
        return sum(stage.kernel_size for stage in self.stages)

    @property
    def taps(self) -> np.ndarray:
        """The single stage's taps (a one-stage design only)."""
        assert len(self.stages) == 1, "a multi-stage design has one kernel per stage"
        return self.stages[0].taps

    def layers(self) -> list[dict]:
        return [layer for stage in self.stages for layer in stage.layers()]

    def tensors(self) -> dict[str, np.ndarray]:
        """The weights, named as the config's layers are (by position)."""
        tensors = {}
        for stage in self.stages:
            for layer in stage.layers():
                conv = layer["type"] == "conv_transpose1d"
                tensors[f"{len(tensors)}.weight"] = stage.taps.reshape(1, 1, -1) if conv else np.ones((1, 1, 1))
        return tensors

    def describe(self) -> str:
        """One line: ratio, edges, attenuation and stages."""
        kind = "interpolator" if self.down == 1 else "resampler"
        ratio = f"{self.factor}x" if self.down == 1 else f"{self.factor}/{self.down}"
        aliasing = "alias-free" if self.stopband <= 0.5 else "aliasing allowed"
        stages = ", ".join(
            f"{'x' + str(s.up) if s.down == 1 else f'{s.up}/{s.down}'} ({s.kernel_size} taps)" for s in self.stages
        )
        return (
            f"{ratio} zero-delay Kaiser-windowed sinc {kind}, {aliasing}: passband {self.passband:g}, "
            f"stopband {self.stopband:g} of the lower rate, {self.attenuation:g} dB; "
            f"{len(self.stages)} stage{'s' if len(self.stages) > 1 else ''}: {stages}"
        )


def kaiser_beta(attenuation: float) -> float:
    """Kaiser's β for a stopband attenuation in dB."""
    if attenuation > 50:
        return 0.1102 * (attenuation - 8.7)
    if attenuation >= 21:
        return 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    return 0.0


def parse_factor(factor) -> Fraction:
    """``3``, ``"3"``, ``"160/147"`` or a Fraction → the ratio in lowest terms (not 1)."""
    if isinstance(factor, bool):
        raise UsageError(f"{option('factor')}: must be an integer >= 2 or a ratio L/M, got {factor!r}")
    try:
        ratio = Fraction(factor) if not isinstance(factor, float) else Fraction(str(factor))
    except (ValueError, ZeroDivisionError, TypeError):
        raise UsageError(
            f"{option('factor')}: must be an integer >= 2 or a ratio L/M (e.g. 160/147), got {factor!r}"
        ) from None
    if ratio <= 0 or ratio == 1 or (ratio.denominator == 1 and ratio < 2):
        raise UsageError(f"{option('factor')}: must be an integer >= 2 or a ratio L/M other than 1, got {factor!r}")
    return ratio


MARGIN_DB = 4.0  # Kaiser's length formula lands a dB short of its target; measured ≥ the target with this


def _zero_crossings(up: int, passband: float, stopband: float, attenuation: float) -> int:
    """Zero crossings of the sinc on each side (taps per phase / 2): what Kaiser's formula asks
    for ``attenuation`` (+ :data:`MARGIN_DB`) across a transition from ``passband`` to
    ``stopband`` (fractions of the stage's input rate)."""
    transition = 2 * math.pi * (stopband - passband) / up  # rad/sample at the rate L·fin
    taps_needed = (attenuation + MARGIN_DB - 7.95) / (2.285 * transition) + 1
    return max(1, math.ceil((taps_needed - 1) / (2 * up)))


def _kaiser_stage(up: int, down: int, passband: float, stopband: float, attenuation: float) -> Stage:
    """A zero-delay Kaiser-windowed sinc stage; edges are fractions of its input rate. Each of
    the L phases sums to 1, so DC passes exactly."""
    half = up * _zero_crossings(up, passband, stopband, attenuation)
    n = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = (passband + stopband) / 2  # fraction of the input rate
    window = np.kaiser(2 * half + 1, kaiser_beta(attenuation + MARGIN_DB))
    taps = 2 * cutoff * np.sinc(2 * cutoff * n / up) * window
    for phase in range(up):
        taps[phase::up] /= taps[phase::up].sum()
    return Stage(up, down, taps, passband, stopband)


def plan_stages(
    ratio: Fraction, passband: float, stopband: float, attenuation: float
) -> list[tuple[int, int, float, float]]:
    """``(L, M, passband, stopband)`` per stage (edges: fractions of the stage's input rate).

    An integer ratio either way is one stage; any other is a sharp ×U stage and a short L/(U·M)
    stage (see the module's docstring).
    """
    up, down = ratio.numerator, ratio.denominator
    low = min(Fraction(1), ratio)  # the lower rate, in units of the input rate
    if up == 1 or down == 1:
        return [(up, down, passband * float(low), stopband * float(low))]
    first = 2 if 2 * low > 1 else 1
    rest = ratio / first
    kept = stopband * float(low) / first  # stage 1's stopband edge, in stage 2's input rate
    return [
        (first, 1, passband * float(low), stopband * float(low)),
        (rest.numerator, rest.denominator, min(kept, 0.5 * float(min(1, rest))), 1 - kept),
    ]


def check_size(ratio: Fraction, stages, attenuation: float) -> None:
    """Refuse, before designing, a resampler that ``run`` could not load (a kernel or a stride
    over the layer bounds)."""
    for up, down, passband, stopband in stages:
        kernel = 2 * up * _zero_crossings(up, passband, stopband, attenuation) + 1
        problems = []
        if kernel > MAX_KERNEL:
            problems.append(f"a {kernel:,}-tap kernel at {attenuation:g} dB (at most {MAX_KERNEL:,})")
        if up > MAX_STRIDE or down > MAX_STRIDE:
            problems.append(f"a stride of {max(up, down):,} (at most {MAX_STRIDE:,})")
        if problems:
            raise UsageError(
                f"{option('factor', ratio)}: needs {' and '.join(problems)}; a resampler this long "
                f"cannot run (lower {option('attenuation')}, or widen the band edges)"
            )


def check_edges(passband: float, stopband: float, attenuation: float) -> None:
    for name, value in (("passband", passband), ("stopband", stopband), ("attenuation", attenuation)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UsageError(f"{option(name)}: must be a finite number, got {value!r}")
    if not 0 < passband < stopband:
        raise UsageError(f"{option('passband')}: must be in (0, stopband), got {passband!r}")
    if not stopband < 1 - passband + 1e-12 or stopband > 1:
        raise UsageError(
            f"{option('stopband')}: must be in (passband, 1 − passband] so images miss the passband, got {stopband!r}"
        )
    if not 20 <= attenuation <= 200:
        raise UsageError(f"{option('attenuation')}: must be between 20 and 200 dB, got {attenuation!r}")


def design_sinc(
    factor, passband: float = PASSBAND, stopband: float = STOPBAND, attenuation: float = ATTENUATION
) -> SincDesign:
    """Design a zero-delay Kaiser-windowed sinc resampler L/M (one or two stages).

    Parameters
    ----------
    factor : L (an integer ≥ 2) or a ratio L/M (``"160/147"``, a Fraction): output rate / input rate.
    passband, stopband : band edges as fractions of the lower of the two rates (default 0.455
        and 0.5: flat to 0.91 × the lower Nyquist frequency, stopband from it — alias-free);
        ``stopband`` must exceed ``passband`` and stay ≤ 1 − ``passband``.
    attenuation : stopband attenuation in dB (sets each window's β and length).

    Returns
    -------
    SincDesign whose stages have taps of gain L at DC, each of the L phases summing to 1.
    """
    ratio = parse_factor(factor)
    check_edges(passband, stopband, attenuation)
    stages = plan_stages(ratio, passband, stopband, attenuation)
    check_size(ratio, stages, attenuation)
    return SincDesign(
        tuple(_kaiser_stage(up, down, p, s, attenuation) for up, down, p, s in stages), passband, stopband, attenuation
    )


@dataclass(frozen=True)
class Response:
    """A resampler's measured magnitude response, every stage included.

    ``freqs`` in fractions of the input rate, from 0 to the higher Nyquist frequency;
    ``gain_db`` relative to unity; ``ripple_db``: the largest |gain| up to the passband edge;
    ``attenuation_db``: the least attenuation from the stopband edge to the higher Nyquist
    frequency (what images or aliases keep). Edges in fractions of the input rate.
    """

    freqs: np.ndarray
    gain_db: np.ndarray
    passband: float
    stopband: float
    ripple_db: float
    attenuation_db: float


def gain_table(taps: np.ndarray) -> np.ndarray:
    """|H| / |H(0)| of one stage's taps on a 16× zero-padded rfft grid (at least 2^16 points)."""
    size = 1 << max(16, min(26, (16 * taps.shape[0] - 1).bit_length()))
    return np.abs(np.fft.rfft(taps, size)) / max(abs(taps.sum()), 1e-300)


def gain_at(table: np.ndarray, rate: float, freqs: np.ndarray) -> np.ndarray:
    """The stage's gain at ``freqs`` read off its :func:`gain_table` (the nearest bin); ``rate``:
    its taps per unit of ``freqs``' time (both in units of the input rate)."""
    size = 2 * (table.shape[0] - 1)
    bins = np.rint(np.mod(freqs / rate, 1.0) * size).astype(np.int64) % size
    return table[np.where(bins > size // 2, size - bins, bins)]


def measure_response(stages, passband: float = PASSBAND, stopband: float = STOPBAND, points: int = 1 << 15) -> Response:
    """Measure a design's stages (``[(L, M, taps), …]`` or a :class:`SincDesign`) on a fine grid
    from 0 to the higher Nyquist frequency; band edges as fractions of the lower rate."""
    if isinstance(stages, SincDesign):
        stages = [(stage.up, stage.down, stage.taps) for stage in stages.stages]
    ratio = math.prod(Fraction(up, down) for up, down, _ in stages)
    low, high = float(min(1, ratio)), float(max(1, ratio))
    freqs = np.linspace(0, high / 2, points)
    gain, rate = np.ones_like(freqs), Fraction(1)  # rate: each stage's input rate, in input rates
    for up, down, taps in stages:
        gain *= gain_at(gain_table(np.asarray(taps, dtype=np.float64).reshape(-1)), float(rate * up), freqs)
        rate *= Fraction(up, down)
    with np.errstate(divide="ignore"):
        gain_db = 20 * np.log10(np.maximum(gain, 1e-300))
    pass_edge, stop_edge = passband * low, stopband * low
    ripple = float(np.abs(gain_db[freqs <= pass_edge]).max())
    stop = freqs >= stop_edge
    attenuation = float(-gain_db[stop].max()) if stop.any() else float("inf")
    return Response(freqs, gain_db, pass_edge, stop_edge, ripple, attenuation)
