"""A run made ready before its first file: every option checked, the runner built, every
output named and every clash refused — the one preparation that ``convt-audio run`` and
:func:`convt_audio.convert` share, so that both refuse the same things in the same words."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from ..core.errors import ConvtAudioError, UsageError, option
from .planning import Job
from .runner import Runner, RunnerRecipe, RunOptions

BITS_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "PCM_32"}  # bits (sox's -b) of a PCM output


@dataclass(frozen=True)
class RawInput:
    """How a headerless input is described (``--input-type raw`` and its fields); the rate is
    the request's ``input_rate``."""

    channels: int | None = None
    bits: int | None = None
    encoding: str | None = None
    endian: str | None = None


@dataclass(frozen=True)
class RunRequest:
    """What a run is asked, in the library's words (the command line's options, parsed)."""

    inputs: tuple
    output: str | None = None
    config: str | None = None
    weights: str | None = None
    rate: str | int | None = None  # the output rate (--rate), "48k" allowed
    input_rate: str | int | Fraction | None = None
    device: str = "auto"
    dtype: str = "float32"
    threads: int | None = None
    deterministic: bool = False
    allow_aliasing: bool = False
    condition: str | float | None = None  # the config's condition (Vocos's bandwidth), as typed
    chunk: int | None = None
    channels: str | None = None
    subtype: str | None = None
    bits: int | None = None
    clip: str = "clamp"
    non_finite: str = "error"
    overwrite: bool = False
    skip_existing: bool = False
    container: str | None = None  # the output's container (--type)
    dither: bool = True
    raw: RawInput | None = None
    recursive: bool = False
    jobs: int = 1
    slots: int | None = None  # files streamed at once as one batch (--slots); None: 16 on a GPU, else 1
    to_json: bool = False
    ray: str | None = None


@dataclass
class PreparedRun:
    """The runner, the jobs with their outputs named, the options of each file, and the warnings
    to tell before the first file (unused tensors, a slow dtype, swept leftovers)."""

    runner: Runner
    recipe: RunnerRecipe
    jobs: list[Job]
    options: RunOptions
    warnings: list[str] = field(default_factory=list)
    workers: int = 1  # files in flight here: --jobs, or --slots (each file's reading and writing a thread)


def _container(container: str | None, output) -> str | None:
    from ..io.audio import STDIO, STREAM_TYPES, output_types

    if container is None:
        return None
    container = container.lower().lstrip(".")
    if container == "raw" and output != STDIO:
        raise UsageError(
            f"{option('container')} is the output's container (raw only for {option('output', '-')}); a headerless input "
            f"is {option('input_type', 'raw')} with {option('input_rate')}, {option('input_channels')}, "
            f"{option('input_bits')} and {option('input_encoding')}"
        )
    allowed = STREAM_TYPES if output == STDIO else output_types()
    if container not in allowed:
        where = f" (for {option('output', '-')})" if output == STDIO else ""
        raise UsageError(f"{option('container')}: {container!r} is not one of {list(allowed)}{where}")
    return container


def _raw_format(raw: RawInput | None, rate):
    from ..io.audio import RawFormat

    if raw is None:
        return None
    return RawFormat.from_options(rate, raw.channels, raw.bits, raw.encoding, raw.endian)


def _subtype(subtype: str | None, bits: int | None) -> str | None:
    if bits is None:
        return subtype
    if bits not in BITS_SUBTYPES:
        raise UsageError(f"{option('bits')}: {bits} is not one of {list(BITS_SUBTYPES)} (bits of a PCM output)")
    if subtype is not None and subtype != BITS_SUBTYPES[bits]:
        raise UsageError(f"{option('bits', bits)} and {option('subtype', subtype)} contradict each other; give one")
    return BITS_SUBTYPES[bits]


