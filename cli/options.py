"""The command line's vocabulary: how it spells the library's parameters (``FLAGS``), its
choices (built from the library's own tuples, never restated), and the options of ``run``, each
with its help, so that the command itself reads as what it does."""

from __future__ import annotations

from enum import Enum

import typer

from convt_audio.core.options import (
    CHANNEL_MODES,
    CLIP_MODES,
    DTYPE_NAMES,
    ENDIANS,
    NON_FINITE_MODES,
    RAW_ENCODINGS,
    SUBTYPES,
)

# how this command line spells the library's parameters in messages (convt_audio.core.errors.option)
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
    "container": "--type",
    "device": "--device",
    "dtype": "--dtype",
    "ray": "--ray",
    "jobs": "--jobs",
    "slots": "--slots",
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
    "json": "--json",
    "condition": "--condition",
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
RAW_FLAGS = ("--input-channels", "--input-bits", "--input-encoding", "--input-endian")


# -- run's options ----------------------------------------------------------------------

INPUTS = typer.Argument(
    ...,
    readable=False,  # an unreadable file fails alone (exit 1)
    help="Audio files (anything libsndfile reads, or .npy) or folders.",
)

OUTPUT = typer.Option(
    None,
    "-o",
    "--output",  # str: keeps a trailing "/"
    help="Output file (one input) or folder (several inputs or a folder).",
)

CONFIG = typer.Option(
    None,
    "-c",
    "--config",
    help="Config file or built-in name. Without -c and -r: inputs below 48 kHz are resampled to 48 kHz.",
)

WEIGHTS = typer.Option(None, "-w", "--weights", help="Weights file (default: the config's).")

CONDITION = typer.Option(
    None,
    "--condition",
    metavar="VALUE",
    help="The config's condition, where it has one (vocos-encodec-24khz: the bandwidth, 1.5, 3, 6 or 12 kbps).",
)

DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")

CHUNK = typer.Option("auto", "--chunk", help="Input frames per block, or auto.")

DTYPE = typer.Option(DType.float32, "--dtype", case_sensitive=False, help="Compute dtype.")

THREADS = typer.Option(None, "--threads", min=1, help="CPU threads for torch.")

DETERMINISTIC = typer.Option(False, "--deterministic", metavar="", help="Use PyTorch's deterministic algorithms.")

CHANNELS = typer.Option(None, "--channels", case_sensitive=False, help="Override the config's channel mapping.")

INPUT_RATE = typer.Option(
    None,
    "--input-rate",
    help="Rate of .npy inputs in Hz, fractional allowed (86.1328125 or 22050/256); default: the config's feature rate.",
)

INPUT_TYPE = typer.Option(
    None,
    "--input-type",
    case_sensitive=False,
    help="raw: the input (a file or -) is headerless samples, described by --input-rate, --input-channels, "
    "--input-bits and --input-encoding (sox's -t raw -r -c -b -e), all required.",
)

INPUT_CHANNELS = typer.Option(None, "--input-channels", help="Channels of a raw input.")

INPUT_BITS = typer.Option(None, "--input-bits", help="Bits per sample of a raw input.")

INPUT_ENCODING = typer.Option(
    None, "--input-encoding", case_sensitive=False, help="Sample encoding of a raw input (sox's -e words)."
)

INPUT_ENDIAN = typer.Option(
    None, "--input-endian", case_sensitive=False, help="Byte order of a raw input (default little)."
)

SUBTYPE = typer.Option(None, "--subtype", case_sensitive=False, help="Output subtype (default: the input's).")

BITS = typer.Option(
    None, "--bits", "-b", help="Bits of a PCM output, as sox's -b: 16, 24 or 32 (--subtype PCM_16, ...)."
)

NO_DITHER = typer.Option(
    False,
    "--no-dither",
    "-D",
    metavar="",
    help="Round PCM outputs plainly. By default, a PCM output with fewer bits than the computation "
    "(16-bit after float32) gets TPDF dither, as sox adds it.",
)

CLIP = typer.Option(
    Clip.clamp,
    "--clip",
    case_sensitive=False,
    help="Integer outputs: clamp and count, refuse (error; also NaN/Inf outputs), or scale the "
    "whole file so its peak fits (rescale: two passes).",
)

NON_FINITE = typer.Option(
    NonFinite.error,
    "--non-finite",
    case_sensitive=False,
    help="NaN/Inf input samples: fail that file (error) or replace them with 0.",
)

OVERWRITE = typer.Option(False, "--overwrite", "-y", metavar="", help="Replace existing outputs.")

SKIP_EXISTING = typer.Option(
    False, "--skip-existing", "--no-clobber", "-n", metavar="", help="Skip inputs whose output exists."
)

KIND = typer.Option(
    None,
    "--type",
    "-t",
    help="Container of every output the tool names, of -o FILE without an extension, and of -o - or a "
    "named pipe (wav, flac or raw there): wav, flac, ogg, opus, mp3, aiff, caf, w64, rf64, au.",
)

TARGET_RATE = typer.Option(
    None,
    "--rate",
    "-r",
    help="Output sample rate in Hz, or kHz as sox writes it (48k, 44.1k). Without -c, an alias-free resampler "
    "for each input's rate (a built-in sinc-xL, or an L/M design, cached); with -c, a check.",
)

ALLOW_ALIASING = typer.Option(
    False,
    "--allow-aliasing",
    metavar="",
    help="With --rate: the older band edges (0.45/0.55 of the lower rate), whose transition straddles the "
    "Nyquist frequency, instead of alias-free ones (flat to 0.91 of it, 140 dB down from it).",
)

RECURSIVE = typer.Option(False, "--recursive", "-R", metavar="", help="Look for audio in subfolders too.")

JOBS = typer.Option(1, "--jobs", "-j", min=1, help="Files processed in parallel (with --ray: workers).")

SLOTS = typer.Option(
    None,
    "--slots",
    min=1,
    help="Files streamed at once as one batch through the model, a finished file's slot taken by the "
    "next: one forward a block for all of them. Default 16 on a GPU, 1 (each file alone) on the CPU.",
)

RAY = typer.Option(
    None,
    "--ray",
    help="Run the batch on a Ray cluster: auto (a running cluster), HOST:PORT or ray://HOST:PORT, or "
    "local (start one here; also --ray alone). Needs the [ray] extra and a filesystem every node sees.",
)

FAIL_FAST = typer.Option(False, "--fail-fast", metavar="", help="Stop at the first failed input.")

AS_JSON = typer.Option(False, "--json", metavar="", help="One JSON object per file on stdout.")

QUIET = typer.Option(False, "--quiet", "-q", metavar="", help="Print nothing but errors.")

VERBOSE = typer.Option(
    False, "--verbose", "-V", metavar="", help="Say more of each file: engine, device, subtype, dither."
)

SHOW_PROGRESS = typer.Option(
    False, "--show-progress", "-S", metavar="", help="Progress bars even when stderr is not a terminal."
)

DEBUG = typer.Option(False, "--debug", metavar="", help="Show tracebacks.")
