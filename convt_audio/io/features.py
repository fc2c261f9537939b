"""The features a vocoder expects: a config's ``features:`` recipe and the log-mel it describes.

A trained vocoder decodes only the features it was trained on. The recipe says how they are
made, as the authors' code makes them (HiFi-GAN's ``meldataset.mel_spectrogram``, MelGAN's
``Audio2Mel``, BigVGAN's ``mel_spectrogram``, parallel-wavegan's ``logmelfilterbank``):

    audio ─▶ reflect padding ─▶ |STFT| (Hann window) ─▶ mel filterbank ─▶ log(max(·, clamp)) ─▶ (x − mean)/scale

:class:`MelRecipe` holds the numbers; :func:`mel_filterbank` is librosa's ``filters.mel``
(Slaney or HTK scale, Slaney area normalisation or none), in float32 as librosa returns it;
:class:`MelStream` computes the frames block by block with the same torch operations as the
official code, so ``convt-audio mel`` followed by ``run`` reproduces a checkpoint's own
copy-synthesis pipeline.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..core.errors import ConfigError

MAX_N_FFT = 1 << 16
MAX_N_MELS = 512
MAX_FEATURE_RATE = 768000
PADDINGS = ("half", "center")  # (n_fft − hop)/2 per side, centre off (HiFi-GAN, MelGAN, BigVGAN) | n_fft/2 (librosa)
MEL_SCALES = ("slaney", "htk")
LOG_BASES = ("e", "10")


@dataclass(frozen=True)
class MelRecipe:
    """How a vocoder's log-mel features are computed (README.md, docs/vocoders.md)."""

    sample_rate: int
    n_fft: int
    hop_length: int
    win_length: int
    n_mels: int
    fmin: float = 0.0
    fmax: float | None = None  # None: sample_rate / 2
    mel_scale: str = "slaney"  # librosa htk=False
    mel_norm: str | None = "slaney"  # librosa's area normalisation, or null
    padding: str = "half"
    magnitude_eps: float = 1e-9  # |X| = sqrt(re² + im² + eps): HiFi-GAN's and BigVGAN's 1e-9; MelGAN 0
    log: str = "e"
    clamp: float = 1e-5  # log(max(mel, clamp))
    stats: str | None = None  # a .npz with ``mean`` and ``scale`` (n_mels,): (log mel − mean) / scale

    @classmethod
    def from_config(cls, data: Any, base_dir: Path | None = None) -> "MelRecipe":
        if not isinstance(data, Mapping):
            raise ConfigError(f"features: must be a mapping of the mel recipe's numbers, got {data!r}")
        names = {f.name for f in fields(cls)}
        for key in data:
            if key not in names:
                raise ConfigError(f"features.{key}: unknown key (allowed: {sorted(names)})")
        for f in fields(cls):
            if f.name not in data and f.default is f.default_factory:  # dataclasses.MISSING for both
                raise ConfigError(f"features.{f.name}: required")
        values = dict(data)
        if values.get("stats") is not None and not isinstance(values["stats"], str):
            raise ConfigError(f"features.stats: a path to an .npz of mean and scale, got {values['stats']!r}")
        if values.get("stats") is not None and base_dir is not None:
            values["stats"] = str(base_dir / values["stats"])
        recipe = cls(**values)
        recipe.validate()
        return recipe

    def validate(self) -> None:
        for name in ("sample_rate", "n_fft", "hop_length", "win_length", "n_mels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"features.{name}: must be a positive integer, got {value!r}")
        for name, most in (("n_fft", MAX_N_FFT), ("n_mels", MAX_N_MELS), ("sample_rate", MAX_FEATURE_RATE)):
            if getattr(self, name) > most:
                raise ConfigError(f"features.{name}: at most {most}, got {getattr(self, name)}")
        if self.win_length > self.n_fft:
            raise ConfigError(f"features.win_length: {self.win_length} is longer than n_fft {self.n_fft}")
        if self.hop_length > self.n_fft:
            raise ConfigError(
                f"features.hop_length: {self.hop_length} is longer than n_fft {self.n_fft} (samples between frames "
                f"would be skipped)"
            )
        nyquist = self.sample_rate / 2
        fmax = nyquist if self.fmax is None else self.fmax
        for name, value in (("fmin", self.fmin), ("fmax", fmax), ("magnitude_eps", self.magnitude_eps)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"features.{name}: must be a number >= 0, got {value!r}")
        if not self.fmin < fmax <= nyquist:
            raise ConfigError(f"features: needs 0 <= fmin < fmax <= {nyquist:g} Hz, got fmin {self.fmin}, fmax {fmax}")
        if not isinstance(self.clamp, (int, float)) or isinstance(self.clamp, bool) or not 0 < self.clamp < math.inf:
            raise ConfigError(f"features.clamp: must be a number > 0 (the log's floor), got {self.clamp!r}")
        for name, allowed in (("padding", PADDINGS), ("mel_scale", MEL_SCALES), ("log", LOG_BASES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"features.{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        if self.mel_norm not in ("slaney", None):
            raise ConfigError(f"features.mel_norm: {self.mel_norm!r} is not one of ['slaney', null]")

    def memory_bytes(self) -> int:
        """What computing the features holds at most: the filterbank (and librosa's float64 ramps
        while it is built) and one block of STFT frames (:attr:`MelStream.block_frames`)."""
        bins = self.n_fft // 2 + 1
        frames = block_frames(self)
        return self.n_mels * bins * 4 + (self.n_mels + 2) * bins * 8 + frames * bins * 8 * 3 + frames * self.n_fft * 4

    @property
    def pad(self) -> int:
        """Samples of reflection added at each end."""
        return self.n_fft // 2 if self.padding == "center" else (self.n_fft - self.hop_length) // 2

    def frames_for(self, samples: int) -> int:
        """Mel frames for ``samples`` audio samples (0 when too short)."""
        padded = samples + 2 * self.pad
        return 0 if padded < self.n_fft else 1 + (padded - self.n_fft) // self.hop_length

    def describe(self) -> str:
        log = "ln" if self.log == "e" else "log10"
        fmax = self.sample_rate / 2 if self.fmax is None else self.fmax
        return (
            f"{self.n_mels}-band log-mel at {self.sample_rate} Hz: n_fft {self.n_fft}, hop {self.hop_length}, "
            f"win {self.win_length} (Hann), {self.fmin:g}-{fmax:g} Hz, {self.mel_scale} scale, "
            f"norm {self.mel_norm}, {log}(max(mel, {self.clamp:g})), padding {self.padding} ({self.pad} per side)"
            + (f", normalised by {Path(self.stats).name}" if self.stats else "")
        )


def _hz_to_mel(hz, htk: bool):
    hz = np.asanyarray(hz, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + hz / 700.0)
    f_sp = 200.0 / 3
    mels = hz / f_sp
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-300) / min_log_hz) / logstep, mels)


