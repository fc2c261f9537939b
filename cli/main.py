"""``convt-audio``: parse, call the engine, print. No DSP here.

torch and the engine are imported inside the commands so that ``--help`` is instant.
Errors are one line on stderr; exit codes: 0 done, 1 some input failed, 2 usage/config/weights,
130 interrupted (README.md, "For scripts").
"""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from contextlib import ExitStack
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from convt_audio.core.errors import one_line, render
from convt_audio.core.process import tune_process

from . import options as opts
from .batch import _run_jobs, _Shown
from .options import FLAGS, RAW_FLAGS, Channels, Clip, DType, Encoding, Endian, InputType, NonFinite, Subtype  # noqa: F401 - the annotations Typer reads
from .terminal import (
    CLOSED_STREAMS,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    _echo,
    _err,
    _guard_standard_streams,
    _Interrupts,
    _need_stdout,
    _note,
    _quiet_native_notes,
    _ray_default,
    _results_apart,
    _stdout_gone,
    _warn,
)

# click's exception classes as the installed Typer raises them (it may vendor click)
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
Abort = typer.Abort


class _OneLineErrors(TyperGroup):
    """Option-parsing errors as our own one line (``convt-audio: error: …``, exit 2), no panels."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        _guard_standard_streams()
        tune_process(malloc=True)  # OpenMP's passive wait, malloc's reuse: before torch loads
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


def _fail(exc: BaseException, debug: bool = False, usage: bool = False) -> "typer.Exit":
    """Print one line for an error (a traceback with --debug) and give its exit code.

    Before any file runs, every failure is a usage, config or weights error (exit 2); ``usage``
    says so for commands whose only output is theirs (``init``, ``design``).
    """
    from convt_audio.core.errors import ConvtAudioError

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


@app.command()
def run(
    inputs: List[Path] = opts.INPUTS,
    output: Optional[str] = opts.OUTPUT,
    config: Optional[str] = opts.CONFIG,
    weights: Optional[Path] = opts.WEIGHTS,
    condition: Optional[str] = opts.CONDITION,
    device: str = opts.DEVICE,
    chunk: str = opts.CHUNK,
    dtype: DType = opts.DTYPE,
    threads: Optional[int] = opts.THREADS,
    deterministic: bool = opts.DETERMINISTIC,
    channels: Optional[Channels] = opts.CHANNELS,
    input_rate: Optional[str] = opts.INPUT_RATE,
    input_type: Optional[InputType] = opts.INPUT_TYPE,
    input_channels: Optional[int] = opts.INPUT_CHANNELS,
    input_bits: Optional[int] = opts.INPUT_BITS,
    input_encoding: Optional[Encoding] = opts.INPUT_ENCODING,
    input_endian: Optional[Endian] = opts.INPUT_ENDIAN,
    subtype: Optional[Subtype] = opts.SUBTYPE,
    bits: Optional[int] = opts.BITS,
    no_dither: bool = opts.NO_DITHER,
    clip: Clip = opts.CLIP,
    non_finite: NonFinite = opts.NON_FINITE,
    overwrite: bool = opts.OVERWRITE,
    skip_existing: bool = opts.SKIP_EXISTING,
    container: Optional[str] = opts.KIND,
    target_rate: Optional[str] = opts.TARGET_RATE,
    allow_aliasing: bool = opts.ALLOW_ALIASING,
    recursive: bool = opts.RECURSIVE,
    jobs: int = opts.JOBS,
    slots: Optional[int] = opts.SLOTS,
    ray: Optional[str] = opts.RAY,
    fail_fast: bool = opts.FAIL_FAST,
    as_json: bool = opts.AS_JSON,
    quiet: bool = opts.QUIET,
    verbose: bool = opts.VERBOSE,
    show_progress: bool = opts.SHOW_PROGRESS,
    debug: bool = opts.DEBUG,
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
        from convt_audio.core.errors import UsageError
        from convt_audio.run.prepare import RawInput, RunRequest, prepare_run

        raw_fields = (input_channels, input_bits, input_encoding, input_endian)
        if input_type is None and any(value is not None for value in raw_fields):
            given = [flag for flag, value in zip(RAW_FLAGS, raw_fields) if value is not None]
            raise UsageError(f"{', '.join(given)} describe a headerless input: add --input-type raw")
        request = RunRequest(
            inputs=tuple(inputs),
            output=output,
            config=config,
            weights=None if weights is None else str(weights),
            rate=target_rate,
            input_rate=input_rate,
            device=device,
            dtype=dtype.value,
            threads=threads,
            deterministic=deterministic,
            allow_aliasing=allow_aliasing,
            condition=condition,
            chunk=chunk_frames,
            channels=channels.value if channels else None,
            subtype=subtype.value if subtype else None,
            bits=bits,
            clip=clip.value,
            non_finite=non_finite.value,
            overwrite=overwrite,
            skip_existing=skip_existing,
            container=container,
            dither=not no_dither,
            raw=None if input_type is None else RawInput(*(getattr(v, "value", v) for v in raw_fields)),
            recursive=recursive,
            jobs=jobs,
            slots=slots,
            to_json=as_json,
            ray=ray,
        )
        prepared = prepare_run(request, started)
        for line in prepared.warnings:
            _warn(render(line, FLAGS), quiet)
        if ray is not None:
            from convt_audio.run.cluster import check_address, check_writable, connect

            check_address(ray)
            check_writable(prepared.jobs)
            apart.enter_context(_results_apart(debug))
            connect(ray, jobs)
    except KeyboardInterrupt:
        apart.close()
        _err("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:
        apart.close()
        raise _fail(exc, debug) from None
    with apart:
        shown = _Shown(quiet, as_json, verbose, show_progress, debug)
        cluster = None if ray is None else (ray, prepared.recipe)
        code = _run_jobs(prepared.runner, prepared.jobs, prepared.options, prepared.workers, fail_fast, shown, cluster)
    if output == "-" or as_json:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            code = code or EXIT_FAILED
        if code:  # whatever is left in Python's buffer would only raise again at exit
            _stdout_gone()
    raise typer.Exit(code)


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
        from convt_audio.model.config import load_config, parse_rate
        from convt_audio.run.report import info_lines, summary, weights_status

        cfg = load_config(config)
        rate = parse_rate(input_rate) if input_rate is not None else (cfg.feature_rate() or 16000)
    except Exception as exc:
        raise _fail(exc, debug) from None
    weights_path = weights or cfg.weights
    status, weights_ok, layout = weights_status(cfg, weights_path, FLAGS)
    facts = summary(cfg, rate, weights_path, status)
    facts["weights_layout"] = layout  # which of the config's checkpoint layouts the file has
    try:
        if as_json:
            typer.echo(json.dumps(facts))
        else:
            from .rich_utils import layer_table, print_table

            print_table(layer_table(facts["layers"], one_line(f"{cfg.name}: {cfg.description}".rstrip(": "))))
            lines = info_lines(facts, cfg, input_rate is not None, status, weights_ok)
            typer.echo("\n".join(one_line(render(line, FLAGS)) for line in lines))
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
        from convt_audio.core.process import check_environment
        from convt_audio.model.config import load_config
        from convt_audio.run.mel import check_recipe_memory, plan_mel

        check_environment()
        cfg = load_config(config)
        if stats is not None and cfg.features is not None:
            from dataclasses import replace

            cfg = replace(cfg, features=replace(cfg.features, stats=str(stats)))
        check_recipe_memory(cfg)
        if cfg.features.stats is not None:
            from convt_audio.io.features import read_stats

            read_stats(cfg.features)  # a bad stats file is a usage error, found before any file runs
        pairs = plan_mel(inputs, output)
    except Exception as exc:
        raise _fail(exc, debug) from None
    from convt_audio.run.mel import mel_batch, mel_summary

    cancel = threading.Event()

    def failed(source, exc) -> None:
        if debug:
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        _err(exc.render(FLAGS) if hasattr(exc, "render") else f"{source}: {type(exc).__name__}: {exc}")

    def done(source, dest, facts) -> None:
        if not quiet:
            _note(f"{source} -> {dest}: {mel_summary(facts, cfg.features)}")

    with _Interrupts(cancel) as interrupts:
        try:
            failures = mel_batch(pairs, cfg, overwrite, non_finite.value, cancel, done, failed)
        except KeyboardInterrupt:  # a second signal: at once
            _err("interrupted")
            raise typer.Exit(interrupts.exit_code) from None
    if interrupts.signum is not None:
        _err("interrupted; no partial outputs were left")
        raise typer.Exit(interrupts.exit_code)
    raise typer.Exit(EXIT_FAILED if failures else EXIT_OK)


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
        from convt_audio.core.errors import UsageError
        from convt_audio.model.config import load_config
        from convt_audio.model.stack import Stack
        from convt_audio.model.weights import write_tensors

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
        from convt_audio.model.resamplers import write_sinc
        from convt_audio.resampling.design import design_sinc, measure_response

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
        from convt_audio.core.errors import UsageError
        from convt_audio.model.config import load_config, parse_rate
        from convt_audio.model.weights import load_params
        from convt_audio.plots import plot_response, plot_spectrograms

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
    from convt_audio.run.report import builtin_lines

    for entry in builtin_lines():
        if not _echo(entry):
            raise typer.Exit(EXIT_FAILED)


if __name__ == "__main__":  # pragma: no cover
    app()
