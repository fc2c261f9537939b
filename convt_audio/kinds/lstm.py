"""A recurrent kind: ``lstm``, PyTorch's ``nn.LSTM`` over the frames (EnCodec's SLSTM: two layers
and a skip, ``y = lstm(x) + x``). It is causal — output frame t reads inputs up to t — so it
streams exactly by carrying each layer's ``(h, c)`` from one chunk to the next::

    chunk 1: x0 x1 x2      -> y0 y1 y2      (h, c) after x2 kept
    chunk 2: x3 x4         -> y3 y4         started from the kept (h, c)

A bidirectional LSTM reads every later frame of the signal, so it cannot stream and is refused.
``info``'s receptive field counts the convolutions: the recurrent state carries the whole past.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import ClassVar

from ..core.errors import ConfigError
from ..core.streaming import StreamingModule
from .base import MAX_CHANNELS, Kind, check_int, expect_channels, register


@register
@dataclass(frozen=True)
class LstmSpec(Kind):
    """``channels`` in, ``hidden_size`` out (``channels`` with ``skip``, which adds the input);
    tensors as ``nn.LSTM`` names them: ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``,
    ``bias_hh_l{k}`` (give ``key: <module>.lstm`` for EnCodec's names)."""

    channels: int
    hidden_size: int | None = None  # default: channels
    num_layers: int = 1
    bias: bool = True
    skip: bool = False
    bidirectional: bool = False
    key: str | None = None
    type: str = field(default="lstm", init=False)

    names: ClassVar[tuple] = ("lstm",)
    int_fields: ClassVar[tuple] = ("channels", "hidden_size", "num_layers")
    recurrent: ClassVar[bool] = True

    @property
    def hidden(self) -> int:
        return self.channels if self.hidden_size is None else self.hidden_size

    def validate(self) -> None:
        check_int(self.where, "channels", self.channels, 1, MAX_CHANNELS)
        if self.hidden_size is not None:
            check_int(self.where, "hidden_size", self.hidden_size, 1, MAX_CHANNELS)
        check_int(self.where, "num_layers", self.num_layers, 1, 64)
        for name in ("bias", "skip", "bidirectional"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{self.where}.{name}: must be true or false, got {getattr(self, name)!r}")
        if self.bidirectional:
            raise ConfigError(
                f"{self.where}.bidirectional: a bidirectional LSTM reads every later frame of the signal, so it "
                f"cannot stream; only unidirectional LSTMs are taken"
            )
        if self.skip and self.hidden != self.channels:
            raise ConfigError(
                f"{self.where}.skip: adds the input to the output, so hidden_size ({self.hidden}) must equal "
                f"channels ({self.channels})"
            )

    # -- tensors -------------------------------------------------------------------------------------
    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {}
        for k in range(self.num_layers):
            width = self.channels if k == 0 else self.hidden
            shapes[f"weight_ih_l{k}"] = (4 * self.hidden, width)
            shapes[f"weight_hh_l{k}"] = (4 * self.hidden, self.hidden)
            if self.bias:
                shapes[f"bias_ih_l{k}"] = (4 * self.hidden,)
                shapes[f"bias_hh_l{k}"] = (4 * self.hidden,)
        return shapes

    def init_params(self, generator=None) -> dict:
        """PyTorch's default: every tensor ~ U(−1/√hidden, 1/√hidden)."""
        import torch

        bound = 1.0 / math.sqrt(self.hidden)
        return {
            name: torch.empty(shape).uniform_(-bound, bound, generator=generator)
            for name, shape in self.tensor_shapes().items()
        }

    # -- shape facts ---------------------------------------------------------------------------------
    def input_channels(self) -> int | None:
        return self.channels

    def out_channels_for(self, channels: int | None) -> int:
        return self.hidden

    def check_channels(self, channels: int | None) -> int:
        expect_channels(self.where, "channels", self.channels, channels)
        return self.hidden

    def output_frames(self, frames: int) -> int:
        return max(frames, 0)

    def input_span(self, first: int, last: int) -> tuple[int, int]:
        return first, last  # and the state: every earlier frame (see the module's docstring)

    def first_starved(self, frames: int):
        return None

    def min_input_frames(self) -> int:
        return 1

    def flops_per_frame(self) -> Fraction:
        widths = [self.channels] + [self.hidden] * (self.num_layers - 1)
        return Fraction(sum(8 * self.hidden * (width + self.hidden) for width in widths))

    def info_columns(self) -> dict:
        return {"computed_as": f"LSTM ×{self.num_layers}" + (", skip" if self.skip else "")}

    # -- computing -----------------------------------------------------------------------------------
    def module(self, params: dict, like):
        """An ``nn.LSTM`` holding ``params``, in ``like``'s dtype and on its device."""
        import torch

        lstm = torch.nn.LSTM(self.channels, self.hidden, self.num_layers, bias=self.bias)
        lstm = lstm.to(dtype=like.dtype, device=like.device)
        with torch.no_grad():
            for name, parameter in lstm.named_parameters():
                parameter.copy_(params[name])
        return lstm.eval()

    def run(self, lstm, x, state=None):
        """``[B, C, n]`` through ``lstm`` from ``state`` (None: zeros); the output and the new state."""
        y, state = lstm(x.permute(2, 0, 1), state)
        y = y.permute(1, 2, 0)
        return (y + x if self.skip else y), state

    def forward(self, x, params):
        return self.run(self.module(params, x), x)[0]

    def streamer(self, params, tail=None, kernel: str = "auto"):
        return StreamingLstm(self, params)


class StreamingLstm(StreamingModule):
    """The LSTM pushed chunk by chunk: its state is each layer's ``(h, c)`` after the last frame."""

    @dataclass
    class State:
        hc: tuple | None = None  # (h, c): [layers, batch, hidden] each; None before the first frame

    poolable = True
    batch_dims = {"hc": 1}

    def __init__(self, spec: LstmSpec, params: dict):
        self.spec, self.params, self.lstm = spec, params, None
        super().__init__()

    def _push(self, chunk):
        if not chunk.shape[-1]:
            return self._empty(self.spec.hidden)
        if self.lstm is None:  # built at the first frames, in their dtype and on their device
            self.lstm = self.spec.module(self.params, chunk)
        out, self.state.hc = self.spec.run(self.lstm, chunk, self.state.hc)
        return out

    def _flush(self):
        return self._empty(self.spec.hidden)
