"""The terminal side of the command line: standard streams guarded (closed ones, a broken
pipe, Ray's chatter kept off standard output), one-line messages, the C libraries' own stderr
notes kept quiet, and signals turned into a stop at the next block. Nothing here is a Python
user's concern: the library raises, returns and reports; this prints."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from contextlib import suppress
from typing import Optional

import typer

from convt_audio.core.errors import one_line
from convt_audio.core.process import waiting_interruptibly

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_RESULTS: list = []  # where --json records go while Ray owns standard output (see _results_apart)


class _results_apart:
    """While a Ray batch runs, only our --json records reach standard output.

    Ray prints its own lines ("(raylet) A worker died …") on ``sys.stdout``, and its workers
    inherit descriptor 1: both are pointed at /dev/null (stderr with --debug), and the records
    go to a copy of the original standard output.
    """

    def __init__(self, debug: bool):
        self.debug = debug

    def __enter__(self) -> "_results_apart":
        self.saved_stdout, self.saved_fd = sys.stdout, None
        sys.stdout.flush()
        try:
            real = sys.stdout.fileno() == 1
        except (OSError, ValueError, io.UnsupportedOperation):
            real = False  # a test runner's stream: Python-level only
        if real:
            self.saved_fd = os.dup(1)
            target = os.dup(2) if self.debug else os.open(os.devnull, os.O_WRONLY)
            os.dup2(target, 1)
            os.close(target)
            _RESULTS.append(open(os.dup(self.saved_fd), "w", buffering=1, encoding="utf-8"))
        else:
            _RESULTS.append(self.saved_stdout)
            self.null = None if self.debug else open(os.devnull, "w")
            sys.stdout = self.null or sys.stderr
        return self

    def __exit__(self, *exc) -> None:
        results = _RESULTS.pop()
        with suppress(OSError, ValueError):
            results.flush()
        if self.saved_fd is not None:
            with suppress(OSError, ValueError):
                results.close()
            os.dup2(self.saved_fd, 1)
            os.close(self.saved_fd)
        else:
            sys.stdout = self.saved_stdout
            if self.null is not None:
                self.null.close()


CLOSED_STREAMS: set = set()  # standard streams (0, 1, 2) that were closed when we started


def _guard_standard_streams() -> None:
    """Open /dev/null on standard streams that were closed (``>&-``), and note which.

    Without this, the first file we open would take descriptor 1 or 2 and our messages would be
    written into it; and Python's ``sys.stdout`` would be None. Commands that need a closed
    stream (``-o -``, ``--json``, ``info``) refuse to run with one line.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            CLOSED_STREAMS.add(fd)
            opened = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if opened != fd:
                os.dup2(opened, fd)
                os.close(opened)
    if sys.stdin is None:
        sys.stdin = open(0, closefd=False)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)


def _stdout_gone() -> None:
    """Standard output broke (a closed pipe, a full disk): later writes, and Python's own flush
    at exit, go to /dev/null instead of printing a traceback."""
    with suppress(OSError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)


def _need_stdout(what: str) -> None:
    """Refuse, before any work, a command whose output is standard output when it is closed."""
    if 1 in CLOSED_STREAMS:
        _err(f"standard output is closed; {what} writes there")
        raise typer.Exit(EXIT_USAGE)


def _echo(text: str) -> bool:
    """Print a line on standard output; False (and nothing more printed there) if it broke."""
    stream = _RESULTS[-1] if _RESULTS else sys.stdout
    try:
        typer.echo(text, file=stream)
        stream.flush()
        return True
    except (BrokenPipeError, OSError, ValueError):
        _stdout_gone()
        return False


def _err(message: str) -> None:
    with suppress(OSError, ValueError):  # a closed or broken stderr: the exit code still tells
        typer.echo(f"convt-audio: error: {one_line(message)}", err=True)


def _note(message: str) -> None:
    """What a command did, on stderr, as one line (names escaped)."""
    with suppress(OSError, ValueError):
        typer.echo(one_line(message), err=True)


def _warn(message: str, quiet: bool = False) -> None:
    if not quiet:
        with suppress(OSError, ValueError):
            typer.echo(f"convt-audio: warning: {one_line(message)}", err=True)


_NATIVE_NOTES = (b"Warning: ", b"Note: ")  # libmpg123 talks on stderr about damaged MP3s


def _quiet_native_notes() -> None:
    """Keep the MP3 decoder's own stderr notes off the terminal (our error line says what
    matters), passing every other byte that C code writes to stderr through unchanged.

    File descriptor 2 becomes a pipe read by a thread that drops lines starting with libmpg123's
    ``Warning: ``/``Note: ``; Python's own stderr keeps writing to the terminal directly.
    """
    if os.name != "posix" or getattr(_quiet_native_notes, "done", False):
        return
    _quiet_native_notes.done = True
    try:
        if sys.stderr.fileno() != 2:
            return
        terminal = os.dup(2)
        read_end, write_end = os.pipe()
        sys.stderr.flush()
        sys.stderr = open(
            terminal,
            "w",
            buffering=1,
            encoding=sys.stderr.encoding or "utf-8",
            errors="backslashreplace",
            closefd=False,
        )
        os.dup2(write_end, 2)
        os.close(write_end)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return  # a stderr without a file descriptor (a test runner's): nothing native to filter

    def relay() -> None:
        pending = b""
        while True:
            data = os.read(read_end, 65536)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not line.startswith(_NATIVE_NOTES))
            if kept:
                os.write(terminal, kept)
        if pending and not pending.startswith(_NATIVE_NOTES):
            os.write(terminal, pending)

    threading.Thread(target=relay, daemon=True, name="native-stderr").start()


class _Interrupts:
    """While files are written, SIGINT/SIGTERM/SIGHUP/SIGQUIT ask the batch to stop at the next block.

    A flag instead of an exception: an exception can land anywhere, even between creating a
    temporary output and the code that removes it. A second signal stops at once.
    """

    def __init__(self, cancel: threading.Event):
        self.cancel = cancel
        self.signum: Optional[int] = None

    def __call__(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        self.cancel.set()
        if waiting_interruptibly():  # blocked on input, no output open yet: stop now, not at more data
            raise KeyboardInterrupt

    def __enter__(self) -> "_Interrupts":
        self.previous = {
            sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
        }
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    @property
    def exit_code(self) -> int:
        return EXIT_INTERRUPTED if self.signum in (None, signal.SIGINT) else 128 + self.signum


def _ray_default(args: list[str]) -> list[str]:
    """``--ray`` without an address starts a local cluster: supply ``local`` where the next word is
    an option, an existing file or folder (an input), or nothing. Any other word is the address
    (``auto``, ``local``, ``host:port``, ``ray://…``; anything else is refused as one)."""
    out = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--ray":
            following = args[i + 1] if i + 1 < len(args) else None
            address_like = following is not None and (following in ("auto", "local") or ":" in following)
            if following is None or following.startswith("-") or (not address_like and os.path.exists(following)):
                out.append("local")
    return out
