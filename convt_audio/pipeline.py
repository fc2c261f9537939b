"""Files through a stack: batch planning, devices, and one file streamed end to end.

This is what ``convt-audio run`` does, without any of the command line: importable and tested
on its own. A file is read in blocks by a reader thread, streamed through an engine
(:mod:`convt_audio.engines`), and written by a writer thread to a temporary file that is renamed
when complete.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .audio_io import (
    PCM_BITS,
    STDIO,
    STREAM_TYPES,
    AudioSink,
    StdoutSink,
    atomic_path,
    audio_extensions,
    check_rate,
    choose_subtype,
    format_for,
    open_source,
    remove_stale_parts,
)
from .config import Config, channel_plan
from .errors import AudioError, UsageError, option


@dataclass(frozen=True)
class RunOptions:
    """How to run files (the ``run`` command's options, minus file selection)."""

    chunk: int | None = None  # input frames per block; None: the engine's preferred size
    channels: str | None = None  # overrides the config's channels mode
    input_rate: Fraction | int | None = None  # for .npy inputs; None: the config's feature rate
    subtype: str | None = None
    clip: str = "clamp"
    overwrite: bool = False
    skip_existing: bool = False
    non_finite: str = "error"  # NaN/Inf input samples: "error" (the file fails) or "zero" (replaced)
    kind: str | None = None  # --type: the container of outputs the tool names, and of -o -


def usable_cpus() -> int:
    """The CPUs this process may run on (``taskset``, a container's cpuset), not the machine's."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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


def _size(count: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{int(count)} bytes"


def fit_chunk(engine, chunk: int | None, batch: int, budget: int | None = None) -> int:
    """The input frames per block: ``chunk`` (the user's) or the engine's preferred size, shrunk
    (when automatic) until the block's buffers fit a quarter of the memory budget; a block that
    cannot fit the budget even at its smallest is refused, naming the layer and the bytes."""
    budget = memory_budget() if budget is None else budget
    size = chunk or engine.preferred_chunk()
    smallest = max(1, engine.min_input_frames())
    if chunk is None:
        while size > smallest and engine.block_bytes(size, batch)[0] > budget // 4:
            size = max(smallest, size // 2)
    total, where, most = engine.block_bytes(size, batch)
    if total > budget:
        advice = f"a smaller --chunk (it is {size})" if chunk is not None else "a stack with smaller strides"
        raise AudioError(
            f"{where} would hold {most:,} bytes ({_size(most)}; all layers {_size(total)}) for one "
            f"block of {size} input frame(s) × {batch}, over the memory budget of {_size(budget)} "
            f"(${MEMORY_ENV} sets it); use {advice}"
        )
    return size


def check_finite(block: np.ndarray, start: int, path, mode: str = "error") -> int:
    """Refuse (or, with ``mode="zero"``, zero in place) NaN/Inf samples of a ``[channels, n]``
    block whose first frame is ``start``; return how many were replaced."""
    finite = np.isfinite(block)
    if finite.all():
        return 0
    if mode == "zero":
        bad = int(block.size - np.count_nonzero(finite))
        block[~finite] = 0.0
        return bad
    channel, frame = (int(i) for i in np.argwhere(~finite)[0])
    raise AudioError(
        f"{path}: non-finite sample ({block[channel, frame]}) at frame {start + frame}, "
        f"channel {channel}; pass {option('non_finite', 'zero')} to replace such samples with 0"
    )


@dataclass(frozen=True)
class Job:
    """One input and where its output goes (``None``: beside it, ``<stem>.<rate>hz.wav``)."""

    source: Path
    dest: Path | None
    error: str | None = None  # a problem found while planning (an unreadable folder): the job fails with it
    token: str | None = None  # a cluster batch's name for this job: a retry finds the output it already wrote


# --------------------------------------------------------------------------------------------
# planning a batch


_OWN_OUTPUT = re.compile(r"\.\d+hz$")  # the stem of a <stem>.<rate>hz.<ext> output of ours


def default_name(source: Path, rate: int, kind: str | None = None) -> Path:
    """``<stem>.<rate>hz.<kind or wav>`` beside the input."""
    return source.with_name(f"{source.stem}.{rate}hz.{kind or 'wav'}")


def _writable_name(path: Path, kind: str | None = None) -> Path:
    if kind:
        return path.with_suffix(f".{kind}")
    try:
        format_for(path)
        return path
    except UsageError:
        return path.with_suffix(".wav")


def _listed(folder: Path, recursive: bool, skip: Path | None = None) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Audio files in a folder (and its subfolders), and the folders that could not be read.

    Hidden files and folders, the output folder ``skip`` and files named as this tool names its
    outputs (``<stem>.<rate>hz.<ext>``) are not inputs: a second run over the same folder does
    not process the first run's results.
    """
    extensions = audio_extensions()
    found: list[Path] = []
    unreadable: list[tuple[Path, str]] = []

    def failed(exc: OSError) -> None:
        unreadable.append((Path(exc.filename or folder), exc.strerror or str(exc)))

    for top, dirs, files in os.walk(folder, onerror=failed):
        dirs[:] = (
            sorted(
                d
                for d in dirs
                if not d.startswith(".") and not (skip is not None and (Path(top) / d).resolve() == skip)
            )
            if recursive
            else []
        )
        found.extend(
            Path(top) / name
            for name in files
            if not name.startswith(".")
            and Path(name).suffix.lower().lstrip(".") in extensions
            and not _OWN_OUTPUT.search(Path(name).stem)
        )
    return sorted(found), unreadable


def plan_jobs(
    inputs: Iterable[str | Path], output: str | Path | None, recursive: bool = False, kind: str | None = None
) -> list[Job]:
    """Expand folders and name every output (README.md, "Pipes, containers and batches").

    One input file with ``-o FILE`` writes that file; several inputs or a folder write into
    ``-o DIR``: a file named on the command line as ``DIR/<name>``, a folder's files keeping
    their path inside that folder; without ``-o`` outputs go beside the inputs. ``-`` is standard input (as an
    input) or standard output (as ``-o``), one stream each. ``kind`` (``--type``) is the
    container of every output the tool names. :func:`check_outputs` then names the default
    outputs and refuses clashes with inputs or between outputs.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise UsageError("no inputs given")
    stdin = [p for p in inputs if str(p) == STDIO]
    if stdin and len(inputs) > 1:
        raise UsageError("- (standard input) must be the only input")
    if stdin and output is None:
        raise UsageError(
            f"- (standard input) needs {option('output', 'FILE')}, or {option('output', '-')} for standard output"
        )
    if output is not None and str(output) == STDIO:
        if len(inputs) > 1 or inputs[0].is_dir():
            raise UsageError(f"{option('output', '-')} (standard output) takes one input")
        return [Job(inputs[0], Path(STDIO))]
    if stdin:
        if Path(output).is_dir() or str(output).endswith(("/", os.sep)):
            raise UsageError(
                f"{option('output', output)}: is a folder; standard input has no name to give its "
                f"output there: name the file ({option('output', 'FILE')}) or use {option('output', '-')}"
            )
        return [Job(inputs[0], Path(output))]
    pairs: list[tuple[Path, Path]] = []  # (source, relative name for -o DIR)
    problems: list[Job] = []  # folders that could not be read: each fails as one job
    any_folder = False
    skip = Path(output).resolve() if output is not None else None
    for item in inputs:
        if item.is_dir():
            any_folder = True
            listed, unreadable = _listed(item, recursive, skip)
            problems += [
                Job(path, None, f"{path}: cannot read this folder ({why}); its files were not run")
                for path, why in unreadable
            ]
            if not listed and not unreadable:
                raise UsageError(
                    f"{item}: no audio files found"
                    f"{'' if recursive else ' (pass ' + option('recursive') + ' to look in subfolders)'}"
                )
            pairs.extend((p, p.relative_to(item)) for p in listed)
        else:  # a file named on the command line goes to DIR/<name>, as cp and sox put it
            pairs.append((item, Path(item.name)))

    if output is None:
        return [Job(src, None) for src, _ in pairs] + problems
    text = str(output)
    output = Path(output)
    several = len(pairs) > 1 or any_folder
    into_folder = several or output.is_dir() or text.endswith(("/", os.sep))  # before Path() drops the slash
    if not into_folder:
        if kind and output.suffix.lower().lstrip(".") != kind:
            raise UsageError(f"{option('output', output)}: {option('kind', kind)} contradicts the file's extension")
        return [Job(pairs[0][0], output)]
    if output.exists() and not output.is_dir():
        raise UsageError(f"{option('output', output)}: is a file; several inputs need a folder")
    if (
        several
        and not output.exists()
        and not text.endswith(("/", os.sep))
        and output.suffix.lower().lstrip(".") in audio_extensions()
    ):
        raise UsageError(
            f"{option('output', output)}: names one file, but there are {len(pairs)} inputs; give a folder "
            f"(end it with / to create it)"
        )
    return [Job(src, output / _writable_name(relative, kind)) for src, relative in pairs] + problems


def _identity(path: Path | str, stdio: int = 0) -> tuple[int, int] | None:
    """``(device, inode)`` of the file ``path`` names, else None; for ``-``, the regular file
    behind descriptor ``stdio`` (0: ``< a.wav``; 1: ``> a.wav``)."""
    import stat

    try:
        if str(path) == STDIO:
            info = os.fstat(stdio)
            return (info.st_dev, info.st_ino) if stat.S_ISREG(info.st_mode) else None
        # a path through a folder that does not exist yet (sub/../a.wav) names what it will once
        # the folder is made: its resolved form
        info = os.stat(path if os.path.exists(path) else Path(path).resolve())
    except OSError:
        return None
    return info.st_dev, info.st_ino


class Runner:
    """What runs each file: one config and its engine, or — with ``target_rate`` and no config —
    the resampler for each input rate (:func:`~convt_audio.design.resampler_for`), built once per
    ratio with ``build(config, params)`` (:func:`~convt_audio.engines.build_engine`).

    With both a config and ``target_rate``, the rate is a check: a file the config does not turn
    into ``target_rate`` fails.
    """

    def __init__(
        self,
        config: Config | None = None,
        engine=None,
        target_rate: int | None = None,
        build: Callable | None = None,
        allow_aliasing: bool = False,
        upsample_only: bool = False,
    ):
        if config is None and (target_rate is None or build is None):
            raise ValueError("a Runner needs a config and engine, or a target rate and a builder")
        self.config, self.engine, self.target_rate, self.build = config, engine, target_rate, build
        self.allow_aliasing = allow_aliasing
        self.upsample_only = upsample_only  # the default target (no config, no rate): inputs below it only
        self._by_ratio: dict[Fraction, tuple] = {}
        self._lock = threading.Lock()

    def output_rate(self, input_rate) -> int:
        if self.config is None:
            return self.target_rate
        rate = self.config.output_rate(input_rate)
        if self.target_rate is not None and rate != self.target_rate:
            raise AudioError(
                f"{self.config.name} turns {float(input_rate):g} Hz into {rate} Hz, not the "
                f"{self.target_rate} Hz asked for (leave out the config to resample to any rate)"
            )
        return rate

    def pick(self, input_rate) -> tuple:
        """``(config, engine)`` for a file at ``input_rate``."""
        if self.config is not None:
            self.output_rate(input_rate)
            return self.config, self.engine
        from .design import resampler_for

        ratio = Fraction(self.target_rate) / Fraction(input_rate)
        if self.upsample_only and ratio <= 1:
            raise UsageError(
                f"the input is {float(input_rate):g} Hz: without {option('target_rate')} or "
                f"{option('config')}, inputs below {self.target_rate} Hz are upsampled to it; give "
                f"{option('target_rate', 'HZ')} for another rate, or {option('config', 'CONFIG')}"
            )
        with self._lock:  # --jobs threads share one engine per ratio
            if ratio not in self._by_ratio:
                config, params = resampler_for(input_rate, self.target_rate, allow_aliasing=self.allow_aliasing)
                self._by_ratio[ratio] = (config, self.build(config, params))
            return self._by_ratio[ratio]


DEFAULT_RATE = 48000  # run with neither a config nor --rate: inputs below it are resampled to it
MAX_RESAMPLE_RATE = 8 * 768000  # Hz: --rate without a config (a check of a config's rate may name any)


@dataclass(frozen=True)
class RunnerRecipe:
    """How to build a :class:`Runner` — small and picklable, so that each cluster worker loads
    the config and weights itself, once (:mod:`convt_audio.cluster`)."""

    config: str | None = None  # a path or built-in name; None with target_rate: chosen per input rate
    weights: str | None = None
    target_rate: int | None = None  # None with config None: DEFAULT_RATE, for inputs below it
    device: str = "auto"
    dtype: str = "float32"
    deterministic: bool = False
    threads: int | None = None
    allow_aliasing: bool = False  # --allow-aliasing: the older band edges (0.45/0.55 of the lower rate)

    def build(self) -> tuple[Runner, list[str]]:
        """The runner, and the names of weight tensors the config does not use."""
        from .config import load_config
        from .engines import build_engine
        from .weights import load_params

        def make(config, params):
            return build_engine(config, params, self.device, self.dtype, self.deterministic)

        if self.config is None:
            if self.target_rate is not None and self.target_rate > MAX_RESAMPLE_RATE:
                raise UsageError(
                    f"{option('target_rate')}: resampling goes up to {MAX_RESAMPLE_RATE} Hz (8 × 768 kHz), "
                    f"got {self.target_rate}"
                )
            if self.weights is not None:
                raise UsageError(
                    f"{option('weights')} needs {option('config')}: without one the resampler is "
                    f"chosen for each input rate"
                )
            return Runner(
                target_rate=self.target_rate or DEFAULT_RATE,
                build=make,
                allow_aliasing=self.allow_aliasing,
                upsample_only=self.target_rate is None,
            ), []
        if self.allow_aliasing:
            raise UsageError(
                f"{option('allow_aliasing')} chooses the band edges of the resampler that "
                f"{option('target_rate')} designs; {option('config')} brings its own filter"
            )
        config = load_config(self.config)
        params, unused = load_params(config, self.weights)
        engine = make(config, params)
        if engine.name == "torch" and self.threads:
            import torch

            torch.set_num_threads(self.threads)
        return Runner(config, engine, self.target_rate), unused


def _planned_rate(job: Job, runner: Runner, input_rate) -> int | None:
    """The output rate a job will have, read cheaply from the header; None if unreadable now
    (the file then fails on its own when it runs). With ``--rate`` alone, the resampler for the
    file's rate is built here, so that a ratio no resampler can give is refused before any work."""
    import soundfile as sf

    try:
        if job.source.suffix.lower() == ".npy":
            if input_rate is None and runner.config is not None:
                input_rate = runner.config.feature_rate()
        else:
            input_rate = sf.info(str(job.source)).samplerate
    except Exception:  # noqa: BLE001 - any failure here is reported when the file runs
        return None
    if input_rate is None:
        return None
    if runner.config is None:  # a --rate no resampler can give is a usage error before any work
        try:
            runner.pick(input_rate)
        except UsageError as exc:
            raise UsageError(f"{job.source}: {exc.args[0]}") from None
    try:
        return runner.output_rate(input_rate)
    except Exception:  # noqa: BLE001 - reported when the file runs
        return None


def check_outputs(jobs: list[Job], runner: Runner, input_rate=None, kind: str | None = None) -> list[Job]:
    """Name every output before any work, and refuse a plan that could lose a file.

    Every planned output is compared with every input and every other output (resolved paths,
    symlinks and hard links included): an output that is an input, or two inputs writing one
    output, is a :class:`UsageError` naming both — with or without ``--overwrite``. Returns the
    jobs with their default (``<stem>.<rate>hz.wav``) outputs filled in where the rate is known.
    """
    named = []
    for job in jobs:
        if job.error is None and str(job.source) != STDIO and (job.dest is None or runner.config is None):
            rate = _planned_rate(job, runner, input_rate)
            if job.dest is None and rate is not None:
                job = Job(job.source, default_name(job.source, rate, kind))
        named.append(job)
    # every input by resolved path (whether it exists yet or not) and by inode (symlinks, hard
    # links, the file behind standard input): each output is looked up, not compared with all
    by_path: dict[Path, Path] = {}
    by_inode: dict[tuple[int, int], Path] = {}
    for job in named:
        if str(job.source) != STDIO:
            by_path.setdefault(job.source.resolve(), job.source)
        inode = _identity(job.source, stdio=0)
        if inode is not None:
            by_inode.setdefault(inode, job.source)
    owners: dict[Path, Path] = {}
    for job in named:
        if job.dest is None or job.error is not None:
            continue
        key = None if str(job.dest) == STDIO else job.dest.resolve()
        inode = _identity(job.dest, stdio=1)
        source = by_path.get(key) or (by_inode.get(inode) if inode is not None else None)
        if source is not None:
            dest = "standard output" if key is None else job.dest
            what = "the file standard input reads" if str(source) == STDIO else f"the input {source}"
            raise UsageError(
                f"{dest}: the output of {job.source} is {what}; choose another output (an input is never overwritten)"
            )
        if key is None:
            continue
        if key in owners:
            raise UsageError(f"{owners[key]} and {job.source} would both write {job.dest}")
        owners[key] = job.source
    return named


def clean_stale_parts(jobs: list[Job], started: float) -> list[Path]:
    """Remove, in every output folder of a batch, temporary outputs that died with their run
    (:func:`~convt_audio.audio_io.remove_stale_parts`)."""
    folders = {
        (job.dest.parent if job.dest else job.source.parent)
        for job in jobs
        if job.error is None and str(job.dest) != STDIO
    }
    inputs = frozenset(job.source.resolve() for job in jobs if str(job.source) != STDIO)
    return [path for folder in sorted(folders) for path in remove_stale_parts(folder, started, keep=inputs)]


# --------------------------------------------------------------------------------------------
# a batch


@dataclass
class BatchResult:
    written: int = 0
    skipped: int = 0
    failed: int = 0


class BatchEvents:
    """What a batch tells its caller (the command line prints, a script may collect); no-ops here."""

    def started(self, job: Job) -> Callable[[int, int | None, float], None] | None:
        """A file begins; return a progress callback ``(frames done, frames total or None, input rate)``."""
        return None

    def finished(self, job: Job, report: dict) -> None:
        """A file was written or skipped (``report["status"]``)."""

    def failed(self, job: Job, message: str, output: str | None, exc: BaseException) -> None:
        """A file failed: one line that names it, and its output where known."""

    def ended(self, job: Job) -> None:
        """A file is done, whichever way."""


def failure_line(job: Job, exc: BaseException, spelling=None) -> tuple[str, str | None]:
    """One line for a failed file, naming it (control characters escaped), and its output;
    parameters spelt per ``spelling`` (:func:`~convt_audio.errors.render`)."""
    from .errors import ConvtAudioError, one_line

    message = exc.render(spelling) if isinstance(exc, ConvtAudioError) else f"{type(exc).__name__}: {exc}"
    message = one_line(message.strip()) if message.strip() else type(exc).__name__
    output = getattr(exc, "output", None) or (str(job.dest) if job.dest else None)
    name = one_line(str(job.source))
    if name not in message and not (output and message.startswith(one_line(output))):
        message = f"{name}: {message}"
    return message, output


def run_batch(
    runner: Runner,
    jobs: list[Job],
    options: RunOptions,
    workers: int = 1,
    fail_fast: bool = False,
    cancel: threading.Event | None = None,
    events: BatchEvents | None = None,
    spelling=None,
) -> BatchResult:
    """Run every job, ``workers`` files at a time; a failed file never stops the others unless
    ``fail_fast``. ``cancel`` (set by a signal handler, say) stops at the next block; files that
    did not finish leave nothing behind."""
    from concurrent.futures import ThreadPoolExecutor

    cancel = cancel or threading.Event()
    events = events or BatchEvents()
    result = BatchResult()
    lock = threading.Lock()

    def one(job: Job) -> None:
        if cancel.is_set():
            return
        try:
            report = process_file(runner, job, options, cancel, events.started(job))
        except Cancelled:
            return
        except Exception as exc:  # noqa: BLE001 - every failure is this file's, told in one line
            message, output = failure_line(job, exc, spelling)
            with lock:
                result.failed += 1
                events.failed(job, message, output, exc)
            if fail_fast:
                cancel.set()
            return
        finally:
            events.ended(job)
        with lock:
            if report["status"] == "skipped":
                result.skipped += 1
            else:
                result.written += 1
            events.finished(job, report)

    if workers == 1:
        for job in jobs:
            one(job)
            if cancel.is_set():
                break
        return result
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        for future in [pool.submit(one, job) for job in jobs]:
            future.result()
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True)
    return result


# --------------------------------------------------------------------------------------------
# one file


class Cancelled(Exception):
    """The batch was interrupted (Ctrl-C) while this file ran."""


def _prefetch(blocks: Iterator[np.ndarray], stop: threading.Event, depth: int = 3) -> Iterator[np.ndarray]:
    """Read blocks in a thread so decoding overlaps with compute."""
    items: queue.Queue = queue.Queue(depth)
    done = object()

    def offer(item) -> bool:
        """Queue ``item`` unless the consumer stopped (it may never take another)."""
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for block in blocks:
                if not offer(block):
                    return
            offer(done)
        except BaseException as exc:  # re-raised in the consumer
            offer(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class _Writer:
    """Writes blocks in a thread so encoding overlaps with compute; errors surface on the next call."""

    def __init__(self, sink: AudioSink, depth: int = 3):
        self.sink = sink
        self.items: queue.Queue = queue.Queue(depth)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            block = self.items.get()
            if block is None:
                return
            if self.error is None:
                try:
                    self.sink.write(block)
                except BaseException as exc:
                    self.error = exc

    def put(self, block: np.ndarray) -> None:
        if self.error is not None:
            raise self.error
        self.items.put(block)

    def finish(self) -> None:
        self.items.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def process_file(
    runner: Runner,
    job: Job,
    options: RunOptions,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int | None, float], None] | None = None,
) -> dict:
    """Stream one file through the engine its :class:`Runner` picks; return a report.

    The report has input, output, rates, channels, frames, seconds of audio, clipped samples,
    wall seconds, real-time factor and device. Raises :class:`AudioError` (or a subclass) for a
    bad input, with ``.output`` set once the output name is known; nothing is left at the
    output unless the whole file was written.
    """
    started = time.perf_counter()
    if job.error is not None:
        raise AudioError(job.error)
    hint = runner.config
    input_rate = options.input_rate
    if input_rate is None and hint is not None:
        input_rate = hint.feature_rate()
    with open_source(job.source, input_rate, hint.in_channels if hint is not None else 1) as source:
        try:
            config, engine = runner.pick(source.rate)
        except AudioError as exc:
            raise type(exc)(f"{job.source}: {exc.args[0]}") from None
        per_channel = channel_plan(config, source.channels, options.channels) == "per_channel"
        out_rate = config.output_rate(source.rate)
        dest = job.dest or default_name(job.source, out_rate, options.kind)
        report = {"input": str(job.source), "output": str(dest)}
        try:
            if str(dest) != STDIO:
                check_rate(dest, out_rate)
            written = _marked_done(dest, job.token)  # a cluster retry after the file was renamed into place
            if written is None:
                _check_destination(dest, job, options)
                if options.skip_existing and str(dest) != STDIO and dest.exists():
                    return {**report, "status": "skipped", "reason": "output exists"}
                try:
                    if source.frames is not None:  # a pipe's length shows at its end: checked then
                        engine.check_frames(source.frames)
                except AudioError as exc:
                    raise type(exc)(f"{job.source}: {exc.args[0]}") from None
                written = _write(engine, source, dest, out_rate, per_channel, options, cancel, progress, job.token)
        except AudioError as exc:
            exc.output = str(dest)
            raise
    wall = time.perf_counter() - started
    seconds = float(written["frames_in"] / Fraction(source.rate))
    return {
        **report,
        "status": "ok",
        "input_rate": int(source.rate) if Fraction(source.rate).denominator == 1 else float(source.rate),
        "output_rate": out_rate,
        "channels_in": source.channels,
        **written,
        "seconds": seconds,
        "wall_seconds": wall,
        "realtime_factor": wall / seconds if seconds else None,
        "speed_x_realtime": seconds / wall if wall else None,
    }


