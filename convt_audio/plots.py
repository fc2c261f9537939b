"""Pictures people would rather look at than read: a resampler's response, two spectrograms.

matplotlib is an optional extra (``pip install 'convt-audio[plot]'``); without it these raise a
:class:`~convt_audio.core.errors.UsageError` that says so. Nothing here is needed to run audio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core.errors import AudioError, UsageError


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")  # files, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("plot needs matplotlib: pip install 'convt-audio[plot]'") from None
    return plt


def _save(figure, output: Path) -> None:
    from .io.atomic import atomic_path

    output = Path(output)
    suffix = output.suffix.lower().lstrip(".")
    if suffix not in ("png", "pdf", "svg", "jpg", "jpeg"):
        raise UsageError(f"{output}: a plot is written as .png, .pdf, .svg or .jpg")
    with atomic_path(output) as tmp:
        figure.savefig(str(tmp), dpi=120, format=suffix)


def resampler_response(config, params):
    """The measured response (:class:`~convt_audio.resampling.design.Response`) of a resampler stack, every
    stage included, or a UsageError for a stack that is not one."""
    from .resampling.chain import resampler_stages
    from .resampling.design import measure_response

    stages = resampler_stages(config.layers)
    if stages is None:
        raise UsageError(
            f"{config.name}: plot draws the response of a one-channel resampler stack (conv_transpose1d "
            f"layers, each optionally then a kernel-1 conv1d with a stride), not this stack"
        )
    measured, index = [], 0
    for stage in stages:
        up = stage[0]
        taps = np.zeros(up.receptive)
        taps[:: up.dilation] = np.asarray(params[index]["weight"], dtype=np.float64).reshape(-1)
        index += len(stage)
        measured.append((up.stride, stage[1].stride if len(stage) == 2 else 1, taps))
    return measure_response(measured)


def plot_response(config, params, output: Path, input_rate: float) -> dict:
    """Draw a resampler stack's magnitude response, measured (every stage), from 0 to the higher
    Nyquist frequency, with the passband ripple and the rejection of everything that would image
    or alias (from the lower Nyquist frequency up) annotated; return the measured figures."""
    response = resampler_response(config, params)
    plt = _pyplot()
    rate = float(input_rate)
    ratio = float(config.rate_factor())
    out_rate = rate * ratio
    low, high = min(rate, out_rate) / 2000, max(rate, out_rate) / 2000  # Nyquist frequencies, kHz
    figure, axis = plt.subplots(figsize=(10, 4.8))
    axis.plot(response.freqs * rate / 1000, response.gain_db, linewidth=0.8, color="tab:blue", label="gain")
    axis.set_xlim(0, high)
    axis.set_ylim(max(-200.0, float(response.gain_db.min()) - 5), 10)
    axis.axvspan(
        0,
        response.passband * rate / 1000,
        color="tab:green",
        alpha=0.08,
        label=f"passband to {response.passband * rate / 1000:.4g} kHz: ripple {response.ripple_db:.2g} dB",
    )
    axis.axvspan(
        response.stopband * rate / 1000,
        high,
        color="tab:red",
        alpha=0.06,
        label=f"images/aliases from {response.stopband * rate / 1000:.4g} kHz: {response.attenuation_db:.1f} dB down",
    )
    axis.axvline(low, color="gray", linestyle=":", linewidth=0.8, label=f"lower Nyquist {low:g} kHz")
    axis.axhline(-response.attenuation_db, color="tab:red", linewidth=0.8)
    axis.set_xlabel("frequency (kHz)")
    axis.set_ylabel("gain (dB)")
    axis.set_title(f"{config.name}: ×{config.rate_factor()} at {rate:g} Hz in (measured)")
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, borderaxespad=0)  # clear of the curve
    axis.grid(alpha=0.3)
    figure.tight_layout()
    _save(figure, output)
    plt.close(figure)
    return {"ripple_db": response.ripple_db, "attenuation_db": response.attenuation_db}


SPECTROGRAM_WINDOW_S = 0.02  # analysis window in seconds, the same in both panels
SPECTROGRAM_FLOOR_DB = -160.0


def spectrogram_dbfs(data: np.ndarray, rate: float, window_s: float = SPECTROGRAM_WINDOW_S):
    """Short-time magnitude spectrum in dB re full scale (a full-scale sine reads 0 dB).

    Hann windows of ``window_s`` seconds (so every file is analysed with the same resolution in
    Hz, whatever its rate) hopping by a quarter window. Returns ``(times_s, freqs_hz, db
    [freqs, frames])``, floored at :data:`SPECTROGRAM_FLOOR_DB` (silence included).
    """
    size = max(16, int(round(window_s * rate)))
    hop = max(1, size // 4)
    window = np.hanning(size)
    data = np.asarray(data, dtype=np.float64)
    padded = np.concatenate([np.zeros(size // 2), data, np.zeros(size)])
    count = max(1, (data.shape[0] - 1) // hop + 1)  # frame i is centred on sample i·hop
    frames = np.lib.stride_tricks.sliding_window_view(padded, size)[::hop][:count]
    magnitude = np.abs(np.fft.rfft(frames * window, axis=-1)) * (2.0 / window.sum())
    with np.errstate(divide="ignore"):
        db = np.maximum(20 * np.log10(np.maximum(magnitude, 1e-300)), SPECTROGRAM_FLOOR_DB)
    times = np.arange(count) * hop / rate
    freqs = np.fft.rfftfreq(size, 1.0 / rate)
    return times, freqs, db.T


def plot_spectrograms(first: Path, second: Path, output: Path, seconds: float = 30.0) -> None:
    """Draw two files' spectrograms side by side on one frequency axis (the first channel, up to
    ``seconds`` of each): time in seconds, frequency in kHz up to the higher Nyquist, dB re full
    scale on one colour bar, the same analysis window (in seconds) in both."""
    import soundfile as sf

    plt = _pyplot()
    signals = []
    for path in (first, second):
        try:
            with sf.SoundFile(str(path)) as handle:
                data = handle.read(int(seconds * handle.samplerate), dtype="float64", always_2d=True)[:, 0]
                signals.append((Path(path).name, data, handle.samplerate))
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioError(f"{path}: not a readable audio file ({exc})") from None
        if not data.shape[0]:
            raise AudioError(f"{path}: no audio frames to draw")
    top = max(rate for _, _, rate in signals) / 2000
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    image = None
    for axis, (name, data, rate) in zip(axes, signals):
        times, freqs, db = spectrogram_dbfs(data, rate)
        image = axis.pcolormesh(
            times, freqs / 1000, db, shading="auto", cmap="magma", vmin=SPECTROGRAM_FLOOR_DB, vmax=0.0, rasterized=True
        )
        axis.set_title(f"{name} ({rate} Hz)")
        axis.set_xlabel("time (s)")
        axis.set_ylim(0, top)
    axes[0].set_ylabel("frequency (kHz)")
    figure.colorbar(
        image, ax=list(axes), label=f"dB re full scale ({SPECTROGRAM_WINDOW_S * 1000:g} ms Hann windows)", pad=0.015
    )
    _save(figure, output)
    plt.close(figure)
