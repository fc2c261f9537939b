"""Block-wise audio reading and writing with python-soundfile: formats, sources and sinks.

Nothing here holds a whole file: sources yield ``[channels, frames]`` blocks, sinks take them.
Where outputs are written (a temporary file renamed when complete) is :mod:`convt_audio.io.atomic`.
"""

from __future__ import annotations

import os
import re
import struct
import sys
import tempfile
import threading
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from ..core.errors import AudioError, ClippingError, UsageError, option, unpickling_failure
from ..core.options import ABSENT_CODE, ENDIANS, RAW_ENCODINGS
from ..core.process import interruptible_wait, wait_in_thread

FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
INEXACT_SEEK_FORMATS = ("MP3", "OGG")  # compressed streams: a seek is near, not on, the frame
PCM_BITS = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}
# PCM read as the integers libsndfile stores and scaled here: its own int→float conversion took
# 2.4× the CPU time (10 min of stereo PCM_16: 0.195 s vs 0.082 s)
RAW_INTEGERS = {"PCM_16": ("int16", 2.0**-15), "PCM_24": ("int32", 2.0**-31), "PCM_32": ("int32", 2.0**-31)}
_EXTENSION_ALIASES = {"aif": "AIFF", "aifc": "AIFF", "wave": "WAV", "oga": "OGG", "opus": "OGG", "mp3": "MP3"}
STDIO = "-"  # as an input: standard input; as an output: standard output
STREAM_TYPES = ("wav", "flac", "raw")  # what -o - can write (no seeking back to fix a header)
# sample rates a container can hold, where it cannot hold any
_RATES = {
    "opus": (8000, 12000, 16000, 24000, 48000),
    "mp3": (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000),
}
_CARRIED_SUBTYPES = ("PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
_PLAIN_FORMATS = ("WAV", "WAVEX", "W64", "RF64", "AIFF", "CAF", "AU", "RAW")  # samples stored as they are


def _coded(handle) -> bool:
    """Whether libsndfile encodes or decodes this file's samples (FLAC, Ogg, MP3, ADPCM, …),
    rather than copying PCM or float samples as they are."""
    return handle.format not in _PLAIN_FORMATS or handle.subtype not in _CARRIED_SUBTYPES


def interleaved(block: np.ndarray, dtype) -> np.ndarray:
    """``[channels, frames]`` as an interleaved ``[frames, channels]`` array of ``dtype``, one
    channel at a time (a cast of the transposed view walks memory across channels: 3-4× the
    time for stereo)."""
    out = np.empty(block.shape[::-1], dtype=dtype)
    for channel in range(block.shape[0]):
        out[:, channel] = block[channel]
    return out


def audio_extensions() -> set[str]:
    """File extensions (lower case, no dot) this libsndfile reads, plus ``npy``."""
    names = {name.lower() for name in sf.available_formats()} | set(_EXTENSION_ALIASES) | {"npy"}
    return names - {"raw"}


def output_types() -> list[str]:
    """The extensions (``--type`` values) this libsndfile can write."""
    names = {name.lower() for name in sf.available_formats()} - {"raw"}
    return sorted(names | {"opus", "aif", "oga"} | ({"mp3"} if "MP3" in sf.available_formats() else set()))


def format_for(path: str | Path) -> str:
    """The libsndfile major format for an output path, from its extension."""
    ext = Path(path).suffix.lower().lstrip(".")
    fmt = _EXTENSION_ALIASES.get(ext, ext.upper())
    if fmt not in sf.available_formats() or fmt == "RAW":
        raise UsageError(
            f"{path}: cannot write {('.' + ext) if ext else 'a file without extension'}; use one of "
            f".wav, .flac, .ogg, .opus, .mp3, .aiff, .caf, .w64, .rf64, .au (or {option('container')})"
        )
    return fmt


def check_rate(path: str | Path, rate: int) -> None:
    """Refuse, before any work, a sample rate the output's container cannot hold."""
    ext = Path(path).suffix.lower().lstrip(".")
    allowed = _RATES.get(ext)
    if allowed and rate not in allowed:
        raise UsageError(
            f"{path}: .{ext} holds {', '.join(map(str, allowed))} Hz, not {rate} Hz; "
            f"choose another {option('target_rate')} or {option('container')}"
        )


def choose_subtype(fmt: str, requested: str | None, input_subtype: str | None, where: str) -> str:
    """The output subtype: the requested one, else the input's PCM/float one where the format has
    it, else the format's default (Opus for .opus; PCM_16 for WAV from an MP3 or Vorbis input)."""
    if requested:
        if not sf.check_format(fmt, requested):
            raise UsageError(f"{option('subtype')}: {fmt} files cannot hold {requested} ({where})")
        return requested
    if Path(where).suffix.lower() == ".opus":
        return "OPUS"
    if input_subtype in _CARRIED_SUBTYPES and sf.check_format(fmt, input_subtype):
        return input_subtype
    return sf.default_subtype(fmt)


def _check_not_truncated(handle: sf.SoundFile, path: Path) -> None:
    """libsndfile reads a truncated WAV/AIFF silently; its header report says 'should be'."""
    match = re.search(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", handle.extra_info, re.M)
    if match:
        promised, present = int(match.group(1)), int(match.group(2))
        if present < promised and promised not in (0, 0xFFFFFFFF, 0xFFFFFFFF - 8):
            raise AudioError(f"{path}: truncated: the header promises {promised} data bytes, the file holds {present}")


# data sizes that stream writers put in a header when the length is unknown: 0, all ones (and
# libsndfile's all ones − 8), sox's 0x7ffff000 (WAV) and 0x7f000000 + 8 (AIFF's SSND)
_UNKNOWN_SIZES = {0, 0xFFFFFFFF, 0xFFFFFFFF - 8, 0x7FFFF000, 0x7F000008}


# libsndfile's frame count where a header does not hold the length (FLAC written to a pipe has 0
# total samples in STREAMINFO, which it reports "bumping to SF_COUNT_MAX")
_UNKNOWN_LENGTH = 1 << 62


def _known_frames(handle: sf.SoundFile) -> int | None:
    """The frames a file's header holds, or None where it does not know them (a FLAC stream
    ffmpeg wrote to a pipe, saved or piped on): such a file is read forward to its real end.

    python-soundfile bounds each read by ``frames - tell()``, and that ``tell()`` (a seek) fails
    at the end of such a stream ("Internal psf_fseek() failed"), losing the last block: the handle
    is marked unseekable, so that reads stop where the decoder does.
    """
    if handle.frames < _UNKNOWN_LENGTH:
        return handle.frames
    with suppress(AttributeError, TypeError):
        handle._info.seekable = 0  # python-soundfile's own view only: libsndfile still decodes
    return None


def _promised_frames(handle: sf.SoundFile) -> int | None:
    """The frames a stream's header promises, or None where it says the length is unknown."""
    match = re.search(r"^\s*(?:data|SSND|Data Size)\s*:\s*(-?\d+)", handle.extra_info, re.M)
    if not match or int(match.group(1)) < 0 or int(match.group(1)) in _UNKNOWN_SIZES:
        return None
    return handle.frames


@dataclass
class AudioSource:
    """An input file read in blocks: ``frames``, ``rate``, ``channels``, ``subtype``."""

    path: Path
    rate: int
    channels: int
    frames: int | None  # None: a stream from a pipe, whose length shows only at its end
    subtype: str | None
    _handle: sf.SoundFile | None = None
    _array: np.ndarray | None = None
    _spool: object = None  # the temporary copy of a standard input that had to be seekable
    promised: int | None = None  # a stream's length as its header promised it (None: unknown)
    _map_path: Path | None = None  # the .npy file _array maps, mapped afresh for each block (pages
    # read stay out of our RSS once unmapped); for standard input, its spooled copy
    is_stream: bool = False  # standard input or a named FIFO: read once, as it comes
    absent_rows: int = 0  # codebook rows an integer-codes file lacks, added as ABSENT codes

    def blocks(self, frames: int, dtype: str = "float32") -> Iterator[np.ndarray]:
        """Yield ``[channels, n]`` blocks of at most ``frames`` frames, from the start."""
        if self._array is not None:
            for start in range(0, self.frames, frames):
                # map the file for each block: pages read stay out of our RSS once unmapped
                array = (
                    _npy_2d(np.load(self._map_path, mmap_mode="r", allow_pickle=False))
                    if self._map_path is not None
                    else self._array
                )
                block = np.array(array[:, start : start + frames], dtype=dtype, order="C")
                if self.absent_rows:  # codebooks the file lacks: rows of absent codes
                    block = np.concatenate([block, np.full((self.absent_rows, block.shape[1]), ABSENT_CODE, dtype)])
                yield block
                del array
            return
        if self._handle.seekable():
            self._handle.seek(0)
        read = 0
        raw = RAW_INTEGERS.get(self.subtype) if dtype in ("float32", "float64") else None
        while True:
            try:
                block = self._handle.read(frames, dtype=raw[0] if raw else dtype, always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioError(f"{self.path}: read error after {read} frames: {exc}") from None
            if not block.shape[0]:
                break
            read += block.shape[0]
            if raw:  # the scale libsndfile applies, a power of two: the same floats, exactly
                yield np.multiply(block.T, np.dtype(dtype).type(raw[1]), dtype=dtype, order="C")
            else:
                yield np.ascontiguousarray(block.T)
        if self.frames is not None and read < self.frames:
            raise AudioError(f"{self.path}: truncated: expected {self.frames} frames, read {read}")
        if self.frames is None and self.promised is not None and read < self.promised:
            raise AudioError(
                f"{self.path}: truncated: the stream's header promises {self.promised} frames, it ended after {read}"
            )

    @property
    def tags(self) -> dict[str, str]:
        """The file's text tags (title, artist, album, date, comment, …: FLAC's Vorbis comments,
        WAV's INFO chunk), as libsndfile reads them; none for arrays."""
        if self._handle is None:
            return {}
        try:
            return dict(self._handle.copy_metadata())
        except (sf.LibsndfileError, RuntimeError, UnicodeDecodeError):
            return {}

    @property
    def decodes(self) -> bool:
        """Reading costs decoding (a compressed format), not just copying samples."""
        return self._handle is not None and _coded(self._handle)

    @property
    def is_array(self) -> bool:
        """A ``.npy``/``.pt`` array (features, codes, a latent), not sound read from a file or pipe."""
        return self._array is not None

    @property
    def always_finite(self) -> bool:
        """Integer PCM read from a sound file: no NaN or Inf can occur (nothing to check)."""
        return self._array is None and self.subtype in PCM_BITS

    def tail(self, frames: int, dtype: str = "float32") -> np.ndarray:
        """The last ``min(frames, self.frames)`` frames as ``[channels, n]``.

        Seeks where the format's seek is sample-exact; a compressed stream whose seek is not
        (MP3, Ogg Vorbis/Opus: a seek lands near, not on, the frame) is decoded from the start
        instead, keeping only the last frames, so the tail is exactly what the stream will give.
        """
        if self.frames is None:
            raise AudioError(
                f"{self.path}: a circular first layer needs the signal's end first, which a stream "
                f"of unknown length (a pipe, or FLAC written to one) cannot give; pass a file whose header holds it"
            )
        count = min(frames, self.frames)
        if self._array is not None:
            return np.array(self._array[:, self.frames - count :], dtype=dtype, order="C")
        if self._handle.format in INEXACT_SEEK_FORMATS:
            kept = np.zeros((0, self.channels), dtype=dtype)
            for block in self._handle.blocks(blocksize=1 << 16, dtype=dtype, always_2d=True):
                kept = np.concatenate([kept, block])[-count:] if count else kept
            self._handle.seek(0)
            return np.ascontiguousarray(kept.T)
        self._handle.seek(self.frames - count)
        block = self._handle.read(count, dtype=dtype, always_2d=True)
        self._handle.seek(0)
        return np.ascontiguousarray(block.T)

    _fifo_fd: int | None = None  # a named pipe's descriptor, closed with the source
    busy: bool = False  # a reader thread may still be inside libsndfile: the handle is not closed under it

    def close(self) -> None:
        if self._handle is not None and not self.busy:
            self._handle.close()
        if self._spool is not None:
            self._spool.close()
        if self._fifo_fd is not None and not self.busy:
            with suppress(OSError):
                os.close(self._fifo_fd)

    def __enter__(self) -> "AudioSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _npy_2d(array: np.ndarray) -> np.ndarray:
    """(frames,) → (1, frames); (1, channels, frames), a batch of one → (channels, frames)."""
    if array.ndim == 1:
        return array[None, :]
    if array.ndim == 3 and array.shape[0] == 1:
        return array[0]
    return array


def _feature_source(
    path,
    array: np.ndarray,
    input_rate,
    expected_channels,
    label: str | None = None,
    mapped: bool = True,
    codes: bool = False,
    latent_channels: int | None = None,
) -> AudioSource:
    """A ``(channels, frames)`` float array as a source: an ``.npy`` file, mapped block by block
    (``label`` names it in messages: ``<stdin>`` for standard input's spooled copy), or a tensor
    already in memory (``mapped=False``: a ``.pt`` file)."""
    mapped_path, path = path, label or path
    kind = ".npy" if mapped else Path(path).suffix.lower()
    if input_rate is None:
        raise AudioError(
            f"{path}: {kind} inputs need {option('input_rate', 'HZ')} (or a config with output_sample_rate)"
        )
    array = _npy_2d(array)
    integer = np.issubdtype(array.dtype, np.integer)
    if array.ndim != 2 or not ((codes and integer) or np.issubdtype(array.dtype, np.floating)):
        takes = "integer codes (codebooks, frames)" if codes else "a float array of shape (channels, frames)"
        hint = "" if codes or not integer else " (integer codes are read by a stack whose first layer is codebooks)"
        raise AudioError(f"{path}: {kind} input must be {takes}, got {array.dtype} {tuple(array.shape)}{hint}")
    if codes and not integer:  # floats: only a codec's latent (DAC's z) in place of its codes
        if array.ndim != 2 or array.shape[0] != latent_channels:
            also = f", or its {latent_channels}-channel latent" if latent_channels else ""
            raise AudioError(
                f"{path}: {kind} input is {array.dtype} {tuple(array.shape)}; the stack decodes a codec's "
                f"integer codes (codebooks, frames){also}"
            )
        expected_channels = latent_channels
    codes = codes and integer  # a codec's codes: (codebooks, frames)
    absent = 0  # codebook rows the file lacks (a lower bitrate): padded with ABSENT codes
    if codes and expected_channels is not None and 0 < array.shape[0] != expected_channels:
        if array.shape[0] > expected_channels:
            turned = array.shape[1] <= expected_channels  # (frames, codebooks), as some tools save them
            raise AudioError(
                f"{path}: holds {array.shape[0]} codebook rows; the model has {expected_channels} codebooks"
                + (": it looks like (frames, codebooks); save it transposed, as (codebooks, frames)" if turned else "")
            )
        absent = expected_channels - array.shape[0]
    if not codes and array.shape[0] != expected_channels and array.shape[1] == expected_channels:
        raise AudioError(
            f"{path}: shape {tuple(array.shape)} looks like (frames, channels); the stack "
            f"takes {expected_channels} channels: save the array transposed, as (channels, frames)"
        )
    if not codes and array.shape[0] > array.shape[1] and array.shape[0] != expected_channels:
        if expected_channels is not None and expected_channels > 1:  # features: the band count is what is wrong
            raise AudioError(
                f"{path}: shape {tuple(array.shape)} holds {array.shape[0]} channels (rows); the stack takes "
                f"{expected_channels}"
            )
        raise AudioError(
            f"{path}: shape {tuple(array.shape)} has more channels than frames; expected (channels, frames)"
        )
    if 0 in array.shape:
        raise AudioError(
            f"{path}: {kind} input of shape {tuple(array.shape)} has no {'channels' if array.shape[0] == 0 else 'frames'}"
        )
    subtype = "DOUBLE" if array.dtype == np.float64 else "FLOAT"  # keep every bit of a float array
    return AudioSource(
        Path(path),
        input_rate,
        array.shape[0] + absent,
        array.shape[1],
        subtype,
        _array=array,
        _map_path=Path(mapped_path) if mapped else None,
        absent_rows=absent,
    )


def _copy_fd(fd: int, spool) -> None:
    """The rest of a descriptor's bytes into a file (a temporary spool: a signal may stop it)."""
    with interruptible_wait():
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                return
            spool.write(block)


def streamed_to(path: str | Path) -> bool:
    """Whether an output path is written as a stream, front to back with no seeking back: ``-``
    (standard output), or an existing named pipe or device (``/dev/null``), which a finished
    file must never be renamed over."""
    import stat

    if str(path) == STDIO:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def open_stream_output(path: Path):
    """A named pipe or device opened for writing (a pipe's open waits for its reader, a wait a
    signal stops at once)."""
    from ..core.process import interruptible_wait

    try:
        with interruptible_wait():
            fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        raise AudioError(f"{path}: cannot write ({exc.strerror})") from None
    return os.fdopen(fd, "wb")


def is_fifo(path: str | Path) -> bool:
    """Whether ``path`` is a named pipe (reading it consumes it: no probing, no second open)."""
    import stat

    try:
        return stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        return False


def _open_stdin(
    input_rate,
    expected_channels: int | None,
    fd: int = 0,
    label: str = STDIO,
    codes: bool = False,
    latent_channels: int | None = None,
) -> AudioSource:
    """Standard input (or another stream: a named FIFO's descriptor ``fd``, named ``label``): an
    ``.npy`` array, or an audio stream.

    The first bytes tell which. WAV, AIFF and AU are read as they come: those bytes and the rest
    go through a pipe to libsndfile, which reads such a pipe without seeking, and the length is
    unknown until the stream ends (``frames`` is None). Other formats (FLAC, Ogg, MP3), whose
    decoders must seek, are first copied to an anonymous temporary file (on disk, not in memory).
    """
    name = "<stdin>" if label == STDIO else label
    head = b""
    with interruptible_wait():  # nothing written yet: a signal stops the wait at once
        while len(head) < 6:
            more = os.read(fd, 6 - len(head))
            if not more:
                break
            head += more
    if not head:
        raise AudioError(f"{name}: nothing to read (pipe audio in, or name a file)")
    if head.startswith(b"\x93NUMPY"):
        # spooled to a temporary file on disk and mapped block by block, as a named .npy is:
        # memory stays bounded whatever the array's size
        spool = tempfile.NamedTemporaryFile(prefix="convt-audio-stdin-", suffix=".npy")
        try:
            spool.write(head)
            _copy_fd(fd, spool)
            spool.flush()
            array = np.load(spool.name, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            spool.close()
            detail = (getattr(exc, "strerror", None) or str(exc)).splitlines()[0]
            raise AudioError(f"{name}: not a readable .npy array: {detail}") from None
        try:
            source = _feature_source(
                spool.name,
                array,
                input_rate,
                expected_channels,
                label=name,
                codes=codes,
                latent_channels=latent_channels,
            )
        except AudioError:
            spool.close()
            raise
        source._spool, source.is_stream = spool, True
        return source
    if head[:4] not in (b"RIFF", b"RIFX", b"RF64", b"FORM", b".snd"):
        spool = tempfile.TemporaryFile(prefix="convt-audio-stdin-")
        spool.write(head)
        _copy_fd(fd, spool)
        spool.seek(0)
        try:
            handle = sf.SoundFile(spool)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            spool.close()
            detail = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
            raise AudioError(f"{name}: not a readable audio stream ({detail})") from None
        return AudioSource(
            Path(label),
            handle.samplerate,
            handle.channels,
            _known_frames(handle),
            handle.subtype,
            handle,
            _spool=spool,
            is_stream=True,
        )
    read_end = _relay_stdin(head, fd)
    try:  # libsndfile blocks on the pipe until the header is in: waited for where signals are seen
        handle = wait_in_thread(lambda: sf.SoundFile(read_end, closefd=True))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        detail = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
        raise AudioError(f"{name}: not a readable audio stream ({detail})") from None
    return AudioSource(
        Path(label),
        handle.samplerate,
        handle.channels,
        None,
        handle.subtype,
        handle,
        promised=_promised_frames(handle),
        is_stream=True,
    )


# (encoding, bits) -> libsndfile's subtype for headerless input: what sox's -e/-b describe
_RAW_SUBTYPES = {
    ("signed-integer", 8): "PCM_S8",
    ("signed-integer", 16): "PCM_16",
    ("signed-integer", 24): "PCM_24",
    ("signed-integer", 32): "PCM_32",
    ("unsigned-integer", 8): "PCM_U8",
    ("floating-point", 32): "FLOAT",
    ("floating-point", 64): "DOUBLE",
}
_RAW_ALIASES = {"signed": "signed-integer", "unsigned": "unsigned-integer", "float": "floating-point"}


@dataclass(frozen=True)
class RawFormat:
    """A headerless input's description, as sox's ``-t raw -r -c -b -e`` give it: the samples
    are interleaved frames of ``channels`` samples of ``bits`` bits in ``encoding``.

    Every field is required (a raw stream says nothing of itself); :meth:`from_options` refuses
    a description with any missing, naming them.
    """

    rate: int
    channels: int
    bits: int
    encoding: str  # signed-integer, unsigned-integer or floating-point (or signed, unsigned, float)
    endian: str = "little"

    def __post_init__(self) -> None:
        encoding = _RAW_ALIASES.get(str(self.encoding).lower(), str(self.encoding).lower())
        object.__setattr__(self, "encoding", encoding)
        if encoding not in RAW_ENCODINGS:
            raise UsageError(f"{option('input_encoding')}: {self.encoding!r} is not one of {list(RAW_ENCODINGS)}")
        if self.endian not in ENDIANS:
            raise UsageError(f"{option('input_endian')}: {self.endian!r} is not one of {list(ENDIANS)}")
        for name in ("rate", "channels", "bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"{option('input_' + name)}: must be a positive whole number, got {value!r}")
        if self.channels > 1024:
            raise UsageError(f"{option('input_channels')}: at most 1024, got {self.channels}")
        if (encoding, self.bits) not in _RAW_SUBTYPES:
            allowed = sorted(bits for enc, bits in _RAW_SUBTYPES if enc == encoding)
            raise UsageError(
                f"{option('input_bits')}: {encoding} samples of {self.bits} bits are not read; use {allowed}"
            )

    @classmethod
    def from_options(cls, rate, channels, bits, encoding, endian: str | None = None) -> "RawFormat":
        """The description from the options that give it, refusing one with any missing."""
        given = {"input_rate": rate, "input_channels": channels, "input_bits": bits, "input_encoding": encoding}
        missing = [option(name) for name, value in given.items() if value is None]
        if missing:
            raise UsageError(
                f"a raw (headerless) input needs its rate, channel count, bits and encoding: missing "
                f"{', '.join(missing)}"
            )
        if not isinstance(rate, int):
            from fractions import Fraction

            if Fraction(rate).denominator != 1:
                raise UsageError(f"{option('input_rate')}: a raw input's rate is a whole number of Hz, got {rate}")
            rate = int(rate)
        return cls(rate, channels, bits, encoding, endian or "little")

    @property
    def subtype(self) -> str:
        return _RAW_SUBTYPES[(self.encoding, self.bits)]

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.bits // 8

    def open(self, file, name: str) -> sf.SoundFile:
        try:
            return sf.SoundFile(
                file, "r", self.rate, self.channels, self.subtype, self.endian.upper(), "RAW", closefd=True
            )
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioError(f"{name}: cannot read as raw {self.describe()} ({exc})") from None

    def describe(self) -> str:
        return f"{self.encoding} {self.bits}-bit {self.endian}-endian, {self.channels} channel(s) at {self.rate} Hz"


def _open_raw(path: Path, raw: RawFormat) -> AudioSource:
    """A headerless file or standard input, read as ``raw`` describes it."""
    if str(path) == STDIO:
        read_end = _relay_stdin(b"")
        handle = wait_in_thread(lambda: raw.open(read_end, "<stdin>"))
        return AudioSource(Path(STDIO), raw.rate, raw.channels, None, raw.subtype, handle)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror})") from None
    if size % raw.frame_bytes:
        raise AudioError(
            f"{path}: {size} bytes is not a whole number of {raw.frame_bytes}-byte frames "
            f"({raw.describe()}); is the description right?"
        )
    if not size:
        raise AudioError(f"{path}: no audio frames")
    handle = raw.open(str(path), str(path))
    return AudioSource(path, raw.rate, raw.channels, handle.frames, raw.subtype, handle)


def _relay_stdin(head: bytes, fd: int = 0) -> int:
    """A pipe's reading end that gives ``head`` and then the rest of standard input (or of
    ``fd``), copied by a thread (libsndfile reads such a pipe without seeking)."""
    read_end, write_end = os.pipe()

    def relay() -> None:
        try:
            os.write(write_end, head)
            while True:
                block = os.read(fd, 1 << 16)
                if not block:
                    break
                os.write(write_end, block)
        except OSError:
            pass  # the reader stopped early
        finally:
            os.close(write_end)

    threading.Thread(target=relay, daemon=True).start()
    return read_end


TENSOR_SUFFIXES = (".pt", ".pth")  # a torch tensor saved with torch.save: features as a TTS model returns them


def _load_tensor(path: Path) -> np.ndarray:
    """A float tensor from a ``torch.save`` file, loaded with ``weights_only=True`` (no code runs);
    a zip file's storage is mapped, not read whole (blocks are copied from it as they are used)."""
    import zipfile

    import torch

    try:
        value = torch.load(str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:  # malformed pickles raise anything: KeyError, IndexError, RecursionError …
        raise AudioError(f"{path}: not a readable torch tensor file ({unpickling_failure(exc)})") from None
    integer = isinstance(value, torch.Tensor) and not value.is_floating_point() and not value.is_complex()
    if not isinstance(value, torch.Tensor) or not (
        value.is_floating_point() or (integer and value.dtype != torch.bool)
    ):
        what = type(value).__name__ if not isinstance(value, torch.Tensor) else f"a {value.dtype} tensor"
        raise AudioError(f"{path}: holds {what}; expected one float tensor (channels, frames) or integer codes")
    if value.is_meta or value.layout != torch.strided:
        kind = "meta" if value.is_meta else str(value.layout).replace("torch.", "")
        raise AudioError(f"{path}: holds a {kind} tensor, which has no dense values; save a dense one")
    return value.detach().float().numpy() if value.dtype in (torch.bfloat16, torch.float16) else value.detach().numpy()


def open_source(
    path: str | Path,
    input_rate=None,
    expected_channels: int | None = None,
    raw: RawFormat | None = None,
    codes: bool = False,
    latent_channels: int | None = None,
) -> AudioSource:
    """Open an audio file (anything libsndfile reads), or a ``.npy`` or ``.pt`` ``(channels, frames)`` array.

    ``input_rate`` (Hz, an int or a Fraction such as 22050/256 for mel frames) is the rate of
    ``.npy`` inputs; ``expected_channels`` (the stack's) lets a short feature array have more
    channels than frames, and ``(1, channels, frames)`` arrays drop their batch axis. ``raw``
    reads the file (or standard input) as headerless samples it describes; ``codes``: the stack
    reads a codec's integer codes, so integer arrays are taken (and fewer rows padded), and
    ``latent_channels`` is the channel count of the float latent it also takes in their place.
    """
    latent = {"latent_channels": latent_channels}
    if raw is not None:
        if str(path) != STDIO and not Path(path).exists():
            raise AudioError(f"{path}: no such file")
        if Path(path).is_dir():
            raise AudioError(f"{path}: is a folder (pass {option('recursive')} or name the files)")
        return _open_raw(Path(path), raw)
    if str(path) == STDIO:
        return _open_stdin(input_rate, expected_channels, codes=codes, **latent)
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if is_fifo(path):  # a named pipe is opened once and read as standard input is (a probe would hang)
        try:
            with interruptible_wait():  # until a writer opens it
                fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise AudioError(f"{path}: cannot read ({exc.strerror})") from None
        try:
            source = _open_stdin(input_rate, expected_channels, fd, str(path), codes=codes, **latent)
        except BaseException:
            os.close(fd)
            raise
        source._fifo_fd = fd
        return source
    if path.is_dir():
        raise AudioError(f"{path}: is a folder (pass {option('recursive')} or name the files)")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise AudioError(f"{path}: not a readable .npy array: {str(exc).splitlines()[0]}") from None
        return _feature_source(path, array, input_rate, expected_channels, codes=codes, **latent)
    if path.suffix.lower() in TENSOR_SUFFIXES:
        return _feature_source(
            path, _load_tensor(path), input_rate, expected_channels, mapped=False, codes=codes, **latent
        )
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise AudioError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        handle = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        if path.is_file() and not path.stat().st_size:  # a failed download or copy, an unfinished export
            raise AudioError(f"{path}: an empty file (0 bytes)") from None
        detail = str(exc).split(": ", 1)[-1] if ": " in str(exc) else str(exc)
        raise AudioError(f"{path}: not a readable audio file ({detail})") from None
    try:
        _check_not_truncated(handle, path)
    except AudioError:
        handle.close()
        raise
    return AudioSource(path, handle.samplerate, handle.channels, _known_frames(handle), handle.subtype, handle)


COMPUTE_BITS = {"float64": 53}  # significant bits of the computation; float32 (and the half types' outputs): 24


def needs_dither(subtype: str, compute_dtype) -> bool:
    """Whether a PCM ``subtype`` has fewer bits than the computation that feeds it (PCM_16 after
    float32; PCM_24 and PCM_32 too after float64): then its rounding is dithered, as sox does."""
    bits = COMPUTE_BITS.get(np.dtype(compute_dtype).name, 24)
    return subtype in PCM_BITS and PCM_BITS[subtype] < bits


class TpdfDither:
    """Triangular (TPDF) dither of ±1 step, peak: the sum of two independent uniform variables
    of ±½ step, which makes the rounding error's mean and variance independent of the signal
    (no harmonics of a quiet tone; a flat noise floor 4.77 dB above plain rounding's).

    The noise is a function of the sample's place in the file alone: the same input gives the
    same output bits whatever the block sizes (16 random bits per uniform, one stream for the
    interleaved ``[frames, channels]`` samples, a fixed seed, as sox's repeatable mode).
    """

    def __init__(self, seed: int = 0):
        self._bits = np.random.PCG64(seed)
        self._left = np.empty(0, dtype=np.uint16)  # words drawn but not used by the last block

    def _words(self, count: int) -> np.ndarray:
        needed = count - self._left.size
        fresh = self._bits.random_raw(max(0, -(-needed // 4))).view(np.uint16) if needed > 0 else self._left[:0]
        words = np.concatenate([self._left, fresh]) if self._left.size else fresh
        self._left = words[count:].copy()
        return words[:count]

    def noise(self, shape: tuple, dtype) -> np.ndarray:
        """TPDF noise in steps for a ``[channels, frames]`` block, in (-1, 1)."""
        channels, frames = shape
        words = self._words(2 * channels * frames).reshape(frames, channels, 2)
        noise = np.subtract(words[..., 0], words[..., 1], dtype=dtype)  # -65535 .. 65535, exact in float32
        noise *= np.dtype(dtype).type(1.0 / 65536)
        return noise.T


class AudioSink:
    """Writes ``[channels, n]`` float blocks, clamping integer outputs to [-1, 1].

    Clipped samples are counted; with ``clip="error"`` the first one raises
    :class:`ClippingError` (the caller discards the temporary file). PCM outputs are rounded to
    the nearest step here and handed to libsndfile as integers: its own float→PCM conversion
    rounds down, a −½ LSB bias on every sample that is not already on a step (about −100 dBFS
    at 16 bits after an interpolator that keeps the original samples).
    """

    def __init__(
        self,
        path: Path,
        rate: int,
        channels: int,
        fmt: str,
        subtype: str,
        clip: str = "clamp",
        label: str | None = None,
        gain: float = 1.0,
        dither: bool = False,
        tags: dict[str, str] | None = None,
    ):
        self._counters(subtype, clip, label or str(path), gain, dither)
        try:
            self._handle = sf.SoundFile(str(path), "w", rate, channels, subtype, format=fmt)
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioError(f"{self.label}: cannot write {fmt}/{subtype}: {exc}") from None
        self._tag(tags)

    def _tag(self, tags: dict[str, str] | None) -> None:
        """Copy text tags into the output before its first samples, where its format holds them
        (FLAC, Ogg, WAV's INFO chunk, AIFF, CAF); a tag the format refuses is left out."""
        for name, value in (tags or {}).items():
            with suppress(sf.LibsndfileError, RuntimeError, AttributeError, TypeError, ValueError):
                setattr(self._handle, name, value)

    @property
    def encodes(self) -> bool:
        """Writing costs encoding (a compressed format), not just copying samples."""
        return _coded(self._handle)

    def _counters(self, subtype: str, clip: str, label: str, gain: float = 1.0, dither: bool = False) -> None:
        self.clip, self.label, self.gain = clip, label, gain
        self.clamps = subtype not in FLOAT_SUBTYPES
        self.steps = 2.0 ** (PCM_BITS[subtype] - 1) if subtype in PCM_BITS else None
        self.dither = TpdfDither() if dither and self.steps is not None else None
        self.clipped = 0
        self.non_finite = 0  # NaN/Inf output samples (an overflow): counted, refused under clip="error"
        self.frames = 0

    def write(self, block: np.ndarray) -> None:
        if not block.shape[-1]:
            return
        steps = self._in_range_steps(block)
        self._write(steps if steps is not None else self._prepare(block))
        self.frames += block.shape[-1]

    def _in_range_steps(self, block: np.ndarray) -> np.ndarray | None:
        """The common case in fewer passes: a PCM output whose samples are finite and round to
        in-range steps (nothing to count, clamp or replace) as ``[channels, frames]`` steps, or
        None. 10 min of stereo PCM_16 out: 0.39 s → 0.2 s of CPU time."""
        if self.steps is None or self.gain != 1.0:
            return None
        low, high = block.min(), block.max()
        if not (low >= -1.0 and high < (self.steps - 0.5) / self.steps):  # NaN fails both
            return None
        wide = self.steps > 2**23 or block.dtype == np.float64
        steps = np.multiply(block, self.steps, dtype=np.float64 if wide else np.float32)
        if self.dither is not None:
            return self._dithered(steps)
        return np.rint(steps, out=steps)

    def _dithered(self, steps: np.ndarray) -> np.ndarray:
        """``steps`` plus TPDF noise, rounded, and kept in range: a full-scale sample the
        noise pushes past the largest step is held there (not counted as clipped)."""
        steps += self.dither.noise(steps.shape, steps.dtype)
        np.rint(steps, out=steps)
        return np.clip(steps, -self.steps, self.steps - 1, out=steps)

    def _prepare(self, block: np.ndarray) -> np.ndarray:
        """Apply the gain, count clipped and non-finite samples, clamp, and round PCM to its steps."""
        if self.gain != 1.0:
            block = block * self.gain
        finite = np.isfinite(block)
        if not finite.all():
            bad = int(block.size - np.count_nonzero(finite))
            if self.clip == "error":
                raise ClippingError(
                    f"{self.label}: output has {bad} non-finite samples (NaN/Inf: an overflow) in one block; refused"
                )
            self.non_finite += bad
            if self.clamps:  # NaN → 0, ±Inf → the extremes; float outputs keep them as computed
                block = np.nan_to_num(block, nan=0.0, posinf=1.0, neginf=-1.0)
        if self.clamps:
            over = int(np.count_nonzero(np.abs(block) > 1.0))
            if over:
                if self.clip == "error":
                    raise ClippingError(
                        f"{self.label}: output would clip ({over} samples outside [-1, 1] in one "
                        f"block); rerun with {option('clip', 'clamp')} or {option('subtype', 'FLOAT')}"
                    )
                self.clipped += over
                if self.steps is None:  # PCM is clamped by its rounding below
                    block = np.clip(block, -1.0, 1.0)
        if self.steps is not None:  # round to nearest step: integers of the subtype, as floats
            # float32 holds every step exactly up to 24 bits; PCM_32 needs float64
            scaled = np.multiply(block, self.steps, dtype=np.float64 if self.steps > 2**23 else None)
            if self.dither is not None:
                return self._dithered(scaled)
            np.rint(scaled, out=scaled)
            np.clip(scaled, -self.steps, self.steps - 1, out=scaled)
            block = scaled
        return block

    def _integers(self, steps: np.ndarray) -> np.ndarray:
        """``[channels, frames]`` PCM steps as the interleaved ``[frames, channels]`` int16/int32
        samples libsndfile stores without converting them (narrower subtypes take the top bits):
        no float rounding of its own, and 2-3x faster."""
        bits = int(np.log2(self.steps)) + 1
        width, dtype = (16, np.int16) if bits <= 16 else (32, np.int32)
        if bits < width:
            steps = steps * float(1 << (width - bits))
        return interleaved(steps, dtype)

    def _write(self, block: np.ndarray) -> None:
        try:
            self._handle.write(self._integers(block) if self.steps is not None else block.T)
        except (sf.LibsndfileError, RuntimeError, OSError, AssertionError) as exc:
            raise AudioError(
                f"{self.label}: write failed ({str(exc).strip() or 'short write'}); is the disk full?"
            ) from None

    def close(self) -> None:
        try:
            self._handle.close()
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise AudioError(f"{self.label}: write failed ({exc}); is the disk full?") from None


class _AppendOnly:
    """A file for libsndfile that forwards what it appends to a stream and drops rewrites.

    An encoder seeks back at the end to fill in lengths (FLAC's STREAMINFO); on a pipe those
    bytes are gone, and the stream's header keeps saying "length unknown", which is valid.
    """

    def __init__(self, out):
        self.out, self.position, self.size = out, 0, 0
        self.error: OSError | None = None  # the stream's first failure: told by the sink, not by cffi

    def write(self, data) -> int:
        if self.error is not None:
            return 0
        data = bytes(data)
        try:
            if self.position >= self.size:
                self.out.write(data)
                self.size += len(data)
            elif self.position + len(data) > self.size:  # a rewrite that runs past the end: send the rest
                self.out.write(data[self.size - self.position :])
                self.size = self.position + len(data)
        except OSError as exc:  # raised here, it would be printed by cffi as a traceback
            self.error = exc
            return 0
        self.position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = offset if whence == 0 else (self.position + offset if whence == 1 else self.size + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, size: int = -1) -> bytes:
        return b""


class StdoutSink(AudioSink):
    """Writes a stream to standard output (or ``out``, a named pipe or device, shown as
    ``label``), which cannot seek back to fix a header.

    ``wav``: a RIFF header with the exact sizes when ``frames`` (the output's length) is known,
    else sizes of 0xFFFFFFFF (unknown, as sox and ffmpeg read pipes), then interleaved
    little-endian samples; ``raw``: the samples
    alone (interleaved, little-endian, signed PCM or IEEE float per the subtype); ``flac``: a
    FLAC stream (libsndfile). Clipping, rounding and counting are the file sink's.
    """

    _DTYPES = {"PCM_16": "<i2", "PCM_32": "<i4", "FLOAT": "<f4", "DOUBLE": "<f8"}

    def __init__(
        self,
        container: str,
        rate: int,
        channels: int,
        subtype: str,
        clip: str = "clamp",
        frames: int | None = None,
        gain: float = 1.0,
        dither: bool = False,
        tags: dict[str, str] | None = None,
        out=None,
        label: str = "<stdout>",
    ):
        self.container, self.subtype, self.channels = container, subtype, channels
        if container != "flac" and subtype not in (*self._DTYPES, "PCM_24"):
            named = "-" if out is None else label
            raise UsageError(
                f"{option('output', named)}: a {container} stream holds PCM_16, PCM_24, PCM_32, FLOAT or DOUBLE, not {subtype}"
            )
        if out is None:
            sys.stdout.flush()
            out = sys.stdout.buffer
        self._out = out
        if container == "flac":
            self._counters(subtype, clip, label, gain, dither)
            self._stream = _AppendOnly(out)
            try:
                self._handle = sf.SoundFile(self._stream, "w", rate, channels, subtype, format="FLAC")
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                self._raise_stream_error()
                raise AudioError(f"{label}: cannot write FLAC/{subtype}: {exc}") from None
            self._tag(tags)
            return
        self._counters(subtype, clip, label, gain, dither)
        if container == "wav":
            bits = {"PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32, "DOUBLE": 64}[subtype]
            tag = 3 if subtype in FLOAT_SUBTYPES else 1
            align = channels * bits // 8
            data = frames * align if frames is not None and frames * align < 0xFFFFFFFF - 36 else 0xFFFFFFFF
            riff = data + 36 if data != 0xFFFFFFFF else 0xFFFFFFFF
            # sent with the first samples: a reader that sniffs the format (sox -) may look at
            # the header before the rest arrives and give up if it comes alone
            self._pending = (
                b"RIFF"
                + struct.pack("<I", riff)
                + b"WAVEfmt "
                + struct.pack("<IHHIIHH", 16, tag, channels, rate, rate * align, align, bits)
                + b"data"
                + struct.pack("<I", data)
            )

    _pending = b""  # the WAV header, until the first samples go with it
    _stream = None  # the FLAC encoder's append-only view of standard output

    def _failed(self, exc: OSError) -> AudioError:
        if isinstance(exc, BrokenPipeError):
            return AudioError(f"{self.label}: the reading end of the pipe closed")
        return AudioError(f"{self.label}: write failed ({exc.strerror or exc})")

    def _raise_stream_error(self) -> None:
        if self._stream is not None and self._stream.error is not None:
            raise self._failed(self._stream.error) from None

    def _send(self, data: bytes) -> None:
        data, self._pending = self._pending + data, b""
        try:
            self._out.write(data)
        except OSError as exc:
            raise self._failed(exc) from None

    def _write(self, block: np.ndarray) -> None:
        if self.container == "flac":
            try:
                super()._write(block)
            except AudioError:
                self._raise_stream_error()
                raise
            self._raise_stream_error()
            return
        if self.subtype == "PCM_24":  # whole steps as int32, each sample's low three bytes
            data = interleaved(block, "<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
        else:  # PCM steps (already whole) or floats, in the stream's sample type
            data = interleaved(block, self._DTYPES[self.subtype]).tobytes()
        self._send(data)

    def close(self) -> None:
        if self.container == "flac":
            try:
                super().close()
            except AudioError:
                self._raise_stream_error()
                raise
            self._raise_stream_error()
            try:
                self._out.flush()
            except OSError as exc:
                raise self._failed(exc) from None
            return
        if self._pending:
            self._send(b"")
        try:
            self._out.flush()
        except OSError as exc:
            raise self._failed(exc) from None
