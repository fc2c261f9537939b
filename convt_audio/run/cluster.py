"""A batch on a Ray cluster: the same plan, engine and atomic writes as a local run.

Ray Core actors rather than Ray Data: each worker is an actor that builds its engine once (the
config and weights are loaded once per worker, not per file) and streams whole files through
:func:`~convt_audio.run.filestream.process_file`, exactly as the local path does — files are read and
written by the workers on a filesystem every node sees, so the driver only sends job
descriptions and receives reports, never audio. A free actor is handed the next file as soon as
it finishes one (backpressure: at most one file in flight per worker), and reports come back in
the order files finish, each tied to its file even when its worker died.

A worker that dies mid-file is restarted by Ray and its file retried (``max_restarts``,
``max_task_retries``); the temporary-file-and-rename write makes the retry safe, and the retry
first removes the dead worker's temporary file. Each job carries a token that its output is
marked with (an extended attribute) before the rename, so an attempt after one that died
between its rename and its report finds the file done and reports it: every output is written
and reported exactly once, and no ``.part`` is left — also when every attempt died. Ctrl-C
cancels what is queued, kills the workers and returns.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path

from ..core.errors import UsageError, option
from ..io.audio import STDIO
from .batch import BatchEvents, BatchResult
from .planning import Job
from .runner import RunnerRecipe, RunOptions

RETRIES = 3  # a file is retried on a restarted worker this many times


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError(f"{option('ray')} needs Ray: pip install 'convt-audio[ray]'") from None
    return ray


CONNECT_SECONDS = 30  # an address that answers but is no Ray cluster fails within this


def check_address(address: str) -> tuple[str, int] | None:
    """Refuse an address that is none of ``local``, ``auto``, ``HOST:PORT``, ``ray://HOST:PORT``;
    return the host and port to probe (None for ``local``/``auto``)."""
    if address in ("local", "auto"):
        return None
    rest = address[len("ray://") :] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{option('ray', address)}: not a cluster address (auto, local, HOST:PORT or ray://HOST:PORT)")
    return host.strip("[]"), int(port)


def connect(address: str, workers: int):
    """``ray.init`` for ``address``: ``local`` starts a cluster here (``workers`` CPUs), anything
    else (``auto``, ``HOST:PORT``, ``ray://host:port``) joins one. Ray's own log lines stay off
    the terminal. A HOST:PORT that refuses a connection fails at once, one that answers but is
    no cluster within :data:`CONNECT_SECONDS`: a usage error either way, never a hang."""
    import logging
    import signal
    import socket

    target = check_address(address)
    ray = _ray()
    if ray.is_initialized():
        return ray
    if target is not None:
        try:
            socket.create_connection(target, timeout=5).close()
        except OSError as exc:
            raise UsageError(
                f"{option('ray', address)}: cannot reach a Ray cluster (connecting to "
                f"{target[0]}:{target[1]}: {exc.strerror or exc})"
            ) from None
    kwargs = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    def no_answer(signum, frame):
        raise TimeoutError(f"no answer in {CONNECT_SECONDS} s")

    # ray.init stays in the main thread (it installs signal handlers); an alarm bounds a join
    bounded = target is not None and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGALRM, no_answer) if bounded else None
    if bounded:
        signal.alarm(CONNECT_SECONDS)
    try:
        if address == "local":
            ray.init(num_cpus=max(1, workers), include_dashboard=False, **kwargs)
        else:
            ray.init(address=address, **kwargs)
    except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, ValueError, TimeoutError …
        raise UsageError(f"{option('ray', address)}: cannot reach a Ray cluster ({_first_line(exc)})") from None
    finally:
        if bounded:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
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

    def process(
        self, key: int, source: str, dest: str | None, error: str | None, spelling=None, token: str | None = None
    ) -> tuple:
        """``(key, "ok", report, None)`` or ``(key, "error", message, output)`` for one file.

        ``token`` names this job in its batch: an attempt after one that died once its output was
        renamed into place finds the output marked with it, and reports it without writing again.
        """
        from ..io.atomic import remove_stale_parts
        from .batch import failure_line
        from .filestream import process_file

        job = Job(Path(source), None if dest is None else Path(dest), error, token)
        if job.dest is not None and str(job.dest) != STDIO:
            # a worker that died on this very file left its part: only that output's are looked at
            remove_stale_parts(job.dest.parent, time.time(), job.dest.name)
        try:
            return key, "ok", process_file(self.runner, job, self.options), None
        except Exception as exc:  # noqa: BLE001 - reported per file, as a local run does
            message, output = failure_line(job, exc, spelling)
            return key, "error", message, output


def run_batch_ray(
    address: str,
    recipe: RunnerRecipe,
    jobs: list[Job],
    options: RunOptions,
    workers: int = 1,
    fail_fast: bool = False,
    cancel: threading.Event | None = None,
    events: BatchEvents | None = None,
    num_gpus: float | None = None,
    spelling=None,
) -> BatchResult:
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
    absolute = RunnerRecipe(
        **{**asdict(recipe), "config": _absolute(recipe.config), "weights": _absolute(recipe.weights)}
    )
    actors = [remote.remote(asdict(absolute), asdict(options)) for _ in range(max(1, workers))]
    try:
        hosts = ray.get([actor.pid.remote() for actor in actors])  # the workers are up, the engine built
    except ray.exceptions.RayError as exc:
        _stop(ray, actors)
        raise UsageError(f"{option('ray')}: a worker could not start ({_first_line(exc)})") from None
    free = list(actors)
    waiting = list(enumerate(jobs))[::-1]  # popped from the end: in order
    running: dict = {}  # future -> (key, actor)
    batch = os.urandom(8).hex()

    def submit() -> None:
        while free and waiting and not cancel.is_set():
            key, job = waiting.pop()
            actor = free.pop()
            dest = None if job.dest is None else _absolute_path(job.dest)
            future = actor.process.remote(key, _absolute_path(job.source), dest, job.error, spelling, f"{batch}-{key}")
            running[future] = (key, actor)

    names = {key: (job, _absolute_path(job.source)) for key, job in enumerate(jobs)}
    try:
        submit()
        while running and not cancel.is_set():
            ready, _ = ray.wait(list(running), num_returns=1, timeout=0.25)
            if not ready:
                continue
            key, actor = running.pop(ready[0])
            free.append(actor)
            job, source = names[key]
            try:
                _, status, payload, output = ray.get(ready[0])
            except ray.exceptions.RayError as exc:  # the worker died on this file every time
                _forget_parts(job)
                result.failed += 1
                events.ended(job)
                events.failed(
                    job,
                    f"{job.source}: a cluster worker died {RETRIES + 1} times on this file "
                    f"({_first_line(exc)}); nothing was written",
                    None if job.dest is None else str(job.dest),
                    exc,
                )
                if fail_fast:
                    cancel.set()
                submit()
                continue
            events.ended(job)
            if status == "ok":
                payload = replace(payload, input=str(job.source), output=_as_given(payload.output, job))
                result.count(payload)
                events.finished(job, payload)
            else:
                result.failed += 1
                message = payload.replace(source, str(job.source))
                events.failed(job, message, output and _as_given(output, job), RuntimeError(message))
                if fail_fast:
                    cancel.set()
            submit()
    finally:
        _stop(ray, actors)
        if cancel.is_set():  # the files that were being written: their workers are gone, so are the parts
            _wait_gone(hosts)
            from .planning import clean_stale_parts

            clean_stale_parts([job for job in jobs if job.dest is not None and str(job.dest) != STDIO], time.time())
    return result


def _forget_parts(job: Job) -> None:
    """After the last attempt at a job died: its workers' temporary outputs go (they are dead)."""
    if job.dest is None or str(job.dest) == STDIO:
        return
    from ..io.atomic import remove_stale_parts

    dest = Path(_absolute_path(job.dest))
    remove_stale_parts(dest.parent, time.time() + 1, dest.name)


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
