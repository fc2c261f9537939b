"""Resampling filters as transposed convolutions: an L/M zero-delay windowed-sinc design.

A ConvTranspose1d with stride L and a low-pass kernel is a polyphase interpolator. With an odd
kernel ``K = 2·L·Z + 1`` centred on tap ``c = L·Z``, ``padding = L·Z`` and
``output_padding = L − 1``, N input frames give exactly ``L·N`` output frames and output frame t
lies at input time ``t / L`` (zero delay)::

    L_out = (N − 1)·L − 2·L·Z + (2·L·Z + 1 − 1) + (L − 1) + 1 = L·N
    y[t] = Σ_i x[i]·h[t + L·Z − i·L],  h peaks at c = L·Z  ->  x[i] lands on t = i·L

A rational factor L/M adds a ``conv1d`` with kernel 1 and stride M that keeps every M-th of
those frames: ⌈L·N/M⌉ output frames, output t at input time ``t·M/L``. When M > L the band edges
shrink by L/M, so that the filter also removes what the lower output rate cannot hold.

Frequencies are fractions of the input sample rate (0.5 = the input's Nyquist frequency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import UsageError, option
from .specs import MAX_KERNEL, MAX_STRIDE



@dataclass(frozen=True)
class SincDesign:
    """An L/M resampler: ``taps`` (float64, length ``kernel_size``) and its geometry."""

    factor: int  # L
    taps: np.ndarray
    passband: float
    stopband: float
    attenuation: float
    down: int = 1  # M

    @property
    def ratio(self) -> Fraction:
        return Fraction(self.factor, self.down)

    @property
    def kernel_size(self) -> int:
        return self.taps.shape[0]

    @property
    def half_width(self) -> int:
        return (self.kernel_size - 1) // 2

    def layer(self) -> dict:
        """The config entry of the ConvTranspose1d that applies this filter."""
        return {
            "type": "conv_transpose1d",
            "in_channels": 1,
            "out_channels": 1,
            "kernel_size": self.kernel_size,
            "stride": self.factor,
            "padding": self.half_width,
            "output_padding": self.factor - 1,
            "bias": False,
        }

    def layers(self) -> list[dict]:
        """The config's layers: the transposed convolution, then the decimation when M > 1."""
        if self.down == 1:
            return [self.layer()]
        return [self.layer(), {"type": "conv1d", "in_channels": 1, "out_channels": 1, "kernel_size": 1,
                               "stride": self.down, "bias": False}]

    def tensors(self) -> dict[str, np.ndarray]:
        """The weights, named as the config's layers are."""
        tensors = {"0.weight": self.taps.reshape(1, 1, -1)}
        if self.down > 1:
            tensors["1.weight"] = np.ones((1, 1, 1))
        return tensors


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
        raise UsageError(f"{option('factor')}: must be an integer >= 2 or a ratio L/M (e.g. 160/147), got {factor!r}") from None
    if ratio <= 0 or ratio == 1 or (ratio.denominator == 1 and ratio < 2):
        raise UsageError(f"{option('factor')}: must be an integer >= 2 or a ratio L/M other than 1, got {factor!r}")
    return ratio


def _zero_crossings(factor: int, down: int, passband: float, stopband: float, attenuation: float) -> int:
    """Zero crossings of the sinc on each side: the length Kaiser's formula asks for."""
    scale = min(1.0, factor / down)  # downsampling: the band edges follow the output rate
    transition = 2 * math.pi * scale * (stopband - passband) / factor  # rad/sample, upsampled rate
    taps_needed = (attenuation - 7.95) / (2.285 * transition) + 1
    return max(1, math.ceil((taps_needed - 1) / (2 * factor)))


def check_size(ratio: Fraction, kernel_size: int, attenuation: float) -> None:
    """Refuse, before designing, a resampler that ``run`` could not load: its kernel, or its
    stride L or decimation M, over the layer bounds."""
    problems = []
    if kernel_size > MAX_KERNEL:
        problems.append(f"a {kernel_size:,}-tap kernel at {attenuation:g} dB (at most {MAX_KERNEL:,})")
    if ratio.numerator > MAX_STRIDE or ratio.denominator > MAX_STRIDE:
        problems.append(f"a stride of {max(ratio.numerator, ratio.denominator):,} (at most {MAX_STRIDE:,})")
    if problems:
        raise UsageError(f"{option('factor', ratio)}: needs {' and '.join(problems)}; a one-stage resampler "
                         f"this long cannot run (lower {option('attenuation')}, widen the band edges, or "
                         f"resample in steps of smaller ratios)")