def _check_destination(dest: Path, job: Job, options: RunOptions) -> None:
    """An existing output is refused unless ``--overwrite`` (or skipped, by the caller)."""
    if str(dest) == STDIO or not dest.exists():
        return
    if dest.resolve() == job.source.resolve():
        raise AudioError(f"{dest}: is the input itself; not overwritten")
    if not options.overwrite and not options.skip_existing:
        raise AudioError(f"{dest}: already exists (pass {option('overwrite')} or {option('skip_existing')})")


JOB_MARK = "user.convt-audio.job"  # on a cluster job's output: the job's token and its counts


def _mark(path: Path, token: str, counts: dict) -> None:
    import json

    with suppress(OSError, AttributeError):
        os.setxattr(path, JOB_MARK, json.dumps({"token": token, **counts}).encode())


def _marked_done(dest: Path, token: str | None) -> dict | None:
    """The counts this job recorded on ``dest`` when an earlier attempt wrote it, else None."""
    import json

    if token is None or str(dest) == STDIO:
        return None
    try:
        record = json.loads(os.getxattr(dest, JOB_MARK))
    except (OSError, AttributeError, ValueError):
        return None
    if not isinstance(record, dict) or record.pop("token", None) != token:
        return None
    return {**record, "resumed": True}


def _write(
    engine,
    source,
    dest: Path,
    out_rate: int,
    per_channel: bool,
    options: RunOptions,
    cancel,
    progress,
    token: str | None = None,
) -> dict:
    """Stream ``source`` through ``engine`` into a temporary file renamed onto ``dest`` (or to
    standard output when ``dest`` is ``-``)."""
    to_stdout = str(dest) == STDIO
    if to_stdout:
        kind = options.kind or "wav"
        if kind not in STREAM_TYPES:
            raise UsageError(
                f"{option('output', '-')}: {option('kind', kind)} cannot be streamed; use one of {list(STREAM_TYPES)}"
            )
        fmt, where = ("FLAC" if kind == "flac" else "WAV"), f"<stdout>.{kind}"
    else:
        fmt, where = format_for(dest), str(dest)
    subtype = choose_subtype(fmt, options.subtype, source.subtype, where)
    out_channels = engine.out_channels * (source.channels if per_channel else 1)
    read_dtype = "float64" if engine.dtype == np.float64 else "float32"
    chunk = fit_chunk(engine, options.chunk, source.channels if per_channel else 1)
    if not to_stdout:
        _check_space(dest, fmt, subtype, source, engine, out_channels)

    def shaped(block: np.ndarray) -> np.ndarray:  # [channels, n] -> [batch, channels, n]
        return block[:, None, :] if per_channel else block[None]

    tail_frames = engine.leading_circular_frames()
    tail = None
    if tail_frames:
        tail_block = source.tail(tail_frames, read_dtype)
        check_finite(tail_block, source.frames - tail_block.shape[-1], source.path, options.non_finite)
        tail = shaped(tail_block)
    args = (engine, source, chunk, read_dtype, shaped, tail, out_channels, per_channel, options, cancel, progress)
    gain, clip = 1.0, options.clip
    if clip == "rescale":
        clip = "clamp"
        if subtype not in ("FLOAT", "DOUBLE"):  # integer outputs: a first pass measures the peak
            gain = _rescale_gain(subtype, _peak(*args))

    def report(counts: dict) -> dict:
        facts = {
            "output_rate": out_rate,
            "channels_out": out_channels,
            **counts,
            "subtype": subtype,
            "device": engine.device,
            "engine": engine.name,
        }
        if options.clip == "rescale":
            facts["gain_db"] = 20 * float(np.log10(gain))
        return facts

    if to_stdout:
        frames = None if source.frames is None else engine.output_frames(source.frames)
        return report(_stream_into(StdoutSink(kind, out_rate, out_channels, subtype, clip, frames, gain), *args))
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AudioError(f"{dest}: cannot create its folder {dest.parent} ({exc.strerror})") from None
    with atomic_path(dest, overwrite=options.overwrite) as tmp:
        sink = AudioSink(tmp, out_rate, out_channels, fmt, subtype, clip, label=str(dest), gain=gain)
        facts = report(_stream_into(sink, *args))
        if token is not None:  # renamed with the file: a retry of this job reports it, never rewrites it
            _mark(tmp, token, facts)
    return facts


