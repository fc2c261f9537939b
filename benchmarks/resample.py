"""convt-audio's resamplers against soxr HQ and VHQ where sox users look: tones up to 0.99 × Nyquist,
tones that must vanish on the way down, whole-process CPU time and peak memory.

Quality, per rate pair fin → fout, all three in this process on the same float32 tones (1 s,
amplitude 0.5, the middle 80 % measured):
- spurious: everything but the tone after a least-squares fit of it, dB re the tone, for tones at
  0.1, 0.5, 0.9, 0.95, 0.99 × the lower Nyquist frequency, and on the way down for tones between
  the two Nyquist frequencies (those must vanish: all of the output is spurious);
- gain at 0.9 × the lower Nyquist frequency (the passband's end).
Cost, whole processes on a 10-minute stereo PCM_16 file (music-like: two tones and noise): CPU
time (user + sys) and peak RSS of ``convt-audio run IN -r FOUT -o OUT`` against python-soxr reading
and writing the same file (soundfile + soxr.resample + soundfile, PCM_16 out), medians of
``--repeats``; with ``--busy``, measured again beside a CPU-bound process.

Needs the [bench] extra (soxr). Usage: python benchmarks/resample.py [--quick] [--busy]
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, convt_audio, scratch, table  # noqa: E402

from convt_audio.model.engines import build_engine  # noqa: E402
from convt_audio.model.resamplers import resampler_for  # noqa: E402

TONE_PAIRS = ((44100, 48000), (48000, 44100), (16000, 48000), (96000, 44100), (48048, 48000), (44100, 47999))
COST_PAIRS = ((44100, 48000), (48000, 44100), (16000, 48000), (96000, 44100))

SOXR_SCRIPT = """
import sys, soundfile as sf, soxr
x, rate = sf.read(sys.argv[1], dtype="float32")
y = soxr.resample(x, rate, int(sys.argv[3]), quality=sys.argv[4])
sf.write(sys.argv[2], y, int(sys.argv[3]), subtype="PCM_16")
"""


def ours(fin: int, fout: int):
    config, params = resampler_for(fin, fout)
    engine = build_engine(config, params, "cpu", "float32")

    def resample(x: np.ndarray) -> np.ndarray:
        stream = engine.open_stream(1)
        size = engine.preferred_chunk()
        parts = [stream.push(x[None, None, i : i + size]) for i in range(0, x.shape[0], size)] + [stream.flush()]
        return np.concatenate(parts, axis=-1)[0, 0]

    return resample


def methods(fin: int, fout: int) -> dict:
    import soxr

    return {
        "convt-audio": ours(fin, fout),
        "soxr HQ": lambda x: soxr.resample(x, fin, fout, quality="HQ"),
        "soxr VHQ": lambda x: soxr.resample(x, fin, fout, quality="VHQ"),
    }


def fit(y: np.ndarray, rate: float, frequency: float) -> tuple[np.ndarray, float]:
    """The middle 80 % of ``y`` less the least-squares tone at ``frequency``, and its amplitude."""
    keep = slice(y.shape[0] // 10, y.shape[0] - y.shape[0] // 10)
    t = np.arange(y.shape[0])[keep] / rate
    y = np.asarray(y, dtype=np.float64)[keep]
    if frequency >= rate / 2:
        return y, 0.0
    basis = np.stack([np.sin(2 * np.pi * frequency * t), np.cos(2 * np.pi * frequency * t)], 1)
    coef = np.linalg.lstsq(basis, y, rcond=None)[0]
    return y - basis @ coef, float(np.hypot(*coef))


def tones(fin: int, fout: int) -> list[tuple[str, float]]:
    low = min(fin, fout) / 2
    out = [(f"{r:g}×Nyq", r * low) for r in (0.1, 0.5, 0.9, 0.95, 0.99)]
    if fout < fin:  # between the two Nyquist frequencies: must vanish
        out += [(f"{f / 1000:.4g} kHz (gone)", f) for f in (low + r * (fin / 2 - low) for r in (0.02, 0.5, 0.98))]
    return out


def quality_rows(fin: int, fout: int) -> list[list]:
    t = np.arange(fin) / fin
    peers = methods(fin, fout)
    rows = []
    for label, frequency in tones(fin, fout):
        x = (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)
        row = [f"{fin}→{fout}", label]
        levels = {}
        for name, method in peers.items():
            residual, _ = fit(method(x), fout, frequency)
            levels[name] = 10 * np.log10(np.mean(residual**2) / 0.125)
            row.append(f"{levels[name]:.1f}")
        row.append(f"{levels['convt-audio'] - levels['soxr HQ']:+.1f}")
        rows.append(row)
    x = (0.5 * np.sin(2 * np.pi * 0.9 * min(fin, fout) / 2 * t)).astype(np.float32)
    gains = [20 * np.log10(fit(m(x), fout, 0.9 * min(fin, fout) / 2)[1] / 0.5) for m in peers.values()]
    rows.append([f"{fin}→{fout}", "gain at 0.9×Nyq, dB", *(f"{g:+.4f}" for g in gains), "-"])
    return rows


def process_cost(args: list[str]) -> tuple[float, float, int]:
    """(wall s, user + sys CPU s, peak RSS kB) of a whole process, read by /usr/bin/time -v."""
    timer = shutil.which("time") or "/usr/bin/time"
    done = subprocess.run([timer, "-v", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{done.stderr[-2000:]}")

    def field(name: str) -> str:
        return re.search(rf"{re.escape(name)}: (.+)", done.stderr).group(1).strip()

    wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    seconds = float(wall[-1]) + 60 * float(wall[-2]) + (3600 * float(wall[-3]) if len(wall) > 2 else 0)
    return (
        seconds,
        float(field("User time (seconds)")) + float(field("System time (seconds)")),
        int(field("Maximum resident set size (kbytes)")),
    )


def cost_rows(fin: int, fout: int, work: Path, minutes: float, repeats: int) -> list[list]:
    frames = int(fin * 60 * minutes)
    rng = np.random.default_rng(fin)
    t = np.arange(frames) / fin
    music = np.stack(
        [
            0.3 * np.sin(2 * np.pi * 997 * t) + 0.05 * rng.standard_normal(frames),
            0.3 * np.sin(2 * np.pi * 0.3 * fin * t) + 0.05 * rng.standard_normal(frames),
        ],
        1,
    )
    source = work / f"in{fin}.wav"
    sf.write(str(source), music, fin, subtype="PCM_16")
    del music, t
    commands = {
        "convt-audio": [convt_audio(), "run", str(source), "-r", str(fout), "-o", str(work / "c.wav"), "-y", "-q"],
        "soxr HQ": [sys.executable, str(work / "with_soxr.py"), str(source), str(work / "s.wav"), str(fout), "HQ"],
        "soxr VHQ": [sys.executable, str(work / "with_soxr.py"), str(source), str(work / "s.wav"), str(fout), "VHQ"],
    }
    process_cost(commands["convt-audio"])  # designs the resampler into the cache: the timed runs read it
    # round by round, each process once per round: a slow spell of the machine (they come and
    # go here for seconds at a time) then weighs on every process alike, not on one
    runs = {name: [] for name in commands}
    for _ in range(repeats):
        for name, command in commands.items():
            runs[name].append(process_cost(command))
    measured = {
        name: (
            statistics.median(r[0] for r in taken),
            statistics.median(r[1] for r in taken),
            max(r[2] for r in taken),
        )
        for name, taken in runs.items()
    }
    hq = measured["soxr HQ"]
    return [
        [f"{fin}→{fout}", name, f"{wall:.2f}", f"{cpu:.2f}", f"{cpu / hq[1]:.2f}", f"{rss / 1024:.0f}"]
        for name, (wall, cpu, rss) in measured.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1-minute files, one run each")
    parser.add_argument("--busy", action="store_true", help="also measure the cost beside a CPU-bound process")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    minutes, repeats = (1.0, 1) if args.quick else (10.0, args.repeats)
    work = scratch("convt-resample-")
    os.environ.setdefault("CONVT_AUDIO_CACHE", str(work / "cache"))
    (work / "with_soxr.py").write_text(SOXR_SCRIPT)
    rows = []
    for fin, fout in TONE_PAIRS:
        rows += quality_rows(fin, fout)
    print("spurious, dB re the tone (lower is better); last column: convt-audio − soxr HQ")
    print(table(rows, ["rates", "tone", "convt-audio", "soxr HQ", "soxr VHQ", "Δ vs HQ"]), flush=True)
    # byte-compiled as an installed package is (an editable checkout under PYTHONDONTWRITEBYTECODE
    # would compile its edited modules in every process)
    compileall.compile_dir(str(ROOT / "convt_audio"), quiet=1)
    compileall.compile_dir(str(ROOT / "cli"), quiet=1)
    conditions = [("quiet", None)] + ([("beside a busy process", "while True: pass")] if args.busy else [])
    for condition, hog in conditions:
        busy = subprocess.Popen([sys.executable, "-c", hog]) if hog else None
        try:
            rows = [row for fin, fout in COST_PAIRS for row in cost_rows(fin, fout, work, minutes, repeats)]
        finally:
            if busy is not None:
                busy.kill()
        print(
            f"\n{minutes:g} min of stereo PCM_16, whole processes, {condition}; medians of {repeats} "
            f"({os.cpu_count()} cores)"
        )
        print(table(rows, ["rates", "process", "wall s", "CPU s", "CPU × soxr HQ", "peak RSS MB"]), flush=True)


if __name__ == "__main__":
    main()
