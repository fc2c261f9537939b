"""Interpolation filters as transposed convolutions: an L× zero-delay windowed-sinc design.

A ConvTranspose1d with stride L and a low-pass kernel is a polyphase interpolator. With an odd
kernel ``K = 2·L·Z + 1`` centred on tap ``c = L·Z``, ``padding = L·Z`` and
``output_padding = L − 1``, N input frames give exactly ``L·N`` output frames and output frame t
lies at input time ``t / L`` (zero delay)::

    L_out = (N − 1)·L − 2·L·Z + (2·L·Z + 1 − 1) + (L − 1) + 1 = L·N
    y[t] = Σ_i x[i]·h[t + L·Z − i·L],  h peaks at c = L·Z  ->  x[i] lands on t = i·L

Frequencies are fractions of the input sample rate (0.5 = the input's Nyquist frequency).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError

MAX_TAPS = 1 << 22  # 32 MiB of float64 taps


@dataclass(frozen=True)
class SincDesign:
    """An L× interpolator: ``taps`` (float64, length ``kernel_size``) and its geometry."""

    factor: int
    taps: np.ndarray
    passband: float
    stopband: float
    attenuation: float

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


def kaiser_beta(attenuation: float) -> float:
    """Kaiser's β for a stopband attenuation in dB."""
    if attenuation > 50:
        return 0.1102 * (attenuation - 8.7)
    if attenuation >= 21:
        return 0.5842 * (attenuation - 21) ** 0.4 + 0.07886 * (attenuation - 21)
    return 0.0


def design_sinc(
    factor: int, passband: float = 0.45, stopband: float = 0.55, attenuation: float = 140.0
) -> SincDesign:
    """Design a Kaiser-windowed sinc for L× interpolation with zero delay.

    Parameters
    ----------
    factor : L, the upsampling factor (≥ 2).
    passband, stopband : band edges as fractions of the input rate, ``0 < passband < 0.5 ≤
        stopband < 1 − passband`` would alias; ``stopband`` must exceed ``passband``.
    attenuation : stopband attenuation in dB (sets the window's β and the length).

    Returns
    -------
    SincDesign with taps of gain L at DC, each of the L phases summing to 1, and phase 0 an
    exact unit impulse when the cutoff is the input's Nyquist frequency (original samples kept).
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise UsageError(f"--factor: must be an integer >= 2, got {factor!r}")
    if not 0 < passband < stopband:
        raise UsageError(f"--passband: must be in (0, stopband), got {passband!r}")
    if not stopband < 1 - passband + 1e-12 or stopband > 1:
        raise UsageError(
            f"--stopband: must be in (passband, 1 − passband] so images miss the passband, got {stopband!r}"
        )
    if not 20 <= attenuation <= 200:
        raise UsageError(f"--attenuation: must be between 20 and 200 dB, got {attenuation!r}")
    transition = 2 * math.pi * (stopband - passband) / factor  # rad/sample at the output rate
    taps_needed = (attenuation - 7.95) / (2.285 * transition) + 1
    zeros = max(1, math.ceil((taps_needed - 1) / (2 * factor)))
    if 2 * factor * zeros + 1 > MAX_TAPS:
        raise UsageError(f"--factor {factor} at {attenuation:g} dB needs {2 * factor * zeros + 1:,} taps; "
                         f"at most {MAX_TAPS:,} are designed (a smaller factor, or a cascade of stages)")
    half = factor * zeros
    n = np.arange(-half, half + 1, dtype=np.float64)
    cutoff = (passband + stopband) / 2  # fraction of the input rate
    ideal = 2 * cutoff * np.sinc(2 * cutoff * n / factor)
    taps = ideal * np.kaiser(2 * half + 1, kaiser_beta(attenuation))
    # each phase (the taps that one input frame lays on output frames ≡ r mod L) sums to 1
    for phase in range(factor):
        taps[phase::factor] /= taps[phase::factor].sum()
    return SincDesign(factor, taps, passband, stopband, attenuation)


def sinc_config(design: SincDesign, name: str, weights_file: str) -> dict:
    """A config mapping (ready for YAML) that runs ``design``."""
    return {
        "name": name,
        "description": (
            f"{design.factor}x zero-delay Kaiser-windowed sinc interpolator: passband "
            f"{design.passband:g}, stopband {design.stopband:g} of the input rate, "
            f"{design.attenuation:g} dB, {design.kernel_size} taps"
        ),
        "weights": weights_file,
        "channels": "auto",
        "layers": [design.layer()],
    }


def write_sinc(design: SincDesign, stem: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``<stem>.yaml`` and ``<stem>.safetensors`` (taps kept in float64) atomically."""
    import torch
    import yaml

    from .audio_io import atomic_path
    from .weights import write_tensors

    stem = Path(stem)
    if stem.suffix in (".yaml", ".yml", ".safetensors"):
        stem = stem.with_suffix("")
    config_path, weights_path = stem.with_name(stem.name + ".yaml"), stem.with_name(stem.name + ".safetensors")
    for path in (config_path, weights_path):
        if path.exists() and not overwrite:
            raise UsageError(f"{path}: already exists (pass --overwrite to replace it)")
    if not config_path.parent.is_dir():
        raise UsageError(f"{config_path.parent}: folder does not exist")
    data = sinc_config(design, stem.name, weights_path.name)
    write_tensors(weights_path, {"0.weight": torch.from_numpy(design.taps).reshape(1, 1, -1)})
    with atomic_path(config_path) as tmp:
        Path(tmp).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return config_path, weights_path
