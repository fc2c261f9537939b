"""One file streamed end to end: read in blocks by a reader thread, pushed through the engine
its :class:`~convt_audio.run.runner.Runner` picks, written by a writer thread to a temporary file
renamed into place when complete (:mod:`convt_audio.io.atomic`), or to standard output; the
result is a :class:`FileReport`, the record ``--json`` prints."""

from __future__ import annotations

import os
import queue
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..core.errors import AudioError, UsageError, option
from ..core.process import memory_budget, size_text
from ..io.atomic import atomic_path
from ..io.audio import (
    PCM_BITS,
    STDIO,
    STREAM_TYPES,
    AudioSink,
    StdoutSink,
    check_rate,
    choose_subtype,
    format_for,
    needs_dither,
    open_source,
    open_stream_output,
    streamed_to,
)
from ..model.config import channel_plan
from ..model.resamplers import COPY_SOURCE
from ..model.split import SplitStream, part_block, split_plan
from .planning import Job, default_name
from .runner import Runner, RunOptions, fit_chunk


@dataclass(frozen=True)
class FileReport:
    """What happened to one file: the record ``--json`` prints (one JSON object per line) and
    :func:`convt_audio.convert` returns.

    ``status`` is ``ok`` (written), ``skipped`` (``--skip-existing`` and the output exists:
    ``reason``) or ``error`` (``error``: the one line printed). The figures are set for ``ok``;
    ``gain_db`` only with ``--clip rescale``, ``resumed`` only when a cluster retry found its
    output already written. :meth:`as_dict` leaves out what does not apply.
    """

    input: str
    output: str | None
    status: str
    reason: str | None = None
    error: str | None = None
    input_rate: int | float | None = None  # Hz
    output_rate: int | None = None
    channels_in: int | None = None
    channels_out: int | None = None
    frames_in: int | None = None  # per channel
    frames_out: int | None = None
    clipped_samples: int | None = None
    non_finite_output_samples: int | None = None
    non_finite_input_samples_zeroed: int | None = None
    subtype: str | None = None
    dithered: bool | None = None  # TPDF dither added before rounding to the PCM subtype
    device: str | None = None
    engine: str | None = None
    gain_db: float | None = None
    resumed: bool | None = None
    seconds: float | None = None  # of input audio
    wall_seconds: float | None = None
    realtime_factor: float | None = None  # wall / audio seconds (None for no audio)
    speed_x_realtime: float | None = None

    _ONLY_WHEN_SET = ("reason", "error", "gain_db", "resumed")

    def as_dict(self) -> dict:
        """The JSON record: ``input``, ``output``, ``status``, then what applies to the status."""
        record = {"input": self.input, "output": self.output, "status": self.status}
        for f in fields(self)[3:]:
            value = getattr(self, f.name)
            if value is not None or (self.status == "ok" and f.name not in self._ONLY_WHEN_SET):
                record[f.name] = value
        return record

    @classmethod
    def from_dict(cls, record: dict) -> "FileReport":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


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


class Cancelled(Exception):
    """The batch was interrupted (Ctrl-C) while this file ran."""


def _prefetch(
    blocks: Iterator[np.ndarray], stop: threading.Event, depth: int = 3, cancel=None, source=None
) -> Iterator[np.ndarray]:
    """Read blocks in a thread so decoding overlaps with compute. While it waits for a block
    (a stalled pipe), a set ``cancel`` stops the file at once (:class:`Cancelled`), and a second
    signal's KeyboardInterrupt reaches this thread: a read blocked in libsndfile never holds
    the run. A reader left blocked marks ``source`` busy, so its handle is not closed under it."""
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
            try:
                item = items.get(timeout=0.1)
            except queue.Empty:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(str(getattr(source, "path", ""))) from None
                continue
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=1.0)
        if thread.is_alive() and source is not None:
            source.busy = True


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

    def abandon(self) -> None:
        """Stop after a failure without raising the writer's own error over the first one."""
        self.items.put(None)
        self.thread.join()


class _InlineWriter:
    """Writes each block at once, in the caller's thread (see :func:`_overlaps`)."""

    def __init__(self, sink) -> None:
        self.sink = sink

    def put(self, block: np.ndarray) -> None:
        self.sink.write(block)

    def finish(self) -> None:
        pass

    def abandon(self) -> None:
        pass


