"""The streaming protocol, spoken by every layer, block, stack and engine.

Every streaming piece is a :class:`StreamingModule`: ``push(chunk) -> the frames now final``,
``flush() -> the rest``, ``reset()`` to start a new stream, a push after flush refused, and the
state it carries between chunks in one declared dataclass (``self.state``). Concatenating
everything a stream returns gives the whole-signal output — the same frames, ``L_out`` of them,
no crossfade, no shift — for any chunk sizes, 1 frame included.

Each layer kind (:mod:`convt_audio.kinds`) returns its streaming form from ``spec.streamer()``:
leaves own their partial sums or input windows; composites stream their children
(:class:`StreamingSequential` chains them; a residual holds the input frames its body has not yet
matched, a parallel block each branch's surplus). Memory is bounded by the layers' state and the
branches' lag, never by the stream's length.

This module knows no layer kind and does not import torch itself: it moves whatever arrays its
children return (torch tensors here, NumPy arrays in the resampling engine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Sequence

if TYPE_CHECKING:
    from torch import Tensor

UNBOUNDED = 1 << 62


def cat(parts: Sequence):
    """Join ``[..., frames]`` tensors along frames, skipping empty ones."""
    parts = [p for p in parts if p.shape[-1]] or list(parts[:1])
    if len(parts) == 1:
        return parts[0]
    if type(parts[0]).__module__ == "numpy":
        import numpy

        return numpy.concatenate(parts, axis=-1)
    import torch

    if frames_last_layout(max(parts, key=lambda p: p.shape[-1])):  # the layout the convolutions chose
        return torch.cat([p.transpose(-1, -2) for p in parts], dim=-2).transpose(-1, -2)
    return torch.cat(parts, dim=-1)


def empty_like_frames(chunk):
    """A ``[B, C, 0]`` array of ``chunk``'s kind, dtype and device that shares no memory with it
    (a ``chunk[..., :0]`` view would keep the whole chunk alive for as long as it is held: one
    block-sized activation per layer for a stream's whole life, 210 MB for HiFi-GAN V1 at 64
    frames a block)."""
    shape = (*chunk.shape[:-1], 0)
    return chunk.new_empty(shape) if hasattr(chunk, "new_empty") else chunk[..., :0].copy()


def frames_last_layout(x) -> bool:
    """Whether a ``[B, C, n]`` tensor lies in memory frame by frame (channels adjacent: the
    channels-last layout of the CPU convolutions, :mod:`convt_audio.kinds.conv_torch`)."""
    return x.dim() == 3 and x.shape[1] > 1 and x.stride(1) == 1


SLICE_ELEMENTS = 1 << 20


def slices(chunk) -> int:
    """Into how many slices of frames a CPU chunk goes on through the layers after the one
    that made it: one per :data:`SLICE_ELEMENTS` elements (4 MB in float32).

    An upsampler's output grows with the product of the strides before it: a 48-frame block of
    DAC's latent is 24576 frames of 96 channels (9.4 MB) at its last layers, each such tensor
    made, freed and made again every block, glibc's heap grown to twice what is in use by the
    holes between them (a 20 s decode of 1.3 GB, where torch, weights and state are 636 MB).
    Streamed on in slices, the late layers' tensors stay a few MB and in cache, while the early
    ones keep the whole block their large weights need to run at speed; streaming is exact for
    any chunk sizes, so the output is the same. On CUDA a chunk stays whole: there each
    launch costs the same whatever its size."""
    if getattr(getattr(chunk, "device", None), "type", "cpu") != "cpu":
        return 1
    return -(-math.prod(chunk.shape) // SLICE_ELEMENTS) if chunk.shape[-1] > 1 else 1


class StreamingModule:
    """The streaming protocol: ``push``, ``flush``, ``reset``; state in ``self.state``.

    Subclasses declare ``State`` (a dataclass: what is carried between chunks), implement
    ``_push(chunk)`` and ``_flush()``, and list their streaming children in ``children``.
    Chunks are ``[batch, channels, frames]``; ``frames`` may be 0.
    """

    @dataclass
    class State:
        pass

    children: tuple = ()
    buffers_whole_input = False  # True for a layer that holds its whole input until flush
    # Sharing a batch with other streams (:mod:`convt_audio.core.batching`):
    poolable: ClassVar[bool] = False  # True: all it carries per stream is in ``state``
    positions: ClassVar[tuple] = ()  # ``State`` fields that count frames since the stream began
    batch_dims: ClassVar[dict] = {}  # ``State`` fields whose batch axis is not 0

    def __init__(self) -> None:
        self._like: Tensor | None = None  # an empty [B, C_in, 0] tensor of the stream's kind
        self._flushed = False
        self.state = self.initial_state()

    def initial_state(self):
        """The state before the first push (``State()`` unless it depends on the module)."""
        return self.State()

    @property
    def started(self) -> bool:
        """Whether a chunk was pushed since the stream began or was last reset."""
        return self._like is not None

    def reset(self) -> None:
        """Forget the stream: back to the state before the first push."""
        self._like, self._flushed = None, False
        self.state = self.initial_state()
        for child in self.children:
            child.reset()

    def push(self, chunk: Tensor) -> Tensor:
        """Take input frames; return the output frames now final."""
        if self._flushed:
            raise RuntimeError(f"{type(self).__name__}: push after flush; reset() starts a new stream")
        if self._like is None:
            self._like = empty_like_frames(chunk)
        return self._push(chunk)

    def flush(self) -> Tensor:
        """End the stream; return every output frame not yet returned."""
        if self._flushed:
            raise RuntimeError(f"{type(self).__name__}: flushed twice; reset() starts a new stream")
        self._check_end()
        if self._like is None:
            raise RuntimeError(f"{type(self).__name__}: flush before any push")
        self._flushed = True
        return self._flush()

    def finish(self, chunk: Tensor) -> Tensor:
        """``push(chunk)`` then ``flush()``, joined: how a stream's end reaches the layers after
        the first. Layers that can take the chunk and their end in one pass override
        ``_finish`` (a convolution: one call, reading its weights once, instead of two)."""
        if not chunk.shape[-1]:
            return self.flush()
        if self._flushed:
            raise RuntimeError(f"{type(self).__name__}: push after flush; reset() starts a new stream")
        if self._like is None:
            self._like = empty_like_frames(chunk)
        return self._finish(chunk)

    def _finish(self, chunk: Tensor) -> Tensor:
        """``chunk`` and the end in one pass; an override marks the stream flushed itself."""
        return cat([self._push(chunk), self.flush()])

    def _ended(self) -> None:
        """Mark the stream flushed, as :meth:`flush` does (for ``_finish`` overrides)."""
        self._check_end()
        self._flushed = True

    def steady(self) -> bool:
        """Whether the next pushes depend on ``positions`` only through their differences (so
        that streams at different places can share a batch); a layer whose start differs from
        its middle says False until the start is behind it."""
        return True

    def _check_end(self) -> None:
        """Raise if the stream cannot end here (an engine: too few frames for its stack)."""

    def _empty(self, channels: int | None = None) -> Tensor:
        like = self._like
        return like.new_zeros(like.shape[0], like.shape[1] if channels is None else channels, 0)

    def _push(self, chunk: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _flush(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class StreamingPointwise(StreamingModule):
    """An activation: no state, every frame is finished at once."""

    poolable = True

    def __init__(self, spec, params):
        self.spec, self.params = spec, params
        super().__init__()

    def _push(self, chunk: Tensor) -> Tensor:
        return self.spec.forward(chunk, self.params)

    def push_into(self, chunk: Tensor, out: Tensor) -> None:
        """``out[...] = push(chunk)``, written in place (by the layer after, into its buffer)."""
        if self._like is None:
            self._like = empty_like_frames(chunk)
        self.spec.forward_into(chunk, self.params, out)

    def _flush(self) -> Tensor:
        return self._empty()

    def _finish(self, chunk: Tensor) -> Tensor:
        self._ended()
        return self._push(chunk)


class StreamingSequential(StreamingModule):
    """Children one after the other: each push runs through all of them.

    ``tail`` (the input's last frames, for a leading ``circular`` convolution) goes to the first
    child that is not pointwise, through the pointwise ones before it.
    """

    poolable = True

    def __init__(self, specs: Sequence, params: Sequence, tail: Tensor | None = None, kernel: str = "auto"):
        children = []
        for spec, spec_params in zip(specs, params):
            children.append(spec.streamer(spec_params, tail, kernel))
            if tail is not None:
                tail = spec.forward(tail, spec_params) if spec.pointwise else None
        self.specs, self.children = tuple(specs), tuple(children)
        # (child, the pointwise child before it that it applies itself) — a child with
        # ``push_activated`` writes an activation straight into its input buffer
        steps, i = [], 0
        while i < len(children):
            ahead = children[i + 1] if i + 1 < len(children) else None
            if isinstance(children[i], StreamingPointwise) and hasattr(ahead, "push_activated"):
                steps.append((ahead, children[i]))
                i += 2
            else:
                steps.append((children[i], None))
                i += 1
        self.steps = tuple(steps)
        super().__init__()

    def _push(self, chunk: Tensor) -> Tensor:
        return self._run(chunk, 0)

    def _run(self, chunk: Tensor, first: int) -> Tensor:
        """``chunk`` through steps ``first…``; a chunk grown past :data:`SLICE_ELEMENTS` goes
        through the steps after it in slices of frames, each slice's outputs joined."""
        last = len(self.steps) - 1
        for index in range(first, last + 1):
            child, before = self.steps[index]
            chunk = child.push(chunk) if before is None else child.push_activated(chunk, before)
            pieces = slices(chunk) if index < last else 1
            if pieces > 1:
                frames = chunk.shape[-1]
                step = -(-frames // pieces)
                return cat([self._run(chunk[..., start : start + step], index + 1) for start in range(0, frames, step)])
        return chunk

    def _flush(self) -> Tensor:
        return self._through(None)

    def _finish(self, chunk: Tensor) -> Tensor:
        if slices(chunk) > 1:  # a chunk too large for one pass: its push goes on in slices
            return super()._finish(chunk)
        self._ended()
        return self._through(chunk)

    def _through(self, pending: Tensor | None) -> Tensor:
        """``pending`` (the frames before this module's end) and each child's end, child by child."""
        for child in self.children:
            pending = child.finish(pending) if pending is not None and pending.shape[-1] else child.flush()
        return pending