def prepare_run(request: RunRequest, started: float | None = None) -> PreparedRun:
    """Check everything a run can check before its first file, build its runner and name its
    outputs; raise a :class:`~convt_audio.core.errors.ConvtAudioError` (a usage, config or
    weights error: exit 2) for the first problem found. ``started`` (a time stamp) bounds the
    sweep of temporary files that runs which died left in the output folders."""
    from ..core.process import check_environment, half_precision_advice, usable_cpus
    from ..io.audio import STDIO
    from ..model.config import parse_rate, whole_rate
    from .planning import check_outputs, clean_stale_parts, plan_jobs

    started = time.time() if started is None else started
    check_environment()  # CONVT_AUDIO_MAX_MEMORY, OMP_NUM_THREADS: once, before any file
    if request.overwrite and request.skip_existing:
        raise UsageError(f"{option('overwrite')} and {option('skip_existing')} exclude each other")
    rate = None if request.input_rate is None else parse_rate(request.input_rate)
    target = None if request.rate is None else whole_rate(request.rate)
    raw = _raw_format(request.raw, rate)
    subtype = _subtype(request.subtype, request.bits)
    cpus = os.cpu_count() or 1
    if request.threads is not None and request.threads > 4 * cpus:
        raise UsageError(
            f"{option('threads')}: at most {4 * cpus} on this machine (4 × its {cpus} CPUs), got {request.threads}"
        )
    container = _container(request.container, request.output)
    if request.to_json and request.output == STDIO:
        raise UsageError(f"{option('json')} and {option('output', '-')} both want standard output; choose one")
    if request.ray is not None and request.output == STDIO:
        raise UsageError(
            f"{option('ray')} and {option('output', '-')}: the cluster's workers write files, not this standard "
            f"output; name an output file or folder"
        )
    if request.slots is not None and request.slots > 1 and (request.ray is not None or request.jobs > 1):
        given = option("ray") if request.ray is not None else option("jobs", request.jobs)
        raise UsageError(
            f"{option('slots', request.slots)} batches files through the one model of this process, "
            f"{given} runs them on models of their own; give one of the two"
        )
    jobs = plan_jobs(request.inputs, request.output, request.recursive, container)
    # torch's threads are shared by the files run here at once (a cluster worker has its own),
    # out of the CPUs this process may use (taskset, cpusets), not the machine's count
    threads = max(1, (request.threads or usable_cpus()) // request.jobs) if request.ray is None else request.threads
    recipe = RunnerRecipe(
        request.config,
        None if request.weights is None else str(request.weights),
        target,
        request.device,
        request.dtype,
        request.deterministic,
        threads,
        request.allow_aliasing,
        request.condition,
    )
    runner, unused = recipe.build()
    warnings = []
    advice = half_precision_advice(request.dtype, runner.engine.device if runner.engine else "cpu")
    if advice:
        warnings.append(advice)
    if unused:
        shown = ", ".join(unused[:8]) + (f", … ({len(unused) - 8} more)" if len(unused) > 8 else "")
        warnings.append(
            f"{request.weights or runner.config.weights}: {len(unused)} tensor(s) not used by the config: {shown}"
        )
    if rate is not None and runner.config is not None:
        try:
            runner.config.output_rate(rate)
        except ConvtAudioError as exc:
            raise UsageError(f"{option('input_rate', request.input_rate)}: {exc.args[0]}") from None
    jobs = check_outputs(jobs, runner, raw.rate if raw else rate, container, raw is not None)
    if request.output is not None and len(jobs) > 1:
        try:
            Path(request.output).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{request.output}: cannot create the output folder ({exc.strerror})") from None
    options = RunOptions(
        chunk=request.chunk,
        channels=request.channels,
        input_rate=rate,
        subtype=subtype,
        clip=request.clip,
        overwrite=request.overwrite,
        skip_existing=request.skip_existing,
        non_finite=request.non_finite,
        container=container,
        dither=request.dither,
        raw=raw,
    )
    stale = clean_stale_parts(jobs, started)
    if stale:
        warnings.append(f"removed {len(stale)} temporary file(s) left by runs that died, e.g. {stale[0]}")
    runner.slots = min(_slots(request, runner), max(1, len(jobs)))
    if runner.slots > 1 and (getattr(runner.engine, "stack", None) is None or runner.target_rate is not None):
        if request.slots is not None:
            warnings.append(
                f"{option('slots', request.slots)}: only a config's own torch stack batches files (not the "
                f"resamplers {option('target_rate')} adds); each file runs alone"
            )
        runner.slots = 1
    workers = request.jobs if runner.slots == 1 or request.ray is not None else runner.slots
    return PreparedRun(runner, recipe, jobs, options, warnings, workers)


def _slots(request: RunRequest, runner: Runner) -> int:
    """Files streamed at once as one batch: ``--slots``, else 16 on a GPU for a local batch of
    one file at a time (each forward launches every kernel whatever its batch), else 1: on the
    CPU whole files already fill the cores (docs/benchmarks.md)."""
    from ..model.pool import SLOTS_ON_GPU

    if request.slots is not None:
        return request.slots
    device = str(getattr(runner.engine, "device", "cpu"))
    return SLOTS_ON_GPU if device.startswith("cuda") and request.jobs == 1 and request.ray is None else 1
