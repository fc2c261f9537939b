"""Exact chunked streaming of a :class:`~convt_audio.layers.Stack`.

Each streaming layer owns its state and offers ``push(chunk) -> finished frames`` and
``flush(like) -> the rest`` (``like``: an empty ``[B, C, 0]`` tensor of the stream's kind). Concatenating everything a stream returns gives the whole-signal
output of :meth:`Stack.forward` — the same frames, ``L_out`` of them, no crossfade, no shift —
for any chunk sizes, 1 frame included.

Padding modes are handled by an :class:`Extender` in front of each convolution: it turns the
input stream into the stream ``numpy.pad`` would give, holding back only what the mode needs
(the first ``left + 1`` frames for ``reflect``, the last ``right + 1`` for the right end; for
``circular``, the signal's last frames, which the first layer can be given up front and a deeper
layer must buffer — its whole input).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F

from .errors import InputTooShortError
from .layers import (
    ActivationSpec,
    Conv1dSpec,
    ConvTranspose1dSpec,
    SnakeSpec,
    Stack,
    activation,
    extend,
    snake,
)

_UNBOUNDED = 1 << 62


def _cat(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    parts = [p for p in parts if p.shape[-1]] or list(parts[:1])
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)


@dataclass
class Extender:
    """Turns an input stream into its ``padding_mode`` extension, ``left`` + frames + ``right``.

    The left extension is emitted once the frames it mirrors have arrived (``reflect``: the first
    ``left + 1``; ``replicate``: the first; ``circular``: the ``tail`` given up front, else the
    whole input, held until :meth:`flush`). The right extension is emitted by :meth:`flush` from
    the last ``right + 1`` frames (``reflect``/``replicate``) or the first ``right`` (``circular``).
    Signals shorter than that are held whole and extended as ``numpy.pad`` extends them.
    """

    mode: str
    left: int
    right: int
    tail: torch.Tensor | None = None  # circular: the input's last min(frames, left) frames
    frames: int = 0  # input frames seen
    started: bool = False
    held: list = field(default_factory=list)  # input before the left extension could be made
    held_frames: int = 0
    keep: torch.Tensor | None = None  # the frames the right extension copies

    def __post_init__(self) -> None:
        if self.mode == "circular" and self.left:
            self.start_after = 0 if self.tail is not None else _UNBOUNDED
        elif self.mode == "reflect" and self.left:
            self.start_after = self.left + 1
        elif self.mode == "replicate" and self.left:
            self.start_after = 1
        else:
            self.start_after = 0
        if self.mode == "circular":
            self.keep_frames = self.right  # the first frames
        elif self.mode in ("reflect", "replicate") and self.right:
            self.keep_frames = self.right + 1 if self.mode == "reflect" else 1
        else:
            self.keep_frames = 0

    @property
    def buffers_whole_input(self) -> bool:
        return self.start_after == _UNBOUNDED

    def _remember(self, chunk: torch.Tensor) -> None:
        if not self.keep_frames:
            return
        if self.mode == "circular":
            if self.keep is None or self.keep.shape[-1] < self.keep_frames:
                joined = chunk if self.keep is None else torch.cat([self.keep, chunk], -1)
                self.keep = joined[..., : self.keep_frames].clone()
        else:  # the last frames: join with what was kept only when the chunk is shorter
            joined = chunk if self.keep is None or chunk.shape[-1] >= self.keep_frames \
                else torch.cat([self.keep, chunk], -1)
            self.keep = joined[..., -self.keep_frames :].clone()

    def _left_extension(self, head: torch.Tensor) -> torch.Tensor:
        source = self.tail.to(head) if self.mode == "circular" else head
        return extend(source, self.left, 0, self.mode)[..., : self.left]

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        """Take input frames ``[B, C, n]``; return the extended frames now known."""
        self.frames += chunk.shape[-1]
        self._remember(chunk)
        if self.started:
            return chunk
        self.held.append(chunk)
        self.held_frames += chunk.shape[-1]
        if self.held_frames < max(self.start_after, 1):
            return chunk[..., :0]
        head = _cat(self.held)
        self.held, self.started = [], True
        if not self.left:
            return head
        return torch.cat([self._left_extension(head), head], -1)

    def flush(self, like: torch.Tensor) -> torch.Tensor:
        """Return what is left: held frames with both extensions, or the right extension.

        ``like`` is an empty ``[B, C, 0]`` tensor giving the shape, dtype and device.
        """
        if not self.started:
            whole = _cat(self.held)
            self.held = []
            return extend(whole, self.left, self.right, self.mode)
        if not self.right:
            return like[..., :0]
        if self.mode == "zeros":
            return F.pad(like[..., :0], (0, self.right))
        kept = self.keep.shape[-1]
        return extend(self.keep, 0, self.right, self.mode)[..., kept:]


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


@dataclass
class StreamingConvTranspose1d:
    """Exact streaming transposed convolution by overlap-add of partial sums.

    Extended input frame j adds its kernel at raw positions ``j·s + k·d``; output t is raw
    ``t + padding + left·s``. After frames j < E, raw positions < ``E·s`` are final::

        input  j:      0       1       2          stride 3, kernel 5
        raw    u:  0 1 2 3 4
                         3 4 5 6 7
                               6 7 8 9 10     -> after input j, raw u < 3(j+1) is final

    ``partial`` holds the ``d(K−1) + 1 − s`` raw positions still open (none when that is ≤ 0:
    then the kernel leaves gaps of zeros), plus finished frames not yet emitted: those past the
    output length a still-growing input guarantees (output_padding and padding decide the end,
    and the end is only known at :meth:`flush`). Bias is added to finished frames only.
    """

    spec: ConvTranspose1dSpec
    weight: torch.Tensor
    bias: torch.Tensor | None
    tail: torch.Tensor | None = None
    kernel: str = "transposed"  # or "polyphase": the same sums as a Conv1d + interleave
    extended: int = 0  # extended input frames consumed (E)
    partial: torch.Tensor | None = None  # raw positions [partial_start, E·s + max(overlap, 0))
    partial_start: int = 0
    emitted: int = 0  # output frames returned so far

    def __post_init__(self) -> None:
        left, right = self.spec.extension()
        self.extender = Extender(self.spec.padding_mode, left, right, self.tail)
        self.offset = self.spec.padding + left * self.spec.stride
        self.overlap = self.spec.receptive - self.spec.stride
        if self.kernel == "polyphase":
            self.poly_weight = polyphase_weight(self.weight, self.spec)

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
        frames = x.shape[-1]
        if not frames:
            return
        raw = self._full(x)
        if self.overlap < 0:  # gaps between kernels: finished zeros
            raw = F.pad(raw, (0, -self.overlap))
        base = self.extended * self.spec.stride
        if self.partial is None:
            self.partial, self.partial_start = raw, base
        else:
            finished = base - self.partial_start
            still_open = self.partial.shape[-1] - finished
            if still_open > 0:
                raw[..., :still_open] += self.partial[..., finished:]
            self.partial = torch.cat([self.partial[..., :finished], raw], -1) if finished else raw
        self.extended += frames

    def _emit(self, end: int, like: torch.Tensor) -> torch.Tensor:
        """Return output frames [emitted, end), padded with zeros past the raw output."""
        if self.partial is None or end <= self.emitted:
            return like.new_zeros(like.shape[0], self.spec.out_channels, 0)
        start = self.emitted + self.offset - self.partial_start
        stop = end + self.offset - self.partial_start
        y = self.partial[..., start:stop]
        if y.shape[-1] < stop - start:
            y = F.pad(y, (0, stop - start - y.shape[-1]))
        self.partial = self.partial[..., stop:]
        self.partial_start += stop
        self.emitted = end
        return y + self.bias[:, None] if self.bias is not None else y

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        self._accumulate(self.extender.push(chunk))
        final_raw = self.extended * self.spec.stride - self.offset
        at_least = self.spec.output_frames(self.extender.frames)
        return self._emit(min(final_raw, at_least), chunk)

    def flush(self, like: torch.Tensor) -> torch.Tensor:
        self._accumulate(self.extender.flush(like))
        out_frames = self.spec.output_frames(self.extender.frames)
        return self._emit(out_frames, like)


@dataclass
class StreamingConv1d:
    """Exact streaming convolution: ``window`` keeps the extended inputs not yet consumed.

    Output q reads extended inputs ``q·s … q·s + d(K−1)``; every complete window is computed as
    soon as its last input arrives, and the inputs before the next window's start are dropped
    (with stride > receptive field, some not yet arrived: ``skip`` counts those)::

        extended j:  0 1 2 3 4 5 6 7          kernel 3, stride 2
        output q=0:  0 1 2
               q=1:      2 3 4
               q=2:          4 5 6    -> after input 4, q ≤ 1 is final; window keeps j ≥ 4
    """

    spec: Conv1dSpec
    weight: torch.Tensor
    bias: torch.Tensor | None
    tail: torch.Tensor | None = None
    window: torch.Tensor | None = None  # extended inputs from the next window's start
    skip: int = 0  # extended inputs still to drop before the next window starts

    def __post_init__(self) -> None:
        left, right = self.spec.extension()
        mode = self.spec.padding_mode
        self.extender = Extender(mode, left, right, self.tail)

    def _convolve(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        if self.skip:  # stride jumped past the inputs we had: drop those frames as they come
            dropped = min(self.skip, x.shape[-1])
            x, self.skip = x[..., dropped:], self.skip - dropped
            if self.skip:
                return like.new_zeros(like.shape[0], self.spec.out_channels, 0)
        if self.window is not None and self.window.shape[-1]:
            x = torch.cat([self.window, x], -1) if x.shape[-1] else self.window
        spec = self.spec
        count = (x.shape[-1] - spec.receptive) // spec.stride + 1 if x.shape[-1] >= spec.receptive else 0
        self.window = x[..., count * spec.stride :]
        self.skip = max(0, count * spec.stride - x.shape[-1])
        if not count:
            return like.new_zeros(like.shape[0], spec.out_channels, 0)
        used = x[..., : (count - 1) * spec.stride + spec.receptive]
        return F.conv1d(used, self.weight, self.bias, spec.stride, 0, spec.dilation, spec.groups)

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        return self._convolve(self.extender.push(chunk), chunk)

    def flush(self, like: torch.Tensor) -> torch.Tensor:
        return self._convolve(self.extender.flush(like), like)


@dataclass
class StreamingPointwise:
    """An activation: no state, every frame is finished at once."""

    spec: ActivationSpec | SnakeSpec
    alpha: torch.Tensor | None = None

    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        return snake(chunk, self.alpha) if self.alpha is not None else activation(self.spec, chunk)

    def flush(self, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(like.shape[0], like.shape[1], 0)


def leading_circular_frames(stack: Stack) -> int:
    """How many of the input's last frames the first convolution's ``circular`` mode needs."""
    for spec in stack.specs:
        if isinstance(spec, (ConvTranspose1dSpec, Conv1dSpec)):
            return spec.extension()[0] if spec.padding_mode == "circular" else 0
    return 0


class StreamingStack:
    """Streams ``[batch, in_channels, frames]`` chunks through a stack, exactly.

    Parameters
    ----------
    stack : the :class:`Stack` (tensors already on the device and dtype to run in).
    tail : optional ``[batch, in_channels, n]``, the input's last
        ``min(frames, leading_circular_frames(stack))`` frames: lets a ``circular`` first
        convolution stream in bounded memory. Without it that layer holds its whole input.
    kernel : ``"transposed"``, ``"polyphase"`` or ``"auto"``: how ConvTranspose1d chunks are
        computed (the same sums; ``auto`` picks polyphase where it is faster).
    """

    def __init__(self, stack: Stack, tail: torch.Tensor | None = None, kernel: str = "auto"):
        self.stack = stack
        self.frames_in = 0
        self.frames_out = 0
        self.layers: list = []
        leading = True
        for spec, params in zip(stack.specs, stack.params):
            if isinstance(spec, ConvTranspose1dSpec):
                layer_kernel = choose_kernel(spec) if kernel == "auto" else kernel
                self.layers.append(StreamingConvTranspose1d(
                    spec, params["weight"], params.get("bias"), tail if leading else None, layer_kernel))
                leading = False
            elif isinstance(spec, Conv1dSpec):
                self.layers.append(StreamingConv1d(
                    spec, params["weight"], params.get("bias"), tail if leading else None))
                leading = False
            else:
                layer = StreamingPointwise(spec, params.get("alpha"))
                if tail is not None and leading:
                    tail = layer.push(tail)  # the tail as this activation's output
                self.layers.append(layer)

    @property
    def buffering_layers(self) -> list[int]:
        """Indices of layers that hold their whole input until :meth:`flush` (``circular``)."""
        return [
            spec.index for spec, layer in zip(self.stack.specs, self.layers)
            if getattr(layer, "extender", None) is not None and layer.extender.buffers_whole_input
        ]

    @torch.inference_mode()
    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        """Feed ``[batch, in_channels, n]`` (n ≥ 0); return the output frames now final."""
        self.frames_in += chunk.shape[-1]
        for layer in self.layers:
            chunk = layer.push(chunk)
        self.frames_out += chunk.shape[-1]
        return chunk

    @torch.inference_mode()
    def flush(self, like: torch.Tensor | None = None) -> torch.Tensor:
        """End the stream; return the remaining output frames.

        Raises :class:`InputTooShortError` if the input was too short for some layer.
        """
        self.stack.check_frames(self.frames_in)
        pending = None
        for layer in self.layers:
            parts = []
            if pending is not None and pending.shape[-1]:
                parts.append(layer.push(pending))
            parts.append(layer.flush(pending if pending is not None else like))
            pending = _cat(parts)
        self.frames_out += pending.shape[-1]
        return pending


def choose_kernel(spec: ConvTranspose1dSpec) -> str:
    """Polyphase where it measured faster on CPU (multi-channel layers with stride > 1)."""
    if spec.stride > 1 and spec.in_channels // spec.groups >= 8:
        return "polyphase"
    return "transposed"


def stream(
    stack: Stack,
    chunks: Iterable[torch.Tensor],
    tail: torch.Tensor | None = None,
    kernel: str = "auto",
) -> Iterator[torch.Tensor]:
    """Yield the output of ``stack`` for an iterable of input chunks, then the flushed rest."""
    streamer = StreamingStack(stack, tail=tail, kernel=kernel)
    like = None
    for chunk in chunks:
        like = chunk
        out = streamer.push(chunk)
        if out.shape[-1]:
            yield out
    if like is None:
        raise InputTooShortError(f"input too short: 0 frames; the stack needs at least "
                                 f"{stack.min_input_frames()}")
    out = streamer.flush(like[..., :0])
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
