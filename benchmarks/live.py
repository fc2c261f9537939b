"""A live stream, as a TTS server pushes mel frames as they come: `load(model).stream().push()`,
with and without captured steps (`stream(graphs=True)`), against the module's eager
whole-utterance forward and against context-recompute with crossfade.

For HiFi-GAN V1 (random weights; --model for another mel vocoder), utterances of 2, 5 and 10 s,
pushes of 1, 2, 4, 8, 16 and 32 mel frames, with 1 and 2 torch threads, prints per push size,
for ``stream()`` and ``stream(graphs=True)`` (its steps traced on a first utterance, once per
model and push shape: that time apart, as "trace s"): the median and p95 wall time of one
push, the real-time factor (push seconds per second of audio), the ratio to the module's eager
forward on the whole utterances, the algorithmic delay (look-ahead), and the largest error
against the whole-signal output. Each row is ROUNDS rounds of the eager forward then the stream
over the same utterances, back to back: the ratio is the median of the rounds' own ratios (and
their range), so that the machine's drift between one measurement and another (±10-20 % on a
shared machine) moves numerator and denominator together. Then what servers do
instead: vocode each chunk with LEFT frames of left context and crossfade the seams, with its SNR
against the whole-utterance output (the missing right context is the error).

Last, where a push's time goes, 1 thread: each top-level layer's milliseconds a push and the
GFLOP/s its convolutions reach (multiply-adds of the direct convolution, 2 FLOP each), beside the
float32 peak (the faster of a matrix product and an in-cache convolution) and the module's eager
forward measured in the same run, and what a push must reach to meet a ratio.

    .venv/bin/python benchmarks/live.py [--model hifigan-v1] [--quick] [--busy] [--pushes 1,8] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _common import machine, matmul_peak, median_time, scratch, table  # noqa: E402
from reference_vocoders import AuthorsDecode, checkpoint_of, load_checkpoint, randomise, reference  # noqa: E402

import convt_audio  # noqa: E402
from convt_audio.core.shapes import flops_of, rate_of  # noqa: E402
from convt_audio.model.config import load_config  # noqa: E402
from convt_audio.run.report import summary  # noqa: E402

PUSHES = (1, 2, 4, 8, 16, 32)
ROUNDS = 3  # eager forward, then the stream: a row's ratio is the median of its rounds'


def mel_like(frames: int, bands: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(frames, dtype=np.float32)
    b = np.arange(bands, dtype=np.float32)[:, None]
    return (-6 + 3 * np.sin(t / 17 + b / 9) * np.cos(b / 23) + 0.5 * rng.standard_normal((bands, frames))).astype(
        np.float32
    )


def context_recompute(module, mel: np.ndarray, chunk: int, left: int, hop: int, fade: int) -> np.ndarray:
    """Each chunk vocoded with ``left`` frames of left context (no right context), the context's
    samples dropped but the last ``fade`` of them crossfaded with the previous chunk's tail."""
    out = np.zeros(0, dtype=np.float32)
    for start in range(0, mel.shape[1], chunk):
        first = max(0, start - left)
        with torch.inference_mode():
            y = module(torch.from_numpy(mel[None, :, first : start + chunk]))[0, 0].numpy()
        y = y[(start - first) * hop - min(fade, (start - first) * hop) :]
        overlap = min(fade, (start - first) * hop)
        if overlap:
            ramp = np.linspace(0, 1, overlap, dtype=np.float32)
            out[-overlap:] = out[-overlap:] * (1 - ramp) + y[:overlap] * ramp
        out = np.concatenate([out, y[overlap:]])
    return out


def layer_times(model, mel: np.ndarray, size: int) -> list[float]:
    """Seconds a push of ``size`` frames spends in each top-level layer of ``model``'s stream
    (medians over one pass of ``mel``, after a pass to warm up). An activation that a
    convolution writes into its own input buffer counts in that convolution."""
    stream = model.engine.open_stream(1)
    stack = stream.children[0]
    spent = [[] for _ in stack.children]
    for index, child in enumerate(stack.children):
        for method in ("push", "push_activated"):
            if hasattr(child, method):

                def timed(*args, _call=getattr(child, method), _index=index):
                    start = time.perf_counter()
                    out = _call(*args)
                    spent[_index].append(time.perf_counter() - start)
                    return out

                setattr(child, method, timed)
    chunk = mel[None]
    for _pass in ("warm-up", "timed"):
        stream.reset()
        for layer in spent:
            layer.clear()
        for i in range(0, mel.shape[1] - size + 1, size):
            stream.push(chunk[..., i : i + size])
    return [statistics.median(layer) if layer else 0.0 for layer in spent]


