"""``convt-audio``: parse, call the engine, print. No DSP here.

torch and the engine are imported inside the commands so that ``--help`` is instant.
Errors are one line on stderr; exit codes: 0 done, 1 some input failed, 2 usage/config/weights,
130 interrupted (README.md, "For scripts").
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
import traceback
from contextlib import ExitStack, suppress
from enum import Enum
from pathlib import Path
from typing import List, NamedTuple, Optional

import typer
from typer.core import TyperGroup

from convt_audio.errors import one_line
from convt_audio.options import (
    CHANNEL_MODES,
    CLIP_MODES,
    DTYPE_NAMES,
    ENDIANS,
    NON_FINITE_MODES,
    RAW_ENCODINGS,
    SUBTYPES,
)
from convt_audio.process import tune_process, waiting_interruptibly

# click's exception classes as the installed Typer raises them (it may vendor click)
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
Abort = typer.Abort


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


class _OneLineErrors(TyperGroup):
    """Option-parsing errors as our own one line (``convt-audio: error: …``, exit 2), no panels."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _guard_standard_streams()
        tune_process()  # OpenMP's passive wait, malloc's reuse: before torch loads
        args = _ray_default(list(sys.argv[1:] if args is None else args))
        try:
            code = super().main(
                args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra
            )
        except ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # a bare command: its help
                exc.show()
                sys.exit(EXIT_USAGE)
            _err(exc.format_message())
            sys.exit(exc.exit_code)
        except Abort:
            _err("interrupted")
            sys.exit(EXIT_INTERRUPTED)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else EXIT_OK)


app = typer.Typer(
    cls=_OneLineErrors,
    name="convt-audio",
    help="Upsample and decode audio by exact streaming through transposed convolutions.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
design_app = typer.Typer(
    cls=_OneLineErrors, help="Design filters and write them as a config + weights pair.", no_args_is_help=True
)
app.add_typer(design_app, name="design")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# how this command line spells the library's parameters in messages (convt_audio.errors.option)
FLAGS = {
    "factor": "--factor",
    "passband": "--passband",
    "stopband": "--stopband",
    "attenuation": "--attenuation",
    "subtype": "--subtype",
    "input_rate": "--input-rate",
    "target_rate": "--rate",
    "recursive": "--recursive",
    "clip": "--clip",
    "non_finite": "--non-finite",
    "overwrite": "--overwrite",
    "skip_existing": "--skip-existing",
    "kind": "--type",
    "device": "--device",
    "dtype": "--dtype",
    "ray": "--ray",
    "allow_aliasing": "--allow-aliasing",
    "output": "-o",
    "weights": "-w",
    "config": "-c",
    "seed": "--seed",
    "threads": "--threads",
    "input_type": "--input-type",
    "input_channels": "--input-channels",
    "input_bits": "--input-bits",
    "input_encoding": "--input-encoding",
    "input_endian": "--input-endian",
    "bits": "-b",
    "dither": "--no-dither",
}


def _choices(name: str, values) -> type:
    """A Typer choice type built from the library's own tuple of allowed words."""
    return Enum(name, {value: value for value in values}, type=str)


Channels = _choices("Channels", CHANNEL_MODES)
DType = _choices("DType", DTYPE_NAMES)
Subtype = _choices("Subtype", SUBTYPES)
Clip = _choices("Clip", CLIP_MODES)
NonFinite = _choices("NonFinite", NON_FINITE_MODES)
Encoding = _choices("Encoding", (*RAW_ENCODINGS, "signed", "unsigned", "float"))
Endian = _choices("Endian", ENDIANS)
InputType = _choices("InputType", ("raw",))
BITS_SUBTYPES = {16: "PCM_16", 24: "PCM_24", 32: "PCM_32"}  # -b, as sox: bits of the (PCM) output


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


def _fail(exc: BaseException, debug: bool = False, usage: bool = False) -> "typer.Exit":
    """Print one line for an error (a traceback with --debug) and give its exit code.

    Before any file runs, every failure is a usage, config or weights error (exit 2); ``usage``
    says so for commands whose only output is theirs (``init``, ``design``).
    """
    from convt_audio.errors import ConvtAudioError

    if debug:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    if isinstance(exc, ConvtAudioError):
        _err(exc.render(FLAGS))
        return typer.Exit(EXIT_USAGE if usage else exc.exit_code)
    _err(f"{type(exc).__name__}: {exc}")
    return typer.Exit(EXIT_USAGE)


def _version_callback(value: bool) -> None:
    if not value:
        return
    import torch

    from convt_audio import __version__

    if torch.cuda.is_available():
        cuda = f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)}"
    else:
        cuda = f"CUDA not available (build: {torch.version.cuda or 'CPU only'})"
    typer.echo(f"convt-audio {__version__}\ntorch {torch.__version__}\n{cuda}")
    raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False,
        "--version",
        metavar="",
        callback=_version_callback,
        is_eager=True,
        help="Print convt-audio, torch and CUDA versions and exit.",
    ),
) -> None:
    """Upsample and decode audio by exact streaming through transposed convolutions."""
    import warnings

    # NumPy and torch warnings never reach the terminal: what matters is told in our own lines
    warnings.filterwarnings("ignore")


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


