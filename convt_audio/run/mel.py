"""``convt-audio mel``: audio files' features, as a config's ``features:`` recipe makes them
(:mod:`convt_audio.io.features`), each into a ``.npy`` written whole or not at all, with the file
guarantees of ``run``: atomic writes, a free-space check, the memory budget, the non-finite
policy, standard input, and a stop at the next block when the caller's ``cancel`` is set."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

import numpy as np

from ..core.errors import AudioError, UsageError, option
from ..io.features import MelStream

_HEADER_BYTES = 128  # an .npy v1.0 header padded to this size, so that it can be rewritten in place


def npy_header(shape: tuple[int, ...]) -> bytes:
    """A fixed-size ``.npy`` (v1.0) header for a column-major (Fortran-ordered) little-endian
    float32 array: an ``(n_mels, frames)`` array stored frame by frame, so that frames are
    written as they are computed (``np.load`` gives the same values as for a C-ordered file)."""
    text = repr({"descr": "<f4", "fortran_order": True, "shape": tuple(shape)})
    room = _HEADER_BYTES - 10 - 1
    if len(text) > room:  # pragma: no cover - shapes of two ints fit easily
        raise AudioError(f"shape {shape} does not fit the .npy header")
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", _HEADER_BYTES - 10) + text.ljust(room).encode() + b"\n"


def default_mel_name(source: Path) -> Path:
    return source.with_name(f"{source.stem}.mel.npy")


def plan_mel(inputs: list, output) -> list[tuple[Path, Path]]:
    """``(input, output)`` pairs: one input with ``-o FILE``; several (or ``-o DIR/``) into a
    folder as ``<stem>.mel.npy``; without ``-o``, beside each input. ``-`` needs ``-o``."""
    import os

    from ..io.audio import STDIO

    sources = [Path(p) for p in inputs]
    if not sources:
        raise UsageError("no inputs given")
    if any(str(s) == STDIO for s in sources) and (len(sources) > 1 or output is None):
        raise UsageError(f"- (standard input) must be the only input, with {option('output', 'FILE')}")
    for source in sources:
        if str(source) != STDIO and source.is_dir():
            raise UsageError(f"{source}: is a folder; mel takes audio files (name them)")
    if output is None:
        return [(s, default_mel_name(s)) for s in sources]
    text, folder = str(output), Path(output)
    if len(sources) > 1 or folder.is_dir() or text.endswith(("/", os.sep)):
        if folder.exists() and not folder.is_dir():
            raise UsageError(f"{option('output', output)}: is a file; several inputs need a folder")
        pairs = [(s, folder / default_mel_name(Path(s.name)).name) for s in sources]
        seen: dict = {}
        for source, dest in pairs:
            if dest in seen:
                raise UsageError(f"{seen[dest]} and {source} would both write {dest}")
            seen[dest] = source
        return pairs
    if folder.suffix.lower() != ".npy":
        raise UsageError(f"{option('output', folder)}: features are written as .npy")
    return [(sources[0], folder)]


def check_recipe_memory(config) -> None:
    """Refuse a recipe whose filterbank and STFT blocks exceed the memory budget (before any work)."""
    from ..core.process import MEMORY_ENV, memory_budget, size_text

    recipe = config.features
    if recipe is None:
        raise UsageError(f"{config.name}: declares no features: section, so there is no recipe to compute")
    needed, budget = recipe.memory_bytes(), memory_budget()
    if needed > budget:
        raise UsageError(
            f"features: n_mels {recipe.n_mels} × n_fft {recipe.n_fft} needs {size_text(needed)}, over the memory "
            f"budget of {size_text(budget)} (${MEMORY_ENV} sets it)"
        )


def write_mel(
    source,
    dest,
    config,
    overwrite: bool = False,
    non_finite: str = "error",
    cancel: threading.Event | None = None,
) -> dict:
    """The features ``config`` decodes, computed from an audio file (or ``-``) into a ``(n_mels,
    frames)`` float32 ``.npy`` written whole or not at all. Several channels are averaged; an
    input at another rate is first resampled to the recipe's (alias-free, as ``run -r``).

    Raises :class:`AudioError` for a bad input (the output is never left partial), and
    :class:`~convt_audio.run.filestream.Cancelled` when ``cancel`` is set between blocks.
    """
    from ..io.atomic import atomic_path
    from ..io.audio import STDIO, TENSOR_SUFFIXES, open_source
    from .filestream import Cancelled, check_finite

    recipe = config.features
    check_recipe_memory(config)
    source, dest = Path(source), Path(dest)
    if dest.suffix.lower() != ".npy":
        raise UsageError(f"{option('output', dest)}: features are written as .npy")
    if source.suffix.lower() in (".npy", *TENSOR_SUFFIXES):
        raise UsageError(f"{source}: is already a feature array; mel takes audio")
    if dest.exists():
        if str(source) != STDIO and dest.resolve() == source.resolve():
            raise UsageError(f"{dest}: is the input; an input is never overwritten")
        if not overwrite:
            raise AudioError(f"{dest}: already exists (pass {option('overwrite')})")
    with open_source(source) as audio:
        resampler = None
        if audio.rate != recipe.sample_rate:
            from ..model.engines import build_engine
            from ..model.resamplers import resampler_for

            design, params = resampler_for(audio.rate, recipe.sample_rate)
            resampler = build_engine(design, params, "cpu", "float32").open_stream(1)
        planned = None
        if audio.frames is not None:  # a stream's length shows at its end
            samples = audio.frames if resampler is None else resampler.engine.output_frames(audio.frames)
            planned = recipe.frames_for(samples)
            if planned < 1 or samples <= recipe.pad:
                raise AudioError(
                    f"{source}: too short for one mel frame ({samples} samples at {recipe.sample_rate} Hz)"
                )
            _check_space(dest, recipe.n_mels * planned * 4 + _HEADER_BYTES)
        stream = MelStream(recipe)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AudioError(f"{dest}: cannot create its folder {dest.parent} ({exc.strerror})") from None
        with atomic_path(dest, overwrite=overwrite) as tmp:
            done = 0
            try:
                with open(tmp, "r+b") as out:
                    out.write(npy_header((recipe.n_mels, planned or 0)))

                    def put(block: np.ndarray) -> None:
                        nonlocal done
                        if block.shape[1]:
                            if not np.isfinite(block).all():
                                frame = done + int(np.argwhere(~np.isfinite(block))[0][1])
                                raise AudioError(
                                    f"{source}: features non-finite (NaN/Inf) at frame {frame}: check the "
                                    f"recipe's clamp and stats"
                                )
                            out.write(np.ascontiguousarray(block.T, dtype="<f4").tobytes())  # frame by frame
                            done += block.shape[1]

                    read = zeroed = 0
                    blocks = audio.blocks(1 << 16)
                    if audio.is_stream:  # a stalled pipe is waited for where signals are seen
                        from .filestream import _prefetch

                        blocks = _prefetch(blocks, threading.Event(), cancel=cancel, source=audio)
                    for block in blocks:
                        if cancel is not None and cancel.is_set():
                            raise Cancelled(str(source))
                        if not audio.always_finite:
                            zeroed += check_finite(block, read, audio.path, non_finite)
                        read += block.shape[-1]
                        mono = block.mean(axis=0, dtype=np.float32)
                        if resampler is not None:
                            mono = resampler.push(mono[None, None])[0, 0]
                        put(stream.push(mono))
                    if not read:
                        raise AudioError(f"{source}: no audio frames")
                    if resampler is not None:
                        put(stream.push(resampler.flush()[0, 0]))
                    try:
                        put(stream.flush())
                    except Exception as exc:  # too short: known only now for a stream
                        raise AudioError(f"{source}: {exc.args[0] if exc.args else exc}") from None
                    out.seek(0)
                    out.write(npy_header((recipe.n_mels, done)))  # the same size: rewritten in place
            except OSError as exc:
                raise AudioError(f"{dest}: write failed ({exc.strerror or exc}); is the disk full?") from None
            if planned is not None and done != planned:  # pragma: no cover - the recipe's arithmetic
                raise AudioError(f"{source}: {done} mel frames computed, {planned} planned")
    return {
        "input": str(source),
        "output": str(dest),
        "frames": done,
        "n_mels": recipe.n_mels,
        "channels": audio.channels,  # averaged into one where several
        "input_rate": audio.rate,  # resampled to the recipe's where it differs
        "non_finite_zeroed": zeroed,  # NaN/Inf samples replaced with 0 (--non-finite zero)
    }


def mel_summary(facts: dict, recipe) -> str:
    """What :func:`write_mel` made of a file, in words: the features' size, what was done to the
    audio first (NaN/Inf samples zeroed, its channels averaged, its rate resampled) and the recipe."""
    made = []
    if facts.get("non_finite_zeroed"):
        made.append(f"{facts['non_finite_zeroed']} NaN/Inf samples replaced with 0")
    if facts["channels"] > 1:
        made.append(f"its {facts['channels']} channels averaged")
    if facts["input_rate"] != recipe.sample_rate:
        made.append(f"resampled from {facts['input_rate']} Hz")
    first = f" ({', '.join(made)})" if made else ""
    return f"{facts['n_mels']} × {facts['frames']} frames{first}; {recipe.describe()}"


def _check_space(dest: Path, needed: int) -> None:
    from ..core.process import size_text
    from ..io.atomic import free_space

    room = free_space(dest)
    if room is None:
        return
    folder, free = room
    if needed > free:
        raise AudioError(f"{dest}: the features need {size_text(needed)}, but {folder} has {size_text(free)} free")


def mel_batch(pairs, config, overwrite: bool, non_finite: str, cancel: threading.Event, done, failed) -> int:
    """Every ``(input, output)`` pair through :func:`write_mel`, a failure never stopping the
    others; ``done(source, dest, facts)`` and ``failed(source, exc)`` tell the caller. Stops at
    the next block when ``cancel`` is set. Returns the number of files that failed."""
    from ..core.errors import ConvtAudioError
    from .filestream import Cancelled

    failures = 0
    for source, dest in pairs:
        if cancel.is_set():
            break
        try:
            facts = write_mel(source, dest, config, overwrite, non_finite, cancel)
        except Cancelled:
            break
        except Exception as exc:  # noqa: BLE001 - this file's failure, told in one line; the rest still run
            failures += 1
            if not isinstance(exc, ConvtAudioError):
                exc = AudioError(f"{source}: {type(exc).__name__}: {exc}")
            failed(source, exc)
            continue
        done(source, dest, facts)
    return failures
