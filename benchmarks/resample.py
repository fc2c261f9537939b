"""Built-in sinc interpolators vs the resamplers people use: quality and speed, one table.

Quality, per factor L (16 kHz input):
- SNR of the output against the analytic signal, for a sum of 20 sines below 0.45 × the input
  rate (edges trimmed);
- passband ripple: the largest gain error in dB for tones from 0.01 to 0.45 × the input rate;
- image rejection: the level of the image of a 0.44 × rate tone (at 0.56 × rate) below the tone.
Speed: output samples per second on a 20-minute file, in-process and as whole processes
(read, resample, write PCM_16), as ratios against soxr HQ.

Peers: soxr HQ and VHQ, scipy.signal.resample_poly, torchaudio.functional.resample when it can
be imported beside this torch. Needs the [bench] extra. Usage: python benchmarks/resample.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import convt_audio, median_process, median_time, table  # noqa: E402

from convt_audio.config import load_config  # noqa: E402
from convt_audio.engines import build_engine  # noqa: E402
from convt_audio.weights import load_params  # noqa: E402

RATE = 16000
FACTORS = (2, 3, 4)


def ours(factor: int):
    config = load_config(f"sinc-x{factor}")
    engine = build_engine(config, load_params(config)[0], "cpu", "float32")

    def resample(x: np.ndarray) -> np.ndarray:
        stream = engine.open_stream(1)
        size = engine.preferred_chunk()
        parts = [stream.push(x[None, None, i : i + size]) for i in range(0, x.shape[0], size)]
        parts.append(stream.flush())
        return np.concatenate(parts, axis=-1)[0, 0]

    return resample


def peers(factor: int) -> dict:
    methods = {f"convt-audio sinc-x{factor}": ours(factor)}
    try:
        import soxr

        methods["soxr HQ"] = lambda x: soxr.resample(x, RATE, RATE * factor, quality="HQ")
        methods["soxr VHQ"] = lambda x: soxr.resample(x, RATE, RATE * factor, quality="VHQ")
    except ImportError:
        print("soxr not installed (pip install -e '.[bench]')")
    try:
        from scipy.signal import resample_poly

        methods["scipy resample_poly"] = lambda x: resample_poly(x, factor, 1).astype(np.float32)
    except ImportError:
        print("scipy not installed (pip install -e '.[bench]')")
    try:
        import torch
        import torchaudio.functional as AF

        methods["torchaudio resample"] = lambda x: AF.resample(
            torch.from_numpy(x), RATE, RATE * factor).numpy()
    except Exception as exc:  # ImportError, or an operator mismatch with this torch
        print(f"torchaudio: not usable here ({type(exc).__name__}); skipped")
    return methods


def sines(frames: int, rate: float, freqs, phases, amps) -> np.ndarray:
    t = np.arange(frames) / rate
    return (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t[None] + phases[:, None])).sum(0)


def tone_gain(y: np.ndarray, freq: float, rate: float, edge: int) -> float:
    """Amplitude of a sinusoid of known frequency in y, by least squares (edges trimmed)."""
    t = np.arange(y.shape[0])[edge:-edge] / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], 1)
    coef, *_ = np.linalg.lstsq(basis, y[edge:-edge], rcond=None)
    return float(np.hypot(*coef))


def quality(method, factor: int) -> tuple[float, float, float]:
    rng = np.random.default_rng(0)
    frames = RATE * 5
    freqs = rng.uniform(20, 0.45 * RATE, 20)
    phases = rng.uniform(0, 2 * np.pi, 20)
    amps = rng.uniform(0.2, 1, 20)
    amps /= amps.sum() * 1.01
    x = sines(frames, RATE, freqs, phases, amps).astype(np.float32)
    want = sines(frames * factor, RATE * factor, freqs, phases, amps)
    y = np.asarray(method(x), dtype=np.float64)[: frames * factor]
    edge = 2000 * factor
    err = y[edge:-edge] - want[edge:-edge]
    snr = 10 * np.log10((want[edge:-edge] ** 2).sum() / (err ** 2).sum())
    ripple = 0.0
    for f in np.linspace(0.01, 0.45, 23) * RATE:
        x = (0.5 * np.sin(2 * np.pi * f * np.arange(frames) / RATE)).astype(np.float32)
        y = np.asarray(method(x), dtype=np.float64)
        ripple = max(ripple, abs(20 * np.log10(tone_gain(y, f, RATE * factor, edge) / 0.5)))
    f = 0.44 * RATE
    x = (0.5 * np.sin(2 * np.pi * f * np.arange(frames) / RATE)).astype(np.float32)
    y = np.asarray(method(x), dtype=np.float64)
    image = 20 * np.log10(tone_gain(y, RATE - f, RATE * factor, edge) / tone_gain(y, f, RATE * factor, edge))
    return snr, ripple, -image


SOXR_SCRIPT = """
import sys, soundfile as sf, soxr
x, rate = sf.read(sys.argv[1], dtype="float32")
y = soxr.resample(x, rate, rate * int(sys.argv[3]), quality=sys.argv[4])
sf.write(sys.argv[2], y, rate * int(sys.argv[3]), subtype="PCM_16")
"""
SCIPY_SCRIPT = """
import sys, soundfile as sf
from scipy.signal import resample_poly
x, rate = sf.read(sys.argv[1], dtype="float32")
y = resample_poly(x, int(sys.argv[3]), 1)
sf.write(sys.argv[2], y, rate * int(sys.argv[3]), subtype="PCM_16")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2-minute file, fewer repeats")
    args = parser.parse_args()
    minutes = 2 if args.quick else 20
    repeats = 2 if args.quick else 3
    work = Path(tempfile.mkdtemp(prefix="convt-resample-"))
    speech, rate = sf.read(str(Path(__file__).resolve().parents[1] / "samples" / "speech-16k.wav"),
                           dtype="float32")
    assert rate == RATE
    long = np.tile(speech, RATE * 60 * minutes // speech.shape[0] + 1)[: RATE * 60 * minutes]
    wav = work / "long.wav"
    sf.write(str(wav), long, RATE, subtype="PCM_16")
    (work / "soxr_script.py").write_text(SOXR_SCRIPT)
    (work / "scipy_script.py").write_text(SCIPY_SCRIPT)

    rows = []
    for factor in FACTORS:
        methods = peers(factor)
        speeds = {name: long.shape[0] * factor / median_time(lambda m=m: m(long), repeats)
                  for name, m in methods.items()}
        processes = {
            f"convt-audio sinc-x{factor}": [convt_audio(), "run", str(wav), "-c", f"sinc-x{factor}", "-o",
                                            str(work / "c.wav"), "--overwrite", "-q", "--subtype", "PCM_16"],
            "soxr HQ": [sys.executable, str(work / "soxr_script.py"), str(wav), str(work / "s.wav"), str(factor), "HQ"],
            "soxr VHQ": [sys.executable, str(work / "soxr_script.py"), str(wav), str(work / "s.wav"), str(factor), "VHQ"],
            "scipy resample_poly": [sys.executable, str(work / "scipy_script.py"), str(wav), str(work / "p.wav"),
                                    str(factor)],
        }
        walls = {name: median_process(cmd, repeats)[0] for name, cmd in processes.items() if name in methods}
        for name, method in methods.items():
            snr, ripple, image = quality(method, factor)
            wall = walls.get(name)
            rows.append([f"x{factor}", name, f"{snr:.1f}", f"{ripple:.1e}", f"{image:.1f}",
                         f"{speeds[name] / 1e6:.0f}", f"{speeds[name] / speeds['soxr HQ']:.2f}" if "soxr HQ" in speeds else "-",
                         f"{wall:.2f}" if wall else "-",
                         f"{wall / walls['soxr HQ']:.2f}" if wall and "soxr HQ" in walls else "-"])
    print(f"16 kHz input; quality on 5 s of sines; speed on a {minutes}-minute speech file; medians of {repeats}")
    print(table(rows, ["L", "method", "SNR dB", "ripple dB", "image rej dB", "Msamples/s",
                       "× soxr HQ speed", "process s", "× soxr HQ wall"]))


if __name__ == "__main__":
    main()
