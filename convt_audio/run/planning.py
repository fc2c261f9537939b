"""Planning a batch: inputs expanded, every output named, and clashes refused before any work
(README.md, "Pipes, containers and batches")."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..core.errors import UsageError, option
from ..io.atomic import remove_stale_parts
from ..io.audio import STDIO, audio_extensions, format_for
from .runner import Runner


@dataclass(frozen=True)
class Job:
    """One input and where its output goes (``None``: beside it, ``<stem>.<rate>hz.wav``)."""

    source: Path
    dest: Path | None
    error: str | None = None  # a problem found while planning (an unreadable folder): the job fails with it
    token: str | None = None  # a cluster batch's name for this job: a retry finds the output it already wrote
    skip: str | None = None  # why a file a folder holds is not run (named in the batch's report, never silent)


_OWN_OUTPUT = re.compile(r"\.\d+hz$")  # the stem of a <stem>.<rate>hz.<ext> output of ours


def default_name(source: Path, rate: int, container: str | None = None) -> Path:
    """``<stem>.<rate>hz.<container or wav>`` beside the input."""
    return source.with_name(f"{source.stem}.{rate}hz.{container or 'wav'}")


def _writable_name(path: Path, container: str | None = None) -> Path:
    if container:
        return path.with_suffix(f".{container}")
    try:
        format_for(path)
        return path
    except UsageError:
        return path.with_suffix(".wav")


OWN_OUTPUT_SKIP = (
    "named as this tool names its outputs (<stem>.<rate>hz.<ext>), so taken for an earlier run's "
    "result; name it on the command line to run it"
)


def _listed(
    folder: Path, recursive: bool, skip: Path | None = None
) -> tuple[list[Path], list[tuple[Path, str]], list[Path]]:
    """Audio files in a folder (and its subfolders), the folders that could not be read, and the
    audio files passed over.

    Hidden files and folders and the output folder ``skip`` are not looked at; files named as
    this tool names its outputs (``<stem>.<rate>hz.<ext>``) are passed over, so that a second run
    over the same folder does not process the first run's results (the batch names each).
    """
    extensions = audio_extensions()
    found: list[Path] = []
    passed_over: list[Path] = []
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
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower().lstrip(".") in extensions:
                (passed_over if _OWN_OUTPUT.search(Path(name).stem) else found).append(Path(top) / name)
    return sorted(found), unreadable, sorted(passed_over)


def plan_jobs(
    inputs: Iterable[str | Path], output: str | Path | None, recursive: bool = False, container: str | None = None
) -> list[Job]:
    """Expand folders and name every output (README.md, "Pipes, containers and batches").

    One input file with ``-o FILE`` writes that file; several inputs or a folder write into
    ``-o DIR``: a file named on the command line as ``DIR/<name>``, a folder's files keeping
    their path inside that folder; without ``-o`` outputs go beside the inputs. ``-`` is standard input (as an
    input) or standard output (as ``-o``), one stream each. ``container`` (``--type``) is the
    container of every output the tool names. :func:`check_outputs` then names the default
    outputs and refuses clashes with inputs or between outputs.
    """
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise UsageError("no inputs given")
    if (
        output is None
        and len(inputs) == 2
        and str(inputs[1]) != STDIO
        and not inputs[1].exists()
        and (str(inputs[0]) == STDIO or inputs[0].is_file())
    ):
        # sox's order (IN OUT) would read the output name as a second input, run the first into
        # <stem>.<rate>hz.wav beside it and then fail on the second: refused before any work
        raise UsageError(
            f"{inputs[1]}: no such input; every path is an input here: name the output with "
            f"{option('output')} ({option('output', inputs[1])}), as in convt-audio run {inputs[0]} -o {inputs[1]}"
        )
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
            listed, unreadable, passed_over = _listed(item, recursive, skip)
            problems += [
                Job(path, None, f"{path}: cannot read this folder ({why}); its files were not run")
                for path, why in unreadable
            ]
            problems += [Job(path, None, skip=OWN_OUTPUT_SKIP) for path in passed_over]
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
        if container and output.suffix and output.suffix.lower().lstrip(".") != container:  # none: -t names it
            raise UsageError(
                f"{option('output', output)}: {option('container', container)} contradicts the file's extension"
            )
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
    return [Job(src, output / _writable_name(relative, container)) for src, relative in pairs] + problems


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


def _planned_rate(job: Job, runner: Runner, input_rate, raw: bool = False) -> int | None:
    """The output rate a job will have, read cheaply from the header; None if unreadable now
    (the file then fails on its own when it runs). With ``--rate`` alone, the resampler for the
    file's rate is built here, so that a ratio no resampler can give is refused before any work."""
    import soundfile as sf

    from ..io.audio import is_fifo

    if is_fifo(job.source):  # reading its header would consume it: named when it runs
        return None
    try:
        if raw:  # a headerless input's rate is the one its description gives
            pass
        elif job.source.suffix.lower() == ".npy":
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


def check_outputs(
    jobs: list[Job], runner: Runner, input_rate=None, container: str | None = None, raw: bool = False
) -> list[Job]:
    """Name every output before any work, and refuse a plan that could lose a file.

    Every planned output is compared with every input and every other output (resolved paths,
    symlinks and hard links included): an output that is an input, or two inputs writing one
    output, is a :class:`UsageError` naming both — with or without ``--overwrite``. Returns the
    jobs with their default (``<stem>.<rate>hz.wav``) outputs filled in where the rate is known.
    """
    named = []
    for job in jobs:
        if job.skip is not None:
            named.append(job)
            continue
        if job.error is None and str(job.source) != STDIO and (job.dest is None or runner.config is None):
            rate = _planned_rate(job, runner, input_rate, raw)
            if job.dest is None and rate is not None:
                job = Job(job.source, default_name(job.source, rate, container))
        named.append(job)
    # every input by resolved path (whether it exists yet or not) and by inode (symlinks, hard
    # links, the file behind standard input): each output is looked up, not compared with all
    by_path: dict[Path, Path] = {}
    by_inode: dict[tuple[int, int], Path] = {}
    for job in named:
        if job.skip is not None:  # not an input: an earlier run's output may be rewritten (--overwrite)
            continue
        if str(job.source) != STDIO:
            by_path.setdefault(job.source.resolve(), job.source)
        inode = _identity(job.source, stdio=0)
        if inode is not None:
            by_inode.setdefault(inode, job.source)
    owners: dict[Path, Path] = {}
    for job in named:
        if job.dest is None or job.error is not None or job.skip is not None:
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
    (:func:`~convt_audio.io.atomic.remove_stale_parts`)."""
    folders = {
        (job.dest.parent if job.dest else job.source.parent)
        for job in jobs
        if job.error is None and job.skip is None and str(job.dest) != STDIO
    }
    inputs = frozenset(job.source.resolve() for job in jobs if str(job.source) != STDIO)
    return [path for folder in sorted(folders) for path in remove_stale_parts(folder, started, keep=inputs)]
