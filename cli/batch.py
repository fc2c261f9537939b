"""How a run's batch shows on the terminal: progress bars, one line per file (written,
skipped, failed, warned), ``--json`` records on standard output, the closing count, and the
exit code — for a local batch and a Ray one alike. The library runs the files and reports them
(:mod:`convt_audio.run.batch`, :mod:`convt_audio.run.report`); this prints."""

from __future__ import annotations

import json
import sys
import threading
import traceback
from contextlib import suppress
from typing import NamedTuple

import typer

from .options import FLAGS
from .terminal import EXIT_FAILED, EXIT_OK, _echo, _err, _Interrupts


class _Shown(NamedTuple):
    """What a run prints: nothing but errors (quiet), JSON records, more of each file (verbose),
    progress bars off a terminal too (show_progress), tracebacks (debug)."""

    quiet: bool
    as_json: bool
    verbose: bool
    show_progress: bool
    debug: bool


def _run_jobs(runner, jobs_list, options, jobs, fail_fast, shown: _Shown, cluster=None) -> int:
    from convt_audio.core.errors import render
    from convt_audio.run.batch import BatchEvents, run_batch
    from convt_audio.run.filestream import FileReport
    from convt_audio.run.report import batch_line, file_line, file_warnings

    from .rich_utils import progress_bars

    cancel = threading.Event()
    emitted = {"records": 0, "broken": False}

    def emit(record: dict) -> None:
        """One --json record; a standard output that closed stops the batch (the rest would be lost)."""
        if emitted["broken"]:
            return
        if _echo(json.dumps(record)):
            emitted["records"] += 1
        else:
            emitted["broken"] = True
            cancel.set()

    class Events(BatchEvents):
        def __init__(self, bars):
            self.bars = bars

        def started(self, job):
            return self.bars.add_file(str(job.source))

        def ended(self, job):
            self.bars.file_done(str(job.source))

        def failed(self, job, message, output, exc):
            if shown.debug:
                traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            self.bars.line(f"convt-audio: error: {message}")
            if shown.as_json:
                emit(FileReport(str(job.source), output, "error", error=message).as_dict())

        def finished(self, job, report):
            for line in file_warnings(report, shown.quiet):
                self.bars.line(f"convt-audio: warning: {render(line, FLAGS)}")
            if shown.as_json:
                emit(report.as_dict())
            elif not shown.quiet and file_line(report, shown.verbose):
                self.bars.line(file_line(report, shown.verbose))

    interrupts = _Interrupts(cancel)
    try:
        with (
            interrupts,
            progress_bars(not shown.quiet and not shown.as_json, len(jobs_list), shown.show_progress) as bars,
        ):
            if cluster is None:
                result = run_batch(runner, jobs_list, options, jobs, fail_fast, cancel, Events(bars), FLAGS)
            else:
                from convt_audio.run.cluster import run_batch_ray

                address, recipe = cluster
                result = run_batch_ray(
                    address, recipe, jobs_list, options, jobs, fail_fast, cancel, Events(bars), spelling=FLAGS
                )
    except KeyboardInterrupt:  # a second signal: stopped at once
        cancel.set()
        _err("interrupted")
        return interrupts.exit_code
    if emitted["broken"]:
        _err(
            f"standard output closed after {emitted['records']} --json record(s); stopped, "
            f"{len(jobs_list) - result.written - result.skipped - result.failed} input(s) not run"
        )
        return EXIT_FAILED
    if interrupts.signum is not None:
        _err("interrupted; no partial outputs were left")
        return interrupts.exit_code
    if not shown.quiet and not shown.as_json and len(jobs_list) > 1:
        with suppress(OSError, ValueError):
            typer.echo(
                batch_line(len(jobs_list), result),
                err=True,
            )
    return EXIT_FAILED if result.failed else EXIT_OK