def live_pushes(model, mels: list, wholes: list, size: int, graphs: bool) -> tuple:
    """Each utterance through its own ``model.stream(graphs=graphs)``, ``size`` frames a push:
    ``(each push's seconds, all pushes and flushes in seconds, the largest error / peak)``."""
    times, total, error = [], 0.0, 0.0
    for mel, want in zip(mels, wholes):
        stream = model.stream(graphs=graphs)
        parts = []
        for i in range(0, mel.shape[1], size):
            start = time.perf_counter()
            parts.append(stream.push(mel[:, i : i + size]))
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        parts.append(stream.flush())
        total += sum(times[-len(range(0, mel.shape[1], size)) :]) + time.perf_counter() - start
        got = np.concatenate(parts, axis=-1)[0]
        error = max(error, float(np.abs(got - want).max() / np.abs(want).max()))
    return times, total, error


def convolution_peak() -> float:
    """GFLOP/s of the fastest of a few HiFi-GAN-sized float32 convolutions, weights and frames
    in cache, frames outermost (oneDNN's fastest layout here): kernel 11, 64 channels over 2048
    frames and 128 over 1024 (medians of 20). On AVX-512 they outrun a 2048² matrix product."""
    best = 0.0
    for channels, frames in ((64, 2048), (128, 1024)):
        weight = torch.randn(channels, channels, 1, 11).contiguous(memory_format=torch.channels_last)
        x = torch.randn(1, frames + 10, channels).transpose(1, 2).unsqueeze(2)
        seconds = median_time(lambda x=x, weight=weight: torch.nn.functional.conv2d(x, weight), 20)
        best = max(best, 2 * channels * channels * 11 * frames / seconds / 1e9)
    return best


def breakdown(model, config, mel: np.ndarray, eager_flops: float, sizes: tuple) -> None:
    """Print where a push's time goes (1 thread) against the peaks and the eager forward."""
    peak = max(matmul_peak(), convolution_peak())
    print(
        f"\nwhere a push goes, 1 thread: float32 peak {peak:.0f} GFLOP/s (the faster of a 2048² matrix "
        f"product and an in-cache convolution, this run); the module's eager forward {eager_flops:.0f} GFLOP/s"
    )
    # per input frame of the stack: a layer's own FLOPs times the rate of the layers before it
    flops = [float(flops_of([spec]) * rate_of(config.layers[:index])) for index, spec in enumerate(config.layers)]
    per_size = {size: layer_times(model, mel, size) for size in sizes}
    rows = []
    for index, spec in enumerate(config.layers):
        if not flops[index]:
            continue
        label = f"{spec.where} {spec.type}" + (f" → {spec.out_channels}" if hasattr(spec, "out_channels") else "")
        row = [label]
        for size in sizes:
            seconds = per_size[size][index]
            row += [f"{1000 * seconds:.2f}", f"{size * flops[index] / seconds / 1e9:.0f}" if seconds else "-"]
        rows.append(row)
    total = [sum(per_size[size]) for size in sizes]
    rows.append(
        ["all layers"]
        + [x for size, t in zip(sizes, total) for x in (f"{1000 * t:.2f}", f"{size * sum(flops) / t / 1e9:.0f}")]
    )
    headers = ["layer"] + [x for size in sizes for x in (f"{size}-frame ms", "GFLOP/s")]
    print(table(rows, headers))
    for ratio in (0.8, 1.0, 2.0):
        print(
            f"a push at {ratio:g}× the eager forward must run at {eager_flops / ratio:.0f} GFLOP/s "
            f"({eager_flops / ratio / peak:.2f}× the peak)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hifigan-v1")
    parser.add_argument("--quick", action="store_true", help="one 5 s utterance, pushes of 1, 8, 32")
    parser.add_argument("--busy", action="store_true", help="everything beside one CPU-bound process")
    parser.add_argument("--pushes", help="push sizes, comma-separated (default 1,2,4,8,16,32; --quick 1,8,32)")
    parser.add_argument("--threads", help="torch threads, comma-separated (default 1,2)")
    args = parser.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        measure(args)
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()


