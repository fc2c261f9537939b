"""A built-in vocoder or codec decoder (random weights; HiFi-GAN V1 by default, --model for
BigVGAN v2, DAC, Vocos or EnCodec): `convt-audio run` against plain scripts running the
authors' decode (tests/reference_vocoders.AuthorsDecode), eager and TorchScript.

Prints, in one run:
1. whole processes on a mel for 60 s of 22.05 kHz audio: ``convt-audio run mel.npy -c hifigan-v1``
   against a plain script that loads the same PyTorch module (tests/reference_vocoders.py, the
   official code's layout) and checkpoint, runs it on the whole mel and writes the WAV; outputs
   must be equal; GFLOP/s against a float32 matmul peak measured in the same run;
2. peak RSS of ``convt-audio run`` on a 10-second and a 30-minute mel, and what the plain
   script needs for 10 s and 60 s (it grows with the length; the 30-minute figure is extrapolated,
   not run: ``--plain-long`` runs it).

Usage: python benchmarks/vocoder.py [--quick] [--busy] [--bf16] [--plain-long] [--skip-memory]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _common import convt_audio, decode_command, machine, matmul_peak, median_process, run_process, scratch, table  # noqa: E402
from reference_vocoders import CODE_ROWS, checkpoint_of, randomise, reference  # noqa: E402

from convt_audio.model.config import load_config  # noqa: E402
from convt_audio.run.report import describe  # noqa: E402

MODEL = "hifigan-v1"  # set from --model
HOP, RATE, BANDS = 256, 22050, 80
CODES = False  # the model reads integer codes (BANDS rows of 1024-entry codebooks)
EXTRA = {"vocos-encodec-24khz": ["--condition", "6"]}  # run options a model needs (6 kbps: 8 rows)

PLAIN = """
import sys, warnings, numpy as np, soundfile as sf, torch
sys.path.insert(0, sys.argv[4])
from reference_vocoders import AuthorsDecode, load_checkpoint, reference
warnings.simplefilter("ignore")
name, rate = sys.argv[5], int(sys.argv[6])
g = AuthorsDecode(name, load_checkpoint(name, reference(name), sys.argv[3])).eval()
mel = torch.from_numpy(np.load(sys.argv[1]))[None]
with torch.inference_mode():
    if len(sys.argv) > 7:  # the module's TorchScript: traced on the input, then run
        traced = torch.jit.trace(g, mel[..., :64])
        probe = mel[..., :96]
        if traced(probe).shape != g(probe).shape:  # lengths computed in Python became constants
            sys.exit("TRACE-BAKES-LENGTH: the trace keeps the traced input's length")
        g = traced
    y = g(mel)[0]
