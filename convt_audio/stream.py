"""Exact chunked streaming: one protocol, spoken by every layer, block and stack.

Every streaming piece is a :class:`StreamingModule`: ``push(chunk) -> the frames now final``,
``flush() -> the rest``, ``reset()`` to start a new stream, a push after flush refused, and the
state it carries between chunks in one declared dataclass (``self.state``). Concatenating
everything a stream returns gives the whole-signal output (:meth:`Stack.forward`) — the same
frames, ``L_out`` of them, no crossfade, no shift — for any chunk sizes, 1 frame included.

Leaves (:class:`StreamingConvTranspose1d`, :class:`StreamingConv1d`, :class:`StreamingPointwise`)
own their partial sums or input windows; composites stream their children:
:class:`StreamingSequential` chains them, :class:`StreamingResidual` holds the input frames its
body has not yet matched, :class:`StreamingParallel` holds each branch's surplus. Memory is
bounded by the layers' state and the branches' lag, never by the stream's length.

Padding modes are handled by an :class:`Extender` in front of each convolution: it turns the
input stream into the stream ``numpy.pad`` would give, holding back only what the mode needs
(the first ``left + 1`` frames for ``reflect``, the last ``right + 1`` for the right end; for
``circular``, the signal's last frames, which a leading convolution can be given up front as a
``tail`` and a later one must buffer — its whole input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F

from .errors import InputTooShortError
from .layers import Stack, extend
from .specs import Conv1dSpec, ConvTranspose1dSpec, leading_convs

_UNBOUNDED = 1 << 62


def _cat(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    parts = [p for p in parts if p.shape[-1]] or list(parts[:1])
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


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

    def __init__(self) -> None:
        self._like: torch.Tensor | None = None  # an empty [B, C_in, 0] tensor of the stream's kind
        self._flushed = False
        self.state = self.State()

    def reset(self) -> None:
        """Forget the stream: back to the state before the first push."""
        self._like, self._flushed = None, False
        self.state = self.State()
        for child in self.children:
            child.reset()

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        """Take input frames; return the output frames now final."""
        if self._flushed:
            raise RuntimeError(f"{type(self).__name__}: push after flush; reset() starts a new stream")
        if self._like is None:
            self._like = chunk[..., :0]
        return self._push(chunk)

    def flush(self) -> torch.Tensor:
        """End the stream; return every output frame not yet returned."""
        if self._flushed:
            raise RuntimeError(f"{type(self).__name__}: flushed twice; reset() starts a new stream")
        if self._like is None:
            raise RuntimeError(f"{type(self).__name__}: flush before any push")
        self._flushed = True
        return self._flush()

    def _empty(self, channels: int | None = None) -> torch.Tensor:
        like = self._like
        return like.new_zeros(like.shape[0], like.shape[1] if channels is None else channels, 0)

    def _push(self, chunk: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _flush(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


class Extender(StreamingModule):
    """Turns an input stream into its ``padding_mode`` extension, ``left`` + frames + ``right``.

    The left extension is emitted once the frames it mirrors have arrived (``reflect``: the first
    ``left + 1``; ``replicate``: the first; ``circular``: the ``tail`` given up front, else the
    whole input, held until :meth:`flush`). The right extension is emitted by :meth:`flush` from
    the last ``right + 1`` frames (``reflect``/``replicate``) or the first ``right`` (``circular``).
    Signals shorter than that are held whole and extended as ``numpy.pad`` extends them.
    ``tail`` (circular) is the input's last frames: at least ``left`` of them, or all of a
    shorter input.
    """

    @dataclass
    class State:
        frames: int = 0  # input frames seen
        started: bool = False
        held: list = field(default_factory=list)  # input before the left extension could be made
        held_frames: int = 0
        keep: torch.Tensor | None = None  # the frames the right extension copies

    def __init__(self, mode: str, left: int, right: int, tail: torch.Tensor | None = None):
        self.mode, self.left, self.right, self.tail = mode, left, right, tail
        if mode == "circular" and left:
            self.start_after = 0 if tail is not None else _UNBOUNDED
        elif mode == "reflect" and left:
            self.start_after = left + 1
        elif mode == "replicate" and left:
            self.start_after = 1
        else:
            self.start_after = 0
        if mode == "circular":
            self.keep_frames = right  # the first frames
        elif mode in ("reflect", "replicate") and right:
            self.keep_frames = right + 1 if mode == "reflect" else 1
        else:
            self.keep_frames = 0
        super().__init__()

    @property
    def buffers_whole_input(self) -> bool:
        return self.start_after == _UNBOUNDED

    def _remember(self, chunk: torch.Tensor) -> None:
        state = self.state
        if not self.keep_frames:
            return
        if self.mode == "circular":
            if state.keep is None or state.keep.shape[-1] < self.keep_frames:
                joined = chunk if state.keep is None else torch.cat([state.keep, chunk], -1)
                state.keep = joined[..., : self.keep_frames].clone()
        else:  # the last frames: join with what was kept only when the chunk is shorter
            joined = (
                chunk
                if state.keep is None or chunk.shape[-1] >= self.keep_frames
                else torch.cat([state.keep, chunk], -1)
            )
            state.keep = joined[..., -self.keep_frames :].clone()

    def _left_extension(self, head: torch.Tensor) -> torch.Tensor:
        source = self.tail.to(head) if self.mode == "circular" else head
        return extend(source, self.left, 0, self.mode)[..., : self.left]

    def _push(self, chunk: torch.Tensor) -> torch.Tensor:
        state = self.state
        state.frames += chunk.shape[-1]
        self._remember(chunk)
        if state.started:
            return chunk
        state.held.append(chunk)
        state.held_frames += chunk.shape[-1]
        if state.held_frames < max(self.start_after, 1):
            return chunk[..., :0]
        head = _cat(state.held)
        state.held, state.started = [], True
        if not self.left:
            return head
        return torch.cat([self._left_extension(head), head], -1)

    def _flush(self) -> torch.Tensor:
        """What is left: held frames with both extensions, or the right extension."""
        state = self.state
        if not state.started:
            whole = _cat(state.held) if state.held else self._like
            state.held = []
            return extend(whole, self.left, self.right, self.mode)
        if not self.right:
            return self._empty()
        if self.mode == "zeros":
            return F.pad(self._empty(), (0, self.right))
        kept = state.keep.shape[-1]
        return extend(state.keep, 0, self.right, self.mode)[..., kept:]


def polyphase_weight(weight: torch.Tensor, spec: ConvTranspose1dSpec) -> torch.Tensor:
    """Rewrite a transposed-conv weight as a Conv1d weight with ``out_channels·stride`` outputs.

    Tap k lands at raw offset ``k·d = m·s + r``: phase r, delay m. Output channel ``c·s + r`` of
    the Conv1d is phase r of channel c; its kernel (flipped, cross-correlation) holds the taps of
    that phase at ``M − m``, ``M = ⌊d(K−1)/s⌋``. Groups stay contiguous.
    """
    c_in, c_out_g, kernel = weight.shape
    s, d, groups = spec.stride, spec.dilation, spec.groups
    delays = (spec.receptive - 1) // s
    c_in_g = c_in // groups
    poly = weight.new_zeros(groups, c_out_g, s, c_in_g, delays + 1)
    w = weight.reshape(groups, c_in_g, c_out_g, kernel).permute(0, 2, 1, 3)  # g, co, ci, k
    for k in range(kernel):
        m, r = divmod(k * d, s)
        poly[:, :, r, :, delays - m] += w[..., k]
    return poly.reshape(groups * c_out_g * s, c_in_g, delays + 1)


class StreamingConvTranspose1d(StreamingModule):
    """Exact streaming transposed convolution by overlap-add of partial sums.

    Extended input frame j adds its kernel at raw positions ``j·s + k·d``; output t is raw
    ``t + padding + left·s``. After frames j < E, raw positions < ``E·s`` are final::

        input  j:      0       1       2          stride 3, kernel 5
        raw    u:  0 1 2 3 4
                         3 4 5 6 7
                               6 7 8 9 10     -> after input j, raw u < 3(j+1) is final

    ``state.partial`` holds the ``d(K−1) + 1 − s`` raw positions still open (none when that is
    ≤ 0: then the kernel leaves gaps of zeros), plus finished frames not yet emitted: those past
    the output length a still-growing input guarantees (output_padding and padding decide the
    end, and the end is only known at :meth:`flush`). Bias is added to finished frames only.
    """

    @dataclass
    class State:
        extended: int = 0  # extended input frames consumed (E)
        partial: torch.Tensor | None = None  # raw positions [partial_start, E·s + max(overlap, 0))
        partial_start: int = 0
        emitted: int = 0  # output frames returned so far

    def __init__(
        self,
        spec: ConvTranspose1dSpec,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        tail: torch.Tensor | None = None,
        kernel: str = "transposed",
    ):
        self.spec, self.weight, self.bias, self.kernel = spec, weight, bias, kernel
        left, right = spec.extension()
        self.extender = Extender(spec.padding_mode, left, right, tail)
        self.children = (self.extender,)
        self.offset = spec.padding + left * spec.stride
        self.overlap = spec.receptive - spec.stride
        if kernel == "polyphase":
            self.poly_weight = polyphase_weight(weight, spec)
        super().__init__()

    def _full(self, x: torch.Tensor) -> torch.Tensor:
        """Transposed convolution of a chunk with no padding: ``n·s + overlap`` raw frames."""
        spec = self.spec
        if self.kernel == "polyphase":
            delays = (spec.receptive - 1) // spec.stride
            phases = F.conv1d(F.pad(x, (delays, delays)), self.poly_weight, None, 1, 0, 1, spec.groups)
            batch, _, steps = phases.shape
            raw = phases.view(batch, spec.out_channels, spec.stride, steps).transpose(2, 3)
            raw = raw.reshape(batch, spec.out_channels, steps * spec.stride)
            return raw[..., : x.shape[-1] * spec.stride + self.overlap]
        return F.conv_transpose1d(x, self.weight, None, spec.stride, 0, 0, spec.groups, spec.dilation)

    def _accumulate(self, x: torch.Tensor) -> None:
        state = self.state
        frames = x.shape[-1]
        if not frames:
            return
        raw = self._full(x)
        if self.overlap < 0:  # gaps between kernels: finished zeros
            raw = F.pad(raw, (0, -self.overlap))
        base = state.extended * self.spec.stride
        if state.partial is None:
            state.partial, state.partial_start = raw, base
        else:
            finished = base - state.partial_start
            still_open = state.partial.shape[-1] - finished
            if still_open > 0:
                raw[..., :still_open] += state.partial[..., finished:]
            state.partial = torch.cat([state.partial[..., :finished], raw], -1) if finished else raw
        state.extended += frames

    def _emit(self, end: int) -> torch.Tensor:
        """Return output frames [emitted, end), padded with zeros past the raw output."""
        state = self.state
        if state.partial is None or end <= state.emitted:
            return self._empty(self.spec.out_channels)
        start = state.emitted + self.offset - state.partial_start
        stop = end + self.offset - state.partial_start
        y = state.partial[..., start:stop]
        if y.shape[-1] < stop - start:
            y = F.pad(y, (0, stop - start - y.shape[-1]))
        state.partial = state.partial[..., stop:].clone()  # a copy: the chunk-sized base can go
        state.partial_start += stop
        state.emitted = end
        return y + self.bias[:, None] if self.bias is not None else y

    def _push(self, chunk: torch.Tensor) -> torch.Tensor:
        self._accumulate(self.extender.push(chunk))
        final_raw = self.state.extended * self.spec.stride - self.offset
        at_least = self.spec.output_frames(self.extender.state.frames)
        return self._emit(min(final_raw, at_least))

    def _flush(self) -> torch.Tensor:
        self._accumulate(self.extender.flush())
        return self._emit(self.spec.output_frames(self.extender.state.frames))


class StreamingConv1d(StreamingModule):
    """Exact streaming convolution: ``state.window`` keeps the extended inputs not yet consumed.

    Output q reads extended inputs ``q·s … q·s + d(K−1)``; every complete window is computed as
    soon as its last input arrives, and the inputs before the next window's start are dropped
    (with stride > receptive field, some not yet arrived: ``skip`` counts those)::

        extended j:  0 1 2 3 4 5 6 7          kernel 3, stride 2
        output q=0:  0 1 2
               q=1:      2 3 4
               q=2:          4 5 6    -> after input 4, q ≤ 1 is final; window keeps j ≥ 4
    """

    @dataclass
    class State:
        window: torch.Tensor | None = None  # extended inputs from the next window's start
        skip: int = 0  # extended inputs still to drop before the next window starts

    def __init__(
        self, spec: Conv1dSpec, weight: torch.Tensor, bias: torch.Tensor | None, tail: torch.Tensor | None = None
    ):
        self.spec, self.weight, self.bias = spec, weight, bias
        left, right = spec.extension()
        self.extender = Extender(spec.padding_mode, left, right, tail)
        self.children = (self.extender,)
        super().__init__()

    def _convolve(self, x: torch.Tensor) -> torch.Tensor:
        state, spec = self.state, self.spec
        if state.skip:  # stride jumped past the inputs we had: drop those frames as they come
            dropped = min(state.skip, x.shape[-1])
            x, state.skip = x[..., dropped:], state.skip - dropped
            if state.skip:
                return self._empty(spec.out_channels)
        if state.window is not None and state.window.shape[-1]:
            x = torch.cat([state.window, x], -1) if x.shape[-1] else state.window
        count = (x.shape[-1] - spec.receptive) // spec.stride + 1 if x.shape[-1] >= spec.receptive else 0
        state.window = x[..., count * spec.stride :].clone()  # a copy: x, chunk-sized, can go
        state.skip = max(0, count * spec.stride - x.shape[-1])
        if not count:
            return self._empty(spec.out_channels)
        used = x[..., : (count - 1) * spec.stride + spec.receptive]
        return F.conv1d(used, self.weight, self.bias, spec.stride, 0, spec.dilation, spec.groups)

    def _push(self, chunk: torch.Tensor) -> torch.Tensor:
        return self._convolve(self.extender.push(chunk))

    def _flush(self) -> torch.Tensor:
        return self._convolve(self.extender.flush())


class StreamingPointwise(StreamingModule):
    """An activation: no state, every frame is finished at once."""

    def __init__(self, spec, params):
        self.spec, self.params = spec, params
        super().__init__()

    def _push(self, chunk: torch.Tensor) -> torch.Tensor:
        return self.spec.forward(chunk, self.params)

    def _flush(self) -> torch.Tensor:
        return self._empty()


class StreamingSequential(StreamingModule):
    """Children one after the other: each push runs through all of them.

    ``tail`` (the input's last frames, for a leading ``circular`` convolution) goes to the first
    child that is not pointwise, through the pointwise ones before it.
    """

    def __init__(self, specs: Sequence, params: Sequence, tail: torch.Tensor | None = None, kernel: str = "auto"):
        children = []
        for spec, spec_params in zip(specs, params):
            children.append(spec.streamer(spec_params, tail, kernel))
            if tail is not None:
                tail = spec.forward(tail, spec_params) if spec.pointwise else None
        self.specs, self.children = tuple(specs), tuple(children)
        super().__init__()

    def _push(self, chunk: torch.Tensor) -> torch.Tensor:
        for child in self.children:
            chunk = child.push(chunk)
        return chunk

    def _flush(self) -> torch.Tensor:
        pending = None
        for child in self.children:
            parts = []
            if pending is not None and pending.shape[-1]:
                parts.append(child.push(pending))
            parts.append(child.flush())
            pending = _cat(parts)
        return pending


class StreamingResidual(StreamingModule):
    """``x + body(x)``: holds the input frames whose body output has not come out yet.

    The body keeps the frame count, so output t is ``x[t] + body(x)[t]``; the body lags by its
    look-ahead, and ``state.held`` (at most that lag) waits for it::

        x:        0 1 2 3 4 5 6 7        body lag 2
        body(x):  0 1 2 3 4 5            -> y[0..5] out; x[6], x[7] held
    """

    @dataclass
    class State:
        held: torch.Tensor | None = None  # input frames [emitted, pushed)

    def __init__(self, spec, body: StreamingSequential):
        self.spec, self.body = spec, body
        self.children = (body,)
        super().__init__()

    def _match(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        held = self.state.held
        if held is None or not held.shape[-1]:
            held = x
        elif x.shape[-1]:
            held = torch.cat([held, x], -1)
        n = y.shape[-1]
        self.state.held = held[..., n:].clone()  # a copy, so the chunk it came from can go
        return held[..., :n] + y

    def _push(self, chunk: torch.Tensor) -> torch.Tensor:
        return self._match(chunk, self.body.push(chunk))

    def _flush(self) -> torch.Tensor:
        out = self._match(self._like, self.body.flush())
        assert not self.state.held.shape[-1], "a residual body must keep the frame count"
        return out


class StreamingParallel(StreamingModule):
    """``reduce(b_1(x), …, b_n(x))``: a frame is emitted once every branch has produced it.

    ``state.surplus[b]`` holds what branch b has produced ahead of the slowest branch.
    """

    @dataclass
    class State:
        surplus: dict = field(default_factory=dict)  # branch -> frames ahead of the slowest

    def __init__(self, spec, branches: Sequence[StreamingSequential]):
        self.spec, self.children = spec, tuple(branches)
        super().__init__()

    def _combine(self, outs: list[torch.Tensor]) -> torch.Tensor:
        surplus = self.state.surplus
        joined = []
        for b, y in enumerate(outs):
            held = surplus.get(b)
            joined.append(y if held is None or not held.shape[-1] else _cat([held, y]))
        n = min(y.shape[-1] for y in joined)
        total = None
        for b, y in enumerate(joined):
            surplus[b] = y[..., n:].clone()  # a copy, so the branch's output can go
            total = y[..., :n] if total is None else total + y[..., :n]
        return total / len(joined) if self.spec.reduce == "mean" else total

    def _push(self, chunk: torch.Tensor) -> torch.Tensor:
        return self._combine([branch.push(chunk) for branch in self.children])

    def _flush(self) -> torch.Tensor:
        out = self._combine([branch.flush() for branch in self.children])
        assert not any(y.shape[-1] for y in self.state.surplus.values()), "branches must agree"
        return out


def leading_circular_frames(specs: Sequence | Stack) -> int:
    """How many of the input's last frames the leading ``circular`` convolutions need up front.

    A convolution is leading when only pointwise layers stand before it, in the stack or in a
    leading block's sequences (:func:`~convt_audio.specs.leading_convs`); later ones cannot be
    given the tail and hold their whole input.
    """
    specs = specs.specs if isinstance(specs, Stack) else specs
    return max([conv.extension()[0] for conv in leading_convs(specs) if conv.padding_mode == "circular"], default=0)


def _buffering(module: StreamingModule) -> Iterator[str]:
    if isinstance(module, (StreamingConvTranspose1d, StreamingConv1d)):
        if module.extender.buffers_whole_input:
            yield module.spec.where
    for child in module.children:
        yield from _buffering(child)


class StreamingStack(StreamingSequential):
    """Streams ``[batch, in_channels, frames]`` chunks through a stack, exactly.

    Parameters
    ----------
    stack : the :class:`Stack` (tensors already on the device and dtype to run in).
    tail : optional ``[batch, in_channels, n]``, the input's last
        ``min(frames, leading_circular_frames(stack))`` frames: lets a ``circular`` leading
        convolution stream in bounded memory. Without it that layer holds its whole input.
    kernel : ``"transposed"``, ``"polyphase"`` or ``"auto"``: how ConvTranspose1d chunks are
        computed (the same sums; ``auto`` picks polyphase where it is faster).
    """

    @dataclass
    class State:
        frames_in: int = 0
        frames_out: int = 0

    def __init__(self, stack: Stack, tail: torch.Tensor | None = None, kernel: str = "auto"):
        self.stack = stack
        super().__init__(stack.specs, stack.nested, tail, kernel)

    @property
    def frames_in(self) -> int:
        return self.state.frames_in

    @property
    def frames_out(self) -> int:
        return self.state.frames_out

    @property
    def buffering_layers(self) -> list[str]:
        """The layers that hold their whole input until :meth:`flush` (``circular``, not leading)."""
        return list(_buffering(self))

    @torch.inference_mode()
    def _push(self, chunk: torch.Tensor) -> torch.Tensor:
        self.state.frames_in += chunk.shape[-1]
        out = super()._push(chunk)
        self.state.frames_out += out.shape[-1]
        return out

    def flush(self, like: torch.Tensor | None = None) -> torch.Tensor:
        """End the stream; return the remaining output frames.

        Raises :class:`InputTooShortError` if the input was too short for some layer. ``like``
        (an empty ``[B, C, 0]`` tensor) is only needed when nothing was pushed.
        """
        self.stack.check_frames(self.state.frames_in)
        if self._like is None and like is not None:
            self._like = like[..., :0]
        return super().flush()

    @torch.inference_mode()
    def _flush(self) -> torch.Tensor:
        out = super()._flush()
        self.state.frames_out += out.shape[-1]
        return out


def stream(
    stack: Stack,
    chunks: Iterable[torch.Tensor],
    tail: torch.Tensor | None = None,
    kernel: str = "auto",
) -> Iterator[torch.Tensor]:
    """Yield the output of ``stack`` for an iterable of input chunks, then the flushed rest."""
    streamer = StreamingStack(stack, tail=tail, kernel=kernel)
    pushed = False
    for chunk in chunks:
        pushed = True
        out = streamer.push(chunk)
        if out.shape[-1]:
            yield out
    if not pushed:
        raise InputTooShortError(f"input too short: 0 frames; the stack needs at least {stack.min_input_frames()}")
    out = streamer.flush()
    if out.shape[-1]:
        yield out


def run_chunked(stack: Stack, x: torch.Tensor, chunk_frames: Sequence[int] | int, **kw) -> torch.Tensor:
    """Stream a whole tensor in chunks of the given sizes (cycled); return the joined output."""
    sizes = [chunk_frames] if isinstance(chunk_frames, int) else list(chunk_frames)

    def chunks() -> Iterator[torch.Tensor]:
        pos, i = 0, 0
        while pos < x.shape[-1]:
            n = sizes[i % len(sizes)]
            yield x[..., pos : pos + n]
            pos, i = pos + n, i + 1

    return torch.cat(list(stream(stack, chunks(), **kw)), -1)
