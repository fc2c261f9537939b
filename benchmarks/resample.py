"""convt-audio's resamplers vs the ones people use, for integer and rational rate pairs.

Quality, per pair fin → fout (band = 0.45 × the lower of the two rates):
- SNR of the output against the analytic signal, for a sum of 20 sines in the band (edges trimmed);
- passband ripple: the largest gain error in dB for tones from 0.01 to 0.45 × the lower rate;
- image rejection (upsampling): the level of the image of a 0.44 × fin tone (at fin − f, folded
  into the output band) below the tone.
Speed: output samples per second on a 20-minute file, in-process and as whole processes
(read, resample, write PCM_16: ``convt-audio run -r FOUT`` vs the same few lines around soxr or
scipy), as ratios against soxr HQ.

Peers: soxr HQ and VHQ, scipy.signal.resample_poly, torchaudio.functional.resample when it can
be imported beside this torch. Needs the [bench] extra. Usage: python benchmarks/resample.py
[--quick] [--pairs 44100:48000,16000:48000]
"""

from __future__ import annotations

import argparse
import sys
from fractions import Fraction
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import convt_audio, median_process, median_time, run_process, table  # noqa: E402

from convt_audio.design import resampler_for  # noqa: E402
from convt_audio.engines import build_engine  # noqa: E402

PAIRS = ((16000, 32000), (16000, 48000), (16000, 64000), (44100, 48000), (16000, 44100), (22050, 48000),
         (48000, 44100))


def ours(fin: int, fout: int):
    config, params = resampler_for(fin, fout)
    engine = build_engine(config, params, "cpu", "float32")

    def resample(x: np.ndarray) -> np.ndarray:
        stream = engine.open_stream(1)
        size = engine.preferred_chunk()
        parts = [stream.push(x[None, None, i : i + size]) for i in range(0, x.shape[0], size)]
        parts.append(stream.flush())
        return np.concatenate(parts, axis=-1)[0, 0]

    return config.name, resample


def peers(fin: int, fout: int) -> dict:
    name, method = ours(fin, fout)
    methods = {f"convt-audio {name}": method}
    ratio = Fraction(fout, fin)
    try:
        import soxr

        methods["soxr HQ"] = lambda x: soxr.resample(x, fin, fout, quality="HQ")
        methods["soxr VHQ"] = lambda x: soxr.resample(x, fin, fout, quality="VHQ")
    except ImportError:
        print("soxr not installed (pip install -e '.[bench]')")
    try:
        from scipy.signal import resample_poly

        methods["scipy resample_poly"] = lambda x: resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)
    except ImportError:
        print("scipy not installed (pip install -e '.[bench]')")
    try:
        import torch
        import torchaudio.functional as AF

        methods["torchaudio resample"] = lambda x: AF.resample(torch.from_numpy(x), fin, fout).numpy()
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


def folded(freq: float, rate: float) -> float:
    """Where a frequency lands in a signal sampled at ``rate`` (aliases folded into [0, rate/2])."""
    freq = freq % rate
    return rate - freq if freq > rate / 2 else freq


def quality(method, fin: int, fout: int) -> tuple[float, float, float | None]:
    rng = np.random.default_rng(0)
    frames = fin * 5
    band = 0.45 * min(fin, fout)
    freqs = rng.uniform(20, band, 20)
    phases = rng.uniform(0, 2 * np.pi, 20)
    amps = rng.uniform(0.2, 1, 20)
    amps /= amps.sum() * 1.01
    x = sines(frames, fin, freqs, phases, amps).astype(np.float32)
    out_frames = frames * fout // fin
    want = sines(out_frames, fout, freqs, phases, amps)
    y = np.asarray(method(x), dtype=np.float64)[:out_frames]
    edge = fout // 8
    err = y[edge:-edge] - want[edge:-edge]
    snr = 10 * np.log10((want[edge:-edge] ** 2).sum() / (err ** 2).sum())
    ripple = 0.0
    for f in np.linspace(0.01, 0.45, 23) * min(fin, fout):
        x = (0.5 * np.sin(2 * np.pi * f * np.arange(frames) / fin)).astype(np.float32)
        y = np.asarray(method(x), dtype=np.float64)
        ripple = max(ripple, abs(20 * np.log10(tone_gain(y, f, fout, edge) / 0.5)))
    if fout <= fin:
        return snr, ripple, None
    f = 0.44 * fin
    x = (0.5 * np.sin(2 * np.pi * f * np.arange(frames) / fin)).astype(np.float32)
    y = np.asarray(method(x), dtype=np.float64)
    image = 20 * np.log10(tone_gain(y, folded(fin - f, fout), fout, edge) / tone_gain(y, f, fout, edge))
    return snr, ripple, -image