sf.write(sys.argv[2], y.numpy().T, rate, subtype="FLOAT")
"""


def write_mel(path: Path, seconds: float) -> int:
    """A smooth log-mel-like (bands, frames) array, or a codec's integer codes (rows, frames);
    30 minutes of an 80-band mel is only 62 MB."""
    frames = int(np.ceil(seconds * RATE / HOP))
    rng = np.random.default_rng(0)
    t = np.arange(frames, dtype=np.float32)
    bands = np.arange(BANDS, dtype=np.float32)[:, None]
    if CODES:
        np.save(path, rng.integers(0, 1024, (BANDS, frames)))
        return frames
    else:
        mel = -6 + 3 * np.sin(t / 17 + bands / 9) * np.cos(bands / 23) + 0.5 * rng.standard_normal((BANDS, frames))
    np.save(path, mel.astype(np.float32))
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 s instead of 60 s, 5-minute long mel")
    parser.add_argument("--plain-long", action="store_true", help="also run the plain script on the long mel")
    parser.add_argument("--busy", action="store_true", help="also measure beside a CPU-bound process")
    parser.add_argument("--bf16", action="store_true", help="also run convt-audio with --dtype bfloat16 (SNR printed)")
    parser.add_argument("--skip-memory", action="store_true", help="skip the 10 s vs long-mel memory part")
    parser.add_argument(
        "--model", default="hifigan-v1", help="a built-in: hifigan-v1, bigvgan-v2-22khz-80band-256x, dac-44khz"
    )
    parser.add_argument("--seconds", type=float, help="audio seconds (default 60, 20 with --quick)")
    args = parser.parse_args()
    global MODEL, HOP, RATE, BANDS, CODES
    config = load_config(args.model)
    MODEL, HOP, RATE, BANDS = args.model, int(config.rate_factor()), config.output_sample_rate, config.in_channels
    CODES = config.layers[0].takes_codes
    BANDS = CODE_ROWS.get(MODEL, BANDS)
    seconds = args.seconds or (20 if args.quick else 60)
    long_seconds = 300 if args.quick else 1800
    work = scratch("convt-vocoder-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        generator = randomise(reference(MODEL), seed=0)
    checkpoint = work / "checkpoint.pt"
    torch.save(checkpoint_of(MODEL, generator), checkpoint)
    del generator
    print(f"machine: {machine()}")
    peak = matmul_peak()
    per_frame = describe(config.layers).flops_per_input_frame

    # 1. whole processes
    mel = work / f"mel{seconds}.npy"
    frames = write_mel(mel, seconds)
    flops = per_frame * frames
    (work / "plain.py").write_text(PLAIN)
    plain = [
        sys.executable,
        str(work / "plain.py"),
        str(mel),
        str(work / "p.wav"),
        str(checkpoint),
        str(HERE.parent / "tests"),
        MODEL,
        str(RATE),
    ]
    ours = decode_command(mel, MODEL, checkpoint, work / "c.wav", *EXTRA.get(MODEL, []))
    script = [*plain[:3], str(work / "s.wav"), *plain[4:], "torchscript"]
    ours16 = decode_command(mel, MODEL, checkpoint, work / "c16.wav", "--dtype", "bfloat16", *EXTRA.get(MODEL, []))
    audio_s = frames * HOP / RATE
    conditions = [("quiet", None)] + ([("beside a busy process", "while True: pass")] if args.busy else [])
    for condition, hog in conditions:
        busy = subprocess.Popen([sys.executable, "-c", hog]) if hog else None
        try:
            plain_t, plain_rss = median_process(plain, 3)
            try:
                script_t, script_rss = median_process(script, 3)
            except RuntimeError as exc:  # EnCodec: its padding arithmetic is Python, traced as constants
                if "TRACE-BAKES-LENGTH" not in str(exc):
                    raise
                script_t, script_rss = float("inf"), plain_rss
            ours_t, ours_rss = median_process(ours, 3)
            bf16_t, bf16_rss = median_process(ours16, 3) if args.bf16 else (0, 0)
        finally:
            if busy is not None:
                busy.kill()
        a, _ = sf.read(str(work / "p.wav"), dtype="float32")
        b, _ = sf.read(str(work / "c.wav"), dtype="float32")
        delta = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
        print(
            f"\n{MODEL}, {frames} input frames -> {audio_s:.1f} s at {RATE} Hz, {flops / 1e9:.0f} GFLOP; "
            f"float32 matmul peak {peak:.0f} GFLOP/s (same run); whole processes, {condition}, median of 3"
        )
        best_t, best_rss = min((plain_t, plain_rss), (script_t, script_rss))  # the authors' faster forward
        rows = []
        for name, t, rss in (
            ("plain script: the module (eager) on the whole mel", plain_t, plain_rss),
            *((("plain script: the module's TorchScript", script_t, script_rss),) if script_t < float("inf") else ()),
            (f"convt-audio run -c {MODEL}", ours_t, ours_rss),
            *((("convt-audio run ... --dtype bfloat16", bf16_t, bf16_rss),) if args.bf16 else ()),
        ):
            rows.append(
                [
                    name,
                    f"{t:.2f}",
                    f"{t / best_t:.2f}",
                    f"{t / audio_s:.3f}",
                    f"{flops / t / 1e9:.0f}",
                    f"{flops / t / 1e9 / peak:.2f}",
                    rss // 1024,
                    f"{rss / best_rss:.2f}",
                ]
            )
        print(table(rows, ["process", "seconds", "× fastest", "RTF", "GFLOP/s", "of peak", "peak RSS MB", "RSS × its"]))
        print("× fastest, RSS × its: against the faster of the authors' eager and TorchScript runs")
        if script_t == float("inf"):
            print("TorchScript: none; a trace keeps the traced input's length (the model pads in Python)")
        print(f"outputs equal: {delta <= 1e-5} (max |Δ| {delta:.2e}); GFLOP/s include start-up and I/O")
    if args.bf16:
        ref, _ = sf.read(str(work / "c.wav"), dtype="float64")
        low, _ = sf.read(str(work / "c16.wav"), dtype="float64")
        snr = 10 * np.log10(np.sum(ref**2) / np.sum((ref - low) ** 2))
        print(f"bfloat16 output against float32: SNR {snr:.1f} dB")
    if args.skip_memory:
        return

    # 2. memory: short vs long
    rss = {}
    for length in (10, long_seconds):
        path = work / f"mel-{length}.npy"
        write_mel(path, length)
        wall, rss[length] = run_process(
            [
                convt_audio(),
                "run",
                str(path),
                "-c",
                MODEL,
                "-w",
                str(checkpoint),
                "-o",
                str(work / "long.wav"),
                "--overwrite",
                "-q",
                *EXTRA.get(MODEL, []),
            ]
        )
        print(f"convt-audio run, {length} s mel: {wall:.1f} s wall, RTF {wall / length:.3f}", flush=True)
    _, plain10 = run_process([*plain[:2], str(work / "mel-10.npy"), *plain[3:]])
    per_second = (plain_rss - plain10) / (seconds - 10)
    rows = [["convt-audio run", rss[10] // 1024, rss[long_seconds] // 1024, (rss[long_seconds] - rss[10]) // 1024]]
    if args.plain_long:
        _, plain_long = run_process([*plain[:2], str(work / f"mel-{long_seconds}.npy"), *plain[3:]])
        rows.append(["plain script", plain10 // 1024, plain_long // 1024, (plain_long - plain10) // 1024])
    else:
        estimate = plain10 + per_second * (long_seconds - 10)
        rows.append(
            [
                "plain script (long: extrapolated)",
                plain10 // 1024,
                f"~{estimate / 1024:.0f}",
                f"~{(estimate - plain10) / 1024:.0f}",
            ]
        )
    print(
        f"\npeak RSS (MB), 10 s vs {long_seconds // 60} min mel; the plain script grows "
        f"{per_second / 1024:.0f} MB per second of audio (10 s vs {seconds} s)"
    )
    print(table(rows, ["process", "10 s", f"{long_seconds // 60} min", "growth"]))


if __name__ == "__main__":
    main()