def design_sinc(
    factor, passband: float = 0.45, stopband: float = 0.55, attenuation: float = 140.0
) -> SincDesign:
    """Design a Kaiser-windowed sinc resampler L/M with zero delay.

    Parameters
    ----------
    factor : L (an integer ≥ 2) or a ratio L/M (``"160/147"``, a Fraction): output rate / input rate.
    passband, stopband : band edges as fractions of the input rate, ``0 < passband < 0.5 ≤
        stopband < 1 − passband`` would alias; ``stopband`` must exceed ``passband``.
    attenuation : stopband attenuation in dB (sets the window's β and the length).

    Returns
    -------
    SincDesign with taps of gain L at DC, each of the L phases summing to 1, and phase 0 an
    exact unit impulse when the cutoff is the input's Nyquist frequency (original samples kept).
    """
    ratio = parse_factor(factor)
    factor, down = ratio.numerator, ratio.denominator
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
    zeros = _zero_crossings(factor, down, passband, stopband, attenuation)
    check_size(ratio, 2 * factor * zeros + 1, attenuation)
    half = factor * zeros
    n = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = min(1.0, factor / down) * (passband + stopband) / 2  # fraction of the input rate
    ideal = 2 * cutoff * np.sinc(2 * cutoff * n / factor)
    taps = ideal * np.kaiser(2 * half + 1, kaiser_beta(attenuation))
    # each phase (the taps that one input frame lays on output frames ≡ r mod L) sums to 1
    for phase in range(factor):
        taps[phase::factor] /= taps[phase::factor].sum()
    return SincDesign(factor, taps, passband, stopband, attenuation, down)


@dataclass(frozen=True)
class Response:
    """A resampler's measured frequency response (the prototype filter at the rate L·fin).

    ``freqs`` in fractions of the input rate (0 … L/2), ``gain_db`` relative to the DC gain L;
    ``ripple_db``: the largest |gain| in the passband; ``attenuation_db``: the least attenuation
    from the stopband edge up to L/2 (where images and aliases would land).
    """

    freqs: np.ndarray
    gain_db: np.ndarray
    passband: float
    stopband: float
    ripple_db: float
    attenuation_db: float


def measure_response(taps: np.ndarray, up: int, down: int = 1, passband: float = 0.45,
                     stopband: float = 0.55) -> Response:
    """Measure ``taps`` (an L/M prototype) on a fine grid; band edges as fractions of the lower of
    the two rates, as :func:`design_sinc` places them."""
    taps = np.asarray(taps, dtype=np.float64).reshape(-1)
    size = 1 << max(16, (16 * taps.shape[0] - 1).bit_length())
    spectrum = np.abs(np.fft.rfft(taps, size)) / max(abs(taps.sum()), 1e-300)
    freqs = np.arange(spectrum.shape[0]) / size * up  # fractions of the input rate
    with np.errstate(divide="ignore"):
        gain_db = 20 * np.log10(np.maximum(spectrum, 1e-300))
    scale = min(1.0, up / down)
    pass_edge, stop_edge = passband * scale, stopband * scale
    ripple = float(np.abs(gain_db[freqs <= pass_edge]).max())
    attenuation = float(-gain_db[freqs >= stop_edge].max()) if (freqs >= stop_edge).any() else float("inf")
    return Response(freqs, gain_db, pass_edge, stop_edge, ripple, attenuation)


def sinc_config(design: SincDesign, name: str, weights_file: str) -> dict:
    """A config mapping (ready for YAML) that runs ``design``."""
    if design.down == 1:
        what = f"{design.factor}x zero-delay Kaiser-windowed sinc interpolator"
    else:
        what = f"{design.factor}/{design.down} zero-delay Kaiser-windowed sinc resampler"
    edges = "input" if design.factor >= design.down else "output"
    scale = min(1.0, design.factor / design.down)
    return {
        "name": name,
        "description": (
            f"{what}: passband {design.passband:g}, stopband {design.stopband:g} of the {edges} rate"
            f"{'' if scale == 1 else f' ({design.passband * scale:.4g}, {design.stopband * scale:.4g} of the input rate)'}, "
            f"{design.attenuation:g} dB, {design.kernel_size} taps"
        ),
        "weights": weights_file,
        "channels": "auto",
        "layers": design.layers(),
    }