def measure(args) -> None:
    config = load_config(args.model)
    hop, rate, bands = int(config.rate_factor()), config.output_sample_rate, config.in_channels
    seconds = (5,) if args.quick else (2, 5, 10)
    pushes = (1, 8, 32) if args.quick else PUSHES
    if args.pushes:
        pushes = tuple(int(size) for size in args.pushes.split(","))
    thread_counts = tuple(int(n) for n in args.threads.split(",")) if args.threads else (1, 2)
    work = scratch("convt-live-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(checkpoint_of(args.model, randomise(reference(args.model), seed=0)), work / "g.pt")
        module = AuthorsDecode(args.model, load_checkpoint(args.model, reference(args.model), work / "g.pt")).eval()
    delay = summary(config, config.feature_rate(), None, "")["lookahead_output_frames"]
    print(f"machine: {machine()}" + (", beside one busy process" if args.busy else ", quiet"))
    print(f"{args.model}: algorithmic delay {delay:g} samples ({1000 * delay / rate:.0f} ms) at every push size")
    mels = [mel_like(int(s * rate / hop), bands, i) for i, s in enumerate(seconds)]
    audio_s = sum(m.shape[1] * hop / rate for m in mels)
    for threads in thread_counts:
        torch.set_num_threads(threads)
        model = convt_audio.load(args.model, str(work / "g.pt"), device="cpu", threads=threads)
        wholes, eager, ours_whole = [], 0.0, 0.0
        for mel in mels:  # each whole forward: the median of 3 (one run moves ~10 % on a shared machine)
            with torch.inference_mode():
                eager += median_time(lambda mel=mel: module(torch.from_numpy(mel[None])), repeats=3)
                wholes.append(module(torch.from_numpy(mel[None]))[0, 0].numpy())
            ours_whole += median_time(lambda model=model, mel=mel: model(mel), repeats=3)
        rows = []
        for size in pushes:
            for graphs in (False, True):
                trace_s = None
                if graphs:  # the trace, once per model and push shape, before the timed utterances
                    start = time.perf_counter()
                    live_pushes(model, mels[:1], wholes[:1], size, graphs)
                    trace_s = time.perf_counter() - start - eager / len(mels)
                times, totals, ratios, error = [], [], [], 0.0
                for _round in range(ROUNDS):
                    start = time.perf_counter()
                    with torch.inference_mode():
                        for mel in mels:
                            module(torch.from_numpy(mel[None]))
                    eager_round = time.perf_counter() - start
                    pushes_s, total, round_error = live_pushes(model, mels, wholes, size, graphs)
                    times += pushes_s
                    totals.append(total)
                    ratios.append(total / eager_round)
                    error = max(error, round_error)
                rows.append(
                    [
                        size,
                        "stream(graphs=True)" if graphs else "stream()",
                        f"{1000 * statistics.median(times):.1f}",
                        f"{1000 * np.percentile(times, 95):.1f}",
                        f"{statistics.median(totals) / audio_s:.3f}",
                        f"{statistics.median(ratios):.2f}",
                        f"{min(ratios):.2f}-{max(ratios):.2f}",
                        f"{error:.1e}",
                        "" if trace_s is None else f"{max(trace_s, 0):.1f}",
                    ]
                )
        print(
            f"\n{threads} thread(s), utterances of {', '.join(f'{s:g}' for s in seconds)} s: the module's eager "
            f"whole forward RTF {eager / audio_s:.3f}; load(...)(mel) whole RTF {ours_whole / audio_s:.3f}"
        )
        print(
            table(
                rows,
                [
                    "push frames",
                    "stream",
                    "median ms",
                    "p95 ms",
                    "RTF",
                    "× eager whole",
                    f"{ROUNDS} rounds",
                    "max |Δ| / peak",
                    "trace s",
                ],
            )
        )
        if threads == 1:
            recompute = []
            for size, left in ((8, 8), (8, 32), (32, 32)):
                start = time.perf_counter()
                outs = [context_recompute(module, mel, size, left, hop, hop) for mel in mels]
                spent = time.perf_counter() - start
                snr = min(10 * np.log10(np.sum(w**2) / np.sum((o[: w.size] - w) ** 2)) for o, w in zip(outs, wholes))
                recompute.append([size, left, f"{spent / audio_s:.3f}", f"{spent / eager:.2f}", f"{snr:.1f}"])
            print("\ncontext recompute with a one-hop crossfade, as TTS servers stream (1 thread):")
            print(table(recompute, ["chunk frames", "left context", "RTF", "× eager whole", "SNR dB (worst)"]))
            one_thread = (model, sum(m.shape[1] for m in mels) * float(flops_of(config.layers)) / eager / 1e9)
    if 1 in thread_counts:
        torch.set_num_threads(1)
        breakdown(one_thread[0], config, mels[0], one_thread[1], (1, 8))


if __name__ == "__main__":
    main()