SOXR_SCRIPT = """
import sys, soundfile as sf, soxr
x, rate = sf.read(sys.argv[1], dtype="float32")
y = soxr.resample(x, rate, int(sys.argv[3]), quality=sys.argv[4])
sf.write(sys.argv[2], y, int(sys.argv[3]), subtype="PCM_16")
"""
SCIPY_SCRIPT = """
import sys, soundfile as sf
from fractions import Fraction
from scipy.signal import resample_poly
x, rate = sf.read(sys.argv[1], dtype="float32")
r = Fraction(int(sys.argv[3]), rate)
y = resample_poly(x, r.numerator, r.denominator)
sf.write(sys.argv[2], y, int(sys.argv[3]), subtype="PCM_16")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2-minute file, fewer repeats")
    parser.add_argument("--pairs", help="comma-separated FIN:FOUT pairs (default: all)")
    args = parser.parse_args()
    pairs = PAIRS if not args.pairs else [tuple(int(r) for r in p.split(":")) for p in args.pairs.split(",")]
    minutes = 2 if args.quick else 20
    repeats = 2 if args.quick else 3
    work = Path(tempfile.mkdtemp(prefix="convt-resample-"))
    speech, rate = sf.read(str(Path(__file__).resolve().parents[1] / "samples" / "speech-16k.wav"),
                           dtype="float32")
    (work / "soxr_script.py").write_text(SOXR_SCRIPT)
    (work / "scipy_script.py").write_text(SCIPY_SCRIPT)

    rows = []
    for fin, fout in pairs:
        # the speech sample, resampled to fin once by soxr VHQ, tiled to the length
        import soxr

        voice = soxr.resample(speech, rate, fin, quality="VHQ").astype(np.float32)
        long = np.tile(voice, fin * 60 * minutes // voice.shape[0] + 1)[: fin * 60 * minutes]
        wav = work / f"long{fin}.wav"
        sf.write(str(wav), long, fin, subtype="PCM_16")
        methods = peers(fin, fout)
        ours_name = next(iter(methods))
        out_samples = long.shape[0] * fout // fin
        speeds = {name: out_samples / median_time(lambda m=m: m(long), repeats) for name, m in methods.items()}
        run = [convt_audio(), "run", str(wav), "-r", str(fout), "-o", str(work / "c.wav"), "--overwrite", "-q",
               "--subtype", "PCM_16"]
        run_process(run)  # designs the resampler into the cache once: the timed runs read it
        processes = {
            ours_name: run,
            "soxr HQ": [sys.executable, str(work / "soxr_script.py"), str(wav), str(work / "s.wav"), str(fout), "HQ"],
            "soxr VHQ": [sys.executable, str(work / "soxr_script.py"), str(wav), str(work / "s.wav"), str(fout), "VHQ"],
            "scipy resample_poly": [sys.executable, str(work / "scipy_script.py"), str(wav), str(work / "p.wav"),
                                    str(fout)],
        }
        walls = {name: median_process(cmd, repeats)[0] for name, cmd in processes.items() if name in methods}
        for name, method in methods.items():
            snr, ripple, image = quality(method, fin, fout)
            wall = walls.get(name)
            rows.append([f"{fin}→{fout}", name, f"{snr:.1f}", f"{ripple:.1e}", "-" if image is None else f"{image:.1f}",
                         f"{speeds[name] / 1e6:.0f}",
                         f"{speeds[name] / speeds['soxr HQ']:.2f}" if "soxr HQ" in speeds else "-",
                         f"{wall:.2f}" if wall else "-",
                         f"{wall / walls['soxr HQ']:.2f}" if wall and "soxr HQ" in walls else "-"])
        print(table(rows[-len(methods):], ["Hz", "method", "SNR dB", "ripple dB", "image rej dB", "Msamples/s",
                                           "× soxr HQ speed", "process s", "× soxr HQ wall"]), flush=True)
    print(f"\nquality on 5 s of sines; speed on a {minutes}-minute speech file (PCM_16 out); medians of {repeats}")
    print(table(rows, ["Hz", "method", "SNR dB", "ripple dB", "image rej dB", "Msamples/s",
                       "× soxr HQ speed", "process s", "× soxr HQ wall"]))


if __name__ == "__main__":
    main()