def _overlaps(engine, source, sink) -> bool:
    """Whether reading and writing run in threads of their own, beside the compute.

    They pay where there is other work to overlap: a GPU computing, a pipe whose other end runs
    at its own pace, a format to decode or encode (10 min of stereo FLAC 44.1 -> 48 kHz FLAC:
    wall 2.9 s inline, 2.0 s with the threads, at the same CPU time). Copying PCM on the CPU
    is not: the three threads then hand the GIL and the blocks back and forth (~10 context
    switches per block) and cost more CPU than they save wall time (10 min of stereo WAV 96 ->
    44.1 kHz: 2.15 s of CPU time with the threads, 1.5 s without; wall 1.6 s and 1.45 s).
    """
    return (
        str(getattr(engine, "device", "cpu")) != "cpu"
        or getattr(source, "is_stream", False)
        or isinstance(sink, StdoutSink)
        or source.decodes
        or getattr(sink, "encodes", False)
    )


def process_file(
    runner: Runner,
    job: Job,
    options: RunOptions,
    cancel: threading.Event | None = None,
    progress: Callable[[int, int | None, float], None] | None = None,
) -> FileReport:
    """Stream one file through the engine its :class:`Runner` picks; return its :class:`FileReport`.

    Raises :class:`AudioError` (or a subclass) for a
    bad input, with ``.output`` set once the output name is known; nothing is left at the
    output unless the whole file was written.
    """
    started = time.perf_counter()
    if job.error is not None:
        raise AudioError(job.error)
    if job.skip is not None:
        return FileReport(str(job.source), None, status="skipped", reason=job.skip)
    hint = runner.config
    input_rate = options.input_rate
    if input_rate is None and hint is not None:
        input_rate = hint.feature_rate()
    expected = hint.in_channels if hint is not None else 1
    codes = hint is not None and getattr(hint.layers[0], "takes_codes", False)  # a codec's integer codes
    latent = hint.latent_channels if hint is not None else None  # or its latent (DAC)
    with open_source(job.source, input_rate, expected, options.raw, codes, latent) as source:
        try:
            config, engine = runner.pick(source.rate)
        except AudioError as exc:
            raise type(exc)(f"{job.source}: {_features_hint(hint, source) or exc.args[0]}") from None
        per_channel = channel_plan(config, source.channels, options.channels) == "per_channel"
        out_rate = config.output_rate(source.rate)
        dest = job.dest or default_name(job.source, out_rate, options.container)
        names = {"input": str(job.source), "output": str(dest)}
        try:
            if str(dest) != STDIO:
                check_rate(_as_named(dest, options.container), out_rate)
            written = _marked_done(dest, job.token)  # a cluster retry after the file was renamed into place
            if written is None:
                _check_destination(dest, job, options)
                if options.skip_existing and not streamed_to(dest) and dest.exists():
                    return FileReport(**names, status="skipped", reason="output exists")
                try:
                    if source.frames is not None:  # a pipe's length shows at its end: checked then
                        engine.check_frames(source.frames)
                except AudioError as exc:
                    raise type(exc)(f"{job.source}: {exc.args[0]}") from None
                copy = config.source == COPY_SOURCE  # equal rates: the samples as they are, never dithered
                written = _write(
                    engine,
                    source,
                    dest,
                    out_rate,
                    per_channel,
                    options,
                    cancel,
                    progress,
                    job.token,
                    copy,
                    runner.shared_pool(engine),
                )
        except AudioError as exc:
            exc.output = str(dest)
            raise
    wall = time.perf_counter() - started
    seconds = float(written["frames_in"] / Fraction(source.rate))
    return FileReport.from_dict(
        {
            **written,
            **names,
            "status": "ok",
            "input_rate": int(source.rate) if Fraction(source.rate).denominator == 1 else float(source.rate),
            "output_rate": out_rate,
            "channels_in": source.channels,
            "seconds": seconds,
            "wall_seconds": wall,
            "realtime_factor": wall / seconds if seconds else None,
            "speed_x_realtime": seconds / wall if wall else None,
        }
    )


def _check_destination(dest: Path, job: Job, options: RunOptions) -> None:
    """An existing output is refused unless ``--overwrite`` (or skipped, by the caller); a named
    pipe or a device is written into, as standard output is."""
    if streamed_to(dest) or not dest.exists():
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


def _features_hint(config, source) -> str | None:
    """What is wrong where sound was given to a stack that decodes features (a vocoder's mel
    frames), said instead of the rate arithmetic that refused it (``22050 Hz × 256 = 5.6448e+06
    Hz``), with the command that makes the features where the config has their recipe."""
    if config is None or config.feature_rate() is None or source.is_array or source.channels == config.in_channels:
        return None
    if getattr(config.layers[0], "takes_codes", False) or (config.features is None and config.in_channels <= 2):
        return None  # a codec's codes, or a stack for sound at a rate it fixes: the rate is what is wrong
    made = f"; `convt-audio mel {source.path} -c {config.label}` makes them" if config.features is not None else ""
    return (
        f"{source.channels}-channel audio at {source.rate} Hz, but {config.label} decodes "
        f"{config.in_channels}-channel features at {float(config.feature_rate()):g} frames/s{made}"
    )


