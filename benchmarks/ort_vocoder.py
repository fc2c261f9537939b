"""A built-in vocoder against ONNX Runtime, what deployers run on CPUs (HiFi-GAN V1 by default).

The authors' module (tests/reference_vocoders.py, random weights) is exported with
``torch.onnx.export`` (the dynamo exporter, dynamic frames) and run by ONNX Runtime in three whole
processes: on the whole mel; on windows of WINDOW frames with CONTEXT frames of context each side
(the overlap-window loop deployers write: equal to float rounding once the context covers the
receptive radius, which the stack's shape algebra gives); and ``convt-audio run -c MODEL``. Each
is timed wall and CPU (user + system), with its peak RSS, quiet and beside one busy process;
medians of 3; outputs compared.

Needs ``pip install onnxruntime onnx onnxscript`` (not the package's extras).

    .venv/bin/python benchmarks/ort_vocoder.py [--model hifigan-v1] [--seconds 60] [--busy] [--no-windows]

For a codec (``--model dac-44khz``) the input is its float latent (DAC's ``z``), which both sides
decode (the authors' ``model.decode(z)``; ``convt-audio run`` on the latent's ``.npy``).
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
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
from _common import decode_command, machine, scratch, table  # noqa: E402
from reference_vocoders import AuthorsDecode, checkpoint_of, randomise, reference  # noqa: E402

from convt_audio.model.config import load_config  # noqa: E402
from convt_audio.run.report import summary  # noqa: E402

ORT = """
import sys, numpy as np, onnxruntime as ort, soundfile as sf
model, mel_path, out, rate, window, context = sys.argv[1:7]
window, context = int(window), int(context)
options = ort.SessionOptions()
options.intra_op_num_threads = 2
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
name = session.get_inputs()[0].name
mel = np.load(mel_path)[None].astype(np.float32)
if window == 0:
    y = session.run(None, {name: mel})[0][0, 0]
else:  # overlap windows: each with context frames each side, its centre kept
    hop = int(sys.argv[7])
    parts = []
    for start in range(0, mel.shape[-1], window):
        first, last = max(0, start - context), min(mel.shape[-1], start + window + context)
        y = session.run(None, {name: mel[..., first:last]})[0][0, 0]
        parts.append(y[(start - first) * hop : (start - first + min(window, mel.shape[-1] - start)) * hop])
    y = np.concatenate(parts)
sf.write(out, y, int(rate), subtype="FLOAT")
"""


def stats(args: list[str]) -> tuple[float, float, int]:
    """(wall s, CPU s, peak RSS KiB) of a whole process, by GNU time."""
    done = subprocess.run([shutil.which("time") or "/usr/bin/time", "-v", *args], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{args} failed:\n{done.stderr[-2000:]}")

    def field(name: str) -> str:
        return re.search(rf"{name}: ([\d.:]+)", done.stderr).group(1)

    parts = [float(p) for p in field(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\)").split(":")]
    wall = sum(p * 60**i for i, p in enumerate(reversed(parts)))
    cpu = float(field("User time \\(seconds\\)")) + float(field("System time \\(seconds\\)"))
    return wall, cpu, int(field(r"Maximum resident set size \(kbytes\)"))


def medians(args: list[str], repeats: int = 3) -> tuple[float, float, int]:
    runs = [stats(args) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), max(r[2] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hifigan-v1")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--window", type=int, default=256, help="ORT window, in input frames")
    parser.add_argument("--busy", action="store_true", help="also beside one CPU-bound process")
    parser.add_argument(
        "--no-windows", action="store_true", help="leave out ORT's window loop (the targets compare the whole run)"
    )
    args = parser.parse_args()
    config = load_config(args.model)
    hop, rate = int(config.rate_factor()), config.output_sample_rate
    bands = config.latent_channels or config.in_channels  # a codec (DAC): its float latent, not codes
    facts = summary(config, config.feature_rate(), None, "")
    # context each side: the receptive field's reach past a window's edges, and one frame more
    context = int(np.ceil(facts["receptive_field_input_frames"] / 2)) + 1
    work = scratch("convt-ort-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = randomise(reference(args.model), seed=0)
        torch.save(checkpoint_of(args.model, module), work / "g.pt")
        decode = AuthorsDecode(args.model, module).eval()
        frames_dim = torch.export.Dim("frames", min=2 * context + 2, max=1 << 20)
        torch.onnx.export(
            decode,
            (torch.randn(1, bands, max(64, 2 * context + 4)),),  # inside the dynamic range
            str(work / "g.onnx"),
            dynamo=True,
            dynamic_shapes={"x": {2: frames_dim}},
        )
    frames = int(np.ceil(args.seconds * rate / hop))
    rng = np.random.default_rng(0)
    t = np.arange(frames, dtype=np.float32)
    b = np.arange(bands, dtype=np.float32)[:, None]
    mel = (-6 + 3 * np.sin(t / 17 + b / 9) * np.cos(b / 23) + 0.5 * rng.standard_normal((bands, frames))).astype(
        np.float32
    )
    np.save(work / "mel.npy", mel)
    what = "latent" if config.latent_channels else "mel"
    (work / "ort.py").write_text(ORT)
    ort = [sys.executable, str(work / "ort.py"), str(work / "g.onnx"), str(work / "mel.npy")]
    whole, windows = (
        f"ONNX Runtime, whole {what}, 2 threads",
        f"ONNX Runtime, {args.window}-frame windows ±{context} context",
    )
    ours = f"convt-audio run -c {args.model}"
    commands = {
        whole: [*ort, str(work / "w.wav"), str(rate), "0", "0"],
        windows: [*ort, str(work / "o.wav"), str(rate), str(args.window), str(context), str(hop)],
        ours: decode_command(work / "mel.npy", args.model, work / "g.pt", work / "c.wav"),
    }
    if args.no_windows:
        del commands[windows]
    print(f"machine: {machine()}")
    print(f"{args.model}: {frames} {what} frames -> {frames * hop / rate:.1f} s; receptive field "
          f"{facts['receptive_field_input_frames']} frames, look-ahead {facts['lookahead_input_frames']:g}")  # fmt: skip
    conditions = [("quiet", None)] + ([("beside a busy process", "while True: pass")] if args.busy else [])
    for condition, hog in conditions:
        busy = subprocess.Popen([sys.executable, "-c", hog]) if hog else None
        try:
            results = {name: medians(command) for name, command in commands.items()}
        finally:
            if busy is not None:
                busy.kill()
        base_wall, _, base_rss = results[whole]
        rows = [
            [name, f"{wall:.2f}", f"{wall / base_wall:.2f}", f"{cpu:.1f}", f"{cpu / wall:.2f}", rss // 1024,
             f"{rss / base_rss:.2f}"]
            for name, (wall, cpu, rss) in results.items()
        ]  # fmt: skip
        print(f"\nwhole processes, {condition}, median of 3")
        print(table(rows, ["process", "wall s", "× ORT whole", "CPU s", "CPU ÷ wall", "peak RSS MB", "RSS × ORT"]))
    ort_output = sf.read(str(work / "w.wav"), dtype="float64")[0]
    for name, path, command in (("ORT windows", "o.wav", windows), ("convt-audio", "c.wav", ours)):
        if command not in commands:  # left out (--no-windows)
            continue
        other = sf.read(str(work / path), dtype="float64")[0]
        error = (
            np.abs(other - ort_output).max() / np.abs(ort_output).max()
            if other.shape == ort_output.shape
            else float("inf")
        )
        print(f"{name} vs ORT whole: max |Δ| / peak {error:.1e}")


if __name__ == "__main__":
    main()
