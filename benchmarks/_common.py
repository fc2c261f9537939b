"""Helpers shared by the benchmark scripts: medians, whole-process timing, peak memory, scratch folders."""

from __future__ import annotations

import atexit
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def scratch(prefix: str) -> Path:
    """A new temporary folder, removed when the script exits (at its end, on an error or on
    Ctrl-C; not when it is killed): the checkpoints, exports and decodes the scripts write
    there reach ~900 MB a run for BigVGAN v2."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


def median_time(fn, repeats: int = 5) -> float:
    """Median wall seconds of ``fn()`` over ``repeats`` runs (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_process(args: list[str], cwd: Path | None = None) -> tuple[float, int]:
    """Run a whole process; return (wall seconds, peak RSS in KiB) via /usr/bin/time -v.

    Peak memory is read by a small parent (GNU time), not from ru_maxrss of our own children,
    which can inherit this process's high-water mark across exec.
    """
    timer = shutil.which("time") or "/usr/bin/time"
    if not Path(timer).exists():  # no GNU time: the child's own ru_maxrss (see the caveat above)
        start = time.perf_counter()
        child = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        if status != 0:
            raise RuntimeError(f"{args} failed:\n{child.stderr.read()[-2000:].decode(errors='replace')}")
        return wall, usage.ru_maxrss
    start = time.perf_counter()
    done = subprocess.run([timer, "-v", *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{done.stderr[-2000:]}")
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    return wall, int(match.group(1)) if match else -1


def median_process(args: list[str], repeats: int = 3, cwd: Path | None = None) -> tuple[float, int]:
    """Median wall seconds and the largest peak RSS of a command run ``repeats`` times."""
    runs = [run_process(args, cwd) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def matmul_peak() -> float:
    """float32 matmul GFLOP/s (2048², median of 5): the peak to compare convolutions with."""
    import torch

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    return 2 * 2048**3 / median_time(lambda: a @ b, 5) / 1e9


def convt_audio() -> str:
    return str(BIN / "convt-audio")


def decode_command(inputs: Path, model: str, weights: Path, out: Path, *extra: str) -> list[str]:
    """``convt-audio run`` of ``inputs`` through ``model`` with ``weights`` into a float WAV."""
    return [convt_audio(), "run", str(inputs), "-c", model, "-w", str(weights), "-o", str(out), "--subtype", "FLOAT",
            "--overwrite", "-q", *extra]  # fmt: skip


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{os.cpu_count()} cores, {cpu}, torch {torch.__version__}, threads {torch.get_num_threads()}"


def table(rows: list[list], headers: list[str]) -> str:
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(lines)
