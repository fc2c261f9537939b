"""A batch on a Ray cluster: the same plan, engine and atomic writes as a local run.

Ray Core actors rather than Ray Data: each worker is an actor that builds its engine once (the
config and weights are loaded once per worker, not per file) and streams whole files through
:func:`~convt_audio.pipeline.process_file`, exactly as the local path does — files are read and
written by the workers on a filesystem every node sees, so the driver only sends job
descriptions and receives reports, never audio. ``ray.util.ActorPool`` hands a file to an actor
as soon as it is free (backpressure: at most one file in flight per worker), and reports come
back in the order files finish.

A worker that dies mid-file is restarted by Ray and its file retried (``max_restarts``,
``max_task_retries``); the temporary-file-and-rename write makes the retry safe, and the retry
first removes the dead worker's temporary file, so every output is written exactly once and no
``.part`` is left. Ctrl-C cancels what is queued, kills the workers and returns.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict
from pathlib import Path

from .audio_io import STDIO
from .errors import UsageError, option
from .pipeline import BatchEvents, BatchResult, Job, RunnerRecipe, RunOptions

RETRIES = 3  # a file is retried on a restarted worker this many times


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError(f"{option('ray')} needs Ray: pip install 'convt-audio[ray]'") from None
    return ray


def connect(address: str, workers: int):
    """``ray.init`` for ``address``: ``local`` starts a cluster here (``workers`` CPUs), anything
    else (``auto``, ``ray://host:port``) joins one. Ray's own log lines stay off the terminal."""
    import logging

    ray = _ray()
    if ray.is_initialized():
        return ray
    kwargs = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address == "local":
            ray.init(num_cpus=max(1, workers), include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError …
        raise UsageError(f"{option('ray', address)}: cannot reach a Ray cluster ({str(exc).splitlines()[0]})") from None
    return ray


def check_writable(jobs: list[Job]) -> None:
    """Before a cluster batch: every output folder that exists must take a file from here (the
    driver), so that a read-only mount is one usage error, not one failure per file."""
    import tempfile

    folders = {job.dest.parent for job in jobs if job.dest is not None and str(job.dest) != STDIO}
    for folder in sorted(folders):
        probe = folder
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent  # the nearest existing folder: where the rest will be created
        try:
            with tempfile.NamedTemporaryFile(dir=probe, prefix=".convt-audio-probe-"):
                pass
        except OSError as exc:
            raise UsageError(f"{folder}: the output folder cannot be written from here ({exc.strerror})") from None


class Worker:
    """One cluster worker: its runner, built once, and files through it."""

    def __init__(self, recipe: dict, options: dict):
        self.runner, _ = RunnerRecipe(**recipe).build()
        self.options = RunOptions(**options)

    def pid(self) -> tuple[str, int]:
        import socket

        return socket.gethostname(), os.getpid()

    def process(self, key: int, source: str, dest: str | None, error: str | None, spelling=None) -> tuple:
        """``(key, "ok", report, None)`` or ``(key, "error", message, output)`` for one file."""
        from .audio_io import remove_stale_parts
        from .pipeline import failure_line, process_file

        job = Job(Path(source), None if dest is None else Path(dest), error)
        if job.dest is not None and str(job.dest) != STDIO:
            # a worker that died on this very file left its part: only that output's are looked at
            remove_stale_parts(job.dest.parent, time.time(), job.dest.name)
        try:
            return key, "ok", process_file(self.runner, job, self.options), None
        except Exception as exc:  # noqa: BLE001 - reported per file, as a local run does
            message, output = failure_line(job, exc, spelling)
            return key, "error", message, output


def run_batch_ray(address: str, recipe: RunnerRecipe, jobs: list[Job], options: RunOptions, workers: int = 1,
                  fail_fast: bool = False, cancel: threading.Event | None = None,
                  events: BatchEvents | None = None, num_gpus: float | None = None,
                  spelling=None) -> BatchResult:
    """Run ``jobs`` on ``workers`` Ray actors; report through ``events`` as files finish.

    Paths must name the same files on every node (a shared mount): the workers get them
    absolute, and reports and messages name them as they were given. ``num_gpus`` (default: 1
    for a CUDA device) is asked of Ray for each worker.
    """
    ray = connect(address, workers)
    cancel = cancel or threading.Event()
    events = events or BatchEvents()
    result = BatchResult()
    if num_gpus is None:
        num_gpus = 1 if recipe.device.startswith("cuda") else 0
    remote = ray.remote(num_cpus=1, num_gpus=num_gpus, max_restarts=-1, max_task_retries=RETRIES)(Worker)
    absolute = RunnerRecipe(**{**asdict(recipe), "config": _absolute(recipe.config),
                               "weights": _absolute(recipe.weights)})
    actors = [remote.remote(asdict(absolute), asdict(options)) for _ in range(max(1, workers))]
    try:
        hosts = ray.get([actor.pid.remote() for actor in actors])  # the workers are up, the engine built
    except ray.exceptions.RayError as exc:
        _stop(ray, actors)
        raise UsageError(f"{option('ray')}: a worker could not start ({_first_line(exc)})") from None
    pool = ray.util.ActorPool(actors)
    names = {}
    for key, job in enumerate(jobs):
        source = _absolute_path(job.source)
        dest = None if job.dest is None else _absolute_path(job.dest)
        names[key] = (job, source)
        pool.submit(lambda actor, args: actor.process.remote(*args), (key, source, dest, job.error, spelling))
    try:
        while pool.has_next() and not cancel.is_set():
            try:
                key, status, payload, output = pool.get_next_unordered(timeout=0.25)
            except TimeoutError:
                continue
            except ray.exceptions.RayError as exc:  # a file whose worker kept dying
                result.failed += 1
                events.failed(Job(Path("?"), None), f"a cluster worker died {RETRIES + 1} times on a file "
                              f"({_first_line(exc)})", None, exc)
                continue
            job, source = names[key]
            events.ended(job)
            if status == "ok":
                payload = {**payload, "input": str(job.source), "output": _as_given(payload["output"], job)}
                if payload["status"] == "skipped":
                    result.skipped += 1
                else:
                    result.written += 1
                events.finished(job, payload)
            else:
                result.failed += 1
                message = payload.replace(source, str(job.source))
                events.failed(job, message, output and _as_given(output, job), RuntimeError(message))
                if fail_fast:
                    cancel.set()
    finally:
        _stop(ray, actors)
        if cancel.is_set():  # the files that were being written: their workers are gone, so are the parts
            _wait_gone(hosts)
            from .pipeline import clean_stale_parts

            clean_stale_parts([job for job in jobs if job.dest is not None and str(job.dest) != STDIO], time.time())
    return result


def _stop(ray, actors) -> None:
    for actor in actors:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


def _wait_gone(hosts, limit: float = 10.0) -> None:
    """Wait (bounded) until the local workers' processes have exited."""
    import socket

    here = socket.gethostname()
    deadline = time.monotonic() + limit
    for host, pid in hosts:
        while host == here and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.05)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _absolute_path(path: Path) -> str:
    return str(path) if str(path) == STDIO else str(Path(path).absolute())


def _as_given(output: str, job: Job) -> str:
    """An output path in the words of the command line (relative where the input was)."""
    if job.dest is not None:
        return str(job.dest)
    try:
        return str(Path(output).relative_to(Path.cwd()))
    except ValueError:
        return output


def _absolute(path: str | None) -> str | None:
    """A config or weights path as every node must see it; built-in names stay names."""
    if path is None:
        return None
    candidate = Path(path)
    return str(candidate.resolve()) if candidate.exists() else path
