"""A batch: every planned file through one runner, ``workers`` at a time, each failure told in
one line and never stopping the others (the Ray path, :mod:`convt_audio.run.cluster`, reports
through the same events)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from .filestream import Cancelled, FileReport, process_file
from .planning import Job
from .runner import Runner, RunOptions


@dataclass
class BatchResult:
    written: int = 0
    skipped: int = 0
    failed: int = 0

    def count(self, report: FileReport) -> None:
        """A file that ended with a report: written, or skipped."""
        if report.status == "skipped":
            self.skipped += 1
        else:
            self.written += 1


class BatchEvents:
    """What a batch tells its caller (the command line prints, a script may collect); no-ops here."""

    def started(self, job: Job) -> Callable[[int, int | None, float], None] | None:
        """A file begins; return a progress callback ``(frames done, frames total or None, input rate)``."""
        return None

    def finished(self, job: Job, report: FileReport) -> None:
        """A file was written or skipped (``report.status``)."""

    def failed(self, job: Job, message: str, output: str | None, exc: BaseException) -> None:
        """A file failed: one line that names it, and its output where known."""

    def ended(self, job: Job) -> None:
        """A file is done, whichever way."""


def failure_line(job: Job, exc: BaseException, spelling=None) -> tuple[str, str | None]:
    """One line for a failed file, naming it (control characters escaped), and its output;
    parameters spelt per ``spelling`` (:func:`~convt_audio.core.errors.render`)."""
    from ..core.errors import ConvtAudioError, one_line

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
            result.count(report)
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