_UNCOMPRESSED = ("WAV", "WAVEX", "W64", "RF64", "AIFF", "CAF", "AU", "FLAC")  # FLAC: at most about PCM's size
_SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


def _check_space(dest: Path, fmt: str, subtype: str, source, engine, out_channels: int) -> None:
    """Refuse, before any work, an uncompressed (or FLAC) output whose PCM size is larger than
    the free space of its folder (a ×10⁶ stack on a short input would otherwise fill the disk
    before failing)."""
    import shutil

    if source.frames is None or fmt not in _UNCOMPRESSED or subtype not in _SAMPLE_BYTES:
        return
    needed = engine.output_frames(source.frames) * out_channels * _SAMPLE_BYTES[subtype]
    folder = dest.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if needed > free:
        raise AudioError(
            f"{dest}: the output needs {_size(needed)} ({engine.output_frames(source.frames):,} frames × "
            f"{out_channels} channel(s) of {subtype}), but {folder} has {_size(free)} free"
        )


class _PeakSink:
    """A sink that only measures: the largest finite |sample| (the first pass of rescale)."""

    def __init__(self) -> None:
        self.peak, self.frames, self.clipped, self.non_finite = 0.0, 0, 0, 0

    def write(self, block: np.ndarray) -> None:
        if block.size:
            finite = np.abs(block[np.isfinite(block)])
            if finite.size:
                self.peak = max(self.peak, float(finite.max()))
            self.frames += block.shape[-1]

    def close(self) -> None:
        pass


