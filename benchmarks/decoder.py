"""A learned-decoder-shaped stack: convt-audio streaming vs the whole-signal torch forward.

Prints, in one run:
1. in-process throughput of the streaming engine (each kernel, the auto chunk) against
   ``torch.nn.Sequential`` on the whole signal, and GFLOP/s against a float32 matmul peak;
2. whole processes: ``convt-audio run`` against a plain script that reads the WAV, runs the
   Sequential once and writes it (the output must be equal);
3. peak RSS of ``convt-audio run`` on a 10-second and a 30-minute file, for this stack and for
   the default sinc-x3.

Usage: python benchmarks/decoder.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import convt_audio, machine, matmul_peak, median_process, median_time, scratch, table  # noqa: E402

from convt_audio.model.config import load_config  # noqa: E402
from convt_audio.model.stack import StreamingStack  # noqa: E402
from convt_audio.model.weights import load_stack  # noqa: E402
from convt_audio.run.report import describe  # noqa: E402

RATE = 1500
LAYERS = [
    {"type": "conv1d", "in_channels": 1, "out_channels": 128, "kernel_size": 7, "padding": 3},
    {"type": "leaky_relu", "negative_slope": 0.1},
    {"type": "conv_transpose1d", "in_channels": 128, "out_channels": 64, "kernel_size": 16, "stride": 8, "padding": 4},
    {"type": "leaky_relu", "negative_slope": 0.1},
    {"type": "conv_transpose1d", "in_channels": 64, "out_channels": 32, "kernel_size": 4, "stride": 2, "padding": 1},
    {"type": "leaky_relu", "negative_slope": 0.1},
    {"type": "conv_transpose1d", "in_channels": 32, "out_channels": 16, "kernel_size": 4, "stride": 2, "padding": 1},
    {"type": "leaky_relu", "negative_slope": 0.1},
    {"type": "conv1d", "in_channels": 16, "out_channels": 1, "kernel_size": 7, "padding": 3},
    {"type": "tanh"},
]

PLAIN = """
import sys, soundfile as sf, torch
from safetensors.torch import load_file
from torch import nn
x, rate = sf.read(sys.argv[1], dtype="float32", always_2d=True)
seq = nn.Sequential(nn.Conv1d(1, 128, 7, padding=3), nn.LeakyReLU(0.1),
    nn.ConvTranspose1d(128, 64, 16, 8, 4), nn.LeakyReLU(0.1), nn.ConvTranspose1d(64, 32, 4, 2, 1),
    nn.LeakyReLU(0.1), nn.ConvTranspose1d(32, 16, 4, 2, 1), nn.LeakyReLU(0.1),
    nn.Conv1d(16, 1, 7, padding=3), nn.Tanh())
seq.load_state_dict(load_file(sys.argv[3]))
with torch.inference_mode():
    y = seq(torch.from_numpy(x.T.copy())[None])[0]
