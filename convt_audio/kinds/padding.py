"""The padding modes as ``numpy.pad`` defines them, whole (:func:`extend`) and streamed
(:class:`Extender`), for the convolutions (README.md, "Padding modes"), and ``reflect_zeros``:
EnCodec's and audiocraft's ``pad1d``, ``reflect`` except that a signal no longer than the padding
is first extended by zeros to one frame more than it (so a 1-frame input is padded with zeros)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..core.options import REFLECTING
from ..core.streaming import UNBOUNDED, StreamingModule, cat


def extend(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """Extend ``x [..., frames]`` by ``left``/``right`` frames exactly as ``numpy.pad`` does.

    ``zeros`` → constant 0, ``reflect`` → ``reflect``, ``replicate`` → ``edge``, ``circular`` →
    ``wrap``, including extensions longer than the signal (numpy reflects or wraps again).
    ``reflect_zeros`` (EnCodec's ``pad1d``) reflects a signal no longer than the longer extension
    as if it were followed by zeros: ``reflect`` of ``x`` zero-extended to ``max(left, right) + 1``
    frames, those zeros then dropped.
    """
    if left == 0 and right == 0:
        return x
    frames = x.shape[-1]
    if mode == "reflect_zeros":
        extra = max(left, right) + 1 - frames
        if extra <= 0:
            return extend(x, left, right, "reflect")
        return extend(F.pad(x, (0, extra)), left, right, "reflect")[..., : left + frames + right]
    if mode == "zeros":
        return F.pad(x, (left, right))
    j = torch.arange(-left, frames + right, device=x.device)
    if mode == "replicate":
        index = j.clamp(0, frames - 1)
    elif mode == "circular":
        index = j.remainder(frames)
    elif mode == "reflect":
        if frames == 1:
            index = torch.zeros_like(j)
        else:
            period = 2 * (frames - 1)
            m = j.remainder(period)
            index = torch.where(m < frames, m, period - m)
    else:  # pragma: no cover - specs are validated
        raise ValueError(mode)
    return x.index_select(-1, index)


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

    positions = ("frames", "held_frames")

    def __init__(self, mode: str, left: int, right: int, tail: torch.Tensor | None = None):
        self.mode, self.left, self.right, self.tail = mode, left, right, tail
        self.poolable = mode != "circular"  # ``tail`` is the stream's own, and kept outside its state
        if mode == "circular" and left:
            self.start_after = 0 if tail is not None else UNBOUNDED
        elif mode in REFLECTING and left:
            self.start_after = left + 1
        elif mode == "replicate" and left:
            self.start_after = 1
        else:
            self.start_after = 0
        if mode == "circular":
            self.keep_frames = right  # the first frames
        elif mode in REFLECTING + ("replicate",) and right:
            self.keep_frames = right + 1 if mode in REFLECTING else 1
        else:
            self.keep_frames = 0
        super().__init__()

    def steady(self) -> bool:
        return self.state.started

    @property
    def holds_whole_input(self) -> bool:
        return self.start_after == UNBOUNDED

    def _remember(self, chunk: torch.Tensor) -> None:
        state = self.state
        if not self.keep_frames:
            return
        if self.mode == "circular":
            if state.keep is None or state.keep.shape[-1] < self.keep_frames:
                joined = chunk if state.keep is None else cat([state.keep, chunk])
                state.keep = joined[..., : self.keep_frames].clone()
        else:  # the last frames: join with what was kept only when the chunk is shorter
            joined = chunk if state.keep is None or chunk.shape[-1] >= self.keep_frames else cat([state.keep, chunk])
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
        head = cat(state.held)
        state.held, state.started = [], True
        if not self.left:
            return head
        return cat([self._left_extension(head), head])

    def _flush(self) -> torch.Tensor:
        """What is left: held frames with both extensions, or the right extension."""
        state = self.state
        if not state.started:
            whole = cat(state.held) if state.held else self._like
            state.held = []
            return extend(whole, self.left, self.right, self.mode)
        if not self.right:
            return self._empty()
        if self.mode == "zeros":
            return F.pad(self._empty(), (0, self.right))
        kept = state.keep.shape[-1]
        return extend(state.keep, 0, self.right, self.mode)[..., kept:]
