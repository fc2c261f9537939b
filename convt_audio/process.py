"""The process tuning that ``convt-audio run`` applies, for Python callers too: OpenMP threads that
sleep when they wait, glibc's malloc keeping freed blocks, torch's intra-op threads bounded by the
CPUs this process may use. :func:`convt_audio.load`, :func:`convt_audio.resample` and
:func:`convt_audio.convert` call :func:`tune_process` first, so that the same work takes the
same time from a script as from the shell."""

from __future__ import annotations

import os
import sys
from contextlib import suppress

_TUNED = False


def usable_cpus() -> int:
    """The CPUs this process may run on (``taskset``, a container's cpuset), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def tune_process() -> None:
    """Once per process, before torch loads where it can: the settings ``run`` works under.

    - ``OMP_WAIT_POLICY=PASSIVE`` unless the environment sets it (OpenMP reads it when torch
      loads, so it applies only if torch is not imported yet): beside one busy process a 10 s
      hifigan-v1 decode took 8.1 s instead of 12.0 s (medians of 3, 2 cores), and 6-14 s instead
      of 0.93 s for a short hifigan-v3 decode from Python; quiet, 5.6 s against 5.5 s.
    - glibc's malloc keeps freed blocks of up to 32 MB instead of unmapping them: every block
      of a stream allocates and frees arrays of a few hundred kB, and above the default 128 kB
      each was a fresh mmap whose pages fault in again (10 minutes of stereo resampling spent
      ~0.4 s of system time on it).
    """
    global _TUNED
    if _TUNED:
        return
    _TUNED = True
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD


def set_torch_threads(threads: int | None) -> None:
    """torch's intra-op threads: ``threads`` if given, else at most the usable CPUs (torch counts
    the machine's cores, which a ``taskset`` or a container's cpuset may not grant)."""
    import torch

    wanted = threads or min(torch.get_num_threads(), usable_cpus())
    if wanted != torch.get_num_threads():
        torch.set_num_threads(wanted)


def half_precision_advice(dtype: str, device: str) -> str | None:
    """A warning for float16 on the CPU (no fast kernels there: HiFi-GAN ran at ~0.2x real time),
    else None. bfloat16 is not warned of: CPUs with AVX512-BF16 or AMX run it ~2x float32."""
    if dtype == "float16" and str(device).startswith("cpu"):
        return (
            "float16 on the CPU has no fast kernels (a decoder runs several times slower than in "
            "float32); use float32, or bfloat16 on a CPU with AVX512-BF16/AMX"
        )
    return None