def _peak(engine, source, *args) -> float:
    """Run the whole file once without writing; return the output's peak."""
    if source.frames is None:
        raise AudioError(
            f"{source.path}: {option('clip', 'rescale')} reads the input twice, which a pipe cannot give; pass a file"
        )
    sink = _PeakSink()
    _stream_into(sink, engine, source, *args)
    return sink.peak


def _rescale_gain(subtype: str, peak: float) -> float:
    """The gain that brings ``peak`` to the largest positive step of the PCM ``subtype`` (≤ 1)."""
    steps = 2.0 ** (PCM_BITS.get(subtype, 16) - 1)
    limit = (steps - 1) / steps
    return min(1.0, limit / peak) if peak > 0 else 1.0


def _stream_into(
    sink,
    engine,
    source,
    chunk: int,
    read_dtype: str,
    shaped,
    tail,
    out_channels: int,
    per_channel: bool,
    options: RunOptions,
    cancel,
    progress,
) -> dict:
    """Read ``source`` in blocks, push them through a stream of ``engine``, write into ``sink``."""
    stream = engine.open_stream(source.channels if per_channel else 1, tail)
    stop = threading.Event()
    writer = _Writer(sink)
    try:
        done = replaced = 0
        for block in _prefetch(source.blocks(chunk, read_dtype), stop):
            if cancel is not None and cancel.is_set():
                raise Cancelled(str(source.path))
            replaced += check_finite(block, done, source.path, options.non_finite)
            writer.put(stream.push(shaped(block)).reshape(out_channels, -1))
            done += block.shape[-1]
            if progress:
                progress(done, source.frames, float(source.rate))
        if not done:
            raise AudioError(f"{source.path}: no audio frames")
        try:
            tail_out = stream.flush()
        except AudioError as exc:  # too short: known only now for a pipe
            raise type(exc)(f"{source.path}: {exc.args[0]}") from None
        writer.put(tail_out.reshape(out_channels, -1))
    except BaseException:
        stop.set()
        _abandon(writer)
        with suppress(AudioError):
            sink.close()
        raise
    writer.finish()
    sink.close()
    return {
        "frames_in": done,
        "frames_out": sink.frames,
        "clipped_samples": sink.clipped,
        "non_finite_output_samples": sink.non_finite,
        "non_finite_input_samples_zeroed": replaced,
    }


def _abandon(writer: _Writer) -> None:
    """Stop the writer after a failure without raising its own error over the first one."""
    writer.items.put(None)
    writer.thread.join()