def _as_named(dest: Path, container: str | None) -> Path:
    """``dest`` as its format is chosen: a name without an extension takes ``--type``'s."""
    return dest.with_name(f"{dest.name}.{container}") if container and not dest.suffix else dest


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
    copy: bool = False,
    shared=None,
) -> dict:
    """Stream ``source`` through ``engine`` into a temporary file renamed onto ``dest`` (or
    front to back into standard output when ``dest`` is ``-``, and into an existing named pipe
    or device, :func:`streamed_to`); ``copy``: the engine computes nothing (equal rates), so a
    PCM output is not dithered; ``shared``: the batch's
    :class:`~convt_audio.model.pool.SharedPool`, whose forwards this file's blocks join."""
    to_stdout = streamed_to(dest)
    if to_stdout:
        named = dest.suffix.lower().lstrip(".") if str(dest) != STDIO else ""
        container = options.container or named or "wav"
        if container not in STREAM_TYPES:
            raise UsageError(
                f"{option('output', dest)}: {option('container', container)} cannot be streamed; use one of {list(STREAM_TYPES)}"
            )
        label = "<stdout>" if str(dest) == STDIO else str(dest)
        fmt, where = ("FLAC" if container == "flac" else "WAV"), f"{label}.{container}"
    else:
        fmt, where = format_for(_as_named(dest, options.container)), str(dest)
    subtype = choose_subtype(fmt, options.subtype, source.subtype, where)
    out_channels = engine.out_channels * (source.channels if per_channel else 1)
    read_dtype = "float64" if engine.dtype == np.float64 else "float32"
    tail_frames = engine.leading_circular_frames()
    if tail_frames:  # a leading circular layer: the file's own stream, seeded with its end
        shared = None
    # a block's buffers hold every file of a shared forward: the automatic block fits them all
    chunk = fit_chunk(engine, options.chunk, (source.channels if per_channel else 1) * (shared.slots if shared else 1))
    if not to_stdout:
        _check_space(dest, fmt, subtype, source, engine, out_channels)

    tail = None
    if tail_frames:
        tail_block = source.tail(tail_frames, read_dtype)
        check_finite(tail_block, source.frames - tail_block.shape[-1], source.path, options.non_finite)
        tail = _shaped(tail_block, per_channel)
    batch = source.channels if per_channel else 1
    split = None if tail is not None or shared else split_plan(engine, source.frames, batch, chunk, memory_budget())
    if split and options.chunk is None:
        chunk = part_block(engine, chunk)
    run = _Pass(
        engine, source, chunk, read_dtype, per_channel, tail, out_channels, options, cancel, progress, split, shared
    )
    gain, clip = 1.0, options.clip
    if clip == "rescale":
        clip = "clamp"
        if subtype not in ("FLOAT", "DOUBLE"):  # integer outputs: a first pass measures the peak
            gain = _rescale_gain(subtype, _peak(run))

    def report(counts: dict) -> dict:
        facts = {
            "output_rate": out_rate,
            "channels_out": out_channels,
            **counts,
            "subtype": subtype,
            "dithered": dither,
            "device": engine.device,
            "engine": engine.name,
        }
        if options.clip == "rescale":
            facts["gain_db"] = 20 * float(np.log10(gain))
        return facts

    dither = options.dither and not copy and needs_dither(subtype, engine.dtype)
    if to_stdout:
        # a pipe's WAV header says what its writer promised (sox writes the length it knows): a
        # stream that ends short of it fails the file, so the header is never wrong for a success
        known = source.frames if source.frames is not None else source.promised
        frames = None if known is None else engine.output_frames(known)
        out = None if str(dest) == STDIO else open_stream_output(dest)  # None: standard output
        try:
            sink = StdoutSink(
                container, out_rate, out_channels, subtype, clip, frames, gain, dither, source.tags, out, label
            )
            return report(_stream_into(sink, run))
        finally:
            if out is not None:
                with suppress(OSError):  # flushed by the sink; a closed pipe was told as its error
                    out.close()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AudioError(f"{dest}: cannot create its folder {dest.parent} ({exc.strerror})") from None
    with atomic_path(dest, overwrite=options.overwrite) as tmp:
        sink = AudioSink(
            tmp, out_rate, out_channels, fmt, subtype, clip, label=str(dest), gain=gain, dither=dither, tags=source.tags
        )
        facts = report(_stream_into(sink, run))
        if token is not None:  # renamed with the file: a retry of this job reports it, never rewrites it
            _mark(tmp, token, facts)
    return facts