def write_sinc(design: SincDesign, stem: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``<stem>.yaml`` and ``<stem>.safetensors`` (taps kept in float64) atomically."""
    import yaml

    from .audio_io import atomic_path
    from .weights import write_tensors

    stem = Path(stem)
    if stem.suffix in (".yaml", ".yml", ".safetensors"):
        stem = stem.with_suffix("")
    config_path, weights_path = stem.with_name(stem.name + ".yaml"), stem.with_name(stem.name + ".safetensors")
    for path in (config_path, weights_path):
        if path.exists() and not overwrite:
            raise UsageError(f"{path}: already exists (pass {option('overwrite')} to replace it)")
    if not config_path.parent.is_dir():
        raise UsageError(f"{config_path.parent}: folder does not exist")
    data = sinc_config(design, stem.name, weights_path.name)
    write_tensors(weights_path, design.tensors())
    with atomic_path(config_path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config_path, weights_path


# --------------------------------------------------------------------------------------------
# the resampler for a pair of rates (``run --rate``)


def cache_dir() -> Path:
    """Where designed resamplers are kept: ``$CONVT_AUDIO_CACHE``, else the platform's user cache
    folder (``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on macOS,
    ``%LOCALAPPDATA%`` on Windows) + ``convt-audio``."""
    import os
    import sys

    if os.environ.get("CONVT_AUDIO_CACHE"):
        return Path(os.environ["CONVT_AUDIO_CACHE"])
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "convt-audio"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "convt-audio" / "Cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "convt-audio"


CACHE_FORMAT = "1"  # bumped whenever the design changes: older cached taps are then redesigned


def _design_key(design_or_ratio, passband: float, stopband: float, attenuation: float) -> str:
    ratio = design_or_ratio if isinstance(design_or_ratio, Fraction) else design_or_ratio.ratio
    return f"sinc {ratio} {passband!r} {stopband!r} {attenuation!r} v{CACHE_FORMAT}"


def _checksum(taps: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(taps, dtype="<f8").tobytes()).hexdigest()


def _read_cached(path: Path, key: str) -> np.ndarray | None:
    """The taps cached at ``path`` if they are what ``key`` asks for and intact, else None."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as handle:
            meta = handle.metadata() or {}
            if meta.get("design") != key or set(handle.keys()) != {"taps"}:
                return None
            taps = handle.get_tensor("taps")
    except Exception:  # noqa: BLE001 - missing, unreadable, garbage: a cache miss
        return None
    if taps.dtype != np.float64 or taps.ndim != 1 or meta.get("sha256") != _checksum(taps):
        return None
    return taps


def _write_cached(path: Path, key: str, taps: np.ndarray) -> None:
    """Keep ``taps`` at ``path``; a cache that cannot be written (read-only, full) is skipped."""
    from .audio_io import atomic_path

    try:
        from safetensors.numpy import save_file

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            save_file({"taps": taps}, str(tmp), metadata={"design": key, "sha256": _checksum(taps)})
    except Exception:  # noqa: BLE001 - SafetensorError on a full disk, OSError, AudioError: not our job to fail
        pass


def resampler_for(input_rate, output_rate, cache: Path | None = None):
    """The config and weights that turn ``input_rate`` into ``output_rate`` (Hz).

    Equal rates: a one-tap identity (the audio is copied unchanged). An integer ratio with a
    built-in ``sinc-xL``: that config. Any other L/M: a ``design_sinc`` resampler whose taps
    are kept in the cache folder. A cache is never an authority: cached taps are used only when
    their recorded design (ratio, band edges, attenuation, format) is the one asked for and their
    SHA-256 matches, else they are designed again; the config is always built here, from the
    design. A cache that cannot be read or written only costs the design time. A ratio that no
    one-stage resampler can run is a :class:`UsageError` naming the output rate, found before
    designing anything. Returns ``(config, params)``.
    """
    from .config import builtin_configs, load_config, parse_config
    from .weights import load_params

    ratio = Fraction(output_rate) / Fraction(input_rate)
    if ratio == 1:
        config = parse_config({"name": "copy", "description": "the input, unchanged", "layers": [
            {"type": "conv_transpose1d", "in_channels": 1, "out_channels": 1, "kernel_size": 1, "bias": False}]},
            source="<copy>")
        return config, [{"weight": np.ones((1, 1, 1))}]
    name = f"sinc-x{ratio}" if ratio.denominator == 1 else f"sinc-{ratio.numerator}-{ratio.denominator}"
    if name in builtin_configs():
        config = load_config(name)
        return config, load_params(config)[0]
    passband, stopband, attenuation = 0.45, 0.55, 140.0
    try:
        check_size(ratio, 2 * ratio.numerator * _zero_crossings(ratio.numerator, ratio.denominator, passband,
                                                                  stopband, attenuation) + 1, attenuation)
    except UsageError as exc:
        detail = str(exc.args[0]).split(": ", 1)[1]
        raise UsageError(f"{option('target_rate', output_rate)}: {float(input_rate):g} Hz -> {output_rate} Hz is a "
                         f"{ratio} resampler, which {detail}") from None
    folder = cache_dir() if cache is None else Path(cache)
    key = _design_key(ratio, passband, stopband, attenuation)
    path = folder / f"{name}.safetensors"
    taps = _read_cached(path, key)
    if taps is None:
        taps = design_sinc(ratio, passband, stopband, attenuation).taps
        _write_cached(path, key, taps)
    design = SincDesign(ratio.numerator, taps, passband, stopband, attenuation, ratio.denominator)
    data = sinc_config(design, name, f"{name}.safetensors")
    del data["weights"]
    config = parse_config(data, source=f"<{name}, {path}>")
    return config, [{"weight": t} for t in design.tensors().values()]