def _mel_to_hz(mels, htk: bool):
    mels = np.asanyarray(mels, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz, logstep = 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), freqs)


def mel_filterbank(recipe: MelRecipe) -> np.ndarray:
    """``(n_mels, n_fft/2 + 1)`` float32 triangular filters, as ``librosa.filters.mel`` makes them."""
    htk = recipe.mel_scale == "htk"
    fmax = recipe.sample_rate / 2 if recipe.fmax is None else recipe.fmax
    weights = np.zeros((recipe.n_mels, 1 + recipe.n_fft // 2), dtype=np.float32)
    fftfreqs = np.fft.rfftfreq(n=recipe.n_fft, d=1.0 / recipe.sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(recipe.fmin, htk), _hz_to_mel(fmax, htk), recipe.n_mels + 2), htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    for i in range(recipe.n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    if recipe.mel_norm == "slaney":
        enorm = 2.0 / (mel_f[2 : recipe.n_mels + 2] - mel_f[: recipe.n_mels])
        weights *= enorm[:, np.newaxis]
    return weights


def npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of an .npz's arrays from their headers, without reading their data."""
    shapes = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if not member.endswith(".npy"):
                continue
            with archive.open(member) as handle:
                version = np.lib.format.read_magic(handle)
                if version == (1, 0):
                    shape, _, _ = np.lib.format.read_array_header_1_0(handle)
                else:
                    shape, _, _ = np.lib.format.read_array_header_2_0(handle)
            shapes[member[: -len(".npy")]] = tuple(shape)
    return shapes


MIN_SCALE = 1e-10  # a stats scale below this divides the features into inf (1e-45 did)


def read_stats(recipe: MelRecipe) -> tuple[np.ndarray, np.ndarray] | None:
    """The recipe's ``mean`` and ``scale``, each ``n_mels`` finite numbers (scale ≥ 1e-10), read
    only after the archive's headers say they are that size (a small compressed file can hold a
    huge array)."""
    if recipe.stats is None:
        return None
    where = f"features.stats: {recipe.stats}"
    try:
        if not Path(recipe.stats).is_file():
            raise ConfigError(f"{where}: cannot read mean and scale (no such file)")
        if not zipfile.is_zipfile(recipe.stats):
            raise ConfigError(
                f"{where}: cannot read mean and scale (not an .npz archive: np.savez(path, mean=..., scale=...))"
            )
        shapes = npz_shapes(Path(recipe.stats))
        for key in ("mean", "scale"):
            if key not in shapes:
                raise ConfigError(f"{where}: holds no {key!r} array (it has {sorted(shapes)})")
            if math.prod(shapes[key]) != recipe.n_mels:
                raise ConfigError(f"{where}: {key} has shape {shapes[key]}; expected {recipe.n_mels} numbers")
        with np.load(recipe.stats, allow_pickle=False) as archive:
            mean, scale = (np.asarray(archive[k], dtype=np.float32).reshape(-1) for k in ("mean", "scale"))
    except ConfigError:
        raise
    except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        raise ConfigError(f"{where}: cannot read mean and scale ({str(exc).splitlines()[0]})") from None
    if not np.isfinite(mean).all() or not np.isfinite(scale).all() or not (scale >= MIN_SCALE).all():
        raise ConfigError(f"{where}: mean and scale must be finite numbers, scale >= {MIN_SCALE:g}")
    return mean, scale


def block_frames(recipe: MelRecipe) -> int:
    """Frames per torch.stft call: 1024, fewer for long windows (about 4 M spectrum values a call)."""
    return max(1, min(1024, (1 << 22) // (recipe.n_fft // 2 + 1)))


class MelStream:
    """Log-mel frames of one mono signal, pushed in blocks: ``push(samples) -> (n_mels, k)`` frames
    now complete, ``flush() -> the rest``. Every frame is computed exactly as the whole-signal
    pipeline computes it (reflect padding, ``torch.stft`` without centring on the padded
    signal, magnitude, filterbank, log)."""

    def __init__(self, recipe: MelRecipe):
        import torch

        self.torch, self.recipe = torch, recipe
        self.block_frames = block_frames(recipe)  # frames per torch.stft call
        self.window = torch.hann_window(recipe.win_length).float()
        self.basis = torch.from_numpy(mel_filterbank(recipe)).float()
        self.stats = read_stats(recipe)
        self.buffer = np.zeros(0, dtype=np.float32)  # padded signal not yet consumed
        self.head: np.ndarray | None = self.buffer  # the first samples; None once the left reflection is made
        self.received = 0

    def _frames(self, padded: np.ndarray) -> np.ndarray:
        torch, r = self.torch, self.recipe
        x = torch.from_numpy(np.ascontiguousarray(padded))[None]
        spec = torch.stft(
            x, r.n_fft, hop_length=r.hop_length, win_length=r.win_length, window=self.window,
            center=False, normalized=False, onesided=True, return_complex=True,
        )  # fmt: skip
        magnitude = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + r.magnitude_eps)
        mel = torch.matmul(self.basis, magnitude)
        mel = torch.log(torch.clamp(mel, min=r.clamp)) if r.log == "e" else torch.log10(torch.clamp(mel, min=r.clamp))
        out = mel[0].numpy()
        if self.stats is not None:
            mean, scale = self.stats
            out = (out - mean[:, None]) / scale[:, None]
        return out.astype(np.float32, copy=False)

    def _run(self, final: bool) -> np.ndarray:
        r = self.recipe
        span = lambda frames: (frames - 1) * r.hop_length + r.n_fft  # noqa: E731
        outs = []
        while True:
            available = 0 if len(self.buffer) < r.n_fft else 1 + (len(self.buffer) - r.n_fft) // r.hop_length
            if not final:  # keep the last pad + 1 samples: the right reflection copies them
                available = min(available, max(0, (len(self.buffer) - r.pad - 1) // r.hop_length))
            count = min(self.block_frames, available)
            if count < (1 if final else self.block_frames):
                break
            outs.append(self._frames(self.buffer[: span(count)]))
            self.buffer = self.buffer[count * r.hop_length :]
        return np.concatenate(outs, axis=1) if outs else np.zeros((r.n_mels, 0), dtype=np.float32)

    def push(self, samples: np.ndarray) -> np.ndarray:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.received += samples.shape[0]
        if self.head is not None:
            self.head = np.concatenate([self.head, samples])
            if len(self.head) <= self.recipe.pad:  # the reflection needs pad + 1 samples
                return np.zeros((self.recipe.n_mels, 0), dtype=np.float32)
            left = self.head[1 : self.recipe.pad + 1][::-1]
            self.buffer, self.head = np.concatenate([left, self.head]), None
            return self._run(final=False)
        self.buffer = np.concatenate([self.buffer, samples])
        return self._run(final=False)

    def flush(self) -> np.ndarray:
        pad = self.recipe.pad
        if self.head is not None or self.received <= pad:
            raise ConfigError(
                f"the audio is {self.received} samples long; the recipe's reflect padding needs more than {pad}"
            )
        tail = self.buffer[-pad - 1 : -1][::-1] if pad else self.buffer[:0]
        self.buffer = np.concatenate([self.buffer, tail])
        return self._run(final=True)
