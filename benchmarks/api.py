"""The Python API against the command line on the same audio.

1. convt_audio.resample on 30 s of stereo 44.1 -> 48 kHz (arrays in memory) vs `convt-audio run
   -r 48000` on the same samples in a FLOAT WAV (a whole process: start-up, reading, writing).
   Same samples asserted; medians of 5.
2. A hifigan-v3 decode (random weights, 10 s of 22.05 kHz output) as whole processes: a script
   doing `convt_audio.load("hifigan-v3", w)(mel)` vs `convt-audio run mel.npy -c hifigan-v3 -w w`,
   quiet and beside one busy process; also the script with OMP_WAIT_POLICY=ACTIVE (spinning
   OpenMP waits, what a library without the command line's tuning ran under). Medians of 3,
   wall and CPU seconds.

    .venv/bin/python benchmarks/api.py
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from _common import convt_audio, median_process, median_time, table  # noqa: E402

import convt_audio as api  # noqa: E402


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (44100 * 30, 2)).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        source, dest = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(str(source), x, 44100, subtype="FLOAT")
        start = time.process_time()
        in_process = median_time(lambda: api.resample(x, 44100, 48000), 5)
        cpu = (time.process_time() - start) / 6
        wall, rss = median_process([convt_audio(), "run", str(source), "-r", "48000", "-o", str(dest), "-y", "-q"], 5)
        y = api.resample(x, 44100, 48000)
        z, _ = sf.read(str(dest), dtype="float32")
        assert y.shape == z.shape and np.array_equal(y, z), "the API and the command line differ"
    rows = [
        ["convt_audio.resample (in process)", f"{in_process:.3f}", f"{cpu:.3f}", "-", f"{in_process / wall:.2f}"],
        ["convt-audio run -r (whole process)", f"{wall:.3f}", "-", f"{rss / 1024:.0f}", "1.00"],
    ]
    print("30 s of stereo float32, 44100 -> 48000 Hz; medians of 5; the same samples")
    print(table(rows, ["what", "wall s", "CPU s", "peak RSS MB", "× the command line"]))
    decode()


SCRIPT = "import sys, numpy as np, convt_audio; np.save(sys.argv[3], convt_audio.load('hifigan-v3', sys.argv[1])(np.load(sys.argv[2])))"


def _timed(args: list[str], env: dict) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the child) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def decode(repeats: int = 3) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    with tempfile.TemporaryDirectory() as tmp:
        weights, mel = Path(tmp) / "w.safetensors", Path(tmp) / "mel.npy"
        subprocess.run([convt_audio(), "init", "hifigan-v3", "-o", str(weights)], check=True, capture_output=True)
        np.save(mel, np.random.default_rng(0).normal(-5, 1.5, (80, 862)).astype(np.float32))  # 10 s
        commands = {
            "load('hifigan-v3', w)(mel), a script": (
                [sys.executable, "-c", SCRIPT, str(weights), str(mel), f"{tmp}/y.npy"],
                env,
            ),
            "the same script, OMP_WAIT_POLICY=ACTIVE": (
                [sys.executable, "-c", SCRIPT, str(weights), str(mel), f"{tmp}/y.npy"],
                {**env, "OMP_WAIT_POLICY": "ACTIVE"},
            ),
            "convt-audio run mel.npy -c hifigan-v3": (
                [
                    convt_audio(),
                    "run",
                    str(mel),
                    "-c",
                    "hifigan-v3",
                    "-w",
                    str(weights),
                    "-o",
                    f"{tmp}/y.wav",
                    "-y",
                    "-q",
                ],
                env,
            ),
        }
        rows = []
        for busy in (False, True):
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
            try:
                results = {name: [_timed(args, e) for _ in range(repeats)] for name, (args, e) in commands.items()}
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
            medians = {
                name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
                for name, runs in results.items()
            }
            cli_wall = medians["convt-audio run mel.npy -c hifigan-v3"][0]
            for name, (wall, cpu) in medians.items():
                rows.append(
                    [
                        "beside a busy process" if busy else "quiet",
                        name,
                        f"{wall:.2f}",
                        f"{cpu:.2f}",
                        f"{wall / cli_wall:.2f}",
                    ]
                )
        y, z = np.load(f"{tmp}/y.npy")[0], sf.read(f"{tmp}/y.wav", dtype="float32")[0]
        assert y.shape == z.shape and np.abs(y - z).max() < 2**-14, "the API and the command line differ"
    print(f"\nhifigan-v3, random weights, 10 s of output, whole processes, medians of {repeats}")
    print(table(rows, ["machine", "what", "wall s", "CPU s", "× the command line"]))


if __name__ == "__main__":
    main()
