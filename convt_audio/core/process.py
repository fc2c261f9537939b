"""The process tuning that ``convt-audio run`` applies, for Python callers too: OpenMP threads that
sleep when they wait, glibc's malloc keeping freed blocks, torch's intra-op threads bounded by the
CPUs this process may use. :func:`convt_audio.load`, :func:`convt_audio.resample` and
:func:`convt_audio.convert` call :func:`tune_process` first, so that the same work takes the
same time from a script as from the shell; only the command line changes malloc's thresholds."""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Iterator

from .errors import UsageError

_TUNED = False


_WAITING = threading.local()


@contextmanager
def interruptible_wait() -> Iterator[None]:
    """Mark a wait for input in this thread (a pipe's first bytes, a FIFO's writer) during which
    no output file exists yet: a signal handler may then stop the run at once
    (:func:`waiting_interruptibly`) instead of only setting its flag, which a read blocked in
    the kernel or in libsndfile would not look at until more data came."""
    before = getattr(_WAITING, "active", False)
    _WAITING.active = True
    try:
        yield
    finally:
        _WAITING.active = before


def waiting_interruptibly() -> bool:
    """True inside :func:`interruptible_wait` in the calling (the handler's: the main) thread."""
    return getattr(_WAITING, "active", False)


def wait_in_thread(call):
    """``call()`` run in a helper thread while this one waits interruptibly (a C library call that
    blocks on a pipe holds its thread where no Python signal handler can run)."""
    result: dict = {}

    def target() -> None:
        try:
            result["value"] = call()
        except BaseException as exc:  # re-raised in the caller
            result["error"] = exc

    worker = threading.Thread(target=target, daemon=True, name="stream-open")
    worker.start()
    with interruptible_wait():
        while worker.is_alive():
            worker.join(0.1)
    if "error" in result:
        raise result["error"]
    return result["value"]


def usable_cpus() -> int:
    """The CPUs this process may run on (``taskset``, a container's cpuset), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


MIN_MEMORY = 1 << 20
MEMORY_ENV = "CONVT_AUDIO_MAX_MEMORY"  # bytes, or with a K/M/G/T suffix: the budget of one file's buffers


def memory_budget() -> int:
    """Bytes one file's stream may hold: ``$CONVT_AUDIO_MAX_MEMORY`` if set, else half of the
    physical memory, or of this process's cgroup or ``ulimit -v``/``-d`` limit if lower."""
    text = os.environ.get(MEMORY_ENV, "").strip()
    if text:
        units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
        scale = units.get(text[-1:].upper(), 1)
        try:
            value = float(text[:-1] if scale != 1 else text) * scale
        except ValueError:
            value = float("nan")
        if not value > 0 or value == float("inf"):
            raise UsageError(f"{MEMORY_ENV}: {text!r} is not a size in bytes (e.g. 2G, 512M)")
        if value < MIN_MEMORY:
            raise UsageError(f"{MEMORY_ENV}: {text!r} is below the least a run needs, 1M")
        return int(value)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    with suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    with suppress(ImportError, OSError, ValueError):
        import resource

        for which in (resource.RLIMIT_AS, resource.RLIMIT_DATA):  # ulimit -v / -d
            soft = resource.getrlimit(which)[0]
            if soft != resource.RLIM_INFINITY and soft > 0:
                total = min(total, soft)
    return total // 2


def size_text(count: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{int(count)} bytes"


def check_environment() -> None:
    """Refuse, before any work and before torch loads, environment settings that would fail every
    file or that OpenMP would complain of in its own words: a bad ``CONVT_AUDIO_MAX_MEMORY`` or
    ``OMP_NUM_THREADS``."""
    memory_budget()
    threads = os.environ.get("OMP_NUM_THREADS")
    if (
        threads is not None
        and threads.strip()
        and not all(part.strip().isdigit() and int(part) > 0 for part in threads.split(","))
    ):
        raise UsageError(f"OMP_NUM_THREADS: {threads!r} is not a positive whole number (or a list of them)")


def tune_process(malloc: bool = False) -> None:
    """Once per process, before torch loads where it can: the settings ``run`` works under.

    - how torch's OpenMP threads wait between two operations (read when torch loads, so only
      if torch is not imported yet, and only where the environment sets neither
      ``OMP_WAIT_POLICY`` nor ``GOMP_SPINCOUNT``; :func:`wait_settings`): briefly spinning
      where no other process is running, sleeping at once where one is (beside one busy
      process, spinning made a 10 s hifigan-v1 decode take 12.0 s instead of 8.1 s, and a
      short hifigan-v3 decode from Python 6-14 s instead of 0.93 s).
    - with ``malloc`` (the command line's, a short process that owns its heap): glibc's malloc
      keeps freed blocks of up to 32 MB instead of unmapping them: every block of a stream
      allocates and frees arrays of a few hundred kB, and above the default 128 kB each was a
      fresh mmap whose pages fault in again (10 minutes of stereo resampling spent ~0.4 s of
      system time on it). Not for a library caller's process, whose heap is the caller's: a
      long-lived process keeps up to 64 MB more of freed memory per arena under it.
    """
    global _TUNED
    if _TUNED:
        return
    _TUNED = True
    if "torch" not in sys.modules and not {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"} & set(os.environ):
        os.environ.update(wait_settings())
    if malloc and sys.platform.startswith("linux"):
        with suppress(OSError, AttributeError):
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
            libc.mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD


SPIN_COUNT = 20000  # libgomp's spins before a waiting thread sleeps (its default: 300000)


def others_running(looks: int = 5) -> int | None:
    """How many threads of other processes are running or runnable (``/proc/loadavg``'s fourth
    field, less this one): the least of ``looks`` readings 1 ms apart, so that a short command
    passing by is not taken for a busy machine (a CPU-bound process is in every reading).
    None where it cannot be read."""
    import time

    least = None
    for look in range(looks):
        if look:
            time.sleep(0.001)
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return None
        least = running if least is None else min(least, running)
    return max(0, least - 1)


def wait_settings() -> dict[str, str]:
    """The OpenMP environment for torch's threads: ``GOMP_SPINCOUNT`` (spin a little, then sleep;
    torch's Linux wheels use libgomp) where nothing else runs and there are cores to share,
    else ``OMP_WAIT_POLICY=PASSIVE``.

    Between two operations a thread that sleeps at once must be woken by a system call; one
    that spins takes the next operation at once, but beside a busy process it spins on a core
    the other thread of its barrier has lost. 60 s of hifigan-v1, 2 cores, whole processes:
    quiet 24.2 s sleeping, 20.4 s spinning 20000 times (ONNX Runtime: 20.1 s); beside one busy
    process 36.0 s sleeping, 56.1 s spinning 20000 times, 38.9 s 2000 times (ONNX Runtime
    32.6 s). A process started beside a busy one sees it and sleeps; one that a busy process
    joins later spins 20000 times per wait (libgomp's default: 300000). One core: no barrier
    to wait at, and sleeping costs nothing."""
    if usable_cpus() > 1 and others_running() == 0:
        return {"GOMP_SPINCOUNT": str(SPIN_COUNT)}
    return {"OMP_WAIT_POLICY": "PASSIVE"}


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
