"""A batch of short files: local --jobs 1/2 against --ray with 1/2 workers on this machine.

Prints files per second and the time per file each way, whole processes (the Ray rows include
starting a local cluster), and the overhead per file that Ray adds over the local run with as
many workers. Needs the [ray] extra. Usage: python benchmarks/batch.py [--files 200] [--seconds 2]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import convt_audio, run_process, scratch, table  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--config", default="sinc-x3")
    args = parser.parse_args()
    work = scratch("convt-batch-")
    rng = np.random.default_rng(0)
    (work / "in").mkdir()
    for i in range(args.files):
        sf.write(
            str(work / "in" / f"{i:04d}.wav"),
            0.1 * rng.standard_normal(int(16000 * args.seconds)),
            16000,
            subtype="PCM_16",
        )
    started = time.perf_counter()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.shutdown()
    ray_start = time.perf_counter() - started
    rows, times = [], {}
    for label, extra in (
        ("local --jobs 1", ["-j", "1"]),
        ("local --jobs 2", ["-j", "2"]),
        ("--ray local, 1 worker", ["--ray", "local", "-j", "1"]),
        ("--ray local, 2 workers", ["--ray", "local", "-j", "2"]),
    ):
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        wall, rss = run_process(
            [convt_audio(), "run", str(work / "in"), "-o", str(out), "-c", args.config, "-q", *extra]
        )
        assert len(list(out.iterdir())) == args.files
        times[label] = wall
        rows.append([label, f"{wall:.2f}", f"{args.files / wall:.1f}", f"{1000 * wall / args.files:.1f}", rss // 1024])
    for workers in (1, 2):
        local, remote = times[f"local --jobs {workers}"], times[f"--ray local, {workers} worker{'s' * (workers > 1)}"]
        rows.append(
            [
                f"Ray's cost per file, {workers} worker(s)",
                "-",
                "-",
                f"{1000 * (remote - local - ray_start) / args.files:+.1f}",
                "-",
            ]
        )
    print(
        f"{args.files} files of {args.seconds:g} s at 16 kHz, {args.config}; one run each; starting a local Ray "
        f"cluster alone: {ray_start:.1f} s (included in the Ray rows, not in the per-file cost)"
    )
    print(table(rows, ["run", "seconds", "files/s", "ms per file", "driver peak RSS MB"]))


if __name__ == "__main__":
    main()