def _parse_chunk(chunk: str) -> Optional[int]:
    if chunk == "auto":
        return None
    try:
        value = int(chunk)
    except ValueError:
        value = 0
    if value < 1:
        raise typer.BadParameter(f"must be a positive number of frames or 'auto', got {chunk!r}", param_hint="--chunk")
    return value


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


@app.command()
def run(
    inputs: List[Path] = typer.Argument(
        ...,
        readable=False,  # an unreadable file fails alone (exit 1)
        help="Audio files (anything libsndfile reads, or .npy) or folders.",
    ),
    output: Optional[str] = typer.Option(
        None,
        "-o",
        "--output",  # str: keeps a trailing "/"
        help="Output file (one input) or folder (several inputs or a folder).",
    ),
    config: Optional[str] = typer.Option(
        None,
        "-c",
        "--config",
        help="Config file or built-in name. Without -c and -r: inputs below 48 kHz are resampled to 48 kHz.",
    ),
    weights: Optional[Path] = typer.Option(None, "-w", "--weights", help="Weights file (default: the config's)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    chunk: str = typer.Option("auto", "--chunk", help="Input frames per block, or auto."),
    dtype: DType = typer.Option(DType.float32, "--dtype", case_sensitive=False, help="Compute dtype."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for torch."),
    deterministic: bool = typer.Option(
        False, "--deterministic", metavar="", help="Use PyTorch's deterministic algorithms."
    ),
    channels: Optional[Channels] = typer.Option(
        None, "--channels", case_sensitive=False, help="Override the config's channel mapping."
    ),
    input_rate: Optional[str] = typer.Option(
        None,
        "--input-rate",
        help="Rate of .npy inputs in Hz, fractional allowed (86.1328125 or 22050/256); "
        "default: the config's feature rate.",
    ),
    input_type: Optional[InputType] = typer.Option(
        None,
        "--input-type",
        case_sensitive=False,
        help="raw: the input (a file or -) is headerless samples, described by --input-rate, --input-channels, "
        "--input-bits and --input-encoding (sox's -t raw -r -c -b -e), all required.",
    ),
    input_channels: Optional[int] = typer.Option(None, "--input-channels", help="Channels of a raw input."),
    input_bits: Optional[int] = typer.Option(None, "--input-bits", help="Bits per sample of a raw input."),
    input_encoding: Optional[Encoding] = typer.Option(
        None, "--input-encoding", case_sensitive=False, help="Sample encoding of a raw input (sox's -e words)."
    ),
    input_endian: Optional[Endian] = typer.Option(
        None, "--input-endian", case_sensitive=False, help="Byte order of a raw input (default little)."
    ),
    subtype: Optional[Subtype] = typer.Option(
        None, "--subtype", case_sensitive=False, help="Output subtype (default: the input's)."
    ),
    bits: Optional[int] = typer.Option(
        None, "--bits", "-b", help="Bits of a PCM output, as sox's -b: 16, 24 or 32 (--subtype PCM_16, ...)."
    ),
    no_dither: bool = typer.Option(
        False,
        "--no-dither",
        "-D",
        metavar="",
        help="Round PCM outputs plainly. By default, a PCM output with fewer bits than the computation "
        "(16-bit after float32) gets TPDF dither, as sox adds it.",
    ),
    clip: Clip = typer.Option(
        Clip.clamp,
        "--clip",
        case_sensitive=False,
        help="Integer outputs: clamp and count, refuse (error; also NaN/Inf outputs), or scale the "
        "whole file so its peak fits (rescale: two passes).",
    ),
    non_finite: NonFinite = typer.Option(
        NonFinite.error,
        "--non-finite",
        case_sensitive=False,
        help="NaN/Inf input samples: fail that file (error) or replace them with 0.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", metavar="", help="Replace existing outputs."),
    skip_existing: bool = typer.Option(
        False, "--skip-existing", "--no-clobber", "-n", metavar="", help="Skip inputs whose output exists."
    ),
    kind: Optional[str] = typer.Option(
        None,
        "--type",
        "-t",
        help="Container of every output the tool names, and of -o - (wav, flac or raw there): "
        "wav, flac, ogg, opus, mp3, aiff, caf, w64, rf64, au.",
    ),
    target_rate: Optional[str] = typer.Option(
        None,
        "--rate",
        "-r",
        help="Output sample rate in Hz, or kHz as sox writes it (48k, 44.1k). Without -c, an alias-free resampler "
        "for each input's rate (a built-in sinc-xL, or an L/M design, cached); with -c, a check.",
    ),
    allow_aliasing: bool = typer.Option(
        False,
        "--allow-aliasing",
        metavar="",
        help="With --rate: the older band edges (0.45/0.55 of the lower rate), whose transition straddles the "
        "Nyquist frequency, instead of alias-free ones (flat to 0.91 of it, 140 dB down from it).",
    ),
    recursive: bool = typer.Option(False, "--recursive", "-R", metavar="", help="Look for audio in subfolders too."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Files processed in parallel (with --ray: workers)."),
    ray: Optional[str] = typer.Option(
        None,
        "--ray",
        help="Run the batch on a Ray cluster: auto (a running cluster), HOST:PORT or ray://HOST:PORT, or "
        "local (start one here; also --ray alone). Needs the [ray] extra and a filesystem every node sees.",
    ),
    fail_fast: bool = typer.Option(False, "--fail-fast", metavar="", help="Stop at the first failed input."),
    as_json: bool = typer.Option(False, "--json", metavar="", help="One JSON object per file on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", metavar="", help="Print nothing but errors."),
    verbose: bool = typer.Option(
        False, "--verbose", "-V", metavar="", help="Say more of each file: engine, device, subtype, dither."
    ),
    show_progress: bool = typer.Option(
        False, "--show-progress", "-S", metavar="", help="Progress bars even when stderr is not a terminal."
    ),
    debug: bool = typer.Option(False, "--debug", metavar="", help="Show tracebacks."),
) -> None:
    """Stream audio files through a config's stack and write the results."""
    started = time.time()
    _quiet_native_notes()
    if overwrite and skip_existing:
        raise typer.BadParameter("--overwrite and --skip-existing exclude each other", param_hint="--overwrite")
    chunk_frames = _parse_chunk(chunk)
    apart = ExitStack()  # with --ray: standard output kept for our records alone (_results_apart)
    if as_json or output == "-":
        _need_stdout("--json" if as_json else "-o -")
    if 0 in CLOSED_STREAMS and any(str(p) == "-" for p in inputs):
        _err("standard input is closed; - reads from it")
        raise typer.Exit(EXIT_USAGE)
    try:
        from convt_audio.audio_io import STDIO, STREAM_TYPES, output_types
        from convt_audio.config import parse_rate, whole_rate
        from convt_audio.errors import ConvtAudioError, UsageError
        from convt_audio.planning import check_outputs, clean_stale_parts, plan_jobs
        from convt_audio.process import check_environment, half_precision_advice, usable_cpus
        from convt_audio.runner import RunnerRecipe, RunOptions

        check_environment()  # CONVT_AUDIO_MAX_MEMORY, OMP_NUM_THREADS: once, before any file
        rate = parse_rate(input_rate) if input_rate is not None else None
        target = None if target_rate is None else whole_rate(target_rate)
        raw = _raw_format(input_type, rate, input_channels, input_bits, input_encoding, input_endian)
        if bits is not None:
            if bits not in BITS_SUBTYPES:
                raise UsageError(f"-b: {bits} is not one of {list(BITS_SUBTYPES)} (bits of a PCM output)")
            if subtype is not None and subtype.value != BITS_SUBTYPES[bits]:
                raise UsageError(f"-b {bits} and --subtype {subtype.value} contradict each other; give one")
        if threads is not None and threads > 4 * (os.cpu_count() or 1):
            raise UsageError(
                f"--threads: at most {4 * (os.cpu_count() or 1)} on this machine "
                f"(4 × its {os.cpu_count()} CPUs), got {threads}"
            )
        if kind is not None:
            kind = kind.lower().lstrip(".")
            allowed = STREAM_TYPES if output == STDIO else output_types()
            if kind == "raw" and output != STDIO:
                raise UsageError(
                    "--type is the output's container (raw only for -o -); a headerless input is "
                    "--input-type raw with --input-rate, --input-channels, --input-bits and --input-encoding"
                )
            if kind not in allowed:
                raise UsageError(
                    f"--type: {kind!r} is not one of {list(allowed)}{' (for -o -)' if output == STDIO else ''}"
                )
        if as_json and output == STDIO:
            raise UsageError("--json and -o - both want standard output; choose one")
        if ray is not None and output == STDIO:
            raise UsageError(
                "--ray and -o -: the cluster's workers write files, not this standard output; "
                "name an output file or folder"
            )
        jobs_list = plan_jobs(inputs, output, recursive, kind)
        # torch's threads are shared by the --jobs files run here (a cluster worker has its own),
        # out of the CPUs this process may use (taskset, cpusets), not the machine's count
        per_file_threads = max(1, (threads or usable_cpus()) // jobs) if ray is None else threads
        recipe = RunnerRecipe(
            config,
            None if weights is None else str(weights),
            target,
            device,
            dtype.value,
            deterministic,
            per_file_threads,
            allow_aliasing,
        )
        runner, unused = recipe.build()
        advice = half_precision_advice(dtype.value, runner.engine.device if runner.engine else "cpu")
        if advice:
            _warn(advice, quiet)
        if unused:
            shown = ", ".join(unused[:8]) + (f", … ({len(unused) - 8} more)" if len(unused) > 8 else "")
            _warn(f"{weights or runner.config.weights}: {len(unused)} tensor(s) not used by the config: {shown}", quiet)
        if rate is not None and runner.config is not None:
            try:
                runner.config.output_rate(rate)
            except ConvtAudioError as exc:
                raise UsageError(f"--input-rate {input_rate}: {exc.render(FLAGS)}") from None
        jobs_list = check_outputs(jobs_list, runner, raw.rate if raw else rate, kind, raw is not None)
        if output is not None and len(jobs_list) > 1:
            try:
                Path(output).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"{output}: cannot create the output folder ({exc.strerror})") from None
        options = RunOptions(
            chunk=chunk_frames,
            channels=channels.value if channels else None,
            input_rate=rate,
            subtype=subtype.value if subtype else BITS_SUBTYPES.get(bits),
            clip=clip.value,
            overwrite=overwrite,
            skip_existing=skip_existing,
            non_finite=non_finite.value,
            kind=kind,
            dither=not no_dither,
            raw=raw,
        )
        if ray is not None:
            from convt_audio.cluster import check_address, check_writable, connect

            check_address(ray)
            check_writable(jobs_list)
            apart.enter_context(_results_apart(debug))
            connect(ray, jobs)
        stale = clean_stale_parts(jobs_list, started)
        if stale:
            _warn(f"removed {len(stale)} temporary file(s) left by runs that died, e.g. {stale[0]}", quiet)
    except KeyboardInterrupt:
        apart.close()
        _err("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        apart.close()
        raise _fail(exc, debug) from None
    with apart:
        shown = _Shown(quiet, as_json, verbose, show_progress, debug)
        code = _run_jobs(runner, jobs_list, options, jobs, fail_fast, shown, None if ray is None else (ray, recipe))
    if output == "-" or as_json:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            code = code or EXIT_FAILED
        if code:  # whatever is left in Python's buffer would only raise again at exit
            _stdout_gone()
    raise typer.Exit(code)


class _Shown(NamedTuple):
    """What a run prints: nothing but errors (quiet), JSON records, more of each file (verbose),
    progress bars off a terminal too (show_progress), tracebacks (debug)."""

    quiet: bool
    as_json: bool
    verbose: bool
    show_progress: bool
    debug: bool


def _raw_format(input_type, rate, channels, bits, encoding, endian):
    """The raw input's description from its options, or None; the options without
    ``--input-type raw`` are refused (they describe nothing else)."""
    from convt_audio.audio_io import RawFormat
    from convt_audio.errors import UsageError

    described = {
        "--input-channels": channels,
        "--input-bits": bits,
        "--input-encoding": encoding,
        "--input-endian": endian,
    }
    if input_type is None:
        given = [name for name, value in described.items() if value is not None]
        if given:
            raise UsageError(f"{', '.join(given)} describe a headerless input: add --input-type raw")
        return None
    return RawFormat.from_options(
        rate, channels, bits, encoding.value if encoding else None, endian.value if endian else None
    )


def _run_jobs(runner, jobs_list, options, jobs, fail_fast, shown: _Shown, cluster=None) -> int:
    from convt_audio.batch import BatchEvents, run_batch
    from convt_audio.filestream import FileReport

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
            bars = self.bars
            if report.clipped_samples:  # even under -q: a loud file was changed
                share = report.clipped_samples / max(1, report.frames_out * report.channels_out)
                bars.line(
                    f"convt-audio: warning: {one_line(report.output)}: {report.clipped_samples} "
                    f"samples clipped ({100 * share:.3g} %); --clip rescale scales the file to fit, "
                    f"--subtype FLOAT keeps every value"
                )
            if report.non_finite_output_samples:
                written = " written as 0 or ±1" if report.subtype not in ("FLOAT", "DOUBLE") else ""
                bars.line(
                    f"convt-audio: warning: {one_line(report.output)}: "
                    f"{report.non_finite_output_samples} NaN/Inf output samples (an overflow){written}"
                )
            if report.non_finite_input_samples_zeroed and not shown.quiet:
                bars.line(
                    f"convt-audio: warning: {one_line(report.input)}: "
                    f"{report.non_finite_input_samples_zeroed} NaN/Inf input samples replaced with 0"
                )
            if shown.as_json:
                emit(report.as_dict())
            elif not shown.quiet and report.status == "ok":
                gain = f", scaled by {report.gain_db:+.2f} dB" if report.gain_db else ""
                more = ""
                if shown.verbose:
                    dither = ", TPDF-dithered" if report.dithered else ""
                    more = f"; {report.engine} engine on {report.device}, {report.subtype}{dither}"
                bars.line(
                    f"{one_line(report.input)} -> {one_line(report.output)} ({report.seconds:.2f} s "
                    f"at {report.output_rate} Hz, {report.speed_x_realtime:.1f}x real time{gain}{more})"
                )
            elif not shown.quiet and report.status == "skipped":
                why = f"{one_line(report.output)} exists" if report.reason == "output exists" else report.reason
                bars.line(f"{one_line(report.input)}: skipped, {why}")

    interrupts = _Interrupts(cancel)
    try:
        with (
            interrupts,
            progress_bars(not shown.quiet and not shown.as_json, len(jobs_list), shown.show_progress) as bars,
        ):
            if cluster is None:
                result = run_batch(runner, jobs_list, options, jobs, fail_fast, cancel, Events(bars), FLAGS)
            else:
                from convt_audio.cluster import run_batch_ray

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
                f"{len(jobs_list)} inputs: {result.written} written, {result.skipped} skipped, {result.failed} failed",
                err=True,
            )
    return EXIT_FAILED if result.failed else EXIT_OK


@app.command()
def info(
    config: Optional[str] = typer.Argument(None, help="Config file or built-in name (default sinc-x3)."),
    weights: Optional[Path] = typer.Option(None, "-w", "--weights", help="Weights file to check against the config."),
    input_rate: Optional[str] = typer.Option(
        None,
        "--input-rate",
        help="Input rate in Hz for the rates and FLOP/s figures (default: the config's feature rate, else 16000).",
    ),
    as_json: bool = typer.Option(False, "--json", metavar="", help="Print the facts as one JSON object."),
    debug: bool = typer.Option(False, "--debug", metavar="", help="Show tracebacks."),
) -> None:
    """Show a config's layers and blocks, rates, look-ahead, receptive field, cost and weights status."""
    _need_stdout("info")
    try:
        from convt_audio.config import load_config, parse_rate
        from convt_audio.report import summary
        from convt_audio.weights import check_weights, needs_weights

        cfg = load_config(config)
        rate = parse_rate(input_rate) if input_rate is not None else (cfg.feature_rate() or 16000)
    except Exception as exc:
        raise _fail(exc, debug) from None
    weights_path = weights or cfg.weights
    try:
        layout = None
        if weights_path is None:
            needed = needs_weights(cfg)
            status = "none given (pass -w WEIGHTS to check a file against the config)" if needed else "not needed"
        else:
            unused, layout = check_weights(cfg, weights_path)
            status = f"ok, {len(unused)} tensor(s) unused" if unused else "ok"
        weights_ok = True
    except Exception as exc:
        status = (exc.render(FLAGS) if hasattr(exc, "render") else str(exc)).splitlines()[0]
        weights_ok, layout = False, None
    facts = summary(cfg, rate, weights_path, status)
    facts["weights_layout"] = layout  # which of the config's checkpoint layouts the file has
    try:
        if as_json:
            typer.echo(json.dumps(facts))
        else:
            from .rich_utils import layer_table, print_table

            print_table(layer_table(facts["layers"], one_line(f"{cfg.name}: {cfg.description}".rstrip(": "))))
            rate_text = f"{facts['input_rate']:g} Hz" + (
                " (the config's feature rate)" if facts["input_rate_from_config"] and input_rate is None else ""
            )
            lines = [
                f"rate:            ×{facts['rate_factor']:g} ({rate_text} -> {facts['output_rate']:g} Hz)",
                f"channels:        {facts['in_channels']} in, {facts['out_channels']} out; {cfg.channels}: "
                f"{facts['channels_explained']}",
                f"engine:          {facts['engine']} on {facts['device']}: {facts['engine_explained']}",
                f"look-ahead:      {facts['lookahead_input_frames']:g} input frames "
                f"({facts['lookahead_output_frames']:g} output frames, {facts['lookahead_seconds'] * 1000:.2f} ms)",
                f"receptive field: {facts['receptive_field_input_frames']} input frames "
                f"({facts['receptive_field_output_frames']:g} output frames)",
                f"parameters:      {facts['parameters']:,}",
                f"cost:            {facts['flops_per_input_frame']:,} FLOP per input frame, "
                f"{facts['flops_per_second_of_audio'] / 1e9:.3f} GFLOP per second of audio",
                f"weights:         {(facts['weights'] or '(none)') + ': ' + status if weights_ok else status}"
                + (f" (layout {layout})" if layout else ""),
            ]
            if cfg.features is not None:
                lines.append(f"features:        {cfg.features.describe()} (convt-audio mel computes them)")
            if facts["buffers_whole_input"]:
                lines.append(
                    f"memory:          {', '.join(facts['buffers_whole_input'])} hold their whole "
                    f"input (circular padding past the leading convolutions)"
                )
            typer.echo("\n".join(one_line(line) for line in lines))
        sys.stdout.flush()
    except (BrokenPipeError, OSError, ValueError) as exc:
        _stdout_gone()
        _err(f"standard output: write failed ({getattr(exc, 'strerror', None) or exc})")
        raise typer.Exit(EXIT_FAILED) from None
    if not weights_ok:
        _err(status)
        raise typer.Exit(EXIT_USAGE)


@app.command()
def mel(
    inputs: List[Path] = typer.Argument(..., readable=False, help="Audio files, or - for standard input."),
    config: str = typer.Option(
        ..., "-c", "--config", help="Config (file or built-in name) whose features: to compute."
    ),
    output: Optional[str] = typer.Option(
        None, "-o", "--output", help="The .npy to write (one input), or a folder (default: <stem>.mel.npy beside it)."
    ),
    stats: Optional[Path] = typer.Option(
        None, "--stats", help="A .npz of mean and scale to normalise with (a recipe's stats; overrides the config's)."
    ),
    non_finite: NonFinite = typer.Option(
        NonFinite.error, "--non-finite", case_sensitive=False, help="NaN/Inf input samples: fail the file or use 0."
    ),
    overwrite: bool = typer.Option(False, "-y", "--overwrite", metavar="", help="Replace existing outputs."),
    quiet: bool = typer.Option(False, "-q", "--quiet", metavar="", help="No summary lines."),
    debug: bool = typer.Option(False, "--debug", metavar="", help="Show tracebacks."),
) -> None:
    """Compute the log-mel features a vocoder config expects (its features: recipe), as .npy files for run."""
    if 0 in CLOSED_STREAMS and any(str(p) == "-" for p in inputs):
        _err("standard input is closed; - reads from it")
        raise typer.Exit(EXIT_USAGE)
    try:
        from convt_audio.config import load_config
        from convt_audio.mel import check_recipe_memory, plan_mel, write_mel
        from convt_audio.process import check_environment

        check_environment()
        cfg = load_config(config)
        if stats is not None and cfg.features is not None:
            from dataclasses import replace

            cfg = replace(cfg, features=replace(cfg.features, stats=str(stats)))
        check_recipe_memory(cfg)
        if cfg.features.stats is not None:
            from convt_audio.features import read_stats

            read_stats(cfg.features)  # a bad stats file is a usage error, found before any file runs
        pairs = plan_mel(inputs, output)
    except Exception as exc:
        raise _fail(exc, debug) from None
    from convt_audio.errors import ConvtAudioError
    from convt_audio.filestream import Cancelled

    cancel = threading.Event()
    failed = 0
    with _Interrupts(cancel) as interrupts:
        try:
            for source, dest in pairs:
                try:
                    done = write_mel(source, dest, cfg, overwrite, non_finite.value, cancel)
                except Cancelled:
                    break
                except ConvtAudioError as exc:
                    failed += 1
                    _err(exc.render(FLAGS))
                    continue
                except Exception as exc:  # noqa: BLE001 - one line for this file, the rest still run
                    failed += 1
                    if debug:
                        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
                    _err(f"{source}: {type(exc).__name__}: {exc}")
                    continue
                if not quiet:
                    _note(f"{source} -> {dest}: {done['n_mels']} × {done['frames']} frames; {cfg.features.describe()}")
        except KeyboardInterrupt:  # a second signal: at once
            _err("interrupted")
            raise typer.Exit(interrupts.exit_code) from None
    if interrupts.signum is not None:
        _err("interrupted; no partial outputs were left")
        raise typer.Exit(interrupts.exit_code)
    raise typer.Exit(EXIT_FAILED if failed else EXIT_OK)


@app.command()
def init(
    config: str = typer.Argument(..., help="Config file or built-in name."),
    output: Path = typer.Option(..., "-o", "--output", help="Weights file to write (.safetensors, .pt or .npz)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same weights)."),
    overwrite: bool = typer.Option(False, "--overwrite", metavar="", help="Replace an existing file."),
    debug: bool = typer.Option(False, "--debug", metavar="", help="Show tracebacks."),
) -> None:
    """Write weights initialised as PyTorch initialises these layers."""
    try:
        from convt_audio.config import load_config
        from convt_audio.errors import UsageError
        from convt_audio.stack import Stack
        from convt_audio.weights import write_tensors

        cfg = load_config(config)
        if output.exists() and not overwrite:
            raise UsageError(f"{output}: already exists (pass --overwrite to replace it)")
        stack = Stack.initialised(cfg.layers, seed)
        tensors = stack.state_dict(cfg.tensor_names)
        write_tensors(output, tensors)
    except Exception as exc:
        raise _fail(exc, debug, usage=True) from None
    _note(f"wrote {output}: {len(tensors)} tensors, {stack.parameter_count():,} parameters (seed {seed})")


@design_app.command("sinc")
def design_sinc_command(
    factor: str = typer.Option(
        ..., "--factor", "-L", help="Output rate / input rate: an integer L >= 2 or a ratio L/M such as 160/147."
    ),
    passband: float = typer.Option(
        0.455, "--passband", help="Passband edge, fraction of the lower rate (0.455: 0.91 x its Nyquist)."
    ),
    stopband: float = typer.Option(
        0.5, "--stopband", help="Stopband edge, fraction of the lower rate (0.5: its Nyquist, alias-free)."
    ),
    attenuation: float = typer.Option(140.0, "--attenuation", help="Stopband attenuation in dB."),
    output: Path = typer.Option(..., "-o", "--output", help="NAME: writes NAME.yaml and NAME.safetensors."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", metavar="", help="Replace existing files."),
    debug: bool = typer.Option(False, "--debug", metavar="", help="Show tracebacks."),
) -> None:
    """Write an L/M zero-delay Kaiser-windowed sinc resampler (a config and its weights; two stages
    where one would be too long)."""
    try:
        from convt_audio.design import design_sinc, measure_response, write_sinc

        design = design_sinc(factor, passband, stopband, attenuation)
        config_path, weights_path = write_sinc(design, output, overwrite)
        measured = measure_response(design, passband, stopband)
    except Exception as exc:
        raise _fail(exc, debug, usage=True) from None
    stages = f"{len(design.stages)} stages" if len(design.stages) > 1 else "1 stage"
    _note(
        f"wrote {config_path} and {weights_path}: {design.kernel_size} taps in {stages}, ×{design.ratio}; "
        f"measured: passband ripple {measured.ripple_db:.2g} dB, stopband {measured.attenuation_db:.1f} dB down"
    )


@app.command()
def plot(
    targets: List[str] = typer.Argument(
        ..., help="A config (its frequency response), or two audio files (their spectrograms side by side)."
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Image to write (.png, .pdf, .svg, .jpg)."),
    weights: Optional[Path] = typer.Option(None, "-w", "--weights", help="Weights for a config (default: its own)."),
    input_rate: Optional[str] = typer.Option(None, "--input-rate", help="Input rate for the axis (default 16000)."),
    overwrite: bool = typer.Option(False, "--overwrite", "-y", metavar="", help="Replace an existing image."),
    debug: bool = typer.Option(False, "--debug", metavar="", help="Show tracebacks."),
) -> None:
    """Draw a resampler's measured response, or two files' spectrograms on one frequency axis."""
    try:
        from convt_audio.config import load_config, parse_rate
        from convt_audio.errors import UsageError
        from convt_audio.plots import plot_response, plot_spectrograms
        from convt_audio.weights import load_params

        if output.exists() and not overwrite:
            raise UsageError(f"{output}: already exists (pass --overwrite to replace it)")
        if len(targets) == 2:
            plot_spectrograms(Path(targets[0]), Path(targets[1]), output)
            _note(f"wrote {output}: spectrograms of {targets[0]} and {targets[1]}")
            return
        if len(targets) != 1:
            raise UsageError(f"plot takes a config, or two audio files; got {len(targets)} arguments")
        cfg = load_config(targets[0])
        params, _ = load_params(cfg, weights)
        rate = parse_rate(input_rate) if input_rate is not None else 16000
        measured = plot_response(cfg, params, output, rate)
    except Exception as exc:
        raise _fail(exc, debug, usage=True) from None
    _note(
        f"wrote {output}: passband ripple {measured['ripple_db']:.2g} dB, stopband "
        f"{measured['attenuation_db']:.1f} dB down (measured)"
    )


@app.command()
def configs() -> None:
    """List the built-in configs: what goes in, what comes out, and whether weights ship."""
    _need_stdout("configs")
    from convt_audio.config import DEFAULT_CONFIG, builtin_configs, load_config

    for name in builtin_configs():
        cfg = load_config(name)
        default = " (default)" if name == DEFAULT_CONFIG else ""
        feature_rate = cfg.feature_rate()
        if feature_rate is not None:
            shape = (
                f"in: {cfg.in_channels}-band features at {float(feature_rate):g} Hz (.npy); "
                f"out: audio at {cfg.output_sample_rate} Hz"
            )
        else:
            shape = f"in: audio at any rate; out: ×{cfg.rate_factor()} the rate"
        weights = "weights included" if cfg.weights else "no weights: pass -w CHECKPOINT"
        if not _echo(one_line(f"{name}{default}: {cfg.description}") + f"\n    {shape}; {weights}"):
            raise typer.Exit(EXIT_FAILED)


if __name__ == "__main__":  # pragma: no cover
    app()
