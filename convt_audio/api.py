"""The Python API: arrays in, arrays out, with the engines and guarantees of ``convt-audio run``.

import convt_audio
y = convt_audio.resample(x, 44100, 48000)                 # (frames,) or (frames, channels)
model = convt_audio.load("hifigan-v1", "g_02500000")      # model(mel) -> audio
stream = model.stream()                                   # push(chunk) / flush() / reset()
pool = model.pool(); a, b = pool.open(), pool.open()      # pool.push({a: x, b: z}): one batch
outputs = list(model.map(arrays, slots=16))               # many arrays, continuously batched
record = convt_audio.convert("in.wav", "out.wav", rate=48000)   # one file, as run writes it
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator, Mapping, NamedTuple

import numpy as np

from .core.errors import UsageError
from .core.process import tune_process

_INTEGER_SCALES = {np.dtype(np.int8): 2.0**7, np.dtype(np.int16): 2.0**15, np.dtype(np.int32): 2.0**31}


class _Given(NamedTuple):
    """What an input array was, to give the output back alike."""

    ndim: int
    is_torch: bool
    integer: np.dtype | None  # int8/16/32 samples: scaled to [-1, 1) in, rounded and clipped back out
    device: str | None = None  # a torch tensor's device other than the CPU: the output goes back there


def _as_array(
    x, what: str, wide: bool = False, codes: bool = False, latent: int | None = None
) -> tuple[np.ndarray, _Given]:
    """``x`` as a float NumPy array (float64 stays float64; int32 becomes float64, as do the
    others with ``wide``), and what it was. Integer samples are read on their full scale, as
    soxr and soundfile read them — unless they are ``codes`` (a codec's), taken as they are; a
    codes stack takes floats only as its ``latent``-channel latent (DAC's z)."""
    is_torch = type(x).__module__.startswith("torch")
    device = None
    if is_torch:
        import torch

        device = str(x.device) if x.device.type != "cpu" else None
        if x.is_sparse or x.layout != torch.strided:
            raise UsageError(f"{what}: a sparse torch tensor; pass a dense one (x.to_dense())")
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        x = x.detach().cpu().numpy()
    if isinstance(x, np.ma.MaskedArray):  # np.asarray would read the values under the mask
        masked = int(np.ma.count_masked(x))
        if masked:
            raise UsageError(f"{what}: a masked array with {masked} masked values; fill them first (x.filled(0))")
        x = x.data
    try:
        array = np.asarray(x)
    except ValueError as exc:  # a ragged list
        raise UsageError(f"{what}: not an array of numbers ({str(exc).splitlines()[0]})") from None
    integer = None
    if codes and array.dtype.kind in "iu":
        return array.astype(np.float64), _Given(array.ndim, is_torch, None, device)
    if codes and (array.ndim < 2 or array.shape[-2] != latent):
        also = f", or its {latent}-channel latent" if latent else ""
        raise UsageError(
            f"{what}: a {array.dtype} array of shape {array.shape}; this stack decodes a codec's integer codes "
            f"(codebooks, frames){also}"
        )
    if array.dtype.kind in "iu":
        if array.dtype not in _INTEGER_SCALES:
            raise UsageError(
                f"{what}: {array.dtype} samples are not read; give int8, int16, int32 (scaled to their full scale) "
                f"or float arrays"
            )
        integer = array.dtype
        wide = wide or array.dtype == np.int32  # float32 holds 24 of int32's 31 bits
        array = np.multiply(array, 1.0 / _INTEGER_SCALES[integer], dtype=np.float64 if wide else np.float32)
    elif array.dtype.kind != "f":
        raise UsageError(f"{what}: expected numbers, got an array of {array.dtype}")
    elif array.dtype != np.float64:
        array = array.astype(np.float32)
    if array.size and not np.isfinite(array).all():
        raise UsageError(f"{what}: holds NaN or Inf values")
    return array, _Given(array.ndim, is_torch, integer, device)


def _give_back(out: np.ndarray, given: _Given):
    """The result as the input was given: integers rounded and clipped to their type (as soxr
    returns them), a torch tensor for a tensor, on the tensor's device."""
    if given.integer is not None:
        scale = _INTEGER_SCALES[given.integer]
        steps = np.rint(np.multiply(out, scale, dtype=np.float64))
        out = np.clip(steps, -scale, scale - 1, out=steps).astype(given.integer)
    if given.is_torch:
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(out))
        return tensor if given.device is None else tensor.to(given.device)
    return out


def _rate(value, name: str, whole: str | None = None) -> Fraction | int:
    """A rate argument (Hz, ``"48k"``; with ``whole``, the noun of a whole number of Hz), a
    :class:`UsageError` naming ``name`` if it is none."""
    from .core.errors import ConfigError
    from .model.config import parse_rate, whole_rate

    try:
        return parse_rate(value, name) if whole is None else whole_rate(value, name, whole)
    except ConfigError as exc:
        raise UsageError(exc.args[0]) from None


def _flag(value, name: str) -> bool:
    """A yes/no parameter: ``True`` or ``False`` only (``"no"`` is truthy, and ``overwrite="no"``
    would overwrite)."""
    if not isinstance(value, (bool, np.bool_)):
        raise UsageError(f"{name}: must be True or False, got {value!r}")
    return bool(value)


def _stream_all(engine, data: np.ndarray) -> np.ndarray:
    """``[B, C, n]`` through a fresh stream of ``engine`` in its preferred blocks (as two halves
    at once where that applies: :mod:`convt_audio.model.split`)."""
    from .core.process import memory_budget
    from .model.split import SplitStream, part_block, split_plan

    size = engine.preferred_chunk()
    plan = split_plan(engine, data.shape[-1], data.shape[0], size, memory_budget())
    if plan:
        size = part_block(engine, size)
    stream = SplitStream(engine, data.shape[0], *plan) if plan else engine.open_stream(data.shape[0])
    parts = [stream.push(data[..., i : i + size]) for i in range(0, data.shape[-1], size)]
    parts.append(stream.flush())
    return np.concatenate(parts, axis=-1)


def _frames_axis(array: np.ndarray, axis: int | None) -> int:
    """The axis that holds the frames: ``axis`` if given, else the layout rule stated once —
    ``(frames,)`` or ``(frames, channels)`` as soundfile and soxr have them; a 2-D array with
    more "channels" than frames is ``(channels, frames)`` (librosa's, torchaudio's) given the
    other way round, so it is refused with the hint, never guessed; so is a square one (two or
    more of each), which either layout fits."""
    if axis is not None:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -array.ndim <= axis < array.ndim:
            raise UsageError(f"axis: {axis!r} is not an axis of an array of shape {array.shape}")
        return int(axis) % array.ndim
    if array.ndim == 1:
        return 0
    if array.ndim == 2 and (array.shape[1] < array.shape[0] or array.shape == (1, 1)):
        return 0
    if array.ndim == 2 and array.shape[0] == array.shape[1]:
        raise UsageError(
            f"x: shape {array.shape} fits (frames, channels) and (channels, frames) alike; pass axis=0 "
            f"for (frames, channels) or axis=-1 for (channels, frames)"
        )
    if array.ndim == 2:
        raise UsageError(
            f"x: shape {array.shape} has more channels than frames as (frames, channels); pass axis=-1 for "
            f"(channels, frames) arrays (librosa's, torchaudio's layout), or axis=0 if it is what it says"
        )
    raise UsageError(f"x: shape {array.shape}: name the frames' axis (axis=-1 for (..., frames) arrays)")


def resample(
    x, sr_in: int | str, sr_out: int | str, *, axis: int | None = None, allow_aliasing: bool = False
) -> np.ndarray:
    """Resample ``x`` from ``sr_in`` to ``sr_out`` Hz: the resampler and samples of ``run -r``.

    Parameters
    ----------
    x : array (NumPy, a list, or a torch tensor): ``(frames,)`` or ``(frames, channels)`` as
        ``soundfile.read`` and python-soxr have them; ``axis`` names the frames' axis of another
        layout (``axis=-1`` for ``(channels, frames)``). A 2-D array with more channels than
        frames is refused without ``axis`` (it is almost surely ``(channels, frames)``), and so is a
        square one.
    sr_in, sr_out : rates in Hz (whole numbers; ``"48k"`` as on the command line).
    axis : the frames' axis; None for the rule above.
    allow_aliasing : the older band edges (0.45/0.55 of the lower rate) instead of alias-free ones.

    Returns
    -------
    The resampled array in the same layout, ``⌈frames·sr_out/sr_in⌉`` frames, zero delay: the
    input's integer type for int8/16/32 input (rounded and clipped, as soxr returns it), float64
    for float64 input, else float32; a torch tensor for a tensor.
    """
    from .model.engines import build_engine
    from .model.resamplers import resampler_for

    tune_process()
    rate_in, rate_out = _rate(sr_in, "sr_in", "a sample rate"), _rate(sr_out, "sr_out", "a sample rate")
    allow_aliasing = _flag(allow_aliasing, "allow_aliasing")
    array, given = _as_array(x, "x")
    if array.ndim == 0:
        raise UsageError("x: expected an array of frames, got a scalar")
    if array.size == 0:
        raise UsageError(f"x: has no frames (an empty array of shape {array.shape})")
    frames_axis = _frames_axis(array, axis)
    moved = np.moveaxis(array, frames_axis, -1)  # [..., frames]
    if rate_in == rate_out:
        return _give_back(array.copy(), given)
    config, params = resampler_for(rate_in, rate_out, allow_aliasing=allow_aliasing)
    dtype = "float64" if array.dtype == np.float64 else "float32"
    engine = build_engine(config, params, "cpu", dtype)
    lead = moved.shape[:-1]
    flat = np.ascontiguousarray(moved.reshape(-1, 1, moved.shape[-1]))
    engine.check_frames(flat.shape[-1])
    out = _stream_all(engine, flat)
    return _give_back(np.moveaxis(out.reshape(*lead, out.shape[-1]), -1, frames_axis), given)


class Model:
    """A config's stack with its weights on its engine: ``model(x)`` for a whole array,
    ``model.stream()`` for live input.

    Arrays are laid out as torch modules take them: ``(channels, frames)`` or ``(batch,
    channels, frames)``, NumPy or torch in, the same out (int8/16/32 samples scaled to their
    full scale and given back in their type). A stack whose first layer takes one channel runs
    each channel of a multi-channel array on its own, as ``run`` does (``channels: auto``):
    ``(2, n)`` in gives ``(2·out_channels, m)``.
    """

    def __init__(self, config, engine):
        self.config, self.engine = config, engine

    @property
    def in_channels(self) -> int:
        return self.engine.in_channels

    @property
    def out_channels(self) -> int:
        return self.engine.out_channels

    @property
    def rate_factor(self) -> Fraction:
        return self.config.rate_factor()

    def output_frames(self, frames: int) -> int:
        return self.engine.output_frames(frames)

    @property
    def takes_codes(self) -> bool:
        """Whether the stack reads a codec's integer codes (``(codebooks, frames)``)."""
        return getattr(self.config.layers[0], "takes_codes", False)

    def __call__(self, x):
        """The whole array through the stack: ``(channels, frames)`` or ``(batch, channels,
        frames)`` in, the same layout out."""
        array, given = self._given(x, "x")
        batched, per_channel = self._batched(array, "x")
        self.engine.check_frames(batched.shape[-1])
        return _give_back(self._unbatched(_stream_all(self.engine, batched), array.shape, per_channel), given)

    def stream(self, *, graphs: bool = False) -> Stream:
        """A live stream: ``push(chunk)`` returns the frames now final, ``flush()`` the rest;
        the frames joined equal ``model(x)`` whatever the chunk sizes.

        ``graphs``: once the stream is steady, each push shape is traced once and replayed as
        one step (:mod:`convt_audio.model.graphs`): on CUDA a CUDA graph, one launch a push
        instead of one per kernel; on the CPU a TorchScript graph, without the Python between
        the operations (HiFi-GAN V1, 1 thread: 10-30 % less a small push; docs/benchmarks.md). The
        same frames, to float rounding. A push shape is traced at its third push, once per
        model (HiFi-GAN V1: 3.5-7 s on the CPU): the model's later streams and a stream's
        later signals (:meth:`Stream.reset`) replay it from their first steady push."""
        graphs = _flag(graphs, "graphs")
        backend = ("cuda" if self.engine.device.startswith("cuda") else "script") if graphs else None
        stream = Stream(self, backend)
        if graphs:  # refused now, not at the first push: a layer no captured step can hold
            _graphed(self.engine.open_live_stream(1), backend, self.engine)
        return stream

    def pool(self, *, wait: float | None = None) -> Pool:
        """Many live streams (a server's sessions) whose pushes run as one batch where they line
        up: ``pool.push({a: chunk_a, b: chunk_b})``. Each stream's frames equal its own
        :meth:`stream`'s, whatever the others do.

        With ``wait`` (seconds), each stream is pushed from a thread of its own instead (a
        server's session handlers): ``a.push(chunk)`` waits until every open stream of the pool
        has a push waiting, or ``wait`` seconds have passed, and the pushes waiting then run as
        one batch."""
        if wait is not None and (isinstance(wait, bool) or not isinstance(wait, (int, float)) or not wait >= 0):
            raise UsageError(f"wait: must be a number of seconds, 0 or more, got {wait!r}")
        return Pool(self, wait)

    def map(self, arrays: Iterable, *, slots: int | None = None, block: int | None = None) -> Iterator:
        """``model(x)`` for each array, in order, ``slots`` of them streamed at once as one batch
        in blocks of ``block`` frames (default: the engine's); a finished array's slot goes to
        the next (continuous batching): one forward a block for all of them, not one per array.

        ``slots`` defaults to 16 on a GPU, where each forward launches every kernel whatever its
        batch; on the CPU to none — each array runs as ``model(x)`` does — because whole arrays
        already fill the cores there (16 HiFi-GAN V1 inputs of 3-6 s through 4 and 16 slots took
        0.98x and 0.94x a loop of ``model(x)``; docs/benchmarks.md). Give ``slots`` to batch
        anyway. Live input from many sessions pays on the CPU too: :meth:`pool`."""
        from .model.pool import SLOTS_ON_GPU, StreamPool

        for name, value in (("slots", slots), ("block", block)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise UsageError(f"{name}: must be a positive whole number, got {value!r}")
        if slots is None and self.engine.device.startswith("cuda"):
            slots = SLOTS_ON_GPU
        layouts: dict[int, _Layout] = {}

        def items() -> Iterator[np.ndarray]:
            for index, x in enumerate(arrays):
                array, given = self._given(x, f"arrays[{index}]")
                batched, per_channel = self._batched(array, f"arrays[{index}]")
                self.engine.check_frames(batched.shape[-1])
                layouts[index] = _Layout(array.shape[:-1], per_channel, given)
                yield batched

        if slots is None:
            outs = (_stream_all(self.engine, batched) for batched in items())
        else:
            outs = StreamPool(self.engine).map(items(), slots, block or self.engine.preferred_chunk())
        for index, out in enumerate(outs):
            yield layouts.pop(index).give_back(self, out)

    def _given(self, x, what: str) -> tuple[np.ndarray, _Given]:
        wide = self.engine.dtype == np.float64
        return _as_array(x, what, wide, self.takes_codes, self.config.latent_channels)

    def _batched(self, array: np.ndarray, what: str, pushed: bool = False) -> tuple[np.ndarray, bool]:
        """``[batch, in_channels, frames]`` for the engine, and whether each channel of the
        array became a batch item of its own (a one-channel stack on a multi-channel array).
        ``what`` names the array in errors (``x``, ``chunk``, ``arrays[3]``); ``pushed``: a
        stream's chunk, which may hold no frames (nothing new yet)."""
        from .core.errors import AudioError
        from .model.config import channel_plan

        if array.ndim not in (2, 3):
            raise UsageError(
                f"{what}: expected (channels, frames) or (batch, channels, frames), got shape {array.shape}"
            )
        batched = array[None] if array.ndim == 2 else array
        if 0 in (batched.shape[:-1] if pushed else batched.shape):
            raise UsageError(f"{what}: shape {array.shape} is empty")
        if self.takes_codes and batched.shape[1] < self.in_channels:  # fewer codebooks: the rest absent
            from .core.options import ABSENT_CODE

            missing = np.full((batched.shape[0], self.in_channels - batched.shape[1], batched.shape[2]), ABSENT_CODE)
            batched = np.concatenate([batched, missing], axis=1)
        try:
            per_channel = channel_plan(self.config, batched.shape[1]) == "per_channel"
        except AudioError:
            rows = "codebooks" if self.takes_codes else "channels"  # a codec's codes: fewer rows are allowed
            fits = array.shape[-1] == self.in_channels or (self.takes_codes and array.shape[-1] < self.in_channels)
            turned = (
                f": shape {array.shape} looks like (frames, {rows}), pass {what}.T" if array.ndim == 2 and fits else ""
            )
            raise UsageError(
                f"{what}: has {batched.shape[1]} channels; {self.config.name} takes {self.in_channels} "
                f"(arrays are (channels, frames), as torch modules take them){turned}"
            ) from None
        if per_channel and not pushed:
            _not_frames_first(array, what, 0)
        if per_channel:
            batched = batched.reshape(-1, 1, batched.shape[-1])
        dtype = np.float64 if self.engine.dtype == np.float64 else np.float32
        return np.ascontiguousarray(batched, dtype=dtype), per_channel

    @staticmethod
    def _unbatched(out: np.ndarray, shape: tuple, per_channel: bool) -> np.ndarray:
        """The engine's ``[batch, channels, frames]`` in the layout of an input of ``shape``."""
        if per_channel:  # each input channel's outputs side by side, as run writes them
            items = 1 if len(shape) == 2 else shape[0]
            out = out.reshape(items, out.shape[0] // items * out.shape[1], out.shape[-1])
        return out[0] if len(shape) == 2 else out


PUSHED_CHANNELS = 8  # more channels than this and than frames in a stream's first chunk: refused


def _not_frames_first(array: np.ndarray, what: str, fewest: int) -> None:
    """Refuse an array for a one-channel stack that has more channels than frames (and than
    ``fewest``): ``(frames, channels)`` (soundfile's layout) given where ``(channels, frames)`` is
    taken, which would otherwise run thousands of "channels" of a few frames each and give
    garbage with no word. A stream's first chunk may hold fewer frames than channels (a 5.1
    frame at a time): there only more than :data:`PUSHED_CHANNELS` channels are refused."""
    channels, frames = array.shape[-2:]
    if channels > frames and channels > fewest:
        swapped = f"{what}.T" if array.ndim == 2 else f"{what} with its last two axes swapped"
        raise UsageError(
            f"{what}: shape {array.shape} has more channels than frames as (channels, frames), the layout "
            f"torch modules take; a (frames, channels) array (soundfile's layout) is given as {swapped}"
            + (f" (a stream of more than {fewest} channels starts with a chunk of as many frames)" if fewest else "")
        )


class _Layout(NamedTuple):
    """What a live stream's first chunk fixed: its shape but the frames, whether each channel
    runs on its own, and how it was given (to give the output back alike)."""

    shape: tuple
    per_channel: bool
    given: _Given

    def check(self, array: np.ndarray, given: _Given) -> None:
        if array.shape[:-1] != self.shape:
            raise UsageError(
                f"chunk: shape {array.shape} after chunks of shape {(*self.shape, 'frames')}; every chunk of a "
                f"stream has the same batch and channels"
            )
        if given.integer != self.given.integer and array.shape[-1]:  # would come back in the first chunks' type
            now, before = ("float" if i is None else np.dtype(i).name for i in (given.integer, self.given.integer))
            raise UsageError(
                f"chunk: {now} samples after {before} chunks; every chunk of a stream has the same sample type"
            )

    def give_back(self, model: Model, out: np.ndarray):
        return _give_back(model._unbatched(out, (*self.shape, 0), self.per_channel), self.given)


def _graphed(stream, backend: str, engine) -> None:
    """``stream`` replaying its steady pushes as captured steps, or a UsageError saying why not."""
    capture = getattr(stream, "capture_steps", None)
    if capture is None:
        raise UsageError(f"graphs: the {engine.name} engine streams without captured steps")
    capture(backend)


class Stream:
    """One live stream of a :class:`Model`: ``push`` chunks of one layout (the batch and channel
    count fixed by the first), ``flush`` once, ``reset`` to start a new signal."""

    def __init__(self, model: Model, graphs: str | None = None):
        self.model = model
        self.graphs = graphs  # a backend of convt_audio.model.graphs, or None
        self._stream = None
        self._layout: _Layout | None = None
        self._flushed = False
        self._framed = False  # a chunk with frames was pushed since the stream began or was reset

    def push(self, chunk) -> np.ndarray:
        """The frames that are final once ``chunk`` (``(channels, frames)`` or ``(batch,
        channels, frames)``) is in; a chunk of no frames (nothing new yet) gives none."""
        if self._flushed:
            raise UsageError("push: the stream was flushed; reset() it to start a new signal")
        array, given = self.model._given(chunk, "chunk")
        batched, per_channel = self.model._batched(array, "chunk", pushed=True)
        # the first chunk with frames fixes the layout (chunks of none before it, a server's
        # "nothing new", may be of any type)
        if self._stream is None or (
            not self._framed and (array.shape[:-1], given) != (self._layout.shape, self._layout.given)
        ):
            if per_channel:  # before the stream opens: a refused chunk leaves the stream as it was
                _not_frames_first(array, "chunk", PUSHED_CHANNELS)
            self._stream = self.model.engine.open_live_stream(batched.shape[0])
            if self.graphs is not None:
                _graphed(self._stream, self.graphs, self.model.engine)
            self._layout = _Layout(array.shape[:-1], per_channel, given)
        self._layout.check(array, given)
        self._framed = self._framed or array.shape[-1] > 0
        return self._layout.give_back(self.model, self._stream.push(batched))

    def flush(self) -> np.ndarray:
        """The rest of the output; the stream then takes no more pushes until :meth:`reset`."""
        if self._stream is None:
            raise UsageError("flush: nothing was pushed")
        if self._flushed:
            raise UsageError("flush: the stream was flushed already; reset() it to start a new signal")
        self._flushed = True
        return self._layout.give_back(self.model, self._stream.flush())

    def reset(self) -> None:
        """Forget everything pushed: the next push starts a new signal. The engine's stream is
        reset, not thrown away (a chunk of another batch or channel count opens a new one)."""
        if self._stream is not None:
            self._stream.reset()
        self._flushed = self._framed = False


class Pool:
    """Live streams of one :class:`Model` run as one batch where they line up
    (:mod:`convt_audio.model.pool`): the streams that push the same number of frames, once past
    their first pushes, share one forward; one that pushes another size runs on its own for that
    push. Chunks are laid out as :meth:`Stream.push` takes them. Made with ``wait``
    (:meth:`Model.pool`), its streams push from threads of their own: ``stream.push(chunk)``."""

    def __init__(self, model: Model, wait: float | None = None):
        from .model.pool import SharedPool, StreamPool

        self.model = model
        self._shared = None if wait is None else SharedPool(model.engine, patience=float(wait))
        self._pool = StreamPool(model.engine) if wait is None else self._shared.pool

    def open(self) -> PoolStream:
        """A new stream (its layout set by its first chunk). In a pool with ``wait``, it counts
        as open at once: the others' pushes wait for its pushes until it is flushed or closed."""
        return PoolStream(self)

    def push(self, chunks: Mapping[PoolStream, object]) -> dict:
        """Each stream's chunk in, as one batch where the streams line up; each stream's frames
        now final out (as its chunk was given: NumPy or torch, integer type kept)."""
        if self._shared is not None:
            raise UsageError("push: this pool's streams push from threads of their own (wait=): stream.push(chunk)")
        engine_chunks, layouts = {}, {}
        for stream, chunk in chunks.items():
            if not isinstance(stream, PoolStream) or stream.pool is not self:
                raise UsageError(f"push: {stream!r} is not a stream of this pool")
            inner, block = stream._engine_block(chunk)
            engine_chunks[inner], layouts[inner] = block, stream
        out = self._pool.push(engine_chunks)
        return {layouts[inner]: layouts[inner]._given_back(y) for inner, y in out.items()}

    def __len__(self) -> int:
        """The streams open (pushed to and not yet flushed)."""
        return len(self._pool.streams)


class PoolStream:
    """One stream of a :class:`Pool`: ``push`` alone (``pool.push({s: chunk})[s]``), ``flush``
    once (it then leaves the pool)."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self._inner = None
        self._shared = None if pool._shared is None else pool._shared.open(None)  # a SharedStream
        self._layout: _Layout | None = None
        self._flushed = False
        self._framed = False  # a chunk with frames was pushed

    def _engine_block(self, chunk) -> tuple:
        """The engine's stream (opened at the first chunk) and ``chunk`` as its block."""
        if self._flushed:
            raise UsageError("push: the stream was flushed; open a new one")
        model = self.pool.model
        array, given = model._given(chunk, "chunk")
        batched, per_channel = model._batched(array, "chunk", pushed=True)
        if self._layout is None:
            if per_channel:
                _not_frames_first(array, "chunk", PUSHED_CHANNELS)
            if self._shared is None:
                self._inner = self.pool._pool.open(batched.shape[0])
            self._layout = _Layout(array.shape[:-1], per_channel, given)
        elif not self._framed and array.shape[:-1] == self._layout.shape:  # the first chunk with frames
            self._layout = self._layout._replace(given=given)  # fixes the type, as in Stream.push
        self._layout.check(array, given)
        self._framed = self._framed or array.shape[-1] > 0
        return self._inner, batched

    def _given_back(self, y: np.ndarray):
        return self._layout.give_back(self.pool.model, y)

    def push(self, chunk) -> np.ndarray:
        """This stream's chunk alone, or — in a pool with ``wait`` — with the pushes of the
        others' threads waiting at the time."""
        if self._shared is None:
            return self.pool.push({self: chunk})[self]
        _, block = self._engine_block(chunk)
        return self._given_back(self._shared.push(block))

    def flush(self) -> np.ndarray:
        """The rest of the output; the stream leaves the pool."""
        if self._layout is None:
            raise UsageError("flush: nothing was pushed")
        if self._flushed:
            raise UsageError("flush: the stream was flushed already; open a new one")
        if self._shared is not None:  # refused while another thread's push waits: still open then
            out = self._shared.flush()
            self._flushed = True
            return self._given_back(out)
        self._flushed = True
        return self._given_back(self.pool._pool.flush(self._inner))

    def close(self) -> None:
        """Leave the pool without the last frames (a session dropped); its state is freed."""
        if self._shared is not None:
            self._shared.stop()
        elif self._inner is not None and not self._flushed:
            self.pool._pool.close(self._inner)
        self._flushed = True


def load(
    config: str | Path | None = None,
    weights: str | Path | None = None,
    *,
    device: str = "auto",
    dtype: str = "float32",
    threads: int | None = None,
    condition: float | str | None = None,
) -> Model:
    """A :class:`Model` for ``config`` (a path or a built-in name; default ``sinc-x3``) and
    ``weights`` (default: the config's), on the engine the command line would choose (NumPy for
    resampler stacks on the CPU, else torch on ``device``), under the command line's process
    tuning (:mod:`convt_audio.core.process`); ``threads`` sets torch's intra-op threads (default:
    at most the CPUs this process may use); ``condition`` chooses the config's condition (Vocos's
    bandwidth in kbps for ``vocos-encodec-24khz``). float16 on the CPU is warned of (slow there)."""
    import warnings

    from .core.process import half_precision_advice, set_torch_threads
    from .model.config import load_config
    from .model.engines import build_engine
    from .model.weights import load_params

    tune_process()
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise UsageError(f"threads: must be a positive whole number, got {threads!r}")
    for name, value in (("config", config), ("weights", weights)):
        if not isinstance(value, (str, Path, type(None))):
            raise UsageError(f"{name}: a path or a built-in name, got {type(value).__name__} {value!r}")
    cfg = load_config(config).with_condition(condition)
    params, _ = load_params(cfg, weights, dtype)
    engine = build_engine(cfg, params, device, dtype)
    if engine.name == "torch":
        set_torch_threads(threads)
    advice = half_precision_advice(dtype, engine.device)
    if advice:
        warnings.warn(advice, RuntimeWarning, stacklevel=2)
    return Model(cfg, engine)


def convert(
    src, dst, *, config=None, weights=None, rate=None, overwrite: bool = False, skip_existing: bool = False, **options
):
    """Run one file as ``convt-audio run SRC -o DST`` does — the same preparation
    (:func:`~convt_audio.run.prepare.prepare_run`: every option checked, clashes refused, in the
    same words), atomic write, non-finite policy, memory bounds — and return its
    :class:`~convt_audio.run.filestream.FileReport`, the record ``--json`` prints (``.as_dict()``).

    ``rate`` is ``--rate`` (Hz; without ``config``, the resampler is chosen for the file's rate);
    ``options`` are :class:`~convt_audio.run.prepare.RunRequest` fields: ``subtype``, ``bits``,
    ``clip``, ``non_finite``, ``channels``, ``chunk``, ``input_rate``, ``container`` (the container),
    ``dither``, ``raw`` (a :class:`~convt_audio.run.prepare.RawInput`), ``device``, ``dtype``,
    ``threads``, ``deterministic``, ``allow_aliasing``, ``condition``. Raises
    :class:`~convt_audio.core.errors.ConvtAudioError` subclasses.
    """
    from dataclasses import fields

    from .run.filestream import process_file
    from .run.prepare import RunRequest, prepare_run

    tune_process()
    allowed = {f.name for f in fields(RunRequest)} - {
        "inputs", "output", "config", "weights", "rate", "overwrite", "skip_existing", "recursive", "jobs", "slots", "to_json",
        "ray",
    }  # fmt: skip
    unknown = set(options) - allowed
    if unknown:
        raise UsageError(f"convert: unknown option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    flags = {f.name for f in fields(RunRequest) if f.type in (bool, "bool")}
    for name, value in {"overwrite": overwrite, "skip_existing": skip_existing, **options}.items():
        if name in flags:
            _flag(value, name)
    if Path(str(src)).is_dir():
        raise UsageError(f"{src}: convert takes one file (the command line runs folders)")
    request = RunRequest(
        inputs=(str(src),),
        output=str(dst),
        config=None if config is None else str(config),
        weights=None if weights is None else str(weights),
        rate=rate,
        overwrite=overwrite,
        skip_existing=skip_existing,
        **options,
    )
    prepared = prepare_run(request)
    return process_file(prepared.runner, prepared.jobs[0], prepared.options)
