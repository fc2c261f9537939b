"""The Python API against the command line on the same audio: convt_audio.resample on 30 s of
stereo 44.1 -> 48 kHz (arrays in memory) vs `convt-audio run -r 48000` on the same samples in a
FLOAT WAV (a whole process: start-up, reading, writing). Same samples asserted; medians of 5.

    .venv/bin/python benchmarks/api.py
"""

from __future__ import annotations

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


if __name__ == "__main__":
    main()
