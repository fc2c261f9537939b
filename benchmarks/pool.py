"""Many live sessions at once, as a TTS server holds them: one `Model.pool()` against one
`Model.stream()` per session pushed in turn, and `Model.pool(wait=)` with each session pushing
from a thread of its own; and many short files: `Model.map()` against a loop of `model(x)`.

HiFi-GAN V1 (random weights; --model for another mel vocoder), every session a 2 s utterance
pushed as its frames come (1 and 8 mel frames a push), 1, 4 and 16 sessions: wall and CPU time
per second of audio (RTF), the ratio to the sessions' streams pushed one by one and to the
module's eager forward of each whole utterance, the median wall time of one step (every session
pushes once; for the threads, the median push as a session's thread waits for it), and the
largest error against the module. Quiet, and with --busy also beside one
CPU-bound process. Then 16 files of 3-6 s through map() (4 and 16 slots) against model(x) each.

    .venv/bin/python benchmarks/pool.py [--model hifigan-v1] [--threads 1] [--busy] [--quick]
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
from _common import machine, scratch, table  # noqa: E402
from live import mel_like  # noqa: E402
from reference_vocoders import AuthorsDecode, checkpoint_of, load_checkpoint, randomise, reference  # noqa: E402

import convt_audio  # noqa: E402
from convt_audio.model.config import load_config  # noqa: E402


def separately(model, mels, size):
    """One stream per session, each step pushing every session in turn."""
    streams = [model.stream() for _ in mels]
    parts = [[] for _ in mels]
    steps = []
    for i in range(0, max(m.shape[1] for m in mels), size):
        start = time.perf_counter()
        for k, (stream, mel) in enumerate(zip(streams, mels)):
            if i < mel.shape[1]:
                parts[k].append(stream.push(mel[:, i : i + size]))
        steps.append(time.perf_counter() - start)
    for k, stream in enumerate(streams):
        parts[k].append(stream.flush())
    return [np.concatenate(p, axis=-1)[0] for p in parts], steps


def pooled(model, mels, size):
    """One pool, each step one push of every session's frames."""
    pool = model.pool()
    streams = [pool.open() for _ in mels]
    parts = [[] for _ in mels]
    steps = []
    for i in range(0, max(m.shape[1] for m in mels), size):
        start = time.perf_counter()
        got = pool.push({s: m[:, i : i + size] for s, m in zip(streams, mels) if i < m.shape[1]})
        steps.append(time.perf_counter() - start)
        for k, s in enumerate(streams):
            if s in got:
                parts[k].append(got[s])
    for k, s in enumerate(streams):
        parts[k].append(s.flush())
    return [np.concatenate(p, axis=-1)[0] for p in parts], steps