sf.write(sys.argv[2], y.numpy().T, rate * 32, subtype="FLOAT")
"""


def sequential() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(1, 128, 7, padding=3),
        nn.LeakyReLU(0.1),
        nn.ConvTranspose1d(128, 64, 16, 8, 4),
        nn.LeakyReLU(0.1),
        nn.ConvTranspose1d(64, 32, 4, 2, 1),
        nn.LeakyReLU(0.1),
        nn.ConvTranspose1d(32, 16, 4, 2, 1),
        nn.LeakyReLU(0.1),
        nn.Conv1d(16, 1, 7, padding=3),
        nn.Tanh(),
    ).eval()


def write_input(path: Path, seconds: float, rate: int) -> None:
    """A speech-like test signal, written block by block (30 minutes never sits in memory)."""
    rng = np.random.default_rng(0)
    with sf.SoundFile(str(path), "w", rate, 1, "FLOAT") as handle:
        block = rate * 60
        for start in range(0, int(seconds * rate), block):
            n = min(block, int(seconds * rate) - start)
            t = (start + np.arange(n)) / rate
            handle.write((0.3 * np.sin(2 * np.pi * rate / 15 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 5-minute long file")
    args = parser.parse_args()
    repeats = 3 if args.quick else 5
    long_seconds = 300 if args.quick else 1800
    work = scratch("convt-bench-")
    config_path = work / "decoder.yaml"
    config_path.write_text(yaml.safe_dump({"name": "decoder-x32", "weights": "decoder.safetensors", "layers": LAYERS}))
    torch.manual_seed(0)
    seq = sequential()
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in seq.state_dict().items()}, str(work / "decoder.safetensors"))
    print(f"machine: {machine()}")

    # 1. in-process
    config = load_config(config_path)
    stack, _ = load_stack(config)
    frames = RATE * 60
    x = torch.randn(1, 1, frames) * 0.3
    flops = describe(config.layers, 0).flops_per_input_frame * frames
    peak = matmul_peak()
    from convt_audio.model.engines import TorchEngine

    chunk = TorchEngine(stack).preferred_chunk()
    with torch.inference_mode():
        whole = median_time(lambda: seq(x), repeats)
        want = seq(x)
        rows = [
            [
                "torch.nn.Sequential, whole signal",
                "-",
                f"{whole:.3f}",
                "1.00",
                f"{flops / whole / 1e9:.1f}",
                f"{flops / whole / 1e9 / peak:.2f}",
            ]
        ]
        for kernel in ("transposed", "polyphase", "auto"):
            for size in sorted({chunk // 4, chunk, chunk * 4}):

                def streamed(kernel=kernel, size=size):
                    streamer = StreamingStack(stack, kernel=kernel)
                    parts = [streamer.push(x[..., i : i + size]) for i in range(0, frames, size)]
                    parts.append(streamer.flush())
                    return torch.cat(parts, -1)

                got = streamed()
                assert got.shape == want.shape and (got - want).abs().max() <= 1e-5 * max(1, want.abs().max())
                t = median_time(streamed, repeats)
                label = f"streaming, {kernel}" + (" (default)" if kernel == "auto" and size == chunk else "")
                rows.append(
                    [
                        label,
                        size,
                        f"{t:.3f}",
                        f"{whole / t:.2f}",
                        f"{flops / t / 1e9:.1f}",
                        f"{flops / t / 1e9 / peak:.2f}",
                    ]
                )
    print(
        f"\n60 s at {RATE} Hz -> {RATE * 32} Hz, {flops / 1e9:.1f} GFLOP; float32 matmul peak "
        f"{peak:.0f} GFLOP/s (same run); median of {repeats}"
    )
    print(table(rows, ["in-process", "chunk", "seconds", "× whole", "GFLOP/s", "of peak"]))

    # 2. whole processes
    wav = work / "in60.wav"
    write_input(wav, 60, RATE)
    (work / "plain.py").write_text(PLAIN)
    plain_t, plain_rss = median_process(
        [sys.executable, str(work / "plain.py"), str(wav), str(work / "p.wav"), str(work / "decoder.safetensors")], 3
    )
    ours_t, ours_rss = median_process(
        [convt_audio(), "run", str(wav), "-c", str(config_path), "-o", str(work / "c.wav"), "--overwrite", "-q"], 3
    )
    a, _ = sf.read(str(work / "p.wav"))
    b, _ = sf.read(str(work / "c.wav"))
    equal = a.shape == b.shape and np.abs(a - b).max() <= 1e-5
    print("\nwhole processes (read WAV, run, write WAV), median of 3")
    print(
        table(
            [
                ["plain script: Sequential on the whole signal", f"{plain_t:.2f}", "1.00", plain_rss // 1024],
                ["convt-audio run", f"{ours_t:.2f}", f"{ours_t / plain_t:.2f}", ours_rss // 1024],
            ],
            ["process", "seconds", "× plain", "peak RSS MB"],
        )
    )
    print(f"outputs equal: {equal} (max |Δ| {np.abs(a - b).max():.2e})")

    # 3. memory: short vs long
    rows = []
    for label, rate, extra in (("decoder-x32", RATE, ["-c", str(config_path)]), ("sinc-x3 (default)", 16000, [])):
        rss = {}
        for seconds in (10, long_seconds):
            path = work / f"{label.split()[0]}-{seconds}.wav"
            write_input(path, seconds, rate)
            _, rss[seconds] = median_process(
                [convt_audio(), "run", str(path), "-o", str(work / "out.wav"), "--overwrite", "-q", *extra], 1
            )
        rows.append([label, rss[10] // 1024, rss[long_seconds] // 1024, (rss[long_seconds] - rss[10]) // 1024])
    print(f"\npeak RSS of convt-audio run (MB), 10 s vs {long_seconds // 60} min input")
    print(table(rows, ["config", "10 s", f"{long_seconds // 60} min", "growth"]))


if __name__ == "__main__":
    main()
