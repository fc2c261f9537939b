"""A stack: validated layer specs with their tensors; its whole-signal forward and its stream.

:class:`Stack` pairs specs (:mod:`convt_audio.kinds`) with their tensors (one ``{"weight",
"bias", "alpha"}`` dict per leaf layer) and runs the reference computation that streaming must
reproduce; :class:`StreamingStack` streams it exactly. Tensors are ``[batch, channels, frames]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from ..core.errors import InputTooShortError, UsageError
from ..core.shapes import StackShape, chain, index_paths, leading_convs, leaves, nest, parameter_count
from ..core.shapes import forward as forward_specs
from ..core.streaming import StreamingModule, StreamingSequential


def as_tensor(array, dtype: torch.dtype | None = None, device=None, frames_last: bool = False) -> torch.Tensor:
    """A NumPy array as a tensor of ``dtype`` (None: as stored) on ``device``: used as it is when
    it is writable, contiguous and of that dtype already (a mapped checkpoint's pages stay
    mapped, not copied), else copied once.

    ``frames_last``: a convolution weight ``[O, I, K]`` that the CPU streams take channels-last
    (:func:`~convt_audio.kinds.conv_torch.channels_last_weight`) is kept in that layout from
    here on (a view of the array as it is, or its copy, becomes the one channels-last copy that
    stays; a dtype conversion adds one more for a moment). Converted when the first stream
    opened, every weight was briefly held twice, and the originals freed left their memory in
    glibc's heap: BigVGAN v2's first 64-frame block raised a process from 658 to 1188 MB,
    420 MB of it freed but held."""
    same = dtype is None or str(array.dtype) == str(dtype).removeprefix("torch.")
    # a weight folded in the frames-last order already (weights._fold) is used as it lies
    laid_out = array.flags.c_contiguous or (
        frames_last and array.ndim == 3 and array.transpose(0, 2, 1).flags.c_contiguous
    )
    usable = array.flags.writeable and laid_out and same
    tensor = torch.from_numpy(array if usable else np.array(array)).to(device=device, dtype=dtype)
    if frames_last:
        from ..kinds.conv_torch import channels_last_weight

        weight4 = channels_last_weight(tensor)
        if weight4 is not None:
            return weight4.squeeze(2)
    return tensor


MAX_INIT_PARAMETERS = 1 << 30  # 4 GiB of float32: far past any vocoder (HiFi-GAN V1: 13.9 M)


@dataclass
class Stack(StackShape):
    """Layer specs with their tensors: the whole-signal reference and the streaming source.

    Parameters
    ----------
    specs : sequence of layer and block specs, validated and channel-chained.
    params : one ``{name: tensor}`` dict per leaf layer (``weight``, ``bias``, ``alpha``), depth
        first through blocks (:func:`~convt_audio.core.shapes.leaves`).
    """

    specs: tuple
    params: list

    def __post_init__(self) -> None:
        self.specs = tuple(self.specs)
        self.params = list(self.params)
        if len(self.params) != len(list(leaves(self.specs))):
            raise ValueError("one params dict per leaf layer is needed")
        for spec in self.specs:
            spec.validate()
        chain(self.specs)
        self.nested = nest(self.specs, self.params)

    @property
    def leaves(self) -> list:
        """The leaf layers, depth first: ``params[i]`` belongs to ``leaves[i]``."""
        return list(leaves(self.specs))

    @classmethod
    def initialised(cls, specs: Sequence, seed: int | None = None) -> "Stack":
        """PyTorch's default initialisation of every leaf, reproducible by ``seed`` (0 ≤ seed < 2⁶³).

        Refuses, before allocating, a stack of more than ``MAX_INIT_PARAMETERS`` parameters.
        """
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 63):
            raise UsageError(f"seed: must be an integer in [0, 2**63), got {seed!r}")
        total = sum(parameter_count(spec) for spec in specs)
        if total > MAX_INIT_PARAMETERS:
            raise UsageError(
                f"the stack holds {total:,} parameters ({total * 4 / 2**30:.1f} GiB in float32); "
                f"at most {MAX_INIT_PARAMETERS:,} are initialised"
            )
        generator = torch.Generator()
        generator.manual_seed(0 if seed is None else seed)
        return cls(tuple(specs), [leaf.init_params(generator) for leaf in leaves(specs)])

    def parameter_count(self) -> int:
        return sum(math.prod(t.shape) for p in self.params for t in p.values())

    # -- tensors -----------------------------------------------------------------------------
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Stack":
        """A copy with every tensor moved (the specs are shared)."""
        params = [{k: v.to(device=device, dtype=dtype) for k, v in p.items()} for p in self.params]
        return Stack(self.specs, params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Whole-signal forward of ``x [batch, in_channels, frames]``."""
        self.check_frames(x.shape[-1])
        return forward_specs(self.specs, self.nested, x)

    __call__ = forward

    def state_dict(self, names: Sequence[Mapping[str, str]] | None = None) -> dict[str, torch.Tensor]:
        """Tensors named ``<i>.<name>`` (or per ``names``, one dict per leaf), as ``nn.Sequential``
        names them; inside blocks ``<i>.<j>.<name>`` (residual) and ``<i>.<b>.<j>.<name>`` (parallel)."""
        keys = index_paths(self.specs)
        out = {}
        for i, params in enumerate(self.params):
            for name, tensor in params.items():
                out[names[i][name] if names else f"{keys[i]}.{name}"] = tensor
        return out


def leading_circular_frames(specs: Sequence | Stack) -> int:
    """How many of the input's last frames the leading ``circular`` convolutions need up front.

    A convolution is leading when only pointwise layers stand before it, in the stack or in a
    leading block's sequences (:func:`~convt_audio.core.shapes.leading_convs`); later ones cannot be
    given the tail and hold their whole input.
    """
    specs = specs.specs if isinstance(specs, Stack) else specs
    return max([conv.extension()[0] for conv in leading_convs(specs) if conv.padding_mode == "circular"], default=0)


def _buffering(module: StreamingModule) -> Iterator[str]:
    if module.buffers_whole_input:
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

    positions = ("frames_in", "frames_out")

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

    def _check_end(self) -> None:
        """The stream may end only if its input reached every layer: else
        :class:`InputTooShortError`, naming the first that got too little."""
        self.stack.check_frames(self.state.frames_in)

    @torch.inference_mode()
    def _flush(self) -> torch.Tensor:
        out = super()._flush()
        self.state.frames_out += out.shape[-1]
        return out

    _finish = StreamingModule._finish  # a push, then a flush: each counts its frames


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