def threaded(model, mels, size):
    """One pool with ``wait``, each session pushing its frames from a thread of its own."""
    import threading

    pool = model.pool(wait=0.01)
    streams = [pool.open() for _ in mels]
    parts, waits = [[] for _ in mels], [[] for _ in mels]

    def serve(k: int) -> None:
        for i in range(0, mels[k].shape[1], size):
            start = time.perf_counter()
            parts[k].append(streams[k].push(mels[k][:, i : i + size]))
            waits[k].append(time.perf_counter() - start)
        parts[k].append(streams[k].flush())

    workers = [threading.Thread(target=serve, args=(k,)) for k in range(len(mels))]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return [np.concatenate(p, axis=-1)[0] for p in parts], [t for w in waits for t in w]


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hifigan-v1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--busy", action="store_true", help="also beside one CPU-bound process")
    parser.add_argument("--quick", action="store_true", help="1 and 8 sessions, 8-frame pushes, no files")
    args = parser.parse_args()
    config = load_config(args.model)
    hop, rate, bands = int(config.rate_factor()), config.output_sample_rate, config.in_channels
    work = scratch("convt-pool-")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(checkpoint_of(args.model, randomise(reference(args.model), seed=0)), work / "g.pt")
        module = AuthorsDecode(args.model, load_checkpoint(args.model, reference(args.model), work / "g.pt")).eval()
    torch.set_num_threads(args.threads)
    model = convt_audio.load(args.model, str(work / "g.pt"), device="cpu", threads=args.threads)
    print(f"machine: {machine()}; {args.model}, {args.threads} torch thread(s)")
    sessions = (1, 8) if args.quick else (1, 4, 16)
    pushes = (8,) if args.quick else (1, 8)
    frames = int(2 * rate / hop)
    mels = [mel_like(frames, bands, seed) for seed in range(max(sessions))]
    with torch.inference_mode():
        module(torch.from_numpy(mels[0][None, :, :64]))
        start = time.perf_counter()
        wholes = [module(torch.from_numpy(m[None]))[0, 0].numpy() for m in mels]
        eager = (time.perf_counter() - start) / len(mels)  # one utterance's whole forward
    model(mels[0][:, :64])
    conditions = [("quiet", None)] + ([("beside a busy process", "while True: pass")] if args.busy else [])
    for label, hog in conditions:
        busy = subprocess.Popen([sys.executable, "-c", hog]) if hog else None
        try:
            rows = []
            for size in pushes:
                for count in sessions:
                    audio = count * frames * hop / rate
                    results = {}
                    for name, run in (("streams", separately), ("pool", pooled), ("threads", threaded)):
                        (outs, steps), wall, cpu = timed(run, model, mels[:count], size)
                        error = max(float(np.abs(o - w).max() / np.abs(w).max()) for o, w in zip(outs, wholes))
                        results[name] = (wall, cpu, statistics.median(steps), error)
                    s_wall, p_wall = results["streams"][0], results["pool"][0]
                    rows.append(
                        [
                            size,
                            count,
                            f"{s_wall / audio:.3f}",
                            f"{p_wall / audio:.3f}",
                            f"{results['pool'][1] / audio:.3f}",
                            f"{p_wall / s_wall:.2f}",
                            f"{p_wall / (count * eager):.2f}",
                            f"{1000 * results['pool'][2]:.1f}",
                            f"{results['threads'][0] / audio:.3f}",
                            f"{results['threads'][0] / s_wall:.2f}",
                            f"{1000 * results['threads'][2]:.1f}",
                            f"{max(r[3] for r in results.values()):.1e}",
                        ]
                    )
            print(
                f"\n{label}: 2 s utterances; the module's eager whole forward RTF {eager / (frames * hop / rate):.3f}"
            )
            print(
                table(
                    rows,
                    [
                        "push",
                        "sessions",
                        "streams RTF",
                        "pool RTF",
                        "pool CPU RTF",
                        "pool × streams",
                        "pool × eager",
                        "step ms (median)",
                        "threads RTF",
                        "threads × streams",
                        "push ms (median)",
                        "max |Δ| / peak",
                    ],
                )  # fmt: skip
            )
            if args.quick:
                continue
            rng = np.random.default_rng(1)
            files = [mel_like(int(rng.integers(3 * rate // hop, 6 * rate // hop)), bands, 100 + i) for i in range(16)]
            _, loop_wall, loop_cpu = timed(lambda fs: [model(f) for f in fs], files)
            rows = [["model(x) each", "-", f"{loop_wall:.2f}", f"{loop_cpu:.2f}", "1.00"]]
            for slots in (4, 16):
                _, wall, cpu = timed(lambda fs, n: list(model.map(fs, slots=n)), files, slots)
                rows.append([f"map, {slots} slots", model.engine.preferred_chunk(), f"{wall:.2f}", f"{cpu:.2f}",
                             f"{wall / loop_wall:.2f}"])  # fmt: skip
            print(f"\n{label}: 16 files of 3-6 s")
            print(table(rows, ["", "block", "wall s", "CPU s", "× loop"]))
        finally:
            if busy is not None:
                busy.kill()


if __name__ == "__main__":
    main()