_UNCOMPRESSED = ("WAV", "WAVEX", "W64", "RF64", "AIFF", "CAF", "AU", "FLAC")  # FLAC: at most about PCM's size
_SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


def _check_space(dest: Path, fmt: str, subtype: str, source, engine, out_channels: int) -> None:
    """Refuse, before any work, an uncompressed (or FLAC) output whose PCM size is larger than
    the free space of its folder (a ×10⁶ stack on a short input would otherwise fill the disk
    before failing)."""
    from ..io.atomic import free_space

    if source.frames is None or fmt not in _UNCOMPRESSED or subtype not in _SAMPLE_BYTES:
        return
    needed = engine.output_frames(source.frames) * out_channels * _SAMPLE_BYTES[subtype]
    room = free_space(dest)
    if room is None:
        return
    folder, free = room
    if needed > free:
        raise AudioError(
            f"{dest}: the output needs {size_text(needed)} ({engine.output_frames(source.frames):,} frames × "
            f"{out_channels} channel(s) of {subtype}), but {folder} has {size_text(free)} free"
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


def _peak(run: "_Pass") -> float:
    """Run the whole file once without writing; return the output's peak."""
    if run.source.frames is None:
        raise AudioError(
            f"{run.source.path}: {option('clip', 'rescale')} reads the input twice, which a stream of unknown "
            f"length (a pipe, or FLAC written to one) cannot give; pass a file whose header holds it"
        )
    sink = _PeakSink()
    _stream_into(sink, run)
    return sink.peak


def _rescale_gain(subtype: str, peak: float) -> float:
    """The gain that brings ``peak`` to the largest positive step of the PCM ``subtype`` (≤ 1)."""
    steps = 2.0 ** (PCM_BITS.get(subtype, 16) - 1)
    limit = (steps - 1) / steps
    return min(1.0, limit / peak) if peak > 0 else 1.0


def _shaped(block: np.ndarray, per_channel: bool) -> np.ndarray:
    """``[channels, n]`` → ``[batch, channels, n]``: each channel a batch item, or one item."""
    return block[:, None, :] if per_channel else block[None]


@dataclass(frozen=True)
class _Pass:
    """One pass of a file through its engine: what :func:`_stream_into` needs."""

    engine: object
    source: object  # an AudioSource
    chunk: int  # input frames per block
    read_dtype: str
    per_channel: bool
    tail: np.ndarray | None  # the input's last frames, for a leading circular layer
    out_channels: int
    options: RunOptions
    cancel: threading.Event | None
    progress: Callable[[int, int | None, float], None] | None
    split: tuple | None = None  # (boundary, context, threads each): two halves at once (model.split)
    shared: object = None  # the batch's SharedPool: this file's blocks join its forwards


def _stream_into(sink, run: _Pass) -> dict:
    """Read ``source`` in blocks, push them through a stream of ``engine``, write into ``sink``."""
    engine, source, cancel, progress, out_channels = run.engine, run.source, run.cancel, run.progress, run.out_channels
    batch = source.channels if run.per_channel else 1
    plan = run.split
    if plan:
        stream = SplitStream(engine, batch, *plan)
    elif run.shared is not None:
        stream = run.shared.open(batch)
    else:
        stream = engine.open_stream(batch, run.tail)
    stop = threading.Event()
    overlap = _overlaps(engine, source, sink)
    writer = _Writer(sink) if overlap else _InlineWriter(sink)
    blocks = source.blocks(run.chunk, run.read_dtype)
    try:
        done = replaced = 0
        for block in _prefetch(blocks, stop, cancel=cancel, source=source) if overlap else blocks:
            if cancel is not None and cancel.is_set():
                raise Cancelled(str(source.path))
            if not source.always_finite:
                replaced += check_finite(block, done, source.path, run.options.non_finite)
            writer.put(stream.push(_shaped(block, run.per_channel)).reshape(out_channels, -1))
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
        if plan or run.shared is not None:  # its threads stopped, or its place in the batch given up
            stream.stop()
        writer.abandon()
        with suppress(AudioError):
            sink.close()
        raise
    writer.finish()
    sink.close()
    if sink.frames != engine.output_frames(done):  # sizes follow what was read, not what a header said
        raise AudioError(
            f"{source.path}: wrote {sink.frames} frames for the {done} read, where the stack gives "
            f"{engine.output_frames(done)}; the output was discarded"
        )
    return {
        "frames_in": done,
        "frames_out": sink.frames,
        "clipped_samples": sink.clipped,
        "non_finite_output_samples": sink.non_finite,
        "non_finite_input_samples_zeroed": replaced,
    }
